//! What this node publishes for socketioxide's operations that reach other nodes:
//! broadcasts (to the room channel when one room is selected) and socket joins and leaves.

use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions, Room, SocketEmitter};
use socketioxide_core::packet::Packet;

use super::values::{event_data, value_to_wire};
use super::{RedisAdapter, Remote};
use crate::error::AdapterError;
use crate::metrics::inc;
use crate::wire::{self, Flags, Request};

impl<E: SocketEmitter> RedisAdapter<E> {
    pub(super) async fn publish_broadcast(
        &self,
        remote: &Remote,
        packet: &Packet,
        opts: &BroadcastOptions,
    ) {
        let Some(target) = self.wire_target(&remote.shared, opts) else {
            return;
        };
        let Some(value) = event_data(packet) else {
            return;
        };
        let data = match value_to_wire(value) {
            Ok(d) => d,
            Err(e) => {
                inc(&remote.shared.metrics.publish_failures);
                tracing::warn!(error = %e, "broadcast not published");
                return;
            }
        };
        let flags = Flags {
            volatile: opts.has_flag(BroadcastFlags::Volatile),
            timeout_ms: None,
        };
        let channel = match target.rooms.as_slice() {
            [room] => remote.core.channels.room(room),
            _ => remote.core.channels.broadcast.clone(),
        };
        let bytes =
            wire::encode_broadcast(&remote.core.uid, &data, &remote.core.nsp, &target, flags);
        remote.shared.publish_queued(channel, bytes).await;
    }
    pub(super) async fn join_leave(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
        join: bool,
    ) -> Result<(), AdapterError> {
        if let Some(remote) = self.remote_for(&opts)
            && let Some(target) = self.wire_target(&remote.shared, &opts)
        {
            let request = Request::JoinLeave {
                join,
                uid: Some(remote.core.uid.clone()),
                target,
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
            };
            remote
                .shared
                .publish_queued(remote.core.channels.request.clone(), request.encode())
                .await;
        }
        if !self.targets_other_node(&opts) {
            if join {
                self.local.add_sockets(opts, rooms);
            } else {
                self.local.del_sockets(opts, rooms);
            }
            self.request_sync();
        }
        Ok(())
    }
}
