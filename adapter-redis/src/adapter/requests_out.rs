//! What this node publishes for socketioxide's operations that reach other nodes:
//! broadcasts (to the room channel when one room is selected) and socket joins and leaves.

use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions, Room, SocketEmitter};
use socketioxide_core::packet::Packet;

use super::values::{event_data, value_to_wire};
use super::{RedisAdapter, Remote};
use crate::error::AdapterError;
use crate::metrics::inc;
use crate::wire::{Flags, Request};

impl<E: SocketEmitter> RedisAdapter<E> {
    /// Publishes a broadcast for the other nodes. An error means they will not get it (it
    /// could not be encoded, or the publish queue stayed full); it is counted and logged here.
    pub(super) async fn publish_broadcast(
        &self,
        remote: &Remote,
        packet: &Packet,
        opts: &BroadcastOptions,
    ) -> Result<(), AdapterError> {
        let Some(target) = self.wire_target(&remote.shared, opts) else {
            return Ok(());
        };
        let Some(value) = event_data(packet) else {
            return Ok(());
        };
        let flags = Flags {
            volatile: opts.has_flag(BroadcastFlags::Volatile),
            timeout_ms: None,
        };
        let encoded = value_to_wire(value).and_then(|data| {
            remote
                .core
                .broadcast_out(&data, &target, flags, &remote.shared.metrics)
        });
        match encoded {
            Ok((channel, bytes)) => remote.shared.publish_queued(channel, bytes).await,
            Err(e) => {
                inc(&remote.shared.metrics.publish_failures);
                tracing::warn!(error = %e, "broadcast not published");
                Err(e)
            }
        }
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
            let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
            if join {
                // Before the join is queued: no broadcast can then overtake it.
                remote.core.fence_joins(&rooms);
            }
            let request = Request::JoinLeave {
                join,
                uid: Some(remote.core.uid.clone()),
                target,
                rooms,
            };
            // A failure is counted and logged where it happens; the local part still runs.
            match remote.core.request_out(request) {
                Ok((channel, bytes)) => {
                    let _ = remote.shared.publish_queued(channel, bytes).await;
                }
                Err(e) => {
                    inc(&remote.shared.metrics.publish_failures);
                    tracing::warn!(error = %e, "join or leave request not published");
                }
            }
        }
        if !self.targets_other_node(&opts) {
            if join {
                self.local.add_sockets(opts, rooms.clone());
                // A join is live before it returns: the rooms local sockets now hold are
                // subscribed (Redis confirmed it) first.
                if let Some(remote) = &self.remote {
                    let held = self.held_by_local_sockets(remote, &rooms);
                    if !held.is_empty() {
                        crate::request_sync(&remote.core, Some(held)).await;
                    }
                }
            } else {
                self.local.del_sockets(opts, rooms);
                self.request_sync();
            }
        }
        Ok(())
    }
}
