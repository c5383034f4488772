//! `AdapterMode::Sharded` (static subscriptions) between socketioxide servers on a real
//! three-primary Redis Cluster: Node's sharded envelope through the sharded transport, every
//! operation across nodes (`docs/sharded-adapter.md`, sections 2 and 4).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use adapter_redis::sharded_wire::SubscriptionMode;
use adapter_redis::{AdapterError, AdapterMode, RedisAdapterConfig, RedisAdapterCtr};
use bytes::Bytes;
use common::{client, fetch_all, fetch_one, node_with, wait_room_size};
use serde_json::json;
use testkit::redis_cluster::RedisCluster;

fn sharded_config(mode: SubscriptionMode) -> RedisAdapterConfig {
    RedisAdapterConfig {
        mode: AdapterMode::Sharded(mode),
        ..common::test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_crosses_nodes_in_sharded_static_mode() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let config = sharded_config(SubscriptionMode::Static);
    let (a, ctr_a) = node_with(&url, config.clone()).await;
    let (b, ctr_b) = node_with(&url, config).await;
    let mut a1 = client(&a, &["r1"]).await;
    let mut b1 = client(&b, &["r1"]).await;
    let mut b2 = client(&b, &["r2"]).await;

    // Both nodes sit on the main channel, at its slot's owner only; nothing is classic.
    assert_eq!(cluster.shard_subscribers("socket.io#/#").unwrap(), 2);
    assert_eq!(ctr_a.server_count("/").await.unwrap(), 2);

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

    // socketsJoin / socketsLeave, and a broadcast right after the join (static: in order).
    a.to("r2").join("r9").await.unwrap();
    a.to("r9").emit("in-r9", &()).await.unwrap();
    b2.expect("in-r9").await;
    a.to("r2").leave("r9").await.unwrap();
    wait_room_size(&b, "r9", 0, "b2 left r9").await;

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
async fn dynamic_modes_are_refused_until_they_are_supported() {
    let cluster = RedisCluster::start().unwrap();
    for mode in [SubscriptionMode::Dynamic, SubscriptionMode::DynamicPrivate] {
        let refused = RedisAdapterCtr::connect(&cluster.url(), sharded_config(mode)).await;
        assert!(
            matches!(refused, Err(AdapterError::Unsupported(_))),
            "{mode:?}: {refused:?}"
        );
    }
}
