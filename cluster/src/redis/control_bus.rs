//! The control bus on Redis: publishing on `cluster:message`, and the reader handing what arrives
//! to the subscriptions (see [`crate::bus`] for the messages themselves).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fred::prelude::*;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::conn::{Conn, state_error};
use super::tasks::Tasks;
use crate::bus::{
    BusCounters, BusCountersSnapshot, ControlEvent, ControlSubscription, ReceivedControl,
    ServerShutdown, SystemAnnouncement, UserBanned, decode_message, encode_message,
};
use crate::error::{StateError, StateResult};
use crate::keys;

/// Hands each control message from fred's queue to the bus; does nothing else, so it keeps up.
pub(super) async fn read_control_channel(
    mut rx: broadcast::Receiver<fred::types::Message>,
    node_id: String,
    events: broadcast::Sender<ReceivedControl>,
    counters: Arc<BusCounters>,
) {
    loop {
        let msg = match rx.recv().await {
            Ok(msg) => msg,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                counters.transport_lagged.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    missed = n,
                    "control channel reader fell behind fred's queue"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if &*msg.channel != keys::CONTROL_CHANNEL {
            continue;
        }
        let Some(raw) = msg.value.as_str() else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Some(ev) = counters.account(decode_message(&raw, &node_id)) {
            // No subscriber yet is not an error: the event simply has no listener.
            let _ = events.send(ev);
        }
    }
}

/// Publishing and receiving control events on `cluster:message`.
#[derive(Clone, Debug)]
pub struct ControlBus {
    pub(super) conn: Conn,
    pub(super) node_id: String,
    pub(super) events: broadcast::Sender<ReceivedControl>,
    pub(super) counters: Arc<BusCounters>,
    pub(super) tasks: Tasks,
}

impl ControlBus {
    /// Publishes an event as this node. Returns how many subscribers (nodes) Redis delivered it to.
    pub async fn publish(&self, event: &ControlEvent) -> StateResult<u64> {
        self.conn.ensure_connected()?;
        let raw = encode_message(&self.node_id, event, chrono::Utc::now())
            .map_err(|e| StateError::Corrupt(e.to_string()))?;
        let receivers: i64 = self
            .conn
            .client
            .publish(keys::CONTROL_CHANNEL, raw)
            .await
            .map_err(|e| state_error(&e))?;
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        Ok(u64::try_from(receivers).unwrap_or_default())
    }

    /// Publishes `user_banned`.
    pub async fn publish_user_banned(&self, ban: UserBanned) -> StateResult<u64> {
        self.publish(&ControlEvent::UserBanned(ban)).await
    }

    /// Publishes `system_announcement`.
    pub async fn publish_announcement(&self, announcement: SystemAnnouncement) -> StateResult<u64> {
        self.publish(&ControlEvent::SystemAnnouncement(announcement))
            .await
    }

    /// Publishes `server_shutdown` (peers then treat this node as gone at once).
    pub async fn publish_server_shutdown(&self, shutdown: ServerShutdown) -> StateResult<u64> {
        self.publish(&ControlEvent::ServerShutdown(shutdown)).await
    }

    /// A new receiver of events from other nodes (see [`ControlSubscription`] for the overflow
    /// policy). Events published before this call are not delivered to it.
    pub fn subscribe(&self) -> ControlSubscription {
        ControlSubscription {
            rx: self.events.subscribe(),
            counters: self.counters.clone(),
        }
    }

    /// Spawns a task calling `handler` for every event until the bus shuts down (the connection's
    /// shutdown ends it too).
    pub fn spawn_handler(&self, handler: Arc<dyn crate::bus::ControlHandler>) -> JoinHandle<()> {
        self.tasks
            .spawn(crate::bus::dispatch(self.subscribe(), handler))
    }

    /// The bus counters.
    pub fn counters(&self) -> BusCountersSnapshot {
        self.counters.snapshot()
    }

    /// This node's id (the `serverId` of its messages).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}
