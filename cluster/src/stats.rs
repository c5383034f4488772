//! Per-node statistics records and the registry of live nodes (they live in [`crate::nodes`]).

pub use crate::nodes::{Load, NamespaceConnections, NodeRegistry, NodeStats};
