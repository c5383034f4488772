//! The traits through which the gateway reads and writes cluster-wide state, and their records.
//!
//! Every method is a single logical operation that the backend performs atomically with respect to
//! other nodes (a Redis backend uses a script or a transaction where a check and a write must not
//! be split). Errors mean the backend could not answer; a "no" (room missing, room full, not a
//! member) is a value, not an error.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a state backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached (Redis down, connection lost).
    #[error("cluster state is unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("cluster state backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt cluster state record: {0}")]
    Corrupt(String),
}

/// Result of every state operation.
pub type StateResult<T> = Result<T, StateError>;

/// A room of the main namespace as registered cluster-wide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRecord {
    /// The room id chosen by its creator (1..50 characters).
    pub id: String,
    /// Display name (1..100 characters).
    pub name: String,
    /// Private rooms are not listed by `get rooms` and need the password to join.
    pub is_private: bool,
    /// Salted hash (PHC string) of the password; never sent to any client.
    pub password_hash: Option<String>,
    /// Most members at once, cluster-wide.
    pub max_users: u32,
    /// When the room was created.
    pub created_at: DateTime<Utc>,
    /// `userId` of the creator.
    pub created_by: String,
}

/// One socket's membership in a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Socket.IO socket id.
    pub socket_id: String,
    /// The authenticated user behind the socket.
    pub user_id: String,
    /// Display name at the time of joining.
    pub username: String,
    /// `serverId` of the node holding the socket, so a dead node's members can be purged.
    pub node_id: String,
}

/// What [`RoomRegistry::join`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The socket is now a member; `user_count` includes it.
    Joined {
        /// Members after the join.
        user_count: usize,
    },
    /// The socket was a member already; nothing changed.
    AlreadyMember {
        /// Members now.
        user_count: usize,
    },
    /// No room has that id.
    NoSuchRoom,
    /// The room holds `max_users` members already.
    Full,
}

/// What [`RoomRegistry::create_bounded`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The room exists now.
    Created,
    /// A room of that id exists already; nothing changed.
    Exists,
    /// The creator has as many unjoined rooms as allowed; nothing changed.
    CreatorAtLimit,
}

/// What [`RoomRegistry::leave`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// The socket left; `user_count` members remain. `room_deleted` is true when that was the last
    /// member and the room is gone cluster-wide.
    Left {
        /// Members remaining.
        user_count: usize,
        /// The room was deleted because it became empty.
        room_deleted: bool,
    },
    /// The socket was not a member (or the room does not exist); nothing changed.
    NotMember,
}

/// A membership removed by [`RoomRegistry::purge_node`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgedMembership {
    /// The room the member was in.
    pub room_id: String,
    /// The removed member.
    pub member: Member,
    /// Members remaining after the purge.
    pub user_count: usize,
    /// The room was deleted because it became empty.
    pub room_deleted: bool,
}

/// The cluster-wide room registry of the main namespace.
#[async_trait]
pub trait RoomRegistry: Send + Sync + Debug {
    /// Registers a room; `false` (and no change) when the id is taken.
    async fn create(&self, room: RoomRecord) -> StateResult<bool> {
        Ok(self.create_bounded(room, usize::MAX).await? == CreateOutcome::Created)
    }
    /// Registers a room unless the id is taken or its creator (`created_by`) already has
    /// `max_unjoined` rooms that nobody has joined yet; the check and the insert are one step.
    async fn create_bounded(
        &self,
        room: RoomRecord,
        max_unjoined: usize,
    ) -> StateResult<CreateOutcome>;
    /// The room with this id.
    async fn get(&self, room_id: &str) -> StateResult<Option<RoomRecord>>;
    /// Every room, private ones included, in creation order.
    async fn list(&self) -> StateResult<Vec<RoomRecord>>;
    /// How many rooms exist. Backends answer it without listing them where they can.
    async fn count(&self) -> StateResult<usize> {
        Ok(self.list().await?.len())
    }
    /// Adds a member unless the room is missing or full. The capacity check and the insert are
    /// one atomic step cluster-wide.
    async fn join(&self, room_id: &str, member: Member) -> StateResult<JoinOutcome>;
    /// Removes a member; deletes the room when it was the last one.
    async fn leave(&self, room_id: &str, socket_id: &str) -> StateResult<LeaveOutcome>;
    /// The room's members, in joining order.
    async fn members(&self, room_id: &str) -> StateResult<Vec<Member>>;
    /// How many members the room has (0 when it does not exist).
    async fn member_count(&self, room_id: &str) -> StateResult<usize>;
    /// Removes every membership held by a node that is gone, deleting rooms that become empty.
    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<PurgedMembership>>;
    /// Every room with its member count, in creation order (for `get rooms`). Backends answer it
    /// in one step where they can; the default asks [`RoomRegistry::member_count`] per room.
    async fn list_with_counts(&self) -> StateResult<Vec<(RoomRecord, usize)>> {
        let mut out = Vec::new();
        for room in self.list().await? {
            let count = self.member_count(&room.id).await?;
            out.push((room, count));
        }
        Ok(out)
    }
}

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

