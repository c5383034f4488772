//! Redis killed and restarted mid-traffic.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    client, emit_until_aborted, eventually, fetch_all, node, node_with, raw_client, signal,
};
use fred::prelude::{ClientLike, PubsubInterface, Value};
use testkit::RedisServer;

/// What Redis itself reports of its subscribers: each channel with its subscriber count, and how
/// many pattern subscriptions there are.
async fn subscriptions_in_redis(url: &str) -> (Vec<(String, i64)>, i64) {
    let redis = raw_client(url).await;
    let mut channels: Vec<String> = redis.pubsub_channels("*").await.unwrap();
    channels.sort();
    let mut counted = Vec::new();
    for channel in channels {
        let reply: Vec<Value> = redis.pubsub_numsub(channel.clone()).await.unwrap();
        counted.push((channel, reply[1].as_i64().unwrap()));
    }
    let patterns: i64 = redis.pubsub_numpat().await.unwrap();
    redis.quit().await.unwrap();
    (counted, patterns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_once_both_nodes_have_resubscribed_after_redis_came_back() {
    let mut redis = RedisServer::start().unwrap();
    let port = redis.port();
    let url = redis.url();
    let (a, ctr_a) = node(&url).await;
    let (b, ctr_b) = node(&url).await;
    let mut b1 = client(&b, &["r1"]).await;
    ctr_b.sync_rooms("/").await;
    a.to("r1").emit("before", &()).await.unwrap();
    b1.expect("before").await;
    assert!(ctr_a.is_connected() && ctr_b.is_connected());
    let subscribed = subscriptions_in_redis(&url).await;
    assert!(!subscribed.0.is_empty(), "{subscribed:?}");

    redis.kill();
    eventually("adapters see redis down", async || {
        !ctr_a.is_connected() && !ctr_b.is_connected()
    })
    .await;
    for _ in 0..5 {
        a.to("r1").emit("during", &()).await.unwrap();
    }
    eventually("publishes during the outage are counted", async || {
        ctr_a.metrics().publish_failures >= 5
    })
    .await;

    // The restarted Redis is empty: every subscription it reports was made again by a node.
    // Once it reports the same ones as before the outage, delivery must work at once.
    let _redis = RedisServer::start_on(port).unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while subscriptions_in_redis(&url).await != subscribed {
        assert!(
            tokio::time::Instant::now() < end,
            "the nodes did not resubscribe: Redis reports {:?}, before the outage {subscribed:?}",
            subscriptions_in_redis(&url).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sender = emit_until_aborted(&a, "r1", "after");
    let first = b1.next().await;
    sender.abort();
    assert_eq!(
        first.name, "after",
        "nothing from the outage is replayed: {first:?}"
    );
    eventually("both report connected again", async || {
        ctr_a.is_connected() && ctr_b.is_connected()
    })
    .await;
    let (ma, mb) = (ctr_a.metrics(), ctr_b.metrics());
    assert!(ma.reconnects >= 1 && mb.reconnects >= 1, "{ma:?} {mb:?}");
    assert!(ma.publish_failures >= 5, "{ma:?}");

    // Requests work again too.
    assert_eq!(fetch_all(&a).await.len(), 1);
}

/// A frozen Redis (SIGSTOP) looks like a network cut: connections stay open, nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_network_cut_is_detected_and_recovered() {
    let redis = RedisServer::start().unwrap();
    let config = adapter_redis::RedisAdapterConfig {
        heartbeat_interval: Duration::from_millis(200),
        unresponsive_timeout: Duration::from_millis(800),
        ..common::test_config()
    };
    let (a, ctr_a) = node_with(&redis.url(), config.clone()).await;
    let (b, ctr_b) = node_with(&redis.url(), config).await;
    let mut b1 = client(&b, &["r1"]).await;
    ctr_b.sync_rooms("/").await;

    signal(redis.pid(), "-STOP");
    eventually("the cut is noticed", async || {
        !ctr_a.is_connected() && !ctr_b.is_connected()
    })
    .await;
    signal(redis.pid(), "-CONT");
    let sender = emit_until_aborted(&a, "r1", "after");
    let first = b1.next().await;
    sender.abort();
    assert_eq!(first.name, "after");
    eventually("both report connected again", async || {
        ctr_a.is_connected() && ctr_b.is_connected()
    })
    .await;
    assert!(ctr_a.metrics().reconnects >= 1 && ctr_b.metrics().reconnects >= 1);
}
