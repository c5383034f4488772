//! A Node.js socket.io server (@socket.io/redis-adapter 8.3.0) and a Rust server in one
//! cluster over a real redis-server, with socket.io-client sockets on each.
//!
//! Needs `node` and `npm ci --prefix adapter-redis/tests/node`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use adapter_redis::ClassicSubscriptions::{self, Pattern, PerRoom};
use adapter_redis::{RedisAdapterConfig, RedisAdapterCtr};
use common::node_peer::NodePeer;
use common::{Io, http_server, interop, test_config, wait_room_size};
use serde_json::json;
use testkit::RedisServer;

const WAIT: Duration = common::node_peer::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_rust_servers_share_a_cluster() {
    node_and_rust_servers_share_a_cluster_with(PerRoom).await;
}

/// The same with the Rust node on one pattern over every room channel
/// (`ADAPTER_SUBSCRIPTIONS=static` in classic mode), as Node's classic adapter subscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_rust_servers_share_a_cluster_with_pattern_subscriptions() {
    node_and_rust_servers_share_a_cluster_with(Pattern).await;
}

/// A Rust server in classic mode under `policy` on `redis`, listening on the port returned.
async fn rust_node(
    redis: &RedisServer,
    policy: ClassicSubscriptions,
) -> (RedisAdapterCtr, Io, u16) {
    let config = RedisAdapterConfig {
        classic_subscriptions: policy,
        ..test_config()
    };
    let ctr = RedisAdapterCtr::connect(&redis.url(), config)
        .await
        .unwrap();
    let (io, rust_port) = http_server(ctr.clone()).await;
    (ctr, io, rust_port)
}

/// The Node peer (`peer.js`) on `redis`, its clients `cr` and `cr2` on the Rust server at
/// `rust_port`.
async fn node_peer(redis: &RedisServer, rust_port: u16) -> NodePeer {
    NodePeer::start(
        "peer.js",
        &[redis.port().to_string(), rust_port.to_string()],
    )
    .await
}

async fn node_and_rust_servers_share_a_cluster_with(policy: ClassicSubscriptions) {
    let redis = RedisServer::start().unwrap();
    let (ctr, io, rust_port) = rust_node(&redis, policy).await;
    let mut seen = interop::answer_server_side_events(&ctr);
    let mut node = node_peer(&redis, rust_port).await;
    let (cn, cr, cr2) = (node.sid("cn"), node.sid("cr"), node.sid("cr2"));
    assert_eq!(cn.len(), 20, "Node socket ids are 20 characters");
    ctr.sync_rooms("/").await;
    assert_eq!(node.cmd("server_count", json!({})).await, json!(2));
    assert_eq!(ctr.server_count("/").await.unwrap(), 2);

    // Rust -> Node: all, room, except, binary, volatile; and the reverse.
    // (cr also got the Rust broadcasts; the Node -> Rust step skips them)
    interop::broadcasts_from_rust(&io, &mut node, true).await;
    interop::broadcasts_from_node(&mut node, true).await;
    for msg in [
        "from-node-all",
        "from-node-room",
        "from-node-except",
        "from-node-bin",
        "end",
    ] {
        node.expect("cn", msg).await;
    }

    // Volatile packets may be dropped by design when a transport is busy (on both stacks), so
    // each side sends one at a time, followed by a plain marker, until one arrives.
    // (a volatile packet and a plain one travel in different queues, so order is not kept)
    let mut delivered = false;
    for round in 0..10 {
        io.volatile()
            .emit("from-rust-volatile", &1.5)
            .await
            .unwrap();
        io.to(cn.clone()).emit("marker", &round).await.unwrap();
        loop {
            let msg = node.next_for("cn").await;
            if msg["name"] == json!("from-rust-volatile") {
                assert_eq!(msg["args"], json!([1.5]));
                delivered = true;
            } else if msg["name"] == json!("marker") && msg["args"] == json!([round]) {
                break;
            }
        }
        if delivered {
            break;
        }
    }
    assert!(
        delivered,
        "no volatile broadcast from Rust reached the Node client"
    );
    let mut delivered = false;
    for _ in 0..10 {
        node.cmd("emit_volatile", json!({})).await;
        node.cmd("emit_end", json!({})).await;
        loop {
            let msg = node.next_for("cr").await;
            if msg["name"] == json!("from-node-volatile") {
                assert_eq!(msg["args"], json!([1.5]));
                delivered = true;
            } else if msg["name"] == json!("end") {
                break;
            }
        }
        if delivered {
            break;
        }
    }
    assert!(
        delivered,
        "no volatile broadcast from Node reached the Rust-held client"
    );
    // Let late volatile packets land before the next checks, then forget all queued events.
    interop::drain(&io, &mut node).await;
    for client in ["cr", "cr2", "cn"] {
        node.per_client.remove(client);
    }

    // The emitter reaches Rust-held clients.
    node.cmd("emitter_room", json!({})).await;
    assert_eq!(node.expect("cr", "from-emitter").await, json!([42]));
    node.expect("cn", "from-emitter").await;

    interop::fetch_sockets_both_ways(&io, &mut node, [&cn, &cr, &cr2]).await;

    // Remote socket emit both ways (the Node socket through its derived Sid).
    interop::emit_to_one_socket_both_ways(&io, &mut node, "remote_emit").await;

    // allRooms both ways.
    let node_rooms = node.cmd("all_rooms", json!({})).await;
    for room in ["r1", "r2"] {
        assert!(
            node_rooms.as_array().unwrap().contains(&json!(room)),
            "{node_rooms}"
        );
    }
    let rust_rooms: Vec<String> = io
        .rooms()
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(
        rust_rooms.contains(&cn),
        "Node's socket-id room is listed: {rust_rooms:?}"
    );
    assert!(rust_rooms.contains(&"r1".to_owned()) && rust_rooms.contains(&"r2".to_owned()));

    interop::broadcast_acks_both_ways(&io, &mut node, Duration::from_secs(3)).await;

    // serverSideEmitWithAck both ways; the emitter's serverSideEmit.
    interop::server_side_acks_both_ways(&ctr, &mut node).await;
    node.cmd("emitter_sse", json!({})).await;
    let (args, from) = interop::next_server_side_event(&mut seen, "from-emitter-sse").await;
    assert_eq!((args, from.as_deref()), (vec![json!(7)], Some("emitter")));
    let rooms = ctr.all_rooms("/").await.unwrap();
    assert!(rooms.missing.is_none() && rooms.value.contains(&cn));

    interop::join_and_leave_both_ways(&io, &mut node).await;
    node.cmd("emitter_join", json!({"room": "r2", "rooms": ["r7"]}))
        .await;
    wait_room_size(&io, "r7", 1, "the emitter's join reached cr2").await;

    interop::disconnect_both_ways(&io, &ctr, &mut node).await;

    // Graceful close with real clients: the Rust client is disconnected and the Node server
    // stops counting the Rust node.
    tokio::time::timeout(WAIT, io.close()).await.unwrap();
    while node.next_for("cr").await["type"] != json!("disconnect") {}
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.cmd("server_count", json!({})).await != json!(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed Rust node is still counted"
        );
    }
}

