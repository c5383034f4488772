//! Cluster mode: the one place that decides whether a node runs on its own or as one node of a
//! cluster sharing a Redis.
//!
//! Without `REDIS_URL` the adapter runs as a plain local adapter and state lives in memory. With
//! it, Socket.IO traffic crosses nodes through `adapter-redis` (wire-compatible with Node's
//! `@socket.io/redis-adapter`), and rooms, presence, bans, history, game sequence numbers and node
//! records live in Redis through the `cluster` crate.

use std::fmt;
use std::future::{Future, IntoFuture as _};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde_json::json;
use tokio::net::TcpListener;

use adapter_redis::{AdapterError, RedisAdapterConfig, RedisAdapterCtr};
use cluster::StateBackends;
use cluster::redis::{ClusterError, RedisCluster, RedisStateConfig};

use crate::config::Config;

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The Socket.IO adapter could not connect.
    #[error("Redis adapter: {0}")]
    Adapter(#[from] AdapterError),
    /// The cluster state could not connect.
    #[error("cluster state: {0}")]
    Cluster(#[from] ClusterError),
}

/// Longest wait between two attempts to reach Redis at start-up.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Joins the cluster, waiting for Redis as long as it takes. Until then the listener answers
/// `/health` 200 and everything else (`/ready` included) 503, so orchestrators see a node that
/// is alive but not ready rather than one that crash-loops. Returns `None` when `shutdown`
/// completes first.
pub async fn connect_while_starting<S>(
    listener: &TcpListener,
    config: &Config,
    shutdown: &mut S,
    on_waiting: impl FnOnce(),
) -> Result<Option<ClusterLink>, std::io::Error>
where
    S: Future<Output = ()> + Unpin,
{
    let mut failure = match ClusterLink::connect(config).await {
        Ok(link) => return Ok(Some(link)),
        Err(e) => e,
    };
    // Serve the "starting" answers on a twin of the listening socket; the node's own server
    // takes over the same socket once Redis is reachable.
    let twin = TcpListener::from_std(clone_listener(listener)?)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reason = std::sync::Arc::new(std::sync::Mutex::new(failure.to_string()));
    let starting = starting_router(std::sync::Arc::clone(&reason));
    let server = tokio::spawn(
        axum::serve(twin, starting)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    on_waiting();
    let mut delay = Duration::from_millis(250);
    let link = loop {
        tracing::warn!(error = %failure, retry_in_ms = delay.as_millis() as u64, "waiting for Redis before joining the cluster");
        tokio::select! {
            () = &mut *shutdown => break None,
            () = tokio::time::sleep(delay) => {}
        }
        match ClusterLink::connect(config).await {
            Ok(link) => break Some(link),
            Err(e) => {
                *reason.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                failure = e;
            }
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    };
    let _ = stop.send(());
    let _ = server.await;
    Ok(link)
}

fn clone_listener(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    let fd = socket2::SockRef::from(listener).try_clone()?;
    let std: std::net::TcpListener = fd.into();
    std.set_nonblocking(true)?;
    Ok(std)
}

fn starting_router(reason: std::sync::Arc<std::sync::Mutex<String>>) -> axum::Router {
    axum::Router::new()
        .route(
            "/health",
            axum::routing::get(|| async {
                Json(json!({ "status": "healthy", "issues": [], "stage": "starting" }))
            }),
        )
        .fallback(move || {
            let reason = reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
            async move {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "status": "starting",
                        "ready": false,
                        "reason": format!("waiting for Redis: {reason}"),
                    })),
                )
                    .into_response()
            }
        })
}

/// The node's links to the rest of the cluster (none on a single node).
#[derive(Debug)]
pub struct ClusterLink {
    adapter: RedisAdapterCtr,
    redis: Option<Arc<RedisCluster>>,
    /// This node's liveness beat, held (never read) from joining until the process ends: a
    /// draining node is alive.
    _liveness: Option<cluster::redis::Liveness>,
}

impl ClusterLink {
    /// A node on its own: local adapter, no Redis.
    pub fn standalone() -> Self {
        Self {
            adapter: RedisAdapterCtr::local(),
            redis: None,
            _liveness: None,
        }
    }

