//! Sharded pub/sub (Redis 7): `SPUBLISH`, `SSUBSCRIBE` and `PUBSUB SHARDNUMSUB`, the commands
//! of Node's `createShardedAdapter` (`docs/sharded-adapter.md`, sections 1 and 4.3).
//!
//! What fred 10.1 does and does not do here, read from its sources, shapes this file:
//!
//! * `SSUBSCRIBE` goes to the owner of the channel's slot and follows `MOVED`; fred waits for
//!   Redis's `ssubscribe` reply, so a returned `ssubscribe` is a confirmed subscription. It
//!   takes that reply as the answer to the command, so one command must name one channel: the
//!   further replies of a multi-channel `SSUBSCRIBE` would be taken as the answers to the
//!   commands after it. Channels of different primaries are subscribed concurrently, so a
//!   connect's channels cost one round trip, not one each.
//! * `SUNSUBSCRIBE` is written without waiting for an answer, and a `MOVED` error it would get
//!   from a node that lost the slot would be matched with the next command of that connection.
//!   It is only sent where the channel was confirmed and the slot map still puts it.
//! * When a slot leaves a primary, Redis drops the subscriptions to its channels and sends an
//!   unrequested `sunsubscribe` push, which fred discards without telling anyone; after a
//!   failover fred reconnects but subscribes nothing again (its `manage_subscriptions` would,
//!   but only on reconnects, not after a slot move). So this transport checks by itself: every
//!   `shard_check_interval` it compares, for each primary holding its channels, the shard
//!   subscriptions Redis counts on its connection (`CLIENT INFO`, field `ssub`) with the
//!   channels it confirmed there, and subscribes lost ones again at the current owner, with
//!   backoff, until Redis confirms. Messages published at the new owner in between are lost;
//!   the time since the last good check is recorded as the gap.
//! * A command to a primary that hangs (its connections stay open) times out without fred
//!   looking for the replica promoted in its place, so a failed publish makes the repair loop
//!   refresh the publisher's slot map too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, PubsubInterface};
use fred::prelude::Builder;
use fred::types::cluster::ClusterRouting;
use fred::types::config::{Options, Server};
use fred::types::{CustomCommand, Value as RedisValue};
use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::config::RedisAdapterConfig;
use crate::error::AdapterError;
use crate::locks::lock;
use crate::metrics::{Metrics, add, inc};

/// How long a `PUBSUB SHARDNUMSUB` sum is reused: Node asks for it before every request, and
/// it costs one command per primary.
pub(crate) const COUNT_CACHE: Duration = Duration::from_millis(200);

/// Channels whose subscriber count is cached at most (counts are asked for the main channel
/// of each namespace only; the bound keeps a caller passing arbitrary names from growing it).
const COUNT_CACHE_ENTRIES: usize = 1024;

/// The first pause between two rounds of re-subscription; it doubles up to the reconnect delay.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// Where a wanted channel is subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    /// Not confirmed yet (being subscribed, or lost and waiting for the repair).
    Pending,
    /// Confirmed by the primary at this address (`None` on a single Redis).
    At(Option<Server>),
}

#[derive(Debug)]
pub(super) struct ShardedPubSub {
    pub(super) sub: SubscriberClient,
    pub(super) publisher: Client,
    clustered: bool,
    /// Every channel subscribed and not unsubscribed since, the only source of truth for what
    /// must be subscribed.
    wanted: Mutex<HashMap<String, Held>>,
    /// Held while channels are (un)subscribed, so a repair never subscribes again a channel
    /// unsubscribed meanwhile, nor an unsubscribe overtakes a subscribe of the same channel.
    order: tokio::sync::Mutex<()>,
    counts: Mutex<HashMap<String, (Instant, u64)>>,
    repair_now: Notify,
    /// Set when a publish failed: the publisher's slot map may point at a primary that hangs
    /// (a timed-out command does not make fred look for the promoted replica), so the repair
    /// loop refreshes it.
    publisher_map_stale: AtomicBool,
    metrics: Arc<Metrics>,
    command_timeout: Duration,
    probe_timeout: Duration,
    check_interval: Duration,
    max_backoff: Duration,
}

