//! The Redis side of the cluster: state backends, control bus, node stats heartbeat, dead-node
//! monitor, and re-registration after a Redis outage.
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
pub(crate) mod conn;
mod monitor;
pub(crate) mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use crate::bans::{BanSync, RedisBans};
pub use crate::games::RedisGames;
pub use crate::history::RedisHistory;
pub use crate::nodes::RedisNodes;
pub use crate::presence::RedisPresence;
pub use crate::rooms::RedisRooms;
pub use monitor::{MonitorConfig, NodeEvent, NodeLeft, NodeMonitor};

use crate::aggregate::ClusterStats;
use crate::bus::{
    BusCounters, BusCountersSnapshot, ControlEvent, ControlSubscription, ReceivedControl,
    ServerShutdown, SystemAnnouncement, UserBanned, decode_message, encode_message,
};
use crate::keys::{self, Keys};
use crate::state::{
    Member, OnlineSocket, Presence, Retention, RoomRecord, RoomRegistry, StateBackends, StateError,
    StateResult,
};
use crate::stats::{NodeRegistry, NodeStats};
use backends::RedisBackends;
use conn::{Conn, encode, state_error};

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

    fn validate(&self) -> Result<(), ClusterError> {
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

fn builder(
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
        c.max_command_attempts = 1;
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

fn connect_error(url: &str, e: &Error) -> ClusterError {
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

/// Connects to Redis and starts the control-bus reader and the reconnect watchers.
///
/// The first connection must succeed (so a wrong URL fails start-up); after that, connections are
/// retried forever and state calls fail fast with [`StateError::Unavailable`] meanwhile.
pub async fn connect(url: &str, config: RedisStateConfig) -> Result<RedisCluster, ClusterError> {
    let mut config = config;
    config.validate()?;
    let b = builder(url, config.command_timeout, config.pubsub_queue)?;
    let client = b.build().map_err(|e| connect_error(url, &e))?;
    if client.is_clustered() {
        let tagged = cluster_safe_prefix(&config.key_prefix);
        if tagged != config.key_prefix {
            tracing::info!(prefix = %tagged, "Redis Cluster: keys use a hash tag so scripts stay in one slot");
            config.key_prefix = tagged;
        }
    }
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
        keys: Keys::new(config.key_prefix.clone()),
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
    let bus = ControlBus {
        conn: conn.clone(),
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
    let mut tasks = vec![tokio::spawn(read_control_channel(
        control_rx,
        config.node_id.clone(),
        events_tx,
        counters,
    ))];
    let (resubscribed_tx, resubscribed_rx) = watch::channel(0u64);
    let (subscriber_reconnects_tx, subscriber_reconnects_rx) = watch::channel(0u64);
    tasks.push(tokio::spawn(resubscribe_on_reconnect(
        subscriber.clone(),
        subscriber_reconnects_rx,
        resubscribed_tx,
    )));
    tasks.push(tokio::spawn(track_link(
        subscriber.clone(),
        subscriber_up.clone(),
        subscriber_reconnects_tx,
    )));
    let (reconnects_tx, reconnects_rx) = watch::channel(0u64);
    // The heartbeat bumps the same counter when peers purged this node (see spawn_heartbeat).
    let resync_needed = reconnects_tx.clone();
    tasks.push(tokio::spawn(track_link(
        client.clone(),
        conn.link_up.clone(),
        reconnects_tx,
    )));
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
        resubscribed: resubscribed_rx,
        tasks,
    })
}

/// Hands each control message from fred's queue to the bus; does nothing else, so it keeps up.
async fn read_control_channel(
    mut rx: broadcast::Receiver<fred::types::Message>,
    node_id: String,
    events: broadcast::Sender<ReceivedControl>,
    counters: Arc<BusCounters>,
) {
    loop {
        let msg = match rx.recv().await {
            Ok(msg) => msg,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                counters.transport_lagged.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    missed = n,
                    "control channel reader fell behind fred's queue"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if &*msg.channel != keys::CONTROL_CHANNEL {
            continue;
        }
        let Some(raw) = msg.value.as_str() else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Some(ev) = counters.account(decode_message(&raw, &node_id)) {
            // No subscriber yet is not an error: the event simply has no listener.
            let _ = events.send(ev);
        }
    }
}

/// fred 10.1's own resubscription is broken (it sends empty SUBSCRIBE lists), so the control
/// channel is subscribed again by hand after every reconnect.
async fn resubscribe_on_reconnect(
    subscriber: SubscriberClient,
    mut reconnects: watch::Receiver<u64>,
    done: watch::Sender<u64>,
) {
    while reconnects.changed().await.is_ok() {
        match subscriber.subscribe(keys::CONTROL_CHANNEL).await {
            Ok(()) => {
                tracing::info!("resubscribed to the control channel after a reconnect");
                done.send_modify(|n| *n += 1);
            }
            Err(e) => tracing::error!(error = %e, "resubscribing to the control channel failed"),
        }
    }
}

/// Keeps `up` in step with one fred connection and counts its reconnections.
///
/// fred reports a lost connection on its error channel at once, but its client state stays
/// "connected" until the first reconnection attempt (after the policy's delay); commands sent in
/// between would wait for the full command timeout. So `up` drops on the error and rises again
/// when fred's state has visibly left "connected" (from then on fred's state is accurate), on a
/// reconnect, or after a short grace when the error did not cost the connection.
async fn track_link<C>(client: C, up: Arc<AtomicBool>, reconnects: watch::Sender<u64>)
where
    C: ClientLike + EventInterface,
{
    let mut errors = client.error_rx();
    let mut reconnected = client.reconnect_rx();
    loop {
        tokio::select! {
            err = errors.recv() => match err {
                Ok((e, _)) => {
                    tracing::warn!(error = %e, "Redis connection error");
                    up.store(false, Ordering::Release);
                    let grace = tokio::time::sleep(Duration::from_millis(500));
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            () = &mut grace => break,
                            r = reconnected.recv() => {
                                if !matches!(r, Err(broadcast::error::RecvError::Closed)) {
                                    tracing::info!("reconnected to Redis");
                                    reconnects.send_modify(|n| *n += 1);
                                }
                                break;
                            }
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if !client.is_connected() {
                                    break;
                                }
                            }
                        }
                    }
                    up.store(true, Ordering::Release);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            r = reconnected.recv() => match r {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    tracing::info!("reconnected to Redis");
                    reconnects.send_modify(|n| *n += 1);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Publishing and receiving control events on `cluster:message`.
#[derive(Clone, Debug)]
pub struct ControlBus {
    conn: Conn,
    node_id: String,
    events: broadcast::Sender<ReceivedControl>,
    counters: Arc<BusCounters>,
}

impl ControlBus {
    /// Publishes an event as this node. Returns how many subscribers (nodes) Redis delivered it to.
    pub async fn publish(&self, event: &ControlEvent) -> StateResult<u64> {
        self.conn.ensure_connected()?;
        let raw = encode_message(&self.node_id, event, chrono::Utc::now())
            .map_err(|e| StateError::Corrupt(e.to_string()))?;
        let receivers: i64 = self
            .conn
            .client
            .publish(keys::CONTROL_CHANNEL, raw)
            .await
            .map_err(|e| state_error(&e))?;
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        Ok(u64::try_from(receivers).unwrap_or_default())
    }

    /// Publishes `user_banned`.
    pub async fn publish_user_banned(&self, ban: UserBanned) -> StateResult<u64> {
        self.publish(&ControlEvent::UserBanned(ban)).await
    }

    /// Publishes `system_announcement`.
    pub async fn publish_announcement(&self, announcement: SystemAnnouncement) -> StateResult<u64> {
        self.publish(&ControlEvent::SystemAnnouncement(announcement))
            .await
    }

    /// Publishes `server_shutdown` (peers then treat this node as gone at once).
    pub async fn publish_server_shutdown(&self, shutdown: ServerShutdown) -> StateResult<u64> {
        self.publish(&ControlEvent::ServerShutdown(shutdown)).await
    }

    /// A new receiver of events from other nodes (see [`ControlSubscription`] for the overflow
    /// policy). Events published before this call are not delivered to it.
    pub fn subscribe(&self) -> ControlSubscription {
        ControlSubscription {
            rx: self.events.subscribe(),
            counters: self.counters.clone(),
        }
    }

    /// Spawns a task calling `handler` for every event until the bus shuts down.
    pub fn spawn_handler(&self, handler: Arc<dyn crate::bus::ControlHandler>) -> JoinHandle<()> {
        tokio::spawn(crate::bus::dispatch(self.subscribe(), handler))
    }

    /// The bus counters.
    pub fn counters(&self) -> BusCountersSnapshot {
        self.counters.snapshot()
    }

    /// This node's id (the `serverId` of its messages).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}

/// One room membership a node holds, for [`RedisCluster::resync`].
#[derive(Clone, Debug)]
pub struct LocalMembership {
    /// The room as this node knows it (recreated from this when Redis lost it).
    pub room: RoomRecord,
    /// The member (its `node_id` is replaced by the resyncing node's id).
    pub member: Member,
}

/// What a node holds locally: its connected sockets of `/` and their room memberships.
#[derive(Clone, Debug, Default)]
pub struct LocalSnapshot {
    /// Sockets connected to this node (`node_id` is replaced by the resyncing node's id).
    pub sockets: Vec<OnlineSocket>,
    /// Room memberships of those sockets.
    pub memberships: Vec<LocalMembership>,
}

/// What a resync wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResyncReport {
    /// Sockets registered in presence.
    pub sockets: usize,
    /// Memberships registered.
    pub memberships: usize,
    /// Rooms that Redis no longer had and that were recreated from the node's records.
    pub rooms_recreated: usize,
    /// Whether the node's stats record was republished.
    pub stats_republished: bool,
}

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
    resubscribed: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
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

    /// Makes Redis hold exactly what this node holds: republishes the last stats record, then
    /// replaces this node's presence and memberships with `snapshot` in one atomic script
    /// (recreating rooms Redis lost, deleting rooms left empty). Call it after every reconnect
    /// and once at start-up (with an empty snapshot it clears a previous run's leftovers).
    pub async fn resync(&self, snapshot: &LocalSnapshot) -> StateResult<ResyncReport> {
        let node = &self.config.node_id;
        let mut stats_republished = false;
        if let Some(mut stats) = self.backends.nodes.last_published() {
            stats.last_seen = chrono::Utc::now();
            self.backends.nodes.publish(&stats).await?;
            stats_republished = true;
        }
        let k = &self.conn.keys;
        let mut args = vec![
            k.prefix().to_owned(),
            node.clone(),
            snapshot.sockets.len().to_string(),
        ];
        for s in &snapshot.sockets {
            let mut s = s.clone();
            s.node_id.clone_from(node);
            args.push(s.socket_id.clone());
            args.push(s.user_id.clone());
            args.push(encode(&s)?);
        }
        for m in &snapshot.memberships {
            let mut member = m.member.clone();
            member.node_id.clone_from(node);
            args.push(m.room.id.clone());
            args.push(encode(&m.room)?);
            args.push(m.room.max_users.to_string());
            args.push(member.socket_id.clone());
            args.push(encode(&member)?);
        }
        let r: Vec<i64> = self
            .conn
            .eval(
                &scripts::RESYNC_NODE,
                vec![
                    k.presence_sockets(),
                    k.node_sockets(node),
                    k.node_memberships(node),
                    k.rooms_index(),
                    k.order_counter(),
                ],
                args,
            )
            .await?;
        let at =
            |i: usize| usize::try_from(r.get(i).copied().unwrap_or_default()).unwrap_or_default();
        let report = ResyncReport {
            sockets: at(0),
            memberships: at(1),
            rooms_recreated: at(2),
            stats_republished,
        };
        tracing::info!(?report, "re-registered this node's state in Redis");
        Ok(report)
    }

    /// Makes Redis and this node agree on the bans (see [`RedisBans::sync`]): bans Redis lost are
    /// written back, and the node learns every ban in force. Call it at start-up, after every
    /// reconnect and periodically; then disconnect the local users among [`BanSync::active`].
    pub async fn sync_bans(&self) -> StateResult<BanSync> {
        self.backends.bans.sync().await
    }

    /// Records a ban announced by another node (`user_banned`), so this node can write it back
    /// should Redis lose it.
    pub fn remember_ban(&self, ban: crate::state::Ban) {
        self.backends.bans.remember(ban);
    }

    /// The bans in force this node knows of.
    pub fn known_bans(&self) -> Vec<crate::state::Ban> {
        self.backends.bans.known()
    }

    /// Each id escaped by the Lua scripts' `esc`, so tests can hold it to [`crate::keys::key_part`].
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn lua_key_parts(&self, ids: &[&str]) -> StateResult<Vec<String>> {
        self.conn
            .eval(
                &scripts::ESCAPE_IDS,
                vec![],
                ids.iter().map(|s| (*s).to_owned()).collect(),
            )
            .await
    }

    /// Removes what a previous process under this node's id left in Redis (peers do not see a
    /// restart within the stats TTL as a death, so nobody else cleans it up). Call once at start-up,
    /// before accepting sockets, and emit `user offline` / `user left` for what it reports.
    pub async fn purge_own_leftovers(&self) -> StateResult<NodeLeft> {
        let node = &self.config.node_id;
        let purged = self.backends.rooms.purge_node(node).await?;
        let went_offline = self.backends.presence.purge_node(node).await?;
        if !purged.is_empty() || !went_offline.is_empty() {
            tracing::info!(
                memberships = purged.len(),
                offline = went_offline.len(),
                "removed a previous run's leftovers"
            );
        }
        Ok(NodeLeft {
            server_id: node.clone(),
            purged_here: true,
            went_offline,
            purged,
        })
    }

    /// Starts writing this node's stats record every `stats_refresh` (TTL `stats_ttl`), taking
    /// each record from `source`. Stops when the handle is dropped or stopped.
    pub fn spawn_heartbeat<F>(&self, source: F) -> Heartbeat
    where
        F: Fn() -> NodeStats + Send + Sync + 'static,
    {
        let nodes = self.backends.nodes.clone();
        let every = self.config.stats_refresh;
        let task = tokio::spawn(async move {
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
            task,
            nodes: self.backends.nodes.clone(),
            node_id: self.config.node_id.clone(),
        }
    }

    /// Starts writing this node's liveness key every `liveness_refresh` (TTL `liveness_ttl`), by
    /// which peers tell within seconds that it died. Stops when the handle is dropped or stopped.
    ///
    /// Each beat also looks for the marker a peer leaves after purging this node, and notices
    /// when the liveness key had lapsed: either means peers may have removed this node's users
    /// and rooms (it stalled, or was cut off from Redis while Redis stayed up), so the
    /// [`RedisCluster::reconnects`] counter is bumped and the gateway re-registers what it holds
    /// with [`RedisCluster::resync`], as after a Redis outage.
    pub fn spawn_liveness(&self) -> Liveness {
        let task = tokio::spawn(liveness_beats(
            self.conn.clone(),
            self.backends.nodes.clone(),
            self.config.node_id.clone(),
            self.config.liveness_ttl,
            self.config.liveness_refresh,
            self.resync_needed.clone(),
        ));
        Liveness {
            task,
            conn: self.conn.clone(),
            node_id: self.config.node_id.clone(),
        }
    }

    /// Starts the dead-node monitor. Its events arrive on the returned receiver (bounded; when it
    /// is full the monitor waits, so no event is lost and purges pause until the gateway reads).
    pub fn start_monitor(&self) -> (NodeMonitor, tokio::sync::mpsc::Receiver<NodeEvent>) {
        NodeMonitor::start(
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
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.subscriber.quit().await;
        let _ = self.conn.client.quit().await;
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

/// The running stats heartbeat of [`RedisCluster::spawn_heartbeat`].
#[derive(Debug)]
pub struct Heartbeat {
    task: JoinHandle<()>,
    nodes: Arc<RedisNodes>,
    node_id: String,
}

impl Heartbeat {
    /// Stops refreshing and removes this node's stats key (graceful shutdown).
    pub async fn stop_and_withdraw(self) -> StateResult<()> {
        self.task.abort();
        self.nodes.withdraw(&self.node_id).await
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running liveness beat of [`RedisCluster::spawn_liveness`].
#[derive(Debug)]
pub struct Liveness {
    task: JoinHandle<()>,
    conn: Conn,
    node_id: String,
}

impl Liveness {
    /// Stops beating and removes the liveness key.
    pub async fn stop_and_withdraw(self) -> StateResult<()> {
        self.task.abort();
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
        self.task.abort();
    }
}

/// Reads the cluster's stats once, for `gateway cluster-stats --redis-url URL`.
pub async fn fetch_cluster_stats(
    url: &str,
    timeout: Duration,
) -> Result<ClusterStats, ClusterError> {
    let b = builder(url, timeout, 16)?;
    let client = b.build().map_err(|e| connect_error(url, &e))?;
    let init = tokio::time::timeout(timeout, client.init()).await;
    match init {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(connect_error(url, &e)),
        Err(_) => {
            return Err(ClusterError::Connect {
                url: redact(url),
                reason: format!("no connection within {timeout:?}"),
            });
        }
    }
    let nodes = RedisNodes::new(
        Conn {
            client: client.clone(),
            keys: Keys::default(),
            link_up: Arc::new(AtomicBool::new(true)),
        },
        Duration::from_secs(60),
    );
    let stats = crate::aggregate::cluster_stats(&nodes).await;
    let _ = client.quit().await;
    Ok(stats?)
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
    fn cluster_prefix_gets_a_hash_tag() {
        assert_eq!(cluster_safe_prefix("gateway:"), "{gateway}:");
        assert_eq!(cluster_safe_prefix("app"), "{app}:");
        assert_eq!(cluster_safe_prefix("{t}:"), "{t}:");
    }

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
