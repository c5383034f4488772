//! The cluster-wide room registry of the main namespace: its records and trait, with the
//! in-memory backend ([`MemoryRooms`]) and the Redis one ([`RedisRooms`]) side by side.

mod memory;
mod redis;
pub(crate) mod spread;

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use memory::MemoryRooms;
pub use redis::RedisRooms;

use crate::error::StateResult;

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
