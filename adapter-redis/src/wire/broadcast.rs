//! Broadcasts: msgpack `[uid, {type:2, data, nsp}, {rooms, except, flags}]`, on the namespace
//! channel or, for exactly one room, on that room's channel.

use serde::Serialize;

use super::{Flags, OptsOut, PacketOut, Target, WireError, flags_of, scalar_string, target_of};
use crate::msgpack::{Wire, to_msgpack};

/// A decoded broadcast message.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The sender's uid (`emitter` for `@socket.io/redis-emitter`).
    pub uid: String,
    /// `[event, ...args]`.
    pub data: Wire,
    /// The namespace in the packet (`/` when absent).
    pub nsp: String,
    /// The selection.
    pub target: Target,
    /// The flags.
    pub flags: Flags,
}

/// Encodes a broadcast as the Node adapter does: `[uid, packet, opts]` in msgpack.
pub fn encode_broadcast(
    uid: &str,
    data: &Wire,
    nsp: &str,
    target: &Target,
    flags: Flags,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct BroadcastOut<'a>(&'a str, PacketOut<'a>, OptsOut<'a>);
    to_msgpack(&BroadcastOut(
        uid,
        PacketOut::event(data, nsp),
        OptsOut::new(target, Some(flags.into())),
    ))
}

/// Decodes a broadcast message (msgpack only, as on Node's broadcast channels).
pub fn decode_broadcast(bytes: &[u8]) -> Result<BroadcastMessage, WireError> {
    let wire = Wire::decode(bytes)?;
    let items = wire
        .as_array()
        .ok_or(WireError::Shape("broadcast is not an array"))?;
    let [uid, packet, rest @ ..] = items else {
        return Err(WireError::Shape("broadcast array too short"));
    };
    let uid = scalar_string(uid).unwrap_or_default();
    let data = packet
        .get("data")
        .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()))
        .ok_or(WireError::Shape("broadcast packet without data"))?
        .clone();
    let nsp = packet
        .get("nsp")
        .and_then(Wire::as_str)
        .unwrap_or("/")
        .to_owned();
    let opts = rest.first();
    Ok(BroadcastMessage {
        uid,
        data,
        nsp,
        target: opts.map(target_of).unwrap_or_default(),
        flags: opts.map(flags_of).unwrap_or_default(),
    })
}
