//! The state every part of a node shares: configuration, cluster-wide state backends, metrics,
//! token verifier and the node's lifecycle.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use chrono::{DateTime, Utc};
use cluster::StateBackends;
use tokio::sync::watch;

use crate::auth::{KeyError, TokenVerifier};
use crate::cluster_link::ClusterLink;
use crate::config::Config;
use crate::handshake_gate::HandshakeGate;
use crate::metrics::Metrics;

/// Where a node is in its life; `/ready` answers 200 only in `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Namespaces and routes are being set up.
    Starting,
    /// Accepting traffic.
    Ready,
    /// Shutting down: no new work, sockets being told and closed.
    Draining,
}

/// Shared node state, behind an `Arc`, given to socket handlers (socketioxide state) and HTTP
/// handlers (axum state).
#[derive(Debug)]
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// This node's id in the cluster.
    pub server_id: String,
    /// Cluster-wide state (in-memory on a single node, Redis in cluster mode).
    pub backends: StateBackends,
    /// Links to the rest of the cluster: the Socket.IO adapter and, in cluster mode, Redis.
    pub link: ClusterLink,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// JWT verifier (and minter for `--dev`).
    pub verifier: TokenVerifier,
    /// Limits on Engine.IO handshakes, checked before a session exists.
    pub handshakes: HandshakeGate,
    /// Wall-clock start time.
    pub started_at: DateTime<Utc>,
    /// Monotonic start time, for uptime.
    pub started: Instant,
    /// Latest measured scheduling delay of the async runtime, milliseconds (see
    /// `http::health::LagMonitor`).
    pub runtime_lag_ms: AtomicU64,
    /// Bytes queued per client session (see [`crate::outbound`]).
    pub outbound: Arc<crate::outbound::Meters>,
    lifecycle: watch::Sender<Lifecycle>,
}

impl App {
    /// Builds the shared state of a node.
    pub fn new(config: Config, backends: StateBackends) -> Result<Arc<Self>, KeyError> {
        Self::assemble(config, backends, ClusterLink::standalone())
    }

    /// Builds the shared state of a node linked to a cluster (or standalone), taking the state
    /// backends the link provides.
    pub fn with_link(config: Config, link: ClusterLink) -> Result<Arc<Self>, KeyError> {
        let backends = link.backends(
            config.args.history_size,
            config.args.state_limits.retention(),
        );
        Self::assemble(config, backends, link)
    }

    fn assemble(
        config: Config,
        backends: StateBackends,
        link: ClusterLink,
    ) -> Result<Arc<Self>, KeyError> {
        let verifier = TokenVerifier::new(&config.jwt_key, config.jwt_algorithm)?;
        let mut metrics = Metrics::new();
        metrics.register_collector(link.metrics_collector());
        let handshakes = HandshakeGate::new(
            config.handshake_rate_limit(),
            config.args.max_pending_sessions,
            config.args.trusted_proxies.clone(),
            &metrics,
        );
        Ok(Arc::new(Self {
            server_id: config.server_id.clone(),
            config,
            backends,
            link,
            metrics,
            verifier,
            handshakes,
            started_at: Utc::now(),
            started: Instant::now(),
            runtime_lag_ms: AtomicU64::new(0),
            outbound: Arc::default(),
            lifecycle: watch::channel(Lifecycle::Starting).0,
        }))
    }

    /// Current lifecycle stage.
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.borrow()
    }

    /// Moves to another lifecycle stage.
    pub fn set_lifecycle(&self, stage: Lifecycle) {
        self.lifecycle.send_replace(stage);
    }

    /// A receiver that sees every lifecycle change.
    pub fn watch_lifecycle(&self) -> watch::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// Seconds since the node started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
