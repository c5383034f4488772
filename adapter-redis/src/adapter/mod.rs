//! The `CoreAdapter` implementation, split by concern:
//!
//! * this file: the adapter type, namespace start and stop, and socketioxide's operations
//!   (each applied locally and, when it reaches other nodes, sent as a request);
//! * [`selection`]: which local sockets a wire selection reaches;
//! * [`local_delivery`]: delivering to those sockets under the server's queue policy;
//! * [`requests_out`]: what this node publishes (broadcasts, joins and leaves);
//! * [`inbound`]: the namespace task and the routing of messages from Redis;
//! * [`requests_in`]: one function per request kind from other nodes;
//! * [`remote_acks`]: the answers to this node's broadcasts with acks;
//! * [`room_subscriptions`]: the room channels this node subscribes to;
//! * [`values`]: event data between socketioxide's form and the wire's.

mod inbound;
mod local_delivery;
mod remote_acks;
mod requests_in;
mod requests_out;
mod room_subscriptions;
mod selection;
mod values;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{BoxStream, Fuse};
use futures_util::{StreamExt, stream};
use socketioxide_core::Uid;
use socketioxide_core::adapter::errors::BroadcastError;
use socketioxide_core::adapter::{
    AckStreamItem, BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter,
    RemoteSocketData, Room, RoomParam, SocketEmitter, Spawnable,
};
use socketioxide_core::packet::Packet;
use tokio::sync::mpsc;

use crate::RedisAdapterCtr;
use crate::connection::{Inbound, Shared};
use crate::delivery::{ObserverSlot, packet_bytes};
use crate::error::AdapterError;
use crate::locks::{lock, write};
use crate::metrics::inc;
use crate::namespace::{LocalView, NsCore};
use crate::wire::{AckBroadcast, Flags, Request};

use remote_acks::{RemoteAcks, remote_ack_stream};
pub(crate) use requests_in::publish_answer;
pub(crate) use values::deadline_in;
#[cfg(test)]
pub(crate) use values::wire_to_value;
use values::{event_data, value_to_wire};

/// A socketioxide adapter speaking the `@socket.io/redis-adapter` 8.x protocol, or a plain
/// local adapter when built from [`RedisAdapterCtr::local`].
pub struct RedisAdapter<E> {
    local: CoreLocalAdapter<E>,
    remote: Option<Remote>,
    observer: ObserverSlot,
}

#[derive(Debug)]
struct Remote {
    shared: Arc<Shared>,
    core: Arc<NsCore>,
    inbound: Mutex<Option<mpsc::Receiver<Inbound>>>,
    inbound_tx: mpsc::Sender<Inbound>,
}

/// The future returned by `init` (awaited by `io.ns(..)`, spawned for dynamic namespaces).
pub struct InitRes {
    init: Pin<Box<dyn Future<Output = Result<(), AdapterError>> + Send>>,
    /// Where a spawned init is tracked (absent for a local adapter, whose init is immediate).
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for InitRes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitRes")
    }
}

impl Future for InitRes {
    type Output = Result<(), AdapterError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.init.as_mut().poll(cx)
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        let shared = self.shared.clone();
        let init = async move {
            if let Err(e) = self.await {
                tracing::error!(error = %e, "adapter namespace init failed");
            }
        };
        match shared {
            Some(shared) => shared.spawn(init),
            None => {
                tokio::spawn(init);
            }
        }
    }
}

impl<E> DefinedAdapter for RedisAdapter<E> {}

impl<E> std::fmt::Debug for RedisAdapter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl<E: SocketEmitter> LocalView for RedisAdapter<E> {
    fn local_rooms(&self) -> Vec<String> {
        self.local_rooms(None)
            .into_iter()
            .map(|r| r.to_string())
            .collect()
    }

