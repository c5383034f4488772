//! Settings of the Redis side and the errors of setting it up.

use std::time::Duration;

use super::monitor::MonitorConfig;
use crate::error::StateError;
use crate::keys::{self, KeyLayout};
use crate::retention::Retention;

/// Failures setting up the Redis side.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not one fred understands (`redis://`, `rediss://`, `redis-sentinel://`,
    /// `redis-cluster://`).
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid cluster configuration: {0}")]
    InvalidConfig(String),
    /// The first connection failed (nothing is retried before the first success).
    #[error("cannot connect to Redis at {url}: {reason}")]
    Connect {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Subscribing to the control channel failed.
    #[error("cannot subscribe to `{channel}`: {reason}")]
    Subscribe {
        /// The channel.
        channel: String,
        /// Why.
        reason: String,
    },
    /// A state operation failed during setup (for example reading stats for the CLI).
    #[error(transparent)]
    State(#[from] StateError),
}

/// Settings of the Redis side.
#[derive(Clone, Debug)]
pub struct RedisStateConfig {
    /// This node's `serverId`.
    pub node_id: String,
    /// Prefix of every key except the contract's fixed ones (default `gateway:`).
    pub key_prefix: String,
    /// How the keys are laid out over a Redis Cluster's slots; `None` (the default) chooses from
    /// the URL: [`KeyLayout::Spread`] for `redis-cluster://` (unless the prefix carries a hash
    /// tag), [`KeyLayout::Classic`] otherwise. Once connected, the layout in use.
    pub key_layout: Option<KeyLayout>,
    /// Messages kept per history scope (default 100).
    pub history_capacity: usize,
    /// How long unused rooms, histories and game counters live (see [`Retention`]).
    pub retention: Retention,
    /// TTL of `cluster:stats:<serverId>` (default 60 s).
    pub stats_ttl: Duration,
    /// How often the heartbeat rewrites the stats key (default a third of the TTL).
    pub stats_refresh: Duration,
    /// TTL of this node's liveness key (default 6 s): peers declare the node dead once it lapses,
    /// long before the stats key would.
    pub liveness_ttl: Duration,
    /// How often the liveness key is rewritten, and how often peers look at it (default a sixth of
    /// the TTL: five beats may be missed before a false death).
    pub liveness_refresh: Duration,
    /// Longest a command may take before it fails with `Unavailable` (default 2 s).
    pub command_timeout: Duration,
    /// Capacity of each control-bus subscription queue (default 1024; oldest dropped, counted).
    pub control_queue: usize,
    /// Capacity of fred's pub/sub hand-off queue (default 4096; lag is counted).
    pub pubsub_queue: usize,
    /// Dead-node monitor settings.
    pub monitor: MonitorConfig,
}

impl RedisStateConfig {
    /// Defaults for the node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        let stats_ttl = Duration::from_secs(60);
        let liveness_ttl = Duration::from_secs(6);
        Self {
            node_id: node_id.into(),
            key_prefix: keys::DEFAULT_PREFIX.to_owned(),
            key_layout: None,
            history_capacity: 100,
            retention: Retention::default(),
            stats_ttl,
            stats_refresh: stats_ttl / 3,
            liveness_ttl,
            liveness_refresh: liveness_ttl / 6,
            command_timeout: Duration::from_secs(2),
            control_queue: 1024,
            pubsub_queue: 4096,
            monitor: MonitorConfig::default(),
        }
    }

    /// Sets the stats TTL and a refresh interval of a third of it.
    pub fn with_stats_ttl(mut self, ttl: Duration) -> Self {
        self.stats_ttl = ttl;
        self.stats_refresh = ttl / 3;
        self
    }

    /// Sets the liveness TTL and a refresh interval of a sixth of it.
    pub fn with_liveness_ttl(mut self, ttl: Duration) -> Self {
        self.liveness_ttl = ttl;
        self.liveness_refresh = ttl / 6;
        self
    }

    pub(super) fn validate(&self) -> Result<(), ClusterError> {
        let bad = |m: &str| Err(ClusterError::InvalidConfig(m.to_owned()));
        if self.node_id.is_empty() {
            return bad("node_id is empty");
        }
        if self.stats_ttl < Duration::from_millis(100) {
            return bad("stats_ttl must be at least 100 ms");
        }
        if self.stats_refresh.is_zero() || self.stats_refresh >= self.stats_ttl {
            return bad("stats_refresh must be shorter than stats_ttl");
        }
        if self.liveness_ttl < Duration::from_millis(300) {
            return bad("liveness_ttl must be at least 300 ms");
        }
        if self.liveness_refresh.is_zero() || self.liveness_refresh >= self.liveness_ttl {
            return bad("liveness_refresh must be shorter than liveness_ttl");
        }
        if self.command_timeout.is_zero() {
            return bad("command_timeout must not be zero");
        }
        if self.control_queue == 0 || self.pubsub_queue == 0 {
            return bad("queue capacities must not be zero");
        }
        if self.monitor.interval.is_zero() {
            return bad("monitor.interval must not be zero");
        }
        let r = &self.retention;
        if [r.unjoined_room, r.history, r.game_sequence]
            .iter()
            .any(|d| d.as_millis() == 0)
        {
            return bad("retention times must be at least 1 ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        assert!(RedisStateConfig::new("n").validate().is_ok());
        assert!(RedisStateConfig::new("").validate().is_err());
        let mut c = RedisStateConfig::new("n");
        c.stats_refresh = c.stats_ttl;
        assert!(c.validate().is_err());
        let c = RedisStateConfig::new("n").with_stats_ttl(Duration::from_secs(3));
        assert_eq!(c.stats_refresh, Duration::from_secs(1));
    }
}
