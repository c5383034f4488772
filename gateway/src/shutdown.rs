//! Graceful shutdown of a node (docs/protocol.md, "Node stats and liveness").
//!
//! On the shutdown signal: `/ready` turns 503 at once, the cluster is told, every local socket in
//! every namespace gets `server shutdown` `{ message, serverId }`, the node waits the drain
//! period, closes every socket, withdraws its stats record and stops the HTTP server — all within
//! the grace period. If the grace period runs out first, the remaining steps are abandoned (and
//! logged) so the process can still exit in time.

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Io;
use crate::app::{App, Lifecycle};

/// Sockets taken out of the cluster-wide state at once while a node shuts down: enough to
/// overlap the Redis round trips of thousands of departures within the grace period, few enough
/// that the burst of commands and `user left` / `user offline` broadcasts stays modest.
pub const DEPARTURES_IN_FLIGHT: usize = 128;

/// The text of the `server shutdown` event.
pub const SHUTDOWN_MESSAGE: &str = "Server is shutting down, please reconnect";

/// Payload of the `server shutdown` event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServerShutdown {
    /// Human readable notice.
    pub message: String,
    /// The node going away.
    pub server_id: String,
}

/// The running parts of a node that the shutdown stops.
#[derive(Debug)]
pub struct Running {
    /// The HTTP server task.
    pub server: JoinHandle<std::io::Result<()>>,
    /// Tells the HTTP server to stop accepting and finish its connections.
    pub stop_http: tokio::sync::oneshot::Sender<()>,
    /// The stats publisher task.
    pub publisher: JoinHandle<()>,
    /// The runtime lag sampler task.
    pub lag_monitor: JoinHandle<()>,
    /// What the namespace handlers share, to take this node's users out of the cluster-wide
    /// state before the sockets close, and to stop the node's tracked tasks after.
    pub namespaces: std::sync::Arc<crate::sockets::Shared>,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step completed within the grace period.
    Graceful,
    /// The grace period ran out; the remaining steps were abandoned.
    Forced,
}

/// Runs the shutdown sequence of docs/protocol.md ("Node stats and liveness") and returns when the HTTP server has
/// stopped or the grace period is over, whichever comes first.
pub async fn drain_and_stop(app: &App, io: &Io, running: Running) -> Outcome {
    let started = Instant::now();
    let grace = app.config.grace();
    let deadline = started + grace;
    app.set_lifecycle(Lifecycle::Draining);
    tracing::info!(
        drain_secs = app.config.args.drain_secs,
        grace_secs = app.config.args.grace_secs,
        "shutdown started: /ready now answers 503"
    );
    let Running {
        mut server,
        stop_http,
        publisher,
        lag_monitor,
        namespaces,
    } = running;

    let sequence = async {
        publish_cluster_shutdown(app).await;
        notify_local_sockets(app, io).await;
        tokio::time::sleep(app.config.drain()).await;
        tracing::info!("drain period over: closing all sockets");
        // While the namespaces still exist, so `user left` / `user offline` reach the other
        // nodes' clients; the disconnect handlers that run during the close find nothing left.
        let departed = Instant::now();
        tokio::join!(
            crate::actions::presence::depart_all(&namespaces, DEPARTURES_IN_FLIGHT),
            crate::actions::games::depart_all(&namespaces, DEPARTURES_IN_FLIGHT),
        );
        tracing::info!(
            elapsed_ms = departed.elapsed().as_millis() as u64,
            "sockets taken out of the cluster state"
        );
        io.close().await;
        publisher.abort();
        let _ = publisher.await;
        if let Err(e) = app.backends.nodes.withdraw(&app.server_id).await {
            tracing::warn!(error = %e, "cannot withdraw this node's stats record");
        }
        let _ = stop_http.send(());
        match (&mut server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        }
        // Bounded by the grace period like every step here.
        if !namespaces.tasks.stop(grace).await {
            tracing::warn!(tasks = namespaces.tasks.len(), "node tasks still running");
        }
    };
    let outcome = match tokio::time::timeout_at(deadline, sequence).await {
        Ok(()) => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "shutdown complete"
            );
            Outcome::Graceful
        }
        Err(_) => {
            tracing::error!(
                grace_secs = grace.as_secs(),
                "grace period exceeded: abandoning the remaining shutdown steps and exiting"
            );
            server.abort();
            Outcome::Forced
        }
    };
    lag_monitor.abort();
    outcome
}

/// Tells the other nodes of the cluster that this node is going away (`server_shutdown` on the
/// control channel, docs/protocol.md "Control bus").
///
/// Peers drop this node from their view at once instead of waiting for its stats key to expire.
/// A single node has no cluster to tell.
pub async fn publish_cluster_shutdown(app: &App) {
    let Some(redis) = app.link.redis() else {
        return;
    };
    let notice = cluster::bus::ServerShutdown {
        message: Some(SHUTDOWN_MESSAGE.to_owned()),
        extra: serde_json::Map::new(),
    };
    match redis.bus().publish_server_shutdown(notice).await {
        Ok(peers) => tracing::info!(peers, "told the cluster this node is shutting down"),
        Err(e) => tracing::warn!(error = %e, "cannot publish server_shutdown"),
    }
}

