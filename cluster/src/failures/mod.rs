//! Failure counters over a fixed window, cluster-wide (wrong room passwords): the trait, with the
//! in-memory backend ([`MemoryFailures`]) and the Redis one ([`RedisFailures`]) side by side.
//!
//! Counted cluster-wide so that an attacker who guesses a room's password gets the same number
//! of tries whichever nodes (or how many addresses) the attempts come through.

mod memory;
mod redis;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryFailures;
pub use redis::RedisFailures;

use crate::error::StateResult;

/// What failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FailureScope {
    /// Wrong room passwords sent by one user, whatever the room.
    RoomPasswordsOfUser(String),
    /// Wrong passwords sent for one room, whoever sent them.
    PasswordsOfRoom(String),
}

/// The failures counted in a scope's current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureWindow {
    /// Failures since the window began (0 when no window is open).
    pub count: u32,
    /// Time left until the window ends and the count starts again from 0.
    pub remaining: Duration,
}

/// Failure counters, each over a fixed window that opens with its first failure.
#[async_trait]
pub trait FailureCounters: Send + Sync + Debug {
    /// The failures counted in `scope`'s current window.
    async fn window(&self, scope: &FailureScope) -> StateResult<FailureWindow>;
    /// Counts one failure in `scope`; the first one of a window opens a window of `length`.
    async fn record(&self, scope: &FailureScope, length: Duration) -> StateResult<FailureWindow>;
}
