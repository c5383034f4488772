//! The Redis side: one subscriber connection and one publishing connection shared by every
//! namespace of one `SocketIo`, the dispatcher that hands messages to namespaces, the ordered
//! publish queue, resubscription after reconnects and the connected/disconnected status. The
//! Redis commands themselves are behind [`Transport`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::HeartbeatInterface;
use fred::types::Value as RedisValue;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ServerSideEvent;
use crate::budget::{ByteBudget, Held};
use crate::channels::namespace_of;
use crate::config::{AdapterMode, RedisAdapterConfig};
use crate::error::AdapterError;
use crate::ids::ForeignIds;
use crate::locks::{lock, read};
use crate::metrics::{Metrics, add, inc};
use crate::namespace::NsCore;
use crate::slot_move::resend_while_moving;
use crate::transport::{PubSubKind, Transport};

/// A message from Redis for one namespace.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub channel: String,
    pub payload: Bytes,
    /// Its bytes of the inbound budget, given back once it is handled.
    _held: Held,
}

#[derive(Debug)]
struct Outgoing {
    channel: String,
    payload: Bytes,
    done: Option<oneshot::Sender<Result<(), AdapterError>>>,
    /// Its bytes of the publish budget, given back once it is published (or failed).
    _held: Held,
}

#[derive(Debug, Default)]
struct Wanted {
    channels: HashSet<String>,
    patterns: HashSet<String>,
}

/// State shared by every namespace adapter built from one connected `RedisAdapterCtr`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: RedisAdapterConfig,
    pub metrics: Arc<Metrics>,
    pub foreign: ForeignIds,
    pub routes: RwLock<HashMap<String, mpsc::Sender<Inbound>>>,
    /// Bytes of every namespace's inbound queue together.
    inbound_bytes: Arc<ByteBudget>,
    /// Bytes of the messages waiting in the publish queue.
    outbound_bytes: Arc<ByteBudget>,
    pub namespaces: RwLock<HashMap<String, Arc<NsCore>>>,
    pub sse_sinks: Mutex<HashMap<String, mpsc::Sender<ServerSideEvent>>>,
    pub connected: watch::Sender<bool>,
    transport: Transport,
    wanted: Mutex<Wanted>,
    /// Held while a SUBSCRIBE or UNSUBSCRIBE is recorded in `wanted` and written, so two
    /// callers cannot reorder a subscribe and an unsubscribe of one channel on the wire.
    subscription_order: tokio::sync::Mutex<()>,
    out_tx: mpsc::Sender<Outgoing>,
    /// Ends every task of the adapter at shutdown.
    cancel: CancellationToken,
    /// Every long-lived task of the adapter, waited for at shutdown.
    tasks: TaskTracker,
    closed: AtomicBool,
    resubscribing: AtomicBool,
    lost: AtomicBool,
}

