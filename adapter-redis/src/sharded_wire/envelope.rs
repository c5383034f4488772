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
use crate::msgpack::{MAX_EVENT_DATA_DEPTH, Wire, to_msgpack};
use crate::wire::{
    DisconnectOut, FlagsOut, OptsOut, PacketOut, RoomsChangeOut, Target, WireError,
    contains_binary, decode_any_with_max_depth, scalar_string,
};

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
    /// Not valid msgpack or JSON (or nested too deeply), or valid but not the shape of an
    /// envelope of this type: the classic wire's reasons.
    #[error(transparent)]
    Wire(#[from] WireError),
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
        let wire = decode_any_with_max_depth(bytes, SHARDED_MAX_DEPTH)?;
        if !matches!(wire, Wire::Map(_)) {
            return Err(shape("message is not a map"));
        }
        let kind = wire
            .get("type")
            .and_then(Wire::as_i64)
            .ok_or_else(|| shape("message without a numeric type"))?;
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

/// Valid encoding, but not the shape of an envelope of this type.
fn shape(why: &'static str) -> EnvelopeError {
    EnvelopeError::Wire(WireError::Shape(why))
}

/// Reads `data` of a message of type `kind`, field by field.
fn read_message(kind: i64, data: Option<&Wire>) -> Result<Message, EnvelopeError> {
    let data = match data {
        Some(data @ Wire::Map(_)) => data,
        _ if !(t::BROADCAST..=t::BROADCAST_ACK).contains(&kind) => {
            return Err(EnvelopeError::UnknownType(kind));
        }
        _ => return Err(shape("message without a data map")),
    };
    let request_id = || data.get("requestId").and_then(scalar_string);
    let need_request_id =
        || request_id().ok_or_else(|| shape("answer or request without requestId"));
    let opts = || data.get("opts").map(opts_of).unwrap_or_default();
    let rooms = || {
        data.get("rooms")
            .and_then(Wire::as_array)
            .map(string_list)
            .ok_or_else(|| shape("join or leave without a rooms array"))
    };
    Ok(match kind {
        t::BROADCAST => {
            let packet = data
                .get("packet")
                .ok_or_else(|| shape("broadcast without packet"))?;
            Message::Broadcast {
                data: event_array(packet.get("data"))
                    .ok_or_else(|| shape("broadcast packet without event data"))?,
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
                .ok_or_else(|| shape("fetch answer without a sockets array"))?
                .iter()
                .filter_map(remote_socket_of)
                .collect(),
        },
        t::SERVER_SIDE_EMIT => Message::ServerSideEmit {
            data: event_array(data.get("packet"))
                .ok_or_else(|| shape("server-side emit without event data"))?,
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
                .ok_or_else(|| shape("client count that is not a count"))?,
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
    Rooms(RoomsChangeOut<'a>),
    Disconnect(DisconnectOut<'a>),
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
                packet: PacketOut::event_without_nsp(data),
                request_id: request_id.as_deref(),
                opts: opts_out(opts),
            },
            Message::SocketsJoin { opts, rooms } | Message::SocketsLeave { opts, rooms } => {
                DataOut::Rooms(RoomsChangeOut {
                    opts: opts_out(opts),
                    rooms,
                })
            }
            Message::DisconnectSockets { opts, close } => DataOut::Disconnect(DisconnectOut {
                opts: opts_out(opts),
                close: *close,
            }),
            Message::FetchSockets { opts, request_id } => DataOut::Fetch {
                opts: opts_out(opts),
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

/// `{rooms, except, flags}`: Node always sends `flags`, `{}` when none is set.
fn opts_out(opts: &Opts) -> OptsOut<'_> {
    let flags = &opts.flags;
    let flags = FlagsOut::new(flags.volatile, flags.compress, flags.timeout_ms);
    OptsOut::new(&opts.target, Some(flags))
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
#[path = "envelope_tests.rs"]
mod tests;
