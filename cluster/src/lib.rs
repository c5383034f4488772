//! Cluster-wide state of the gateway.
//!
//! The gateway's handlers see rooms, presence, bans, history, game sequence numbers and node
//! statistics only through the traits in [`state`]. Which backend sits behind them is decided once,
//! at start-up: [`memory`] for a single node, Redis (see the cluster issue) for many nodes sharing
//! one Redis. The handlers are written once and never know which one they talk to.

pub mod memory;
pub mod state;
pub mod stats;

pub use state::{
    Ban, BanList, GameSequence, History, HistoryScope, JoinOutcome, LeaveOutcome, Member,
    OnlineSocket, Presence, PurgedMembership, RoomRecord, RoomRegistry, StateBackends, StateError,
    StateResult,
};
pub use stats::{NamespaceConnections, NodeRegistry, NodeStats};
