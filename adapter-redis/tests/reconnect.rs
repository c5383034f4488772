//! Redis killed and restarted mid-traffic.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{client, emit_until_aborted, eventually, fetch_all, node, node_with};
use testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_within_two_seconds_of_redis_coming_back() {
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

    let _redis = RedisServer::start_on(port).unwrap();
    let restarted = Instant::now();
    let sender = emit_until_aborted(&a, "r1", "after");
    let first = b1.next().await;
    let resumed = restarted.elapsed();
    sender.abort();
    assert_eq!(
        first.name, "after",
        "nothing from the outage is replayed: {first:?}"
    );
    assert!(
        resumed < Duration::from_secs(2),
        "delivery resumed after {resumed:?}"
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

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid} failed");
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
