//! Socket.IO namespaces `/`, `/chat`, `/game`, `/admin` (docs/protocol.md, section "Namespaces
//! and events"): the top layer for sockets. Handlers parse each event's payload with
//! [`crate::protocol`], call a use case in [`crate::actions`] and shape its ack.
//!
//! Every namespace shares the admission middleware ([`admission`]), which also registers the
//! socket's event handlers: socketioxide awaits middlewares before it sends the CONNECT ack,
//! so a client's first event right after `connect` always finds its handler.
//!
//! Events of one socket are handled one after another, in arrival order (see
//! [`crate::sockets::Session`]), and every event goes through [`dispatch::on`]: metrics, the
//! per-socket token bucket, the handler, then exactly one ack (when the client asked for one)
//! and an `error` event on rejection.

pub mod admin;
pub mod admission;
pub mod chat;
pub mod cluster_events;
pub mod dispatch;
pub mod game;
pub mod main_ns;

use std::sync::Arc;

use crate::app::App;
use crate::protocol::names::ALL;
use crate::sockets::{Shared, emit};
use crate::{Io, actions};

/// Why namespaces could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("namespace setup failed: {0}")]
pub struct NamespaceError(pub String);

/// Registers every namespace on `io`; returns what the handlers share, for the HTTP routes and
/// the cluster event reactions.
pub async fn register(io: &Io, app: &Arc<App>) -> Result<Arc<Shared>, NamespaceError> {
    let shared = Shared::new(io, app);
    actions::presence_guard::start(&shared);
    // Broadcasts from this node and from others go through one outgoing-queue policy.
    app.link
        .adapter()
        .set_delivery_observer(Arc::new(emit::QueuePolicy::new(&shared)));
    for ns in ALL {
        admission::register(&shared, ns)
            .await
            .map_err(|e| NamespaceError(format!("{ns}: {e}")))?;
    }
    Ok(shared)
}
