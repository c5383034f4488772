//! What a use case gets about the event it serves ([`Cx`]), and how it refuses one ([`Reject`]).

use std::sync::Arc;

use serde_json::{Map, Value};
use socketioxide::extract::SocketRef;

use super::session::NextEvent;
use super::{Session, Shared};
use crate::Adapter;
use crate::app::App;
use crate::protocol::fields::Invalid;

/// A rejected event: the text goes into the ack's `error` and the `error` event's `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

impl From<Invalid> for Reject {
    fn from(e: Invalid) -> Self {
        Self(e.0)
    }
}

impl From<cluster::StateError> for Reject {
    fn from(e: cluster::StateError) -> Self {
        tracing::warn!(error = %e, "cluster state unavailable while handling an event");
        Self("Service temporarily unavailable, please retry".to_owned())
    }
}

/// What an event answers: extra ack fields on success, or a rejection.
pub type Outcome = Result<Map<String, Value>, Reject>;

/// Builds an ack map from pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// What a handler gets about the event it handles.
#[derive(Debug, Clone)]
pub struct Cx {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The sender.
    pub socket: SocketRef<Adapter>,
    /// The sender's session.
    pub session: Session,
    /// Whether the sender wants an ack.
    pub ack_wanted: bool,
    /// The event name.
    pub event: &'static str,
    /// Lets the socket's next event start before this one finishes.
    pub next: NextEvent,
}

impl Cx {
    /// Lets the socket's next event start now, before this handler finishes. Whatever the
    /// handler does after this that must stay in arrival order has to take its own turn (for
    /// broadcasts, [`Session::broadcast_turn`], taken before this call).
    pub fn let_next_run(&self) {
        self.next.release();
    }

    /// The node state.
    pub fn app(&self) -> &App {
        &self.shared.app
    }
}
