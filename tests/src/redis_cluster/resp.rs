//! The harness's own Redis client: a blocking RESP2 connection to one node, and the hash slot
//! of a key, so the harness needs no Redis crate and no runtime.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use super::{COMMAND_TIMEOUT, RedisClusterError, SLOT_COUNT};

/// The hash slot of a key, as Redis Cluster computes it: CRC16 (XMODEM) of the key, or of the
/// text between the first `{` and the next `}` when that is not empty, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&len| len > 0)
                .map(|len| &rest[..len])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOT_COUNT
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Simple(String),
    /// `:<n>`.
    Integer(i64),
    /// `$<len>` (None for the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*<len>` (None for the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string), lossily decoded.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A blocking RESP2 connection to one node, for the harness's own commands.
#[derive(Debug)]
pub struct RespConnection {
    port: u16,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RespConnection {
    /// Connects to `127.0.0.1:<port>`.
    pub fn connect(port: u16) -> Result<Self, RedisClusterError> {
        let io = |source| RedisClusterError::Io { port, source };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, COMMAND_TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
        stream
            .set_write_timeout(Some(COMMAND_TIMEOUT))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Self {
            port,
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one command and reads its reply; an error reply becomes [`RedisClusterError::Reply`].
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RedisClusterError> {
        let port = self.port;
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg);
            frame.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&frame)
            .map_err(|source| RedisClusterError::Io { port, source })?;
        self.read_reply().map_err(|e| match e {
            RedisClusterError::Reply { port, message, .. } => RedisClusterError::Reply {
                port,
                command: args
                    .first()
                    .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                    .unwrap_or_default(),
                message,
            },
            other => other,
        })
    }

    /// Sends a command whose reply must be text.
    pub fn text<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<String, RedisClusterError> {
        let reply = self.command(args)?;
        reply.text().ok_or_else(|| RedisClusterError::Protocol {
            port: self.port,
            detail: format!("expected text, got {reply:?}"),
        })
    }

    /// Reads the next message the server sends unasked: on a subscribed connection, a
    /// published message or a `sunsubscribe` push. Waits at most the command timeout.
    pub fn receive(&mut self) -> Result<Reply, RedisClusterError> {
        self.read_reply()
    }

    fn read_line(&mut self) -> Result<String, RedisClusterError> {
        let port = self.port;
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| RedisClusterError::Io { port, source })?;
        if n == 0 {
            return Err(RedisClusterError::Io {
                port,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(line.trim_end_matches("\r\n").to_owned())
    }

    fn read_reply(&mut self) -> Result<Reply, RedisClusterError> {
        let port = self.port;
        let line = self.read_line()?;
        let protocol = |detail: String| RedisClusterError::Protocol { port, detail };
        let (kind, rest) = line
            .split_at_checked(1)
            .ok_or_else(|| protocol("empty reply line".into()))?;
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| protocol(format!("bad length or integer {rest:?}")))
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Err(RedisClusterError::Reply {
                port,
                command: String::new(),
                message: rest.to_owned(),
            }),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let len = number()?;
                let Ok(len) = usize::try_from(len) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut body = vec![0; len + 2];
                std::io::Read::read_exact(&mut self.reader, &mut body)
                    .map_err(|source| RedisClusterError::Io { port, source })?;
                body.truncate(len);
                Ok(Reply::Bulk(Some(body)))
            }
            "*" => {
                let len = number()?;
                let Ok(len) = usize::try_from(len) else {
                    return Ok(Reply::Array(None));
                };
                let items = (0..len)
                    .map(|_| self.read_reply())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Reply::Array(Some(items)))
            }
            other => Err(protocol(format!("unknown reply type {other:?}"))),
        }
    }
}
