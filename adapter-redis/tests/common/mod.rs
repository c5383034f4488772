//! Shared helpers of the integration tests: socketioxide servers on the Redis adapter and
//! in-process dummy clients that answer acks.
#![allow(dead_code, clippy::unwrap_used)]

pub mod node_peer;

use std::time::Duration;

use adapter_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use engineioxide_core::Packet as EioPacket;
use serde_json::Value as Json;
use socketioxide::SocketIo;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::socket::RemoteSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type Adapter = RedisAdapter<Emitter>;
pub type Io = SocketIo<Adapter>;

pub const WAIT: Duration = Duration::from_secs(5);

pub fn test_config() -> RedisAdapterConfig {
    RedisAdapterConfig {
        request_timeout: Duration::from_millis(1500),
        ..RedisAdapterConfig::default()
    }
}

/// A server: sockets join the rooms listed in their auth `{"rooms": [...]}`; event `echo`
/// acks its first argument.
pub async fn server(ctr: RedisAdapterCtr) -> Io {
    let (_svc, io) = SocketIo::builder().with_adapter::<Adapter>(ctr).build_svc();
    io.ns("/", on_connect).await.unwrap();
    io
}

async fn on_connect(socket: SocketRef<Adapter>, Data(auth): Data<Json>) {
    if let Some(rooms) = auth.get("rooms").and_then(Json::as_array) {
        for room in rooms.iter().filter_map(Json::as_str) {
            socket.join(room.to_owned());
        }
    }
    socket.on(
        "echo",
        async |Data(v): Data<Json>, ack: AckSender<Adapter>| {
            let _ = ack.send(&v);
        },
    );
}

pub async fn node(url: &str) -> (Io, RedisAdapterCtr) {
    node_with(url, test_config()).await
}

/// A [`server`] on its own adapter connected to `url` with `config`.
pub async fn node_with(url: &str, config: RedisAdapterConfig) -> (Io, RedisAdapterCtr) {
    let ctr = RedisAdapterCtr::connect(url, config).await.unwrap();
    (server(ctr.clone()).await, ctr)
}

/// A plain Redis client, for looking at Redis or publishing on it directly.
pub async fn raw_client(url: &str) -> fred::prelude::Client {
    let client = fred::prelude::Builder::from_config(fred::prelude::Config::from_url(url).unwrap())
        .build()
        .unwrap();
    fred::interfaces::ClientLike::init(&client).await.unwrap();
    client
}

/// Every socket of namespace `/`, on all nodes.
pub async fn fetch_all(io: &Io) -> Vec<RemoteSocket<Adapter>> {
    io.of("/")
        .unwrap()
        .broadcast()
        .fetch_sockets()
        .await
        .unwrap()
}

/// Socket `sid` of namespace `/`, wherever it is (panics when no node has it).
pub async fn fetch_one(io: &Io, sid: &str) -> RemoteSocket<Adapter> {
    fetch_all(io)
        .await
        .into_iter()
        .find(|s| s.data().id.to_string() == sid)
        .unwrap()
}

/// Waits (see [`eventually`]) until `room` holds `n` sockets across the cluster.
pub async fn wait_room_size(io: &Io, room: &str, n: usize, what: &str) {
    eventually(what, async || {
        io.to(room.to_owned())
            .fetch_sockets()
            .await
            .map(|s| s.len() == n)
            .unwrap_or(false)
    })
    .await;
}

/// Emits `event` (with a counter) to `room` every 20 ms until aborted: traffic that is
/// already flowing when Redis comes back.
pub fn emit_until_aborted(io: &Io, room: &'static str, event: &'static str) -> JoinHandle<()> {
    let io = io.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(20));
        for i in 0u32.. {
            every.tick().await;
            let _ = io.to(room).emit(event, &i).await;
        }
    })
}

/// A received socket.io event: name, arguments, binary attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub args: Vec<Json>,
    pub bins: Vec<bytes::Bytes>,
}

/// An in-process client (socketioxide's dummy socket) that answers every ack request with
/// `"ack-<event>"` and forwards events and disconnects.
pub struct Client {
    pub sid: String,
    pub events: mpsc::Receiver<Option<Event>>,
    pub tx: mpsc::Sender<EioPacket>,
}

pub async fn client(io: &Io, rooms: &[&str]) -> Client {
    client_with_auth(io, serde_json::json!({ "rooms": rooms })).await
}

