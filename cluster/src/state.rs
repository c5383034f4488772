//! The traits through which the gateway reads and writes cluster-wide state, and their records,
//! re-exported from the module of each concern ([`crate::rooms`], [`crate::presence`], ...), with
//! what the concerns share: the error type, the retention times and the set of backends.
//!
//! Every method is a single logical operation that the backend performs atomically with respect to
//! other nodes (a Redis backend uses a script or a transaction where a check and a write must not
//! be split). Errors mean the backend could not answer; a "no" (room missing, room full, not a
//! member) is a value, not an error.

use std::sync::Arc;

pub use crate::bans::{Ban, BanList};
pub use crate::games::GameSequence;
pub use crate::history::{History, HistoryScope};
pub use crate::presence::{OnlineSocket, Presence};
pub use crate::rooms::{
    CreateOutcome, JoinOutcome, LeaveOutcome, Member, PurgedMembership, RoomRecord, RoomRegistry,
};

/// What a state backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached (Redis down, connection lost).
    #[error("cluster state is unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("cluster state backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt cluster state record: {0}")]
    Corrupt(String),
}

/// Result of every state operation.
pub type StateResult<T> = Result<T, StateError>;

/// How long state that clients create lives once nobody uses it, so no client can make shared
/// state grow without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A room nobody has joined is deleted this long after its creation.
    pub unjoined_room: std::time::Duration,
    /// A history scope (room, user pair, namespace) with no new message is forgotten after this.
    pub history: std::time::Duration,
    /// A game's sequence counter with no action is forgotten after this (the game then starts
    /// again at 1).
    pub game_sequence: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            unjoined_room: std::time::Duration::from_secs(600),
            history: std::time::Duration::from_secs(7 * 24 * 3600),
            game_sequence: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// The set of backends the gateway runs with, chosen once at start-up.
#[derive(Clone, Debug)]
pub struct StateBackends {
    /// Room registry.
    pub rooms: Arc<dyn RoomRegistry>,
    /// Online users.
    pub presence: Arc<dyn Presence>,
    /// Bans.
    pub bans: Arc<dyn BanList>,
    /// Message history.
    pub history: Arc<dyn History>,
    /// Game sequence numbers.
    pub games: Arc<dyn GameSequence>,
    /// Node statistics and liveness.
    pub nodes: Arc<dyn crate::NodeRegistry>,
}
