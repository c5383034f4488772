//! The Redis pub/sub boundary: the few things the adapter needs from Redis to talk to other
//! nodes, with one implementation per wire.
//!
//! * [`PubSubKind::Classic`]: `PUBLISH`, `SUBSCRIBE`/`PSUBSCRIBE` and `PUBSUB NUMSUB` (on a Redis
//!   Cluster every message is copied to every primary);
//! * [`PubSubKind::Sharded`]: `SPUBLISH`, `SSUBSCRIBE` and `PUBSUB SHARDNUMSUB` summed over the
//!   primaries (Redis 7): a message is handled by the primary owning its channel's slot only,
//!   see `docs/sharded-adapter.md`, sections 1 and 4.3.
//!
//! Both deliver what they receive on fred's pub/sub channel ([`Transport::messages`]), each
//! message with its channel, and keep one subscriber and one publishing connection (one per
//! primary on a cluster).

mod classic;
mod sharded;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface};
use fred::prelude::{Builder, Config, ReconnectPolicy};
use fred::types::RespVersion;
use fred::types::config::Server;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RedisAdapterConfig;
use crate::error::AdapterError;
use crate::metrics::{AdapterMetricsSnapshot, Metrics};

use classic::ClassicPubSub;
use sharded::ShardedPubSub;

/// Which pub/sub commands carry the adapter's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PubSubKind {
    /// `PUBLISH`/`SUBSCRIBE`, as Node's `createAdapter`.
    #[default]
    Classic,
    /// `SPUBLISH`/`SSUBSCRIBE` (Redis 7 or later), as Node's `createShardedAdapter`.
    Sharded,
}

/// One adapter's pub/sub connections to Redis.
#[derive(Debug)]
pub struct Transport {
    kind: Kind,
    metrics: Arc<Metrics>,
    /// Ends the transport's own tasks (the sharded subscription repair) at [`Self::quit`].
    cancel: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Debug)]
enum Kind {
    Classic(ClassicPubSub),
    Sharded(Arc<ShardedPubSub>),
}

/// Attempts per command on a Redis Cluster. fred 10.1 follows a `MOVED` or `ASK` redirection
/// (a slot moved or being moved) by sending the command again with its remaining attempts; with
/// none left it fails the command ("Too many failed write attempts.", before writing it), and an
/// `ASK` without attempts breaks the client's router for good (found by the cluster crate, see
/// `cluster/src/redis/connect.rs`). Elsewhere a command is tried once, so nothing is sent twice
/// after a connection loss.
const CLUSTER_COMMAND_ATTEMPTS: u32 = 3;

/// The fred settings every connection of the adapter shares.
fn builder(url: &str, config: &RedisAdapterConfig) -> Result<Builder, AdapterError> {
    let mut fred_config = Config::from_url(url)?;
    let clustered = fred_config.server.is_clustered();
    // RESP3 lets the subscriber connection also answer PING and CLIENT INFO.
    fred_config.version = RespVersion::RESP3;
    fred_config.fail_fast = true;
    let mut builder = Builder::from_config(fred_config);
    let max_delay = u32::try_from(config.reconnect_max_delay.as_millis())
        .unwrap_or(u32::MAX)
        .max(20);
    builder.set_policy(ReconnectPolicy::new_exponential(0, 20, max_delay, 2));
    let capacity = config.fred_broadcast_capacity.max(32);
    let command_timeout = config.request_timeout;
    builder.with_performance_config(|perf| {
        perf.broadcast_channel_capacity = capacity;
        perf.default_command_timeout = command_timeout;
    });
    let unresponsive = config.unresponsive_timeout.max(Duration::from_millis(100));
    builder.with_connection_config(|conn| {
        conn.connection_timeout = Duration::from_secs(2);
        conn.internal_command_timeout = Duration::from_secs(2);
        conn.max_command_attempts = if clustered {
            CLUSTER_COMMAND_ATTEMPTS
        } else {
            1
        };
        conn.unresponsive.max_timeout = Some(unresponsive);
        conn.unresponsive.interval = (unresponsive / 4).max(Duration::from_millis(10));
    });
    Ok(builder)
}

