//! The room channels this node subscribes to: the rooms its sockets hold (checked after
//! joins, on request and periodically), subscribed and unsubscribed as they change.

use std::collections::HashSet;

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
        let add: Vec<String> = {
            let mut subscribed = lock(&remote.core.subscribed_rooms);
            rooms
                .filter(|room| subscribed.insert((*room).clone()))
                .map(|room| remote.core.channels.room(room))
                .collect()
        };
        remote.shared.subscribe(add).await;
    }

    /// Subscribes to the channel of each room the local sockets hold and unsubscribes from
    /// rooms no longer held.
    pub(super) async fn sync_rooms(&self, remote: &Remote) {
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Broadcast);
        let mut held: HashSet<String> = self
            .local
            .rooms(opts)
            .into_iter()
            .map(|r| r.to_string())
            .filter(|r| !NamespaceChannels::room_covered_by_pattern(r))
            .collect();
        {
            lock(&remote.core.pinned_rooms).retain(|room| {
                if held.contains(room) {
                    return false;
                }
                let mut members = BroadcastOptions::default();
                members.rooms.push(room.clone().into());
                let has_member = !self.local.sockets(members).is_empty();
                if has_member {
                    held.insert(room.clone());
                }
                has_member
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
        let channels = &remote.core.channels;
        remote
            .shared
            .subscribe(add.iter().map(|r| channels.room(r)).collect())
            .await;
        remote
            .shared
            .unsubscribe(remove.iter().map(|r| channels.room(r)).collect())
            .await;
    }
}

/// Sync requests served by one subscription round at most; the rest wait for the next round.
pub(super) const MAX_SYNC_BATCH: usize = 256;
