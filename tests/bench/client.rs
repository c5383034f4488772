//! One benchmark connection: raw Engine.IO v4 / Socket.IO v5 over a WebSocket whose TCP socket is
//! bound to a chosen 127.x source address before connecting (many connections to one server port
//! need several source addresses, or the ephemeral ports run out).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::hist::Recorder;
use crate::proto::{self, Incoming, Tag};

/// Why a connection could not be opened or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or bind failed.
    #[error("tcp: {0}")]
    Tcp(#[from] std::io::Error),
    /// The WebSocket handshake or a frame failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server refused the Socket.IO connection.
    #[error("connect_error: {0}")]
    Refused(String),
    /// The server closed the connection.
    #[error("closed by the server")]
    Closed,
    /// Nothing arrived in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The connection task is gone.
    #[error("connection task ended")]
    TaskGone,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub server: SocketAddr,
    /// Local source address (127.x.y.z).
    pub source: Ipv4Addr,
    /// JWT for `auth.token`.
    pub token: Arc<str>,
}

/// The `i`-th of `count` loopback source addresses: 127.0.<1 + i/250>.<1 + i%250>.
pub fn source_address(i: usize, count: usize) -> Ipv4Addr {
    let i = i % count.max(1);
    Ipv4Addr::new(127, 0, (1 + i / 250) as u8, (1 + i % 250) as u8)
}

type Ws = WebSocketStream<TcpStream>;

fn ws_config() -> WebSocketConfig {
    // Small buffers: the generator holds up to 100k of these.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens the WebSocket, sends CONNECT with the token and waits for `welcome`.
pub async fn handshake(target: &Target, timeout: Duration) -> Result<Ws, ClientError> {
    tokio::time::timeout(timeout, handshake_inner(target))
        .await
        .map_err(|_| ClientError::Timeout(timeout, "welcome"))?
}

async fn handshake_inner(target: &Target) -> Result<Ws, ClientError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((target.source, 0)))?;
    let stream = socket.connect(target.server).await?;
    stream.set_nodelay(true)?;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        target.server
    );
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await?;
    let mut sent_connect = false;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        match proto::classify(text.as_str()) {
            Incoming::Open if !sent_connect => {
                ws.send(Message::text(proto::connect_frame(&target.token)))
                    .await?;
                sent_connect = true;
            }
            Incoming::Ping => ws.send(Message::text(proto::PONG)).await?,
            Incoming::ConnectError(message) => return Err(ClientError::Refused(message)),
            Incoming::Event { name: "welcome" } => return Ok(ws),
            Incoming::Close | Incoming::Disconnect => return Err(ClientError::Closed),
            _ => {}
        }
    }
    Err(ClientError::Closed)
}

enum Command {
    Request {
        event: String,
        data: Value,
        reply: oneshot::Sender<Value>,
    },
    Send(String),
}

/// A connected client driven by its own task; dropping every handle closes the connection.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Request { event, .. } => write!(f, "Request({event})"),
            Command::Send(frame) => write!(f, "Send({} bytes)", frame.len()),
        }
    }
}

impl Client {
    /// Connects (see [`handshake`]) and starts the task that answers pings, records every
    /// `room message` into `recorder` and writes what it is given.
    pub async fn open(
        target: &Target,
        recorder: Arc<Recorder>,
        timeout: Duration,
        id: usize,
    ) -> Result<Client, ClientError> {
        let ws = handshake(target, timeout).await?;
        // Capacity: the publisher queues at most one tick of frames; overflow waits (back
        // pressure on the publisher, visible as latency), nothing is dropped.
        let (commands, rx) = mpsc::channel(256);
        tokio::spawn(run(ws, rx, recorder, id));
        Ok(Client { commands })
    }

    /// Emits `event` with an ack id and waits for the ack's first argument.
    pub async fn request(
        &self,
        event: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                event: event.to_owned(),
                data,
                reply,
            })
            .await
            .map_err(|_| ClientError::TaskGone)?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ClientError::TaskGone),
            Err(_) => Err(ClientError::Timeout(timeout, "ack")),
        }
    }

    /// Writes a ready-made frame (waits while the connection's queue is full).
    pub async fn send(&self, frame: String) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send(frame))
            .await
            .map_err(|_| ClientError::TaskGone)
    }
}

async fn run(
    mut ws: Ws,
    mut commands: mpsc::Receiver<Command>,
    recorder: Arc<Recorder>,
    id: usize,
) {
    let mut next_ack: u64 = 1;
    let mut pending: Option<(u64, oneshot::Sender<Value>)> = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        recorder.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Some(Ok(_)) => continue,
                };
                match proto::classify(text.as_str()) {
                    Incoming::Event { name: "room message" } => {
                        match Tag::find_in_frame(text.as_str()) {
                            Some(tag) => recorder.delivered(tag.step, tag.sent_us, id),
                            None => {
                                recorder.malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Incoming::Ping if ws.send(Message::text(proto::PONG)).await.is_err() => {
                        recorder.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Incoming::Event { name: "error" } => {
                        recorder.rejections.fetch_add(1, Ordering::Relaxed);
                    }
                    Incoming::Ack { id, args } => {
                        if let Some((want, reply)) = pending.take() {
                            if want == id {
                                let first = serde_json::from_str::<Value>(args)
                                    .ok()
                                    .and_then(|v| v.get(0).cloned())
                                    .unwrap_or(Value::Null);
                                let _ = reply.send(first);
                            } else {
                                pending = Some((want, reply));
                            }
                        }
                    }
                    Incoming::Close | Incoming::Disconnect => {
                        recorder.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => {}
                }
            }
            cmd = commands.recv() => {
                let frame = match cmd {
                    Some(Command::Send(frame)) => frame,
                    Some(Command::Request { event, data, reply }) => {
                        let id = next_ack;
                        next_ack += 1;
                        pending = Some((id, reply));
                        proto::event_frame(&event, &data, Some(id))
                    }
                    None => {
                        let _ = ws.close(None).await;
                        return;
                    }
                };
                if ws.send(Message::text(frame)).await.is_err() {
                    recorder.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_distinct_loopback_addresses() {
        let all: std::collections::HashSet<Ipv4Addr> =
            (0..600).map(|i| source_address(i, 600)).collect();
        assert_eq!(all.len(), 600);
        assert!(all.iter().all(|a| a.is_loopback() && a.octets()[3] != 0));
        assert_eq!(source_address(0, 8), source_address(8, 8));
    }
}
