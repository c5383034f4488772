//! The handshake gate as an HTTP middleware: every request that would open an Engine.IO session
//! passes [`HandshakeGate::admit`](crate::handshake_gate::HandshakeGate::admit) before
//! socketioxide sees it. A refused one is answered here (429 for the address's budget, 503 for
//! the node-wide cap) with `{ error }` saying why and `Retry-After`; an admitted one carries its
//! pending ticket into the session through the request extensions.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::json_error;
use crate::app::App;
use crate::handshake_gate::Refusal;

/// The Engine.IO path socketioxide serves.
const ENGINE_IO_PATH: &str = "/socket.io";

pub(super) async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    if !opens_a_session(&req) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0);
    match app.handshakes.admit(peer, req.headers()) {
        Ok(ticket) => {
            req.extensions_mut().insert(ticket);
            next.run(req).await
        }
        Err(refusal) => refused(&refusal),
    }
}

fn refused(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refusal::TooManyPending { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = json_error(status, refusal.to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, refusal.retry_after_secs().into());
    response
}

/// A request engineioxide would answer with a new session: a GET on the Engine.IO path with a
/// protocol version and no `sid` (polling and WebSocket alike). Anything else cannot create a
/// session and is not charged.
fn opens_a_session(req: &Request) -> bool {
    let on_engine_path = req
        .uri()
        .path()
        .strip_prefix(ENGINE_IO_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !on_engine_path || req.method() != Method::GET {
        return false;
    }
    let query = req.uri().query().unwrap_or_default();
    let mut pairs = query.split('&');
    let mut has_version = false;
    for pair in pairs.by_ref() {
        if pair.starts_with("sid=") {
            return false;
        }
        has_version |= pair.starts_with("EIO=");
    }
    has_version
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn get(uri: &str) -> Request {
        Request::get(uri)
            .body(Body::empty())
            .expect("valid request")
    }

    #[test]
    fn only_requests_that_open_a_session_are_gated() {
        assert!(opens_a_session(&get("/socket.io/?EIO=4&transport=polling")));
        assert!(opens_a_session(&get(
            "/socket.io/?transport=websocket&EIO=4"
        )));
        assert!(opens_a_session(&get("/socket.io?EIO=4&transport=polling")));
        assert!(!opens_a_session(&get(
            "/socket.io/?EIO=4&transport=polling&sid=abc"
        )));
        assert!(!opens_a_session(&get("/socket.io/?sid=abc&EIO=4")));
        assert!(!opens_a_session(&get("/socket.io/?transport=polling")));
        assert!(!opens_a_session(&get(
            "/socket.iox/?EIO=4&transport=polling"
        )));
        assert!(!opens_a_session(&get("/health?EIO=4")));
        let post = Request::post("/socket.io/?EIO=4&transport=polling")
            .body(Body::empty())
            .expect("valid request");
        assert!(!opens_a_session(&post));
    }
}