/// Sends `server shutdown` to every socket this node holds, in every namespace (local only:
/// other nodes keep their clients).
pub async fn notify_local_sockets(app: &App, io: &Io) {
    let notice = ServerShutdown {
        message: SHUTDOWN_MESSAGE.to_owned(),
        server_id: app.server_id.clone(),
    };
    let mut told = 0usize;
    for ns in io.nsps() {
        let path = ns.ns_path().to_owned();
        let local = ns.local();
        told += local.clone().sockets().len();
        if let Err(e) = local.emit("server shutdown", &notice).await {
            tracing::warn!(namespace = %path, error = %e, "cannot send `server shutdown`");
        }
    }
    tracing::info!(sockets = told, "`server shutdown` sent to local sockets");
}

#[cfg(test)]
mod tests {
    //! The shutdown's timing on tokio's paused clock: durations are exact, whatever the load.
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use clap::Parser as _;
    use socketioxide::SocketIo;

    use super::*;
    use crate::config::{Cli, Config};

    /// What a test watches of a node being shut down.
    struct Node {
        app: Arc<App>,
        io: Io,
        running: Running,
        /// Ends with `true` when the HTTP server was told to stop, `false` when the shutdown
        /// dropped that step.
        http_stopped: JoinHandle<bool>,
    }

    fn node(drain_secs: u64, grace_secs: u64, backends: cluster::StateBackends) -> Node {
        let (drain, grace) = (drain_secs.to_string(), grace_secs.to_string());
        let cli = Cli::try_parse_from([
            "gateway",
            "--jwt-secret",
            "shutdown-unit-test",
            "--drain-secs",
            &drain,
            "--grace-secs",
            &grace,
        ])
        .unwrap();
        let app = App::new(Config::from_args(cli.serve).unwrap(), backends).unwrap();
        let (_layer, io) = SocketIo::builder()
            .with_state(Arc::clone(&app))
            .with_adapter::<crate::Adapter>(adapter_redis::RedisAdapterCtr::local())
            .build_layer();
        let namespaces = crate::sockets::Shared::new(&io, &app);
        let (stop_http, stop_rx) = tokio::sync::oneshot::channel();
        let http_stopped = tokio::spawn(async move { stop_rx.await.is_ok() });
        let server = tokio::spawn(async { Ok(()) });
        app.set_lifecycle(Lifecycle::Ready);
        Node {
            app,
            io,
            running: Running {
                server,
                stop_http,
                publisher: tokio::spawn(std::future::pending()),
                lag_monitor: tokio::spawn(std::future::pending()),
                namespaces,
            },
            http_stopped,
        }
    }

    /// Starts the shutdown of `node`; returns its app, what tells the HTTP server stopped, and
    /// the shutdown's outcome.
    fn shut_down(node: Node) -> (Arc<App>, JoinHandle<bool>, JoinHandle<Outcome>) {
        let Node {
            app,
            io,
            running,
            http_stopped,
        } = node;
        let sequence = {
            let app = Arc::clone(&app);
            tokio::spawn(async move { drain_and_stop(&app, &io, running).await })
        };
        (app, http_stopped, sequence)
    }

    #[tokio::test(start_paused = true)]
    async fn the_node_serves_through_the_whole_drain_then_stops_within_grace() {
        let started = Instant::now();
        let (app, http_stopped, sequence) = shut_down(node(2, 5, cluster::memory::backends(10)));
        tokio::task::yield_now().await;
        assert_eq!(app.lifecycle(), Lifecycle::Draining, "not draining at once");

        tokio::time::sleep_until(started + Duration::from_secs(2) - Duration::from_millis(1)).await;
        assert!(
            !http_stopped.is_finished(),
            "HTTP stopped before the drain ended"
        );
        assert!(!sequence.is_finished());
        assert_eq!(app.lifecycle(), Lifecycle::Draining);

        assert_eq!(sequence.await.unwrap(), Outcome::Graceful);
        assert!(http_stopped.await.unwrap(), "HTTP was never told to stop");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_step_is_abandoned_right_at_the_end_of_the_grace_period() {
        let mut backends = cluster::memory::backends(10);
        backends.nodes = Arc::new(cluster::test_support::HangingWithdraw);
        let started = Instant::now();
        let (_app, http_stopped, sequence) = shut_down(node(1, 2, backends));

        tokio::time::sleep_until(started + Duration::from_secs(2) - Duration::from_millis(1)).await;
        assert!(!sequence.is_finished(), "gave up before the grace period");
        assert_eq!(sequence.await.unwrap(), Outcome::Forced);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(
            !http_stopped.await.unwrap(),
            "the step after the stuck one ran"
        );
    }
}
