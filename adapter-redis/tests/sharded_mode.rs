//! `AdapterMode::Sharded` between socketioxide servers on a real three-primary Redis Cluster,
//! in each subscription mode: Node's sharded envelope through the sharded transport, every
//! operation across nodes, room channels subscribed only where members are held, and joins
//! live before they return (`docs/sharded-adapter.md`, sections 2 to 4).
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use adapter_redis::sharded_wire::SubscriptionMode;
use adapter_redis::{AdapterError, AdapterMode, RedisAdapterConfig, RedisAdapterCtr};
use bytes::Bytes;
use common::{
    Adapter, Io, client, client_with_auth, eventually, fetch_all, fetch_one, node_with,
    wait_room_size,
};
use serde_json::{Value as Json, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use testkit::redis_cluster::RedisCluster;

fn sharded_config(mode: SubscriptionMode) -> RedisAdapterConfig {
    RedisAdapterConfig {
        mode: AdapterMode::Sharded(mode),
        ..common::test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_crosses_nodes_in_sharded_static_mode() {
    every_operation_crosses_nodes(SubscriptionMode::Static).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_crosses_nodes_in_sharded_dynamic_mode() {
    every_operation_crosses_nodes(SubscriptionMode::Dynamic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_crosses_nodes_in_sharded_dynamic_private_mode() {
    every_operation_crosses_nodes(SubscriptionMode::DynamicPrivate).await;
}

/// Shard connections subscribed to the channel of `room` of namespace `/`.
fn room_subscribers(cluster: &RedisCluster, room: &str) -> u64 {
    cluster
        .shard_subscribers(&format!("socket.io#/#{room}#"))
        .unwrap()
}

/// Two servers in `mode`: every request kind, and in the dynamic modes the room channels
/// each node subscribes to.
async fn every_operation_crosses_nodes(mode: SubscriptionMode) {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let config = sharded_config(mode);
    let (a, ctr_a) = node_with(&url, config.clone()).await;
    let (b, ctr_b) = node_with(&url, config).await;
    let mut a1 = client(&a, &["r1"]).await;
    let mut b1 = client(&b, &["r1"]).await;
    let mut b2 = client(&b, &["r2"]).await;

    // The test server joins rooms after the CONNECT: compare now.
    ctr_a.sync_rooms("/").await;
    ctr_b.sync_rooms("/").await;

    // Both nodes sit on the main channel, at its slot's owner only; nothing is classic.
    assert_eq!(cluster.shard_subscribers("socket.io#/#").unwrap(), 2);
    assert_eq!(ctr_a.server_count("/").await.unwrap(), 2);
    // Room channels (and each socket's own) only where members are held, in dynamic modes.
    let dynamic = mode != SubscriptionMode::Static;
    let held = |n: u64| if dynamic { n } else { 0 };
    assert_eq!(room_subscribers(&cluster, "r1"), held(2));
    assert_eq!(room_subscribers(&cluster, "r2"), held(1));
    assert_eq!(room_subscribers(&cluster, &b1.sid), held(1));

    // Broadcasts: all, room, except, binary.
    a.emit("all", &1).await.unwrap();
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(c.expect("all").await.args, vec![json!(1)]);
    }
    a.to("r1").emit("room", &"x").await.unwrap();
    b1.expect("room").await;
    a1.expect("room").await;
    a.except("r2").emit("except", &"y").await.unwrap();
    b1.expect("except").await;
    a1.expect("except").await;
    a.emit("bin", &Bytes::from_static(&[1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        b1.expect("bin").await.bins,
        vec![Bytes::from_static(&[1, 2, 3])]
    );
    // b2 was in neither r1 nor outside r2: `bin` is the first thing after `all` it sees.
    b2.expect("bin").await;
    a1.expect("bin").await;

    // fetchSockets.
    assert_eq!(fetch_all(&a).await.len(), 3);
    let mut in_r1: Vec<String> = a
        .to("r1")
        .fetch_sockets()
        .await
        .unwrap()
        .iter()
        .map(|s| s.data().id.to_string())
        .collect();
    in_r1.sort();
    let mut want = vec![a1.sid.clone(), b1.sid.clone()];
    want.sort();
    assert_eq!(in_r1, want);

    // To one socket of the other node by its id (its own channel in dynamic modes).
    a.to(b1.sid.clone()).emit("to-sid", &7).await.unwrap();
    assert_eq!(b1.expect("to-sid").await.args, vec![json!(7)]);

    // socketsJoin / socketsLeave, and a broadcast right after the join (static: in order on
    // the main channel; dynamic: the join fence keeps it on the main channel).
    a.to("r2").join("r9").await.unwrap();
    a.to("r9").emit("in-r9", &()).await.unwrap();
    b2.expect("in-r9").await;
    let fenced = ctr_a.metrics().join_fence_broadcasts;
    assert_eq!(fenced, held(1), "broadcasts moved to main by the fence");
    if dynamic {
        eventually("b subscribes r9 after the remote join", async || {
            room_subscribers(&cluster, "r9") == 1
        })
        .await;
    }
    a.to("r2").leave("r9").await.unwrap();
    wait_room_size(&b, "r9", 0, "b2 left r9").await;
    eventually("b unsubscribes r9 after the remote leave", async || {
        room_subscribers(&cluster, "r9") == 0
    })
    .await;

    // A remote socket's own operations.
    let remote = fetch_one(&a, &b1.sid).await;
    remote.emit("direct", &"hi").await.unwrap();
    assert_eq!(b1.expect("direct").await.args, vec![json!("hi")]);

    // Broadcast with acks: local and remote acks.
    common::acks_of_r1_from(&a, &mut a1, &mut b1, Duration::from_secs(2)).await;

    // serverSideEmit with acks.
    common::server_side_emit_with_ack(&ctr_a, &ctr_b).await;

    // disconnectSockets.
    a.to("r2").disconnect().await.unwrap();
    b2.expect_disconnect().await;

    // allRooms is not part of the sharded wire: refused, not sent.
    assert!(matches!(
        ctr_a.all_rooms("/").await,
        Err(AdapterError::Unsupported(_))
    ));
    let m = ctr_a.metrics();
    assert_eq!(m.request_timeouts, 0, "{m:?}");
    assert_eq!(m.decode_errors + ctr_b.metrics().decode_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_members_receives_none_of_a_rooms_broadcasts_dynamic() {
    a_node_without_members_receives_nothing(SubscriptionMode::Dynamic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_members_receives_none_of_a_rooms_broadcasts_dynamic_private() {
    a_node_without_members_receives_nothing(SubscriptionMode::DynamicPrivate).await;
}

/// Node `a` holds a member of `quiet`, `c` none; `b` broadcasts to `quiet`: the member gets
/// every message and `c` receives not one message from Redis meanwhile.
async fn a_node_without_members_receives_nothing(mode: SubscriptionMode) {
    const MESSAGES: u32 = 50;
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let (a, ctr_a) = node_with(&url, sharded_config(mode)).await;
    let (b, _ctr_b) = node_with(&url, sharded_config(mode)).await;
    let (c, ctr_c) = node_with(&url, sharded_config(mode)).await;
    let mut member = client(&a, &["quiet"]).await;
    let _bystander = client(&c, &["elsewhere"]).await;
    ctr_a.sync_rooms("/").await;
    ctr_c.sync_rooms("/").await;
    assert_eq!(room_subscribers(&cluster, "quiet"), 1);

    let before = ctr_c.metrics().received;
    for i in 0..MESSAGES {
        b.to("quiet").emit("q", &i).await.unwrap();
    }
    for i in 0..MESSAGES {
        assert_eq!(member.expect("q").await.args, vec![json!(i)]);
    }
    let after = ctr_c.metrics().received;
    assert_eq!(
        after - before,
        0,
        "a node holding no member of the room received its broadcasts"
    );
}

/// A server whose connect middleware joins the rooms of the auth `{"rooms": [...]}` and the
/// socket's own id, and waits for `sync_rooms_with` before the CONNECT, and whose sockets
/// release their rooms' channels when they disconnect, as the gateway does.
async fn pinning_node(url: &str, mode: SubscriptionMode) -> (Io, RedisAdapterCtr) {
    pinning_node_with(url, sharded_config(mode)).await
}

async fn pinning_node_with(url: &str, config: RedisAdapterConfig) -> (Io, RedisAdapterCtr) {
    let ctr = RedisAdapterCtr::connect(url, config).await.unwrap();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<Adapter>(ctr.clone())
        .build_svc();
    let pin = ctr.clone();
    let middleware = move |s: SocketRef<Adapter>, Data(auth): Data<Json>| {
        let ctr = pin.clone();
        async move {
            let mut rooms: Vec<String> = auth["rooms"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            rooms.push(s.id.to_string());
            s.join(rooms.clone());
            ctr.sync_rooms_with("/", rooms).await;
            Ok::<(), Infallible>(())
        }
    };
    let release = ctr.clone();
    let on_connect = move |s: SocketRef<Adapter>| {
        let ctr = release.clone();
        async move {
            s.on_disconnect(async move |s: SocketRef<Adapter>| {
                let rooms = s.rooms().into_iter().map(|r| r.to_string());
                ctr.release_rooms("/", &s.id.to_string(), rooms).await;
            });
        }
    };
    io.ns("/", on_connect.with(middleware)).await.unwrap();
    (io, ctr)
}

/// A socket's own channel and the channels of rooms only it held are unsubscribed when it
/// disconnects (no periodic comparison runs meanwhile); a room another socket holds is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_releases_the_channels_only_its_socket_held() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let config = RedisAdapterConfig {
        room_sync_interval: Duration::from_secs(3600),
        ..sharded_config(SubscriptionMode::Dynamic)
    };
    let (a, _ctr_a) = pinning_node_with(&url, config).await;
    let leaving = client_with_auth(&a, json!({ "rooms": ["room:solo", "room:shared"] })).await;
    let staying = client_with_auth(&a, json!({ "rooms": ["room:shared"] })).await;
    for channel in ["room:solo", "room:shared", &leaving.sid, &staying.sid] {
        assert_eq!(room_subscribers(&cluster, channel), 1, "{channel}");
    }
    a.get_socket(leaving.sid.parse().unwrap())
        .unwrap()
        .disconnect()
        .unwrap();
    eventually("the leaving socket's channels are released", async || {
        room_subscribers(&cluster, "room:solo") == 0
            && room_subscribers(&cluster, &leaving.sid) == 0
    })
    .await;
    assert_eq!(room_subscribers(&cluster, "room:shared"), 1);
    assert_eq!(room_subscribers(&cluster, &staying.sid), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_are_live_at_their_return_in_sharded_dynamic_mode() {
    joins_are_live_at_their_return(SubscriptionMode::Dynamic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_are_live_at_their_return_in_sharded_dynamic_private_mode() {
    joins_are_live_at_their_return(SubscriptionMode::DynamicPrivate).await;
}

/// Each round, at the instant each of these returns, the other node publishes to what it
/// made live, on a fresh room each time (so a fresh channel, often on another primary):
/// a CONNECT (the socket's room and its own id), a local `socketsJoin` on the socket's node,
/// and a remote `socketsJoin` by the publishing node followed at once by its broadcast (the
/// join fence). Nothing may be lost.
async fn joins_are_live_at_their_return(mode: SubscriptionMode) {
    const ROUNDS: usize = 60;
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let (a, ctr_a) = pinning_node(&url, mode).await;
    let (b, _ctr_b) = node_with(&url, sharded_config(mode)).await;
    // Meanwhile sockets connect to `a` and leave, and `a` compares every room it holds with its
    // subscriptions as often as it can: a connecting socket's pinned channels must survive that.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (a, ctr_a, stop) = (a.clone(), ctr_a.clone(), stop.clone());
        tokio::spawn(async move {
            for k in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let room = format!("room:churn-{}", k % 5);
                let c = client_with_auth(&a, json!({ "rooms": [room] })).await;
                if let Some(s) = a.get_socket(c.sid.parse().unwrap()) {
                    let _ = s.disconnect();
                }
                ctr_a.sync_rooms("/").await;
            }
        })
    };
    let mut lost = Vec::new();
    for i in 0..ROUNDS {
        let room = format!("room:connect-{i}");
        let mut c = client_with_auth(&a, json!({ "rooms": [room] })).await;
        b.to(room.clone()).emit("at-connect", &i).await.unwrap();
        b.to(c.sid.clone()).emit("to-sid", &i).await.unwrap();

        let local = format!("room:local-{i}");
        a.to(c.sid.clone()).join(local.clone()).await.unwrap();
        b.to(local).emit("local-join", &i).await.unwrap();

        let remote = format!("room:remote-{i}");
        b.to(c.sid.clone()).join(remote.clone()).await.unwrap();
        b.to(remote).emit("remote-join", &i).await.unwrap();

        // Different channels: no order between them.
        let wanted = ["at-connect", "to-sid", "local-join", "remote-join"];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < wanted.len() {
            match tokio::time::timeout_at(deadline, c.events.recv()).await {
                Ok(Some(Some(e))) if e.args == vec![json!(i)] => got.push(e.name),
                Ok(Some(Some(e))) => lost.push(format!("round {i}: unexpected {e:?}")),
                _ => break,
            }
        }
        for event in wanted.into_iter().filter(|e| !got.iter().any(|g| g == e)) {
            lost.push(format!("round {i}: {event}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    churn.await.unwrap();
    assert!(lost.is_empty(), "{} lost: {lost:?}", lost.len());
}

/// A message to one socket and then its disconnection, both from another node (an admin's
/// kick), arrive in that order in the dynamic modes: the broadcast to the socket's own room
/// goes on the main channel with the request, not on the room's channel, which another
/// primary may deliver later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_socket_arrives_before_its_disconnection() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    for mode in [SubscriptionMode::Dynamic, SubscriptionMode::DynamicPrivate] {
        let config = sharded_config(mode);
        let (a, _ctr_a) = node_with(&url, config.clone()).await;
        let (b, ctr_b) = node_with(&url, config).await;
        for round in 0..20 {
            let mut victim = client(&b, &[]).await;
            // Its own channel subscribed, as the gateway does before a socket's CONNECT ack.
            ctr_b.sync_rooms("/").await;
            a.to(victim.sid.clone())
                .emit("kicked", &round)
                .await
                .unwrap();
            a.to(victim.sid.clone()).disconnect().await.unwrap();
            let event = victim.expect("kicked").await;
            assert_eq!(event.args, vec![json!(round)], "{mode:?}");
            victim.expect_disconnect().await;
        }
    }
}

/// A receiving node counts the remote joins whose subscription it confirmed after the join
/// fence ended: with a fence of one nanosecond, any subscription is late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_join_subscribed_after_the_fence_is_counted_late() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let mode = SubscriptionMode::Dynamic;
    let (a, ctr_a) = node_with(&url, sharded_config(mode)).await;
    let tiny_fence = RedisAdapterConfig {
        join_fence: Duration::from_nanos(1),
        ..sharded_config(mode)
    };
    let (b, ctr_b) = node_with(&url, tiny_fence).await;
    let b1 = client(&b, &["here"]).await;
    ctr_b.sync_rooms("/").await;
    a.to(b1.sid.clone()).join("late-room").await.unwrap();
    eventually("b subscribes late-room", async || {
        room_subscribers(&cluster, "late-room") == 1
    })
    .await;
    eventually("b counts the late subscription", async || {
        ctr_b.metrics().join_fence_late == 1
    })
    .await;
    // The publisher's own fence (5 s) is not the receiver's business.
    assert_eq!(ctr_a.metrics().join_fence_late, 0);
    // A join to a room b already has a channel for is not measured: after it, on the same
    // channel, a join to a new room is, and only that one.
    a.to(b1.sid.clone()).join("here").await.unwrap();
    a.to(b1.sid.clone()).join("new-room").await.unwrap();
    eventually("b subscribes new-room", async || {
        room_subscribers(&cluster, "new-room") == 1
    })
    .await;
    eventually("b counts the second late subscription", async || {
        ctr_b.metrics().join_fence_late >= 2
    })
    .await;
    assert_eq!(ctr_b.metrics().join_fence_late, 2);
}
