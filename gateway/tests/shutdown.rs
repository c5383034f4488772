//! The shutdown sequence of docs/protocol.md (section "Node stats and liveness"), with
//! `gateway::run` in this process on an ephemeral port and plain HTTP: `/ready` turns 503 at
//! once, the node keeps answering through the drain period, then stops within the grace period.
//!
//! The tests follow the sequence's phases (what `/ready`, `/health` and a polling session see,
//! and the node's own log lines) rather than timing them; their deadlines only guard against a
//! hang. The exact drain and grace durations are held by the paused-clock unit tests in
//! `gateway/src/shutdown.rs`.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser as _;
use gateway::GatewayError;
use gateway::config::{Cli, Config};
use testkit::polling::Polling;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Longest any step may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// The log lines that mark the shutdown's phases, in their order.
const STARTED: &str = "shutdown started";
const NOTIFIED: &str = "`server shutdown` sent to local sockets";
const DRAINED: &str = "drain period over";
const COMPLETE: &str = "shutdown complete";
const FORCED: &str = "grace period exceeded";

/// The node's log lines, captured for one test. The tests run on tokio's current-thread
/// runtime, so every task of their node logs on the thread where the capture is installed.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Captures this thread's log until the guard drops.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Where `phase` was first logged, if it was.
    fn position(&self, phase: &str) -> Option<usize> {
        self.text().find(phase)
    }

    fn has(&self, phase: &str) -> bool {
        self.position(phase).is_some()
    }

    /// Every one of `phases` was logged, in this order.
    fn assert_in_order(&self, phases: &[&str]) {
        let at: Vec<Option<usize>> = phases.iter().map(|p| self.position(p)).collect();
        assert!(
            at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
            "expected the phases {phases:?} in this order; the log:\n{}",
            self.text()
        );
    }
}

fn config(drain_secs: u64, grace_secs: u64) -> Config {
    let drain = drain_secs.to_string();
    let grace = grace_secs.to_string();
    let cli = Cli::try_parse_from([
        "gateway",
        "--jwt-secret",
        "shutdown-test-secret",
        "--server-id",
        "shutdown-test",
        "--drain-secs",
        &drain,
        "--grace-secs",
        &grace,
    ])
    .unwrap();
    Config::from_args(cli.serve).unwrap()
}

async fn status(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Polls `check` until it holds or `deadline` passes.
async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// The shutdown future handed to the node: it resolves when the test signals.
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A node serving on an ephemeral port, already answering `/ready` with 200.
struct Running {
    base: String,
    ready: String,
    client: reqwest::Client,
    /// Starts the shutdown sequence.
    signal: oneshot::Sender<()>,
    node: JoinHandle<Result<(), GatewayError>>,
}

/// Spawns `run` (`gateway::run` or `gateway::run_with_backends`, with the test's config) on an
/// ephemeral port and waits until `/ready` answers 200 through the returned `client`.
async fn start<Fut>(run: impl FnOnce(TcpListener, Shutdown) -> Fut) -> Running
where
    Fut: Future<Output = Result<(), GatewayError>> + Send + 'static,
{
    // Each request is bounded too, so a node that stops answering fails the test, not hangs it.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (signal, signalled) = oneshot::channel::<()>();
    let node = tokio::spawn(run(
        listener,
        Box::pin(async move {
            let _ = signalled.await;
        }),
    ));
    let ready = format!("{base}/ready");
    wait_until(Duration::from_secs(10), "/ready to answer 200", || async {
        status(&client, &ready).await == Some(200)
    })
    .await;
    Running {
        base,
        ready,
        client,
        signal,
        node,
    }
}

/// Waits for the node's `run` to return `Ok` within `within`; `late` says what it means if not.
async fn returns_within(node: JoinHandle<Result<(), GatewayError>>, within: Duration, late: &str) {
    tokio::time::timeout(within, node)
        .await
        .expect(late)
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn ready_turns_503_then_the_node_drains_and_stops_within_grace() {
    let (log, _capture) = Log::capture();
    let Running {
        base,
        ready,
        client,
        signal,
        node,
    } = start(|listener, shutdown| gateway::run(listener, config(3, 30), shutdown)).await;

    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    wait_until(HANG, "/ready to answer 503", || async {
        status(&client, &ready).await == Some(503)
    })
    .await;

    // Still draining: HTTP is served, /ready stays 503, /health says so.
    assert_eq!(status(&client, &ready).await, Some(503));
    let health: serde_json::Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["metrics"]["lifecycle"], "draining", "{health}");
    assert!(
        !node.is_finished() && !log.has(DRAINED),
        "the node stopped before the drain period was over:\n{}",
        log.text()
    );

    returns_within(node, HANG, "run() did not return").await;
    // The drain is a wait of its full period, so no load can make this lower bound fail.
    let took = signalled_at.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "stopped after {took:?}, before the 3 s drain"
    );
    log.assert_in_order(&[STARTED, NOTIFIED, DRAINED, COMPLETE]);
    assert!(!log.has(FORCED), "over the grace period:\n{}", log.text());
    assert_eq!(
        status(&client, &ready).await,
        None,
        "the listener still answers"
    );
}

