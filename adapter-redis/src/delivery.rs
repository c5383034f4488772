//! What the server is told about each delivery of a broadcast to this node's sockets, on the
//! local path (an emit on this node) and the cross-node path (a broadcast from Redis) alike, so
//! that one policy bounds every socket's outgoing queue whichever node a frame comes from.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use socketioxide_core::Sid;
use socketioxide_core::packet::{Packet, PacketData};

/// The server's outgoing-queue policy, called by the adapter around each local delivery.
pub trait DeliveryObserver: Send + Sync + Debug + 'static {
    /// Before a frame of about `bytes` bytes is queued to each of `sids` in namespace `ns`. The
    /// observer may move sockets it refuses into [`Self::excluded_room`], which the delivery then
    /// skips.
    fn before_delivery(&self, ns: &str, sids: &[Sid], bytes: usize);
    /// After a delivery in which `dropped` sockets could not take the frame (queue full).
    fn dropped(&self, ns: &str, dropped: usize);
    /// The room whose sockets no broadcast reaches (sockets being disconnected).
    fn excluded_room(&self) -> &str;
}

/// The observer slot shared by every namespace adapter of one server: set once, after the
/// server exists (the observer needs it to find sockets).
#[derive(Debug, Clone, Default)]
pub(crate) struct ObserverSlot(Arc<OnceLock<Arc<dyn DeliveryObserver>>>);

impl ObserverSlot {
    pub(crate) fn set(&self, observer: Arc<dyn DeliveryObserver>) -> bool {
        self.0.set(observer).is_ok()
    }

    pub(crate) fn get(&self) -> Option<&Arc<dyn DeliveryObserver>> {
        self.0.get()
    }
}

/// Bytes a packet takes in a socket's queue: its event data (JSON text and binary attachments)
/// plus the packet header (type, namespace, separators); 0 for packets without data.
pub fn packet_bytes(packet: &Packet) -> usize {
    let data = match &packet.inner {
        PacketData::Event(v, _)
        | PacketData::BinaryEvent(v, _)
        | PacketData::EventAck(v, _)
        | PacketData::BinaryAck(v, _) => v,
        _ => return packet.ns.len() + 8,
    };
    let body = match data {
        socketioxide_core::Value::Str(text, bins) => {
            text.len() + bins.iter().flatten().map(|b| b.len()).sum::<usize>()
        }
        socketioxide_core::Value::Bytes(b) => b.len(),
    };
    body + packet.ns.len() + 8
}
