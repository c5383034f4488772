//! Redis killed and restarted empty: state calls fail fast meanwhile, the control subscription
//! comes back, and a resync restores what each node holds.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cluster::bus::{ControlEvent, SystemAnnouncement};
use cluster::redis::{ClusterError, LocalMembership, LocalSnapshot};
use cluster::{JoinOutcome, StateError};
use common::*;
use testkit::RedisServer;

#[tokio::test]
async fn first_connection_must_succeed() {
    let url = format!("redis://127.0.0.1:{}", testkit::free_port());
    let err = cluster::redis::connect(&url, config("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Connect { .. }), "{err}");
    let err = cluster::redis::connect("http://nowhere", config("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::InvalidUrl { .. }), "{err}");
}

#[tokio::test]
async fn outage_fails_fast_then_subscription_and_resync_restore_the_cluster() {
    let mut server = redis();
    let port = server.port();
    let url = server.url();
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    let sa = a.backends();
    let sb = b.backends();

    // a holds two sockets of one user and a membership; b holds one socket in the same room.
    sa.nodes.publish(&stats("a", 2)).await.unwrap();
    let lobby = room("lobby", 10);
    sa.rooms.create(lobby.clone()).await.unwrap();
    sa.presence
        .socket_connected(online("alice", "a1", "a"))
        .await
        .unwrap();
    sa.presence
        .socket_connected(online("alice", "a2", "a"))
        .await
        .unwrap();
    sa.rooms.join("lobby", member("a1", "a")).await.unwrap();
    sb.presence
        .socket_connected(online("bob", "b1", "b"))
        .await
        .unwrap();
    sb.rooms.join("lobby", member("b1", "b")).await.unwrap();
    let mut reconnects = a.reconnects();
    let mut resubscribed_b = b.control_resubscriptions();
    let (rec_a, rec_b) = (stats("a", 2), stats("b", 1));
    let _hb_a = a.spawn_heartbeat(move || rec_a.clone());
    let _hb_b = b.spawn_heartbeat(move || rec_b.clone());
    let (mon_a, mut events_a) = a.start_monitor();
    let (mon_b, mut events_b) = b.start_monitor();

    // "Fails fast" is checked by what each call's error says, not by how long it took: a call
    // refused because the node already knows its connection is down was never sent, so it
    // cannot have queued behind the dead connection (that one would end in a command timeout).
    server.kill();
    wait_for(
        "a to notice the outage",
        Duration::from_secs(30),
        || async { (!a.is_connected() && !a.sends_commands()).then_some(()) },
    )
    .await;
    let err = sa.rooms.get("lobby").await.unwrap_err();
    assert!(matches!(err, StateError::NotConnected(_)), "{err}");
    assert!(err.is_refused_while_down(), "{err}");
    let err = sa
        .presence
        .socket_connected(online("carol", "a3", "a"))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::NotConnected(_)), "{err}");
    assert!(err.is_refused_while_down(), "{err}");
    let err = a
        .bus()
        .publish_announcement(SystemAnnouncement {
            message: "lost".into(),
            extra: serde_json::Map::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::NotConnected(_)), "{err}");
    assert!(err.is_refused_while_down(), "{err}");
    // Still failing fast well into the outage (b's monitor has gone through several rounds, each
    // failing), while fred keeps retrying.
    wait_for(
        "b to notice the outage",
        Duration::from_secs(30),
        || async { (!b.is_connected() && !b.sends_commands()).then_some(()) },
    )
    .await;
    after_rounds(&mon_b, 5).await;
    for _ in 0..10 {
        let err = sb.games.next("g").await.unwrap_err();
        assert!(matches!(err, StateError::NotConnected(_)), "{err}");
        assert!(err.is_refused_while_down(), "{err}");
    }
    assert!(!a.is_connected() && !b.is_connected());

    // Redis comes back empty (no persistence) on the same port.
    let _server = RedisServer::start_on(port).unwrap_or_else(|e| panic!("{e}"));
    tokio::time::timeout(Duration::from_secs(30), reconnects.changed())
        .await
        .expect("reconnect notification within 30 s")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), resubscribed_b.changed())
        .await
        .expect("control channel resubscribed within 30 s")
        .unwrap();
    wait_for("both nodes connected", Duration::from_secs(30), || async {
        (a.is_connected() && b.is_connected()).then_some(())
    })
    .await;
    assert!(
        sa.rooms.get("lobby").await.unwrap().is_none(),
        "the restarted Redis is empty"
    );

    // Each node re-registers what it holds. Meanwhile a3 connected locally on a.
    let report_a = a
        .resync(&LocalSnapshot {
            sockets: vec![
                online("alice", "a1", "a"),
                online("alice", "a2", "a"),
                online("carol", "a3", "a"),
            ],
            memberships: vec![LocalMembership {
                room: lobby.clone(),
                member: member("a1", "a"),
            }],
        })
        .await
        .unwrap();
    assert_eq!(report_a.sockets, 3);
    assert_eq!(report_a.memberships, 1);
    assert_eq!(report_a.rooms_recreated, 1);
    assert!(report_a.stats_republished);
    assert!(
        !report_a.purged_by_peers,
        "Redis lost everything, but no peer purged a: nobody announced its users offline"
    );
    let report_b = b
        .resync(&LocalSnapshot {
            sockets: vec![online("bob", "b1", "b")],
            memberships: vec![LocalMembership {
                room: lobby.clone(),
                member: member("b1", "b"),
            }],
        })
        .await
        .unwrap();
    assert_eq!(
        report_b.rooms_recreated, 0,
        "a already brought the room back"
    );

    assert_eq!(sb.rooms.get("lobby").await.unwrap(), Some(lobby));
    assert_eq!(
        sb.rooms.members("lobby").await.unwrap(),
        vec![member("a1", "a"), member("b1", "b")]
    );
    assert_eq!(sb.presence.online().await.unwrap().len(), 4);
    assert_eq!(sb.presence.sockets_of("alice").await.unwrap().len(), 2);
    assert!(
        !sb.presence
            .socket_connected(online("carol", "b9", "b"))
            .await
            .unwrap(),
        "carol is known online again"
    );
    assert!(
        sb.nodes
            .live_nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.server_id == "a"),
        "a's stats record was republished"
    );
    // Capacity and membership checks work on the restored counts.
    assert_eq!(
        sb.rooms.join("lobby", member("a1", "a")).await.unwrap(),
        JoinOutcome::AlreadyMember { user_count: 2 }
    );

    // Several monitor rounds later nobody has taken a live node for dead.
    after_rounds(&mon_a, 6).await;
    after_rounds(&mon_b, 6).await;
    for events in [&mut events_a, &mut events_b] {
        while let Ok(ev) = events.try_recv() {
            assert!(
                !matches!(ev, cluster::redis::NodeEvent::NodeLeft(_)),
                "live node reported gone after the restart: {ev:?}"
            );
        }
    }
    assert_eq!(sb.presence.online().await.unwrap().len(), 5);

    // The control channel works again in both directions.
    let mut sub_b = b.bus().subscribe();
    a.bus()
        .publish_announcement(SystemAnnouncement {
            message: "back".into(),
            extra: serde_json::Map::new(),
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub_b.recv())
        .await
        .expect("announcement after the restart")
        .unwrap();
    assert!(matches!(got.event, ControlEvent::SystemAnnouncement(ref s) if s.message == "back"));
}

