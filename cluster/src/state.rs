//! The traits through which the gateway reads and writes cluster-wide state, and their records,
//! re-exported from the module of each concern ([`crate::rooms`], [`crate::presence`], ...), with
//! what the concerns share: the error type, the retention times and the set of backends.
//!
//! Every method is a single logical operation that the backend performs atomically with respect to
//! other nodes (a Redis backend uses a script or a transaction where a check and a write must not
//! be split). Errors mean the backend could not answer; a "no" (room missing, room full, not a
//! member) is a value, not an error.

use std::sync::Arc;

pub use crate::error::{StateError, StateResult};
pub use crate::retention::Retention;

pub use crate::bans::{Ban, BanList};
pub use crate::games::GameSequence;
pub use crate::history::{History, HistoryScope};
pub use crate::presence::{OnlineSocket, Presence};
pub use crate::rooms::{
    CreateOutcome, JoinOutcome, LeaveOutcome, Member, PurgedMembership, RoomRecord, RoomRegistry,
};

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
    /// Failure counters (wrong room passwords).
    pub failures: Arc<dyn crate::failures::FailureCounters>,
}