#[tokio::test]
async fn the_stats_record_is_published_while_running_and_withdrawn_on_shutdown() {
    let (log, _capture) = Log::capture();
    let backends = cluster::memory::backends(10);
    let nodes = std::sync::Arc::clone(&backends.nodes);
    let Running { signal, node, .. } = start(|listener, shutdown| {
        gateway::run_with_backends(listener, config(0, 30), backends, shutdown)
    })
    .await;
    wait_until(HANG, "the stats record", || async {
        nodes
            .live_nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.server_id == "shutdown-test")
    })
    .await;

    signal.send(()).unwrap();
    returns_within(node, HANG, "run() did not return").await;
    log.assert_in_order(&[STARTED, DRAINED, COMPLETE]);
    assert!(!log.has(FORCED), "over the grace period:\n{}", log.text());
    assert!(
        nodes.live_nodes().await.unwrap().is_empty(),
        "the stats record was not withdrawn"
    );
}

#[tokio::test]
async fn a_stuck_step_is_abandoned_when_the_grace_period_ends() {
    let (log, _capture) = Log::capture();
    let mut backends = cluster::memory::backends(10);
    backends.nodes = std::sync::Arc::new(cluster::test_support::HangingWithdraw);
    let Running {
        ready,
        client,
        signal,
        node,
        ..
    } = start(|listener, shutdown| {
        gateway::run_with_backends(listener, config(1, 2), backends, shutdown)
    })
    .await;
    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    returns_within(
        node,
        HANG,
        "run() did not give up at the end of the grace period",
    )
    .await;
    let took = signalled_at.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "gave up after {took:?}, before the 2 s grace period"
    );
    log.assert_in_order(&[STARTED, DRAINED, FORCED]);
    assert!(!log.has(COMPLETE), "{}", log.text());
    assert_eq!(
        status(&client, &ready).await,
        None,
        "the listener still answers"
    );
}

/// Polls until every one of `prefixes` has started some packet; returns all packets seen.
async fn until_all(session: &Polling, prefixes: &[&str]) -> Vec<String> {
    let end = Instant::now() + HANG;
    let mut seen: Vec<String> = Vec::new();
    while !prefixes
        .iter()
        .all(|prefix| seen.iter().any(|p| p.starts_with(prefix)))
    {
        assert!(
            Instant::now() < end,
            "not all of {prefixes:?} within {HANG:?}: {seen:?}"
        );
        seen.extend(session.poll().await.expect("session closed"));
    }
    seen
}

#[tokio::test]
async fn every_local_socket_gets_server_shutdown_and_is_closed_after_the_drain() {
    let (log, _capture) = Log::capture();
    let config = config(1, 30);
    let token = gateway::auth::TokenVerifier::new(&config.jwt_key, config.jwt_algorithm)
        .unwrap()
        .mint(
            &gateway::auth::Identity {
                user_id: "u-shutdown".into(),
                username: "shutdown".into(),
                role: "user".into(),
            },
            60,
        )
        .unwrap();
    let Running {
        base,
        client,
        signal,
        node,
        ..
    } = start(|listener, shutdown| gateway::run(listener, config, shutdown)).await;

    let session = Polling::open(&client, &base).await;
    let auth = serde_json::json!({ "token": token });
    session.send(&format!("40{auth}")).await;
    session.send(&format!("40/chat,{auth}")).await;
    until_all(&session, &["40{", "40/chat,{"]).await;

    signal.send(()).unwrap();
    let packets = until_all(
        &session,
        &["42[\"server shutdown\"", "42/chat,[\"server shutdown\""],
    )
    .await;
    for prefix in ["42[", "42/chat,["] {
        let notice = packets
            .iter()
            .find_map(|p| {
                p.strip_prefix(prefix)
                    .filter(|rest| rest.starts_with("\"server shutdown\""))
            })
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&format!("[{notice}")).unwrap();
        assert_eq!(body[0], "server shutdown");
        assert_eq!(body[1]["serverId"], "shutdown-test");
        assert!(body[1]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // The sockets stay open through the drain: when the session ends, the drain is over.
    let end = Instant::now() + HANG;
    while session
        .poll()
        .await
        .is_some_and(|packets| !packets.iter().any(|p| p == "1"))
    {
        assert!(Instant::now() < end, "never closed");
    }
    assert!(
        log.has(DRAINED),
        "closed before the drain was over:\n{}",
        log.text()
    );
    returns_within(node, HANG, "run() did not return").await;
    log.assert_in_order(&[STARTED, NOTIFIED, DRAINED, COMPLETE]);
}
