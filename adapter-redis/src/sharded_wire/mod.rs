//! The wire of Node's sharded adapter (`createShardedAdapter` of `@socket.io/redis-adapter`
//! 8.3.0), spoken by `ADAPTER_MODE=sharded` (`docs/sharded-adapter.md`, sections 2 and 4.2).
//!
//! * `message.rs`: the envelope `{type, data, uid, nsp}` and types 3 to 12 as typed values.
//! * `envelope.rs`: the codec (JSON text, or msgpack when binary travels) and the decoder's
//!   bounds, and what a server does with what it receives ([`Envelope::disposition`]).
//! * `route.rs`: which shard channel a message goes to in each [`SubscriptionMode`].
//! * `classic.rs`: sharded messages as the classic wire's kinds and back
//!   ([`Envelope::into_classic`], [`Envelope::of_classic_request`], answer constructors), so
//!   the adapter's local actions and request bookkeeping serve both wires.
//! * `receive.rs`: one call per message from a shard channel ([`receive`]): channel,
//!   decoding, Node's ignore rules, classic kind.
//! * `publish.rs`: one call per message sent ([`publish`]): channel and bytes.
//!
//! Channel names are built by [`crate::channels::ShardedChannels`].

mod classic;
mod envelope;
mod message;
mod publish;
mod receive;
mod route;

#[cfg(test)]
mod golden_tests;

pub use classic::{ClassicForm, NotInShardedWire};
pub use envelope::{
    DEFAULT_MAX_ENVELOPE_BYTES, Disposition, EncodeError, EnvelopeError, IgnoreReason,
    SHARDED_ENVELOPE_DEPTH, SHARDED_MAX_DEPTH,
};

pub use message::{BroadcastFlags, Envelope, Message, Opts, RemoteSocket, message_type};
pub use publish::{Outgoing, PublishError, publish};
pub use receive::{Received, receive};
pub use route::{
    Destination, SubscriptionMode, UnknownSubscriptionMode, looks_like_a_socket_id, route,
    route_fenced,
};

/// A namespace's sharded channels and subscription mode.
#[derive(Debug, Clone)]
pub(crate) struct ShardedNs {
    pub channels: crate::channels::ShardedChannels,
    pub mode: SubscriptionMode,
}
