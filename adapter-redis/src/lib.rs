//! A socketioxide adapter over `fred`, wire-compatible with Node's
//! `@socket.io/redis-adapter` 8.x (the classic protocol) and `@socket.io/redis-emitter` 5.x.
//!
//! Rust and Node.js socket.io servers can share one cluster, so a deployment can move one node
//! at a time.
//!
//! # Use
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use adapter_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
//! use socketioxide::SocketIo;
//!
//! let ctr = RedisAdapterCtr::connect("redis://127.0.0.1:6379", RedisAdapterConfig::default()).await?;
//! // or, without Redis: RedisAdapterCtr::local()
//! let (_layer, io) = SocketIo::builder()
//!     .with_adapter::<RedisAdapter<_>>(ctr.clone())
//!     .build_layer();
//! io.ns("/", async |_: socketioxide::extract::SocketRef<RedisAdapter<_>>| {}).await?;
//! assert!(ctr.is_connected());
//! # Ok(()) }
//! ```
//!
//! Build one [`RedisAdapterCtr`] per `SocketIo`: each holds its own two Redis connections, and
//! the other nodes count servers by subscribed connections (`PUBSUB NUMSUB`).
//!
//! For a readiness probe use `ctr.is_local() || ctr.is_connected()` (or
//! [`RedisAdapterCtr::connected_watch`]); counters are in [`RedisAdapterCtr::metrics`]
//! (field names in [`AdapterMetricsSnapshot`], exported as `socketio_adapter_<field>`).
//!
//! # Deadlines
//!
//! `fetch_sockets`, `rooms`, [`RedisAdapterCtr::all_rooms`],
//! [`RedisAdapterCtr::all_socket_ids`] and [`RedisAdapterCtr::server_side_emit_with_ack`]
//! wait for `PUBSUB NUMSUB - 1` answers for at most [`RedisAdapterConfig::request_timeout`].
//! A broadcast with acks waits for the caller's ack timeout plus that request timeout (the
//! other nodes need the ack timeout themselves before they can stop waiting for their
//! clients). Through socketioxide's API the partial result is returned as success (logged, and
//! counted in `request_timeouts`); the `RedisAdapterCtr` methods also say what was missing.
//!
//! # Protocol
//!
//! Channels (built in [`channels`]; key prefix `socket.io`, namespace `/`):
//!
//! * `socket.io#/#`: broadcasts to the whole namespace or to several rooms;
//! * `socket.io#/#<room>#`: broadcasts to exactly one room;
//! * `socket.io-request#/#`: requests; `socket.io-response#/#` and
//!   `socket.io-response#/#<uid>#`: answers.
//!
//! Broadcasts are msgpack `[uid, {type:2, data:[event, ...args], nsp}, {rooms, except, flags}]`
//! exactly as notepack.io encodes them (binary arguments inline as msgpack `bin`). Requests
//! and answers are JSON objects with a numeric `type` (0 sockets, 1 all rooms, 2 join, 3 leave,
//! 4 disconnect, 5 fetch sockets, 6 server-side emit, 7 broadcast with acks, 8 client count,
//! 9 one ack), except types 7 and 9 which are msgpack; a decoder tells them apart by the first
//! byte (`{` is JSON). See [`wire`].
//!
//! # What this adapter does better than the Node adapter, with the same wire
//!
//! * **Per-room subscriptions.** Instead of `PSUBSCRIBE <key>#<nsp>#*`, a node subscribes to
//!   the namespace channel, the channels of the rooms its sockets hold (subscribed right after
//!   joins announced with [`RedisAdapterCtr::sync_rooms_with`] or made through the adapter, and
//!   compared with the rooms held every [`RedisAdapterConfig::room_sync_interval`]), and one
//!   narrow pattern matching 16-character rooms,
//!   which is how `io.to(<socket id>)` from other nodes reaches its sockets. A node with no
//!   member of a room receives none of that room's traffic. A message to a room published
//!   before this node's subscription to it is acknowledged is not received by this node. For
//!   clusters with Node peers that join then emit at once,
//!   [`ClassicSubscriptions::Pattern`] subscribes to every room as Node does
//!   (`docs/sharded-adapter.md`, section 3.1).
//! * **No stalls on dead peers.** Requests wait at most [`RedisAdapterConfig::request_timeout`]
//!   and return what they got; [`RedisAdapterCtr`] methods also return which answers are
//!   missing ([`Gathered::missing`]). Answers are de-duplicated per responder.
//! * **Bounded everything**: see the fields of [`RedisAdapterConfig`]. Drops are counted.
//! * **Reconnects**: the adapter resubscribes every channel itself after a reconnect (fred
//!   10.1's own resubscription sends empty `SUBSCRIBE` lists) and reports the connection state
//!   ([`RedisAdapterCtr::is_connected`]).
//! * `socketsJoin`, `socketsLeave` and `disconnectSockets` apply locally at once (Node waits
//!   for its own request to come back through Redis, so they do nothing while Redis is down).
//!
//! # What socketioxide's types cannot express, and what the adapter does instead
//!
//! * **Node socket ids** are 20 characters; socketioxide's `Sid` holds 16. `fetch_sockets`
//!   returns a `Sid` derived from the Node id and remembers the mapping (bounded by
//!   [`RedisAdapterConfig::foreign_id_capacity`]); `RemoteSocket` operations on it put the
//!   original id on the wire. Node peers do not say who answered, so those sockets carry
//!   `server_id == Uid::ZERO`; the adapter routes by socket id, not by server, so the
//!   operations still work.
//! * **Handshake and `socket.data`** of remote sockets are dropped (`RemoteSocketData` has no
//!   place for them). Answers to Node's `fetchSockets` carry an empty handshake
//!   (`headers: {}`, `issued: 0`) and `data: {}`: the adapter cannot see a socket's request
//!   or extensions.
//! * **Socket-id rooms**: socketioxide sockets are not members of a room named after their id,
//!   but Node addresses single sockets that way. Incoming selections naming a local socket id
//!   as a room reach that socket; outgoing single-socket operations are sent the Node way.
//! * **Acks from other nodes** carry no socket id on the wire: remote ack items have
//!   `Sid::ZERO`, and only the client's first ack argument travels (as in Node). Acks missing
//!   at the deadline are yielded as `AckError::Timeout` with `Sid::ZERO`.
//! * **`disconnectSockets(close)`**: socketioxide can only disconnect from the namespace;
//!   `close: true` is treated as `false`.
//! * **`allRooms`** from Node returns every room of the node; this adapter answers with the
//!   rooms its sockets are in (socketioxide has no socket-id rooms).
//! * **Server-side emit** is not part of socketioxide's adapter trait: it is offered by
//!   [`RedisAdapterCtr::server_side_emit`], [`RedisAdapterCtr::server_side_emit_with_ack`]
//!   and [`RedisAdapterCtr::server_side_events`]. Arguments are JSON (binary is refused).
//! * Only socketioxide's common (JSON) parser is supported; the msgpack parser's packets are
//!   not expressible as the Node data array without re-parsing and are refused.

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod adapter;
mod budget;
pub mod channels;
mod config;
mod connection;
mod delivery;
mod error;
mod gather;
mod ids;
mod join_fence;
pub mod json;
mod locks;
mod metrics;
pub mod msgpack;
mod namespace;
mod namespace_wire;
pub mod sharded_wire;
mod slot_move;
pub mod transport;
pub mod wire;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod test_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

