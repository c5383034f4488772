//! Fast death detection and self re-registration, against a real redis-server: a node that stops
//! beating is purged within its liveness TTL although its stats key (the contract's, a minute by
//! default) would live on, and a node that peers purged while it was only stalled notices and
//! registers what it holds again.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cluster::redis::{LocalSnapshot, NodeEvent, NodeLeft, RedisCluster, RedisStateConfig};
use common::*;
use fred::prelude::*;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Stats records that outlive the test; deaths can only come from the liveness keys.
const STATS_TTL: Duration = Duration::from_secs(60);
const LIVENESS_TTL: Duration = Duration::from_millis(1200);

fn live_config(id: &str) -> RedisStateConfig {
    let mut c = config(id)
        .with_stats_ttl(STATS_TTL)
        .with_liveness_ttl(LIVENESS_TTL);
    c.monitor.interval = Duration::from_millis(200);
    c
}

async fn live_node(url: &str, id: &str) -> RedisCluster {
    cluster::redis::connect(url, live_config(id))
        .await
        .unwrap_or_else(|e| panic!("connect {id}: {e}"))
}

async fn next_matching(
    rx: &mut mpsc::Receiver<NodeEvent>,
    what: &str,
    within: Duration,
    pick: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
            .unwrap_or_else(|| panic!("monitor stopped while waiting for {what}"));
        if pick(&ev) {
            return ev;
        }
    }
}

/// Waits until `id`'s first liveness beat has landed.
async fn beating(raw: &Client, id: &str) {
    let key = format!("gateway:alive:{id}");
    wait_for(
        &format!("{id}'s first liveness beat"),
        Duration::from_secs(5),
        || {
            let key = key.clone();
            async move {
                let v: Option<String> = raw.get(key).await.unwrap();
                v
            }
        },
    )
    .await;
}

/// The next `NodeLeft` of `server_id` the monitor reports, other events skipped.
async fn next_left(
    rx: &mut mpsc::Receiver<NodeEvent>,
    server_id: &str,
    what: &str,
    within: Duration,
) -> NodeLeft {
    let pick = |e: &NodeEvent| matches!(e, NodeEvent::NodeLeft(l) if l.server_id == server_id);
    match next_matching(rx, what, within, pick).await {
        NodeEvent::NodeLeft(left) => left,
        other => unreachable!("picked only NodeLeft, got {other:?}"),
    }
}

/// Waits for the monitor to report `server_id` joined, other events skipped.
async fn next_joined(
    rx: &mut mpsc::Receiver<NodeEvent>,
    server_id: &str,
    what: &str,
    within: Duration,
) {
    let pick =
        |e: &NodeEvent| matches!(e, NodeEvent::NodeJoined { server_id: id } if id == server_id);
    next_matching(rx, what, within, pick).await;
}

/// Waits for the monitor to report c gone and checks what every death of c must bring: noticed
/// within the 10 s operators are promised, c's only user offline, its stats record withdrawn.
/// The stats key would live a minute more, so only the liveness key can meet that promise; a
/// tighter bound would measure the machine's load, not the design.
async fn c_purged_within_the_promise(
    rx: &mut mpsc::Receiver<NodeEvent>,
    raw: &Client,
    killed: Instant,
) {
    let left = next_left(rx, "c", "c left", Duration::from_secs(15)).await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "c noticed dead after {took:?}"
    );
    assert!(left.purged_here);
    assert_eq!(left.went_offline, vec![online("only-c", "c1", "c")]);
    let stats_key: Option<String> = raw.get("cluster:stats:c").await.unwrap();
    assert!(stats_key.is_none(), "c's stats record is withdrawn");
}

#[tokio::test]
async fn a_node_that_stops_beating_is_purged_within_its_liveness_ttl() {
    let server = redis();
    let raw = raw_client(&server.url()).await;
    let a = live_node(&server.url(), "a").await;
    let c = live_node(&server.url(), "c").await;
    let _beat_a = a.spawn_liveness();
    let beat_c = c.spawn_liveness();
    beating(&raw, "a").await;
    beating(&raw, "c").await;
    for n in [&a, &c] {
        publish_own_stats(n).await;
    }
    c.backends()
        .presence
        .socket_connected(online("only-c", "c1", "c"))
        .await
        .unwrap();
    let (mon_a, mut rx_a) = a.start_monitor();
    next_joined(&mut rx_a, "c", "c joined", Duration::from_secs(5)).await;
    // Beats are refreshed well inside the TTL: no false death over several TTLs.
    tokio::time::sleep(LIVENESS_TTL * 3).await;
    assert_eq!(mon_a.live_peers(), ["c"]);
    assert!(rx_a.try_recv().is_err(), "no event while c beats");

    // c "is killed": its beat stops, nothing is withdrawn, its stats key has a minute left.
    drop(beat_c);
    drop(c);
    let killed = Instant::now();
    c_purged_within_the_promise(&mut rx_a, &raw, killed).await;
    let a_state = a.backends();
    assert!(a_state.presence.find_socket("c1").await.unwrap().is_none());
    // Out of the cluster's stats at once, and a marker left for c should it come back.
    let ids: Vec<String> = a_state
        .nodes
        .live_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.server_id)
        .collect();
    assert_eq!(ids, ["a"]);
    let marker: Option<String> = raw.get("gateway:purged:c").await.unwrap();
    assert_eq!(marker.as_deref(), Some("a"));
}

