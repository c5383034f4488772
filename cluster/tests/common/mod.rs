//! Shared helpers of the Redis integration tests: a real redis-server per test, nodes with short
//! timings, and waiting for a condition with a deadline.
#![allow(dead_code, clippy::unwrap_used)]

pub mod scenarios;

use std::future::Future;
use std::time::Duration;

use cluster::redis::{MonitorConfig, RedisCluster, RedisStateConfig};
// The fixtures are the unit tests' too, so both backends are tested with the same records.
// (Not every test file uses them.)
#[allow(unused_imports)]
pub use cluster::test_support::*;
use cluster::{NamespaceConnections, NodeStats};
use fred::prelude::*;
use testkit::RedisServer;

pub fn redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

pub fn config(node: &str) -> RedisStateConfig {
    let mut c = RedisStateConfig::new(node).with_stats_ttl(Duration::from_millis(1500));
    c.history_capacity = 5;
    c.monitor = MonitorConfig {
        interval: Duration::from_millis(200),
        claim_ttl: Duration::from_secs(30),
        queue: 64,
    };
    c
}

pub async fn node(url: &str, id: &str) -> RedisCluster {
    cluster::redis::connect(url, config(id))
        .await
        .unwrap_or_else(|e| panic!("connect {id}: {e}"))
}

/// A plain client for looking at Redis directly.
pub async fn raw_client(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Publishes `node`'s own stats record, with one connection on `/`.
pub async fn publish_own_stats(node: &RedisCluster) {
    node.backends()
        .nodes
        .publish(&stats(node.node_id(), 1))
        .await
        .unwrap();
}

pub fn stats(id: &str, main: u64) -> NodeStats {
    let connections = NamespaceConnections {
        main,
        chat: 1,
        game: 0,
        admin: 0,
    };
    node_stats(id, connections)
}

/// Waits until `monitor` has finished `n` more rounds than now: "nothing happened in the
/// following rounds" is then a statement about rounds, not about how long the machine took.
pub async fn after_rounds(monitor: &cluster::redis::NodeMonitor, n: u64) {
    let target = monitor.rounds() + n;
    wait_for(
        &format!("{n} more monitor rounds"),
        Duration::from_secs(30),
        || async { (monitor.rounds() >= target).then_some(()) },
    )
    .await;
}