pub use adapter::{InitRes, RedisAdapter};
pub use config::{AdapterMode, ClassicSubscriptions, RedisAdapterConfig};
pub use delivery::{DeliveryObserver, packet_bytes};
pub use error::{AdapterError, MissingResponses};
pub use metrics::AdapterMetricsSnapshot;
pub use wire::MAX_EVENT_DATA_DEPTH;

use crate::connection::Shared;
use crate::msgpack::Wire;
use crate::wire::Request;

/// The adapter's state, shared by every namespace of one `SocketIo`: either "local only" or a
/// Redis connection. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisAdapterCtr {
    shared: Option<Arc<Shared>>,
    observer: delivery::ObserverSlot,
}

/// The answers a cluster-wide request got, and which were missing at its deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered<T> {
    /// The answers received (plus the local part, where the operation has one).
    pub value: T,
    /// `None` when every expected node answered.
    pub missing: Option<MissingResponses>,
}

/// A server-side event from another node (`io.serverSideEmit` in Node).
#[derive(Debug)]
pub struct ServerSideEvent {
    /// The event name.
    pub event: String,
    /// The arguments.
    pub args: Vec<serde_json::Value>,
    /// The sender's uid (`emitter` for `@socket.io/redis-emitter`; absent if not sent).
    pub from: Option<String>,
    /// Present when the sender waits for an answer.
    pub ack: Option<ServerSideAck>,
}

