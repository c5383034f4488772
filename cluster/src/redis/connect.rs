//! Connecting: the URL check, fred's client settings, the first connection, and the tasks that
//! keep the control channel and the link state current for the life of the connection.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use tokio::sync::{broadcast, watch};

use super::RedisCluster;
use super::backends::RedisBackends;
use super::config::{ClusterError, RedisStateConfig};
use super::conn::Conn;
use super::control_bus::{ControlBus, read_control_channel};
use super::link::{resubscribe_on_reconnect, track_link};
use super::tasks::Tasks;
use crate::bus::BusCounters;
use crate::keys::{self, KeyLayout, Keys};

/// Base URL schemes fred understands; each may carry `-sentinel` or `-cluster`.
const URL_SCHEMES: [&str; 4] = ["redis", "rediss", "valkey", "valkeys"];

fn scheme_is_known(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        let base = scheme
            .strip_suffix("-sentinel")
            .or_else(|| scheme.strip_suffix("-cluster"))
            .unwrap_or(scheme);
        URL_SCHEMES.contains(&base)
    })
}

/// Attempts per command on a Redis Cluster. fred 10.1 follows an ASK redirection (a slot being
/// migrated) by sending `ASKING` with the redirected command's remaining attempts; with none
/// left, its router gives up for good and every later command of the client times out (seen by
/// the slot-migration test in `tests/redis_cluster_spread.rs`). Elsewhere a command is tried
/// once, so nothing is sent twice after a connection loss; on a cluster a command in flight when
/// a connection drops may be sent again, which the join and leave scripts tolerate (a repeated
/// join finds the member, a repeated leave finds none).
const CLUSTER_COMMAND_ATTEMPTS: u32 = 3;

/// Redirections (`MOVED`, `ASK`) fred follows per command on a Redis Cluster. fred 10.1 answers
/// an `ASK` by sending `ASKING` only while the command has attempts left; when it has none, it
/// does not fail the command but ends its router task, and every later command of the client
/// times out for good (seen by `tests/e2e-cluster/sharded-cluster-failover.test.mjs`, a slot
/// moving under a busy room: "Max attempts reached." then "channel closed"). Each redirection
/// costs an attempt, so following fewer redirections than the attempts left after the first
/// write means the redirection limit ("Too many redirections.", an ordinary error for the
/// caller, who sends the command again: `conn.rs`) is always met before that fatal path.
const CLUSTER_REDIRECTIONS: u32 = 1;

pub(super) fn builder(
    url: &str,
    command_timeout: Duration,
    pubsub_queue: usize,
) -> Result<Builder, ClusterError> {
    if !scheme_is_known(url) {
        return Err(ClusterError::InvalidUrl {
            url: redact(url),
            reason: format!(
                "the scheme must be one of {}, optionally with -sentinel or -cluster",
                URL_SCHEMES.join(", ")
            ),
        });
    }
    let config = Config::from_url(url).map_err(|e| ClusterError::InvalidUrl {
        url: redact(url),
        reason: e.details().to_owned(),
    })?;
    let clustered = config.server.is_clustered();
    let mut b = Builder::from_config(config);
    // Retry forever (0 attempts = unlimited), backing off from 100 ms to 2 s.
    b.set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    b.with_performance_config(|p| {
        p.default_command_timeout = command_timeout;
        p.broadcast_channel_capacity = pubsub_queue;
    });
    b.with_connection_config(|c| {
        c.connection_timeout = command_timeout;
        c.internal_command_timeout = command_timeout;
        c.max_command_attempts = if clustered {
            CLUSTER_COMMAND_ATTEMPTS
        } else {
            1
        };
        if clustered {
            c.max_redirections = CLUSTER_REDIRECTIONS;
        }
        c.unresponsive = UnresponsiveConfig {
            max_timeout: Some(command_timeout * 2),
            interval: Duration::from_millis(500),
        };
    });
    Ok(b)
}

