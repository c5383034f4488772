//! The records of the rooms this node's sockets joined, so a node can re-register them after
//! Redis lost its data (see `actions::cluster::resync`).

use std::collections::HashMap;
use std::sync::Mutex;

use cluster::RoomRecord;

/// Records of rooms that this node's sockets joined, by room id. Entries for rooms without a
/// local member are dropped at each re-registration, so the map stays as small as the set of
/// rooms this node takes part in.
#[derive(Debug, Default)]
pub struct JoinedRooms(Mutex<HashMap<String, RoomRecord>>);

impl JoinedRooms {
    /// Remembers a room a local socket joined.
    pub fn remember(&self, room: &RoomRecord) {
        self.lock().insert(room.id.clone(), room.clone());
    }

    /// Forgets a room once no local socket is in it, so joining and leaving rooms cannot grow
    /// the map. `in_use` is asked under the map's lock: a socket that joins meanwhile (it joins,
    /// then remembers) either is seen by it or remembers the room again after.
    pub fn forget_unless(&self, room_id: &str, in_use: impl FnOnce() -> bool) {
        let mut records = self.lock();
        if !in_use() {
            records.remove(room_id);
        }
    }

    /// Rooms remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no room is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomRecord>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_rooms_forget_rooms_no_local_socket_is_in() {
        let rooms = JoinedRooms::default();
        for id in ["a", "b"] {
            rooms.remember(&cluster::test_support::room(id, 5));
        }
        rooms.forget_unless("a", || true);
        assert_eq!(rooms.len(), 2, "a room still in use is kept");
        rooms.forget_unless("a", || false);
        rooms.forget_unless("b", || false);
        assert!(rooms.is_empty());
    }
}
