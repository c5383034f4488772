//! The use-case layer: the only code that changes cluster state or broadcasts. Socket handlers
//! (`namespaces`), HTTP routes (`http::api`) and cluster reactions
//! (`namespaces::cluster_events`) parse their input with [`crate::protocol`] and call in here;
//! everything here works on the node's [`crate::sockets::Shared`] state.

pub mod admin;
pub mod cluster;
pub mod delivery;
pub mod games;
pub mod messages;
pub mod presence;
pub mod presence_guard;
pub mod rooms;

use crate::sockets::Reject;

/// Why an admin action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The request is malformed (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// No such namespace (HTTP 400).
    #[error("unknown namespace {0}")]
    UnknownNamespace(String),
    /// Cluster state unavailable (HTTP 503).
    #[error(transparent)]
    State(#[from] ::cluster::StateError),
    /// The broadcast failed (HTTP 500).
    #[error("broadcast failed: {0}")]
    Broadcast(String),
}

impl From<ActionError> for Reject {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::State(e) => e.into(),
            other => Reject(other.to_string()),
        }
    }
}
