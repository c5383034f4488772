//! Which users are online cluster-wide: the record and trait, with the in-memory backend
//! ([`MemoryPresence`]) and the Redis one ([`RedisPresence`]) side by side.

mod memory;
mod redis;
mod spread;

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::MemoryPresence;
pub use redis::RedisPresence;

use crate::error::StateResult;

/// One connected socket of the main namespace, as presence knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineSocket {
    /// The authenticated user.
    pub user_id: String,
    /// Current display name of this socket.
    pub username: String,
    /// Socket.IO socket id.
    pub socket_id: String,
    /// `serverId` of the node holding the socket.
    pub node_id: String,
}

/// A new display name for one socket. Every backend applies it only when the socket is
/// `user_id`'s: renaming someone else's socket changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rename<'a> {
    /// The user asking.
    pub user_id: &'a str,
    /// The socket to rename.
    pub socket_id: &'a str,
    /// Its new display name.
    pub username: &'a str,
}

/// Which users are online, cluster-wide, and through which sockets. Backends implement the
/// storage steps; [`Presence::set_username`] is [`Presence::rename`] for every backend.
#[async_trait]
pub trait Presence: Send + Sync + Debug {
    /// Records a socket. Returns `true` when it is the user's first socket cluster-wide.
    async fn socket_connected(&self, socket: OnlineSocket) -> StateResult<bool>;
    /// Forgets a socket. Returns `true` when it was the user's last socket cluster-wide.
    async fn socket_disconnected(&self, user_id: &str, socket_id: &str) -> StateResult<bool>;
    /// Changes the display name recorded for one socket (see [`Rename`]).
    async fn set_username(
        &self,
        user_id: &str,
        socket_id: &str,
        username: &str,
    ) -> StateResult<()> {
        self.rename(Rename {
            user_id,
            socket_id,
            username,
        })
        .await
    }
    /// The storage step of [`Presence::set_username`].
    async fn rename(&self, rename: Rename<'_>) -> StateResult<()>;
    /// Every online socket, cluster-wide.
    async fn online(&self) -> StateResult<Vec<OnlineSocket>>;
    /// The sockets of one user, cluster-wide (empty when offline).
    async fn sockets_of(&self, user_id: &str) -> StateResult<Vec<OnlineSocket>>;
    /// The socket with this id, wherever it is.
    async fn find_socket(&self, socket_id: &str) -> StateResult<Option<OnlineSocket>>;
    /// Removes every socket a node that is gone held. Returns one entry per user who thereby went
    /// offline (their last remaining socket was on that node).
    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<OnlineSocket>>;
}
