//! The Redis side of the cluster: state backends, control bus, node stats heartbeat, dead-node
//! monitor, and re-registration after a Redis outage.
//!
//! Where each part lives: [`config`](RedisStateConfig) settings and errors; `connect.rs` the URL,
//! fred's settings and the first connection; `link.rs` the link state and resubscription after
//! reconnects; `control_bus.rs` publishing and reading `cluster:message`; `heartbeat.rs` the stats
//! key; `liveness.rs` the fast death signal; `monitor.rs` the dead-node monitor; `resync.rs`
//! re-registration; `cli_stats.rs` the CLI's one-shot stats read; `conn.rs` and `scripts.rs` the
//! shared connection and Lua scripts. Each state backend lives beside its trait
//! ([`crate::rooms`], [`crate::presence`], ...).
//!
//! The gateway calls [`connect`] once and takes everything from the returned [`RedisCluster`]:
//!
//! ```no_run
//! # async fn start(current_stats: fn() -> cluster::NodeStats) -> Result<(), Box<dyn std::error::Error>> {
//! use cluster::redis::{LocalSnapshot, NodeEvent, RedisStateConfig};
//!
//! let redis = cluster::redis::connect("redis://127.0.0.1:6379", RedisStateConfig::new("node-1")).await?;
//! let state = redis.backends(); // StateBackends for the handlers
//! let leftovers = redis.purge_own_leftovers().await?; // a previous run under the same id
//! let heartbeat = redis.spawn_heartbeat(current_stats); // cluster:stats:node-1 with its TTL
//! let (monitor, mut node_events) = redis.start_monitor();
//! let mut control = redis.bus().subscribe(); // user_banned, system_announcement, server_shutdown
//! let mut reconnects = redis.reconnects();
//! loop {
//!     tokio::select! {
//!         Some(NodeEvent::NodeLeft(left)) = node_events.recv() => {
//!             // when left.purged_here: `user offline` for left.went_offline,
//!             // `user left` for left.purged
//!         }
//!         Some(msg) = control.recv() => { /* match msg.event */ }
//!         Ok(()) = reconnects.changed() => {
//!             redis.resync(&LocalSnapshot::default() /* what this node holds */).await?;
//!         }
//!     }
//! }
//! # }
//! ```

mod backends;
mod cli_stats;
mod config;
pub(crate) mod conn;
mod connect;
mod control_bus;
mod heartbeat;
mod link;
mod liveness;
mod monitor;
mod resync;
mod resync_spread;
pub(crate) mod scripts;
mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::watch;

pub use crate::bans::{BanSync, RedisBans};
pub use crate::games::RedisGames;
pub use crate::history::RedisHistory;
pub use crate::nodes::RedisNodes;
pub use crate::presence::RedisPresence;
pub use crate::rooms::RedisRooms;
pub use cli_stats::fetch_cluster_stats;
pub use config::{ClusterError, RedisStateConfig};
pub use connect::{connect, redact};
pub use control_bus::ControlBus;
pub use heartbeat::Heartbeat;
pub use liveness::Liveness;
pub use monitor::{MonitorConfig, NodeEvent, NodeLeft, NodeMonitor};
pub use resync::{LocalMembership, LocalSnapshot, ResyncReport};

use crate::state::StateBackends;
use backends::RedisBackends;
use conn::Conn;

/// Everything the gateway needs from Redis, from one [`connect`].
#[derive(Debug)]
pub struct RedisCluster {
    config: RedisStateConfig,
    conn: Conn,
    subscriber: SubscriberClient,
    subscriber_up: Arc<AtomicBool>,
    backends: RedisBackends,
    bus: ControlBus,
    reconnects: watch::Receiver<u64>,
    resync_needed: watch::Sender<u64>,
    /// Set by the liveness beat when peers purged this node; taken by the next
    /// [`RedisCluster::resync`] (see [`ResyncReport::purged_by_peers`]).
    purged_by_peers: Arc<AtomicBool>,
    resubscribed: watch::Receiver<u64>,
    tasks: tasks::Tasks,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.tasks.cancel();
    }
}

impl RedisCluster {
    /// The state backends (rooms, presence, bans, history, games, nodes) on this Redis.
    pub fn backends(&self) -> StateBackends {
        self.backends.state.clone()
    }

    /// The control bus.
    pub fn bus(&self) -> ControlBus {
        self.bus.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// How the keys are laid out over the slots (chosen from the URL unless configured).
    pub fn key_layout(&self) -> crate::keys::KeyLayout {
        self.conn.keys.layout()
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisStateConfig {
        &self.config
    }

    /// Whether both the command and the pub/sub connection are up (for `/ready`).
    pub fn is_connected(&self) -> bool {
        self.conn.client.is_connected()
            && self.conn.link_up.load(Ordering::Acquire)
            && self.subscriber.is_connected()
            && self.subscriber_up.load(Ordering::Acquire)
    }

    /// Whether state calls are sent to Redis now. While false they fail at once with an error for
    /// which [`crate::StateError::is_refused_while_down`] holds, instead of queueing behind the
    /// lost connection.
    pub fn sends_commands(&self) -> bool {
        self.conn.ensure_connected().is_ok()
    }

    /// A counter that increases each time this node's registrations in Redis may have been lost:
    /// the command connection came back after a loss, or peers declared this node dead and purged
    /// it (after a stall or a network cut; see [`RedisCluster::spawn_heartbeat`]).
    /// The gateway waits on `changed()` and then calls [`RedisCluster::resync`] with what it holds.
    pub fn reconnects(&self) -> watch::Receiver<u64> {
        self.reconnects.clone()
    }

    /// A counter that increases each time the control channel has been subscribed again after a
    /// reconnect of the pub/sub connection.
    pub fn control_resubscriptions(&self) -> watch::Receiver<u64> {
        self.resubscribed.clone()
    }

    /// The key names the Lua key functions build for each id, in the order of
    /// `scripts::KEY_NAMES`, so tests can hold them to [`crate::keys::Keys`].
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn lua_key_names(&self, ids: &[&str]) -> crate::error::StateResult<Vec<String>> {
        let mut args = vec![self.conn.keys.prefix().to_owned()];
        args.extend(ids.iter().map(|s| (*s).to_owned()));
        self.conn.eval(&scripts::KEY_NAMES, vec![], args).await
    }

    /// Each id escaped by the Lua scripts' `esc`, so tests can hold it to [`crate::keys::key_part`].
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn lua_key_parts(&self, ids: &[&str]) -> crate::error::StateResult<Vec<String>> {
        self.conn
            .eval(
                &scripts::ESCAPE_IDS,
                vec![],
                ids.iter().map(|s| (*s).to_owned()).collect(),
            )
            .await
    }

    /// Starts the dead-node monitor. Its events arrive on the returned receiver (bounded; when it
    /// is full the monitor waits, so no event is lost and purges pause until the gateway reads).
    pub fn start_monitor(&self) -> (NodeMonitor, tokio::sync::mpsc::Receiver<NodeEvent>) {
        NodeMonitor::start(
            &self.tasks,
            self.config.node_id.clone(),
            self.config.monitor.clone(),
            monitor::Timing {
                stats_ttl: self.config.stats_ttl,
                liveness_every: self.config.liveness_refresh,
            },
            self.conn.clone(),
            self.backends.clone(),
            self.bus.subscribe(),
            self.reconnects.clone(),
        )
    }

    /// Closes both connections.
    pub async fn shutdown(&self) {
        self.tasks.stop().await;
        let _ = self.subscriber.quit().await;
        let _ = self.conn.client.quit().await;
    }
}