/// Answers one server-side event.
#[derive(Debug)]
pub struct ServerSideAck {
    shared: Arc<Shared>,
    core: Arc<namespace::NsCore>,
    /// The asking node's uid.
    requester: Option<String>,
    request_id: String,
}

impl ServerSideAck {
    /// Sends the answer (one value, as Node uses only the first ack argument).
    pub fn send(self, value: serde_json::Value) {
        let wire = json_to_wire(&value);
        adapter::publish_answer(
            &self.shared,
            &self.core,
            self.requester.as_deref(),
            &self.request_id,
            namespace_wire::Answer::ServerSideAck(&wire),
        );
    }
}

fn json_to_wire(value: &serde_json::Value) -> Wire {
    json::from_json(&value.to_string(), &[]).unwrap_or(Wire::Nil)
}

/// Hands a sync request to the namespace task and waits for its answer.
async fn request_sync(core: &namespace::NsCore, rooms: Option<Vec<String>>) {
    send_sync(core, rooms, None).await;
}

async fn send_sync(
    core: &namespace::NsCore,
    rooms: Option<Vec<String>>,
    release: Option<(String, Vec<String>)>,
) {
    let (done, rx) = tokio::sync::oneshot::channel();
    let request = namespace::SyncRequest {
        rooms,
        release,
        done,
    };
    if core.sync_waiters.send(request).await.is_ok() {
        let _ = rx.await;
    }
}

impl RedisAdapterCtr {
    /// No Redis: the adapter behaves exactly as socketioxide's `LocalAdapter`.
    pub fn local() -> Self {
        Self {
            shared: None,
            observer: delivery::ObserverSlot::default(),
        }
    }

    /// Connects to Redis (`redis://host:port[/db]`, `rediss://`, sentinel and cluster URLs as
    /// fred parses them). Fails if Redis is not reachable now; after that, the adapter
    /// reconnects by itself.
    pub async fn connect(url: &str, config: RedisAdapterConfig) -> Result<Self, AdapterError> {
        Ok(Self {
            shared: Some(Shared::connect(url, config).await?),
            observer: delivery::ObserverSlot::default(),
        })
    }

