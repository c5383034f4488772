//! Every method of the Redis state backends, against a real redis-server, including races between
//! two nodes sharing one Redis.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use cluster::failures::FailureScope;
use cluster::{History, HistoryScope, JoinOutcome, LeaveOutcome, StateBackends};
use common::*;
use fred::prelude::*;

#[tokio::test]
async fn rooms_create_get_list_and_refuse_duplicates() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let rooms = a.backends().rooms;
    let mut private = room("second", 3);
    private.is_private = true;
    private.password_hash = Some("$argon2id$v=19$hash".into());
    assert!(rooms.create(room("first", 10)).await.unwrap());
    assert!(rooms.create(private.clone()).await.unwrap());
    assert!(rooms.create(room("third", 10)).await.unwrap());
    assert!(!rooms.create(room("first", 99)).await.unwrap());
    assert_eq!(rooms.get("first").await.unwrap().unwrap().max_users, 10);
    assert_eq!(rooms.get("second").await.unwrap().unwrap(), private);
    assert!(rooms.get("missing").await.unwrap().is_none());
    assert_eq!(
        room_ids(&*rooms).await,
        ["first", "second", "third"],
        "creation order"
    );
    assert_eq!(rooms.count().await.unwrap(), 3);
}

#[tokio::test]
async fn join_leave_members_and_counts() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let rooms = a.backends().rooms;
    rooms.create(room("r", 2)).await.unwrap();
    assert_joins_until_full(&*rooms, "r").await;
    assert_eq!(
        rooms.members("r").await.unwrap(),
        vec![member("s1", "a"), member("s2", "b")],
        "joining order"
    );
    assert_eq!(rooms.member_count("r").await.unwrap(), 2);
    rooms.create(room("empty", 4)).await.unwrap();
    assert_eq!(
        room_counts(&*rooms).await,
        [("r".to_owned(), 2), ("empty".to_owned(), 0)]
    );
    assert_eq!(rooms.member_count("nope").await.unwrap(), 0);
    assert!(rooms.members("nope").await.unwrap().is_empty());
    assert_eq!(
        rooms.leave("nope", "s1").await.unwrap(),
        LeaveOutcome::NotMember
    );
    assert_leaves_until_deleted(&*rooms, "r").await;
    assert_eq!(room_ids(&*rooms).await, ["empty"]);
    // The id is free again, and nothing of the old room's members is left behind.
    assert!(rooms.create(room("r", 2)).await.unwrap());
    assert_eq!(rooms.member_count("r").await.unwrap(), 0);
    let raw = raw_client(&server.url()).await;
    let left: i64 = raw.scard("gateway:node:a:memberships").await.unwrap();
    assert_eq!(left, 0, "leaving also clears the node's membership index");
}

#[tokio::test]
async fn purge_node_removes_only_that_nodes_members() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    scenarios::purge_node_removes_only_that_nodes_members(&*a.backends().rooms).await;
}

#[tokio::test]
async fn two_nodes_racing_joins_never_exceed_capacity() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    scenarios::two_nodes_racing_joins_never_exceed_capacity(&a.backends(), &b.backends()).await;
}

#[tokio::test]
async fn presence_first_last_lookup_rename_and_purge() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let (pa, pb) = (a.backends().presence, b.backends().presence);
    scenarios::presence_first_last_lookup_rename_and_purge(&*pa, &*pb).await;
}

#[tokio::test]
async fn bans_store_lift_and_expire() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let now = Utc::now();
    let permanent = ban("u1", "spam", now, None);
    a.backends().bans.ban(permanent.clone()).await.unwrap();
    assert_eq!(
        b.backends().bans.active("u1").await.unwrap(),
        Some(permanent)
    );
    assert!(b.backends().bans.unban("u1").await.unwrap());
    assert!(!b.backends().bans.unban("u1").await.unwrap());
    assert!(a.backends().bans.active("u1").await.unwrap().is_none());

    let lapsed = ban("u2", "old", now, Some(now - chrono::Duration::seconds(1)));
    a.backends().bans.ban(lapsed).await.unwrap();
    assert!(a.backends().bans.active("u2").await.unwrap().is_none());

    let short = ban(
        "u3",
        "short",
        now,
        Some(Utc::now() + chrono::Duration::milliseconds(2000)),
    );
    a.backends().bans.ban(short.clone()).await.unwrap();
    assert_eq!(b.backends().bans.active("u3").await.unwrap(), Some(short));
    let raw = raw_client(&server.url()).await;
    let ttl: i64 = raw.pttl("gateway:ban:u3").await.unwrap();
    assert!(
        ttl > 0 && ttl <= 2000,
        "ban key carries the expiry as TTL: {ttl}"
    );
    let bans = b.backends().bans;
    wait_for("the ban to lapse", Duration::from_secs(5), || {
        let bans = bans.clone();
        async move { bans.active("u3").await.unwrap().is_none().then_some(()) }
    })
    .await;
    wait_for("the ban key to expire", Duration::from_secs(5), || {
        let raw = raw.clone();
        async move {
            let n: i64 = raw.exists("gateway:ban:u3").await.unwrap();
            (n == 0).then_some(())
        }
    })
    .await;
}