/// The URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

pub(super) fn connect_error(url: &str, e: &Error) -> ClusterError {
    ClusterError::Connect {
        url: redact(url),
        reason: e.to_string(),
    }
}

/// The prefix with a hash tag, so that every prefixed key maps to one Redis Cluster slot (the Lua
/// scripts touch several keys at once). A prefix that already has a tag is kept.
fn cluster_safe_prefix(prefix: &str) -> String {
    if prefix.contains('{') && prefix.contains('}') {
        return prefix.to_owned();
    }
    let base = prefix.strip_suffix(':').unwrap_or(prefix);
    format!("{{{base}}}:")
}

/// The layout a URL gets when the configuration does not choose one: spread over the slots on
/// a Redis Cluster, unless the prefix carries a hash tag (the operator asked for one slot);
/// today's names everywhere else.
fn layout_for(clustered: bool, prefix: &str) -> KeyLayout {
    if clustered && !(prefix.contains('{') && prefix.contains('}')) {
        KeyLayout::Spread
    } else {
        KeyLayout::Classic
    }
}

/// Connects to Redis and starts the control-bus reader and the reconnect watchers.
///
/// The first connection must succeed (so a wrong URL fails start-up); after that, connections are
/// retried forever and state calls fail fast with [`crate::StateError::Unavailable`] meanwhile.
pub async fn connect(url: &str, config: RedisStateConfig) -> Result<RedisCluster, ClusterError> {
    let mut config = config;
    config.validate()?;
    let b = builder(url, config.command_timeout, config.pubsub_queue)?;
    let client = b.build().map_err(|e| connect_error(url, &e))?;
    let layout = config
        .key_layout
        .unwrap_or_else(|| layout_for(client.is_clustered(), &config.key_prefix));
    match layout {
        KeyLayout::Spread if config.key_prefix.contains(['{', '}']) => {
            return Err(ClusterError::InvalidConfig(format!(
                "the spread key layout needs a prefix without braces (got `{}`): a hash tag in \
                 the prefix would put every key in one slot",
                config.key_prefix
            )));
        }
        KeyLayout::Spread => {
            tracing::info!("Redis Cluster: each room, user and node has its own hash tag");
        }
        KeyLayout::Classic if client.is_clustered() => {
            let tagged = cluster_safe_prefix(&config.key_prefix);
            if tagged != config.key_prefix {
                tracing::info!(prefix = %tagged, "Redis Cluster: keys use a hash tag so scripts stay in one slot");
                config.key_prefix = tagged;
            }
        }
        KeyLayout::Classic => {}
    }
    config.key_layout = Some(layout);
    let subscriber = b
        .build_subscriber_client()
        .map_err(|e| connect_error(url, &e))?;
    client.init().await.map_err(|e| connect_error(url, &e))?;
    if let Err(e) = subscriber.init().await {
        let _ = client.quit().await;
        return Err(connect_error(url, &e));
    }

    let conn = Conn {
        client: client.clone(),
        keys: Keys::with_layout(config.key_prefix.clone(), layout),
        link_up: Arc::new(AtomicBool::new(true)),
    };
    let subscriber_up = Arc::new(AtomicBool::new(true));
    let backends = RedisBackends::new(
        conn.clone(),
        config.history_capacity,
        config.retention,
        config.stats_ttl,
    );
    let counters = Arc::new(BusCounters::default());
    let (events_tx, _) = broadcast::channel(config.control_queue);
    let tasks = Tasks::default();
    let bus = ControlBus {
        conn: conn.clone(),
        tasks: tasks.clone(),
        node_id: config.node_id.clone(),
        events: events_tx.clone(),
        counters: counters.clone(),
    };

    // The receiver exists before SUBSCRIBE, so nothing published right after it is missed.
    let control_rx = subscriber.message_rx();
    if let Err(e) = subscriber.subscribe(keys::CONTROL_CHANNEL).await {
        let _ = subscriber.quit().await;
        let _ = client.quit().await;
        return Err(ClusterError::Subscribe {
            channel: keys::CONTROL_CHANNEL.to_owned(),
            reason: e.to_string(),
        });
    }
    tasks.spawn(read_control_channel(
        control_rx,
        config.node_id.clone(),
        events_tx,
        counters,
    ));
    let (resubscribed_tx, resubscribed_rx) = watch::channel(0u64);
    let (subscriber_reconnects_tx, subscriber_reconnects_rx) = watch::channel(0u64);
    tasks.spawn(resubscribe_on_reconnect(
        subscriber.clone(),
        subscriber_reconnects_rx,
        resubscribed_tx,
    ));
    tasks.spawn(track_link(
        subscriber.clone(),
        subscriber_up.clone(),
        subscriber_reconnects_tx,
    ));
    let (reconnects_tx, reconnects_rx) = watch::channel(0u64);
    // The heartbeat bumps the same counter when peers purged this node (see spawn_heartbeat).
    let resync_needed = reconnects_tx.clone();
    tasks.spawn(track_link(
        client.clone(),
        conn.link_up.clone(),
        reconnects_tx,
    ));
    tracing::info!(node_id = %config.node_id, url = %redact(url), "connected to Redis");

    Ok(RedisCluster {
        config,
        conn,
        subscriber,
        subscriber_up,
        backends,
        bus,
        reconnects: reconnects_rx,
        resync_needed,
        purged_by_peers: Arc::default(),
        resubscribed: resubscribed_rx,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes() {
        for ok in [
            "redis://127.0.0.1:6379",
            "rediss://h:1",
            "redis-sentinel://h:26379/0?sentinelServiceName=m",
            "redis-cluster://h:30001?node=h2:30002",
        ] {
            assert!(scheme_is_known(ok), "{ok}");
        }
        for bad in ["http://x", "redis:/x", "127.0.0.1:6379", "redis-foo://h"] {
            assert!(!scheme_is_known(bad), "{bad}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(
            redact("redis-sentinel://u:p@w@h:26379/0?x=a@b"),
            "redis-sentinel://u:***@h:26379/0?x=a@b"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn a_cluster_spreads_its_keys_unless_the_prefix_has_a_tag() {
        assert_eq!(layout_for(true, "gateway:"), KeyLayout::Spread);
        assert_eq!(layout_for(true, "{gateway}:"), KeyLayout::Classic);
        assert_eq!(layout_for(false, "gateway:"), KeyLayout::Classic);
        assert_eq!(layout_for(false, "{gateway}:"), KeyLayout::Classic);
    }

    #[test]
    fn a_clustered_client_meets_its_redirection_limit_before_running_out_of_attempts()
    -> Result<(), ClusterError> {
        let b = builder(
            "redis-cluster://127.0.0.1:30001?node=127.0.0.1:30002",
            Duration::from_secs(1),
            64,
        )?;
        let c = b.get_connection_config();
        // The first write takes one attempt; each redirection followed takes one more, and an
        // ASK met with none left kills fred's router. Leave one spare for a write retried after
        // a connection loss.
        assert!(
            c.max_redirections + 2 <= c.max_command_attempts,
            "redirections {} with attempts {}",
            c.max_redirections,
            c.max_command_attempts
        );
        let single = builder("redis://127.0.0.1:6379", Duration::from_secs(1), 64)?;
        assert_eq!(single.get_connection_config().max_command_attempts, 1);
        Ok(())
    }

    #[test]
    fn cluster_prefix_gets_a_hash_tag() {
        assert_eq!(cluster_safe_prefix("gateway:"), "{gateway}:");
        assert_eq!(cluster_safe_prefix("app"), "{app}:");
        assert_eq!(cluster_safe_prefix("{t}:"), "{t}:");
    }
}
