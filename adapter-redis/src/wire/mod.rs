//! The messages of `@socket.io/redis-adapter` 8.x (classic protocol), encoded and decoded.
//!
//! * Broadcasts (`broadcast.rs`): msgpack `[uid, {type:2, data, nsp}, {rooms, except, flags}]`.
//! * Requests (`request.rs`) and responses (`response.rs`): JSON, except BROADCAST (type 7)
//!   requests and BROADCAST_ACK (type 9) responses, which are msgpack. Decoders look at the
//!   first byte: `{` is JSON.
//!
//! What this adapter sends has a fixed shape: typed structs serialized by `rmp-serde`
//! (msgpack) or `serde_json` (JSON), field order as Node writes it. What it reads comes from
//! peers of several versions (numbers as rooms, fields missing or extra), so it is decoded as a
//! [`Wire`] value and read field by field.
//!
//! Extensions that Node peers ignore: responses from this adapter carry a `uid` field (so
//! requesters can de-duplicate per peer), and ALL_ROOMS requests may carry `opts` (Node peers
//! answer with all their rooms; this adapter answers with the rooms of the selected sockets).

mod broadcast;
mod out;
mod request;
mod response;

use bytes::Bytes;
use serde::Serialize;

use crate::json;
use crate::msgpack::{DecodeError, MAX_DEPTH, Wire};

pub use broadcast::{BroadcastMessage, decode_broadcast, encode_broadcast};
pub use request::{AckBroadcast, Request};
pub use response::{
    FetchedSocket, Response, broadcast_ack_response, client_count_response, fetch_response,
    legacy_ack_response, rooms_response, server_side_ack_response, socket_ids_response,
};

pub(crate) use out::{DisconnectOut, FlagsOut, OptsOut, PacketOut, RoomsChangeOut};

pub use crate::msgpack::{ENVELOPE_DEPTH, MAX_EVENT_DATA_DEPTH};

/// Request types of the classic protocol (the numbers are on the wire).
pub mod request_type {
    /// Legacy `sockets(rooms)`.
    pub const SOCKETS: i64 = 0;
    /// `allRooms()`.
    pub const ALL_ROOMS: i64 = 1;
    /// `socketsJoin`.
    pub const REMOTE_JOIN: i64 = 2;
    /// `socketsLeave`.
    pub const REMOTE_LEAVE: i64 = 3;
    /// `disconnectSockets`.
    pub const REMOTE_DISCONNECT: i64 = 4;
    /// `fetchSockets`.
    pub const REMOTE_FETCH: i64 = 5;
    /// `serverSideEmit`.
    pub const SERVER_SIDE_EMIT: i64 = 6;
    /// Broadcast with acks.
    pub const BROADCAST: i64 = 7;
    /// Client count answer to a broadcast with acks.
    pub const BROADCAST_CLIENT_COUNT: i64 = 8;
    /// One client ack answer to a broadcast with acks.
    pub const BROADCAST_ACK: i64 = 9;
}

/// Why a message from Redis was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not valid msgpack.
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] DecodeError),
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid encoding, but not the expected shape.
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
}

/// Which sockets a message is for: the union of `rooms` (all sockets if empty) minus every
/// socket in any `except` room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Rooms to reach; empty means the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms whose sockets are excluded.
    pub except: Vec<String>,
}

/// Broadcast flags this adapter understands (others are ignored when decoding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Drop the packet for clients that cannot take it right now.
    pub volatile: bool,
    /// Ack timeout in milliseconds (broadcast with acks only).
    pub timeout_ms: Option<u64>,
}

/// Serializes a JSON message. Serializing these structs cannot fail (string keys, no
/// non-string map keys in what JSON peers sent), but an error is logged, never a panic.
fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "JSON encoding failed");
        Vec::new()
    })
}

