//! Node stats keys, aggregation with SCAN, the heartbeat and the dead-node monitor, against a real
//! redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cluster::bus::ServerShutdown;
use cluster::redis::{NodeEvent, NodeLeft};
use common::*;
use fred::prelude::*;
use tokio::sync::mpsc;

#[tokio::test]
async fn stats_keys_carry_a_ttl_and_aggregate_over_scan() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let raw = raw_client(&server.url()).await;
    // Unrelated keys that a SCAN MATCH must skip, enough to need more than one SCAN page.
    for i in 0..300 {
        let _: () = raw
            .set(format!("noise:{i}"), "x", None, None, false)
            .await
            .unwrap();
    }
    a.backends().nodes.publish(&stats("a", 3)).await.unwrap();
    b.backends().nodes.publish(&stats("b", 4)).await.unwrap();
    let ttl: i64 = raw.pttl("cluster:stats:a").await.unwrap();
    assert!(
        ttl > 0 && ttl <= 1500,
        "stats key has the configured TTL: {ttl}"
    );
    let json: String = raw.get("cluster:stats:b").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for field in [
        "serverId",
        "hostname",
        "version",
        "uptimeSecs",
        "connections",
        "rooms",
        "messagesIn",
        "messagesOut",
        "rssBytes",
        "startedAt",
        "lastSeen",
    ] {
        assert!(v.get(field).is_some(), "stats record lacks {field}: {json}");
    }

    let agg = cluster::cluster_stats(a.backends().nodes.as_ref())
        .await
        .unwrap();
    let ids: Vec<&str> = agg.nodes.iter().map(|n| n.server_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(agg.totals.nodes, 2);
    assert_eq!(agg.totals.load.connections.main, 7);
    assert_eq!(agg.totals.load.total_connections, 9);

    let cli = cluster::redis::fetch_cluster_stats(&server.url(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(cli.totals, agg.totals);
    assert!(cli.render_table().contains("TOTAL (2 nodes)"));

    b.backends().nodes.withdraw("b").await.unwrap();
    let live = a.backends().nodes.live_nodes().await.unwrap();
    assert_eq!(live.len(), 1);
    // Without refresh the key expires on its own.
    wait_for("a's stats key to expire", Duration::from_secs(5), || {
        let nodes = a.backends().nodes;
        async move { nodes.live_nodes().await.unwrap().is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn fetch_cluster_stats_reports_an_unreachable_redis() {
    let url = format!("redis://127.0.0.1:{}", testkit::free_port());
    let err = cluster::redis::fetch_cluster_stats(&url, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, cluster::redis::ClusterError::Connect { .. }),
        "{err}"
    );
    let err = cluster::redis::fetch_cluster_stats("http://x", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, cluster::redis::ClusterError::InvalidUrl { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn heartbeat_keeps_the_key_alive_and_withdraws_it() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let heartbeat = a.spawn_heartbeat(|| stats("a", 1));
    let nodes = a.backends().nodes;
    wait_for("the first heartbeat", Duration::from_secs(3), || {
        let nodes = nodes.clone();
        async move { (nodes.live_nodes().await.unwrap().len() == 1).then_some(()) }
    })
    .await;
    // Three TTLs later the key is still there because it is refreshed.
    let end = tokio::time::Instant::now() + Duration::from_millis(4500);
    while tokio::time::Instant::now() < end {
        assert_eq!(nodes.live_nodes().await.unwrap().len(), 1, "key lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    heartbeat.stop_and_withdraw().await.unwrap();
    assert!(nodes.live_nodes().await.unwrap().is_empty());
}

async fn next_event(rx: &mut mpsc::Receiver<NodeEvent>, what: &str) -> NodeEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no node event ({what}) within 10 s"))
        .unwrap_or_else(|| panic!("monitor stopped while waiting for {what}"))
}

async fn next_left(rx: &mut mpsc::Receiver<NodeEvent>, what: &str) -> NodeLeft {
    loop {
        if let NodeEvent::NodeLeft(left) = next_event(rx, what).await {
            return left;
        }
    }
}

#[tokio::test]
async fn an_expired_node_is_reported_gone_and_purged_exactly_once() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let c = node(&server.url(), "c").await;
    for n in [&a, &b, &c] {
        publish_own_stats(n).await;
    }
    let _hb_a = a.spawn_heartbeat(|| stats("a", 1));
    let _hb_b = b.spawn_heartbeat(|| stats("b", 1));
    let hb_c = c.spawn_heartbeat(|| stats("c", 1));
    let (mon_a, mut rx_a) = a.start_monitor();
    let (mon_b, mut rx_b) = b.start_monitor();

    // c holds state: a user only there, a user also on a, and room memberships.
    let cs = c.backends();
    cs.presence
        .socket_connected(online("only-c", "c1", "c"))
        .await
        .unwrap();
    cs.presence
        .socket_connected(online("both", "c2", "c"))
        .await
        .unwrap();
    a.backends()
        .presence
        .socket_connected(online("both", "a1", "a"))
        .await
        .unwrap();
    cs.rooms.create(room("r", 5)).await.unwrap();
    cs.rooms.join("r", member("c1", "c")).await.unwrap();
    cs.rooms.create(room("shared", 5)).await.unwrap();
    cs.rooms.join("shared", member("c2", "c")).await.unwrap();
    a.backends()
        .rooms
        .join("shared", member("a1", "a"))
        .await
        .unwrap();

    for (rx, mon, peer) in [(&mut rx_a, &mon_a, "b"), (&mut rx_b, &mon_b, "a")] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            if let NodeEvent::NodeJoined { server_id } = next_event(rx, "joins").await {
                seen.push(server_id);
            }
        }
        seen.sort();
        let mut expected = vec!["c".to_owned(), peer.to_owned()];
        expected.sort();
        assert_eq!(seen, expected);
        assert_eq!(mon.live_peers(), expected);
    }

    // c stops refreshing: "dies". Its key lapses after the TTL (1.5 s).
    drop(hb_c);
    drop(c);
    let left_a = next_left(&mut rx_a, "c left (a)").await;
    let left_b = next_left(&mut rx_b, "c left (b)").await;
    assert_eq!(left_a.server_id, "c");
    assert_eq!(left_b.server_id, "c");
    assert!(
        left_a.purged_here ^ left_b.purged_here,
        "exactly one node purges: a={} b={}",
        left_a.purged_here,
        left_b.purged_here
    );
    let purger = if left_a.purged_here { &left_a } else { &left_b };
    let other = if left_a.purged_here { &left_b } else { &left_a };
    assert!(other.went_offline.is_empty() && other.purged.is_empty());
    assert_eq!(purger.went_offline, vec![online("only-c", "c1", "c")]);
    let mut purged: Vec<(String, usize, bool)> = purger
        .purged
        .iter()
        .map(|p| (p.room_id.clone(), p.user_count, p.room_deleted))
        .collect();
    purged.sort();
    assert_eq!(
        purged,
        vec![("r".into(), 0, true), ("shared".into(), 1, false)]
    );
    let state = a.backends();
    assert!(state.presence.find_socket("c1").await.unwrap().is_none());
    assert_eq!(state.presence.sockets_of("both").await.unwrap().len(), 1);
    assert!(state.rooms.get("r").await.unwrap().is_none());
    assert_eq!(state.rooms.member_count("shared").await.unwrap(), 1);
    assert_eq!(mon_a.live_peers(), ["b"]);

    // No second report for the same death in the following rounds.
    after_rounds(&mon_a, 4).await;
    after_rounds(&mon_b, 4).await;
    for rx in [&mut rx_a, &mut rx_b] {
        while let Ok(ev) = rx.try_recv() {
            assert!(
                !matches!(ev, NodeEvent::NodeLeft(_)),
                "second report: {ev:?}"
            );
        }
    }
}

#[tokio::test]
async fn server_shutdown_makes_peers_drop_the_node_at_once() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let d = node(&server.url(), "d").await;
    let _hb_a = a.spawn_heartbeat(|| stats("a", 1));
    // d keeps its key fresh the whole time, as a draining node does (same process, same start).
    let d_record = stats("d", 1);
    let _hb_d = d.spawn_heartbeat(move || d_record.clone());
    d.backends()
        .presence
        .socket_connected(online("u", "d1", "d"))
        .await
        .unwrap();
    let (mon_a, mut rx_a) = a.start_monitor();
    loop {
        if let NodeEvent::NodeJoined { server_id } = next_event(&mut rx_a, "d joined").await {
            assert_eq!(server_id, "d");
            break;
        }
    }
    d.bus()
        .publish_server_shutdown(ServerShutdown::default())
        .await
        .unwrap();
    let left = next_left(&mut rx_a, "d left").await;
    assert_eq!(left.server_id, "d");
    assert!(
        !left.purged_here && left.went_offline.is_empty(),
        "a draining node's users are still connected: nothing is purged on server_shutdown"
    );
    assert!(mon_a.live_peers().is_empty());
    assert_eq!(
        a.backends().presence.sockets_of("u").await.unwrap(),
        vec![online("u", "d1", "d")],
        "the draining node's user stays online until its own sockets close"
    );
    // Its key is still there (draining), yet it is not seen as joining again.
    after_rounds(&mon_a, 4).await;
    if let Ok(ev) = rx_a.try_recv() {
        panic!("unexpected event after shutdown: {ev:?}");
    }
}

#[tokio::test]
async fn state_of_a_node_that_died_unwatched_is_purged() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let _hb_a = a.spawn_heartbeat(|| stats("a", 1));
    // "ghost" never had a stats key this monitor saw: it died before a started watching.
    let s = a.backends();
    s.presence
        .socket_connected(online("g", "g1", "ghost"))
        .await
        .unwrap();
    s.rooms.create(room("r", 5)).await.unwrap();
    s.rooms.join("r", member("g1", "ghost")).await.unwrap();
    let (_mon, mut rx) = a.start_monitor();
    let left = next_left(&mut rx, "ghost purged").await;
    assert_eq!(left.server_id, "ghost");
    assert!(left.purged_here);
    assert_eq!(left.went_offline, vec![online("g", "g1", "ghost")]);
    assert_eq!(left.purged.len(), 1);
    assert!(s.rooms.get("r").await.unwrap().is_none());
}

#[tokio::test]
async fn a_node_js_peer_with_its_own_record_shape_counts_as_live() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let raw = raw_client(&server.url()).await;
    let _: () = raw
        .set(
            "cluster:stats:node-js-1",
            r#"{"serverId":"node-js-1","connections":3,"uptime":12.5,"timestamp":1764100000000}"#,
            Some(Expiration::EX(30)),
            None,
            false,
        )
        .await
        .unwrap();
    let (mon, mut rx) = a.start_monitor();
    assert_eq!(
        next_event(&mut rx, "node-js joined").await,
        NodeEvent::NodeJoined {
            server_id: "node-js-1".into()
        }
    );
    assert_eq!(mon.live_peers(), ["node-js-1"]);
    let stats = cluster::cluster_stats(a.backends().nodes.as_ref())
        .await
        .unwrap();
    assert!(
        stats.nodes.is_empty(),
        "only records this crate can read are listed"
    );
}