/// A Node peer's `io.in(x).socketsJoin(room)` then, at once, `io.to(room).emit(...)`, 20 times
/// on fresh rooms, with the Rust node in classic mode under `policy`; returns how many reached
/// the Rust node's socket, and that node's counters.
async fn node_join_then_emit(
    policy: ClassicSubscriptions,
) -> (usize, adapter_redis::AdapterMetricsSnapshot) {
    let redis = RedisServer::start().unwrap();
    let (ctr, _io, rust_port) = rust_node(&redis, policy).await;
    let mut node = node_peer(&redis, rust_port).await;
    ctr.sync_rooms("/").await;
    let mut delivered = 0;
    for n in 0..20 {
        interop::node_joins_then_emits(&mut node, n).await;
        // The message travels behind the join on one Redis: once it is not there while a
        // later broadcast to cr2 is, it was lost.
        node.cmd("emit_all", json!({})).await;
        loop {
            let msg = node.next_for("cr2").await;
            match msg["name"].as_str() {
                Some("after-join") => {
                    assert_eq!(msg["args"], json!([n]), "{msg}");
                    delivered += 1;
                }
                Some("from-node-all") => break,
                _ => panic!("cr2 got {msg}"),
            }
        }
    }
    // A broadcast to a room no Rust socket holds (nobody joins it), then one to all behind it.
    node.cmd(
        "join_then_emit",
        json!({"room": "unheld", "target": "no-such-room", "n": -1}),
    )
    .await;
    node.cmd("emit_all", json!({})).await;
    let msg = node.next_for("cr2").await;
    assert_eq!(msg["name"], json!("from-node-all"), "{msg}");
    (delivered, ctr.metrics())
}

/// `ADAPTER_SUBSCRIPTIONS=static` in classic mode: the pattern over every room channel
/// receives the broadcast behind the join, every time; broadcasts to rooms the node does not
/// hold are counted and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pattern_subscriptions_a_node_peers_join_then_emit_always_arrives() {
    let (delivered, metrics) = node_join_then_emit(Pattern).await;
    assert_eq!(delivered, 20, "{metrics:?}");
    assert_eq!(
        metrics.subscriptions, 4,
        "three channels and one pattern: {metrics:?}"
    );
    assert_eq!(metrics.decode_errors + metrics.dropped, 0, "{metrics:?}");
    assert_eq!(metrics.unheld_room_messages, 1, "{metrics:?}");
}

/// Per-room subscriptions (the classic default): the Rust node can subscribe `room` only once
/// it read the join, and Node writes the join and the broadcast together (one tick, one
/// write), so Redis has handled the broadcast before the join even reaches the Rust node: the
/// broadcast is lost every time, the ordering hazard this policy accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_per_room_subscriptions_a_node_peers_join_then_emit_is_lost() {
    let (delivered, metrics) = node_join_then_emit(PerRoom).await;
    assert_eq!(delivered, 0, "{metrics:?}");
    assert_eq!(metrics.unheld_room_messages, 0, "{metrics:?}");
}
