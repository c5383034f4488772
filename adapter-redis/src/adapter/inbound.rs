//! The namespace task: messages from Redis routed by channel (broadcasts, requests,
//! responses), the periodic room check and the callers waiting for room subscriptions.

use std::sync::Arc;
use std::time::Duration;

use socketioxide_core::Str;
use socketioxide_core::adapter::{BroadcastOptions, Room, SocketEmitter};
use socketioxide_core::packet::Packet;
use tokio::sync::mpsc;

use super::room_subscriptions::MAX_SYNC_BATCH;
use super::values::wire_to_value;
use super::{RedisAdapter, Remote};
use crate::channels::{ChannelKind, NamespaceChannels, ShardedChannelKind, ShardedChannels};
use crate::connection::Inbound;
use crate::locks::lock;
use crate::metrics::inc;
use crate::sharded_wire::{ClassicForm, Disposition, Envelope};
use crate::wire::{self, Response};

impl<E: SocketEmitter> RedisAdapter<E> {
    pub(super) async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Inbound>) {
        let Some(remote) = &self.remote else { return };
        let Some(mut waiters) = lock(&remote.core.sync_waiters_rx).take() else {
            return;
        };
        let mut tick = tokio::time::interval(
            remote
                .shared
                .config
                .room_sync_interval
                .max(Duration::from_millis(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle_inbound(remote, msg).await,
                    None => break,
                },
                _ = tick.tick() => self.sync_rooms(remote).await,
                () = remote.core.sync_now.notified() => self.sync_rooms(remote).await,
                Some(first) = waiters.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_SYNC_BATCH {
                        match waiters.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    if batch.iter().any(|r| r.rooms.is_none()) {
                        self.sync_rooms(remote).await;
                    } else {
                        let rooms = batch.iter().flat_map(|r| r.rooms.iter().flatten());
                        self.subscribe_rooms(remote, rooms).await;
                    }
                    for (leaving, rooms) in batch.iter().filter_map(|r| r.release.as_ref()) {
                        self.release_rooms(remote, leaving, rooms).await;
                    }
                    for request in batch {
                        let _ = request.done.send(());
                    }
                }
            }
            if remote.core.closed.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
    }

    /// Subscribes to the channels of `rooms` not subscribed yet.
    pub(super) async fn handle_inbound(self: &Arc<Self>, remote: &Remote, msg: Inbound) {
        if let Some(sharded) = &remote.core.sharded {
            self.handle_sharded(remote, &sharded.channels, msg);
            return;
        }
        let Some(kind) = remote.core.channels.classify(&msg.channel) else {
            return;
        };
        match kind {
            ChannelKind::Broadcast { room } => {
                if let Some(room) = room
                    && !self.holds_room(remote, room)
                {
                    if remote.core.classic_pattern {
                        inc(&remote.shared.metrics.unheld_room_messages);
                    }
                    return;
                }
                self.on_broadcast(remote, &msg.payload);
            }
            ChannelKind::Request => self.on_request(remote, &msg.payload),
            ChannelKind::Response => on_response(remote, &msg.payload),
        }
    }

    pub(super) fn holds_room(&self, remote: &Remote, room: &str) -> bool {
        if remote.core.classic_pattern || NamespaceChannels::room_covered_by_pattern(room) {
            if self.is_local_sid(room).is_some() {
                return true;
            }
            let mut opts = BroadcastOptions::default();
            opts.rooms.push(Room::from(room.to_owned()));
            return !self.local.sockets(opts).is_empty();
        }
        lock(&remote.core.subscribed_rooms).contains(room)
    }

    pub(super) fn on_broadcast(&self, remote: &Remote, payload: &[u8]) {
        let msg = match wire::decode_broadcast(payload) {
            Ok(m) => m,
            Err(e) => {
                inc(&remote.shared.metrics.decode_errors);
                tracing::warn!(error = %e, nsp = %remote.core.nsp, "undecodable broadcast from redis");
                return;
            }
        };
        if msg.uid == remote.core.uid || msg.nsp != remote.core.nsp {
            return;
        }
        self.apply_broadcast(remote, msg);
    }

    /// A broadcast from another node of this namespace, to the local sockets it selects.
    pub(super) fn apply_broadcast(&self, remote: &Remote, msg: wire::BroadcastMessage) {
        remote.core.saw_peer(&msg.uid);
        let packet = Packet::event(Str::from(remote.core.nsp.clone()), wire_to_value(&msg.data));
        let selection = self.select(&msg.target, msg.flags.volatile);
        self.deliver(selection, packet, msg.flags.volatile);
    }
}

pub(super) fn on_response(remote: &Remote, payload: &[u8]) {
    let response = match Response::decode(payload) {
        Ok(r) => r,
        Err(e) => {
            inc(&remote.shared.metrics.decode_errors);
            tracing::warn!(error = %e, "undecodable response from redis");
            return;
        }
    };
    deliver_response(remote, response);
}

/// Hands an answer to the request waiting for it, if any.
pub(super) fn deliver_response(remote: &Remote, response: Response) {
    let sender = lock(&remote.core.pending)
        .get(&response.request_id)
        .cloned();
    if let Some(sender) = sender
        && sender.try_send(response).is_err()
    {
        inc(&remote.shared.metrics.dropped);
    }
}

impl<E: SocketEmitter> RedisAdapter<E> {
    /// A message on one of this namespace's sharded channels: decoded, filtered as Node's
    /// sharded adapter filters (`docs/sharded-adapter.md`, section 2.2), then handled as the
    /// classic kind it corresponds to.
    fn handle_sharded(self: &Arc<Self>, remote: &Remote, channels: &ShardedChannels, msg: Inbound) {
        let core = &remote.core;
        let Some(kind) = channels.classify(&msg.channel, &core.uid) else {
            return;
        };
        let envelope = match Envelope::decode(&msg.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                inc(&remote.shared.metrics.decode_errors);
                tracing::warn!(error = %e, nsp = %core.nsp, "undecodable sharded message from redis");
                return;
            }
        };
        let on_own_response = kind == ShardedChannelKind::OwnResponse;
        if let Disposition::Ignore(_) = envelope.disposition(on_own_response, &core.uid, &core.nsp)
        {
            return;
        }
        match envelope.into_classic() {
            ClassicForm::Broadcast(broadcast) => {
                if let ShardedChannelKind::Room(room) = kind
                    && !self.holds_room(remote, room)
                {
                    return;
                }
                self.apply_broadcast(remote, broadcast);
            }
            ClassicForm::Request(request) => self.apply_request(remote, request),
            ClassicForm::Response(response) => deliver_response(remote, response),
        }
    }
}
