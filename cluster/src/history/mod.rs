//! Bounded message history per scope (room, user pair, namespace): the scope and trait, with
//! the in-memory backend ([`MemoryHistory`]) and the Redis one ([`RedisHistory`]) side by side.

mod memory;
mod redis;

use std::fmt::Debug;
use std::num::NonZeroUsize;

use async_trait::async_trait;

pub use memory::MemoryHistory;
pub use redis::RedisHistory;

use crate::error::StateResult;

/// Which conversation a stored message belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HistoryScope {
    /// Messages of one room of the main namespace.
    Room(String),
    /// Private messages between two users; built with [`HistoryScope::private`] so the order of
    /// the two ids does not matter.
    Private(String, String),
    /// Messages sent to everyone in a namespace (no room).
    Namespace(String),
}

impl HistoryScope {
    /// The scope of a private conversation between two users, whichever sent.
    pub fn private(a: &str, b: &str) -> Self {
        if a <= b {
            Self::Private(a.to_owned(), b.to_owned())
        } else {
            Self::Private(b.to_owned(), a.to_owned())
        }
    }
}

/// Stored messages (the JSON objects as delivered), oldest first.
pub type Messages = Vec<serde_json::Value>;

/// Bounded message history per scope. Backends implement the storage steps ([`History::append`],
/// [`History::newest`]); what is decided before storage is asked, [`History::recent`] decides
/// once for all of them.
#[async_trait]
pub trait History: Send + Sync + Debug {
    /// Appends a message (the JSON object as delivered), dropping the oldest past the bound.
    async fn append(&self, scope: &HistoryScope, message: serde_json::Value) -> StateResult<()>;

    /// Up to `limit` most recent messages, oldest first: none for a limit of 0, without asking
    /// the backend.
    async fn recent(&self, scope: &HistoryScope, limit: usize) -> StateResult<Messages> {
        match NonZeroUsize::new(limit) {
            Some(limit) => self.newest(scope, limit).await,
            None => Ok(Messages::new()),
        }
    }

    /// The storage step of [`History::recent`]: up to `limit` most recent messages of
    /// `scope`, oldest first.
    async fn newest(&self, scope: &HistoryScope, limit: NonZeroUsize) -> StateResult<Messages>;
}
