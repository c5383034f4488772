//! The publish queue is bounded in bytes: while Redis does not take messages, broadcasts wait
//! for room and are dropped (counted, and an error to the emitter) once the request timeout
//! passes, instead of piling up in memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{client, emit_until_aborted, eventually, node_with, signal};
use testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_over_the_byte_bound_are_dropped_and_counted_while_redis_hangs() {
    let redis = RedisServer::start().unwrap();
    let config = adapter_redis::RedisAdapterConfig {
        publish_queue_bytes: 4096,
        request_timeout: Duration::from_millis(1500),
        // The hang must not be noticed as a lost connection (that fails publishes at once and
        // frees their bytes): this test is about messages that Redis is slow to take.
        heartbeat_interval: Duration::from_secs(60),
        unresponsive_timeout: Duration::from_secs(120),
        ..common::test_config()
    };
    let (a, ctr_a) = node_with(&redis.url(), config.clone()).await;
    let (b, ctr_b) = node_with(&redis.url(), config).await;
    let mut member = client(&b, &["r1"]).await;
    ctr_b.sync_rooms("/").await;

    signal(redis.pid(), "-STOP");
    // Five broadcasts of 3 KiB at once: one fits the 4 KiB bound and waits on Redis; the
    // others wait for its bytes until the request timeout, which frees them no sooner.
    let payload = "x".repeat(3 * 1024);
    let emits: Vec<_> = (0..5)
        .map(|_| {
            let (a, payload) = (a.clone(), payload.clone());
            tokio::spawn(async move { a.to("r1").emit("big", &payload).await })
        })
        .collect();
    let mut refused = 0;
    for emit in emits {
        if emit.await.unwrap().is_err() {
            refused += 1;
        }
    }
    let dropped = ctr_a.metrics().dropped;
    assert!(
        dropped >= 3,
        "at most two of five 3 KiB broadcasts can have had room in 4 KiB; dropped {dropped}"
    );
    assert_eq!(
        refused, dropped,
        "every dropped broadcast is an error to its emitter, and only those"
    );
    signal(redis.pid(), "-CONT");

    // Once Redis answers again, the queue has room: a later broadcast arrives.
    let sender = emit_until_aborted(&a, "r1", "after");
    loop {
        if member.next().await.name == "after" {
            break;
        }
    }
    sender.abort();
    eventually("both nodes connected", async || {
        ctr_a.is_connected() && ctr_b.is_connected()
    })
    .await;
}