/// Which users are online, cluster-wide, and through which sockets.
#[async_trait]
pub trait Presence: Send + Sync + Debug {
    /// Records a socket. Returns `true` when it is the user's first socket cluster-wide.
    async fn socket_connected(&self, socket: OnlineSocket) -> StateResult<bool>;
    /// Forgets a socket. Returns `true` when it was the user's last socket cluster-wide.
    async fn socket_disconnected(&self, user_id: &str, socket_id: &str) -> StateResult<bool>;
    /// Changes the display name recorded for one socket.
    async fn set_username(&self, user_id: &str, socket_id: &str, username: &str)
    -> StateResult<()>;
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

/// A ban of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    /// The banned user.
    pub user_id: String,
    /// Why; shown to the user as `Banned: <reason>`.
    pub reason: String,
    /// `userId` of the admin (or `api`) who banned.
    pub banned_by: String,
    /// When the ban was made.
    pub created_at: DateTime<Utc>,
    /// When it lapses; `None` is permanent.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Ban {
    /// Whether the ban is in force at `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// Bans, cluster-wide, with expiry.
#[async_trait]
pub trait BanList: Send + Sync + Debug {
    /// Stores (or replaces) a ban.
    async fn ban(&self, ban: Ban) -> StateResult<()>;
    /// Lifts a ban; `true` when there was one.
    async fn unban(&self, user_id: &str) -> StateResult<bool>;
    /// The ban in force for this user, if any (expired bans are never returned).
    async fn active(&self, user_id: &str) -> StateResult<Option<Ban>>;
}

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

/// Bounded message history per scope.
#[async_trait]
pub trait History: Send + Sync + Debug {
    /// Appends a message (the JSON object as delivered), dropping the oldest past the bound.
    async fn append(&self, scope: &HistoryScope, message: serde_json::Value) -> StateResult<()>;
    /// Up to `limit` most recent messages, oldest first.
    async fn recent(
        &self,
        scope: &HistoryScope,
        limit: usize,
    ) -> StateResult<Vec<serde_json::Value>>;
}

/// Per-game sequence numbers that increase by one, cluster-wide, with no gaps or repeats.
#[async_trait]
pub trait GameSequence: Send + Sync + Debug {
    /// The next number of this game (1 for its first action).
    async fn next(&self, game_id: &str) -> StateResult<u64>;
}

/// How long state that clients create lives once nobody uses it, so no client can make shared
/// state grow without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A room nobody has joined is deleted this long after its creation.
    pub unjoined_room: std::time::Duration,
    /// A history scope (room, user pair, namespace) with no new message is forgotten after this.
    pub history: std::time::Duration,
    /// A game's sequence counter with no action is forgotten after this (the game then starts
    /// again at 1).
    pub game_sequence: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            unjoined_room: std::time::Duration::from_secs(600),
            history: std::time::Duration::from_secs(7 * 24 * 3600),
            game_sequence: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// The set of backends the gateway runs with, chosen once at start-up.
#[derive(Clone, Debug)]
pub struct StateBackends {
    /// Room registry.
    pub rooms: Arc<dyn RoomRegistry>,
    /// Online users.
    pub presence: Arc<dyn Presence>,
    /// Bans.
    pub bans: Arc<dyn BanList>,
    /// Message history.
    pub history: Arc<dyn History>,
    /// Game sequence numbers.
    pub games: Arc<dyn GameSequence>,
    /// Node statistics and liveness.
    pub nodes: Arc<dyn crate::NodeRegistry>,
}
