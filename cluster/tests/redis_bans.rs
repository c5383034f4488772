//! Bans outlive the loss of Redis's data: nodes keep a book of the bans they know and write it
//! back when the epoch marker shows Redis lost its data; unbans made through another node are
//! not brought back; a node started after a ban learns it.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration as Days, Utc};
use cluster::redis::RedisCluster;
use common::*;
use fred::prelude::*;

async fn flushall(url: &str) {
    let raw = raw_client(url).await;
    let _: Value = raw.flushall(false).await.unwrap();
}

/// Nodes `a` and `b`, each past its first ban sync (so each has seen this Redis's epoch).
async fn two_synced_nodes(url: &str) -> (RedisCluster, RedisCluster) {
    let a = node(url, "a").await;
    let b = node(url, "b").await;
    a.sync_bans().await.unwrap();
    b.sync_bans().await.unwrap();
    (a, b)
}

#[tokio::test]
async fn bans_are_written_back_after_redis_lost_them() {
    let server = redis();
    let url = server.url();
    let a = node(&url, "a").await;
    a.sync_bans().await.unwrap();
    let now = Utc::now();
    let bans = a.backends().bans;
    bans.ban(ban("forever", "spam", now, None)).await.unwrap();
    bans.ban(ban("hour", "flood", now, Some(now + Days::hours(1))))
        .await
        .unwrap();
    // A node started after the bans learns them at its first sync (so it can write them back
    // even when the node that issued them is gone).
    let c = node(&url, "c").await;
    let learned = c.sync_bans().await.unwrap();
    assert_eq!(learned.active.len(), 2);
    drop(a);

    flushall(&url).await;
    let cb = c.backends().bans;
    // Before the resync, the node still refuses the user: Redis lost the ban, not the cluster.
    assert!(cb.active("forever").await.unwrap().is_some());
    let sync = c.sync_bans().await.unwrap();
    assert_eq!(sync.reregistered, 2);
    let b = node(&url, "b").await;
    let bb = b.backends().bans;
    assert_eq!(bb.active("forever").await.unwrap().unwrap().reason, "spam");
    let hour = bb.active("hour").await.unwrap().unwrap();
    assert_eq!(hour.reason, "flood");
    let raw = raw_client(&url).await;
    let ttl: i64 = raw
        .pttl(cluster::keys::Keys::default().ban("hour"))
        .await
        .unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "TTL kept: {ttl}");
    // A second sync in the same epoch writes nothing back.
    assert_eq!(c.sync_bans().await.unwrap().reregistered, 0);
}

#[tokio::test]
async fn an_unban_through_another_node_is_not_brought_back() {
    let server = redis();
    let url = server.url();
    let (a, b) = two_synced_nodes(&url).await;
    a.backends()
        .bans
        .ban(ban("u", "r", Utc::now(), None))
        .await
        .unwrap();
    assert_eq!(
        b.sync_bans().await.unwrap().active.len(),
        1,
        "one key, one MGET"
    );
    assert!(a.backends().bans.unban("u").await.unwrap());
    // b still has it in its book, but Redis holds the data of b's last sync: lifted.
    assert!(b.backends().bans.active("u").await.unwrap().is_none());
    assert!(b.known_bans().is_empty());
    flushall(&url).await;
    assert_eq!(b.sync_bans().await.unwrap().reregistered, 0);
    assert!(a.backends().bans.active("u").await.unwrap().is_none());
}

#[tokio::test]
async fn two_nodes_write_back_the_union_of_what_they_know() {
    let server = redis();
    let url = server.url();
    let (a, b) = two_synced_nodes(&url).await;
    flushall(&url).await;
    // Each knows a ban the other missed (a notice published while it was cut off).
    a.remember_ban(ban("only-a", "r", Utc::now(), None));
    b.remember_ban(ban("only-b", "r", Utc::now(), None));
    // a finds the marker missing and starts a new epoch; b, syncing after, sees an epoch it has
    // not synced in and writes back its own book too.
    assert_eq!(a.sync_bans().await.unwrap().reregistered, 1);
    let sync = b.sync_bans().await.unwrap();
    assert_eq!(sync.reregistered, 1);
    let mut users: Vec<String> = sync.active.into_iter().map(|b| b.user_id).collect();
    users.sort();
    assert_eq!(users, ["only-a", "only-b"]);
}
