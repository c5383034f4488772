//! The envelope codec: JSON text by default, msgpack of the whole envelope (notepack.io's
//! bytes, keys in the order `type`, `data`, `uid`, `nsp`) when the type is 3, 8, 9, 10 or 12
//! and `data` holds binary anywhere (`docs/sharded-adapter.md`, section 2.2).
//!
//! What this adapter sends has a fixed shape: the typed [`Message`] is serialized through
//! borrowed structs, fields in the order Node writes them. What peers send is decoded into a
//! [`Wire`] value, bounded in size, nesting and (through the input) array lengths, and read
//! field by field; a malformed message is an error, never a panic.

use serde::Serialize;

use super::message::{BroadcastFlags, Envelope, Message, Opts, RemoteSocket, message_type as t};
use crate::msgpack::{DecodeError, MAX_EVENT_DATA_DEPTH, Wire, to_msgpack};
use crate::wire::{Target, contains_binary, scalar_string};

/// Levels the sharded wire puts above a broadcast's event array: the envelope, its `data`,
/// then `packet` (`{type, data: {packet: {type: 2, data: [event, ...]}}}`).
pub const SHARDED_ENVELOPE_DEPTH: usize = 3;

/// Deepest nesting the decoder accepts (the envelope is at depth 0): room for every event
/// whose data the gateway accepts ([`MAX_EVENT_DATA_DEPTH`]) under the envelope's levels.
pub const SHARDED_MAX_DEPTH: usize = MAX_EVENT_DATA_DEPTH + SHARDED_ENVELOPE_DEPTH;

/// Largest message [`Envelope::decode`] reads. A fetch answer of a Node server holding tens of
/// thousands of sockets (about 700 bytes each with Node's handshake) fits; larger messages are
/// refused before any parsing. Every decoded value costs at least one input byte, so a
/// message's decoded form is bounded too (a [`Wire`] value is 40 bytes: at worst about 40
/// times the input, for msgpack made only of one-byte values); a transport with a tighter
/// memory budget passes its own limit to [`Envelope::decode_with_limit`].
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 64 << 20;

/// Why a message from a shard channel was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    /// Larger than the decoder's limit.
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The message's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid msgpack.
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] DecodeError),
    /// Not valid JSON (or nested too deeply).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid encoding, but not the shape of an envelope of this type.
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
    /// A `type` the sharded adapter does not send (1, 2 and 13 belong to other adapters).
    #[error("unknown message type {0}")]
    UnknownType(i64),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// A value JSON cannot express (a map key that is neither a string nor a number).
    #[error("cannot encode as JSON: {0}")]
    Json(String),
}

/// What a server does with a decoded envelope, as Node's sharded adapter decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A request or broadcast from another server of this namespace: apply it.
    Apply,
    /// An answer (types 8, 10, 11, 12) to one of this server's requests, matched by
    /// `requestId`.
    Answer,
    /// Dropped.
    Ignore(IgnoreReason),
}

/// Why an envelope is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Sent by this server (Node applies its own messages locally, nothing comes back).
    OwnMessage,
    /// Sent by the adapter of another namespace.
    OtherNamespace,
    /// Not an answer, yet on this server's response channel (a room named like its uid).
    NotAnAnswer,
}

impl Envelope {
    /// Whether [`Envelope::encode`] writes msgpack: the types that may carry binary, when
    /// they do.
    pub fn uses_msgpack(&self) -> bool {
        match &self.message {
            Message::Broadcast { data, .. } | Message::ServerSideEmit { data, .. } => {
                contains_binary(data)
            }
            Message::ServerSideEmitResponse { packet, .. }
            | Message::BroadcastAck { packet, .. } => packet.as_ref().is_some_and(contains_binary),
            Message::FetchSocketsResponse { sockets, .. } => sockets.iter().any(|s| {
                s.handshake.as_ref().is_some_and(contains_binary)
                    || s.data.as_ref().is_some_and(contains_binary)
            }),
            Message::SocketsJoin { .. }
            | Message::SocketsLeave { .. }
            | Message::DisconnectSockets { .. }
            | Message::FetchSockets { .. }
            | Message::BroadcastClientCount { .. } => false,
        }
    }

