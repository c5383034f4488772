//! A join is live before it is acknowledged: once `sync_rooms_with` returned, a message
//! another node publishes to the room at that very instant reaches the socket, even while
//! other sockets connect and leave and force full room comparisons all the time.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::Semaphore;

use adapter_redis::{RedisAdapterConfig, RedisAdapterCtr};
use common::{Adapter, Client, Io, client, node, raw_client};
use fred::interfaces::{ClientLike, PubsubInterface};
use serde_json::{Value as Json, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use testkit::RedisServer;

const JOINS: usize = 400;
/// Rooms the joins go to, round robin.
const ROOMS: usize = 4;
/// Sockets kept in each of those rooms.
const PER_ROOM: usize = 2;

/// A node whose connect middleware joins the rooms of the auth `{"rooms": [...]}`, waits for
/// `sync_rooms_with` (the pinned path the gateway takes for a user's room, the socket not
/// connected yet), then does a Redis round trip of its own (as the gateway's handlers do)
/// before the socket connects. With `faults`, it notes there each room whose channel Redis did
/// not have subscribed when `sync_rooms_with` returned, or any more right before the connect
/// (single Redis only: on a cluster, `PUBSUB NUMSUB` counts one node's subscribers).
/// A socket whose auth has `"gated": true` then waits at `gate`.
async fn pinning_node(
    url: &str,
    room_sync_interval: Duration,
    faults: Option<Faults>,
    gate: Arc<Gate>,
) -> (Io, RedisAdapterCtr) {
    let config = RedisAdapterConfig {
        room_sync_interval,
        ..common::test_config()
    };
    let ctr = RedisAdapterCtr::connect(url, config).await.unwrap();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<Adapter>(ctr.clone())
        .build_svc();
    let pin = ctr.clone();
    let work = Arc::new(raw_client(url).await);
    let middleware = move |s: SocketRef<Adapter>, Data(auth): Data<Json>| {
        let (ctr, work, faults, gate) = (pin.clone(), work.clone(), faults.clone(), gate.clone());
        async move {
            let rooms: Vec<String> = auth
                .get("rooms")
                .and_then(Json::as_array)
                .map(|rooms| {
                    rooms
                        .iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            s.join(rooms.clone());
            ctr.sync_rooms_with("/", rooms.clone()).await;
            for room in rooms.iter().filter(|_| faults.is_some()) {
                if numsub(&work, room).await != 1 {
                    note(&faults, format!("{room}: not subscribed at return"));
                }
            }
            let _: Result<String, _> = work.ping(None).await;
            for room in rooms.iter().filter(|_| faults.is_some()) {
                if numsub(&work, room).await != 1 {
                    note(&faults, format!("{room}: unsubscribed before connect"));
                }
            }
            if auth.get("gated") == Some(&Json::Bool(true)) {
                gate.waiting.add_permits(1);
                gate.open.acquire().await.unwrap().forget();
            }
            Ok::<(), Infallible>(())
        }
    };
    io.ns("/", (async |_: SocketRef<Adapter>| {}).with(middleware))
        .await
        .unwrap();
    (io, ctr)
}

type Faults = Arc<Mutex<Vec<String>>>;

fn note(faults: &Option<Faults>, fault: String) {
    if let Some(faults) = faults {
        faults.lock().unwrap().push(fault);
    }
}

/// Where a gated socket waits in its middleware, pinned but not connected.
struct Gate {
    /// A permit per socket that reached the gate.
    waiting: Semaphore,
    /// A permit per socket let through.
    open: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            waiting: Semaphore::new(0),
            open: Semaphore::new(0),
        }
    }
}

/// Connections subscribed to the channel of room `room` of namespace `/`.
async fn numsub(redis: &fred::prelude::Client, room: &str) -> i64 {
    let counts: Vec<fred::types::Value> = redis
        .pubsub_numsub(format!("socket.io#/#{room}#"))
        .await
        .unwrap();
    counts
        .get(1)
        .and_then(fred::types::Value::as_i64)
        .unwrap_or(0)
}

/// Sockets joining and leaving rooms of their own on `io`, and explicit full comparisons,
/// until `stop` is set.
fn churn(
    io: &Io,
    ctr: &RedisAdapterCtr,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let connects = {
        let (io, stop) = (io.clone(), stop.clone());
        tokio::spawn(async move {
            for k in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let room = format!("churn-{}", k % 7);
                let c = client(&io, &[room.as_str()]).await;
                if let Some(s) = io.get_socket(c.sid.parse().unwrap()) {
                    let _ = s.disconnect();
                }
            }
        })
    };
    let syncs = {
        let (ctr, stop) = (ctr.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                ctr.sync_rooms("/").await;
            }
        })
    };
    vec![connects, syncs]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_published_when_sync_rooms_with_returns_arrives() {
    let redis = RedisServer::start().unwrap();
    messages_published_at_the_ack_arrive(&redis.url(), true).await;
}

