//! The gateway library: configuration, HTTP routes, Socket.IO namespaces, auth, validation, rate
//! limits, metrics and shutdown. `main.rs` is a thin shell over [`run`].

pub mod actions;
pub mod app;
pub mod auth;
pub mod config;
pub mod client_addr;
pub mod connection_limit;
pub mod event_limit;
pub mod passwords;
pub mod sanitize;
pub mod validation;
pub mod http;
pub mod metrics;
pub mod namespaces;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use socketioxide::SocketIo;
use tokio::net::TcpListener;

use crate::app::{App, Lifecycle};
use crate::config::Config;

/// The one adapter type of the gateway. Handlers name it, so they are written once.
pub type Adapter = socketioxide::adapter::LocalAdapter;

/// The Socket.IO server handle of the gateway.
pub type Io = SocketIo<Adapter>;

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
}

/// Runs a node on `listener` until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let backends = cluster::memory::backends(config.args.history_size);
    let app = App::new(config, backends)?;
    let (layer, io) = SocketIo::builder()
        .ping_interval(app.config.ping_interval())
        .ping_timeout(app.config.ping_timeout())
        .max_payload(app.config.args.max_payload_bytes)
        .with_state(Arc::clone(&app))
        .build_layer();
    namespaces::register(&io, &app)
        .await
        .map_err(|e| GatewayError::Namespaces(e.to_string()))?;
    let router = http::router(Arc::clone(&app), io.clone()).layer(layer);
    app.set_lifecycle(Lifecycle::Ready);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