    fn local_socket_ids(&self) -> Vec<String> {
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Broadcast);
        self.local
            .sockets(opts)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl<E: SocketEmitter> CoreAdapter<E> for RedisAdapter<E> {
    type Error = AdapterError;
    type State = RedisAdapterCtr;
    type AckStream = Fuse<BoxStream<'static, AckStreamItem<E::AckError>>>;
    type InitRes = InitRes;

    fn new(state: &Self::State, local: CoreLocalAdapter<E>) -> Self {
        let remote = state.shared().map(|shared| {
            let uid = local.server_id().to_string();
            let core = Arc::new(
                NsCore::new(
                    &shared.config.key,
                    local.path(),
                    uid,
                    shared.config.max_pending_requests,
                    match shared.config.mode {
                        crate::config::AdapterMode::Classic => None,
                        crate::config::AdapterMode::Sharded(mode) => Some(mode),
                    },
                )
                .with_policy(
                    shared.config.classic_subscriptions
                        == crate::config::ClassicSubscriptions::Pattern,
                    shared.config.join_fence,
                ),
            );
            let (tx, rx) = mpsc::channel(shared.config.inbound_queue.max(1));
            Remote {
                shared,
                core,
                inbound: Mutex::new(Some(rx)),
                inbound_tx: tx,
            }
        });
        Self {
            local,
            remote,
            observer: state.observer(),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> Self::InitRes {
        let shared = self.remote.as_ref().map(|r| r.shared.clone());
        let init = Box::pin(async move {
            let Some(remote) = &self.remote else {
                on_success();
                return Ok(());
            };
            let nsp = remote.core.nsp.clone();
            if nsp.contains('#') {
                return Err(AdapterError::MalformedNamespace(nsp));
            }
            let rx = lock(&remote.inbound).take().ok_or(AdapterError::Closed)?;
            write(&remote.shared.routes).insert(nsp.clone(), remote.inbound_tx.clone());
            write(&remote.shared.namespaces).insert(nsp.clone(), remote.core.clone());
            // The pattern first: the channels' confirmation then covers it too.
            if let Some(pattern) = remote.core.classic_pattern() {
                remote.shared.psubscribe(pattern).await;
            }
            remote.shared.subscribe(remote.core.fixed_channels()).await;
            let view: Arc<dyn LocalView> = self.clone();
            let _ = remote.core.local_view.set(Arc::downgrade(&view));
            remote.shared.spawn(self.clone().run(rx));
            on_success();
            Ok(())
        });
        InitRes { init, shared }
    }

    async fn close(&self) -> Result<(), Self::Error> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let nsp = remote.core.nsp.clone();
        remote
            .core
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        remote.core.sync_now.notify_one();
        write(&remote.shared.routes).remove(&nsp);
        write(&remote.shared.namespaces).remove(&nsp);
        let shared = remote.shared.clone();
        let mut channels = remote.core.fixed_channels();
        channels.extend(
            lock(&remote.core.subscribed_rooms)
                .iter()
                .map(|r| remote.core.room_channel(r)),
        );
        let pattern = remote.core.classic_pattern();
        // `close` may be polled only once (namespace deletion), so the I/O runs on its own.
        remote.shared.spawn(async move {
            shared.unsubscribe(channels).await;
            if let Some(pattern) = pattern {
                shared.punsubscribe(pattern).await;
            }
        });
        Ok(())
    }

    async fn server_count(&self) -> Result<u16, Self::Error> {
        let Some(remote) = &self.remote else {
            return Ok(1);
        };
        let n = remote.shared.numsub(remote.core.count_channel()).await?;
        Ok(u16::try_from(n.max(1)).unwrap_or(u16::MAX))
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let published = match self.remote_for(&opts) {
            Some(remote) => self.publish_broadcast(remote, &packet, &opts).await,
            None => Ok(()),
        };
        if self.targets_other_node(&opts) {
            return published.map_err(|e| BroadcastError::Adapter(e.into()));
        }
        let mut opts = opts;
        if let Some(observer) = self.observer.get()
            && !opts.has_flag(BroadcastFlags::Volatile)
        {
            // Sockets already refused are neither counted nor reached.
            opts.except
                .push(Room::from(observer.excluded_room().to_owned()));
            let sids = self.local.sockets(opts.clone());
            observer.before_delivery(self.local.path(), &sids, packet_bytes(&packet));
        }
        let delivered = self.local.broadcast(packet, opts);
        // The other nodes' loss is the one the caller must hear of (its sender is told); the
        // local sockets' errors (full queues) are found again by the caller's next broadcast.
        published.map_err(|e| BroadcastError::Adapter(e.into()))?;
        delivered.map_err(BroadcastError::from)
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        let Some(remote) = self.remote_for(&opts) else {
            let (local, _) = self.local.broadcast_with_ack(packet, opts, timeout);
            return Ok(local.boxed().fuse());
        };
        let ack_timeout = timeout.unwrap_or_else(|| self.local.ack_timeout());
        let expected_servers = remote.core.remote_server_count(&remote.shared).await?;
        let target = self.wire_target(&remote.shared, &opts);
        let local_stream = if self.targets_other_node(&opts) {
            stream::empty().boxed()
        } else {
            let (s, _) = self.local.broadcast_with_ack(packet.clone(), opts, timeout);
            s.boxed()
        };
        let (Some(target), Some(value), true) = (target, event_data(&packet), expected_servers > 0)
        else {
            return Ok(local_stream.fuse());
        };
        let data = value_to_wire(value)?;
        let (guard, rx) = remote.core.register(&remote.shared.config)?;
        let request = Request::BroadcastWithAck(AckBroadcast {
            uid: Some(remote.core.uid.clone()),
            request_id: guard.id.clone(),
            data,
            nsp: remote.core.nsp.clone(),
            target,
            flags: Flags {
                volatile: false,
                timeout_ms: Some(u64::try_from(ack_timeout.as_millis()).unwrap_or(u64::MAX)),
            },
        });
        let (channel, bytes) = remote.core.request_out(request)?;
        remote.shared.publish(channel, bytes).await?;
        let state = RemoteAcks {
            rx,
            _guard: guard,
            metrics: remote.shared.metrics.clone(),
            deadline: deadline_in(ack_timeout.saturating_add(remote.shared.config.request_timeout)),
            expected_servers,
            answered: 0,
            answered_uids: HashSet::new(),
            acks_expected: 0,
            acks_received: 0,
            timed_out: false,
        };
        let remote_stream = remote_ack_stream::<E::AckError>(state);
        Ok(stream::select(local_stream, remote_stream).boxed().fuse())
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Self::Error> {
        self.join_leave(opts, rooms.into_room_iter().collect(), true)
            .await
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Self::Error> {
        self.join_leave(opts, rooms.into_room_iter().collect(), false)
            .await
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        if let Some(remote) = self.remote_for(&opts)
            && let Some(target) = self.wire_target(&remote.shared, &opts)
        {
            let request = Request::Disconnect {
                uid: Some(remote.core.uid.clone()),
                target,
                close: false,
            };
            match remote.core.request_out(request) {
                Ok((channel, bytes)) => {
                    let _ = remote.shared.publish_queued(channel, bytes).await;
                }
                Err(e) => {
                    inc(&remote.shared.metrics.publish_failures);
                    tracing::warn!(error = %e, "disconnect request not published");
                }
            }
        }
        if self.targets_other_node(&opts) {
            return Ok(());
        }
        self.local
            .disconnect_socket(opts)
            .map_err(BroadcastError::Socket)
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Self::Error> {
        let mut rooms: HashSet<Room> = if self.targets_other_node(&opts) {
            HashSet::new()
        } else {
            self.local.rooms(opts.clone())
        };
        if let Some(remote) = self.remote_for(&opts) {
            let target = self.wire_target(&remote.shared, &opts);
            let gathered = remote
                .core
                .gather(&remote.shared, "rooms", |uid, request_id| {
                    Request::AllRooms {
                        uid: Some(uid),
                        request_id,
                        target: target.filter(|t| !t.rooms.is_empty() || !t.except.is_empty()),
                    }
                })
                .await?;
            for answer in gathered.value {
                rooms.extend(answer.rooms().into_iter().map(Room::from));
            }
        }
        Ok(rooms.into_iter().collect())
    }

    async fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> Result<Vec<RemoteSocketData>, Self::Error> {
        let mut sockets = if self.targets_other_node(&opts) {
            Vec::new()
        } else {
            self.local.fetch_sockets(opts.clone())
        };
        let Some(remote) = self.remote_for(&opts) else {
            return Ok(sockets);
        };
        let Some(target) = self.wire_target(&remote.shared, &opts) else {
            return Ok(sockets);
        };
        let gathered = remote
            .core
            .gather(&remote.shared, "fetch_sockets", |uid, request_id| {
                Request::Fetch {
                    uid: Some(uid),
                    request_id,
                    target,
                }
            })
            .await?;
        let ns = self.local.path().clone();
        for answer in gathered.value {
            let server_id = answer
                .uid
                .as_deref()
                .and_then(|u| Uid::from_str(u).ok())
                .unwrap_or(Uid::ZERO);
            for id in answer.socket_ids() {
                sockets.push(RemoteSocketData {
                    id: remote.shared.foreign.sid_for(&id),
                    server_id,
                    ns: ns.clone(),
                });
            }
        }
        Ok(sockets)
    }

    fn get_local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }
}