    pub(crate) fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.clone()
    }

    pub(crate) fn observer(&self) -> delivery::ObserverSlot {
        self.observer.clone()
    }

    /// Installs the server's outgoing-queue policy for every namespace, existing and future
    /// (local and cross-node deliveries alike); `false` if one was already installed.
    pub fn set_delivery_observer(&self, observer: Arc<dyn DeliveryObserver>) -> bool {
        self.observer.set(observer)
    }

    /// True when built with [`Self::local`].
    pub fn is_local(&self) -> bool {
        self.shared.is_none()
    }

    /// Whether both Redis connections are up now (always false for a local adapter).
    pub fn is_connected(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| *s.connected.borrow())
    }

    /// Follows [`Self::is_connected`]; for a local adapter it stays `false`.
    pub fn connected_watch(&self) -> watch::Receiver<bool> {
        match &self.shared {
            Some(s) => s.connected.subscribe(),
            None => watch::channel(false).1,
        }
    }

    /// The counters (all zero for a local adapter).
    pub fn metrics(&self) -> AdapterMetricsSnapshot {
        self.shared
            .as_ref()
            .map(|s| s.metrics.snapshot(s.subscription_count()))
            .unwrap_or_default()
    }

    fn namespace(&self, nsp: &str) -> Result<(Arc<Shared>, Arc<namespace::NsCore>), AdapterError> {
        let shared = self.shared.clone().ok_or(AdapterError::LocalOnly)?;
        let core = locks::read(&shared.namespaces)
            .get(nsp)
            .cloned()
            .ok_or_else(|| AdapterError::Encode(format!("namespace `{nsp}` is not initialised")))?;
        Ok((shared, core))
    }

    /// Waits until this node's room-channel subscriptions of namespace `nsp` match the rooms
    /// its sockets hold now, unsubscribing rooms nobody holds any more. Its cost grows with the
    /// local sockets; after a join, prefer [`RedisAdapterCtr::sync_rooms_with`]. Concurrent
    /// calls share one check. Returns at once for a local adapter.
    pub async fn sync_rooms(&self, nsp: &str) {
        if let Ok((_shared, core)) = self.namespace(nsp) {
            request_sync(&core, None).await;
        }
    }

    /// Waits until `rooms` of namespace `nsp` are subscribed, Redis having confirmed it: call
    /// it right after `socket.join`, also in a connect middleware (the socket is not connected
    /// yet), so messages other nodes send to those rooms from then on are received. The rooms
    /// stay subscribed while they have a member, including one still connecting. The cost grows with the rooms named, not with the
    /// sockets. Returns at once for a local adapter.
    pub async fn sync_rooms_with(&self, nsp: &str, rooms: impl IntoIterator<Item = String>) {
        let Ok((_shared, core)) = self.namespace(nsp) else {
            return;
        };
        let rooms = core.rooms_with_channels(rooms);
        if rooms.is_empty() {
            return;
        }
        locks::lock(&core.pinned_rooms).extend(rooms.iter().cloned());
        request_sync(&core, Some(rooms)).await;
    }

    /// Waits until the channels of `rooms` of namespace `nsp` that no local socket other than
    /// `leaving` holds are unsubscribed: call it when socket `leaving` disconnects, with the
    /// rooms it held (its own id included), so they are released at once, as Node does, rather
    /// than at the next comparison ([`RedisAdapterConfig::room_sync_interval`]). The cost grows
    /// with the rooms named. Returns at once for a local adapter.
    pub async fn release_rooms(
        &self,
        nsp: &str,
        leaving: &str,
        rooms: impl IntoIterator<Item = String>,
    ) {
        let Ok((_shared, core)) = self.namespace(nsp) else {
            return;
        };
        if !core.uses_room_channels() {
            return;
        }
        let rooms = core.rooms_with_channels(rooms);
        if rooms.is_empty() {
            return;
        }
        send_sync(&core, Some(Vec::new()), Some((leaving.to_owned(), rooms))).await;
    }

    /// Every room of namespace `nsp` across the cluster (Node's `allRooms()`), with the
    /// answers that were missing at the deadline.
    pub async fn all_rooms(&self, nsp: &str) -> Result<Gathered<Vec<String>>, AdapterError> {
        let rooms = self
            .local_and_gathered(
                nsp,
                "rooms",
                |v| v.local_rooms().into_iter().collect::<BTreeSet<String>>(),
                |uid, request_id| Request::AllRooms {
                    uid: Some(uid),
                    request_id,
                    target: None,
                },
                |rooms, answer| rooms.extend(answer.rooms()),
            )
            .await?;
        Ok(Gathered {
            value: rooms.value.into_iter().collect(),
            missing: rooms.missing,
        })
    }

    /// The ids of every socket of namespace `nsp` across the cluster (Node's
    /// `fetchSockets()`, ids only: Node ids are 20 characters, this adapter's 16), with the
    /// answers that were missing at the deadline.
    pub async fn all_socket_ids(&self, nsp: &str) -> Result<Gathered<Vec<String>>, AdapterError> {
        let mut ids = self
            .local_and_gathered(
                nsp,
                "fetch_sockets",
                |v| v.local_socket_ids(),
                |uid, request_id| Request::Fetch {
                    uid: Some(uid),
                    request_id,
                    target: wire::Target::default(),
                },
                |ids, answer| ids.extend(answer.socket_ids()),
            )
            .await?;
        ids.value.sort();
        Ok(ids)
    }

    /// This node's own part of namespace `nsp` (`local`, taken before asking), with what
    /// every other node answers to the request `request` builds merged in by `add`.
    async fn local_and_gathered<T: Default>(
        &self,
        nsp: &str,
        operation: &'static str,
        local: impl FnOnce(&dyn namespace::LocalView) -> T,
        request: impl FnOnce(String, String) -> Request,
        mut add: impl FnMut(&mut T, &wire::Response),
    ) -> Result<Gathered<T>, AdapterError> {
        let (shared, core) = self.namespace(nsp)?;
        let mut value = core.local_view().map(|v| local(&*v)).unwrap_or_default();
        let gathered = core.gather(&shared, operation, request).await?;
        for answer in &gathered.value {
            add(&mut value, answer);
        }
        Ok(Gathered {
            value,
            missing: gathered.missing,
        })
    }

    /// Nodes subscribed to namespace `nsp`'s request channel (`PUBSUB NUMSUB`, as Node's
    /// `serverCount()`); 1 for a local adapter.
    pub async fn server_count(&self, nsp: &str) -> Result<u64, AdapterError> {
        if self.shared.is_none() {
            return Ok(1);
        }
        let (shared, core) = self.namespace(nsp)?;
        Ok(shared.numsub(core.count_channel()).await?.max(1))
    }

    /// `io.serverSideEmit(event, ...args)`: every other node's listener gets the event.
    pub async fn server_side_emit(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<(), AdapterError> {
        let (shared, core) = self.namespace(nsp)?;
        let request = Request::ServerSideEmit {
            uid: Some(core.uid.clone()),
            request_id: None,
            data: event_wire(event, &args),
        };
        let (channel, bytes) = core.request_out(request)?;
        shared.publish(channel, bytes).await
    }

    /// `io.serverSideEmitWithAck(event, ...args)`: one answer per other node, until all
    /// answered or the request timeout passed.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<Gathered<Vec<serde_json::Value>>, AdapterError> {
        let (shared, core) = self.namespace(nsp)?;
        let data = event_wire(event, &args);
        let gathered = core
            .gather(&shared, "server_side_emit_with_ack", |uid, request_id| {
                Request::ServerSideEmit {
                    uid: Some(uid),
                    request_id: Some(request_id),
                    data,
                }
            })
            .await?;
        let value = gathered
            .value
            .iter()
            .map(|r| {
                let wire = r.body.get("data").cloned().unwrap_or(Wire::Nil);
                serde_json::from_str(&json::to_json(&wire, &mut Vec::new()))
                    .unwrap_or(serde_json::Value::Null)
            })
            .collect();
        Ok(Gathered {
            value,
            missing: gathered.missing,
        })
    }

    /// The server-side events other nodes send to namespace `nsp`. Calling it again replaces
    /// the previous receiver. Bounded by [`RedisAdapterConfig::server_side_event_queue`].
    pub fn server_side_events(
        &self,
        nsp: &str,
    ) -> Result<mpsc::Receiver<ServerSideEvent>, AdapterError> {
        let shared = self.shared.clone().ok_or(AdapterError::LocalOnly)?;
        let (tx, rx) = mpsc::channel(shared.config.server_side_event_queue.max(1));
        locks::lock(&shared.sse_sinks).insert(nsp.to_owned(), tx);
        Ok(rx)
    }

    /// Closes both Redis connections; the adapter then only works locally.
    pub async fn shutdown(&self) {
        if let Some(shared) = &self.shared {
            shared.shutdown().await;
        }
    }
}

fn event_wire(event: &str, args: &[serde_json::Value]) -> Wire {
    let mut items = vec![Wire::Str(event.to_owned())];
    items.extend(args.iter().map(json_to_wire));
    Wire::Array(items)
}