/// The same on a three-primary Redis Cluster (classic pub/sub: a PUBLISH reaches the
/// subscriber's node over the cluster bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_a_message_published_at_the_ack_arrives() {
    let cluster = testkit::redis_cluster::RedisCluster::start().unwrap();
    messages_published_at_the_ack_arrive(&cluster.url(), false).await;
}

/// Joins through [`pinning_node`] while [`churn`] runs; another node publishes to the room as
/// each CONNECT arrives; every message must reach its socket, and with `check_subscriptions`
/// Redis must have had the channel subscribed from `sync_rooms_with`'s return to the connect.
async fn messages_published_at_the_ack_arrive(url: &str, check_subscriptions: bool) {
    let url = url.to_owned();
    let faults = Faults::default();
    // Full comparisons as often as the namespace task can run them.
    let every_ms = Duration::from_millis(1);
    let gate = Arc::new(Gate::default());
    let checked = check_subscriptions.then(|| faults.clone());
    let (a, ctr_a) = pinning_node(&url, every_ms, checked, gate).await;
    let (b, _ctr_b) = node(&url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let background = churn(&a, &ctr_a, &stop);

    // A few sockets per room: each new one joins while the oldest of its room leaves.
    let mut members: HashMap<usize, VecDeque<Client>> = HashMap::new();
    let mut lost = Vec::new();
    for i in 0..JOINS {
        // Every other join opens a room of its own (a new subscription); the others go to
        // rooms in use, as a member leaves.
        let k = if i % 2 == 0 { ROOMS + i } else { i % ROOMS };
        let room = format!("joined-{k}");
        let tag = format!("join {i}");
        let leaving = members
            .get_mut(&k)
            .filter(|m| m.len() >= PER_ROOM)
            .and_then(VecDeque::pop_front)
            .map(|c| c.sid);
        let leave = {
            let a = a.clone();
            tokio::spawn(async move {
                if let Some(s) = leaving.and_then(|sid| a.get_socket(sid.parse().unwrap())) {
                    let _ = s.disconnect();
                }
            })
        };
        // `client` returns with the CONNECT, sent once the middleware's `sync_rooms_with`
        // returned: the peer publishes at that instant.
        let mut c = client(&a, &[room.as_str()]).await;
        b.to(room.clone()).emit("hi", &tag).await.unwrap();
        leave.await.unwrap();
        let arrived = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Some(event)) = c.events.recv().await {
                if event.name == "hi" && event.args == vec![json!(tag)] {
                    return true;
                }
            }
            false
        })
        .await;
        if arrived != Ok(true) {
            lost.push(tag);
        }
        members.entry(k).or_default().push_back(c);
    }
    stop.store(true, Ordering::SeqCst);
    for task in background {
        task.await.unwrap();
    }
    let faults = faults.lock().unwrap().clone();
    assert!(
        lost.is_empty() && faults.is_empty(),
        "of {JOINS} joins, {} messages published at the CONNECT were lost: {lost:?}; \
         subscription faults: {faults:?}",
        lost.len()
    );
}

/// A socket still connecting keeps its pinned room subscribed even after the room was held by
/// connected sockets that have all left since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_stays_subscribed_while_its_pinned_socket_is_connecting() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let faults = Faults::default();
    let gate = Arc::new(Gate::default());
    // Only explicit comparisons.
    let hour = Duration::from_secs(3600);
    let (a, ctr_a) = pinning_node(&url, hour, Some(faults.clone()), gate.clone()).await;
    let (b, _ctr_b) = node(&url).await;
    let look = raw_client(&url).await;

    let first = client(&a, &["shared"]).await;
    let connecting = {
        let a = a.clone();
        tokio::spawn(async move {
            common::client_with_auth(&a, json!({ "rooms": ["shared"], "gated": true })).await
        })
    };
    // The second socket joined and pinned the room, and waits in its middleware.
    tokio::time::timeout(common::WAIT, gate.waiting.acquire())
        .await
        .unwrap()
        .unwrap()
        .forget();
    // A comparison while the connected first socket holds the room, then it leaves.
    ctr_a.sync_rooms("/").await;
    a.get_socket(first.sid.parse().unwrap())
        .unwrap()
        .disconnect()
        .unwrap();
    ctr_a.sync_rooms("/").await;
    assert_eq!(
        numsub(&look, "shared").await,
        1,
        "the room of a socket still connecting was unsubscribed"
    );

    gate.open.add_permits(1);
    let mut second = connecting.await.unwrap();
    b.to("shared").emit("hi", &"after connect").await.unwrap();
    assert_eq!(second.expect("hi").await.args, vec![json!("after connect")]);
    ctr_a.sync_rooms("/").await;
    assert_eq!(
        numsub(&look, "shared").await,
        1,
        "held by the connected socket"
    );
    let _ = look.quit().await;
    assert!(faults.lock().unwrap().is_empty(), "{faults:?}");
}
