//! Errors of the adapter.

use std::time::Duration;

/// Answers a cluster-wide request did not get before its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingResponses {
    /// The operation (`fetch_sockets`, `rooms`, `server_side_emit_with_ack`,
    /// `broadcast_with_ack`).
    pub operation: &'static str,
    /// Answers expected (other nodes subscribed to the request channel when it was sent).
    pub expected: usize,
    /// Answers received.
    pub received: usize,
    /// Uids of nodes seen recently (from their traffic) that did not answer. Node.js peers do
    /// not put their uid in responses, so they are only counted, never named.
    pub silent_peers: Vec<String>,
    /// How long the request waited.
    pub waited: Duration,
}

impl std::fmt::Display for MissingResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} of {} answers after {:?}",
            self.operation, self.received, self.expected, self.waited
        )?;
        if !self.silent_peers.is_empty() {
            write!(f, "; silent peers: {}", self.silent_peers.join(", "))?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the adapter.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A Redis command or connection failed.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// Redis is not reachable right now.
    #[error("redis is not connected")]
    NotConnected,
    /// A request ended at its deadline; the answers received are in [`crate::Gathered`].
    #[error("missing answers: {0}")]
    MissingResponses(MissingResponses),
    /// The publish queue is full.
    #[error("publish queue full")]
    QueueFull,
    /// Too many requests are waiting for answers in this namespace.
    #[error("too many pending requests ({0})")]
    TooManyPendingRequests(usize),
    /// The packet or value cannot be expressed on the Node wire.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The namespace name contains `#`, which the channel scheme uses as a separator.
    #[error("namespace `{0}` contains `#`")]
    MalformedNamespace(String),
    /// The adapter was built with `RedisAdapterCtr::local()`.
    #[error("the adapter has no Redis connection")]
    LocalOnly,
    /// The Redis server or the transport cannot do what was asked (sharded pub/sub on a Redis
    /// older than 7, a pattern subscription in sharded mode).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The adapter has been shut down.
    #[error("adapter shut down")]
    Closed,
}

impl From<AdapterError> for socketioxide_core::adapter::errors::AdapterError {
    fn from(err: AdapterError) -> Self {
        Self(Box::new(err))
    }
}
