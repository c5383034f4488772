//! HTTP routes: health, readiness, metrics, stats, admin API, dev token and static files.

use std::sync::Arc;

use axum::Router;

use crate::Io;
use crate::app::App;

/// The node's HTTP router (the Socket.IO layer is added by the caller).
pub fn router(_app: Arc<App>, _io: Io) -> Router {
    Router::new()
}