/// A room or uid as JavaScript's `String(x)` would give it (numbers are valid rooms in Node).
pub fn scalar_string(value: &Wire) -> Option<String> {
    match value {
        Wire::Str(s) => Some(s.clone()),
        Wire::Int(i) => Some(i.to_string()),
        Wire::UInt(u) => Some(u.to_string()),
        Wire::F64(f) => Some(json::js_number(*f)),
        _ => None,
    }
}

fn string_list(value: Option<&Wire>) -> Vec<String> {
    let mut out: Vec<String> = value
        .and_then(Wire::as_array)
        .map(|items| items.iter().filter_map(scalar_string).collect())
        .unwrap_or_default();
    out.dedup();
    out
}

fn target_of(opts: &Wire) -> Target {
    Target {
        rooms: string_list(opts.get("rooms")),
        except: string_list(opts.get("except")),
    }
}

fn flags_of(opts: &Wire) -> Flags {
    let flags = opts.get("flags");
    Flags {
        volatile: flags.and_then(|f| f.get("volatile")) == Some(&Wire::Bool(true)),
        timeout_ms: flags
            .and_then(|f| f.get("timeout"))
            .and_then(Wire::as_i64)
            .and_then(|t| u64::try_from(t).ok()),
    }
}

/// Decodes JSON (first byte `{`) or msgpack into a [`Wire`] value.
pub fn decode_any(bytes: &[u8]) -> Result<Wire, WireError> {
    decode_any_with_max_depth(bytes, MAX_DEPTH)
}

/// [`decode_any`] with another nesting limit (the top value is at depth 0), for messages
/// that put more levels above their event data than the classic ones do.
pub(crate) fn decode_any_with_max_depth(bytes: &[u8], max_depth: usize) -> Result<Wire, WireError> {
    if bytes.first() == Some(&b'{') {
        let text = std::str::from_utf8(bytes).map_err(|e| WireError::Json(e.to_string()))?;
        json::from_json_with_max_depth(text, max_depth).map_err(|e| WireError::Json(e.to_string()))
    } else {
        Ok(Wire::decode_with_max_depth(bytes, max_depth)?)
    }
}

/// Data for JSON messages that cannot carry binaries: a `Bin` would be lost, so reject.
pub fn contains_binary(value: &Wire) -> bool {
    match value {
        Wire::Bin(_) | Wire::Ext(..) => true,
        Wire::Array(items) => items.iter().any(contains_binary),
        Wire::Map(entries) => entries
            .iter()
            .any(|(k, v)| contains_binary(k) || contains_binary(v)),
        _ => false,
    }
}

/// Convenience for tests and benches: the bytes of a `Bytes` as a slice.
pub fn as_slice(bytes: &Bytes) -> &[u8] {
    bytes.as_ref()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::json::{from_event_json, from_json};
    use crate::wire;

    /// `["ev", [[...[1]...]]]` with the `1` at `level` (the event array is level 0).
    fn event_with_value_at(level: usize) -> String {
        let inner = level - 1;
        format!(r#"["ev",{}1{}]"#, "[".repeat(inner), "]".repeat(inner))
    }

    #[test]
    fn the_encoder_accepts_exactly_the_event_data_every_peer_decodes() {
        let deepest = event_with_value_at(MAX_EVENT_DATA_DEPTH);
        let data = from_event_json(&deepest, &[]).unwrap();
        let message =
            wire::encode_broadcast("u", &data, "/game", &Target::default(), Flags::default());
        assert_eq!(wire::decode_broadcast(&message).unwrap().data, data);

        let too_deep = event_with_value_at(MAX_EVENT_DATA_DEPTH + 1);
        assert!(from_event_json(&too_deep, &[]).is_err());
        // Had it been published, no peer could have read it: the limit is the decoder's.
        let data = from_json(&too_deep, &[]).unwrap();
        let message =
            wire::encode_broadcast("u", &data, "/game", &Target::default(), Flags::default());
        assert!(wire::decode_broadcast(&message).is_err());
    }
}