    /// The bytes Node's sharded adapter would publish for this message.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let out = EnvelopeOut {
            kind: self.message.kind(),
            data: DataOut::of(&self.message),
            uid: &self.uid,
            nsp: &self.nsp,
        };
        if self.uses_msgpack() {
            Ok(to_msgpack(&out))
        } else {
            serde_json::to_vec(&out).map_err(|e| EncodeError::Json(e.to_string()))
        }
    }

    /// Decodes a message of at most [`DEFAULT_MAX_ENVELOPE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Self::decode_with_limit(bytes, DEFAULT_MAX_ENVELOPE_BYTES)
    }

    /// Decodes a message of at most `max_bytes`: JSON if its first byte is `{`, msgpack
    /// otherwise, as Node tells them apart.
    pub fn decode_with_limit(bytes: &[u8], max_bytes: usize) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > max_bytes {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        let wire = decode_value(bytes)?;
        if !matches!(wire, Wire::Map(_)) {
            return Err(EnvelopeError::Shape("message is not a map"));
        }
        let kind = wire
            .get("type")
            .and_then(Wire::as_i64)
            .ok_or(EnvelopeError::Shape("message without a numeric type"))?;
        let data = wire.get("data");
        let message = read_message(kind, data)?;
        Ok(Envelope {
            uid: wire.get("uid").and_then(scalar_string).unwrap_or_default(),
            nsp: wire
                .get("nsp")
                .and_then(Wire::as_str)
                .unwrap_or_default()
                .to_owned(),
            message,
        })
    }

    /// What the server `own_uid` of namespace `nsp` does with this envelope, which arrived on
    /// its own response channel or not. As Node: on the response channel only answers count
    /// (whoever sent them); elsewhere the server's own messages and other namespaces' are
    /// dropped, and answers are taken as answers whatever channel brought them.
    pub fn disposition(
        &self,
        on_own_response_channel: bool,
        own_uid: &str,
        nsp: &str,
    ) -> Disposition {
        if on_own_response_channel {
            return if self.message.is_answer() {
                Disposition::Answer
            } else {
                Disposition::Ignore(IgnoreReason::NotAnAnswer)
            };
        }
        if self.uid == own_uid {
            Disposition::Ignore(IgnoreReason::OwnMessage)
        } else if self.nsp != nsp {
            Disposition::Ignore(IgnoreReason::OtherNamespace)
        } else if self.message.is_answer() {
            Disposition::Answer
        } else {
            Disposition::Apply
        }
    }
}

fn decode_value(bytes: &[u8]) -> Result<Wire, EnvelopeError> {
    if bytes.first() == Some(&b'{') {
        let text = std::str::from_utf8(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        crate::json::from_json_with_max_depth(text, SHARDED_MAX_DEPTH)
            .map_err(|e| EnvelopeError::Json(e.to_string()))
    } else {
        Ok(Wire::decode_with_max_depth(bytes, SHARDED_MAX_DEPTH)?)
    }
}

/// Reads `data` of a message of type `kind`, field by field.
fn read_message(kind: i64, data: Option<&Wire>) -> Result<Message, EnvelopeError> {
    let data = match data {
        Some(data @ Wire::Map(_)) => data,
        _ if !(t::BROADCAST..=t::BROADCAST_ACK).contains(&kind) => {
            return Err(EnvelopeError::UnknownType(kind));
        }
        _ => return Err(EnvelopeError::Shape("message without a data map")),
    };
    let request_id = || data.get("requestId").and_then(scalar_string);
    let need_request_id =
        || request_id().ok_or(EnvelopeError::Shape("answer or request without requestId"));
    let opts = || data.get("opts").map(opts_of).unwrap_or_default();
    let rooms = || {
        data.get("rooms")
            .and_then(Wire::as_array)
            .map(string_list)
            .ok_or(EnvelopeError::Shape("join or leave without a rooms array"))
    };
    Ok(match kind {
        t::BROADCAST => {
            let packet = data
                .get("packet")
                .ok_or(EnvelopeError::Shape("broadcast without packet"))?;
            Message::Broadcast {
                data: event_array(packet.get("data"))
                    .ok_or(EnvelopeError::Shape("broadcast packet without event data"))?,
                request_id: request_id(),
                opts: opts(),
            }
        }
        t::SOCKETS_JOIN => Message::SocketsJoin {
            opts: opts(),
            rooms: rooms()?,
        },
        t::SOCKETS_LEAVE => Message::SocketsLeave {
            opts: opts(),
            rooms: rooms()?,
        },
        t::DISCONNECT_SOCKETS => Message::DisconnectSockets {
            opts: opts(),
            close: data.get("close") == Some(&Wire::Bool(true)),
        },
        t::FETCH_SOCKETS => Message::FetchSockets {
            opts: opts(),
            request_id: need_request_id()?,
        },
        t::FETCH_SOCKETS_RESPONSE => Message::FetchSocketsResponse {
            request_id: need_request_id()?,
            sockets: data
                .get("sockets")
                .and_then(Wire::as_array)
                .ok_or(EnvelopeError::Shape("fetch answer without a sockets array"))?
                .iter()
                .filter_map(remote_socket_of)
                .collect(),
        },
        t::SERVER_SIDE_EMIT => Message::ServerSideEmit {
            data: event_array(data.get("packet"))
                .ok_or(EnvelopeError::Shape("server-side emit without event data"))?,
            request_id: request_id(),
        },
        t::SERVER_SIDE_EMIT_RESPONSE => Message::ServerSideEmitResponse {
            request_id: need_request_id()?,
            packet: data.get("packet").cloned(),
        },
        t::BROADCAST_CLIENT_COUNT => Message::BroadcastClientCount {
            request_id: need_request_id()?,
            client_count: data
                .get("clientCount")
                .and_then(Wire::as_i64)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(EnvelopeError::Shape("client count that is not a count"))?,
        },
        t::BROADCAST_ACK => Message::BroadcastAck {
            request_id: need_request_id()?,
            packet: data.get("packet").cloned(),
        },
        other => return Err(EnvelopeError::UnknownType(other)),
    })
}

/// `[event, ...args]`: a non-empty array.
fn event_array(value: Option<&Wire>) -> Option<Wire> {
    value
        .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
}

/// Rooms as JavaScript's `String(x)` gives them (numbers are valid rooms in Node), each once.
fn string_list(items: &[Wire]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len().min(64));
    for room in items.iter().filter_map(scalar_string) {
        if !out.contains(&room) {
            out.push(room);
        }
    }
    out
}

