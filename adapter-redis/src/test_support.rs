//! What the unit tests of both wires share: proptest strategies, the sharded decoder driven
//! end to end, and messages several test modules build.

use proptest::prelude::*;

use crate::msgpack::Wire;
use crate::sharded_wire::{Envelope, Message, RemoteSocket, SubscriptionMode, route};

/// Nil, booleans and integers of both msgpack widths (`Int` up to `i64::MAX`, `UInt` above):
/// the leaves every encoding carries unchanged. Weight 4 in a `prop_oneof!` of leaves keeps
/// each of them as likely as one leaf listed on its own.
pub fn any_scalar() -> impl Strategy<Value = Wire> {
    prop_oneof![
        Just(Wire::Nil),
        any::<bool>().prop_map(Wire::Bool),
        any::<i64>().prop_map(Wire::Int),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Wire::UInt),
    ]
}

/// Everything a server does with bytes from a shard channel: decode, decide, route, and
/// encode again. Must never panic.
pub fn decode_sharded(bytes: &[u8]) {
    if let Ok(envelope) = Envelope::decode(bytes) {
        let _ = envelope.disposition(false, "u", "/");
        let _ = route(&envelope.message, SubscriptionMode::Dynamic);
        let _ = envelope.encode();
    }
}

/// The answer `r` to a fetch: one socket `s`, in no room, with `data`.
pub fn one_socket_fetch_answer(data: Option<Wire>) -> Message {
    Message::FetchSocketsResponse {
        request_id: "r".into(),
        sockets: vec![RemoteSocket {
            id: "s".into(),
            handshake: None,
            rooms: vec![],
            data,
        }],
    }
}
