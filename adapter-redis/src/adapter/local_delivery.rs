//! Delivering what another node sent to the selected local sockets, under the same
//! outgoing-queue policy as a local broadcast.

use socketioxide_core::Sid;
use socketioxide_core::adapter::errors::SocketError;
use socketioxide_core::adapter::{BroadcastOptions, Room, SocketEmitter};
use socketioxide_core::packet::Packet;

use super::RedisAdapter;
use super::selection::{Selection, for_each_sid};
use crate::delivery::packet_bytes;

impl<E: SocketEmitter> RedisAdapter<E> {
    /// [`DeliveryObserver`]: crate::DeliveryObserver
    pub(super) fn deliver(&self, selection: Selection, packet: Packet, volatile: bool) {
        let selection = self.admit(selection, &packet, volatile);
        let result = match selection {
            Selection::Opts(opts) => self.local.broadcast(packet, *opts),
            Selection::Sids(sids) => for_each_sid(sids, |sid| {
                self.local
                    .broadcast(packet.clone(), Self::single(sid, volatile))
            }),
        };
        if let Err(errors) = result {
            let full = errors
                .iter()
                .filter(|e| matches!(e, SocketError::InternalChannelFull))
                .count();
            tracing::debug!(
                count = errors.len(),
                full,
                "remote broadcast: some sockets were not reachable"
            );
            if full > 0
                && let Some(observer) = self.observer.get()
            {
                observer.dropped(self.local.path(), full);
            }
        }
    }

    /// Tells the observer about a delivery to come and leaves out the sockets it refuses.
    /// Volatile frames bypass the queue and are not counted.
    pub(super) fn admit(&self, selection: Selection, packet: &Packet, volatile: bool) -> Selection {
        let Some(observer) = self.observer.get().filter(|_| !volatile) else {
            return selection;
        };
        let bytes = packet_bytes(packet);
        let excluded = Room::from(observer.excluded_room().to_owned());
        // Sockets already refused are neither counted nor reached.
        match selection {
            Selection::Opts(mut opts) => {
                opts.except.push(excluded);
                let sids = self.local.sockets((*opts).clone());
                observer.before_delivery(self.local.path(), &sids, bytes);
                Selection::Opts(opts)
            }
            Selection::Sids(mut sids) => {
                let refused = |sid: &Sid| self.local.socket_rooms(*sid).contains(&excluded);
                sids.retain(|sid| !refused(sid));
                observer.before_delivery(self.local.path(), &sids, bytes);
                sids.retain(|sid| !refused(sid));
                Selection::Sids(sids)
            }
        }
    }

    pub(super) fn disconnect_selection(&self, selection: Selection) {
        let result = match selection {
            Selection::Opts(opts) => self.local.disconnect_socket(*opts),
            Selection::Sids(sids) => for_each_sid(sids, |sid| {
                self.local.disconnect_socket(BroadcastOptions::new(sid))
            }),
        };
        if let Err(errors) = result {
            tracing::debug!(
                count = errors.len(),
                "remote disconnect: some sockets failed"
            );
        }
    }
}