fn opts_of(opts: &Wire) -> Opts {
    let list = |key| {
        opts.get(key)
            .and_then(Wire::as_array)
            .map(string_list)
            .unwrap_or_default()
    };
    let flags = opts.get("flags");
    let flag = |key| flags.and_then(|f| f.get(key));
    Opts {
        target: Target {
            rooms: list("rooms"),
            except: list("except"),
        },
        flags: BroadcastFlags {
            volatile: flag("volatile") == Some(&Wire::Bool(true)),
            compress: match flag("compress") {
                Some(Wire::Bool(b)) => Some(*b),
                _ => None,
            },
            timeout_ms: flag("timeout")
                .and_then(Wire::as_i64)
                .and_then(|ms| u64::try_from(ms).ok()),
        },
    }
}

/// One socket of a fetch answer; entries without an id are skipped.
fn remote_socket_of(socket: &Wire) -> Option<RemoteSocket> {
    Some(RemoteSocket {
        id: socket.get("id").and_then(scalar_string)?,
        handshake: socket.get("handshake").cloned(),
        rooms: socket
            .get("rooms")
            .and_then(Wire::as_array)
            .map(string_list)
            .unwrap_or_default(),
        data: socket.get("data").cloned(),
    })
}

/// `{type, data, uid, nsp}` in Node's order.
#[derive(Serialize)]
struct EnvelopeOut<'a> {
    #[serde(rename = "type")]
    kind: i64,
    data: DataOut<'a>,
    uid: &'a str,
    nsp: &'a str,
}

/// `data` of each type, fields in the order Node's `ClusterAdapter` writes them.
#[derive(Serialize)]
#[serde(untagged)]
enum DataOut<'a> {
    Broadcast {
        packet: PacketOut<'a>,
        #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        opts: OptsOut<'a>,
    },
    Rooms {
        opts: OptsOut<'a>,
        rooms: &'a [String],
    },
    Disconnect {
        opts: OptsOut<'a>,
        close: bool,
    },
    Fetch {
        opts: OptsOut<'a>,
        #[serde(rename = "requestId")]
        request_id: &'a str,
    },
    FetchAnswer {
        #[serde(rename = "requestId")]
        request_id: &'a str,
        sockets: Vec<SocketOut<'a>>,
    },
    Emit {
        #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        packet: &'a Wire,
    },
    Ack {
        #[serde(rename = "requestId")]
        request_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        packet: Option<&'a Wire>,
    },
    Count {
        #[serde(rename = "requestId")]
        request_id: &'a str,
        #[serde(rename = "clientCount")]
        client_count: u64,
    },
}

impl<'a> DataOut<'a> {
    fn of(message: &'a Message) -> Self {
        match message {
            Message::Broadcast {
                data,
                request_id,
                opts,
            } => DataOut::Broadcast {
                packet: PacketOut {
                    kind: PacketOut::EVENT,
                    data,
                },
                request_id: request_id.as_deref(),
                opts: OptsOut::of(opts),
            },
            Message::SocketsJoin { opts, rooms } | Message::SocketsLeave { opts, rooms } => {
                DataOut::Rooms {
                    opts: OptsOut::of(opts),
                    rooms,
                }
            }
            Message::DisconnectSockets { opts, close } => DataOut::Disconnect {
                opts: OptsOut::of(opts),
                close: *close,
            },
            Message::FetchSockets { opts, request_id } => DataOut::Fetch {
                opts: OptsOut::of(opts),
                request_id,
            },
            Message::FetchSocketsResponse {
                request_id,
                sockets,
            } => DataOut::FetchAnswer {
                request_id,
                sockets: sockets
                    .iter()
                    .map(|s| SocketOut {
                        id: &s.id,
                        handshake: s.handshake.as_ref(),
                        rooms: &s.rooms,
                        data: s.data.as_ref(),
                    })
                    .collect(),
            },
            Message::ServerSideEmit { data, request_id } => DataOut::Emit {
                request_id: request_id.as_deref(),
                packet: data,
            },
            Message::ServerSideEmitResponse { request_id, packet }
            | Message::BroadcastAck { request_id, packet } => DataOut::Ack {
                request_id,
                packet: packet.as_ref(),
            },
            Message::BroadcastClientCount {
                request_id,
                client_count,
            } => DataOut::Count {
                request_id,
                client_count: *client_count,
            },
        }
    }
}

