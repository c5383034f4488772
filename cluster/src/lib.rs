//! Cluster-wide state of the gateway.
//!
//! The gateway's handlers see rooms, presence, bans, history, game sequence numbers and node
//! statistics only through traits (all re-exported by [`state`]). Which backend sits behind them
//! is decided once, at start-up: [`memory`] for a single node, [`redis`] for many nodes sharing
//! one Redis (see [`redis::connect`]). The handlers are written once and never know which one
//! they talk to.
//!
//! Each concern is one module holding its records, its trait and both backends side by side:
//! [`rooms`], [`presence`], [`bans`], [`history`], [`games`] (game sequence numbers) and
//! [`nodes`] (node stats and liveness), each with `memory.rs` and `redis.rs`.
//!
//! Besides the state, the Redis side carries the control bus ([`bus`], on `cluster:message`), the
//! per-node stats keys with their heartbeat, the dead-node monitor, and the re-registration of a
//! node's state after a Redis outage. Every Redis key and channel name is built in [`keys`].

pub mod aggregate;
pub mod bans;
pub mod bus;
pub mod error;
mod expiring;
pub mod failures;
pub mod games;
pub mod history;
pub mod keys;
mod lock;
pub mod memory;
pub mod nodes;
pub mod presence;
pub mod redis;
pub mod retention;
pub mod rooms;
pub mod state;
pub mod stats;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod test_support;

pub use aggregate::{ClusterStats, ClusterTotals, cluster_stats};
pub use state::{
    Ban, BanList, CreateOutcome, GameSequence, History, HistoryScope, JoinOutcome, LeaveOutcome,
    Member, OnlineSocket, Presence, PurgedMembership, Retention, RoomRecord, RoomRegistry,
    StateBackends, StateError, StateResult,
};
pub use stats::{Load, NamespaceConnections, NodeRegistry, NodeStats};
