//! A Node.js socket.io server on `createShardedAdapter` (@socket.io/redis-adapter 8.3.0,
//! `subscriptionMode: "static"`) and a Rust server in `AdapterMode::Sharded(Static)` on a real
//! three-primary Redis Cluster, with socket.io-client sockets on each, every operation both
//! ways (`docs/sharded-adapter.md`, section 6).
//!
//! Needs `node` and `npm ci --prefix adapter-redis/tests/node`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use adapter_redis::sharded_wire::SubscriptionMode;
use adapter_redis::{AdapterMode, RedisAdapterConfig, RedisAdapterCtr};
use bytes::Bytes;
use common::node_peer::NodePeer;
use common::{http_server, interop};
use serde_json::json;
use testkit::redis_cluster::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_rust_servers_share_a_cluster_in_sharded_static_mode() {
    let cluster = RedisCluster::start().unwrap();
    let config = RedisAdapterConfig {
        mode: AdapterMode::Sharded(SubscriptionMode::Static),
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
        &["static".to_owned(), nodes.join(","), rust_port.to_string()],
    )
    .await;
    let (cn, cr, cr2) = (node.sid("cn"), node.sid("cr"), node.sid("cr2"));
    assert_eq!(node.cmd("server_count", json!({})).await, json!(2));
    assert_eq!(ctr.server_count("/").await.unwrap(), 2);
    assert_eq!(cluster.shard_subscribers("socket.io#/#").unwrap(), 2);

    // Rust -> Node: all, room, except, binary.
    io.emit("from-rust-all", &(1, "two")).await.unwrap();
    io.to("r1").emit("from-rust-room", &"x").await.unwrap();
    io.except("r1").emit("from-rust-except", &()).await.unwrap();
    io.emit("from-rust-bin", &Bytes::from_static(&[1, 2, 3]))
        .await
        .unwrap();
    io.emit("end", &()).await.unwrap();
    assert_eq!(node.expect("cn", "from-rust-all").await, json!([1, "two"]));
    assert_eq!(node.expect("cn", "from-rust-room").await, json!(["x"]));
    assert_eq!(
        node.expect("cn", "from-rust-bin").await,
        json!([{"bin": [1, 2, 3]}])
    );
    node.expect("cn", "end").await;
    node.expect("cr2", "from-rust-all").await;
    node.expect("cr2", "from-rust-except").await;

    // Node -> Rust.
    node.cmd("emit_all", json!({})).await;
    node.cmd("emit_room", json!({})).await;
    node.cmd("emit_except", json!({})).await;
    node.cmd("emit_bin", json!({})).await;
    node.cmd("emit_end", json!({})).await;
    for client in ["cr", "cr2"] {
        while node.next_for(client).await["name"] != json!("from-node-all") {}
    }
    assert_eq!(node.expect("cr", "from-node-room").await, json!(["x"]));
    node.expect("cr", "from-node-except").await;
    assert_eq!(
        node.expect("cr", "from-node-bin").await,
        json!([{"bin": [1, 2, 3]}])
    );
    node.expect("cr", "end").await;
    node.expect("cr2", "from-node-bin").await;
    node.expect("cr2", "end").await;
    io.emit("drain", &()).await.unwrap();
    for client in ["cn", "cr", "cr2"] {
        while node.next_for(client).await["name"] != json!("drain") {}
    }

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

    // A join then, at once, a broadcast to the room joined, from Node: static keeps the order.
    for n in 0..20 {
        node.cmd(
            "join_then_emit",
            json!({"room": format!("fresh{n}"), "target": "r2", "n": n}),
        )
        .await;
        assert_eq!(node.expect("cr2", "after-join").await, json!([n]));
    }

    interop::disconnect_both_ways(&io, &ctr, &mut node).await;
}
