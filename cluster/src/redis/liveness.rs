//! The liveness beat: this node's short-lived key by which peers tell within seconds that it
//! died, and the check that peers did not purge it meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RedisCluster;
use super::conn::{Conn, state_error};
use crate::error::StateResult;
use crate::nodes::{NodeRegistry, RedisNodes};

impl RedisCluster {
    /// Starts writing this node's liveness key every `liveness_refresh` (TTL `liveness_ttl`), by
    /// which peers tell within seconds that it died. Stops when the handle is dropped or stopped.
    ///
    /// Each beat also looks for the marker a peer leaves after purging this node, and notices
    /// when the liveness key had lapsed: either means peers may have removed this node's users
    /// and rooms (it stalled, or was cut off from Redis while Redis stayed up), so the
    /// [`RedisCluster::reconnects`] counter is bumped and the gateway re-registers what it holds
    /// with [`RedisCluster::resync`], as after a Redis outage.
    pub fn spawn_liveness(&self) -> Liveness {
        let (stop, task) = self.tasks.spawn_stoppable(liveness_beats(
            self.conn.clone(),
            self.backends.nodes.clone(),
            self.config.node_id.clone(),
            self.config.liveness_ttl,
            self.config.liveness_refresh,
            self.resync_needed.clone(),
            self.purged_by_peers.clone(),
        ));
        Liveness {
            stop,
            task: Some(task),
            conn: self.conn.clone(),
            node_id: self.config.node_id.clone(),
        }
    }
}

/// One liveness beat every `every`: `SET alive PX ttl GET`, then `GETDEL` of the purge marker.
/// The first successful beat only registers (a marker or a missing key then belongs to a
/// previous process under this id, whose leftovers the gateway purges at start).
async fn liveness_beats(
    conn: Conn,
    nodes: Arc<RedisNodes>,
    node_id: String,
    ttl: Duration,
    every: Duration,
    resync_needed: watch::Sender<u64>,
    purged_by_peers: Arc<AtomicBool>,
) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
    let alive = conn.keys.alive(&node_id);
    let marker = conn.keys.purged_marker(&node_id);
    // Any value does: only whether the key was there matters. When this process started helps a
    // person reading Redis.
    let instance = chrono::Utc::now().to_rfc3339();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registered = false;
    loop {
        tick.tick().await;
        match beat(&conn, &alive, &marker, &instance, ttl_ms).await {
            Ok((lapsed, purged)) => {
                if registered && (lapsed || purged) {
                    tracing::warn!(
                        node_id = %node_id,
                        purged,
                        "this node's liveness key had lapsed or peers purged it: registering what it holds again"
                    );
                    if purged {
                        // The purge is over (the marker is written after it): let a later death of
                        // this node be purged again without waiting for the old claim to lapse.
                        let _: Result<i64, _> =
                            conn.client.del(conn.keys.purge_claim(&node_id)).await;
                        // Set before the counter moves, so the resync it triggers sees it.
                        purged_by_peers.store(true, Ordering::SeqCst);
                    }
                    resync_needed.send_modify(|n| *n += 1);
                }
                if !registered {
                    // The key is there now: records may say so, and peers that never saw this
                    // node alive will still take the key's absence for its death.
                    nodes.declare_liveness(ttl);
                    let last = nodes.last_published();
                    if let Some(record) = last
                        && let Err(e) = nodes.publish(&record).await
                    {
                        tracing::warn!(error = %e, "could not republish this node's stats key");
                    }
                }
                registered = true;
            }
            Err(e) => tracing::warn!(error = %e, "could not refresh this node's liveness key"),
        }
    }
}

/// Returns (the liveness key had lapsed, a purge marker was there).
async fn beat(
    conn: &Conn,
    alive: &str,
    marker: &str,
    instance: &str,
    ttl_ms: i64,
) -> StateResult<(bool, bool)> {
    conn.ensure_connected()?;
    let previous: Option<String> = conn
        .client
        .set(alive, instance, Some(Expiration::PX(ttl_ms)), None, true)
        .await
        .map_err(|e| state_error(&e))?;
    let purged: Option<String> = conn
        .client
        .getdel(marker)
        .await
        .map_err(|e| state_error(&e))?;
    Ok((previous.is_none(), purged.is_some()))
}

/// The running liveness beat of [`RedisCluster::spawn_liveness`].
#[derive(Debug)]
pub struct Liveness {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    conn: Conn,
    node_id: String,
}

impl Liveness {
    /// Stops beating and removes the liveness key.
    pub async fn stop_and_withdraw(mut self) -> StateResult<()> {
        self.stop.cancel();
        // Once the task has ended, no beat still in flight can write the key again after the
        // deletion.
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.conn.ensure_connected()?;
        let _: i64 = self
            .conn
            .client
            .del(self.conn.keys.alive(&self.node_id))
            .await
            .map_err(|e| state_error(&e))?;
        Ok(())
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
