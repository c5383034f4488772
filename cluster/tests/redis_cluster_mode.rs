//! The same backends on a real three-primary Redis Cluster (`redis-cluster://`): in the spread key
//! layout every script stays in one slot, stats keys spread over the primaries are still found by
//! SCAN, and the control bus works.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::bus::{ControlEvent, SystemAnnouncement};
use cluster::{JoinOutcome, LeaveOutcome};
use common::*;
use testkit::{KillOnDrop, free_port, wait_for_port, which};

struct RedisCluster {
    _servers: Vec<KillOnDrop>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self._servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisCluster {
    /// Starts a cluster; a free port can be taken by another process between the check and the
    /// server's bind, so a failed formation is retried on fresh ports.
    fn start() -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(c) => return c,
                Err(e) => last = e,
            }
        }
        panic!("could not form a Redis Cluster three times: {last}");
    }

    fn try_start() -> Result<Self, String> {
        let server = which("redis-server")
            .expect("redis-server is not installed: apt-get install redis-server");
        let cli =
            which("redis-cli").expect("redis-cli is not installed: apt-get install redis-tools");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "cluster-mode-test-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut formed = Self {
            _servers: Vec::new(),
            ports: ports.clone(),
            dir: dir.clone(),
        };
        for port in &ports {
            let child = Command::new(&server)
                .current_dir(&dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            formed
                ._servers
                .push(KillOnDrop::new("redis-server (cluster)", child));
            wait_for_port(
                ([127, 0, 0, 1], *port).into(),
                "redis-server",
                Duration::from_secs(10),
            )
            .map_err(|e| e.to_string())?;
        }
        let mut create = Command::new(&cli);
        create.args(["--cluster", "create"]);
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &ports {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err("cluster never reached cluster_state:ok".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(formed)
    }

    fn url(&self) -> String {
        format!(
            "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
            self.ports[0], self.ports[1], self.ports[2]
        )
    }
}

#[tokio::test]
async fn backends_bus_and_stats_work_on_a_redis_cluster() {
    let redis = RedisCluster::start();
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    // Each room, user and node has a hash tag of its own (`docs/sharded-adapter.md`, section 5),
    // so the prefix carries none.
    assert_eq!(a.config().key_prefix, "gateway:");
    assert_eq!(a.key_layout(), cluster::keys::KeyLayout::Spread);
    let (sa, sb) = (a.backends(), b.backends());

    assert!(sa.rooms.create(room("r", 2)).await.unwrap());
    assert_eq!(
        sa.rooms.join("r", member("s1", "a")).await.unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    assert_eq!(
        sb.rooms.join("r", member("s2", "b")).await.unwrap(),
        JoinOutcome::Joined { user_count: 2 }
    );
    assert_eq!(
        sb.rooms.join("r", member("s3", "b")).await.unwrap(),
        JoinOutcome::Full
    );
    assert_eq!(sb.rooms.list_with_counts().await.unwrap().len(), 1);
    assert!(
        sa.presence
            .socket_connected(online("u", "s1", "a"))
            .await
            .unwrap()
    );
    assert!(
        sb.presence
            .socket_connected(online("v", "s2", "b"))
            .await
            .unwrap()
    );
    assert_eq!(sb.presence.online().await.unwrap().len(), 2);
    let purged = sa.rooms.purge_node("b").await.unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(sa.presence.purge_node("b").await.unwrap().len(), 1);
    assert_eq!(
        sa.rooms.leave("r", "s1").await.unwrap(),
        LeaveOutcome::Left {
            user_count: 0,
            room_deleted: true
        }
    );
    assert_eq!(sa.games.next("g").await.unwrap(), 1);
    assert_eq!(sb.games.next("g").await.unwrap(), 2);
    // A room's history lives only as long as the room ("r" is gone now).
    assert!(sa.rooms.create(room("h", 5)).await.unwrap());
    sa.history
        .append(
            &cluster::HistoryScope::Room("h".into()),
            serde_json::json!({"m": 1}),
        )
        .await
        .unwrap();
    assert_eq!(
        sb.history
            .recent(&cluster::HistoryScope::Room("h".into()), 5)
            .await
            .unwrap()
            .len(),
        1
    );

    // Bans: stored through one node, loaded by the other with SCAN on every primary and a GET
    // per ban (each on its user's slot).
    let now = chrono::Utc::now();
    for user in ["u1", "u:2", "u{3}"] {
        sa.bans.ban(ban(user, "r", now, None)).await.unwrap();
    }
    assert_eq!(b.sync_bans().await.unwrap().active.len(), 3);

    // Stats keys land on different primaries; SCAN on each finds them all.
    for i in 0..12 {
        sa.nodes.publish(&stats(&format!("n{i}"), 1)).await.unwrap();
    }
    assert_eq!(sb.nodes.live_nodes().await.unwrap().len(), 12);

    let mut sub = b.bus().subscribe();
    a.bus()
        .publish_announcement(SystemAnnouncement {
            message: "hi cluster".into(),
            extra: serde_json::Map::new(),
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("announcement over a Redis Cluster")
        .unwrap();
    assert!(
        matches!(got.event, ControlEvent::SystemAnnouncement(ref s) if s.message == "hi cluster")
    );
}
