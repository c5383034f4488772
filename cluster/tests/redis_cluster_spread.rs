//! The spread key layout on a real three-primary Redis Cluster (`docs/sharded-adapter.md`,
//! section 5): the state of many rooms and users lands on every primary, no script is refused
//! for touching several slots, the listings find everything wherever it lives, and a busy room
//! keeps a consistent state while its slot moves to another primary under joins and leaves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cluster::keys::{KeyLayout, Keys};
use cluster::redis::{LocalMembership, LocalSnapshot};
use cluster::{HistoryScope, JoinOutcome, LeaveOutcome};
use common::*;
use fred::prelude::*;
use testkit::redis_cluster::{RedisCluster, RedisClusterSpec, Reply, key_slot};

fn start_cluster() -> RedisCluster {
    RedisCluster::start_with(RedisClusterSpec {
        primaries: 3,
        replicas_per_primary: 0,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn spread_keys() -> Keys {
    Keys::with_layout("gateway:", KeyLayout::Spread)
}

/// Keys per primary port (`DBSIZE`), the gateway's own only (nothing else writes there).
fn keys_per_primary(redis: &RedisCluster) -> Vec<(u16, i64)> {
    redis
        .primaries()
        .unwrap()
        .into_iter()
        .map(|p| {
            let n = match redis.connect(p.port).unwrap().command(&["DBSIZE"]).unwrap() {
                Reply::Integer(n) => n,
                other => panic!("DBSIZE answered {other:?}"),
            };
            (p.port, n)
        })
        .collect()
}

#[tokio::test]
async fn two_hundred_rooms_spread_over_every_primary_and_are_all_listed() {
    let redis = start_cluster();
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    assert_eq!(a.key_layout(), KeyLayout::Spread);
    let (sa, sb) = (a.backends(), b.backends());

    let ids: Vec<String> = (0..200).map(|i| format!("room-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        assert!(sa.rooms.create(room(id, 10)).await.unwrap(), "{id}");
        let (n, sid) = if i % 2 == 0 { ("a", "sa") } else { ("b", "sb") };
        assert_eq!(
            sa.rooms
                .join(id, member(&format!("{sid}{i}"), n))
                .await
                .unwrap(),
            JoinOutcome::Joined { user_count: 1 }
        );
    }
    for i in 0..60 {
        let (n, s) = if i % 2 == 0 { ("a", &sa) } else { ("b", &sb) };
        assert!(
            s.presence
                .socket_connected(online(&format!("user-{i}"), &format!("p{i}"), n))
                .await
                .unwrap()
        );
    }
    let now = chrono::Utc::now();
    for i in 0..30 {
        sa.bans
            .ban(ban(&format!("banned-{i}"), "r", now, None))
            .await
            .unwrap();
    }

    let per_primary = keys_per_primary(&redis);
    let total: i64 = per_primary.iter().map(|(_, n)| n).sum();
    assert!(total > 600, "{per_primary:?}");
    for (port, n) in &per_primary {
        assert!(
            *n > 0 && *n * 2 <= total,
            "primary {port} holds {n} of {total} keys: {per_primary:?}"
        );
    }

    // The listings read every bucket on every primary: nothing is missed, order is creation
    // order.
    let listed = sb.rooms.list_with_counts().await.unwrap();
    let listed_ids: Vec<&str> = listed.iter().map(|(r, _)| r.id.as_str()).collect();
    assert_eq!(
        listed_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(listed.iter().all(|(_, n)| *n == 1));
    assert_eq!(sb.rooms.list().await.unwrap().len(), 200);
    assert_eq!(sb.rooms.count().await.unwrap(), 200);
    assert_eq!(sb.presence.online().await.unwrap().len(), 60);
    assert_eq!(b.sync_bans().await.unwrap().active.len(), 30);
    for i in 0..5 {
        sa.nodes.publish(&stats(&format!("n{i}"), 1)).await.unwrap();
    }
    assert_eq!(sb.nodes.live_nodes().await.unwrap().len(), 5);

    // A purge walks the dead node's set and reaches every room it was in.
    let purged = sa.rooms.purge_node("b").await.unwrap();
    assert_eq!(purged.len(), 100);
    assert!(purged.iter().all(|p| p.room_deleted && p.user_count == 0));
    assert_eq!(sa.rooms.count().await.unwrap(), 100);
    assert_eq!(sa.presence.purge_node("b").await.unwrap().len(), 30);
    assert_eq!(sa.presence.online().await.unwrap().len(), 30);
}

#[tokio::test]
async fn every_operation_on_awkward_ids_runs_on_one_slot() {
    let redis = start_cluster();
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b{x}:1").await;
    let (sa, sb) = (a.backends(), b.backends());
    let k = spread_keys();
    // Ids with the characters of key names and hash tags; an empty id too.
    let ids = ["x:members", "a{b}", "}{", "{r:q}", "%7B", "é", "*?[]\\", ""];
    for id in ids {
        assert!(sa.rooms.create(room(id, 3)).await.unwrap(), "{id:?}");
        assert!(!sa.rooms.create(room(id, 3)).await.unwrap(), "{id:?}");
        assert_eq!(
            sa.rooms
                .join(id, member(&format!("s1{id}"), "a"))
                .await
                .unwrap(),
            JoinOutcome::Joined { user_count: 1 }
        );
        assert_eq!(
            sb.rooms
                .join(id, member(&format!("s2{id}"), "b{x}:1"))
                .await
                .unwrap(),
            JoinOutcome::Joined { user_count: 2 }
        );
        assert_eq!(sb.rooms.members(id).await.unwrap().len(), 2);
        assert_eq!(sb.rooms.member_count(id).await.unwrap(), 2);
        sa.history
            .append(&HistoryScope::Room(id.into()), serde_json::json!({"m": id}))
            .await
            .unwrap();
        assert_eq!(
            sb.history
                .recent(&HistoryScope::Room(id.into()), 5)
                .await
                .unwrap()
                .len(),
            1
        );
        sa.history
            .append(
                &HistoryScope::private(id, "other"),
                serde_json::json!({"m": 1}),
            )
            .await
            .unwrap();
        sa.history
            .append(
                &HistoryScope::Namespace(format!("/chat#{id}")),
                serde_json::json!({"m": 1}),
            )
            .await
            .unwrap();
        assert_eq!(sa.games.next(id).await.unwrap(), 1);
        assert!(
            sa.presence
                .socket_connected(online(id, &format!("p{id}"), "a"))
                .await
                .unwrap()
        );
        sa.presence
            .set_username(id, &format!("p{id}"), "renamed")
            .await
            .unwrap();
        let found = sb
            .presence
            .find_socket(&format!("p{id}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.username, "renamed");
        assert_eq!(sb.presence.sockets_of(id).await.unwrap(), vec![found]);
        sa.bans
            .ban(ban(id, "r", chrono::Utc::now(), None))
            .await
            .unwrap();
        assert!(sb.bans.active(id).await.unwrap().is_some());

        // Every key of the room is on the primary that owns the room's slot.
        let owner = redis.slot_owner_of(&k.room(id)).unwrap();
        let mut conn = redis.connect(owner.port).unwrap();
        for key in [
            k.room(id),
            k.room_members(id),
            k.room_member_records(id),
            k.history(&HistoryScope::Room(id.into())),
        ] {
            assert_eq!(key_slot(key.as_bytes()), key_slot(k.room(id).as_bytes()));
            assert_eq!(
                conn.command(&["EXISTS", key.as_str()]).unwrap(),
                Reply::Integer(1),
                "{key}"
            );
        }
    }
    assert_eq!(sb.rooms.list().await.unwrap().len(), ids.len());
    assert_eq!(b.sync_bans().await.unwrap().active.len(), ids.len());

    // A node's re-registration after a loss, and the purge of one with an awkward id.
    let report = b
        .resync(&LocalSnapshot {
            sockets: vec![online("u-b", "pb", "b{x}:1")],
            memberships: vec![LocalMembership {
                room: room("a{b}", 3),
                member: member("s2a{b}", "b{x}:1"),
            }],
        })
        .await
        .unwrap();
    assert_eq!((report.sockets, report.memberships), (1, 1));
    assert_eq!(sa.rooms.member_count("a{b}").await.unwrap(), 2);
    assert_eq!(sa.rooms.member_count("x:members").await.unwrap(), 1);
    let purged = sa.rooms.purge_node("b{x}:1").await.unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(sa.presence.purge_node("b{x}:1").await.unwrap().len(), 1);
    for id in ids {
        assert_eq!(
            sa.rooms.leave(id, &format!("s1{id}")).await.unwrap(),
            LeaveOutcome::Left {
                user_count: 0,
                room_deleted: true
            },
            "{id:?}"
        );
        assert!(
            sa.presence
                .socket_disconnected(id, &format!("p{id}"))
                .await
                .unwrap()
        );
    }
    assert_eq!(sa.rooms.count().await.unwrap(), 0);
    assert!(sa.presence.online().await.unwrap().is_empty());
}

#[tokio::test]
async fn unjoined_rooms_expire_and_the_per_user_limit_holds_across_slots() {
    let redis = start_cluster();
    let mut config = config("a");
    config.retention.unjoined_room = Duration::from_millis(400);
    let a = cluster::redis::connect(&redis.url(), config).await.unwrap();
    let s = a.backends();
    use cluster::CreateOutcome::*;
    for i in 0..3 {
        assert_eq!(
            s.rooms
                .create_bounded(room(&format!("u{i}"), 5), 3)
                .await
                .unwrap(),
            Created
        );
    }
    assert_eq!(
        s.rooms.create_bounded(room("u3", 5), 3).await.unwrap(),
        CreatorAtLimit
    );
    assert_eq!(
        s.rooms.create_bounded(room("u0", 5), 3).await.unwrap(),
        Exists
    );
    // A join takes the room out of its creator's unjoined rooms.
    assert_eq!(
        s.rooms.join("u0", member("s", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    assert_eq!(
        s.rooms.create_bounded(room("u3", 5), 3).await.unwrap(),
        Created
    );
    wait_for(
        "unjoined rooms to expire",
        Duration::from_secs(10),
        || async { (s.rooms.count().await.unwrap() == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        s.rooms.join("u1", member("t", "a")).await.unwrap(),
        JoinOutcome::NoSuchRoom
    );
    assert_eq!(room_ids(&*s.rooms).await, vec!["u0".to_owned()]);
    // The sweep left no index entry behind.
    let k = spread_keys();
    let mut total = 0;
    for (port, _) in keys_per_primary(&redis) {
        let mut conn = redis.connect(port).unwrap();
        for bucket in 0..cluster::keys::INDEX_BUCKETS {
            if let Reply::Integer(n) = conn
                .command(&["ZCARD", k.unjoined_bucket(bucket).as_str()])
                .unwrap_or(Reply::Integer(0))
            {
                total += n;
            }
        }
    }
    assert_eq!(total, 0);
}

/// The sockets one worker keeps joining and leaving the busy room with, and what it believes.
struct Worker {
    sockets: Vec<String>,
    joined: BTreeSet<String>,
    /// Operations that failed, so their effect is unknown.
    uncertain: BTreeSet<String>,
    ok: u64,
    failed: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_rooms_slot_moves_under_joins_and_leaves_and_its_state_stays_whole() {
    let redis = Arc::new(start_cluster());
    let a = node(&redis.url(), "a").await;
    let s = a.backends();
    assert!(s.rooms.create(room("busy", 1000)).await.unwrap());
    // A member that stays, so the room is never emptied (and deleted) by the traffic.
    assert_eq!(
        s.rooms.join("busy", member("anchor", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    let k = spread_keys();
    let slot = key_slot(k.room("busy").as_bytes());
    let from = redis.slot_owner(slot).unwrap();
    let to = redis
        .primaries()
        .unwrap()
        .into_iter()
        .find(|p| p.id != from.id)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        let stop = stop.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut me = Worker {
                sockets: (0..10).map(|i| format!("w{w}s{i}")).collect(),
                joined: BTreeSet::new(),
                uncertain: BTreeSet::new(),
                ok: 0,
                failed: 0,
            };
            let mut round = 0usize;
            while !stop.load(Ordering::Acquire) {
                let sid = me.sockets[round % me.sockets.len()].clone();
                round += 1;
                let result = if me.joined.contains(&sid) {
                    s.rooms.leave("busy", &sid).await.map(|o| {
                        assert!(matches!(o, LeaveOutcome::Left { .. }), "{sid}: {o:?}");
                        me.joined.remove(&sid);
                    })
                } else {
                    s.rooms.join("busy", member(&sid, "a")).await.map(|o| {
                        assert!(
                            matches!(
                                o,
                                JoinOutcome::Joined { .. } | JoinOutcome::AlreadyMember { .. }
                            ),
                            "{sid}: {o:?}"
                        );
                        me.joined.insert(sid.clone());
                    })
                };
                match result {
                    Ok(()) => {
                        me.ok += 1;
                        done.fetch_add(1, Ordering::AcqRel);
                        me.uncertain.remove(&sid);
                    }
                    Err(e) => {
                        eprintln!("operation on {sid} failed: {e}");
                        me.failed += 1;
                        me.uncertain.insert(sid);
                    }
                }
            }
            me
        }));
    }
    // Let the traffic run, then move the slot while it does.
    wait_for(
        "traffic before the move",
        Duration::from_secs(20),
        || async { (s.rooms.member_count("busy").await.unwrap() > 1).then_some(()) },
    )
    .await;
    let mover = redis.clone();
    let moved = tokio::task::spawn_blocking(move || mover.migrate_slot(slot, &to))
        .await
        .unwrap()
        .unwrap();
    assert!(moved >= 2, "the room's keys moved: {moved}");
    // Traffic goes on against the new owner for a while after the move.
    let at_move = done.load(Ordering::Acquire);
    wait_for(
        "200 operations after the move",
        Duration::from_secs(30),
        || async { (done.load(Ordering::Acquire) >= at_move + 200).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Release);
    let mut expected = BTreeSet::from(["anchor".to_owned()]);
    let mut uncertain = BTreeSet::new();
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let me = w.await.unwrap();
        expected.extend(me.joined);
        uncertain.extend(me.uncertain);
        ok += me.ok;
        failed += me.failed;
    }
    // An operation that failed may or may not have happened: settle those sockets by asking.
    for sid in &uncertain {
        let _ = s.rooms.leave("busy", sid).await.unwrap();
        expected.remove(sid);
    }
    let members: BTreeSet<String> = s
        .rooms
        .members("busy")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.socket_id)
        .collect();
    assert_eq!(members, expected, "after {ok} operations, {failed} failed");
    // The node's memberships match the room's members exactly.
    let raw = raw_client(&redis.url()).await;
    let tokens: Vec<String> = raw.smembers(k.node_memberships("a")).await.unwrap();
    let in_set: BTreeSet<String> = tokens
        .iter()
        .filter_map(|t| t.strip_prefix("4:busy").map(str::to_owned))
        .collect();
    assert_eq!(in_set, expected);
    // Every key of the room now lives on the new owner.
    let owner = redis.slot_owner(slot).unwrap();
    assert_ne!(owner.id, from.id);
    let mut conn = redis.connect(owner.port).unwrap();
    assert_eq!(
        conn.command(&["EXISTS", k.room("busy").as_str()]).unwrap(),
        Reply::Integer(1)
    );
    assert!(ok > 100, "{ok} operations succeeded");
    // Redirections are fred's to follow: the move costs no failed operation.
    assert_eq!(failed, 0, "{failed} of {} operations failed", ok + failed);
}

/// A dead node's sockets and memberships sit on many slots (each user's, each room's): the
/// monitor of a peer still finds its death by the liveness key on the node's slot and purges
/// all of it.
#[tokio::test]
async fn a_dead_nodes_state_is_purged_from_every_slot() {
    let redis = start_cluster();
    let url = redis.url();
    let live = |id: &str| {
        let mut c = config(id)
            .with_stats_ttl(Duration::from_secs(60))
            .with_liveness_ttl(Duration::from_millis(1200));
        c.monitor.interval = Duration::from_millis(200);
        cluster::redis::connect(&url, c)
    };
    let a = live("a").await.unwrap();
    let c = live("c{1}").await.unwrap();
    let _beat_a = a.spawn_liveness();
    let beat_c = c.spawn_liveness();
    for n in [&a, &c] {
        publish_own_stats(n).await;
    }
    let (sa, sc) = (a.backends(), c.backends());
    for i in 0..20 {
        let id = format!("r{i}");
        assert!(sa.rooms.create(room(&id, 5)).await.unwrap());
        if i % 2 == 0 {
            sa.rooms
                .join(&id, member(&format!("a{i}"), "a"))
                .await
                .unwrap();
        }
        sc.rooms
            .join(&id, member(&format!("c{i}"), "c{1}"))
            .await
            .unwrap();
        sc.presence
            .socket_connected(online(&format!("user-{i}"), &format!("c{i}"), "c{1}"))
            .await
            .unwrap();
    }
    let (_monitor, mut events) = a.start_monitor();
    drop(beat_c);
    drop(c);
    let left = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await.unwrap() {
                cluster::redis::NodeEvent::NodeLeft(left) if left.server_id == "c{1}" => {
                    return left;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("c purged within its liveness TTL and a few monitor rounds");
    assert!(left.purged_here);
    assert_eq!(left.went_offline.len(), 20);
    assert_eq!(left.purged.len(), 20);
    assert_eq!(left.purged.iter().filter(|p| p.room_deleted).count(), 10);
    assert_eq!(sa.rooms.count().await.unwrap(), 10);
    assert!(sa.presence.online().await.unwrap().is_empty());
    assert!(sa.presence.find_socket("c3").await.unwrap().is_none());
    let k = spread_keys();
    let raw = raw_client(&redis.url()).await;
    for key in [k.node_sockets("c{1}"), k.node_memberships("c{1}")] {
        let n: i64 = raw.exists(key.as_str()).await.unwrap();
        assert_eq!(n, 0, "{key}");
    }
}

/// The behaviour `redis_state.rs` pins for the classic layout, held in the spread one: same
/// outcomes, orders and counts, on a real cluster.
#[tokio::test]
async fn the_spread_layout_behaves_as_the_classic_one() {
    let redis = start_cluster();
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let rooms = a.backends().rooms;

    // Creation order, duplicates, records.
    assert!(rooms.create(room("first", 10)).await.unwrap());
    assert!(rooms.create(room("second", 3)).await.unwrap());
    assert!(rooms.create(room("third", 10)).await.unwrap());
    assert!(!rooms.create(room("first", 99)).await.unwrap());
    assert_eq!(rooms.get("first").await.unwrap().unwrap().max_users, 10);
    assert!(rooms.get("missing").await.unwrap().is_none());
    assert_eq!(room_ids(&*rooms).await, ["first", "second", "third"]);

    // Joins up to the capacity, joining order, leaves down to the deletion.
    rooms.create(room("r", 2)).await.unwrap();
    assert_joins_until_full(&*rooms, "r").await;
    assert_eq!(
        rooms.members("r").await.unwrap(),
        vec![member("s1", "a"), member("s2", "b")]
    );
    assert_eq!(
        rooms.leave("nope", "s1").await.unwrap(),
        LeaveOutcome::NotMember
    );
    assert_leaves_until_deleted(&*rooms, "r").await;
    assert!(rooms.create(room("r", 2)).await.unwrap());
    assert_eq!(rooms.member_count("r").await.unwrap(), 0);
    let raw = raw_client(&redis.url()).await;
    let left: i64 = raw
        .scard(spread_keys().node_memberships("a"))
        .await
        .unwrap();
    assert_eq!(left, 0, "leaving also clears the node's membership index");

    // A purge removes only the dead node's members.
    scenarios::purge_node_removes_only_that_nodes_members(&*rooms).await;

    // Two nodes racing for the last places never exceed the capacity.
    scenarios::two_nodes_racing_joins_never_exceed_capacity(&a.backends(), &b.backends()).await;

    // Presence: first and last sockets, lookups, renames, purge.
    let (pa, pb) = (a.backends().presence, b.backends().presence);
    scenarios::presence_first_last_lookup_rename_and_purge(&*pa, &*pb).await;
}

/// After the cluster lost its data, a node's re-registration puts back its sockets, its
/// memberships and the rooms they are in, on their own slots and in the indexes; a second one
/// changes nothing, and one with less in it removes what the node no longer holds.
#[tokio::test]
async fn a_resync_rebuilds_what_the_cluster_lost() {
    let redis = start_cluster();
    let a = node(&redis.url(), "a").await;
    let s = a.backends();
    let snapshot = LocalSnapshot {
        sockets: (0..6)
            .map(|i| online(&format!("u{i}"), &format!("s{i}"), "a"))
            .collect(),
        memberships: (0..6)
            .map(|i| LocalMembership {
                room: room(&format!("room-{}", i % 3), 10),
                member: member(&format!("s{i}"), "a"),
            })
            .collect(),
    };
    for p in redis.primaries().unwrap() {
        let mut conn = redis.connect(p.port).unwrap();
        conn.command(&["FLUSHALL"]).unwrap();
    }
    let report = a.resync(&snapshot).await.unwrap();
    assert_eq!(
        (report.sockets, report.memberships, report.rooms_recreated),
        (6, 6, 3)
    );
    let counts = room_counts(&*s.rooms).await;
    let mut counts_sorted = counts.clone();
    counts_sorted.sort();
    assert_eq!(
        counts_sorted,
        [
            ("room-0".to_owned(), 2),
            ("room-1".to_owned(), 2),
            ("room-2".to_owned(), 2)
        ]
    );
    assert_eq!(s.presence.online().await.unwrap().len(), 6);
    // A repeat changes nothing.
    let again = a.resync(&snapshot).await.unwrap();
    assert_eq!(again.rooms_recreated, 0);
    assert_eq!(room_counts(&*s.rooms).await.len(), 3);
    assert_eq!(s.rooms.members("room-1").await.unwrap().len(), 2);

    // The node no longer holds room-2 nor sockets s4, s5.
    let smaller = LocalSnapshot {
        sockets: snapshot.sockets[..4].to_vec(),
        memberships: snapshot
            .memberships
            .iter()
            .filter(|m| m.room.id != "room-2")
            .cloned()
            .collect(),
    };
    a.resync(&smaller).await.unwrap();
    assert_eq!(room_ids(&*s.rooms).await.len(), 2);
    assert!(s.rooms.get("room-2").await.unwrap().is_none());
    assert_eq!(s.presence.online().await.unwrap().len(), 4);
    assert!(s.presence.find_socket("s5").await.unwrap().is_none());
    assert!(s.presence.sockets_of("u5").await.unwrap().is_empty());
}
