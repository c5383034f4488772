//! The `CoreAdapter` implementation.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Fuse};
use futures_util::{StreamExt, stream};
use socketioxide_core::adapter::errors::{BroadcastError, SocketError};
use socketioxide_core::adapter::{
    AckStreamItem, BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter,
    RemoteSocketData, Room, RoomParam, SocketEmitter, Spawnable,
};
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::{Sid, Str, Uid, Value};
use tokio::sync::mpsc;

use crate::channels::NamespaceChannels;
use crate::connection::{Inbound, Shared};
use crate::delivery::{ObserverSlot, packet_bytes};
use crate::error::AdapterError;
use crate::json;
use crate::metrics::inc;
use crate::msgpack::Wire;
use crate::namespace::{LocalView, NsCore};
use crate::wire::{self, Flags, Request, Response, Target};
use crate::{RedisAdapterCtr, ServerSideAck, ServerSideEvent};

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
pub struct InitRes(Pin<Box<dyn Future<Output = Result<(), AdapterError>> + Send>>);

impl std::fmt::Debug for InitRes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitRes")
    }
}

impl Future for InitRes {
    type Output = Result<(), AdapterError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        tokio::spawn(async move {
            if let Err(e) = self.await {
                tracing::error!(error = %e, "adapter namespace init failed");
            }
        });
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

/// Longest ack timeout accepted from another node's broadcast-with-ack request.
const MAX_REMOTE_ACK_TIMEOUT: Duration = Duration::from_secs(3600);

/// `now + after`, saturating far in the future instead of overflowing.
pub(crate) fn deadline_in(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Converts socketioxide event data (JSON text plus binary attachments) to the wire value.
pub(crate) fn value_to_wire(value: &Value) -> Result<Wire, AdapterError> {
    match value {
        Value::Str(text, bins) => {
            let bins: Vec<Bytes> = bins.iter().flatten().cloned().collect();
            json::from_event_json(text, &bins).map_err(|e| AdapterError::Encode(e.to_string()))
        }
        Value::Bytes(_) => Err(AdapterError::Encode(
            "the msgpack socket.io parser is not supported; use the common parser".into(),
        )),
    }
}

/// Converts a wire value to socketioxide event data.
pub(crate) fn wire_to_value(wire: &Wire) -> Value {
    let mut bins = Vec::new();
    let text = json::to_json(wire, &mut bins);
    Value::Str(
        Str::from(text),
        (!bins.is_empty()).then(|| VecDeque::from(bins)),
    )
}

fn event_data(packet: &Packet) -> Option<&Value> {
    match &packet.inner {
        PacketData::Event(v, _) | PacketData::BinaryEvent(v, _) => Some(v),
        _ => None,
    }
}

/// Who a local operation reaches: a selection socketioxide can express, or an explicit list
/// (when the wire names socket ids as rooms, which socketioxide sockets are not members of).
enum Selection {
    Opts(Box<BroadcastOptions>),
    Sids(Vec<Sid>),
}

/// Applies `op` to each socket id, going on past failures, and returns every error.
fn for_each_sid<T>(
    sids: Vec<Sid>,
    mut op: impl FnMut(Sid) -> Result<(), Vec<T>>,
) -> Result<(), Vec<T>> {
    let errors: Vec<T> = sids
        .into_iter()
        .filter_map(|sid| op(sid).err())
        .flatten()
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl<E: SocketEmitter> RedisAdapter<E> {
    fn remote_for(&self, opts: &BroadcastOptions) -> Option<&Remote> {
        self.remote
            .as_ref()
            .filter(|_| !opts.is_local(self.local.server_id()))
    }

    /// Whether an operation targets one socket of another node only (then it must not be
    /// applied to the local room map).
    fn targets_other_node(&self, opts: &BroadcastOptions) -> bool {
        !opts.has_flag(BroadcastFlags::Broadcast)
            && opts.rooms.is_empty()
            && opts.sid.is_some()
            && opts.server_id.is_some_and(|s| s != self.local.server_id())
    }

    /// The wire selection for `opts`, or `None` when nothing remote is selected.
    fn wire_target(&self, shared: &Shared, opts: &BroadcastOptions) -> Option<Target> {
        let mut target = Target {
            rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
            except: opts.except.iter().map(|r| r.to_string()).collect(),
        };
        let broadcast = opts.has_flag(BroadcastFlags::Broadcast);
        if broadcast && let Some(sid) = opts.sid {
            target.except.push(shared.foreign.wire_id(sid));
        }
        if target.rooms.is_empty() && !broadcast {
            target.rooms.push(shared.foreign.wire_id(opts.sid?));
        }
        Some(target)
    }

    fn is_local_sid(&self, name: &str) -> Option<Sid> {
        let sid = Sid::from_str(name).ok()?;
        (!self
            .local
            .fetch_sockets(BroadcastOptions::new(sid))
            .is_empty())
        .then_some(sid)
    }

    fn select(&self, target: &Target, volatile: bool) -> Selection {
        let mut sid_rooms = Vec::new();
        let mut plain_rooms = Vec::new();
        for room in &target.rooms {
            match self.is_local_sid(room) {
                Some(sid) => sid_rooms.push(sid),
                None => plain_rooms.push(room.clone()),
            }
        }
        let except_sids: Vec<Sid> = target
            .except
            .iter()
            .filter_map(|r| self.is_local_sid(r))
            .collect();
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Broadcast);
        if volatile {
            opts.add_flag(BroadcastFlags::Volatile);
        }
        opts.rooms = plain_rooms.iter().cloned().map(Room::from).collect();
        opts.except = target.except.iter().cloned().map(Room::from).collect();
        if sid_rooms.is_empty() && except_sids.is_empty() {
            return Selection::Opts(Box::new(opts));
        }
        let mut sids: Vec<Sid> = if !plain_rooms.is_empty() || target.rooms.is_empty() {
            self.local.sockets(opts)
        } else {
            Vec::new()
        };
        sids.extend(sid_rooms);
        let mut seen = HashSet::new();
        sids.retain(|s| !except_sids.contains(s) && seen.insert(*s));
        Selection::Sids(sids)
    }

    fn single(sid: Sid, volatile: bool) -> BroadcastOptions {
        let mut opts = BroadcastOptions::new(sid);
        if volatile {
            opts.add_flag(BroadcastFlags::Volatile);
        }
        opts
    }

    /// Delivers a broadcast from another node to the selected local sockets, under the same
    /// outgoing-queue policy as a local broadcast (see [`DeliveryObserver`]).
    ///
    /// [`DeliveryObserver`]: crate::DeliveryObserver
    fn deliver(&self, selection: Selection, packet: Packet, volatile: bool) {
        let selection = self.admit(selection, &packet, volatile);
        let result = match selection {
            Selection::Opts(opts) => self.local.broadcast(packet, *opts),
            Selection::Sids(sids) => for_each_sid(sids, |sid| {
                self.local
                    .broadcast(packet.clone(), Self::single(sid, volatile))
            }),
        };
        if let Err(errors) = result {
            let full = errors
                .iter()
                .filter(|e| matches!(e, SocketError::InternalChannelFull))
                .count();
            tracing::debug!(
                count = errors.len(),
                full,
                "remote broadcast: some sockets were not reachable"
            );
            if full > 0
                && let Some(observer) = self.observer.get()
            {
                observer.dropped(self.local.path(), full);
            }
        }
    }

    /// Tells the observer about a delivery to come and leaves out the sockets it refuses.
    /// Volatile frames bypass the queue and are not counted.
    fn admit(&self, selection: Selection, packet: &Packet, volatile: bool) -> Selection {
        let Some(observer) = self.observer.get().filter(|_| !volatile) else {
            return selection;
        };
        let bytes = packet_bytes(packet);
        let excluded = Room::from(observer.excluded_room().to_owned());
        // Sockets already refused are neither counted nor reached.
        match selection {
            Selection::Opts(mut opts) => {
                opts.except.push(excluded);
                let sids = self.local.sockets((*opts).clone());
                observer.before_delivery(self.local.path(), &sids, bytes);
                Selection::Opts(opts)
            }
            Selection::Sids(mut sids) => {
                let refused = |sid: &Sid| self.local.socket_rooms(*sid).contains(&excluded);
                sids.retain(|sid| !refused(sid));
                observer.before_delivery(self.local.path(), &sids, bytes);
                sids.retain(|sid| !refused(sid));
                Selection::Sids(sids)
            }
        }
    }

    fn selected_sids(&self, selection: Selection) -> Vec<Sid> {
        match selection {
            Selection::Opts(opts) => self.local.sockets(*opts),
            Selection::Sids(sids) => sids,
        }
    }

    fn request_sync(&self) {
        if let Some(remote) = &self.remote {
            remote.core.sync_now.notify_one();
        }
    }

    async fn handle_inbound(self: &Arc<Self>, remote: &Remote, msg: Inbound) {
        let Some(kind) = remote.core.channels.classify(&msg.channel) else {
            return;
        };
        match kind {
            crate::channels::ChannelKind::Broadcast { room } => {
                if let Some(room) = room
                    && !self.holds_room(remote, room)
                {
                    return;
                }
                self.on_broadcast(remote, &msg.payload);
            }
            crate::channels::ChannelKind::Request => self.on_request(remote, &msg.payload),
            crate::channels::ChannelKind::Response => on_response(remote, &msg.payload),
        }
    }

    fn holds_room(&self, remote: &Remote, room: &str) -> bool {
        if NamespaceChannels::room_covered_by_pattern(room) {
            if self.is_local_sid(room).is_some() {
                return true;
            }
            let mut opts = BroadcastOptions::default();
            opts.rooms.push(Room::from(room.to_owned()));
            return !self.local.sockets(opts).is_empty();
        }
        remote
            .core
            .subscribed_rooms
            .lock()
            .map(|r| r.contains(room))
            .unwrap_or(false)
    }

    fn on_broadcast(&self, remote: &Remote, payload: &[u8]) {
        let msg = match wire::decode_broadcast(payload) {
            Ok(m) => m,
            Err(e) => {
                inc(&remote.shared.metrics.decode_errors);
                tracing::warn!(error = %e, nsp = %remote.core.nsp, "undecodable broadcast from redis");
                return;
            }
        };
        if msg.uid == remote.core.uid || msg.nsp != remote.core.nsp {
            return;
        }
        remote.core.saw_peer(&msg.uid);
        let packet = Packet::event(Str::from(remote.core.nsp.clone()), wire_to_value(&msg.data));
        let selection = self.select(&msg.target, msg.flags.volatile);
        self.deliver(selection, packet, msg.flags.volatile);
    }

    fn on_request(self: &Arc<Self>, remote: &Remote, payload: &[u8]) {
        let request = match Request::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                inc(&remote.shared.metrics.decode_errors);
                tracing::warn!(error = %e, nsp = %remote.core.nsp, "undecodable request from redis");
                return;
            }
        };
        let core = &remote.core;
        let shared = &remote.shared;
        let own = Some(core.uid.as_str());
        let from_self = |uid: &Option<String>| uid.as_deref() == Some(core.uid.as_str());
        // A request that asks for data also tells us the asker is alive (for the silent-peer
        // report of `gather`); this node's own requests are skipped.
        let from_self_else_note_peer = |uid: &Option<String>| {
            if from_self(uid) {
                return true;
            }
            if let Some(uid) = uid {
                core.saw_peer(uid);
            }
            false
        };
        // Answers go to the asker's own response channel when it named itself.
        let answer = |uid: &Option<String>, response: Vec<u8>| {
            shared.publish_nowait(core.response_channel_for(uid.as_deref()), response);
        };
        match request {
            Request::Sockets {
                uid,
                request_id,
                rooms,
            } => {
                if from_self(&uid) {
                    return;
                }
                let target = Target {
                    rooms,
                    except: Vec::new(),
                };
                let ids: Vec<String> = self
                    .selected_sids(self.select(&target, false))
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                answer(&uid, wire::socket_ids_response(&request_id, &ids, own));
            }
            Request::AllRooms {
                uid,
                request_id,
                target,
            } => {
                if from_self_else_note_peer(&uid) {
                    return;
                }
                let rooms: Vec<String> = self
                    .local_rooms(target.as_ref())
                    .into_iter()
                    .map(|r| r.to_string())
                    .collect();
                answer(&uid, wire::rooms_response(&request_id, &rooms, own));
            }
            Request::JoinLeave {
                join,
                uid,
                target,
                rooms,
            } => {
                if from_self(&uid) {
                    return;
                }
                let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
                match self.select(&target, false) {
                    Selection::Opts(opts) if join => self.local.add_sockets(*opts, rooms),
                    Selection::Opts(opts) => self.local.del_sockets(*opts, rooms),
                    Selection::Sids(sids) => {
                        for sid in sids {
                            if join {
                                self.local.add_all(sid, rooms.clone());
                            } else {
                                self.local.del(sid, rooms.clone());
                            }
                        }
                    }
                }
                core.sync_now.notify_one();
            }
            Request::Disconnect { uid, target, .. } => {
                if from_self(&uid) {
                    return;
                }
                self.disconnect_selection(self.select(&target, false));
            }
            Request::Legacy {
                kind,
                request_id,
                sid,
                room,
                ..
            } => {
                let Some(sid) = self.is_local_sid(&sid) else {
                    return;
                };
                match (kind, room) {
                    (wire::request_type::REMOTE_JOIN, Some(room)) => {
                        self.local.add_all(sid, Room::from(room));
                        core.sync_now.notify_one();
                    }
                    (wire::request_type::REMOTE_LEAVE, Some(room)) => {
                        self.local.del(sid, Room::from(room));
                    }
                    _ => self.disconnect_selection(Selection::Sids(vec![sid])),
                }
                shared.publish_nowait(
                    core.channels.response.clone(),
                    wire::legacy_ack_response(&request_id, own),
                );
            }
            Request::Fetch {
                uid,
                request_id,
                target,
            } => {
                if from_self_else_note_peer(&uid) {
                    return;
                }
                let sockets: Vec<wire::FetchedSocket> = self
                    .selected_sids(self.select(&target, false))
                    .into_iter()
                    .filter(|sid| {
                        !self
                            .local
                            .fetch_sockets(BroadcastOptions::new(*sid))
                            .is_empty()
                    })
                    .map(|sid| {
                        let mut rooms = vec![sid.to_string()];
                        rooms.extend(
                            self.local
                                .socket_rooms(sid)
                                .into_iter()
                                .map(|r| r.to_string()),
                        );
                        wire::FetchedSocket {
                            id: sid.to_string(),
                            rooms,
                            issued_ms: 0,
                        }
                    })
                    .collect();
                answer(&uid, wire::fetch_response(&request_id, &sockets, own));
            }
            Request::ServerSideEmit {
                uid,
                request_id,
                data,
            } => {
                if from_self(&uid) {
                    return;
                }
                self.on_server_side_emit(remote, uid, request_id, &data);
            }
            Request::BroadcastWithAck {
                uid,
                request_id,
                data,
                nsp,
                target,
                flags,
            } => {
                if from_self(&uid) || nsp != core.nsp {
                    return;
                }
                let Some(permit) = core.ack_answers.clone().try_acquire_owned().ok() else {
                    inc(&shared.metrics.dropped);
                    tracing::warn!(nsp = %core.nsp, "too many broadcast-with-ack requests in progress: one ignored");
                    return;
                };
                let this = self.clone();
                let shared = remote.shared.clone();
                let core = remote.core.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    this.answer_broadcast_with_ack(
                        &shared, &core, uid, request_id, &data, &target, flags,
                    )
                    .await;
                });
            }
        }
    }

    fn disconnect_selection(&self, selection: Selection) {
        let result = match selection {
            Selection::Opts(opts) => self.local.disconnect_socket(*opts),
            Selection::Sids(sids) => for_each_sid(sids, |sid| {
                self.local.disconnect_socket(BroadcastOptions::new(sid))
            }),
        };
        if let Err(errors) = result {
            tracing::debug!(
                count = errors.len(),
                "remote disconnect: some sockets failed"
            );
        }
    }

    fn local_rooms(&self, target: Option<&Target>) -> HashSet<Room> {
        match target {
            None => {
                let mut opts = BroadcastOptions::default();
                opts.add_flag(BroadcastFlags::Broadcast);
                self.local.rooms(opts)
            }
            Some(target) => match self.select(target, false) {
                Selection::Opts(opts) => self.local.rooms(*opts),
                Selection::Sids(sids) => sids
                    .into_iter()
                    .flat_map(|sid| self.local.socket_rooms(sid))
                    .collect(),
            },
        }
    }

    fn on_server_side_emit(
        &self,
        remote: &Remote,
        uid: Option<String>,
        request_id: Option<String>,
        data: &Wire,
    ) {
        let shared = &remote.shared;
        let sink = shared
            .sse_sinks
            .lock()
            .ok()
            .and_then(|s| s.get(&remote.core.nsp).cloned());
        let Some(sink) = sink else {
            tracing::debug!(nsp = %remote.core.nsp, "server-side event without a listener");
            return;
        };
        let mut bins = Vec::new();
        let text = json::to_json(data, &mut bins);
        let Ok(serde_json::Value::Array(mut items)) =
            serde_json::from_str::<serde_json::Value>(&text)
        else {
            inc(&shared.metrics.decode_errors);
            return;
        };
        let event = match items.first() {
            Some(serde_json::Value::String(_)) => match items.remove(0) {
                serde_json::Value::String(s) => s,
                _ => return,
            },
            _ => {
                inc(&shared.metrics.decode_errors);
                return;
            }
        };
        let ack = request_id.map(|request_id| ServerSideAck {
            shared: shared.clone(),
            channel: remote.core.response_channel_for(uid.as_deref()),
            request_id,
            uid: remote.core.uid.clone(),
        });
        let event = ServerSideEvent {
            event,
            args: items,
            from: uid,
            ack,
        };
        if sink.try_send(event).is_err() {
            inc(&shared.metrics.dropped);
            tracing::warn!(nsp = %remote.core.nsp, "server-side event queue full: event dropped");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer_broadcast_with_ack(
        &self,
        shared: &Shared,
        core: &NsCore,
        uid: Option<String>,
        request_id: String,
        data: &Wire,
        target: &Target,
        flags: Flags,
    ) {
        let channel = core.response_channel_for(uid.as_deref());
        let own = Some(core.uid.as_str());
        let packet = Packet::event(Str::from(core.nsp.clone()), wire_to_value(data));
        let timeout = flags
            .timeout_ms
            .map(|ms| Duration::from_millis(ms).min(MAX_REMOTE_ACK_TIMEOUT));
        let (mut acks, count): (BoxStream<'static, AckStreamItem<E::AckError>>, u32) =
            match self.select(target, flags.volatile) {
                Selection::Opts(opts) => {
                    let (s, n) = self.local.broadcast_with_ack(packet, *opts, timeout);
                    (s.boxed(), n)
                }
                Selection::Sids(sids) => {
                    let mut streams = Vec::new();
                    let mut total = 0;
                    for sid in sids {
                        let (s, n) = self.local.broadcast_with_ack(
                            packet.clone(),
                            Self::single(sid, flags.volatile),
                            timeout,
                        );
                        total += n;
                        streams.push(s.boxed());
                    }
                    (stream::select_all(streams).boxed(), total)
                }
            };
        shared.publish_nowait(
            channel.clone(),
            wire::client_count_response(&request_id, u64::from(count), own),
        );
        while let Some((_sid, result)) = acks.next().await {
            let Ok(value) = result else { continue };
            let first = match value_to_wire(&value) {
                Ok(Wire::Array(mut items)) if !items.is_empty() => items.swap_remove(0),
                Ok(_) => Wire::Nil,
                Err(e) => {
                    tracing::debug!(error = %e, "ack value not expressible on the wire");
                    continue;
                }
            };
            shared.publish_nowait(
                channel.clone(),
                wire::broadcast_ack_response(&request_id, &first, own),
            );
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Inbound>) {
        let Some(remote) = &self.remote else { return };
        let Some(mut waiters) = remote
            .core
            .sync_waiters_rx
            .lock()
            .ok()
            .and_then(|mut w| w.take())
        else {
            return;
        };
        let mut tick = tokio::time::interval(
            remote
                .shared
                .config
                .room_sync_interval
                .max(Duration::from_millis(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle_inbound(remote, msg).await,
                    None => break,
                },
                _ = tick.tick() => self.sync_rooms(remote).await,
                () = remote.core.sync_now.notified() => self.sync_rooms(remote).await,
                Some(first) = waiters.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_SYNC_BATCH {
                        match waiters.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    if batch.iter().any(|r| r.rooms.is_none()) {
                        self.sync_rooms(remote).await;
                    } else {
                        let rooms = batch.iter().flat_map(|r| r.rooms.iter().flatten());
                        self.subscribe_rooms(remote, rooms).await;
                    }
                    for request in batch {
                        let _ = request.done.send(());
                    }
                }
            }
            if remote.core.closed.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
    }

    /// Subscribes to the channels of `rooms` not subscribed yet.
    async fn subscribe_rooms(&self, remote: &Remote, rooms: impl Iterator<Item = &String>) {
        let add: Vec<String> = {
            let Ok(mut subscribed) = remote.core.subscribed_rooms.lock() else {
                return;
            };
            rooms
                .filter(|room| subscribed.insert((*room).clone()))
                .map(|room| remote.core.channels.room(room))
                .collect()
        };
        remote.shared.subscribe(add).await;
    }

    /// Subscribes to the channel of each room the local sockets hold and unsubscribes from
    /// rooms no longer held.
    async fn sync_rooms(&self, remote: &Remote) {
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Broadcast);
        let mut held: HashSet<String> = self
            .local
            .rooms(opts)
            .into_iter()
            .map(|r| r.to_string())
            .filter(|r| !NamespaceChannels::room_covered_by_pattern(r))
            .collect();
        if let Ok(mut pinned) = remote.core.pinned_rooms.lock() {
            pinned.retain(|room| {
                if held.contains(room) {
                    return false;
                }
                let mut members = BroadcastOptions::default();
                members.rooms.push(room.clone().into());
                let has_member = !self.local.sockets(members).is_empty();
                if has_member {
                    held.insert(room.clone());
                }
                has_member
            });
        }
        let (add, remove): (Vec<String>, Vec<String>) = {
            let Ok(mut subscribed) = remote.core.subscribed_rooms.lock() else {
                return;
            };
            let add: Vec<String> = held.difference(&subscribed).cloned().collect();
            let remove: Vec<String> = subscribed.difference(&held).cloned().collect();
            if add.is_empty() && remove.is_empty() {
                return;
            }
            *subscribed = held;
            (add, remove)
        };
        let channels = &remote.core.channels;
        remote
            .shared
            .subscribe(add.iter().map(|r| channels.room(r)).collect())
            .await;
        remote
            .shared
            .unsubscribe(remove.iter().map(|r| channels.room(r)).collect())
            .await;
    }

    async fn publish_broadcast(&self, remote: &Remote, packet: &Packet, opts: &BroadcastOptions) {
        let Some(target) = self.wire_target(&remote.shared, opts) else {
            return;
        };
        let Some(value) = event_data(packet) else {
            return;
        };
        let data = match value_to_wire(value) {
            Ok(d) => d,
            Err(e) => {
                inc(&remote.shared.metrics.publish_failures);
                tracing::warn!(error = %e, "broadcast not published");
                return;
            }
        };
        let flags = Flags {
            volatile: opts.has_flag(BroadcastFlags::Volatile),
            timeout_ms: None,
        };
        let channel = match target.rooms.as_slice() {
            [room] => remote.core.channels.room(room),
            _ => remote.core.channels.broadcast.clone(),
        };
        let bytes =
            wire::encode_broadcast(&remote.core.uid, &data, &remote.core.nsp, &target, flags);
        remote.shared.publish_queued(channel, bytes).await;
    }
}

/// Sync requests served by one subscription round at most; the rest wait for the next round.
const MAX_SYNC_BATCH: usize = 256;

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

fn on_response(remote: &Remote, payload: &[u8]) {
    let response = match Response::decode(payload) {
        Ok(r) => r,
        Err(e) => {
            inc(&remote.shared.metrics.decode_errors);
            tracing::warn!(error = %e, "undecodable response from redis");
            return;
        }
    };
    let sender = remote
        .core
        .pending
        .lock()
        .ok()
        .and_then(|p| p.get(&response.request_id).cloned());
    if let Some(sender) = sender
        && sender.try_send(response).is_err()
    {
        inc(&remote.shared.metrics.dropped);
    }
}

fn timeout_error<T: serde::de::DeserializeOwned>() -> Option<T> {
    // socketioxide's AckError (the emitter's error type) deserializes its `Timeout` variant
    // from this form; other emitters may not, in which case missing acks are just absent.
    serde_json::from_str("\"Timeout\"").ok()
}

struct RemoteAcks {
    rx: mpsc::Receiver<Response>,
    _guard: crate::namespace::PendingGuard,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
    expected_servers: usize,
    answered: usize,
    answered_uids: HashSet<String>,
    acks_expected: u64,
    acks_received: u64,
    timed_out: bool,
}

fn remote_ack_stream<Err: serde::de::DeserializeOwned + Send + 'static>(
    state: RemoteAcks,
) -> BoxStream<'static, AckStreamItem<Err>> {
    stream::unfold(state, |mut s| async move {
        loop {
            if s.timed_out {
                if s.acks_received < s.acks_expected {
                    s.acks_received += 1;
                    let err = timeout_error::<Err>()?;
                    return Some(((Sid::ZERO, Err(err)), s));
                }
                return None;
            }
            if s.answered >= s.expected_servers && s.acks_received >= s.acks_expected {
                return None;
            }
            match tokio::time::timeout_at(s.deadline, s.rx.recv()).await {
                Ok(Some(resp)) => match resp.kind() {
                    Some(wire::request_type::BROADCAST_CLIENT_COUNT) => {
                        if let Some(uid) = &resp.uid
                            && !s.answered_uids.insert(uid.clone())
                        {
                            continue;
                        }
                        s.answered += 1;
                        s.acks_expected += resp.client_count().unwrap_or(0);
                    }
                    Some(wire::request_type::BROADCAST_ACK) => {
                        s.acks_received += 1;
                        let first = resp.body.get("packet").cloned().unwrap_or(Wire::Nil);
                        let value = wire_to_value(&Wire::Array(vec![first]));
                        return Some(((Sid::ZERO, Ok(value)), s));
                    }
                    _ => continue,
                },
                Ok(None) | Err(_) => {
                    inc(&s.shared.metrics.request_timeouts);
                    tracing::warn!(
                        servers = s.answered,
                        expected_servers = s.expected_servers,
                        acks = s.acks_received,
                        expected_acks = s.acks_expected,
                        "broadcast with acks incomplete at its deadline"
                    );
                    s.timed_out = true;
                }
            }
        }
    })
    .boxed()
}

impl<E: SocketEmitter> CoreAdapter<E> for RedisAdapter<E> {
    type Error = AdapterError;
    type State = RedisAdapterCtr;
    type AckStream = Fuse<BoxStream<'static, AckStreamItem<E::AckError>>>;
    type InitRes = InitRes;

    fn new(state: &Self::State, local: CoreLocalAdapter<E>) -> Self {
        let remote = state.shared().map(|shared| {
            let uid = local.server_id().to_string();
            let core = Arc::new(NsCore::new(
                &shared.config.key,
                local.path(),
                uid,
                shared.config.max_pending_requests,
            ));
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
        InitRes(Box::pin(async move {
            let Some(remote) = &self.remote else {
                on_success();
                return Ok(());
            };
            let nsp = remote.core.nsp.clone();
            if nsp.contains('#') {
                return Err(AdapterError::MalformedNamespace(nsp));
            }
            let rx = remote
                .inbound
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .ok_or(AdapterError::Closed)?;
            if let Ok(mut routes) = remote.shared.routes.write() {
                routes.insert(nsp.clone(), remote.inbound_tx.clone());
            }
            if let Ok(mut namespaces) = remote.shared.namespaces.write() {
                namespaces.insert(nsp.clone(), remote.core.clone());
            }
            let ch = &remote.core.channels;
            remote
                .shared
                .subscribe(vec![
                    ch.broadcast.clone(),
                    ch.request.clone(),
                    ch.response.clone(),
                    remote.core.own_response.clone(),
                ])
                .await;
            remote.shared.psubscribe(ch.sid_room_pattern()).await;
            let view: Arc<dyn LocalView> = self.clone();
            let _ = remote.core.local_view.set(Arc::downgrade(&view));
            tokio::spawn(self.clone().run(rx));
            on_success();
            Ok(())
        }))
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
        if let Ok(mut routes) = remote.shared.routes.write() {
            routes.remove(&nsp);
        }
        if let Ok(mut namespaces) = remote.shared.namespaces.write() {
            namespaces.remove(&nsp);
        }
        let shared = remote.shared.clone();
        let ch = remote.core.channels.clone();
        let mut channels = vec![
            ch.broadcast.clone(),
            ch.request.clone(),
            ch.response.clone(),
            remote.core.own_response.clone(),
        ];
        if let Ok(rooms) = remote.core.subscribed_rooms.lock() {
            channels.extend(rooms.iter().map(|r| ch.room(r)));
        }
        // `close` may be polled only once (namespace deletion), so the I/O runs on its own.
        tokio::spawn(async move {
            shared.unsubscribe(channels).await;
            shared.punsubscribe(ch.sid_room_pattern()).await;
        });
        Ok(())
    }

    async fn server_count(&self) -> Result<u16, Self::Error> {
        let Some(remote) = &self.remote else {
            return Ok(1);
        };
        let n = remote.shared.numsub(&remote.core.channels.request).await?;
        Ok(u16::try_from(n.max(1)).unwrap_or(u16::MAX))
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        if let Some(remote) = self.remote_for(&opts) {
            self.publish_broadcast(remote, &packet, &opts).await;
        }
        if self.targets_other_node(&opts) {
            return Ok(());
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
        self.local
            .broadcast(packet, opts)
            .map_err(BroadcastError::from)
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
        let (guard, rx) = remote.core.register(&remote.shared)?;
        let request = Request::BroadcastWithAck {
            uid: Some(remote.core.uid.clone()),
            request_id: guard.id.clone(),
            data,
            nsp: remote.core.nsp.clone(),
            target,
            flags: Flags {
                volatile: false,
                timeout_ms: Some(u64::try_from(ack_timeout.as_millis()).unwrap_or(u64::MAX)),
            },
        };
        remote
            .shared
            .publish(remote.core.channels.request.clone(), request.encode())
            .await?;
        let state = RemoteAcks {
            rx,
            _guard: guard,
            shared: remote.shared.clone(),
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
            remote
                .shared
                .publish_queued(remote.core.channels.request.clone(), request.encode())
                .await;
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

impl<E: SocketEmitter> RedisAdapter<E> {
    async fn join_leave(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
        join: bool,
    ) -> Result<(), AdapterError> {
        if let Some(remote) = self.remote_for(&opts)
            && let Some(target) = self.wire_target(&remote.shared, &opts)
        {
            let request = Request::JoinLeave {
                join,
                uid: Some(remote.core.uid.clone()),
                target,
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
            };
            remote
                .shared
                .publish_queued(remote.core.channels.request.clone(), request.encode())
                .await;
        }
        if !self.targets_other_node(&opts) {
            if join {
                self.local.add_sockets(opts, rooms);
            } else {
                self.local.del_sockets(opts, rooms);
            }
            self.request_sync();
        }
        Ok(())
    }
}
