//! What a hostile client could do to shared state through the ids and objects it chooses,
//! against a real redis-server: ids that look like other keys, a deleted room's history, and
//! state that would grow for ever without a bound or a TTL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cluster::keys::{Keys, key_part};
use cluster::redis::RedisCluster;
use cluster::{CreateOutcome, HistoryScope, JoinOutcome, Retention};
use common::*;
use fred::prelude::*;
use futures_util::TryStreamExt;

async fn node_with(url: &str, id: &str, retention: Retention) -> RedisCluster {
    let mut c = config(id);
    c.retention = retention;
    cluster::redis::connect(url, c)
        .await
        .unwrap_or_else(|e| panic!("connect {id}: {e}"))
}

#[tokio::test]
async fn lua_and_rust_escape_ids_alike() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let ids = [
        "plain",
        "x:members",
        "%3A",
        "{tag}",
        "a*b?c[d]e\\f",
        "é:ü",
        "::",
    ];
    let lua = a.lua_key_parts(&ids).await.unwrap();
    let rust: Vec<String> = ids.iter().map(|id| key_part(id).into_owned()).collect();
    assert_eq!(lua, rust);
}

#[tokio::test]
async fn room_ids_that_look_like_keys_stay_separate_rooms() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let rooms = a.backends().rooms;
    let ids = ["x", "x:members", "x:member", "x%3Amembers", "{x}", "*"];
    for id in ids {
        assert!(rooms.create(room(id, 5)).await.unwrap(), "create {id}");
    }
    assert_eq!(
        rooms.join("x", member("s1", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    assert_eq!(
        rooms.join("x:members", member("s2", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    let listed = room_counts(&*rooms).await;
    let expected: Vec<(String, usize)> = [1, 1, 0, 0, 0, 0]
        .into_iter()
        .zip(ids)
        .map(|(n, id)| (id.to_owned(), n))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(rooms.members("x").await.unwrap(), vec![member("s1", "a")]);
    // Leaving one room deletes that room only.
    rooms.leave("x:members", "s2").await.unwrap();
    assert!(rooms.get("x:members").await.unwrap().is_none());
    assert!(rooms.get("x").await.unwrap().is_some());
    assert_eq!(rooms.member_count("x").await.unwrap(), 1);
    // The purge of a node finds rooms by the same escaped names.
    rooms.join("{x}", member("s3", "dead")).await.unwrap();
    let purged = rooms.purge_node("dead").await.unwrap();
    assert_eq!(purged.len(), 1);
    assert!(purged[0].room_deleted);
    assert!(rooms.get("{x}").await.unwrap().is_none());
    // Presence keys of user ids with separators stay apart too.
    let p = a.backends().presence;
    p.socket_connected(online("u:1", "s10", "a")).await.unwrap();
    p.socket_connected(online("u", "s11", "a")).await.unwrap();
    assert_eq!(p.sockets_of("u:1").await.unwrap().len(), 1);
    assert!(p.socket_disconnected("u:1", "s10").await.unwrap());
    assert_eq!(p.sockets_of("u").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_rooms_history_is_deleted_with_the_room() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let (rooms, history) = (a.backends().rooms, a.backends().history);
    let scope = HistoryScope::Room("hr".into());
    let raw = raw_client(&server.url()).await;
    let stream = Keys::default().history(&scope);

    rooms.create(room("hr", 5)).await.unwrap();
    rooms.join("hr", member("s1", "a")).await.unwrap();
    history
        .append(&scope, serde_json::json!({ "secret": 1 }))
        .await
        .unwrap();
    assert_eq!(history.recent(&scope, 10).await.unwrap().len(), 1);
    rooms.leave("hr", "s1").await.unwrap();
    let exists: i64 = raw.exists(&stream).await.unwrap();
    assert_eq!(exists, 0, "the last leave deletes the history stream");
    // A message that arrives after the room is gone starts no history.
    history
        .append(&scope, serde_json::json!({ "late": 1 }))
        .await
        .unwrap();
    rooms.create(room("hr", 5)).await.unwrap();
    assert!(history.recent(&scope, 10).await.unwrap().is_empty());

    // A room that dies with its node goes with its history too.
    rooms.join("hr", member("s2", "b")).await.unwrap();
    history
        .append(&scope, serde_json::json!({ "m": 2 }))
        .await
        .unwrap();
    b.backends().rooms.purge_node("b").await.unwrap();
    let exists: i64 = raw.exists(&stream).await.unwrap();
    assert_eq!(exists, 0, "the purge deletes the history stream");
}

#[tokio::test]
async fn rooms_nobody_joins_expire() {
    let server = redis();
    let retention = Retention {
        unjoined_room: Duration::from_millis(300),
        ..Retention::default()
    };
    let a = node_with(&server.url(), "a", retention).await;
    let rooms = a.backends().rooms;
    rooms.create(room("never", 5)).await.unwrap();
    rooms.create(room("joined", 5)).await.unwrap();
    rooms.join("joined", member("s1", "a")).await.unwrap();
    wait_for(
        "the unjoined room to expire",
        Duration::from_secs(10),
        || {
            let rooms = rooms.clone();
            async move { (rooms.count().await.unwrap() == 1).then_some(()) }
        },
    )
    .await;
    assert_eq!(room_ids(&*rooms).await, ["joined"]);
    assert_eq!(
        rooms.join("never", member("s2", "a")).await.unwrap(),
        JoinOutcome::NoSuchRoom
    );
    let raw = raw_client(&server.url()).await;
    let keys: Vec<String> = raw
        .scan_buffered("gateway:room:never*", Some(100), None)
        .try_collect::<Vec<Key>>()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|k| k.into_string())
        .collect();
    assert!(
        keys.is_empty(),
        "nothing of the expired room is left: {keys:?}"
    );
}

#[tokio::test]
async fn histories_and_game_counters_carry_a_ttl() {
    let server = redis();
    let retention = Retention {
        history: Duration::from_secs(100),
        game_sequence: Duration::from_secs(50),
        ..Retention::default()
    };
    let a = node_with(&server.url(), "a", retention).await;
    let state = a.backends();
    let k = Keys::default();
    state.rooms.create(room("r", 5)).await.unwrap();
    let scopes = [
        HistoryScope::Room("r".into()),
        HistoryScope::private("alice", "bob"),
        HistoryScope::Namespace("/".into()),
    ];
    for scope in &scopes {
        state
            .history
            .append(scope, serde_json::json!(1))
            .await
            .unwrap();
    }
    assert_eq!(state.games.next("g:1").await.unwrap(), 1);
    assert_eq!(state.games.next("g:1").await.unwrap(), 2);
    let raw = raw_client(&server.url()).await;
    for scope in &scopes {
        let ttl: i64 = raw.pttl(k.history(scope)).await.unwrap();
        assert!((90_000..=100_000).contains(&ttl), "{scope:?}: {ttl}");
    }
    let ttl: i64 = raw.pttl(k.game_seq("g:1")).await.unwrap();
    assert!((40_000..=50_000).contains(&ttl), "game counter: {ttl}");
}

#[tokio::test]
async fn a_creator_has_a_bounded_number_of_unjoined_rooms() {
    let server = redis();
    let retention = Retention {
        unjoined_room: Duration::from_millis(400),
        ..Retention::default()
    };
    let a = node_with(&server.url(), "a", retention).await;
    let rooms = a.backends().rooms;
    let by = |id: &str, user: &str| {
        let mut r = room(id, 5);
        r.created_by = user.to_owned();
        r
    };
    for id in ["m1", "m2"] {
        assert_eq!(
            rooms.create_bounded(by(id, "mal:lory"), 2).await.unwrap(),
            CreateOutcome::Created
        );
    }
    assert_eq!(
        rooms.create_bounded(by("m3", "mal:lory"), 2).await.unwrap(),
        CreateOutcome::CreatorAtLimit
    );
    assert_eq!(
        rooms.create_bounded(by("m1", "other"), 2).await.unwrap(),
        CreateOutcome::Exists
    );
    assert_eq!(
        rooms.create_bounded(by("o1", "other"), 2).await.unwrap(),
        CreateOutcome::Created,
        "another creator is not affected"
    );
    // A joined room no longer counts against its creator.
    rooms.join("m1", member("s1", "a")).await.unwrap();
    assert_eq!(
        rooms.create_bounded(by("m3", "mal:lory"), 2).await.unwrap(),
        CreateOutcome::Created
    );
    // Once the unjoined ones expire, the creator may create again, and nothing is left over.
    wait_for(
        "the unjoined rooms to expire",
        Duration::from_secs(10),
        || {
            let rooms = rooms.clone();
            async move {
                (rooms.create_bounded(by("m4", "mal:lory"), 2).await.unwrap()
                    == CreateOutcome::Created)
                    .then_some(())
            }
        },
    )
    .await;
    let raw = raw_client(&server.url()).await;
    let ttl: i64 = raw
        .pttl(Keys::default().unjoined_rooms_of("mal:lory"))
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 400,
        "the creator's set expires with its last room: {ttl}"
    );
}

#[tokio::test]
async fn lua_builds_the_key_names_keys_rs_builds() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let ids = ["plain", "x:members", "%3A", "{tag}", "a*b?c[d]e\\f", "é:ü"];
    let lua = a.lua_key_names(&ids).await.unwrap();
    let k = Keys::default();
    let mut rust = Vec::new();
    for id in ids {
        rust.extend([
            k.room(id),
            k.room_members(id),
            k.room_member_records(id),
            k.history(&HistoryScope::Room(id.to_owned())),
            k.unjoined_rooms_of(id),
            k.presence_user(id),
            k.node_sockets(id),
            k.node_memberships(id),
        ]);
    }
    rust.push(k.unjoined_rooms());
    assert_eq!(lua, rust);
}