impl Transport {
    /// Connects to the Redis at `url` (`redis://`, `redis-cluster://`, `redis-sentinel://`).
    /// [`PubSubKind::Sharded`] refuses a Redis older than 7 with
    /// [`AdapterError::Unsupported`].
    pub async fn connect(
        url: &str,
        config: &RedisAdapterConfig,
        kind: PubSubKind,
    ) -> Result<Self, AdapterError> {
        let builder = builder(url, config)?;
        let metrics = Arc::<Metrics>::default();
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let kind = match kind {
            PubSubKind::Classic => Kind::Classic(ClassicPubSub::connect(&builder).await?),
            PubSubKind::Sharded => {
                let sharded =
                    Arc::new(ShardedPubSub::connect(&builder, config, metrics.clone()).await?);
                let repair = sharded.clone().repair_loop();
                let until = cancel.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        () = repair => {}
                        () = until.cancelled() => {}
                    }
                });
                Kind::Sharded(sharded)
            }
        };
        Ok(Self {
            kind,
            metrics,
            cancel,
            tasks,
        })
    }

    pub(crate) fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// This transport's counters; `subscriptions` counts the channels the sharded transport
    /// keeps subscribed (0 for the classic one, whose wanted set the adapter keeps).
    pub fn metrics(&self) -> AdapterMetricsSnapshot {
        let subscriptions = match &self.kind {
            Kind::Classic(_) => 0,
            Kind::Sharded(s) => s.wanted_count() as u64,
        };
        self.metrics.snapshot(subscriptions)
    }

    /// Which commands it uses.
    pub fn kind(&self) -> PubSubKind {
        match &self.kind {
            Kind::Classic(_) => PubSubKind::Classic,
            Kind::Sharded(_) => PubSubKind::Sharded,
        }
    }

    /// Every message received on a subscribed channel or pattern, with its channel.
    pub fn messages(&self) -> broadcast::Receiver<fred::types::Message> {
        self.subscriber().message_rx()
    }

    /// An event each time the subscriber (re)connects to a server.
    pub fn reconnects(&self) -> broadcast::Receiver<Server> {
        self.subscriber().reconnect_rx()
    }

    fn subscriber(&self) -> &fred::clients::SubscriberClient {
        match &self.kind {
            Kind::Classic(c) => &c.sub,
            Kind::Sharded(s) => &s.sub,
        }
    }

    fn publisher(&self) -> &Client {
        match &self.kind {
            Kind::Classic(c) => &c.publisher,
            Kind::Sharded(s) => &s.publisher,
        }
    }

    /// Both connections are up.
    pub fn is_connected(&self) -> bool {
        self.subscriber().is_connected() && self.publisher().is_connected()
    }

    /// The clients to keep alive with a heartbeat (subscriber and publisher).
    pub(crate) fn heartbeat_clients(&self) -> [Client; 2] {
        [self.subscriber().to_client(), self.publisher().clone()]
    }

    /// Publishes `payload` on `channel` (`PUBLISH`, or `SPUBLISH` at the slot's owner).
    pub async fn publish(&self, channel: String, payload: Bytes) -> Result<(), AdapterError> {
        match &self.kind {
            Kind::Classic(c) => c.publish(channel, payload).await,
            Kind::Sharded(s) => s.publish(channel, payload).await,
        }
    }

    /// Subscribes to `channels`. The classic transport returns once `SUBSCRIBE` is written
    /// (confirm with [`Self::confirm_subscriptions`]); the sharded one once Redis confirmed
    /// every `SSUBSCRIBE`, and it keeps them subscribed across slot moves and failovers until
    /// [`Self::unsubscribe`].
    pub async fn subscribe(&self, channels: Vec<String>) -> Result<(), AdapterError> {
        match &self.kind {
            Kind::Classic(c) => c.subscribe(channels).await,
            Kind::Sharded(s) => s.subscribe(channels).await,
        }
    }

    /// Waits until Redis has handled every subscription written before; `false` if it did
    /// not answer within `timeout`.
    pub async fn confirm_subscriptions(&self, timeout: Duration) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.confirm_subscriptions(timeout).await,
            // Each SSUBSCRIBE was answered by Redis before `subscribe` returned.
            Kind::Sharded(_) => true,
        }
    }

    /// Unsubscribes from `channels`.
    pub async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), AdapterError> {
        match &self.kind {
            Kind::Classic(c) => c.unsubscribe(channels).await,
            Kind::Sharded(s) => s.unsubscribe(channels).await,
        }
    }

    /// Subscribes to glob patterns; sharded pub/sub has no pattern form.
    pub async fn psubscribe(&self, patterns: Vec<String>) -> Result<(), AdapterError> {
        match &self.kind {
            Kind::Classic(c) => c.psubscribe(patterns).await,
            Kind::Sharded(_) => Err(AdapterError::Unsupported(
                "sharded pub/sub has no pattern subscriptions".into(),
            )),
        }
    }

    /// Unsubscribes from glob patterns.
    pub async fn punsubscribe(&self, patterns: Vec<String>) -> Result<(), AdapterError> {
        match &self.kind {
            Kind::Classic(c) => c.punsubscribe(patterns).await,
            Kind::Sharded(_) => Err(AdapterError::Unsupported(
                "sharded pub/sub has no pattern subscriptions".into(),
            )),
        }
    }

    /// Connections subscribed to `channel`: `PUBSUB NUMSUB`, or `PUBSUB SHARDNUMSUB` summed
    /// over every primary (cached for 200 ms).
    pub async fn subscriber_count(&self, channel: &str) -> Result<u64, AdapterError> {
        match &self.kind {
            Kind::Classic(c) => c.subscriber_count(channel).await,
            Kind::Sharded(s) => s.subscriber_count(channel).await,
        }
    }

    /// Closes the connections and ends the transport's tasks.
    pub async fn quit(&self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = self.subscriber().quit().await;
        let _ = self.publisher().quit().await;
        self.tasks.wait().await;
    }
}

/// The count in a `PUBSUB NUMSUB`/`SHARDNUMSUB` answer for one channel.
pub(crate) fn numsub_count(value: &fred::types::Value) -> u64 {
    use fred::types::Value as RedisValue;
    let as_u64 = |v: &RedisValue| match v {
        RedisValue::Integer(i) => u64::try_from(*i).ok(),
        RedisValue::String(s) => s.parse().ok(),
        _ => None,
    };
    match value {
        RedisValue::Array(items) => items.get(1).and_then(as_u64).unwrap_or(0),
        RedisValue::Map(map) => map
            .clone()
            .inner()
            .values()
            .next()
            .and_then(as_u64)
            .unwrap_or(0),
        other => as_u64(other).unwrap_or(0),
    }
}
