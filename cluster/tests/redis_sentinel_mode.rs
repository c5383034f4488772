//! The backends and the control bus through a real Redis Sentinel (`redis-sentinel://`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster::JoinOutcome;
use cluster::bus::{ControlEvent, SystemAnnouncement};
use common::*;
use testkit::{KillOnDrop, free_port, wait_for_port, which};

struct Sentinel {
    _process: KillOnDrop,
    port: u16,
    dir: PathBuf,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_sentinel(master_port: u16) -> Sentinel {
    let server =
        which("redis-server").expect("redis-server is not installed: apt-get install redis-server");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sentinel-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 5000\n"
        ),
    )
    .unwrap();
    let child = Command::new(server)
        .current_dir(&dir)
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = KillOnDrop::new("redis-sentinel", child);
    wait_for_port(
        ([127, 0, 0, 1], port).into(),
        "redis-sentinel",
        Duration::from_secs(10),
    )
    .unwrap();
    Sentinel {
        _process: process,
        port,
        dir,
    }
}

#[tokio::test]
async fn backends_and_bus_work_through_a_sentinel() {
    let master = redis();
    let sentinel = start_sentinel(master.port());
    let url = format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
        sentinel.port
    );
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    assert!(a.backends().rooms.create(room("r", 1)).await.unwrap());
    assert_eq!(
        b.backends()
            .rooms
            .join("r", member("s1", "b"))
            .await
            .unwrap(),
        JoinOutcome::Joined { user_count: 1 }
    );
    // The data really is on the monitored master.
    let direct = node(&master.url(), "observer").await;
    assert_eq!(direct.backends().rooms.member_count("r").await.unwrap(), 1);

    let mut sub = b.bus().subscribe();
    a.bus()
        .publish_announcement(SystemAnnouncement {
            message: "via sentinel".into(),
            extra: serde_json::Map::new(),
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("announcement through the sentinel-discovered master")
        .unwrap();
    assert!(
        matches!(got.event, ControlEvent::SystemAnnouncement(ref s) if s.message == "via sentinel")
    );
}