#[tokio::test]
async fn resync_replaces_a_previous_runs_leftovers() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let s = a.backends();
    s.rooms.create(room("old", 5)).await.unwrap();
    s.rooms.create(room("kept", 5)).await.unwrap();
    s.presence
        .socket_connected(online("ghost", "g1", "a"))
        .await
        .unwrap();
    s.rooms.join("old", member("g1", "a")).await.unwrap();
    s.rooms.join("kept", member("g2", "a")).await.unwrap();
    s.rooms.join("kept", member("x1", "other")).await.unwrap();
    let report = a.resync(&LocalSnapshot::default()).await.unwrap();
    assert_eq!((report.sockets, report.memberships), (0, 0));
    assert!(!report.stats_republished, "nothing was published yet");
    assert!(s.presence.online().await.unwrap().is_empty());
    assert!(
        s.rooms.get("old").await.unwrap().is_none(),
        "emptied room deleted"
    );
    assert_eq!(
        s.rooms.members("kept").await.unwrap(),
        vec![member("x1", "other")],
        "other nodes' members stay"
    );
}

#[tokio::test]
async fn a_restarted_node_purges_its_previous_runs_leftovers() {
    let server = redis();
    let old = node(&server.url(), "a").await;
    let s = old.backends();
    s.presence
        .socket_connected(online("u", "old1", "a"))
        .await
        .unwrap();
    s.presence
        .socket_connected(online("v", "v1", "b"))
        .await
        .unwrap();
    s.rooms.create(room("r", 5)).await.unwrap();
    s.rooms.join("r", member("old1", "a")).await.unwrap();
    drop(old);
    let new = node(&server.url(), "a").await;
    let left = new.purge_own_leftovers().await.unwrap();
    assert_eq!(left.went_offline, vec![online("u", "old1", "a")]);
    assert_eq!(left.purged.len(), 1);
    assert!(left.purged[0].room_deleted);
    let s = new.backends();
    assert_eq!(
        s.presence.online().await.unwrap(),
        vec![online("v", "v1", "b")]
    );
    assert!(
        new.purge_own_leftovers()
            .await
            .unwrap()
            .went_offline
            .is_empty()
    );
}
