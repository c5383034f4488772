//! This node's statistics, the cluster overview built from every live node's record, and the
//! background task that keeps this node's record fresh in the node registry.

use crate::sockets::tasks::Tasks;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
pub use cluster::{ClusterStats, ClusterTotals};
use cluster::{Load, NamespaceConnections, NodeStats, StateError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::Io;
use crate::app::App;

/// The namespaces of the gateway, in the order of [`NamespaceConnections`].
pub const NAMESPACES: [&str; 4] = crate::protocol::names::ALL;

/// Cluster-wide figures, as the admin `get stats` event answers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterOverview {
    /// Sockets in every namespace on every live node.
    pub total_connections: u64,
    /// Sockets on `/chat`, cluster-wide.
    pub chat_connections: u64,
    /// Sockets on `/game`, cluster-wide.
    pub game_connections: u64,
    /// Sockets on `/admin`, cluster-wide.
    pub admin_connections: u64,
    /// Names of the registered rooms of the main namespace.
    pub rooms: Vec<String>,
    /// One record per live node, sorted by `serverId`.
    pub nodes: Vec<NodeStats>,
}

fn local_sockets(io: &Io, path: &str) -> Vec<socketioxide::extract::SocketRef<crate::Adapter>> {
    io.of(path)
        .map(|ns| ns.local().sockets())
        .unwrap_or_default()
}

/// This node's figures: sockets per namespace, Socket.IO rooms with a local member, events in
/// and out, resident memory.
pub fn local_stats(app: &App, io: &Io) -> NodeStats {
    let mut counts = [0u64; 4];
    let mut rooms = HashSet::new();
    for (i, path) in NAMESPACES.iter().enumerate() {
        let sockets = local_sockets(io, path);
        counts[i] = sockets.len() as u64;
        for socket in sockets {
            for room in socket.rooms() {
                rooms.insert((*path, room));
            }
        }
    }
    let connections = NamespaceConnections {
        main: counts[0],
        chat: counts[1],
        game: counts[2],
        admin: counts[3],
    };
    NodeStats {
        server_id: app.server_id.clone(),
        hostname: hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: app.uptime_secs(),
        load: Load {
            total_connections: connections.total(),
            connections,
            rooms: rooms.len() as u64,
            messages_in: app.metrics.messages_received.get(),
            messages_out: app.metrics.messages_sent.get(),
            rss_bytes: rss_bytes().unwrap_or(0),
        },
        started_at: app.started_at,
        last_seen: Utc::now(),
        liveness_ttl_ms: None,
    }
}

/// Every live node's record, this node's replaced by fresh figures (the registry may hold one up
/// to a third of the TTL old, or none yet right after start).
pub async fn live_nodes(app: &App, io: &Io) -> Result<Vec<NodeStats>, StateError> {
    let mut nodes = app.backends.nodes.live_nodes().await?;
    nodes.retain(|n| n.server_id != app.server_id);
    nodes.push(local_stats(app, io));
    nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
    Ok(nodes)
}

/// Cluster-wide connections, registered room names and per-node records.
pub async fn cluster_overview(app: &App, io: &Io) -> Result<ClusterOverview, StateError> {
    let nodes = live_nodes(app, io).await?;
    let rooms = app
        .backends
        .rooms
        .list()
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut total = Load::default();
    for n in &nodes {
        total.add(&n.load);
    }
    Ok(ClusterOverview {
        total_connections: total.total_connections,
        chat_connections: total.connections.chat,
        game_connections: total.connections.game,
        admin_connections: total.connections.admin,
        rooms,
        nodes,
    })
}

/// `{ nodes, totals }` over every live node.
pub async fn cluster_stats(app: &App, io: &Io) -> Result<ClusterStats, StateError> {
    Ok(ClusterStats::from_nodes(live_nodes(app, io).await?))
}

