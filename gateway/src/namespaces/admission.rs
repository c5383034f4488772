//! Admission of every namespace (docs/protocol.md, section "Errors"), as a connect middleware:
//! per-address connection limit, token, `/admin` role, ban; then the socket's session, its
//! rooms (`user:<userId>` and its own id) and its event handlers, all before the CONNECT ack.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

use crate::Adapter;
use crate::auth::{AuthError, Identity, token_from};
use crate::client_addr::client_addr;
use crate::handshake_gate::PendingTicket;
use crate::protocol::names::{ADMIN, CHAT, GAME, MAIN, RATE_LIMITED};
use crate::sockets::{Session, Shared};

/// Why a handshake was refused. `Display` is the `connect_error` message of the contract.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// No token or a bad one.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `/admin` without role admin.
    #[error("Access denied: admin role required")]
    NotAdmin,
    /// An active ban.
    #[error("Banned: {0}")]
    Banned(String),
    /// Too many attempts from the client address.
    #[error("Rate limit exceeded")]
    RateLimited,
    /// The ban list could not be read; refusing is the safe answer.
    #[error("Service temporarily unavailable")]
    Unavailable,
}

/// Registers namespace `ns` with the admission middleware.
pub async fn register(shared: &Arc<Shared>, ns: &'static str) -> Result<(), String> {
    let for_middleware = Arc::clone(shared);
    let middleware = move |s: SocketRef<Adapter>, TryData(auth): TryData<Value>| {
        let shared = Arc::clone(&for_middleware);
        async move { admit(&shared, ns, &s, auth.ok()).await }
    };
    let for_handler = Arc::clone(shared);
    let on_connect = move |s: SocketRef<Adapter>| {
        let shared = Arc::clone(&for_handler);
        async move { connected(&shared, ns, s) }
    };
    // With Redis the adapter subscribes to the namespace's channels here; the namespace exists
    // only once that succeeded.
    shared
        .io
        .ns(ns, on_connect.with(middleware))
        .await
        .map_err(|e| e.to_string())
}

async fn admit(
    shared: &Arc<Shared>,
    ns: &'static str,
    s: &SocketRef<Adapter>,
    auth: Option<Value>,
) -> Result<(), AdmissionError> {
    let app = &shared.app;
    let parts = s.req_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0);
    let addr = client_addr(peer, &parts.headers, &app.config.args.trusted_proxies);
    if let Some(addr) = addr
        && !shared.connections.allow(addr)
    {
        app.metrics.connection_errors.inc();
        tracing::info!(%addr, ns, "connection refused: {RATE_LIMITED}");
        return Err(AdmissionError::RateLimited);
    }
    let identity = authenticate(shared, ns, s, auth.as_ref()).inspect_err(|e| {
        app.metrics.auth_errors.inc();
        tracing::info!(?addr, ns, "connection refused: {e}");
    })?;
    match app.backends.bans.active(&identity.user_id).await {
        Ok(None) => {}
        Ok(Some(ban)) => {
            app.metrics.connection_errors.inc();
            tracing::info!(user = identity.user_id, ns, "connection refused: banned");
            return Err(AdmissionError::Banned(ban.reason));
        }
        Err(e) => {
            app.metrics.connection_errors.inc();
            tracing::warn!(error = %e, "ban list unavailable: refusing connection");
            return Err(AdmissionError::Unavailable);
        }
    }
    let session = Session::new(identity, app);
    s.extensions.insert(session.clone());
    crate::outbound::attach(&app.outbound, s);
    crate::actions::presence::join_own_rooms(shared, ns, s, &session).await;
    super::dispatch::on_unknown(s, shared);
    match ns {
        MAIN => super::main_ns::register_handlers(shared, s, &session).await,
        CHAT => super::chat::register_handlers(shared, s),
        GAME => super::game::register_handlers(shared, s),
        ADMIN => super::admin::register_handlers(shared, s),
        _ => {}
    }
    Ok(())
}

fn authenticate(
    shared: &Shared,
    ns: &str,
    s: &SocketRef<Adapter>,
    auth: Option<&Value>,
) -> Result<Identity, AdmissionError> {
    let auth_token = auth.and_then(|a| a.get("token")).and_then(Value::as_str);
    let header = s
        .req_parts()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let token = token_from(auth_token, header).ok_or(AuthError::NoToken)?;
    let identity = shared.app.verifier.verify(&token)?;
    if ns == ADMIN && !identity.is_admin() {
        return Err(AdmissionError::NotAdmin);
    }
    Ok(identity)
}

fn connected(shared: &Arc<Shared>, ns: &'static str, s: SocketRef<Adapter>) {
    let metrics = &shared.app.metrics;
    metrics.connections_total.inc();
    metrics.connections_active.inc();
    tracing::debug!(socket = %s.id, ns, "socket connected");
    if let Some(session) = Session::of(&s) {
        session.mark_connected();
    }
    // The Engine.IO session joined a namespace: it no longer counts against the node's cap on
    // sessions waiting to join one.
    if let Some(ticket) = s.req_parts().extensions.get::<PendingTicket>() {
        ticket.joined();
    }
    if ns == MAIN {
        crate::actions::presence::welcome(shared, &s);
    }
}