impl Shared {
    pub(crate) async fn connect(
        url: &str,
        config: RedisAdapterConfig,
    ) -> Result<Arc<Shared>, AdapterError> {
        let kind = match config.mode {
            AdapterMode::Classic => PubSubKind::Classic,
            AdapterMode::Sharded(_) => PubSubKind::Sharded,
        };
        let transport = Transport::connect(url, &config, kind).await?;
        let messages = transport.messages();
        let sub_reconnects = transport.reconnects();

        let (out_tx, out_rx) = mpsc::channel(config.publish_queue.max(1));
        let (connected, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            foreign: ForeignIds::new(config.foreign_id_capacity),
            inbound_bytes: ByteBudget::new(config.inbound_queue_bytes),
            outbound_bytes: ByteBudget::new(config.publish_queue_bytes),
            config,
            metrics: transport.metrics_handle(),
            routes: RwLock::default(),
            namespaces: RwLock::default(),
            sse_sinks: Mutex::default(),
            connected,
            transport,
            wanted: Mutex::default(),
            subscription_order: tokio::sync::Mutex::new(()),
            out_tx,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            closed: AtomicBool::new(false),
            resubscribing: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        });
        shared.spawn(dispatch(shared.clone(), messages));
        shared.spawn(publish_loop(shared.clone(), out_rx));
        shared.spawn(resubscribe_loop(shared.clone(), sub_reconnects));
        shared.spawn(status_loop(shared.clone()));
        let interval = shared
            .config
            .heartbeat_interval
            .max(Duration::from_millis(10));
        for client in shared.transport.heartbeat_clients() {
            shared.spawn(async move {
                let _ = client.enable_heartbeat(interval, false).await;
            });
        }
        Ok(shared)
    }

    /// Runs `task` until it ends or the adapter shuts down, tracked so that shutdown waits
    /// for it. Every task the adapter starts goes through here.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = cancel.cancelled() => {}
            }
        });
    }

    /// Both connections are up.
    pub(crate) fn redis_up(&self) -> bool {
        self.transport.is_connected()
    }

    pub(crate) fn subscription_count(&self) -> u64 {
        let wanted = lock(&self.wanted);
        (wanted.channels.len() + wanted.patterns.len()) as u64
    }

    /// Queues a message without waiting; a full queue (in messages or bytes) drops it (counted
    /// in `dropped`).
    pub(crate) fn publish_nowait(&self, channel: String, payload: Vec<u8>) {
        let queued = self
            .outbound_bytes
            .try_hold(payload.len())
            .map(|held| Outgoing {
                channel,
                payload: Bytes::from(payload),
                done: None,
                _held: held,
            })
            .and_then(|msg| self.out_tx.try_send(msg).ok());
        if queued.is_none() {
            inc(&self.metrics.dropped);
            tracing::warn!(
                queued_bytes = self.outbound_bytes.used(),
                "adapter publish queue full: message dropped"
            );
        }
    }

    /// Queues a message, waiting for queue space, in messages and bytes (back-pressure on the
    /// emitting task), for at most the request timeout; then it is dropped, counted in
    /// `dropped` and [`AdapterError::QueueFull`] returned.
    pub(crate) async fn publish_queued(
        &self,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), AdapterError> {
        let queue = async {
            let held = self.outbound_bytes.hold(payload.len()).await;
            let msg = Outgoing {
                channel,
                payload: Bytes::from(payload),
                done: None,
                _held: held,
            };
            self.out_tx.send(msg).await.is_ok()
        };
        let sent = tokio::time::timeout(self.config.request_timeout, queue).await;
        if matches!(sent, Ok(true)) {
            return Ok(());
        }
        inc(&self.metrics.dropped);
        tracing::warn!(
            queued_bytes = self.outbound_bytes.used(),
            "adapter publish queue full for too long: message dropped"
        );
        Err(AdapterError::QueueFull)
    }

    /// Queues a message and waits until Redis took it; a full queue (in messages or bytes)
    /// fails at once with [`AdapterError::QueueFull`].
    pub(crate) async fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), AdapterError> {
        let (tx, rx) = oneshot::channel();
        let full = || {
            inc(&self.metrics.dropped);
            AdapterError::QueueFull
        };
        let held = self
            .outbound_bytes
            .try_hold(payload.len())
            .ok_or_else(full)?;
        let msg = Outgoing {
            channel,
            payload: Bytes::from(payload),
            done: Some(tx),
            _held: held,
        };
        self.out_tx.try_send(msg).map_err(|_| full())?;
        rx.await.map_err(|_| AdapterError::Closed)?
    }

    async fn publish_now(&self, msg: Outgoing) {
        let result = if !self.transport.is_connected() {
            Err(AdapterError::NotConnected)
        } else {
            let give_up = tokio::time::Instant::now() + self.config.request_timeout;
            let send = || {
                let fut = self
                    .transport
                    .publish(msg.channel.clone(), msg.payload.clone());
                async move {
                    match tokio::time::timeout_at(give_up, fut).await {
                        Ok(result) => result,
                        Err(_) => Err(AdapterError::NotConnected),
                    }
                }
            };
            resend_while_moving(give_up, send).await
        };
        match &result {
            Ok(()) => inc(&self.metrics.published),
            Err(e) => {
                inc(&self.metrics.publish_failures);
                tracing::debug!(error = %e, "adapter publish failed");
            }
        }
        if let Some(done) = msg.done {
            let _ = done.send(result);
        }
    }

    /// Subscribes to channels, remembering them for resubscription after a reconnect, and
    /// returns once Redis has confirmed the subscription: a message published from then on
    /// reaches this node.
    pub(crate) async fn subscribe(&self, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        let written = {
            let _order = self.subscription_order.lock().await;
            lock(&self.wanted).channels.extend(channels.iter().cloned());
            self.transport.subscribe(channels).await
        };
        match written {
            Ok(()) => self.confirm_subscriptions().await,
            Err(e) => {
                inc(&self.metrics.subscribe_failures);
                tracing::warn!(error = %e, "SUBSCRIBE failed; retried on reconnect");
            }
        }
    }

    pub(crate) async fn unsubscribe(&self, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        let _order = self.subscription_order.lock().await;
        {
            let mut wanted = lock(&self.wanted);
            for c in &channels {
                wanted.channels.remove(c);
            }
        }
        if let Err(e) = self.transport.unsubscribe(channels).await {
            inc(&self.metrics.subscribe_failures);
            tracing::debug!(error = %e, "UNSUBSCRIBE failed");
        }
    }

    /// Waits until Redis has processed every (un)subscription written before.
    async fn confirm_subscriptions(&self) {
        if !self
            .transport
            .confirm_subscriptions(self.config.request_timeout)
            .await
        {
            inc(&self.metrics.subscribe_failures);
            tracing::warn!(
                "SUBSCRIBE not confirmed by Redis in time; messages sent meanwhile may be missed"
            );
        }
    }

    pub(crate) async fn psubscribe(&self, pattern: String) {
        lock(&self.wanted).patterns.insert(pattern.clone());
        if let Err(e) = self.transport.psubscribe(vec![pattern]).await {
            inc(&self.metrics.subscribe_failures);
            tracing::warn!(error = %e, "PSUBSCRIBE failed; retried on reconnect");
        }
    }

    pub(crate) async fn punsubscribe(&self, pattern: String) {
        lock(&self.wanted).patterns.remove(&pattern);
        if let Err(e) = self.transport.punsubscribe(vec![pattern]).await {
            tracing::debug!(error = %e, "PUNSUBSCRIBE failed");
        }
    }

    async fn resubscribe_all(&self) -> bool {
        // Taken before reading `wanted`: what is resent is what the last (un)subscription left.
        let _order = self.subscription_order.lock().await;
        let (channels, patterns): (Vec<String>, Vec<String>) = {
            let wanted = lock(&self.wanted);
            (
                wanted.channels.iter().cloned().collect(),
                wanted.patterns.iter().cloned().collect(),
            )
        };
        let mut ok = true;
        // fred 10.1's own resubscribe sends empty SUBSCRIBE lists; only ever send non-empty ones.
        for chunk in channels.chunks(256) {
            if let Err(e) = self.transport.subscribe(chunk.to_vec()).await {
                ok = false;
                inc(&self.metrics.subscribe_failures);
                tracing::warn!(error = %e, "resubscribe failed");
            }
        }
        if !patterns.is_empty()
            && let Err(e) = self.transport.psubscribe(patterns).await
        {
            ok = false;
            inc(&self.metrics.subscribe_failures);
            tracing::warn!(error = %e, "re-psubscribe failed");
        }
        tracing::info!(
            channels = channels.len(),
            ok,
            "adapter resubscribed after reconnect"
        );
        ok
    }

    /// Connections subscribed to `channel` (`PUBSUB NUMSUB`, or its sharded sum).
    pub(crate) async fn numsub(&self, channel: &str) -> Result<u64, AdapterError> {
        self.transport.subscriber_count(channel).await
    }

    pub(crate) async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.cancel.cancel();
        self.tasks.close();
        self.transport.quit().await;
        self.connected.send_replace(false);
        // Cancelled tasks end at their next poll; the bound only guards against a caller
        // that is itself one of them.
        if tokio::time::timeout(self.config.request_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tasks.len(),
                "adapter tasks still running after shutdown"
            );
        }
    }
}

