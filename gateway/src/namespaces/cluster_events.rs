//! How a node follows the rest of the cluster: peers that die, control messages on
//! `cluster:message` (bans, announcements, shutdowns), and Redis coming back after an outage.
//! What the node then does is in [`crate::actions::cluster`].
//!
//! Nothing here runs on a single node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster::bus::{ControlHandler, ServerShutdown, SystemAnnouncement, UserBanned};
use cluster::redis::NodeEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actions::cluster as reactions;
use crate::sockets::Shared;

/// The control-bus task of cluster mode (spawned by the cluster crate, so not in the node's
/// tracked tasks); it stops when this is dropped. The other reactions are tracked tasks of
/// [`Shared::tasks`], stopped with them.
#[derive(Debug)]
pub struct ClusterReactions {
    bus: JoinHandle<()>,
}

impl Drop for ClusterReactions {
    fn drop(&mut self) {
        self.bus.abort();
    }
}

/// Starts reacting to the cluster. Returns `None` on a single node.
///
/// First clears what a previous run under the same `serverId` left in Redis (and tells clients
/// about it), then follows dead peers, control messages and Redis reconnects.
pub async fn start(shared: &Arc<Shared>) -> Option<ClusterReactions> {
    let redis = shared.app.link.redis()?;
    match redis.purge_own_leftovers().await {
        Ok(left) => reactions::announce_departures(shared, &left).await,
        Err(e) => tracing::warn!(error = %e, "cannot clear a previous run's leftovers"),
    }

    let (monitor, mut events) = redis.start_monitor();
    let for_monitor = Arc::clone(shared);
    let cancelled = shared.tasks.cancelled();
    shared.tasks.spawn(async move {
        let _monitor = monitor;
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = cancelled.cancelled() => return,
            };
            let Some(event) = event else { return };
            match event {
                NodeEvent::NodeJoined { server_id } => {
                    tracing::info!(peer = %server_id, "node joined the cluster");
                }
                NodeEvent::NodeLeft(left) => {
                    tracing::info!(
                        peer = %left.server_id,
                        purged_here = left.purged_here,
                        offline = left.went_offline.len(),
                        memberships = left.purged.len(),
                        "node left the cluster"
                    );
                    if left.purged_here {
                        reactions::announce_departures(&for_monitor, &left).await;
                    }
                }
            }
        }
    });

    let bus = redis.bus().spawn_handler(Arc::new(ControlReactions {
        shared: Arc::clone(shared),
    }));

    let cancelled = shared.tasks.cancelled();
    let follow = follow_redis(Arc::clone(shared), redis.reconnects());
    shared.tasks.spawn(async move {
        tokio::select! {
            () = follow => {}
            () = cancelled.cancelled() => {}
        }
    });
    Some(ClusterReactions { bus })
}

/// How often a node reloads the bans from Redis (so unbans made through other nodes leave its
/// book, and a notice it missed still disconnects the user).
const BAN_REFRESH: Duration = Duration::from_secs(30);

/// Longest wait between two attempts to re-register after a reconnect.
const MAX_RESYNC_DELAY: Duration = Duration::from_secs(5);

/// Learns every ban at start-up, then after each reconnect re-registers what the node holds
/// (bans included) until it succeeds, and reloads the bans every [`BAN_REFRESH`]; each time, the
/// local users among the bans in force are disconnected.
async fn follow_redis(shared: Arc<Shared>, mut reconnects: watch::Receiver<u64>) {
    retry_until_done(&shared, "learn the cluster's bans", reactions::sync_bans).await;
    let mut refresh = tokio::time::interval(BAN_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            changed = reconnects.changed() => {
                if changed.is_err() {
                    return;
                }
                retry_until_done(&shared, "re-register this node's state", reactions::resync).await;
            }
            _ = refresh.tick() => {
                if let Err(e) = reactions::sync_bans(&shared).await {
                    tracing::warn!(error = %e, "cannot reload the bans");
                }
            }
        }
    }
}

/// Runs `step` until it succeeds, backing off from 250 ms to [`MAX_RESYNC_DELAY`].
async fn retry_until_done<F>(shared: &Shared, what: &str, step: F)
where
    F: AsyncFn(&Shared) -> Result<(), cluster::StateError>,
{
    let mut delay = Duration::from_millis(250);
    loop {
        match step(shared).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot {what} yet");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RESYNC_DELAY);
    }
}

/// Reactions to control messages from other nodes.
struct ControlReactions {
    shared: Arc<Shared>,
}

#[async_trait]
impl ControlHandler for ControlReactions {
    async fn user_banned(&self, from: &str, ban: UserBanned) {
        reactions::ban_from_peer(&self.shared, from, ban).await;
    }

    async fn system_announcement(&self, from: &str, announcement: SystemAnnouncement) {
        reactions::relay_announcement(&self.shared, from, announcement).await;
    }

    async fn server_shutdown(&self, from: &str, shutdown: ServerShutdown) {
        tracing::info!(peer = from, message = ?shutdown.message, "a node is shutting down");
    }
}