/// `{type: 2, data}`: socket.io's EVENT packet as the adapter receives it (no `nsp`: Node
/// adds it only when delivering locally, after publishing).
#[derive(Serialize)]
struct PacketOut<'a> {
    #[serde(rename = "type")]
    kind: u8,
    data: &'a Wire,
}

impl PacketOut<'_> {
    /// Socket.io's EVENT packet type (binary events too, at the adapter's level).
    const EVENT: u8 = 2;
}

/// `{rooms, except, flags}`: Node always sends `flags`, `{}` when none is set.
#[derive(Serialize)]
struct OptsOut<'a> {
    rooms: &'a [String],
    except: &'a [String],
    flags: FlagsOut,
}

impl<'a> OptsOut<'a> {
    fn of(opts: &'a Opts) -> Self {
        Self {
            rooms: &opts.target.rooms,
            except: &opts.target.except,
            flags: FlagsOut {
                volatile: opts.flags.volatile,
                compress: opts.flags.compress,
                timeout: opts
                    .flags
                    .timeout_ms
                    .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            },
        }
    }
}

/// The flags that are set, in the order socket.io's `BroadcastOperator` chains them most
/// often (`io.volatile.compress(false)`, `io.timeout(ms)`).
#[derive(Serialize)]
struct FlagsOut {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    volatile: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    compress: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<i64>,
}

