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
