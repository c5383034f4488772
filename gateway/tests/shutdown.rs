//! The shutdown sequence of docs/protocol.md (section "Node stats and liveness"), with `gateway::run` in this process on an
//! ephemeral port and plain HTTP: `/ready` turns 503 at once, the node keeps answering through
//! the drain period, then stops, well within the grace period.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use clap::Parser as _;
use gateway::GatewayError;
use gateway::config::{Cli, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
/// ephemeral port and waits until `/ready` answers 200 through `client`.
async fn start<Fut>(
    client: reqwest::Client,
    run: impl FnOnce(TcpListener, Shutdown) -> Fut,
) -> Running
where
    Fut: Future<Output = Result<(), GatewayError>> + Send + 'static,
{
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_then_the_node_drains_and_stops_within_grace() {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let Running {
        base,
        ready,
        client,
        signal,
        node,
    } = start(client, |listener, shutdown| {
        gateway::run(listener, config(2, 5), shutdown)
    })
    .await;

    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    wait_until(
        Duration::from_millis(500),
        "/ready to answer 503",
        || async { status(&client, &ready).await == Some(503) },
    )
    .await;

    // Still draining: HTTP is served, /ready stays 503, /health says so. (Checked well inside
    // the 2 s drain; the bound only guards that precondition.)
    assert!(signalled_at.elapsed() < Duration::from_millis(1500));
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
        !node.is_finished(),
        "the node stopped before the drain period"
    );

    returns_within(
        node,
        Duration::from_secs(6),
        "run() did not return within the grace period",
    )
    .await;
    let took = signalled_at.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "stopped after {took:?}, before the 2 s drain"
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}, over the grace"
    );
    assert_eq!(
        status(&client, &ready).await,
        None,
        "the listener still answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_record_is_published_while_running_and_withdrawn_on_shutdown() {
    let backends = cluster::memory::backends(10);
    let nodes = std::sync::Arc::clone(&backends.nodes);
    let Running { signal, node, .. } = start(reqwest::Client::new(), |listener, shutdown| {
        gateway::run_with_backends(listener, config(0, 2), backends, shutdown)
    })
    .await;
    wait_until(Duration::from_secs(5), "the stats record", || async {
        nodes
            .live_nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.server_id == "shutdown-test")
    })
    .await;

    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    returns_within(
        node,
        Duration::from_secs(3),
        "run() did not return within the grace period",
    )
    .await;
    assert!(signalled_at.elapsed() < Duration::from_secs(2));
    assert!(
        nodes.live_nodes().await.unwrap().is_empty(),
        "the stats record was not withdrawn"
    );
}

/// A node registry whose `withdraw` never answers, like a Redis that hangs.
#[derive(Debug, Default)]
struct HangingWithdraw;

#[async_trait::async_trait]
impl cluster::NodeRegistry for HangingWithdraw {
    async fn publish(&self, _: &cluster::NodeStats) -> cluster::StateResult<()> {
        Ok(())
    }
    async fn withdraw(&self, _: &str) -> cluster::StateResult<()> {
        std::future::pending().await
    }
    async fn live_nodes(&self) -> cluster::StateResult<Vec<cluster::NodeStats>> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_step_is_abandoned_when_the_grace_period_ends() {
    let mut backends = cluster::memory::backends(10);
    backends.nodes = std::sync::Arc::new(HangingWithdraw);
    let Running {
        ready,
        client,
        signal,
        node,
        ..
    } = start(reqwest::Client::new(), |listener, shutdown| {
        gateway::run_with_backends(listener, config(1, 2), backends, shutdown)
    })
    .await;
    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    returns_within(
        node,
        Duration::from_secs(4),
        "run() did not give up at the end of the grace period",
    )
    .await;
    let took = signalled_at.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2800),
        "gave up after {took:?}, expected right at the 2 s grace period"
    );
    assert_eq!(
        status(&client, &ready).await,
        None,
        "the listener still answers"
    );
}

/// A raw Engine.IO v4 long-polling session.
struct Polling {
    client: reqwest::Client,
    url: String,
}

impl Polling {
    async fn open(client: &reqwest::Client, base: &str) -> Self {
        let text = client
            .get(format!("{base}/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let open: serde_json::Value =
            serde_json::from_str(text.strip_prefix('0').unwrap()).unwrap();
        let sid = open["sid"].as_str().unwrap();
        Self {
            client: client.clone(),
            url: format!("{base}/socket.io/?EIO=4&transport=polling&sid={sid}"),
        }
    }

    async fn send(&self, packet: &str) {
        let res = self
            .client
            .post(&self.url)
            .body(packet.to_owned())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "POST {packet}: {}", res.status());
    }

    /// The packets of one poll, or `None` once the session is gone.
    async fn poll(&self) -> Option<Vec<String>> {
        let res = self.client.get(&self.url).send().await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        let text = res.text().await.ok()?;
        Some(text.split('\u{1e}').map(str::to_owned).collect())
    }

    /// Polls until every one of `prefixes` has started some packet; returns all packets seen.
    async fn until_all(&self, prefixes: &[&str], within: Duration) -> Vec<String> {
        let end = Instant::now() + within;
        let mut seen: Vec<String> = Vec::new();
        while !prefixes
            .iter()
            .all(|prefix| seen.iter().any(|p| p.starts_with(prefix)))
        {
            assert!(
                Instant::now() < end,
                "not all of {prefixes:?} within {within:?}: {seen:?}"
            );
            seen.extend(self.poll().await.expect("session closed"));
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_socket_gets_server_shutdown_and_is_closed_after_the_drain() {
    let config = config(1, 4);
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
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let Running {
        base,
        client,
        signal,
        node,
        ..
    } = start(client, |listener, shutdown| {
        gateway::run(listener, config, shutdown)
    })
    .await;

    let session = Polling::open(&client, &base).await;
    let auth = serde_json::json!({ "token": token });
    session.send(&format!("40{auth}")).await;
    session.send(&format!("40/chat,{auth}")).await;
    session
        .until_all(&["40{", "40/chat,{"], Duration::from_secs(5))
        .await;

    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    let packets = session
        .until_all(
            &["42[\"server shutdown\"", "42/chat,[\"server shutdown\""],
            Duration::from_millis(900),
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

    // The sockets stay open through the drain, then the session ends.
    let mut closed_at = None;
    while closed_at.is_none() {
        match session.poll().await {
            Some(packets) if !packets.iter().any(|p| p == "1") => {}
            _ => closed_at = Some(signalled_at.elapsed()),
        }
        assert!(
            signalled_at.elapsed() < Duration::from_secs(4),
            "never closed"
        );
    }
    let closed_at = closed_at.unwrap();
    assert!(
        closed_at >= Duration::from_millis(900),
        "closed after {closed_at:?}, before the 1 s drain"
    );
    returns_within(
        node,
        Duration::from_secs(4),
        "run() did not return within the grace period",
    )
    .await;
}