/// One socket of a fetch answer: `{id, handshake, rooms, data}`.
#[derive(Serialize)]
struct SocketOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    handshake: Option<&'a Wire>,
    rooms: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Wire>,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::FetchedSocket;

    fn s(v: &str) -> Wire {
        Wire::Str(v.to_owned())
    }

    fn strs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn envelope(message: Message) -> Envelope {
        Envelope {
            uid: "8d5c3c2865859083".into(),
            nsp: "/".into(),
            message,
        }
    }

    fn room_opts(rooms: &[&str], except: &[&str]) -> Opts {
        Opts::of(Target {
            rooms: strs(rooms),
            except: strs(except),
        })
    }

    /// Each type in the JSON Node writes (shapes of `tests/vectors/sharded/`, with short ids).
    fn json_cases() -> Vec<(Message, &'static str)> {
        vec![
            (
                Message::Broadcast {
                    data: Wire::Array(vec![s("all"), Wire::Int(1), s("two")]),
                    request_id: None,
                    opts: Opts::default(),
                },
                r#"{"type":3,"data":{"packet":{"type":2,"data":["all",1,"two"]},"opts":{"rooms":[],"except":[],"flags":{}}}"#,
            ),
            (
                Message::Broadcast {
                    data: Wire::Array(vec![s("ask"), Wire::Int(7)]),
                    request_id: Some("5f5de9bd191da562".into()),
                    opts: Opts {
                        target: Target::default(),
                        flags: BroadcastFlags {
                            timeout_ms: Some(2000),
                            ..BroadcastFlags::default()
                        },
                    },
                },
                r#"{"type":3,"data":{"packet":{"type":2,"data":["ask",7]},"requestId":"5f5de9bd191da562","opts":{"rooms":[],"except":[],"flags":{"timeout":2000}}}"#,
            ),
            (
                Message::Broadcast {
                    data: Wire::Array(vec![s("v")]),
                    request_id: None,
                    opts: Opts {
                        target: room_opts(&["room1"], &["room2"]).target,
                        flags: BroadcastFlags {
                            volatile: true,
                            compress: Some(false),
                            timeout_ms: None,
                        },
                    },
                },
                r#"{"type":3,"data":{"packet":{"type":2,"data":["v"]},"opts":{"rooms":["room1"],"except":["room2"],"flags":{"volatile":true,"compress":false}}}"#,
            ),
            (
                Message::SocketsJoin {
                    opts: room_opts(&["t6NnwrlQGANncHSLAAAD"], &[]),
                    rooms: strs(&["room3"]),
                },
                r#"{"type":4,"data":{"opts":{"rooms":["t6NnwrlQGANncHSLAAAD"],"except":[],"flags":{}},"rooms":["room3"]}"#,
            ),
            (
                Message::SocketsLeave {
                    opts: room_opts(&["t6NnwrlQGANncHSLAAAD"], &[]),
                    rooms: strs(&["room3"]),
                },
                r#"{"type":5,"data":{"opts":{"rooms":["t6NnwrlQGANncHSLAAAD"],"except":[],"flags":{}},"rooms":["room3"]}"#,
            ),
            (
                Message::DisconnectSockets {
                    opts: room_opts(&["room2"], &[]),
                    close: true,
                },
                r#"{"type":6,"data":{"opts":{"rooms":["room2"],"except":[],"flags":{}},"close":true}"#,
            ),
            (
                Message::FetchSockets {
                    opts: Opts::default(),
                    request_id: "6ef20ab81446e1b3".into(),
                },
                r#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"6ef20ab81446e1b3"}"#,
            ),
            (
                Message::FetchSocketsResponse {
                    request_id: "4fc1cb2857436a68".into(),
                    sockets: vec![],
                },
                r#"{"type":8,"data":{"requestId":"4fc1cb2857436a68","sockets":[]}"#,
            ),
            (
                Message::ServerSideEmit {
                    data: Wire::Array(vec![s("hello"), Wire::Int(1), s("x")]),
                    request_id: None,
                },
                r#"{"type":9,"data":{"packet":["hello",1,"x"]}"#,
            ),
            (
                Message::ServerSideEmit {
                    data: Wire::Array(vec![s("hello"), s("ack me")]),
                    request_id: Some("96028f02278c4173".into()),
                },
                r#"{"type":9,"data":{"requestId":"96028f02278c4173","packet":["hello","ack me"]}"#,
            ),
            (
                Message::ServerSideEmitResponse {
                    request_id: "96028f02278c4173".into(),
                    packet: Some(s("pong-C")),
                },
                r#"{"type":10,"data":{"requestId":"96028f02278c4173","packet":"pong-C"}"#,
            ),
            (
                Message::BroadcastClientCount {
                    request_id: "5f5de9bd191da562".into(),
                    client_count: 0,
                },
                r#"{"type":11,"data":{"requestId":"5f5de9bd191da562","clientCount":0}"#,
            ),
            (
                Message::BroadcastAck {
                    request_id: "5f5de9bd191da562".into(),
                    packet: Some(s("ack-b1")),
                },
                r#"{"type":12,"data":{"requestId":"5f5de9bd191da562","packet":"ack-b1"}"#,
            ),
            (
                // An ack called with no argument: JSON.stringify leaves `packet` out.
                Message::BroadcastAck {
                    request_id: "5f5de9bd191da562".into(),
                    packet: None,
                },
                r#"{"type":12,"data":{"requestId":"5f5de9bd191da562"}"#,
            ),
        ]
    }

    #[test]
    fn every_type_encodes_as_nodes_json_and_decodes_back() {
        for (message, head) in json_cases() {
            let envelope = envelope(message);
            let want = format!(r#"{head},"uid":"8d5c3c2865859083","nsp":"/"}}"#);
            assert!(!envelope.uses_msgpack(), "{want}");
            let bytes = envelope.encode().unwrap();
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
            assert_eq!(Envelope::decode(&bytes).unwrap(), envelope, "{want}");
        }
    }

    #[test]
    fn binary_makes_the_whole_envelope_msgpack_in_nodes_key_order() {
        let message = Message::Broadcast {
            data: Wire::Array(vec![s("bin"), Wire::Bin(Bytes::from_static(&[1, 2, 3]))]),
            request_id: None,
            opts: Opts::default(),
        };
        let envelope = Envelope {
            uid: "u".into(),
            nsp: "/".into(),
            message,
        };
        assert!(envelope.uses_msgpack());
        let mut want = b"\x84\xa4type\x03\xa4data\x82\xa6packet\x82\xa4type\x02\xa4data\x92\xa3bin\xc4\x03\x01\x02\x03".to_vec();
        want.extend_from_slice(
            b"\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80\xa3uid\xa1u\xa3nsp\xa1/",
        );
        let bytes = envelope.encode().unwrap();
        assert_eq!(bytes, want);
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
    }

    #[test]
    fn binary_in_answers_and_emits_is_msgpack_and_never_in_requests_without_data() {
        let bin = || Wire::Bin(Bytes::from_static(&[0xc1]));
        let with_binary = [
            Message::ServerSideEmit {
                data: Wire::Array(vec![s("e"), Wire::map([("b", bin())])]),
                request_id: Some("r".into()),
            },
            Message::ServerSideEmitResponse {
                request_id: "r".into(),
                packet: Some(bin()),
            },
            Message::BroadcastAck {
                request_id: "r".into(),
                packet: Some(Wire::Array(vec![bin()])),
            },
            Message::FetchSocketsResponse {
                request_id: "r".into(),
                sockets: vec![RemoteSocket {
                    id: "s".into(),
                    handshake: None,
                    rooms: vec![],
                    data: Some(bin()),
                }],
            },
        ];
        for message in with_binary {
            let envelope = envelope(message);
            assert!(envelope.uses_msgpack(), "{envelope:?}");
            let bytes = envelope.encode().unwrap();
            assert_ne!(bytes[0], b'{');
            assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn our_fetch_answer_carries_the_classic_minimal_handshake() {
        let fetched = FetchedSocket {
            id: "0123456789abcdef".into(),
            rooms: strs(&["room:1"]),
            issued_ms: 1_796_598_540_569,
        };
        let socket = RemoteSocket::from_fetched(&fetched);
        assert_eq!(socket.to_fetched(), fetched);
        let bytes = envelope(Message::FetchSocketsResponse {
            request_id: "r".into(),
            sockets: vec![socket],
        })
        .encode()
        .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            concat!(
                r#"{"type":8,"data":{"requestId":"r","sockets":[{"id":"0123456789abcdef","#,
                r#""handshake":{"headers":{},"time":"","address":"","xdomain":false,"#,
                r#""secure":false,"issued":1796598540569,"url":"","query":{},"auth":{}},"#,
                r#""rooms":["room:1"],"data":{}}]},"uid":"8d5c3c2865859083","nsp":"/"}"#
            )
        );
    }

    #[test]
    fn peers_fields_are_read_one_by_one() {
        // Numbers as rooms (valid in Node), duplicates, extra fields, unknown flags.
        let bytes = br#"{"nsp":"/chat","type":4,"extra":1,"data":{"rooms":[7,"a","a",1.5,null],"opts":{"rooms":["x"],"flags":{"local":true,"volatile":"yes"}}},"uid":42}"#;
        let envelope = Envelope::decode(bytes).unwrap();
        assert_eq!(envelope.uid, "42");
        assert_eq!(envelope.nsp, "/chat");
        assert_eq!(
            envelope.message,
            Message::SocketsJoin {
                opts: room_opts(&["x"], &[]),
                rooms: strs(&["7", "a", "1.5"]),
            }
        );
        // Without uid and nsp: matches no server and no namespace.
        let envelope =
            Envelope::decode(br#"{"type":11,"data":{"requestId":"r","clientCount":2}}"#).unwrap();
        assert_eq!((envelope.uid.as_str(), envelope.nsp.as_str()), ("", ""));
        // Fetch answers: entries without an id are skipped.
        let envelope = Envelope::decode(
            br#"{"type":8,"data":{"requestId":"r","sockets":[{"rooms":["a"]},5,{"id":"s","rooms":["s"]}]}}"#,
        )
        .unwrap();
        let Message::FetchSocketsResponse { sockets, .. } = envelope.message else {
            panic!("not a fetch answer")
        };
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].to_fetched().issued_ms, 0);
    }

    #[test]
    fn malformed_messages_are_clear_errors() {
        let shape = |bytes: &[u8]| match Envelope::decode(bytes) {
            Err(EnvelopeError::Shape(why)) => why,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
        };
        shape(br#"{"data":{}}"#);
        shape(b"\x93\x01\x02\x03");
        shape(br#"{"type":3,"data":{"opts":{}}}"#);
        shape(br#"{"type":3,"data":{"packet":{"type":2,"data":[]}}}"#);
        shape(br#"{"type":3,"data":[]}"#);
        shape(br#"{"type":4,"data":{"opts":{}}}"#);
        shape(br#"{"type":7,"data":{"opts":{}}}"#);
        shape(br#"{"type":8,"data":{"requestId":"r"}}"#);
        shape(br#"{"type":9,"data":{"packet":"x"}}"#);
        shape(br#"{"type":10,"data":{"packet":"x"}}"#);
        shape(br#"{"type":11,"data":{"requestId":"r","clientCount":-1}}"#);
        shape(br#"{"type":12,"data":{}}"#);
        for kind in [0, 1, 2, 13, 99, -3] {
            assert_eq!(
                Envelope::decode(format!(r#"{{"type":{kind},"uid":"x","nsp":"/"}}"#).as_bytes()),
                Err(EnvelopeError::UnknownType(kind))
            );
        }
        assert!(matches!(
            Envelope::decode(b"{not json"),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            Envelope::decode(b"{\xff}"),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            Envelope::decode(b""),
            Err(EnvelopeError::Msgpack(_))
        ));
    }

    #[test]
    fn a_decoded_value_is_as_large_as_the_limits_doc_says() {
        assert_eq!(std::mem::size_of::<Wire>(), 40);
    }

    #[test]
    fn size_is_bounded_before_parsing() {
        let bytes = envelope(json_cases().remove(0).0).encode().unwrap();
        assert!(Envelope::decode_with_limit(&bytes, bytes.len()).is_ok());
        assert_eq!(
            Envelope::decode_with_limit(&bytes, bytes.len() - 1),
            Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: bytes.len() - 1
            })
        );
    }

    #[test]
    fn hostile_lengths_are_errors_without_allocating_them() {
        // A map, an array and a string claiming 4 G entries or bytes, and deep nesting.
        for bytes in [
            &b"\xdf\xff\xff\xff\xff"[..],
            b"\x84\xa4type\x03\xa4data\x81\xa6packet\x82\xa4type\x02\xa4data\xdd\xff\xff\xff\xff",
            b"\x84\xa4type\x03\xa3uid\xdb\xff\xff\xff\xff",
        ] {
            assert!(
                matches!(Envelope::decode(bytes), Err(EnvelopeError::Msgpack(_))),
                "{bytes:x?}"
            );
        }
        assert!(matches!(
            Envelope::decode(&[0x91; 1000]),
            Err(EnvelopeError::Msgpack(DecodeError::TooDeep))
        ));
        let deep_json = format!(r#"{{"type":9,"data":{{"packet":{}}}}}"#, "[".repeat(1000));
        assert!(matches!(
            Envelope::decode(deep_json.as_bytes()),
            Err(EnvelopeError::Json(_))
        ));
    }

    /// `["ev", [[...[leaf]...]]]` with `leaf` at `level` (the event array is level 0).
    fn event_with_value_at(level: usize, leaf: Wire) -> Wire {
        let mut value = leaf;
        for _ in 1..level {
            value = Wire::Array(vec![value]);
        }
        Wire::Array(vec![s("ev"), value])
    }

    #[test]
    fn every_event_the_gateway_accepts_crosses_in_both_encodings() {
        for leaf in [Wire::Int(1), Wire::Bin(Bytes::from_static(&[1]))] {
            let deepest = envelope(Message::Broadcast {
                data: event_with_value_at(MAX_EVENT_DATA_DEPTH, leaf.clone()),
                request_id: None,
                opts: Opts::default(),
            });
            let bytes = deepest.encode().unwrap();
            assert_eq!(Envelope::decode(&bytes).unwrap(), deepest, "{leaf:?}");

            let too_deep = envelope(Message::Broadcast {
                data: event_with_value_at(MAX_EVENT_DATA_DEPTH + 1, leaf.clone()),
                request_id: None,
                opts: Opts::default(),
            });
            assert!(
                Envelope::decode(&too_deep.encode().unwrap()).is_err(),
                "{leaf:?}"
            );
        }
    }

    #[test]
    fn dispositions_follow_node() {
        let own = "8d5c3c2865859083";
        let from = |uid: &str, nsp: &str, message: Message| Envelope {
            uid: uid.into(),
            nsp: nsp.into(),
            message,
        };
        let request = Message::FetchSockets {
            opts: Opts::default(),
            request_id: "r".into(),
        };
        let answer = Message::BroadcastClientCount {
            request_id: "r".into(),
            client_count: 1,
        };
        let d = |e: Envelope, on_response: bool| e.disposition(on_response, own, "/");
        assert_eq!(
            d(from("peer", "/", request.clone()), false),
            Disposition::Apply
        );
        assert_eq!(
            d(from(own, "/", request.clone()), false),
            Disposition::Ignore(IgnoreReason::OwnMessage)
        );
        assert_eq!(
            d(from("peer", "/chat", request.clone()), false),
            Disposition::Ignore(IgnoreReason::OtherNamespace)
        );
        assert_eq!(
            d(from("peer", "", request.clone()), false),
            Disposition::Ignore(IgnoreReason::OtherNamespace)
        );
        assert_eq!(
            d(from("peer", "/", answer.clone()), false),
            Disposition::Answer
        );
        assert_eq!(
            d(from("peer", "/", answer.clone()), true),
            Disposition::Answer
        );
        // On the response channel Node does not look at uid or nsp.
        assert_eq!(d(from("", "", answer), true), Disposition::Answer);
        assert_eq!(
            d(from("peer", "/", request), true),
            Disposition::Ignore(IgnoreReason::NotAnAnswer)
        );
    }

    fn any_wire() -> impl Strategy<Value = Wire> {
        let leaf = prop_oneof![
            Just(Wire::Nil),
            any::<bool>().prop_map(Wire::Bool),
            any::<i64>().prop_map(Wire::Int),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(Wire::UInt),
            // JSON has no NaN or infinities; every finite float crosses.
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Wire::F64),
            ".{0,20}".prop_map(Wire::Str),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Wire::Bin(b.into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Wire::Array),
                // String keys (JSON's); `_placeholder` objects are excluded by the key set.
                proptest::collection::vec(("[a-z]{0,6}", inner), 0..6).prop_map(|entries| {
                    Wire::Map(
                        entries
                            .into_iter()
                            .map(|(k, v)| (Wire::Str(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn any_event() -> impl Strategy<Value = Wire> {
        (".{0,10}", proptest::collection::vec(any_wire(), 0..4)).prop_map(|(name, args)| {
            let mut items = vec![Wire::Str(name)];
            items.extend(args);
            Wire::Array(items)
        })
    }

    fn any_rooms() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set(".{0,12}", 0..4).prop_map(|set| set.into_iter().collect())
    }

    fn any_opts() -> impl Strategy<Value = Opts> {
        (
            any_rooms(),
            any_rooms(),
            any::<bool>(),
            proptest::option::of(any::<bool>()),
            proptest::option::of(0..=i64::MAX as u64),
        )
            .prop_map(|(rooms, except, volatile, compress, timeout_ms)| Opts {
                target: Target { rooms, except },
                flags: BroadcastFlags {
                    volatile,
                    compress,
                    timeout_ms,
                },
            })
    }

    fn any_message() -> impl Strategy<Value = Message> {
        let id = "[0-9a-f]{16}";
        prop_oneof![
            (any_event(), proptest::option::of(id), any_opts()).prop_map(
                |(data, request_id, opts)| Message::Broadcast {
                    data,
                    request_id,
                    opts
                }
            ),
            (any_opts(), any_rooms())
                .prop_map(|(opts, rooms)| Message::SocketsJoin { opts, rooms }),
            (any_opts(), any_rooms())
                .prop_map(|(opts, rooms)| Message::SocketsLeave { opts, rooms }),
            (any_opts(), any::<bool>())
                .prop_map(|(opts, close)| Message::DisconnectSockets { opts, close }),
            (any_opts(), id)
                .prop_map(|(opts, request_id)| Message::FetchSockets { opts, request_id }),
            (
                id,
                proptest::collection::vec(
                    (
                        ".{1,20}",
                        proptest::option::of(any_wire()),
                        any_rooms(),
                        proptest::option::of(any_wire())
                    ),
                    0..3
                )
            )
                .prop_map(|(request_id, sockets)| Message::FetchSocketsResponse {
                    request_id,
                    sockets: sockets
                        .into_iter()
                        .map(|(id, handshake, rooms, data)| RemoteSocket {
                            id,
                            handshake,
                            rooms,
                            data
                        })
                        .collect(),
                }),
            (any_event(), proptest::option::of(id))
                .prop_map(|(data, request_id)| Message::ServerSideEmit { data, request_id }),
            (id, proptest::option::of(any_wire())).prop_map(|(request_id, packet)| {
                Message::ServerSideEmitResponse { request_id, packet }
            }),
            (id, 0..=i64::MAX as u64).prop_map(|(request_id, client_count)| {
                Message::BroadcastClientCount {
                    request_id,
                    client_count,
                }
            }),
            (id, proptest::option::of(any_wire()))
                .prop_map(|(request_id, packet)| Message::BroadcastAck { request_id, packet }),
        ]
    }

    fn decode_everything(bytes: &[u8]) {
        if let Ok(envelope) = Envelope::decode(bytes) {
            let _ = envelope.disposition(false, "u", "/");
            let _ = super::super::route(&envelope.message, super::super::SubscriptionMode::Dynamic);
            let _ = envelope.encode();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// What this adapter sends, it reads back unchanged, in either encoding.
        #[test]
        fn every_message_round_trips(
            message in any_message(),
            uid in "[0-9a-f]{16}|.{0,20}",
            nsp in "/[a-z]{0,8}",
        ) {
            let envelope = Envelope { uid, nsp, message };
            let bytes = envelope.encode().unwrap();
            prop_assert_eq!(bytes[0] == b'{', !envelope.uses_msgpack());
            prop_assert_eq!(Envelope::decode(&bytes), Ok(envelope));
        }

        /// Any bytes decode to a value or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_everything(&bytes);
        }

        #[test]
        fn arbitrary_json_looking_bytes_never_panic(tail in "[\\[\\]{}:,\"a-z0-9 .-]{0,200}") {
            decode_everything(format!("{{{tail}").as_bytes());
            decode_everything(format!("{{\"type\":3,\"data\":{tail}").as_bytes());
        }

        /// Valid messages cut short or with one byte changed are errors or values, never panics.
        #[test]
        fn mutated_messages_never_panic(
            message in any_message(),
            index in any::<usize>(),
            byte in any::<u8>(),
            cut in any::<usize>(),
        ) {
            let mut bytes = envelope(message).encode().unwrap();
            let i = index % bytes.len();
            bytes[i] = byte;
            bytes.truncate(bytes.len() - cut % bytes.len());
            decode_everything(&bytes);
        }
    }
}