impl ShardedPubSub {
    pub(super) async fn connect(
        builder: &Builder,
        config: &RedisAdapterConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AdapterError> {
        let sub = builder.build_subscriber_client()?;
        let publisher = builder.build()?;
        sub.init().await?;
        publisher.init().await?;
        let clustered = publisher.is_clustered();
        let this = Self {
            sub,
            publisher,
            clustered,
            wanted: Mutex::default(),
            order: tokio::sync::Mutex::new(()),
            counts: Mutex::default(),
            repair_now: Notify::new(),
            publisher_map_stale: AtomicBool::new(false),
            metrics,
            command_timeout: config.request_timeout,
            probe_timeout: config.unresponsive_timeout.max(Duration::from_millis(100)),
            check_interval: config.shard_check_interval.max(Duration::from_millis(10)),
            max_backoff: config.reconnect_max_delay.max(FIRST_BACKOFF),
        };
        if let Err(e) = this.require_redis_7().await {
            let _ = this.sub.quit().await;
            let _ = this.publisher.quit().await;
            return Err(e);
        }
        Ok(this)
    }

    /// Sharded pub/sub exists from Redis 7 on; an older server would refuse every command.
    async fn require_redis_7(&self) -> Result<(), AdapterError> {
        let info = CustomCommand::new_static("INFO", 0u16, false);
        let text: String = self.publisher.custom(info, vec!["server"]).await?;
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(str::trim)
            .unwrap_or("unknown")
            .to_owned();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(m) if m >= 7 => Ok(()),
            _ => Err(AdapterError::Unsupported(format!(
                "sharded pub/sub needs Redis 7 or later; the server reports version {version}"
            ))),
        }
    }

    pub(super) fn wanted_count(&self) -> usize {
        lock(&self.wanted).len()
    }

    fn routing(&self) -> Option<ClusterRouting> {
        if self.clustered {
            self.sub.cached_cluster_state()
        } else {
            None
        }
    }

    /// The primary that owns `channel`'s slot in `routing` (`None` on a single Redis).
    fn owner(routing: Option<&ClusterRouting>, channel: &str) -> Option<Server> {
        routing.and_then(|r| {
            r.get_server(ClusterRouting::hash_key(channel.as_bytes()))
                .cloned()
        })
    }

    /// `SPUBLISH` at the owner of the channel's slot (fred follows `MOVED` after a move).
    pub(super) async fn publish(
        &self,
        channel: String,
        payload: Bytes,
    ) -> Result<(), AdapterError> {
        let published = self
            .publisher
            .spublish::<RedisValue, _, _>(channel, RedisValue::Bytes(payload))
            .await;
        if published.is_err() && self.clustered {
            self.publisher_map_stale.store(true, Ordering::SeqCst);
            self.repair_now.notify_one();
        }
        published?;
        Ok(())
    }

