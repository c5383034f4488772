//! Several socketioxide servers in one process over one real redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use adapter_redis::RedisAdapterCtr;
use bytes::Bytes;
use common::{
    client, eventually, fetch_all, fetch_one, node, node_with, raw_client, server, wait_room_size,
};
use fred::interfaces::{ClientLike, PubsubInterface};
use serde_json::json;
use testkit::RedisServer;

async fn numsub(url: &str, channel: &str) -> i64 {
    let client = raw_client(url).await;
    let v: Vec<fred::types::Value> = client.pubsub_numsub(channel).await.unwrap();
    let _ = client.quit().await;
    v.get(1).and_then(|v| v.as_i64()).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_other_nodes_with_rooms_except_local_volatile_and_binary() {
    let redis = RedisServer::start().unwrap();
    let (a, _ctr_a) = node(&redis.url()).await;
    let (b, ctr_b) = node(&redis.url()).await;
    let mut a1 = client(&a, &["r1"]).await;
    let mut b1 = client(&b, &["r1"]).await;
    let mut b2 = client(&b, &["r2"]).await;
    ctr_b.sync_rooms("/").await;

    a.emit("all", &1).await.unwrap();
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(c.expect("all").await.args, vec![json!(1)]);
    }

    a.to("r1").emit("room", &"x").await.unwrap();
    a.except("r2").emit("except", &"y").await.unwrap();
    a.local().emit("local-only", &()).await.unwrap();
    a.volatile().emit("volatile", &1.5).await.unwrap();
    a.emit("bin", &Bytes::from_static(&[1, 2, 3]))
        .await
        .unwrap();
    a.emit("end", &()).await.unwrap();

    // Volatile packets go through engineioxide's volatile slot, which socketioxide's dummy
    // sockets do not read; the Node interop test checks them with real clients.
    b1.expect("room").await;
    b1.expect("except").await;
    let bin = b1.expect("bin").await;
    assert_eq!(bin.bins, vec![Bytes::from_static(&[1, 2, 3])]);
    b1.expect("end").await;
    // b2 is neither in r1 nor outside r2: the first thing it sees is `bin`.
    b2.expect("bin").await;
    b2.expect("end").await;
    a1.expect("room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_subscribe_only_to_rooms_they_hold() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let (a, ctr_a) = node(&url).await;
    let (b, ctr_b) = node(&url).await;
    let _a1 = client(&a, &["only-a"]).await;
    let mut b1 = client(&b, &["shared"]).await;
    let _a2 = client(&a, &["shared"]).await;
    ctr_a.sync_rooms("/").await;
    ctr_b.sync_rooms("/").await;
    assert_eq!(numsub(&url, "socket.io#/#only-a#").await, 1);
    assert_eq!(numsub(&url, "socket.io#/#shared#").await, 2);
    assert_eq!(numsub(&url, "socket.io#/#").await, 2);

    let received_before = ctr_b.metrics().received;
    for _ in 0..50 {
        a.to("only-a").emit("not-for-b", &()).await.unwrap();
    }
    a.to("shared").emit("for-b", &()).await.unwrap();
    b1.expect("for-b").await;
    assert!(
        ctr_b.metrics().received - received_before < 5,
        "node b received traffic of a room it does not hold: {:?}",
        ctr_b.metrics()
    );

    // Leaving drops the subscription.
    a.to("only-a").leave("only-a").await.unwrap();
    eventually("unsubscribed from only-a", async || {
        numsub(&url, "socket.io#/#only-a#").await == 0
    })
    .await;

    // Closing a server unsubscribes its namespace channels.
    let (c, _ctr_c) = node(&url).await;
    assert_eq!(numsub(&url, "socket.io-request#/#").await, 3);
    tokio::time::timeout(common::WAIT, c.close()).await.unwrap();
    eventually("node c left the request channel", async || {
        numsub(&url, "socket.io-request#/#").await == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_work_across_nodes() {
    let redis = RedisServer::start().unwrap();
    let (a, ctr_a) = node(&redis.url()).await;
    let (b, ctr_b) = node(&redis.url()).await;
    let mut a1 = client(&a, &["r1"]).await;
    let mut b1 = client(&b, &["r1"]).await;
    let mut b2 = client(&b, &["r2"]).await;
    ctr_b.sync_rooms("/").await;

    assert_eq!(fetch_all(&a).await.len(), 3);
    assert_eq!(ctr_a.server_count("/").await.unwrap(), 2);
    let in_r1 = a.to("r1").fetch_sockets().await.unwrap();
    let mut ids: Vec<String> = in_r1.iter().map(|s| s.data().id.to_string()).collect();
    ids.sort();
    let mut want = vec![a1.sid.clone(), b1.sid.clone()];
    want.sort();
    assert_eq!(ids, want);

    let mut rooms: Vec<String> = a
        .rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.to_string())
        .collect();
    rooms.sort();
    assert_eq!(rooms, ["r1", "r2"]);

    // socketsJoin / socketsLeave across nodes.
    a.to("r2").join("r9").await.unwrap();
    wait_room_size(&b, "r9", 1, "b2 joined r9").await;
    ctr_b.sync_rooms("/").await;
    a.to("r9").emit("in-r9", &()).await.unwrap();
    b2.expect("in-r9").await;
    a.to("r2").leave("r9").await.unwrap();
    wait_room_size(&b, "r9", 0, "b2 left r9").await;

    // RemoteSocket operations on a socket of the other node.
    let remote = fetch_one(&a, &b1.sid).await;
    remote.emit("direct", &"hi").await.unwrap();
    assert_eq!(b1.expect("direct").await.args, vec![json!("hi")]);
    remote.join("solo").await.unwrap();
    wait_room_size(&b, "solo", 1, "b1 joined solo").await;

    // Broadcast with acks: local and remote acks, counted.
    common::acks_of_r1_from(&a, &mut a1, &mut b1, Duration::from_secs(2)).await;

    // disconnectSockets across nodes.
    a.to("r2").disconnect().await.unwrap();
    b2.expect_disconnect().await;
    assert_eq!(ctr_a.metrics().request_timeouts, 0, "{:?}", ctr_a.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_emit_with_ack_between_rust_nodes() {
    let redis = RedisServer::start().unwrap();
    let (_a, ctr_a) = node(&redis.url()).await;
    let (_b, ctr_b) = node(&redis.url()).await;
    common::server_side_emit_with_ack(&ctr_a, &ctr_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_does_not_stall_requests_past_the_timeout() {
    let redis = RedisServer::start().unwrap();
    let (a, ctr_a) = node(&redis.url()).await;
    let (b, _ctr_b) = node(&redis.url()).await;
    let _b1 = client(&b, &["r1"]).await;
    // A subscriber that never answers: counted by NUMSUB like a dead node.
    let silent =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis.url()).unwrap())
            .build_subscriber_client()
            .unwrap();
    silent.init().await.unwrap();
    silent.subscribe("socket.io-request#/#").await.unwrap();
    let url = redis.url();
    eventually("the silent subscriber is counted", async || {
        numsub(&url, "socket.io-request#/#").await == 3
    })
    .await;

    let sockets = fetch_all(&a).await;
    assert_eq!(sockets.len(), 1, "the live peer's answer is kept");
    assert_eq!(ctr_a.metrics().request_timeouts, 1);

    let ids = ctr_a.all_socket_ids("/").await.unwrap();
    assert_eq!(ids.value.len(), 1);
    let missing = ids.missing.expect("the silent subscriber is reported");
    assert_eq!(
        (missing.operation, missing.expected, missing.received),
        ("fetch_sockets", 2, 1)
    );
    // It waited for the silent subscriber until the request timeout; that it stops right
    // there, not later, is pinned under tokio's paused clock by the adapter's unit tests
    // (`a_silent_peer_stalls_the_collection_exactly_until_the_deadline`).
    assert!(
        missing.waited >= common::test_config().request_timeout,
        "{missing}"
    );
    let rooms = ctr_a.all_rooms("/").await.unwrap();
    assert_eq!(rooms.value, ["r1"]);
    assert!(rooms.missing.is_some());

    let gathered = ctr_a
        .server_side_emit_with_ack("/", "nobody-listens", vec![])
        .await
        .unwrap();
    let missing = gathered.missing.expect("answers are missing");
    assert_eq!((missing.expected, missing.received), (2, 0));
    assert_eq!(missing.operation, "server_side_emit_with_ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_behaves_as_a_local_adapter() {
    let ctr = RedisAdapterCtr::local();
    let io = server(ctr.clone()).await;
    let mut c1 = client(&io, &["r1"]).await;
    let mut c2 = client(&io, &["r2"]).await;
    io.to("r1").emit("room", &()).await.unwrap();
    io.emit("all", &()).await.unwrap();
    c1.expect("room").await;
    c1.expect("all").await;
    c2.expect("all").await;
    assert_eq!(ctr.server_count("/").await.unwrap(), 1);
    assert_eq!(fetch_all(&io).await.len(), 2);
    let acks = io
        .timeout(Duration::from_secs(1))
        .emit_with_ack::<_, String>("ask", &())
        .await
        .unwrap();
    assert_eq!(
        futures_util::StreamExt::collect::<Vec<_>>(acks).await.len(),
        2
    );
    assert!(!ctr.is_connected());
    assert!(ctr.is_local());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_not_fatal() {
    let redis = RedisServer::start().unwrap();
    let (a, ctr_a) = node(&redis.url()).await;
    let (b, _ctr_b) = node(&redis.url()).await;
    let mut a1 = client(&a, &[]).await;
    let raw = raw_client(&redis.url()).await;
    for payload in [
        &b"\x93\xc1"[..],
        b"{not json",
        b"\xdd\xff\xff\xff\xff",
        b"{\"type\":5}",
        b"",
    ] {
        let _: i64 = raw.publish("socket.io#/#", payload.to_vec()).await.unwrap();
        let _: i64 = raw
            .publish("socket.io-request#/#", payload.to_vec())
            .await
            .unwrap();
        let _: i64 = raw
            .publish("socket.io-response#/#", payload.to_vec())
            .await
            .unwrap();
    }
    // Valid shapes with hostile values: an ack timeout that would overflow a deadline, a
    // namespace that is not ours, room lists of odd types.
    let hostile =
        adapter_redis::wire::Request::BroadcastWithAck(adapter_redis::wire::AckBroadcast {
            uid: Some("hostile".into()),
            request_id: "h1".into(),
            data: adapter_redis::msgpack::Wire::Array(vec![adapter_redis::msgpack::Wire::Str(
                "x".into(),
            )]),
            nsp: "/".into(),
            target: adapter_redis::wire::Target::default(),
            flags: adapter_redis::wire::Flags {
                volatile: false,
                timeout_ms: Some(u64::MAX),
            },
        });
    let _: i64 = raw
        .publish("socket.io-request#/#", hostile.encode())
        .await
        .unwrap();
    let odd = br#"{"uid":"h","type":2,"opts":{"rooms":[null,{},[1]],"except":"x"},"rooms":[true]}"#;
    let _: i64 = raw
        .publish("socket.io-request#/#", odd.to_vec())
        .await
        .unwrap();
    // Random bytes and mutated valid messages on every kind of channel.
    let valid = [
        adapter_redis::wire::encode_broadcast(
            "peer",
            &adapter_redis::msgpack::Wire::Array(vec![adapter_redis::msgpack::Wire::Str(
                "ev".into(),
            )]),
            "/",
            &adapter_redis::wire::Target::default(),
            adapter_redis::wire::Flags::default(),
        ),
        hostile.encode(),
        br#"{"uid":"p","requestId":"q","type":5,"opts":{"rooms":["r1"],"except":[]}}"#.to_vec(),
        br#"{"type":8,"requestId":"q","clientCount":3}"#.to_vec(),
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..400 {
        let mut payload = valid[i % valid.len()].clone();
        if i % 2 == 0 {
            let at = (next() as usize) % payload.len();
            payload[at] = next() as u8;
            payload.truncate(payload.len() - (next() as usize) % 3);
        } else {
            payload = (0..(next() % 64)).map(|_| next() as u8).collect();
        }
        let channel = [
            "socket.io#/#",
            "socket.io#/#r1#",
            "socket.io-request#/#",
            "socket.io-response#/#",
        ][i % 4];
        let _: i64 = raw.publish(channel, payload).await.unwrap();
    }
    b.emit("after", &()).await.unwrap();
    a1.expect("x").await;
    // Mutated messages may still be valid broadcasts (event `ev` or others): skip them.
    while a1.next().await.name != "after" {}
    assert!(ctr_a.metrics().decode_errors >= 10, "{:?}", ctr_a.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_missing_on_another_node_end_at_the_callers_timeout() {
    let redis = RedisServer::start().unwrap();
    let (a, _ctr_a) = node(&redis.url()).await;
    let (b, ctr_b) = node(&redis.url()).await;
    let mut a1 = client(&a, &["r1"]).await;
    let mut b_stuck = client(&b, &["r1", "mute"]).await;
    ctr_b.sync_rooms("/").await;

    let acks = a
        .to("r1")
        .timeout(Duration::from_millis(300))
        .emit_with_ack::<_, String>("ask", &())
        .await
        .unwrap();
    // The stream ends (the missing ack as a timeout) at the ack timeout plus the request
    // timeout, never the 5 s Node default: pinned under tokio's paused clock by the
    // adapter's unit tests (`acks_missing_at_the_deadline_end_the_stream_there_as_timeouts`).
    let results = futures_util::StreamExt::collect::<Vec<_>>(acks).await;
    let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
    let timed_out = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(socketioxide::AckError::Timeout)))
        .count();
    assert_eq!((ok, timed_out), (1, 1), "{results:?}");
    a1.expect("ask").await;
    b_stuck.expect("ask").await;

    // A remote socket disconnected through RemoteSocket::disconnect.
    let remote = fetch_one(&a, &b_stuck.sid).await;
    remote.disconnect().await.unwrap();
    b_stuck.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_joins_are_subscribed_at_once_and_checks_unsubscribe_left_rooms() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    // The periodic comparison is off: only announced joins and explicit checks subscribe.
    let config = adapter_redis::RedisAdapterConfig {
        room_sync_interval: Duration::from_secs(3600),
        ..common::test_config()
    };
    let (b, ctr_b) = node_with(&url, config).await;
    let (a, _ctr_a) = node(&url).await;
    let mut b1 = client(&b, &[]).await;
    let socket = b.get_socket(b1.sid.parse().unwrap()).unwrap();

    socket.join("announced");
    ctr_b.sync_rooms_with("/", ["announced".to_owned()]).await;
    assert_eq!(numsub(&url, "socket.io#/#announced#").await, 1);
    a.to("announced").emit("hello", &1).await.unwrap();
    assert_eq!(b1.expect("hello").await.args, vec![json!(1)]);

    socket.join("silent");
    assert_eq!(
        numsub(&url, "socket.io#/#silent#").await,
        0,
        "not announced yet"
    );
    socket.leave("announced");
    ctr_b.sync_rooms("/").await;
    assert_eq!(numsub(&url, "socket.io#/#silent#").await, 1);
    assert_eq!(numsub(&url, "socket.io#/#announced#").await, 0);
}
