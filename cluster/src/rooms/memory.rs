//! Room registry of a single node.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    CreateOutcome, JoinOutcome, LeaveOutcome, Member, PurgedMembership, RoomRecord, RoomRegistry,
};
use crate::error::StateResult;
use crate::lock::{MutexGuard, lock};
use crate::retention::Retention;

#[derive(Debug)]
struct RoomEntry {
    record: RoomRecord,
    members: Vec<Member>,
    /// When the room is deleted if nobody has joined it by then.
    unjoined_until: Option<Instant>,
    history: VecDeque<serde_json::Value>,
}

/// Room registry of a single node; each room carries its own history.
#[derive(Debug, Default)]
pub struct MemoryRooms {
    // Vec keeps creation order for `list`; room counts are small enough for linear lookups to be
    // cheaper than keeping a second index in step.
    rooms: Mutex<Vec<RoomEntry>>,
    retention: Retention,
}

impl MemoryRooms {
    /// A registry whose unjoined rooms live `retention.unjoined_room`.
    pub fn new(retention: Retention) -> Self {
        Self {
            rooms: Mutex::default(),
            retention,
        }
    }

    /// The room list with rooms nobody joined in time removed.
    fn swept(&self) -> MutexGuard<'_, Vec<RoomEntry>> {
        let mut rooms = lock(&self.rooms);
        let now = Instant::now();
        rooms.retain(|r| r.unjoined_until.is_none_or(|t| t > now) || !r.members.is_empty());
        rooms
    }

    pub(crate) fn append_history(
        &self,
        room_id: &str,
        message: serde_json::Value,
        capacity: usize,
    ) {
        let mut rooms = lock(&self.rooms);
        // A message for a room that is gone starts no history: a later room of that id starts
        // empty.
        if let Some(room) = rooms.iter_mut().find(|r| r.record.id == room_id) {
            if room.history.len() >= capacity {
                room.history.pop_front();
            }
            room.history.push_back(message);
        }
    }

    pub(crate) fn recent_history(&self, room_id: &str, limit: usize) -> Vec<serde_json::Value> {
        lock(&self.rooms)
            .iter()
            .find(|r| r.record.id == room_id)
            .map(|r| {
                let skip = r.history.len().saturating_sub(limit);
                r.history.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl RoomRegistry for MemoryRooms {
    async fn create_bounded(
        &self,
        room: RoomRecord,
        max_unjoined: usize,
    ) -> StateResult<CreateOutcome> {
        let mut rooms = self.swept();
        if rooms.iter().any(|r| r.record.id == room.id) {
            return Ok(CreateOutcome::Exists);
        }
        let unjoined = rooms
            .iter()
            .filter(|r| r.unjoined_until.is_some() && r.record.created_by == room.created_by)
            .count();
        if unjoined >= max_unjoined {
            return Ok(CreateOutcome::CreatorAtLimit);
        }
        rooms.push(RoomEntry {
            record: room,
            members: Vec::new(),
            unjoined_until: Some(Instant::now() + self.retention.unjoined_room),
            history: VecDeque::new(),
        });
        Ok(CreateOutcome::Created)
    }

    async fn get(&self, room_id: &str) -> StateResult<Option<RoomRecord>> {
        Ok(self
            .swept()
            .iter()
            .find(|r| r.record.id == room_id)
            .map(|r| r.record.clone()))
    }

    async fn list(&self) -> StateResult<Vec<RoomRecord>> {
        Ok(self.swept().iter().map(|r| r.record.clone()).collect())
    }

    async fn count(&self) -> StateResult<usize> {
        Ok(self.swept().len())
    }

    async fn join(&self, room_id: &str, member: Member) -> StateResult<JoinOutcome> {
        let mut rooms = self.swept();
        let Some(room) = rooms.iter_mut().find(|r| r.record.id == room_id) else {
            return Ok(JoinOutcome::NoSuchRoom);
        };
        if room.members.iter().any(|m| m.socket_id == member.socket_id) {
            return Ok(JoinOutcome::AlreadyMember {
                user_count: room.members.len(),
            });
        }
        if room.members.len() >= room.record.max_users as usize {
            return Ok(JoinOutcome::Full);
        }
        room.members.push(member);
        room.unjoined_until = None;
        Ok(JoinOutcome::Joined {
            user_count: room.members.len(),
        })
    }
    async fn leave(&self, room_id: &str, socket_id: &str) -> StateResult<LeaveOutcome> {
        let mut rooms = lock(&self.rooms);
        let Some(idx) = rooms.iter().position(|r| r.record.id == room_id) else {
            return Ok(LeaveOutcome::NotMember);
        };
        let room = &mut rooms[idx];
        let before = room.members.len();
        room.members.retain(|m| m.socket_id != socket_id);
        if room.members.len() == before {
            return Ok(LeaveOutcome::NotMember);
        }
        let user_count = room.members.len();
        let room_deleted = user_count == 0;
        if room_deleted {
            rooms.remove(idx);
        }
        Ok(LeaveOutcome::Left {
            user_count,
            room_deleted,
        })
    }

    async fn members(&self, room_id: &str) -> StateResult<Vec<Member>> {
        Ok(lock(&self.rooms)
            .iter()
            .find(|r| r.record.id == room_id)
            .map(|r| r.members.clone())
            .unwrap_or_default())
    }

    async fn member_count(&self, room_id: &str) -> StateResult<usize> {
        Ok(lock(&self.rooms)
            .iter()
            .find(|r| r.record.id == room_id)
            .map_or(0, |r| r.members.len()))
    }

    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<PurgedMembership>> {
        let mut rooms = lock(&self.rooms);
        let mut purged = Vec::new();
        for room in rooms.iter_mut() {
            let (gone, kept): (Vec<_>, Vec<_>) =
                room.members.drain(..).partition(|m| m.node_id == node_id);
            room.members = kept;
            let user_count = room.members.len();
            for member in gone {
                purged.push(PurgedMembership {
                    room_id: room.record.id.clone(),
                    member,
                    user_count,
                    room_deleted: user_count == 0,
                });
            }
        }
        rooms
            .retain(|r| !(r.members.is_empty() && purged.iter().any(|p| p.room_id == r.record.id)));
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::*;

    #[tokio::test]
    async fn rooms_refuse_duplicates_and_keep_order() {
        let rooms = MemoryRooms::default();
        assert!(rooms.create(room("a", 10)).await.unwrap());
        assert!(rooms.create(room("b", 10)).await.unwrap());
        assert!(!rooms.create(room("a", 5)).await.unwrap());
        assert_eq!(room_ids(&rooms).await, ["a", "b"]);
        assert_eq!(rooms.get("a").await.unwrap().unwrap().max_users, 10);
        rooms.join("b", member("s1", "n")).await.unwrap();
        assert_eq!(
            room_counts(&rooms).await,
            [("a".to_owned(), 0), ("b".to_owned(), 1)]
        );
    }

    #[tokio::test]
    async fn join_enforces_capacity_and_existence() {
        let rooms = MemoryRooms::default();
        rooms.create(room("r", 2)).await.unwrap();
        assert_joins_until_full(&rooms, "r").await;
    }

    #[tokio::test]
    async fn last_leave_deletes_the_room() {
        let rooms = MemoryRooms::default();
        rooms.create(room("r", 5)).await.unwrap();
        rooms.join("r", member("s1", "n")).await.unwrap();
        rooms.join("r", member("s2", "n")).await.unwrap();
        assert_eq!(rooms.count().await.unwrap(), 1);
        assert_leaves_until_deleted(&rooms, "r").await;
        assert_eq!(rooms.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn purge_node_removes_only_that_nodes_members() {
        let rooms = MemoryRooms::default();
        rooms.create(room("r", 5)).await.unwrap();
        rooms.create(room("q", 5)).await.unwrap();
        rooms.join("r", member("s1", "dead")).await.unwrap();
        rooms.join("r", member("s2", "alive")).await.unwrap();
        rooms.join("q", member("s3", "dead")).await.unwrap();
        let purged = rooms.purge_node("dead").await.unwrap();
        assert_eq!(purged.len(), 2);
        assert_eq!(rooms.member_count("r").await.unwrap(), 1);
        assert!(
            rooms.get("q").await.unwrap().is_none(),
            "emptied room is deleted"
        );
        assert!(purged.iter().any(|p| p.room_id == "q" && p.room_deleted));
    }

    #[tokio::test(start_paused = true)]
    async fn rooms_nobody_joins_expire_and_joined_ones_stay() {
        let rooms = MemoryRooms::new(short_retention());
        rooms.create(room("never", 5)).await.unwrap();
        rooms.create(room("joined", 5)).await.unwrap();
        rooms.join("joined", member("s1", "n")).await.unwrap();
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        assert_eq!(rooms.count().await.unwrap(), 2);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(room_ids(&rooms).await, ["joined"]);
        assert_eq!(
            rooms.join("never", member("s2", "n")).await.unwrap(),
            JoinOutcome::NoSuchRoom
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_creator_has_a_bounded_number_of_unjoined_rooms() {
        let rooms = MemoryRooms::new(short_retention());
        let by = |id: &str, user: &str| {
            let mut r = room(id, 5);
            r.created_by = user.to_owned();
            r
        };
        for id in ["m1", "m2"] {
            assert_eq!(
                rooms.create_bounded(by(id, "mallory"), 2).await.unwrap(),
                CreateOutcome::Created
            );
        }
        assert_eq!(
            rooms.create_bounded(by("m3", "mallory"), 2).await.unwrap(),
            CreateOutcome::CreatorAtLimit
        );
        assert_eq!(
            rooms.create_bounded(by("o1", "other"), 2).await.unwrap(),
            CreateOutcome::Created
        );
        rooms.join("m1", member("s1", "n")).await.unwrap();
        assert_eq!(
            rooms.create_bounded(by("m3", "mallory"), 2).await.unwrap(),
            CreateOutcome::Created
        );
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert_eq!(
            rooms.create_bounded(by("m4", "mallory"), 2).await.unwrap(),
            CreateOutcome::Created
        );
    }
}
