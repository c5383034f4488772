//! The stats heartbeat: this node's `cluster:stats:<serverId>` record, rewritten before its TTL
//! runs out.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RedisCluster;
use crate::error::StateResult;
use crate::nodes::{NodeRegistry, NodeStats, RedisNodes};

impl RedisCluster {
    /// Starts writing this node's stats record every `stats_refresh` (TTL `stats_ttl`), taking
    /// each record from `source`. Stops when the handle is dropped or stopped.
    pub fn spawn_heartbeat<F>(&self, source: F) -> Heartbeat
    where
        F: Fn() -> NodeStats + Send + Sync + 'static,
    {
        let nodes = self.backends.nodes.clone();
        let every = self.config.stats_refresh;
        let (stop, task) = self.tasks.spawn_stoppable(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = nodes.publish(&source()).await {
                    tracing::warn!(error = %e, "could not refresh this node's stats key");
                }
            }
        });
        Heartbeat {
            stop,
            task: Some(task),
            nodes: self.backends.nodes.clone(),
            node_id: self.config.node_id.clone(),
        }
    }
}

/// The running stats heartbeat of [`RedisCluster::spawn_heartbeat`].
#[derive(Debug)]
pub struct Heartbeat {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    nodes: Arc<RedisNodes>,
    node_id: String,
}

impl Heartbeat {
    /// Stops refreshing and removes this node's stats key (graceful shutdown).
    pub async fn stop_and_withdraw(mut self) -> StateResult<()> {
        self.stop.cancel();
        // Once the task has ended, no refresh still in flight can land after the withdrawal.
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.nodes.withdraw(&self.node_id).await
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
