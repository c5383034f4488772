//! Scenarios both Redis key layouts must pass alike: `redis_state.rs` runs them on one
//! redis-server with the classic layout, `redis_cluster_spread.rs` on a three-primary cluster
//! with the spread one.

use std::collections::HashSet;

use cluster::{JoinOutcome, Presence, RoomRegistry, StateBackends};

use super::{member, online, room};

/// A purge removes only the dead node's members (rooms `r`, `q`, `weird:id`), deletes the
/// rooms it empties, and a second purge finds nothing. Room `r` may exist already, empty.
pub async fn purge_node_removes_only_that_nodes_members(rooms: &dyn RoomRegistry) {
    rooms.create(room("r", 5)).await.unwrap();
    rooms.create(room("q", 5)).await.unwrap();
    rooms.create(room("weird:id", 5)).await.unwrap();
    rooms.join("r", member("s1", "dead")).await.unwrap();
    rooms.join("r", member("s2", "alive")).await.unwrap();
    rooms.join("q", member("s3", "dead")).await.unwrap();
    rooms.join("weird:id", member("s:4", "dead")).await.unwrap();
    let mut purged = rooms.purge_node("dead").await.unwrap();
    purged.sort_by(|x, y| x.room_id.cmp(&y.room_id));
    assert_eq!(purged.len(), 3);
    assert_eq!(purged[0].room_id, "q");
    assert!(purged[0].room_deleted);
    assert_eq!(purged[0].user_count, 0);
    assert_eq!(purged[1].room_id, "r");
    assert_eq!(purged[1].member, member("s1", "dead"));
    assert_eq!((purged[1].user_count, purged[1].room_deleted), (1, false));
    assert_eq!(purged[2].room_id, "weird:id");
    assert_eq!(purged[2].member.socket_id, "s:4");
    assert_eq!(
        rooms.members("r").await.unwrap(),
        vec![member("s2", "alive")]
    );
    assert!(rooms.get("q").await.unwrap().is_none());
    assert!(rooms.get("weird:id").await.unwrap().is_none());
    assert!(
        rooms.purge_node("dead").await.unwrap().is_empty(),
        "a second purge finds nothing"
    );
}

/// Two nodes racing for the last places of room `hot` never exceed its capacity, and no
/// count is given twice.
pub async fn two_nodes_racing_joins_never_exceed_capacity(a: &StateBackends, b: &StateBackends) {
    const CAPACITY: usize = 7;
    a.rooms.create(room("hot", CAPACITY as u32)).await.unwrap();
    let mut tasks = Vec::new();
    for (backends, id) in [(a, "a"), (b, "b")] {
        for i in 0..20 {
            let rooms = backends.rooms.clone();
            tasks.push(tokio::spawn(async move {
                rooms
                    .join("hot", member(&format!("{id}-{i}"), id))
                    .await
                    .unwrap()
            }));
        }
    }
    let mut joined = 0;
    let mut counts = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            JoinOutcome::Joined { user_count } => {
                joined += 1;
                assert!(counts.insert(user_count), "count {user_count} given twice");
            }
            JoinOutcome::Full => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(joined, CAPACITY);
    assert_eq!(counts, (1..=CAPACITY).collect());
    assert_eq!(b.rooms.member_count("hot").await.unwrap(), CAPACITY);
}

/// Presence seen from two nodes: first and last sockets, lookups, renames (only of one's own
/// socket), and the purge of a dead node.
pub async fn presence_first_last_lookup_rename_and_purge(pa: &dyn Presence, pb: &dyn Presence) {
    assert!(pa.socket_connected(online("u", "s1", "a")).await.unwrap());
    assert!(
        !pb.socket_connected(online("u", "s2", "b")).await.unwrap(),
        "second socket on another node is not a first"
    );
    assert!(pb.socket_connected(online("v", "s3", "b")).await.unwrap());
    assert!(
        !pa.socket_connected(online("u", "s1", "a")).await.unwrap(),
        "re-registering a socket is not a first"
    );
    let mut all = pa.online().await.unwrap();
    all.sort_by(|x, y| x.socket_id.cmp(&y.socket_id));
    assert_eq!(
        all,
        vec![
            online("u", "s1", "a"),
            online("u", "s2", "b"),
            online("v", "s3", "b")
        ]
    );
    let mut of_u = pb.sockets_of("u").await.unwrap();
    of_u.sort_by(|x, y| x.socket_id.cmp(&y.socket_id));
    assert_eq!(of_u, vec![online("u", "s1", "a"), online("u", "s2", "b")]);
    assert!(pa.sockets_of("nobody").await.unwrap().is_empty());
    assert_eq!(
        pb.find_socket("s1").await.unwrap(),
        Some(online("u", "s1", "a"))
    );
    assert!(pb.find_socket("zz").await.unwrap().is_none());

    pa.set_username("u", "s1", "Renamed \"quoted\" / é")
        .await
        .unwrap();
    pa.set_username("other-user", "s2", "ignored")
        .await
        .unwrap();
    let s1 = pb.find_socket("s1").await.unwrap().unwrap();
    assert_eq!(s1.username, "Renamed \"quoted\" / é");
    assert_eq!(
        pb.find_socket("s2").await.unwrap().unwrap().username,
        "name-u"
    );

    assert!(!pa.socket_disconnected("u", "s1").await.unwrap());
    assert!(
        pb.socket_disconnected("u", "s2").await.unwrap(),
        "last socket"
    );
    assert!(
        !pb.socket_disconnected("u", "s2").await.unwrap(),
        "a second disconnect is not a second offline"
    );

    // Purge: w has sockets on both nodes (stays online), x only on the dead one.
    pa.socket_connected(online("w", "w1", "dead"))
        .await
        .unwrap();
    pa.socket_connected(online("w", "w2", "a")).await.unwrap();
    pa.socket_connected(online("x", "x1", "dead"))
        .await
        .unwrap();
    pa.socket_connected(online("x", "x2", "dead"))
        .await
        .unwrap();
    let offline = pb.purge_node("dead").await.unwrap();
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0].user_id, "x");
    assert_eq!(offline[0].node_id, "dead");
    assert!(pa.find_socket("w1").await.unwrap().is_none());
    assert_eq!(
        pa.sockets_of("w").await.unwrap(),
        vec![online("w", "w2", "a")]
    );
    assert!(pa.sockets_of("x").await.unwrap().is_empty());
    assert!(pb.purge_node("dead").await.unwrap().is_empty());
}