/// The `i` field of the `limit` most recent messages of `scope`.
async fn recent_is(h: &dyn History, scope: &HistoryScope, limit: usize) -> Vec<i64> {
    h.recent(scope, limit)
        .await
        .unwrap()
        .iter()
        .map(|m| m["i"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn history_is_bounded_per_scope_and_oldest_first() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let room = HistoryScope::Room("r".into());
    let private = HistoryScope::private("bob", "alice");
    // A room's history exists only while the room does.
    a.backends()
        .rooms
        .create(common::room("r", 5))
        .await
        .unwrap();
    for i in 0..8 {
        let h = if i % 2 == 0 {
            a.backends()
        } else {
            b.backends()
        }
        .history;
        h.append(&room, serde_json::json!({ "i": i, "text": "<b>x</b> é" }))
            .await
            .unwrap();
    }
    a.backends()
        .history
        .append(&private, serde_json::json!({ "p": 1 }))
        .await
        .unwrap();
    let h = b.backends().history;
    assert_eq!(
        recent_is(&*h, &room, 100).await,
        [3, 4, 5, 6, 7],
        "capacity 5, oldest first"
    );
    assert_eq!(recent_is(&*h, &room, 2).await, [6, 7]);
    assert_eq!(h.recent(&room, 1).await.unwrap()[0]["text"], "<b>x</b> é");
    assert!(h.recent(&room, 0).await.unwrap().is_empty());
    assert_eq!(
        h.recent(&HistoryScope::private("alice", "bob"), 10)
            .await
            .unwrap(),
        vec![serde_json::json!({ "p": 1 })]
    );
    assert!(
        h.recent(&HistoryScope::Namespace("/chat".into()), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let raw = raw_client(&server.url()).await;
    let len: i64 = raw.xlen("gateway:history:room:r").await.unwrap();
    assert_eq!(len, 5, "the stream itself is trimmed");
}

#[tokio::test]
async fn game_sequence_from_two_nodes_has_no_gaps_or_repeats() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let mut tasks = Vec::new();
    for backends in [a.backends(), b.backends()] {
        for _ in 0..4 {
            let games = backends.games.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..50 {
                    got.push(games.next("g").await.unwrap());
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    assert_eq!(a.backends().games.next("other").await.unwrap(), 1);
}

/// Failures recorded through one node count on every node, and a window ends with its key.
#[tokio::test]
async fn failure_windows_are_shared_by_the_nodes_and_end_with_their_length() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let user = FailureScope::RoomPasswordsOfUser("u".into());
    let room = FailureScope::PasswordsOfRoom("u".into());
    let minute = Duration::from_secs(60);
    assert_eq!(a.backends().failures.window(&user).await.unwrap().count, 0);
    a.backends().failures.record(&user, minute).await.unwrap();
    let w = b.backends().failures.record(&user, minute).await.unwrap();
    assert_eq!(w.count, 2, "b counts on top of a's failure");
    assert!(w.remaining > Duration::from_secs(55) && w.remaining <= minute);
    let seen = a.backends().failures.window(&user).await.unwrap();
    assert_eq!(seen.count, 2);
    assert_eq!(
        b.backends().failures.window(&room).await.unwrap().count,
        0,
        "a room and a user of the same id are different scopes"
    );
    let raw = raw_client(&server.url()).await;
    let ttl: i64 = raw.pttl("gateway:pwfail:user:u").await.unwrap();
    assert!(
        ttl > 0 && ttl <= 60_000,
        "the counter expires with its window: {ttl}"
    );

    let short = Duration::from_millis(300);
    b.backends().failures.record(&room, short).await.unwrap();
    let failures = a.backends().failures.clone();
    let room2 = room.clone();
    wait_for("the short window to end", Duration::from_secs(5), || {
        let (failures, room) = (failures.clone(), room2.clone());
        async move { (failures.window(&room).await.unwrap().count == 0).then_some(()) }
    })
    .await;
    assert_eq!(
        a.backends()
            .failures
            .record(&room, short)
            .await
            .unwrap()
            .count,
        1,
        "a new window starts from one"
    );
}

#[tokio::test]
async fn keys_live_under_the_configured_prefix() {
    let server = redis();
    let mut cfg = config("a");
    cfg.key_prefix = "custom:".into();
    let a = cluster::redis::connect(&server.url(), cfg).await.unwrap();
    let StateBackends {
        rooms,
        presence,
        games,
        ..
    } = a.backends();
    rooms.create(room("r", 2)).await.unwrap();
    rooms.join("r", member("s1", "a")).await.unwrap();
    presence
        .socket_connected(online("u", "s1", "a"))
        .await
        .unwrap();
    games.next("g").await.unwrap();
    let raw = raw_client(&server.url()).await;
    let keys: Vec<String> = raw.custom(fred::cmd!("KEYS"), vec!["*"]).await.unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(k.starts_with("custom:"), "key outside the prefix: {k}");
    }
    assert!(
        keys.contains(&"custom:node:a:sockets".to_owned()),
        "{keys:?}"
    );
}

#[tokio::test]
async fn scripts_are_reloaded_after_redis_forgets_them() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let rooms = a.backends().rooms;
    assert!(rooms.create(room("r", 5)).await.unwrap());
    let raw = raw_client(&server.url()).await;
    let _: () = raw.script_flush(false).await.unwrap();
    assert_eq!(
        rooms.join("r", member("s1", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    assert!(!rooms.create(room("r", 5)).await.unwrap());
}