    async fn ssubscribe_one(&self, channel: &str) -> Result<(), AdapterError> {
        match tokio::time::timeout(
            self.command_timeout,
            self.sub.ssubscribe(channel.to_owned()),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AdapterError::Redis(e)),
            Err(_) => Err(AdapterError::NotConnected),
        }
    }

    /// `SSUBSCRIBE`s `channels` (one command each, concurrently) and records where each was
    /// confirmed. `pending` must be held under `self.order`. Returns the channels that failed.
    async fn ssubscribe_all(&self, channels: Vec<String>) -> Vec<(String, AdapterError)> {
        let results = join_all(channels.iter().map(|c| self.ssubscribe_one(c))).await;
        let routing = self.routing();
        let mut failed = Vec::new();
        let mut wanted = lock(&self.wanted);
        for (channel, result) in channels.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    if let Some(held) = wanted.get_mut(&channel) {
                        *held = Held::At(Self::owner(routing.as_ref(), &channel));
                    }
                }
                Err(e) => failed.push((channel, e)),
            }
        }
        failed
    }

    /// Returns once Redis confirmed every channel's subscription, or with the first error
    /// (the failed channels stay wanted and are retried by the repair with backoff).
    pub(super) async fn subscribe(&self, channels: Vec<String>) -> Result<(), AdapterError> {
        if channels.is_empty() {
            return Ok(());
        }
        let _order = self.order.lock().await;
        {
            let mut wanted = lock(&self.wanted);
            for channel in &channels {
                wanted.entry(channel.clone()).or_insert(Held::Pending);
            }
        }
        let failed = self.ssubscribe_all(channels).await;
        let Some((channel, error)) = failed.into_iter().next() else {
            return Ok(());
        };
        inc(&self.metrics.subscribe_failures);
        tracing::warn!(channel, error = %error, "SSUBSCRIBE failed; retried until it succeeds");
        self.repair_now.notify_one();
        Err(error)
    }

    pub(super) async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), AdapterError> {
        if channels.is_empty() {
            return Ok(());
        }
        let _order = self.order.lock().await;
        let routing = self.routing();
        let to_send: Vec<String> = {
            let mut wanted = lock(&self.wanted);
            channels
                .into_iter()
                .filter(|c| match wanted.remove(c) {
                    Some(Held::At(at)) => at == Self::owner(routing.as_ref(), c),
                    // Never confirmed, or its slot moved: Redis holds no subscription to drop.
                    _ => false,
                })
                .collect()
        };
        let mut result = Ok(());
        for channel in to_send {
            if let Err(e) = self.sub.sunsubscribe(channel).await {
                inc(&self.metrics.subscribe_failures);
                tracing::debug!(error = %e, "SUNSUBSCRIBE failed");
                result = Err(AdapterError::Redis(e));
            }
        }
        result
    }

    /// `PUBSUB SHARDNUMSUB <channel>` on every primary, summed (a shard channel's subscribers
    /// sit at its slot's owner, but during a move some may still be at the old one). Primaries
    /// that do not answer count for nothing; it fails only if none answers.
    pub(super) async fn subscriber_count(&self, channel: &str) -> Result<u64, AdapterError> {
        if let Some(&(at, n)) = lock(&self.counts).get(channel)
            && at.elapsed() < COUNT_CACHE
        {
            return Ok(n);
        }
        let total = if self.clustered {
            let primaries = self
                .publisher
                .cached_cluster_state()
                .map(|s| s.unique_primary_nodes())
                .unwrap_or_default();
            let asks = primaries.into_iter().map(|primary| {
                let cmd = CustomCommand::new_static("PUBSUB", 0u16, false);
                let client = self.publisher.with_options(&Options {
                    cluster_node: Some(primary),
                    ..Options::default()
                });
                async move {
                    client
                        .custom::<RedisValue, _>(cmd, vec!["SHARDNUMSUB", channel])
                        .await
                }
            });
            let mut total = 0;
            let mut answered = false;
            let mut last_error = None;
            for answer in join_all(asks).await {
                match answer {
                    Ok(v) => {
                        answered = true;
                        total += super::numsub_count(&v);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            match (answered, last_error) {
                (false, Some(e)) => return Err(AdapterError::Redis(e)),
                (false, None) => return Err(AdapterError::NotConnected),
                _ => total,
            }
        } else {
            let v: RedisValue = self
                .publisher
                .pubsub_shardnumsub(channel.to_owned())
                .await?;
            super::numsub_count(&v)
        };
        let mut counts = lock(&self.counts);
        if counts.len() >= COUNT_CACHE_ENTRIES {
            counts.clear();
        }
        counts.insert(channel.to_owned(), (Instant::now(), total));
        Ok(total)
    }

    /// Shard subscriptions Redis counts on this client's connection to `server` (the only
    /// connection on a single Redis).
    async fn subscriptions_at(&self, server: Option<&Server>) -> Option<usize> {
        let cmd = CustomCommand::new_static("CLIENT", 0u16, false);
        let ask = async {
            match server {
                Some(server) => {
                    self.sub
                        .with_options(&Options {
                            cluster_node: Some(server.clone()),
                            ..Options::default()
                        })
                        .custom::<String, _>(cmd, vec!["INFO"])
                        .await
                }
                None => self.sub.custom::<String, _>(cmd, vec!["INFO"]).await,
            }
        };
        let info = tokio::time::timeout(self.probe_timeout, ask)
            .await
            .ok()?
            .ok()?;
        info.split_whitespace()
            .find_map(|field| field.strip_prefix("ssub="))
            .and_then(|n| n.parse().ok())
    }

    /// The wanted channels that are not (or may not be) subscribed where their slot is now.
    async fn lost_channels(&self) -> Vec<String> {
        let mut lost = Vec::new();
        let mut by_server: HashMap<Option<Server>, Vec<String>> = HashMap::new();
        for (channel, held) in lock(&self.wanted).iter() {
            match held {
                Held::Pending => lost.push(channel.clone()),
                Held::At(at) => by_server
                    .entry(at.clone())
                    .or_default()
                    .push(channel.clone()),
            }
        }
        let routing = self.routing();
        for (server, channels) in by_server {
            let counted = self.subscriptions_at(server.as_ref()).await;
            if counted.is_some_and(|n| n >= channels.len()) {
                // All still there; only those our slot map now puts elsewhere move.
                lost.extend(
                    channels
                        .into_iter()
                        .filter(|c| Self::owner(routing.as_ref(), c) != server),
                );
            } else {
                // Redis dropped some (a slot left the primary, or the connection is new or
                // dead): which ones is not told, so all of that primary's are subscribed again.
                lost.extend(channels);
            }
        }
        lost
    }

    /// Subscribes `lost` again at their slots' current owners, with backoff, until Redis
    /// confirmed every one still wanted. Returns how many were subscribed again.
    async fn resubscribe(&self, mut pending: Vec<String>) -> u64 {
        let mut pause = FIRST_BACKOFF;
        let mut done = 0;
        loop {
            if self.clustered
                && let Err(e) = self.sub.sync_cluster().await
            {
                tracing::debug!(error = %e, "cluster slot map not refreshed");
            }
            let order = self.order.lock().await;
            {
                let mut wanted = lock(&self.wanted);
                pending.retain(|c| match wanted.get_mut(c) {
                    Some(held) => {
                        *held = Held::Pending;
                        true
                    }
                    None => false,
                });
            }
            if pending.is_empty() {
                return done;
            }
            let tried = pending.len();
            let failed = self.ssubscribe_all(pending).await;
            drop(order);
            done += (tried - failed.len()) as u64;
            if failed.is_empty() {
                return done;
            }
            add(&self.metrics.subscribe_failures, failed.len() as u64);
            if let Some((channel, error)) = failed.first() {
                tracing::debug!(channel, error = %error, failed = failed.len(), "SSUBSCRIBE again failed; retrying");
            }
            pending = failed.into_iter().map(|(c, _)| c).collect();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.max_backoff);
        }
    }

    /// Keeps every wanted channel subscribed at its slot's owner: checks every
    /// `shard_check_interval`, at once after a reconnect or a failed subscribe.
    pub(super) async fn repair_loop(self: Arc<Self>) {
        let mut reconnects = self.sub.reconnect_rx();
        let mut tick = tokio::time::interval(self.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_good = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                event = reconnects.recv() => {
                    if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                () = self.repair_now.notified() => {}
            }
            if self.publisher_map_stale.swap(false, Ordering::SeqCst)
                && let Err(e) = self.publisher.sync_cluster().await
            {
                tracing::debug!(error = %e, "publisher's cluster slot map not refreshed");
                self.publisher_map_stale.store(true, Ordering::SeqCst);
            }
            let lost = self.lost_channels().await;
            if lost.is_empty() {
                last_good = Instant::now();
                continue;
            }
            tracing::warn!(
                channels = lost.len(),
                "shard channel subscriptions lost (slot moved, primary failed over or \
                 reconnected); subscribing again at the current owners"
            );
            let resubscribed = self.resubscribe(lost).await;
            let gap = last_good.elapsed();
            let gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
            inc(&self.metrics.sharded_repairs);
            add(&self.metrics.sharded_resubscribes, resubscribed);
            add(&self.metrics.sharded_repair_gap_ms_sum, gap_ms);
            self.metrics
                .sharded_repair_gap_ms_max
                .fetch_max(gap_ms, Ordering::Relaxed);
            tracing::info!(
                resubscribed,
                gap_ms,
                "shard channels subscribed again; messages published to them during the gap \
                 may have been missed"
            );
            last_good = Instant::now();
        }
    }
}
