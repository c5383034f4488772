//! The gateway library: configuration, HTTP routes, Socket.IO namespaces, auth, validation, rate
//! limits, metrics and shutdown. `main.rs` is a thin shell over [`run`].
//!
//! Socket and API traffic goes through four layers, each importing only from those below it:
//! [`protocol`] (names, room names, payloads), [`sockets`] (per-node and per-socket state,
//! counted delivery, tracked tasks), [`actions`] (the use cases: the only code that changes
//! cluster state or broadcasts), then [`namespaces`] and [`http`] (thin callers).

pub mod actions;
pub mod app;
pub mod auth;
pub mod client_addr;
pub mod cluster_link;
pub mod config;
pub mod connection_limit;
pub mod event_limit;
pub mod handshake_gate;
pub mod http;
pub mod metrics;
pub mod namespaces;
pub mod node_stats;
pub mod outbound;
pub mod password_guard;
pub mod passwords;
pub mod protocol;
pub mod sanitize;
pub mod shutdown;
pub mod sockets;
pub mod state_limits;
pub mod telemetry;

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;

use socketioxide::SocketIo;
use tokio::net::TcpListener;

use crate::app::{App, Lifecycle};
use crate::config::Config;

/// The one adapter type of the gateway, with or without Redis (see [`cluster_link`]). Handlers
/// name it, so they are written once.
pub type Adapter = adapter_redis::RedisAdapter<socketioxide::adapter::Emitter>;

/// The Socket.IO server handle of the gateway.
pub type Io = SocketIo<Adapter>;

/// Packets queued per socket before it counts as a slow client and is disconnected
/// (docs/protocol.md, "Transport"). socketioxide's default of 128 marked most of 1,000 clients connecting
/// at once as slow, because each connect sends `user online` to everyone; the queue only takes
/// memory while it is full.
pub const SOCKET_QUEUE_PACKETS: usize = 4096;

/// Initial read buffer of each WebSocket connection. Chat frames are small and the buffer grows
/// for larger ones; every idle connection holds it (socketioxide's default is 4 KiB).
pub const WS_READ_BUFFER_BYTES: usize = 1024;

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The JWT key is unusable.
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    /// A namespace could not be set up.
    #[error("cannot set up namespaces: {0}")]
    Namespaces(String),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    /// Cluster mode could not start (Redis unreachable, bad URL).
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] cluster_link::LinkError),
    /// The HTTP server task panicked or was cancelled.
    #[error("HTTP server task failed: {0}")]
    ServerTask(String),
}

/// Runs a node on `listener` until `shutdown` completes, then shuts down gracefully
/// (docs/protocol.md, "Node stats and liveness"; see [`shutdown::drain_and_stop`]) and returns.
///
/// Returns `Ok(())` after a graceful shutdown and also when the grace period ran out (that is
/// logged); the caller then exits the process.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    run_announcing(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `on_ready` with the bound address once the node is `Ready` (`/ready` answers
/// 200), so a caller can announce it only when it really accepts traffic.
pub async fn run_announcing(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr) + Send,
) -> Result<(), GatewayError> {
    let mut shutdown = Box::pin(shutdown);
    // Announced once the node answers HTTP: when it is ready, or earlier when it has to wait
    // for Redis (it then answers `/ready` 503 meanwhile).
    let mut on_ready = Some(on_ready);
    let mut announce = move |addr| {
        if let Some(on_ready) = on_ready.take() {
            on_ready(addr);
        }
    };
    let addr = listener.local_addr()?;
    let Some(link) =
        cluster_link::connect_while_starting(&listener, &config, &mut shutdown, || announce(addr))
            .await?
    else {
        tracing::info!("stopped before the cluster could be joined");
        return Ok(());
    };
    serve_node(listener, App::with_link(config, link)?, shutdown, announce).await
}

/// [`run`] on its own (no cluster link) with the given state backends (test doubles, or a
/// backend under test).
pub async fn run_with_backends(
    listener: TcpListener,
    config: Config,
    backends: cluster::StateBackends,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    serve_node(listener, App::new(config, backends)?, shutdown, |_| {}).await
}

async fn serve_node(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr) + Send,
) -> Result<(), GatewayError> {
    let local_addr = listener.local_addr()?;
    // `max_payload` only bounds polling bodies; WebSocket messages and frames get the same limit,
    // so a payload over it closes the connection on either transport (docs/protocol.md, "Transport").
    let ws_limit = usize::try_from(app.config.args.max_payload_bytes).unwrap_or(usize::MAX);
    let (layer, io) = SocketIo::builder()
        .ping_interval(app.config.ping_interval())
        .ping_timeout(app.config.ping_timeout())
        .max_payload(app.config.args.max_payload_bytes)
        .ws_max_message_size(ws_limit)
        .ws_max_frame_size(ws_limit)
        // Closes a session that joined no namespace in time (a handshake without a CONNECT, or
        // only refused CONNECTs); socketioxide's timer, for Socket.IO v5 clients.
        .connect_timeout(app.config.connect_timeout())
        .max_buffer_size(SOCKET_QUEUE_PACKETS)
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .with_state(Arc::clone(&app))
        .with_adapter::<Adapter>(app.link.adapter().clone())
        .build_layer();
    let shared = namespaces::register(&io, &app)
        .await
        .map_err(|e| GatewayError::Namespaces(e.to_string()))?;
    // Whichever way this returns, the node's tracked tasks are told to stop (a graceful
    // shutdown also waits for them).
    let _stop_tasks = shared.tasks.cancelled().drop_guard();
    // Held until the node stops: control messages (dead peers and Redis reconnects are
    // tracked tasks).
    let _cluster_reactions = namespaces::cluster_events::start(&shared).await;
    let router = http::with_layers(http::router(Arc::clone(&shared)), &app, layer).layer(
        axum::middleware::from_fn_with_state(Arc::clone(&app.outbound), outbound::track_transport),
    );

    let lag_monitor = http::health::LagMonitor::spawn(Arc::clone(&app), &shared.tasks);
    let publisher = node_stats::spawn_publisher(Arc::clone(&app), io.clone(), &shared.tasks);

    let (stop_http, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    // Small Socket.IO frames must leave at once: with Nagle's algorithm a handshake answer waited
    // for the client's delayed ACK (about 40 ms per connect in the benchmark).
    // Metered: what each connection writes is released from its session's outgoing byte count.
    let listener = outbound::MeteredListener::new(listener, Arc::clone(&app.outbound));
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(e) = stream.tcp().set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_http_rx.await;
    });
    let mut server = tokio::spawn(server.into_future());
    app.set_lifecycle(Lifecycle::Ready);
    tracing::info!(server_id = %app.server_id, %local_addr, "node ready");
    on_ready(local_addr);

    tokio::select! {
        () = shutdown => {}
        ended = &mut server => {
            publisher.abort();
            lag_monitor.abort();
            return match ended {
                Ok(result) => result.map_err(GatewayError::from),
                Err(e) => Err(GatewayError::ServerTask(e.to_string())),
            };
        }
    }
    shutdown::drain_and_stop(
        &app,
        &io,
        shutdown::Running {
            server,
            stop_http,
            publisher,
            lag_monitor,
            namespaces: shared,
        },
    )
    .await;
    app.link.close().await;
    Ok(())
}
