//! HTTP routes: health, readiness, metrics, stats, admin API, dev token and static files, and the
//! layers shared with Socket.IO (CORS, request tracing, the Engine.IO v3 switch).

pub mod api;
pub mod client_bundle;
mod handshake;
pub mod health;
mod owned_head;

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, TraceLayer};

use crate::Io;
use crate::app::App;
use crate::auth::Identity;
use crate::node_stats;
use crate::sockets::Shared;

/// Lifetime of tokens handed out by `GET /dev/token`, seconds.
pub const DEV_TOKEN_TTL_SECS: u64 = 12 * 3600;

/// What every HTTP handler gets.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The node.
    pub app: Arc<App>,
    /// Its Socket.IO server.
    pub io: Io,
    /// What the use cases work on (the admin API calls them).
    pub shared: Arc<Shared>,
}

/// A JSON error answer `{ error }`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The node's HTTP router, without the shared layers (see [`with_layers`]).
pub fn router(shared: Arc<Shared>) -> Router {
    let app = Arc::clone(&shared.app);
    let io = shared.io.clone();
    let static_files = ServeDir::new(&app.config.static_dir);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/cluster/stats", get(cluster_stats))
        .route("/dev/token", get(dev_token))
        .route("/api/announce", post(api::announce))
        .route("/api/ban", post(api::ban))
        .route("/api/emit", post(api::emit))
        .fallback_service(static_files)
        .with_state(HttpState { app, io, shared })
}

/// Wraps `router` in the Socket.IO layer and the layers both share: the handshake gate, the
/// Engine.IO v3 switch, CORS and request tracing (outermost).
pub fn with_layers<L>(router: Router, app: &Arc<App>, socketio: L) -> Router
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<Request> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as tower::Service<Request>>::Error: Into<std::convert::Infallible> + 'static,
    <L::Service as tower::Service<Request>>::Future: Send + 'static,
{
    let config = &app.config;
    router
        .layer(socketio)
        // Outside the Socket.IO layer, which answers every path under /socket.io/ itself.
        .layer(middleware::from_fn_with_state(
            client_bundle::ClientBundle::load(&config.client_bundle_dir),
            client_bundle::serve,
        ))
        .layer(middleware::map_request(owned_head::own_handshake_head))
        // Before anything else is done for a handshake, so a refused one costs next to nothing.
        .layer(middleware::from_fn_with_state(
            Arc::clone(app),
            handshake::gate,
        ))
        .layer(middleware::from_fn_with_state(
            config.args.allow_eio3,
            engine_io_v3_switch,
        ))
        .layer(cors_layer(&config.args.allowed_origins))
        // A 503 from /ready while draining is expected, not an error worth paging for.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
}

/// CORS of docs/protocol.md ("HTTP routes"): the allow-list, GET and POST, credentials allowed.
pub fn cors_layer(origins: &[String]) -> CorsLayer {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_credentials(true)
}

/// The Engine.IO handshake error a v5 server gives clients of an unsupported protocol version.
const UNSUPPORTED_PROTOCOL: &str = r#"{"code":5,"message":"Unsupported protocol version"}"#;

/// socketioxide (feature `v4`) always speaks Engine.IO v3 too; this turns that off unless
/// `ALLOW_EIO3` is set, answering v3 clients as a v4-only server would.
async fn engine_io_v3_switch(State(allow_eio3): State<bool>, req: Request, next: Next) -> Response {
    if !allow_eio3 && is_engine_io_v3(&req) {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            UNSUPPORTED_PROTOCOL,
        )
            .into_response();
    }
    next.run(req).await
}

fn is_engine_io_v3(req: &Request) -> bool {
    req.uri().path().starts_with("/socket.io")
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "EIO=3"))
}

/// Content type of the OpenMetrics text the registry renders.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Classic Prometheus text format, for scrapers that do not ask for OpenMetrics.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the node's registry, OpenMetrics when asked for, else Prometheus text.
async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    node_stats::refresh_gauges(&state.app, &state.io).await;
    let body = state.app.metrics.render();
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let content_type = if wants_openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /stats`: this node's record.
async fn stats(State(state): State<HttpState>) -> Response {
    Json(node_stats::local_stats(&state.app, &state.io)).into_response()
}

/// `GET /cluster/stats`: `{ nodes, totals }` over every live node.
async fn cluster_stats(State(state): State<HttpState>) -> Response {
    match node_stats::cluster_stats(&state.app, &state.io).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cluster stats unavailable");
            json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// Query of `GET /dev/token`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevTokenQuery {
    /// `username` claim.
    pub username: Option<String>,
    /// `role` claim (`user` by default).
    pub role: Option<String>,
    /// `userId` claim (the username by default).
    pub user_id: Option<String>,
}

/// `GET /dev/token?username=alice&role=admin[&userId=..]` → `{ token }`, with `--dev` (any role,
/// signed with the public dev secret) or `DEV_TOKENS` (role `user` only, signed with the
/// configured secret: an admin token is never handed out over HTTP with a real key).
async fn dev_token(State(state): State<HttpState>, Query(q): Query<DevTokenQuery>) -> Response {
    let config = &state.app.config;
    if !config.dev() && !config.args.dev_tokens {
        return json_error(StatusCode::NOT_FOUND, "not found");
    }
    let Some(username) = q
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty() && u.chars().count() <= 32)
    else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "username is required (1..32 characters)",
        );
    };
    let role = q
        .role
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "user".to_owned());
    if role != "user" && !config.dev() {
        return json_error(
            StatusCode::FORBIDDEN,
            "DEV_TOKENS hands out role `user` only; mint other roles with `gateway token --role ROLE`",
        );
    }
    let user_id = q
        .user_id
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| username.clone());
    let identity = Identity {
        user_id,
        username,
        role,
    };
    match state.app.verifier.mint(&identity, DEV_TOKEN_TTL_SECS) {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests;