/// A [`client`] connecting with `auth` as its handshake data.
pub async fn client_with_auth(io: &Io, auth: Json) -> Client {
    // A client in room `mute` never answers acks (a stuck client).
    let mute = auth["rooms"]
        .as_array()
        .is_some_and(|rooms| rooms.contains(&Json::from("mute")));
    let (tx, mut rx) = io.new_dummy_sock("/", auth).await;
    let (events_tx, events) = mpsc::channel(1024);
    let (sid_tx, sid_rx) = tokio::sync::oneshot::channel();
    let reply = tx.clone();
    tokio::spawn(async move {
        let mut sid_tx = Some(sid_tx);
        let mut pending: Option<(String, Option<i64>, usize, Vec<bytes::Bytes>)> = None;
        while let Some(packet) = rx.recv().await {
            match packet {
                EioPacket::Message(msg) => {
                    let msg = msg.to_string();
                    if let Some(rest) = msg.strip_prefix('0') {
                        let v: Json = serde_json::from_str(rest).unwrap();
                        if let Some(tx) = sid_tx.take() {
                            let _ = tx.send(v["sid"].as_str().unwrap().to_owned());
                        }
                    } else if msg.starts_with('1') {
                        let _ = events_tx.send(None).await;
                    } else if let Some(rest) = msg.strip_prefix('2') {
                        let (id, body) = split_ack_id(rest);
                        forward(&events_tx, &reply, body, id.filter(|_| !mute), Vec::new()).await;
                    } else if let Some(rest) = msg.strip_prefix('5') {
                        let (count, rest) = rest.split_once('-').unwrap();
                        let (id, body) = split_ack_id(rest);
                        pending = Some((body.to_owned(), id, count.parse().unwrap(), Vec::new()));
                    }
                }
                EioPacket::Binary(bin) => {
                    if let Some((body, id, count, mut bins)) = pending.take() {
                        bins.push(bin);
                        if bins.len() == count {
                            forward(&events_tx, &reply, &body, id.filter(|_| !mute), bins).await;
                        } else {
                            pending = Some((body, id, count, bins));
                        }
                    }
                }
                _ => {}
            }
        }
    });
    let sid = tokio::time::timeout(WAIT, sid_rx).await.unwrap().unwrap();
    Client { sid, events, tx }
}

fn split_ack_id(rest: &str) -> (Option<i64>, &str) {
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (rest[..digits].parse().ok(), &rest[digits..])
}

async fn forward(
    events: &mpsc::Sender<Option<Event>>,
    reply: &mpsc::Sender<EioPacket>,
    body: &str,
    id: Option<i64>,
    bins: Vec<bytes::Bytes>,
) {
    let mut items: Vec<Json> = serde_json::from_str(body).unwrap();
    let name = items.remove(0).as_str().unwrap().to_owned();
    if let Some(id) = id {
        let answer = format!("3{id}[\"ack-{name}\"]");
        let _ = reply.send(EioPacket::Message(answer.into())).await;
    }
    let _ = events
        .send(Some(Event {
            name,
            args: items,
            bins,
        }))
        .await;
}

impl Client {
    /// The next event (panics after [`WAIT`]).
    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(Some(event))) => event,
            Ok(Some(None)) => panic!("client {} was disconnected", self.sid),
            other => panic!(
                "client {} got no event within {WAIT:?}: {other:?}",
                self.sid
            ),
        }
    }

    /// The next event must be `name` (so nothing else came before it).
    pub async fn expect(&mut self, name: &str) -> Event {
        let event = self.next().await;
        assert_eq!(event.name, name, "client {} got {event:?}", self.sid);
        event
    }

    /// Waits until the server disconnects this client.
    pub async fn expect_disconnect(&mut self) {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(None)) => {}
            other => panic!("client {} was not disconnected: {other:?}", self.sid),
        }
    }
}

/// Polls `cond` until it holds or `WAIT` passes.
pub async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while tokio::time::Instant::now() < deadline {
        poll.tick().await;
        if cond().await {
            return;
        }
    }
    panic!("condition not met within {WAIT:?}: {what}");
}

/// The same server behind a real HTTP listener on 127.0.0.1 (port 0); returns the port.
pub async fn http_server(ctr: RedisAdapterCtr) -> (Io, u16) {
    let (layer, io) = SocketIo::builder()
        .with_adapter::<Adapter>(ctr)
        .build_layer();
    io.ns("/", on_connect).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::<()>::new().layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (io, port)
}

/// Sends `sig` (`-STOP`, `-CONT`, ...) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid} failed");
}