/// The node is killed before any peer ever read its liveness key (a node killed right after it
/// started, or while its peers were starting). Its stats record says it writes one, so the
/// peers take the missing key for its death at once instead of taking the record, which has a
/// minute to live, for a node that never beats.
#[tokio::test]
async fn a_node_killed_before_any_peer_saw_it_alive_is_purged_within_its_liveness_ttl() {
    let server = redis();
    let raw = raw_client(&server.url()).await;
    let c = live_node(&server.url(), "c").await;
    publish_own_stats(&c).await;
    let beat_c = c.spawn_liveness();
    // The first beat republishes the record with the key's TTL in it.
    wait_for(
        "c's record to declare its liveness key",
        Duration::from_secs(5),
        || async {
            let json: Option<String> = raw.get("cluster:stats:c").await.unwrap();
            json.filter(|j| j.contains("\"livenessTtlMs\":1200"))
        },
    )
    .await;
    c.backends()
        .presence
        .socket_connected(online("only-c", "c1", "c"))
        .await
        .unwrap();
    drop(beat_c);
    drop(c);
    let killed = Instant::now();
    // a starts watching only once c's key has lapsed: it never sees c alive.
    wait_for(
        "c's liveness key to lapse",
        Duration::from_secs(5),
        || async {
            let v: Option<String> = raw.get("gateway:alive:c").await.unwrap();
            v.is_none().then_some(())
        },
    )
    .await;

    let a = live_node(&server.url(), "a").await;
    let _beat_a = a.spawn_liveness();
    let (_mon_a, mut rx_a) = a.start_monitor();
    c_purged_within_the_promise(&mut rx_a, &raw, killed).await;
}

/// c runs on a runtime of its own, on its own thread, so the test can stall all of it at once
/// (as a long pause or a frozen VM would) while a keeps watching.
#[tokio::test]
async fn a_stalled_node_that_peers_purged_registers_itself_again() {
    let server = redis();
    let url = server.url();
    let raw = raw_client(&url).await;
    let a = live_node(&url, "a").await;
    let _beat_a = a.spawn_liveness();
    beating(&raw, "a").await;
    a.backends().nodes.publish(&stats("a", 1)).await.unwrap();
    let (mon_a, mut rx_a) = a.start_monitor();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (stall_tx, stall_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let c_url = url.clone();
    let c_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let c = live_node(&c_url, "c").await;
            let _beat = c.spawn_liveness();
            beating(&raw_client(&c_url).await, "c").await;
            c.backends().nodes.publish(&stats("c", 1)).await.unwrap();
            let held = online("held-by-c", "c1", "c");
            c.backends()
                .presence
                .socket_connected(held.clone())
                .await
                .unwrap();
            let mut reconnects = c.reconnects();
            reconnects.borrow_and_update();
            ready_tx.send(()).unwrap();
            // Awaited, not blocked on: c keeps beating until the stall begins.
            stall_rx.await.unwrap();
            // The whole runtime stops: no beat, no task runs, for several liveness TTLs.
            std::thread::sleep(LIVENESS_TTL * 4);
            // What the gateway does on this signal (gateway/src/namespaces/cluster_events.rs),
            // until a resync reports the purge: the key's lapse can be seen before the purging
            // peer has left its marker, then the marker moves the counter once more.
            let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if reconnects.changed().await.is_err() {
                        return Err("the reconnect counter was dropped".to_owned());
                    }
                    let snapshot = LocalSnapshot {
                        sockets: vec![held.clone()],
                        memberships: Vec::new(),
                    };
                    match c.resync(&snapshot).await {
                        Ok(report) if report.purged_by_peers => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| {
                Err("c was not told within 10 s that peers had purged it".to_owned())
            });
            let _ = done_tx.send(outcome);
            // Keep beating until the test has seen c come back.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
    });

    tokio::task::spawn_blocking(move || ready_rx.recv().unwrap())
        .await
        .unwrap();
    next_joined(&mut rx_a, "c", "c joined", Duration::from_secs(5)).await;
    stall_tx.send(()).unwrap();
    let left = next_left(&mut rx_a, "c", "c purged", Duration::from_secs(10)).await;
    assert!(left.purged_here);
    assert_eq!(left.went_offline, vec![online("held-by-c", "c1", "c")]);

    tokio::time::timeout(Duration::from_secs(15), done_rx)
        .await
        .expect("c finished its stall")
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    // c holds its user again, and peers take it back as alive.
    let state = a.backends();
    wait_for("c's user registered again", Duration::from_secs(5), || {
        let state = state.clone();
        async move { state.presence.find_socket("c1").await.unwrap() }
    })
    .await;
    next_joined(&mut rx_a, "c", "c back", Duration::from_secs(10)).await;
    assert_eq!(mon_a.live_peers(), ["c"]);
    c_thread.join().unwrap();
}