    /// Connects to the cluster named by `REDIS_URL`, or returns a standalone link without it.
    pub async fn connect(config: &Config) -> Result<Self, LinkError> {
        let Some(url) = config.args.redis_url.as_deref() else {
            return Ok(Self::standalone());
        };
        let mut state_config = RedisStateConfig::new(config.server_id.clone())
            .with_stats_ttl(Duration::from_secs(config.args.stats_ttl_secs))
            .with_liveness_ttl(Duration::from_millis(config.args.liveness_ttl_ms));
        state_config.history_capacity = config.args.history_size;
        state_config.retention = config.args.state_limits.retention();
        // List the stats records at least as often as they are refreshed; liveness keys, which
        // decide deaths, are read every liveness beat regardless.
        state_config.monitor.interval = state_config
            .stats_refresh
            .min(state_config.monitor.interval);
        let redis = cluster::redis::connect(url, state_config).await?;
        let liveness = redis.spawn_liveness();
        let adapter_config = RedisAdapterConfig {
            mode: adapter_mode(config.args.adapter_mode, config.args.adapter_subscriptions),
            classic_subscriptions: match config.args.adapter_subscriptions {
                crate::config::AdapterSubscriptionsArg::Static => {
                    adapter_redis::ClassicSubscriptions::Pattern
                }
                _ => adapter_redis::ClassicSubscriptions::PerRoom,
            },
            join_fence: Duration::from_millis(config.args.adapter_join_fence_ms),
            ..RedisAdapterConfig::default()
        };
        let adapter = RedisAdapterCtr::connect(url, adapter_config).await?;
        tracing::info!(
            redis = %cluster::redis::redact(url),
            server_id = %config.server_id,
            "cluster mode: Socket.IO traffic and state shared through Redis"
        );
        Ok(Self {
            adapter,
            redis: Some(Arc::new(redis)),
            _liveness: Some(liveness),
        })
    }

    /// Closes the Redis connections (after the node has drained).
    pub async fn close(&self) {
        if let Some(redis) = &self.redis {
            redis.shutdown().await;
        }
        self.adapter.shutdown().await;
    }

    /// The adapter constructor given to socketioxide.
    pub fn adapter(&self) -> &RedisAdapterCtr {
        &self.adapter
    }

    /// The Redis side of the cluster, in cluster mode.
    pub fn redis(&self) -> Option<&RedisCluster> {
        self.redis.as_deref()
    }

    /// The state backends: Redis in cluster mode, memory otherwise.
    pub fn backends(&self, history_size: usize, retention: cluster::Retention) -> StateBackends {
        match &self.redis {
            Some(redis) => redis.backends(),
            None => cluster::memory::backends_with(history_size, retention),
        }
    }

    /// Whether the node is connected to everything it needs (always true on its own).
    pub fn is_connected(&self) -> bool {
        link_is_connected(&self.adapter, self.redis.as_deref())
    }

    /// The adapter and control-bus figures, read at each scrape, for the node's registry
    /// ([`crate::metrics::Metrics::register_collector`]).
    pub fn metrics_collector(&self) -> Box<dyn Collector> {
        Box::new(LinkCollector {
            adapter: self.adapter.clone(),
            redis: self.redis.clone(),
        })
    }
}

/// Whether a node is connected to everything it needs (always true on its own).
fn link_is_connected(adapter: &RedisAdapterCtr, redis: Option<&RedisCluster>) -> bool {
    redis.is_none_or(|r| r.is_connected() && adapter.is_connected())
}

/// Exposes the counters the adapter and the control bus keep themselves (help texts end with a
/// full stop, as the registry writes those of the metrics registered in it):
/// `socketio_adapter_<field>_total`, `socketio_adapter_subscriptions`, `redis_connected` and, in
/// cluster mode, `cluster_control_<field>_total`.
#[derive(Debug)]
struct LinkCollector {
    adapter: RedisAdapterCtr,
    redis: Option<Arc<RedisCluster>>,
}

impl LinkCollector {
    fn counter(
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: u64,
    ) -> fmt::Result {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
    }

    fn gauge(
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: i64,
    ) -> fmt::Result {
        let gauge = ConstGauge::new(value);
        gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
    }
}

