//! The room channels this node subscribes to: the rooms its sockets hold (checked after
//! joins, on request and periodically), subscribed and unsubscribed as they change.

use std::collections::HashSet;
use std::time::Instant;

use socketioxide_core::Sid;
use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions, Room, SocketEmitter};

use super::{RedisAdapter, Remote};
use crate::locks::lock;
use crate::metrics::inc;
use crate::namespace::MAX_PENDING_REMOTE_JOINS;

impl<E: SocketEmitter> RedisAdapter<E> {
    pub(super) fn request_sync(&self) {
        if let Some(remote) = &self.remote {
            remote.core.sync_now.notify_one();
        }
    }

    pub(super) async fn subscribe_rooms(
        &self,
        remote: &Remote,
        rooms: impl Iterator<Item = &String>,
    ) {
        if !remote.core.uses_room_channels() {
            return;
        }
        let added: Vec<String> = {
            let mut subscribed = lock(&remote.core.subscribed_rooms);
            rooms
                .filter(|room| !remote.core.room_covered_by_pattern(room))
                .filter(|room| subscribed.insert((*room).clone()))
                .cloned()
                .collect()
        };
        let core = &remote.core;
        remote
            .shared
            .subscribe(added.iter().map(|r| core.room_channel(r)).collect())
            .await;
        self.measure_remote_joins(remote, &added);
    }

    /// Unsubscribes the channels of `rooms` that no local socket other than `leaving` holds
    /// (members still connecting count; a socket's own id is held while it is connected).
    pub(super) async fn release_rooms(&self, remote: &Remote, leaving: &str, rooms: &[String]) {
        if !remote.core.uses_room_channels() {
            return;
        }
        let leaving = leaving.parse::<Sid>().ok();
        let held_by_others = |room: &String| {
            let mut members = BroadcastOptions::default();
            members.rooms.push(Room::from(room.clone()));
            let member = self
                .local
                .sockets(members)
                .into_iter()
                .any(|sid| Some(sid) != leaving);
            let own = remote.core.wants_socket_channels()
                && self
                    .is_local_sid(room)
                    .is_some_and(|sid| Some(sid) != leaving);
            member || own
        };
        let released: Vec<String> = rooms
            .iter()
            .filter(|room| !remote.core.room_covered_by_pattern(room) && !held_by_others(room))
            .cloned()
            .collect();
        let remove: Vec<String> = {
            let mut subscribed = lock(&remote.core.subscribed_rooms);
            released
                .into_iter()
                .filter(|room| subscribed.remove(room))
                .collect()
        };
        if remove.is_empty() {
            return;
        }
        lock(&remote.core.pinned_rooms).retain(|room| !remove.contains(room));
        lock(&remote.core.remote_joins).retain(|room, _| !remove.contains(room));
        let core = &remote.core;
        remote
            .shared
            .unsubscribe(remove.iter().map(|r| core.room_channel(r)).collect())
            .await;
    }

    /// Which of `rooms` some local socket holds, among those with channels of their own.
    pub(super) fn held_by_local_sockets(&self, remote: &Remote, rooms: &[Room]) -> Vec<String> {
        if !remote.core.uses_room_channels() {
            return Vec::new();
        }
        rooms
            .iter()
            .filter(|room| !remote.core.room_covered_by_pattern(room))
            .filter(|room| {
                let mut members = BroadcastOptions::default();
                members.rooms.push((*room).clone());
                !self.local.sockets(members).is_empty()
            })
            .map(|room| room.to_string())
            .collect()
    }

    /// Notes when rooms joined by another node's request were applied here, so that the time
    /// until their subscription is compared with the join fence.
    pub(super) fn note_remote_joins(&self, remote: &Remote, rooms: &[Room]) {
        if remote.core.join_fence.is_zero() {
            return;
        }
        let held = self.held_by_local_sockets(remote, rooms);
        let now = Instant::now();
        let subscribed = lock(&remote.core.subscribed_rooms);
        let mut pending = lock(&remote.core.remote_joins);
        for room in held {
            if !subscribed.contains(&room) && pending.len() < MAX_PENDING_REMOTE_JOINS {
                pending.entry(room).or_insert(now);
            }
        }
    }

    /// Counts in `join_fence_late` the remote joins among `subscribed` (just confirmed) that
    /// took longer than the join fence.
    fn measure_remote_joins(&self, remote: &Remote, subscribed: &[String]) {
        if remote.core.join_fence.is_zero() || subscribed.is_empty() {
            return;
        }
        let mut pending = lock(&remote.core.remote_joins);
        if pending.is_empty() {
            return;
        }
        for room in subscribed {
            if let Some(applied) = pending.remove(room)
                && applied.elapsed() > remote.core.join_fence
            {
                inc(&remote.shared.metrics.join_fence_late);
                tracing::warn!(
                    room = %room,
                    waited_ms = applied.elapsed().as_millis(),
                    "a remote join was subscribed after the join fence ended"
                );
            }
        }
    }

    /// Subscribes to the channel of each room the local sockets hold and unsubscribes from
    /// rooms no longer held.
    ///
    /// A pinned room (see [`crate::RedisAdapterCtr::sync_rooms_with`]) stays subscribed while
    /// one of its members may still connect: the pin is kept while the room has a member that
    /// was not connected when this round looked, and dropped once every member was (the room
    /// is then held like any other) or it has none left (the socket is gone). Deciding from
    /// the connected sockets seen before looking at the pins, not from the rooms they held,
    /// keeps a member that joins while another leaves from losing the room's subscription.
    pub(super) async fn sync_rooms(&self, remote: &Remote) {
        if !remote.core.uses_room_channels() {
            return;
        }
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Broadcast);
        let connected: HashSet<Sid> = self.local.sockets(opts.clone()).into_iter().collect();
        let mut held: HashSet<String> = self
            .local
            .rooms(opts)
            .into_iter()
            .map(|r| r.to_string())
            .filter(|r| !remote.core.room_covered_by_pattern(r))
            .collect();
        if remote.core.wants_socket_channels() {
            held.extend(connected.iter().map(Sid::to_string));
        }
        {
            lock(&remote.core.pinned_rooms).retain(|room| {
                let mut members = BroadcastOptions::default();
                members.rooms.push(room.clone().into());
                let members = self.local.sockets(members);
                if members.is_empty() {
                    return false;
                }
                held.insert(room.clone());
                members.iter().any(|sid| !connected.contains(sid))
            });
        }
        let (add, remove): (Vec<String>, Vec<String>) = {
            let mut subscribed = lock(&remote.core.subscribed_rooms);
            let add: Vec<String> = held.difference(&subscribed).cloned().collect();
            let remove: Vec<String> = subscribed.difference(&held).cloned().collect();
            if add.is_empty() && remove.is_empty() {
                return;
            }
            *subscribed = held;
            (add, remove)
        };
        let core = &remote.core;
        remote
            .shared
            .subscribe(add.iter().map(|r| core.room_channel(r)).collect())
            .await;
        self.measure_remote_joins(remote, &add);
        if !remove.is_empty() {
            lock(&core.remote_joins).retain(|room, _| !remove.contains(room));
        }
        remote
            .shared
            .unsubscribe(remove.iter().map(|r| core.room_channel(r)).collect())
            .await;
    }
}

/// Sync requests served by one subscription round at most; the rest wait for the next round.
pub(super) const MAX_SYNC_BATCH: usize = 256;
