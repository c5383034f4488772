//! A Node.js socket.io server on `createShardedAdapter` (@socket.io/redis-adapter 8.3.0) and a
//! Rust server in `AdapterMode::Sharded`, both in the same `subscriptionMode` (each of the
//! three), on a real three-primary Redis Cluster, with socket.io-client sockets on each, every
//! operation both ways (`docs/sharded-adapter.md`, section 6).
//!
//! Needs `node` and `npm ci --prefix adapter-redis/tests/node`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use adapter_redis::sharded_wire::SubscriptionMode;
use adapter_redis::{AdapterMode, RedisAdapterConfig, RedisAdapterCtr};
use common::node_peer::NodePeer;
use common::{http_server, interop};
use serde_json::json;
use testkit::redis_cluster::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_rust_servers_share_a_cluster_in_sharded_static_mode() {
    node_and_rust_servers_share_a_cluster(SubscriptionMode::Static).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_rust_servers_share_a_cluster_in_sharded_dynamic_mode() {
    node_and_rust_servers_share_a_cluster(SubscriptionMode::Dynamic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_rust_servers_share_a_cluster_in_sharded_dynamic_private_mode() {
    node_and_rust_servers_share_a_cluster(SubscriptionMode::DynamicPrivate).await;
}

async fn node_and_rust_servers_share_a_cluster(mode: SubscriptionMode) {
    let cluster = RedisCluster::start().unwrap();
    let config = RedisAdapterConfig {
        mode: AdapterMode::Sharded(mode),
        ..common::test_config()
    };
    let ctr = RedisAdapterCtr::connect(&cluster.url(), config)
        .await
        .unwrap();
    let (io, rust_port) = http_server(ctr.clone()).await;
    let mut seen = interop::answer_server_side_events(&ctr);
    let nodes: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut node = NodePeer::start(
        "sharded-peer.js",
        &[mode.to_string(), nodes.join(","), rust_port.to_string()],
    )
    .await;
    // The Rust server's sockets joined their rooms after their CONNECT: compare now (dynamic
    // modes: their rooms' and their own channels).
    ctr.sync_rooms("/").await;
    // Static: one channel, so the order of publishing. Dynamic: room broadcasts travel on
    // their rooms' channels, with no order against the main channel's.
    let ordered = mode == SubscriptionMode::Static;
    let (cn, cr, cr2) = (node.sid("cn"), node.sid("cr"), node.sid("cr2"));
    assert_eq!(node.cmd("server_count", json!({})).await, json!(2));
    assert_eq!(ctr.server_count("/").await.unwrap(), 2);
    assert_eq!(cluster.shard_subscribers("socket.io#/#").unwrap(), 2);

    // Rust -> Node: all, room, except, binary; and the reverse.
    interop::broadcasts_from_rust(&io, &mut node, ordered).await;
    interop::broadcasts_from_node(&mut node, ordered).await;
    interop::drain(&io, &mut node).await;

    // fetchSockets both ways, also of one room.
    interop::fetch_sockets_both_ways(&io, &mut node, [&cn, &cr, &cr2]).await;
    let mut in_r1 = vec![cn.clone(), cr.clone()];
    in_r1.sort();
    assert_eq!(
        node.cmd("fetch_room", json!({"room": "r1"})).await,
        json!(in_r1)
    );

    // A single socket both ways: the Node socket through its derived Sid, the Rust socket by
    // its id as a room.
    interop::emit_to_one_socket_both_ways(&io, &mut node, "emit_to_socket").await;

    interop::broadcast_acks_both_ways(&io, &mut node, Duration::from_secs(3)).await;

    // serverSideEmit both ways, with acks.
    interop::server_side_acks_both_ways(&ctr, &mut node).await;
    node.cmd("sse", json!({})).await;
    let (args, _) = interop::next_server_side_event(&mut seen, "from-node-sse").await;
    assert_eq!(args, vec![json!(7)]);

    interop::join_and_leave_both_ways(&io, &mut node).await;

    // Forget what cr2 got so far.
    io.to("r2").emit("drain-r2", &()).await.unwrap();
    while node.next_for("cr2").await["name"] != json!("drain-r2") {}

    // A join then, at once, a broadcast to the room joined, from Node: static keeps the order;
    // in the dynamic modes Node publishes the broadcast on the room's channel, which the Rust
    // node subscribes only once it applied the join (Node's own hazard, section 3): measured
    // and reported, not asserted.
    let mut delivered = 0;
    for n in 0..20 {
        interop::node_joins_then_emits(&mut node, n).await;
        if mode == SubscriptionMode::Static {
            assert_eq!(node.expect("cr2", "after-join").await, json!([n]));
            delivered += 1;
        } else if let Ok(msg) =
            tokio::time::timeout(Duration::from_millis(500), node.next_for("cr2")).await
        {
            assert_eq!(msg["name"], json!("after-join"), "{msg}");
            delivered += 1;
        }
    }
    eprintln!("Node `{mode}` publisher, join then emit: {delivered} of 20 reached the Rust socket");

    // The same from the Rust node: the join fence keeps the order in every mode.
    for n in 0..20 {
        let room = format!("rust-fresh{n}");
        io.to("r1").join(room.clone()).await.unwrap();
        io.to(room).emit("rust-after-join", &n).await.unwrap();
        loop {
            let msg = node.next_for("cn").await;
            if msg["name"] == json!("rust-after-join") {
                assert_eq!(msg["args"], json!([n]), "{msg}");
                break;
            }
        }
    }
    let fenced = ctr.metrics().join_fence_broadcasts;
    assert_eq!(fenced > 0, mode != SubscriptionMode::Static, "{fenced}");

    interop::disconnect_both_ways(&io, &ctr, &mut node).await;
}
