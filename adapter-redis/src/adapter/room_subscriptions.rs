//! The room channels this node subscribes to: the rooms its sockets hold (checked after
//! joins, on request and periodically), subscribed and unsubscribed as they change.

use std::collections::HashSet;

use socketioxide_core::Sid;
use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions, SocketEmitter};

use super::{RedisAdapter, Remote};
use crate::channels::NamespaceChannels;
use crate::locks::lock;

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
        let add: Vec<String> = {
            let mut subscribed = lock(&remote.core.subscribed_rooms);
            rooms
                .filter(|room| subscribed.insert((*room).clone()))
                .map(|room| remote.core.room_channel(room))
                .collect()
        };
        remote.shared.subscribe(add).await;
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
            .filter(|r| !NamespaceChannels::room_covered_by_pattern(r))
            .collect();
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
        remote
            .shared
            .unsubscribe(remove.iter().map(|r| core.room_channel(r)).collect())
            .await;
    }
}

/// Sync requests served by one subscription round at most; the rest wait for the next round.
pub(super) const MAX_SYNC_BATCH: usize = 256;