/// Sets the gauges that mirror current state (`socketio_connections_active`,
/// `socketio_rooms_total`) from the sockets this node holds and the room registry.
pub async fn refresh_gauges(app: &App, io: &Io) {
    let active: usize = NAMESPACES.iter().map(|p| local_sockets(io, p).len()).sum();
    app.metrics
        .connections_active
        .set(i64::try_from(active).unwrap_or(i64::MAX));
    // A count, not a listing: this runs on every node every few seconds, with any number of
    // rooms.
    match app.backends.rooms.count().await {
        Ok(rooms) => {
            app.metrics
                .rooms_total
                .set(i64::try_from(rooms).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::debug!(error = %e, "room registry unavailable for socketio_rooms_total"),
    }
}

/// How often this node's record is refreshed: a third of its TTL, so two refreshes can fail
/// before the record expires.
pub fn publish_interval(stats_ttl_secs: u64) -> Duration {
    Duration::from_millis((stats_ttl_secs.saturating_mul(1000) / 3).max(1000))
}

/// Starts the task that publishes this node's record every [`publish_interval`] (the first
/// time at once), tracked by `tasks`. Abort the handle to stop it; the shutdown does, before
/// withdrawing the record.
pub fn spawn_publisher(app: Arc<App>, io: Io, tasks: &Tasks) -> JoinHandle<()> {
    let every = publish_interval(app.config.args.stats_ttl_secs);
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            refresh_gauges(&app, &io).await;
            let stats = local_stats(&app, &io);
            if let Err(e) = app.backends.nodes.publish(&stats).await {
                tracing::warn!(error = %e, "cannot publish this node's stats record");
            }
        }
    })
}

/// Resident memory of this process in bytes, from `/proc/self/status` (`None` off Linux).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cluster::test_support::node_stats;

    #[test]
    fn overview_serialises_with_the_contract_names() {
        let o = ClusterOverview {
            total_connections: 3,
            chat_connections: 1,
            game_connections: 1,
            admin_connections: 0,
            rooms: vec!["lobby".into()],
            nodes: vec![node_stats(
                "a",
                NamespaceConnections {
                    main: 1,
                    chat: 1,
                    game: 1,
                    admin: 0,
                },
            )],
        };
        let json = serde_json::to_value(&o).unwrap();
        for key in [
            "totalConnections",
            "chatConnections",
            "gameConnections",
            "adminConnections",
            "rooms",
            "nodes",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(json["nodes"][0]["serverId"], "a");
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tgateway\nVmRSS:\t   12345 kB\nThreads: 4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_bytes().unwrap() > 0);
    }

    /// Counts publications, for the publisher's schedule.
    #[derive(Debug, Default)]
    struct CountingNodes(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl cluster::NodeRegistry for CountingNodes {
        async fn publish(&self, _: &NodeStats) -> cluster::StateResult<()> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        async fn withdraw(&self, _: &str) -> cluster::StateResult<()> {
            Ok(())
        }
        async fn live_nodes(&self) -> cluster::StateResult<Vec<NodeStats>> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_publisher_refreshes_every_third_of_the_ttl_until_aborted() {
        use clap::Parser as _;
        let cli =
            crate::config::Cli::try_parse_from(["gateway", "--dev", "--stats-ttl-secs", "30"])
                .unwrap();
        let config = crate::config::Config::from_args(cli.serve).unwrap();
        let counter = Arc::new(CountingNodes::default());
        let mut backends = cluster::memory::backends(10);
        backends.nodes = counter.clone();
        let app = App::new(config, backends).unwrap();
        let (_layer, io) = socketioxide::SocketIo::builder()
            .with_adapter::<crate::Adapter>(adapter_redis::RedisAdapterCtr::local())
            .build_layer();
        let count = || counter.0.load(std::sync::atomic::Ordering::SeqCst);

        let publisher = spawn_publisher(Arc::clone(&app), io, &Tasks::default());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(count(), 1, "the first record is published at once");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(count(), 2);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(count(), 4);
        publisher.abort();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(count(), 4, "published after being stopped");
    }

    #[test]
    fn publish_interval_is_a_third_of_the_ttl() {
        assert_eq!(publish_interval(60), Duration::from_secs(20));
        assert_eq!(publish_interval(3), Duration::from_secs(1));
        assert_eq!(publish_interval(1), Duration::from_secs(1));
    }
}