/// Reads fred's pub/sub channel and does nothing but hand each message to its namespace.
async fn dispatch(shared: Arc<Shared>, mut messages: broadcast::Receiver<fred::types::Message>) {
    let key = shared.config.key.clone();
    loop {
        match messages.recv().await {
            Ok(msg) => {
                inc(&shared.metrics.received);
                let channel: &str = &msg.channel;
                let Some(nsp) = namespace_of(&key, channel) else {
                    continue;
                };
                let payload = match msg.value {
                    RedisValue::Bytes(b) => b,
                    RedisValue::String(s) => Bytes::from(s),
                    _ => {
                        inc(&shared.metrics.decode_errors);
                        tracing::warn!(channel, "pub/sub message that is not a string");
                        continue;
                    }
                };
                let route = read(&shared.routes).get(nsp).cloned();
                if let Some(tx) = route {
                    let Some(held) = shared.inbound_bytes.try_hold(payload.len()) else {
                        inc(&shared.metrics.dropped);
                        tracing::warn!(
                            nsp,
                            bytes = payload.len(),
                            queued = shared.inbound_bytes.used(),
                            "inbound queues over their byte budget: message dropped"
                        );
                        continue;
                    };
                    let inbound = Inbound {
                        channel: channel.to_owned(),
                        payload,
                        _held: held,
                    };
                    if tx.try_send(inbound).is_err() {
                        inc(&shared.metrics.dropped);
                        tracing::warn!(nsp, "namespace inbound queue full: message dropped");
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                add(&shared.metrics.dropped, n);
                tracing::warn!(lost = n, "fred pub/sub channel lagged");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

async fn publish_loop(shared: Arc<Shared>, rx: mpsc::Receiver<Outgoing>) {
    let concurrency = shared.config.publish_concurrency.max(1);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    stream
        .for_each_concurrent(concurrency, |msg| {
            let shared = shared.clone();
            async move { shared.publish_now(msg).await }
        })
        .await;
}

async fn resubscribe_loop(
    shared: Arc<Shared>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
) {
    // Ends when fred closes the channel (or at shutdown); a lagged receiver still resubscribes.
    while let Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) = reconnects.recv().await {
        // The first event is the initial connection, not a reconnect.
        if shared.lost.swap(false, Ordering::SeqCst) {
            shared.resubscribing.store(true, Ordering::SeqCst);
        }
        for _ in 0..50 {
            if shared.resubscribe_all().await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shared.resubscribing.store(false, Ordering::SeqCst);
    }
}

async fn status_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut redis_was_up = true;
    loop {
        tick.tick().await;
        let redis_up = shared.redis_up();
        if redis_up != redis_was_up {
            if redis_up {
                inc(&shared.metrics.reconnects);
                tracing::info!("adapter reconnected to redis");
            } else {
                shared.lost.store(true, Ordering::SeqCst);
                tracing::warn!("adapter lost its redis connection");
            }
            redis_was_up = redis_up;
        }
        // Not "connected" until every channel is subscribed again after a reconnect.
        let up = redis_up && !shared.resubscribing.load(Ordering::SeqCst);
        shared.connected.send_if_modified(|c| {
            let changed = *c != up;
            *c = up;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_ends_every_task_of_the_adapter() {
        let redis = testkit::RedisServer::start().unwrap();
        let shared = Shared::connect(&redis.url(), RedisAdapterConfig::default())
            .await
            .unwrap();
        // Dispatch, publish, resubscribe, status and one heartbeat per connection.
        assert_eq!(shared.tasks.len(), 6);
        // One that would never end by itself.
        shared.spawn(std::future::pending());
        shared.shutdown().await;
        assert!(shared.tasks.is_closed());
        assert_eq!(shared.tasks.len(), 0);
    }
}
