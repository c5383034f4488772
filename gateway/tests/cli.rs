//! The binary's command line (docs/protocol.md, section "Command line"): the start-up line, signals and exit codes, and the
//! `token`, `healthcheck` and `cluster-stats` subcommands, run as real processes.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use gateway::auth::TokenVerifier;
use gateway::config::{DEV_SECRET, JwtAlgorithm, JwtKey};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A spawned gateway, killed (SIGKILL) and reaped on drop.
struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "JWT_SECRET",
        "JWT_PUBLIC_KEY_FILE",
        "DEV_MODE",
        "PORT",
        "HOST",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "REDIS_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts `gateway --dev` on an ephemeral port and reads its one stdout line.
fn start(extra: &[&str]) -> Node {
    let mut child = gateway()
        .args(common::DEV_ON_LOOPBACK)
        .args(common::QUICK_SHUTDOWN)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let mut node = Node {
        child,
        url: String::new(),
    };
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no `listening on` line within 20 s");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected address in {line:?}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the real port must be printed");
    node.url = url.to_owned();
    node
}

fn signal(node: &Node, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), node.child.id().to_string()])
        .status()
        .expect("`kill` not found: install procps")
        .success();
    assert!(ok, "kill -{name} failed");
}

fn wait_exit(node: &mut Node, deadline: Duration) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < end,
            "the gateway did not exit within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(args: &[&str]) -> Output {
    gateway().args(args).output().unwrap()
}

async fn get_status(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[test]
fn without_a_key_serve_exits_non_zero_naming_jwt_secret() {
    let out = run(&["--port", "0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "nothing may be printed to stdout");
}

#[tokio::test]
async fn sigterm_and_sigint_shut_down_gracefully_with_exit_code_0() {
    for sig in ["TERM", "INT"] {
        let mut node = start(&[]);
        assert_eq!(get_status(&format!("{}/ready", node.url)).await, 200);
        signal(&node, sig);
        let status = wait_exit(&mut node, Duration::from_secs(3));
        assert_eq!(status.code(), Some(0), "SIG{sig}: {status:?}");
    }
}

#[test]
fn token_prints_a_jwt_signed_with_the_configured_key() {
    let out = run(&[
        "token",
        "--dev",
        "--user-id",
        "u1",
        "--username",
        "alice",
        "--role",
        "admin",
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let verifier = TokenVerifier::new(
        &JwtKey::Secret(DEV_SECRET.as_bytes().to_vec()),
        JwtAlgorithm::Hs256,
    )
    .unwrap();
    let id = verifier.verify(token.trim()).unwrap();
    assert_eq!(
        (id.user_id.as_str(), id.username.as_str(), id.role.as_str()),
        ("u1", "alice", "admin")
    );

    let out = run(&[
        "token",
        "--jwt-secret",
        "s3cret",
        "--user-id",
        "u2",
        "--username",
        "bob",
    ]);
    assert!(out.status.success(), "{out:?}");
    let other =
        TokenVerifier::new(&JwtKey::Secret(b"s3cret".to_vec()), JwtAlgorithm::Hs256).unwrap();
    let id = other
        .verify(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap();
    assert_eq!((id.user_id.as_str(), id.role.as_str()), ("u2", "user"));

    let out = run(&["token", "--user-id", "u", "--username", "n"]);
    assert!(!out.status.success(), "minted without a key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
}

#[tokio::test]
async fn healthcheck_exits_0_only_on_200() {
    let node = start(&[]);
    let ready = format!("{}/ready", node.url);
    assert!(run(&["healthcheck", "--url", &ready]).status.success());
    let missing = format!("{}/no-such-page", node.url);
    assert_eq!(
        run(&["healthcheck", "--url", &missing]).status.code(),
        Some(1)
    );
    let closed = format!("http://127.0.0.1:{}/ready", free_port());
    assert_eq!(
        run(&["healthcheck", "--url", &closed]).status.code(),
        Some(1)
    );
}

#[test]
fn cluster_stats_lists_every_live_node_as_json_and_as_a_table() {
    let redis = testkit::RedisServer::start().unwrap();
    let url = redis.url();
    let _a = start(&["--redis-url", &url, "--server-id", "cli-stats-a"]);
    let _b = start(&["--redis-url", &url, "--server-id", "cli-stats-b"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids = loop {
        let out = run(&["cluster-stats", "--redis-url", &url, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<String> = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["serverId"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() == 2 || Instant::now() > deadline {
            assert_eq!(json["totals"]["nodes"], 2, "{json}");
            break ids;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ids, ["cli-stats-a", "cli-stats-b"]);
    let table = run(&["cluster-stats", "--redis-url", &url]);
    assert_eq!(table.status.code(), Some(0));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("SERVER") && text.contains("cli-stats-a") && text.contains("cli-stats-b"),
        "{text}"
    );
}

#[test]
fn cluster_stats_fails_clearly_when_redis_is_unreachable() {
    let out = run(&[
        "cluster-stats",
        "--redis-url",
        &format!("redis://127.0.0.1:{}", free_port()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gateway cluster-stats:"),
        "{out:?}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