impl Collector for LinkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let a = self.adapter.metrics();
        let adapter_counters = [
            (
                "published",
                a.published,
                "Messages published to Redis by the adapter.",
            ),
            (
                "received",
                a.received,
                "Messages received from Redis by the adapter.",
            ),
            (
                "dropped",
                a.dropped,
                "Adapter messages lost to a full queue.",
            ),
            (
                "decode_errors",
                a.decode_errors,
                "Adapter messages that could not be decoded.",
            ),
            (
                "request_timeouts",
                a.request_timeouts,
                "Adapter requests that ended at their deadline.",
            ),
            (
                "reconnects",
                a.reconnects,
                "Adapter reconnections to Redis.",
            ),
            (
                "publish_failures",
                a.publish_failures,
                "Adapter messages that could not be published.",
            ),
            (
                "subscribe_failures",
                a.subscribe_failures,
                "Adapter SUBSCRIBE/UNSUBSCRIBE failures.",
            ),
            (
                "sharded_repairs",
                a.sharded_repairs,
                "Sharded mode: times lost shard subscriptions were subscribed again.",
            ),
            (
                "sharded_resubscribes",
                a.sharded_resubscribes,
                "Sharded mode: shard channels subscribed again.",
            ),
            (
                "sharded_repair_gap_ms",
                a.sharded_repair_gap_ms_sum,
                "Sharded mode: milliseconds in which lost shard subscriptions were missing (upper bound, summed).",
            ),
            (
                "join_fence_broadcasts",
                a.join_fence_broadcasts,
                "Sharded dynamic modes: room broadcasts sent on the main channel by the join fence.",
            ),
            (
                "join_fence_late",
                a.join_fence_late,
                "Sharded dynamic modes: remote joins subscribed here after the join fence ended.",
            ),
            (
                "unheld_room_messages",
                a.unheld_room_messages,
                "Classic static subscriptions: room broadcasts received for rooms no local socket holds.",
            ),
        ];
        for (field, value, help) in adapter_counters {
            Self::counter(
                &mut encoder,
                &format!("socketio_adapter_{field}"),
                help,
                value,
            )?;
        }
        Self::gauge(
            &mut encoder,
            "socketio_adapter_subscriptions",
            "Redis channels and patterns the adapter wants.",
            i64::try_from(a.subscriptions).unwrap_or(i64::MAX),
        )?;
        Self::gauge(
            &mut encoder,
            "redis_connected",
            "Whether the node is connected to Redis (1 on a single node).",
            i64::from(link_is_connected(&self.adapter, self.redis.as_deref())),
        )?;
        if let Some(redis) = &self.redis {
            let b = redis.bus().counters();
            let bus_counters = [
                ("published", b.published, "Control messages published."),
                (
                    "received",
                    b.received,
                    "Control messages received from other nodes.",
                ),
                (
                    "unknown_events",
                    b.unknown_events,
                    "Control messages with an unknown event.",
                ),
                (
                    "malformed",
                    b.malformed,
                    "Control messages that could not be decoded.",
                ),
                (
                    "lagged",
                    b.subscriber_lagged + b.transport_lagged,
                    "Control messages dropped by a lagging reader.",
                ),
            ];
            for (field, value, help) in bus_counters {
                Self::counter(
                    &mut encoder,
                    &format!("cluster_control_{field}"),
                    help,
                    value,
                )?;
            }
        }
        Ok(())
    }
}

/// The adapter's wire from the `ADAPTER_MODE` and `ADAPTER_SUBSCRIPTIONS` settings.
fn adapter_mode(
    mode: crate::config::AdapterModeArg,
    subscriptions: crate::config::AdapterSubscriptionsArg,
) -> adapter_redis::AdapterMode {
    use crate::config::{AdapterModeArg, AdapterSubscriptionsArg};
    use adapter_redis::sharded_wire::SubscriptionMode;
    match (mode, subscriptions) {
        (AdapterModeArg::Classic, _) => adapter_redis::AdapterMode::Classic,
        (AdapterModeArg::Sharded, AdapterSubscriptionsArg::Static) => {
            adapter_redis::AdapterMode::Sharded(SubscriptionMode::Static)
        }
        (AdapterModeArg::Sharded, AdapterSubscriptionsArg::Dynamic) => {
            adapter_redis::AdapterMode::Sharded(SubscriptionMode::Dynamic)
        }
        (AdapterModeArg::Sharded, AdapterSubscriptionsArg::DynamicPrivate) => {
            adapter_redis::AdapterMode::Sharded(SubscriptionMode::DynamicPrivate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn standalone_link_figures_keep_their_names() {
        let link = ClusterLink::standalone();
        let mut metrics = Metrics::new();
        metrics.register_collector(link.metrics_collector());
        let text = metrics.render();
        for field in [
            "published",
            "received",
            "dropped",
            "decode_errors",
            "request_timeouts",
            "reconnects",
            "publish_failures",
            "subscribe_failures",
        ] {
            let name = format!("socketio_adapter_{field}");
            assert!(
                text.contains(&format!("\n# TYPE {name} counter\n{name}_total 0\n")),
                "{name} missing in\n{text}"
            );
        }
        assert!(text.contains(
            "\n# HELP socketio_adapter_subscriptions Redis channels and patterns the adapter wants.\n\
             # TYPE socketio_adapter_subscriptions gauge\nsocketio_adapter_subscriptions 0\n"
        ));
        assert!(text.contains(
            "\n# HELP redis_connected Whether the node is connected to Redis (1 on a single node).\n\
             # TYPE redis_connected gauge\nredis_connected 1\n"
        ));
        // A single node has no control bus.
        assert!(!text.contains("cluster_control_"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
