//! Fixtures and assertions shared by the in-memory backends' unit tests and the Redis integration
//! tests, so that both backends are held to one written-down set of expectations.
//!
//! Compiled for the crate's own unit tests and, through the `test-support` feature (which the
//! crate enables for itself as a dev-dependency), for its integration tests; never in a normal
//! build.

// A failed backend call is the test's failure; there is nothing to recover.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};

use crate::retention::Retention;
use crate::state::{
    Ban, JoinOutcome, LeaveOutcome, Member, OnlineSocket, RoomRecord, RoomRegistry,
};
use crate::stats::{NamespaceConnections, NodeStats};

/// A public room `id` with room for `max` members.
pub fn room(id: &str, max: u32) -> RoomRecord {
    RoomRecord {
        id: id.into(),
        name: format!("Room {id}"),
        is_private: false,
        password_hash: None,
        max_users: max,
        created_at: Utc::now(),
        created_by: "creator".into(),
    }
}

/// Socket `sid` of user `user-<sid>` on `node`, as a room member.
pub fn member(sid: &str, node: &str) -> Member {
    Member {
        socket_id: sid.into(),
        user_id: format!("user-{sid}"),
        username: format!("name-{sid}"),
        node_id: node.into(),
    }
}

/// Socket `sid` of user `uid` on `node`, as presence knows it.
pub fn online(uid: &str, sid: &str, node: &str) -> OnlineSocket {
    OnlineSocket {
        user_id: uid.into(),
        username: format!("name-{uid}"),
        socket_id: sid.into(),
        node_id: node.into(),
    }
}

/// A ban of `user_id` by `admin`, made at `created_at`, lapsing at `expires_at`.
pub fn ban(
    user_id: &str,
    reason: &str,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Ban {
    Ban {
        user_id: user_id.into(),
        reason: reason.into(),
        banned_by: "admin".into(),
        created_at,
        expires_at,
    }
}

/// Node `id`'s stats record with these `connections` and fixed other figures: host `host-<id>`,
/// up 1h2m5s, 2 rooms, 10 events in and 20 out, 10 MiB resident.
pub fn node_stats(id: &str, connections: NamespaceConnections) -> NodeStats {
    NodeStats {
        server_id: id.into(),
        hostname: format!("host-{id}"),
        version: "0.1.0".into(),
        uptime_secs: 3725,
        load: crate::Load {
            total_connections: connections.total(),
            connections,
            rooms: 2,
            messages_in: 10,
            messages_out: 20,
            rss_bytes: 10 * 1024 * 1024,
        },
        started_at: Utc::now(),
        last_seen: Utc::now(),
        liveness_ttl_ms: None,
    }
}

/// The ids of every room, in the order [`RoomRegistry::list`] gives them.
pub async fn room_ids(rooms: &dyn RoomRegistry) -> Vec<String> {
    rooms
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// `(id, member count)` of every room, in the order [`RoomRegistry::list_with_counts`] gives them.
pub async fn room_counts(rooms: &dyn RoomRegistry) -> Vec<(String, usize)> {
    rooms
        .list_with_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(r, n)| (r.id, n))
        .collect()
}

/// Fills `room_id` (existing, empty, with room for two) and checks every join outcome on the way:
/// a missing room, a first join, the same socket again, a second member, and one too many.
/// Leaves `member("s1", "a")` and `member("s2", "b")` in the room.
pub async fn assert_joins_until_full(rooms: &dyn RoomRegistry, room_id: &str) {
    assert_eq!(
        rooms.join("nope", member("s0", "a")).await.unwrap(),
        JoinOutcome::NoSuchRoom
    );
    assert_eq!(
        rooms.join(room_id, member("s1", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    assert_eq!(
        rooms.join(room_id, member("s1", "a")).await.unwrap(),
        JoinOutcome::AlreadyMember { user_count: 1 }
    );
    assert_eq!(
        rooms.join(room_id, member("s2", "b")).await.unwrap(),
        JoinOutcome::Joined { user_count: 2 }
    );
    assert_eq!(
        rooms.join(room_id, member("s3", "a")).await.unwrap(),
        JoinOutcome::Full
    );
}

/// Empties `room_id`, whose members are exactly sockets `s1` and `s2`, checking that a stranger's
/// leave changes nothing, the first leave keeps the room, and the last one deletes it.
pub async fn assert_leaves_until_deleted(rooms: &dyn RoomRegistry, room_id: &str) {
    assert_eq!(
        rooms.leave(room_id, "s9").await.unwrap(),
        LeaveOutcome::NotMember
    );
    assert_eq!(
        rooms.leave(room_id, "s1").await.unwrap(),
        LeaveOutcome::Left {
            user_count: 1,
            room_deleted: false
        }
    );
    assert_eq!(
        rooms.leave(room_id, "s2").await.unwrap(),
        LeaveOutcome::Left {
            user_count: 0,
            room_deleted: true
        }
    );
    assert!(rooms.get(room_id).await.unwrap().is_none());
}

/// Retention short enough for paused-clock tests: unjoined rooms 60 s, histories and game
/// counters an hour.
pub fn short_retention() -> Retention {
    Retention {
        unjoined_room: std::time::Duration::from_secs(60),
        history: std::time::Duration::from_secs(3600),
        game_sequence: std::time::Duration::from_secs(3600),
    }
}

/// A node registry whose `withdraw` never answers, like a Redis that hangs: for tests of a caller
/// that must give up on a stuck step.
#[derive(Debug, Default)]
pub struct HangingWithdraw;

#[async_trait::async_trait]
impl crate::NodeRegistry for HangingWithdraw {
    async fn publish(&self, _: &NodeStats) -> crate::StateResult<()> {
        Ok(())
    }
    async fn withdraw(&self, _: &str) -> crate::StateResult<()> {
        std::future::pending().await
    }
    async fn live_nodes(&self) -> crate::StateResult<Vec<NodeStats>> {
        Ok(Vec::new())
    }
}
