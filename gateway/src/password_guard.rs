//! Who may spend the node's argon2 time, and how often (issue: a few sockets sending wrong room
//! passwords must not stall every private-room join on the node).
//!
//! - One password check or hash in flight per user: a user's extra concurrent attempts are
//!   refused at once instead of queueing for the node's few hashing slots, so the slots are
//!   shared fairly between users however many sockets each opens.
//! - Failed attempts are counted per user and per room over a window; past the limit, further
//!   attempts are refused without hashing until the window ends.
//!
//! Counters are per node. Both maps hold only users and rooms with a failure in the current
//! window (expired entries are swept as new ones arrive).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Entries past which expired failure counters are swept on insert.
const SWEEP_ABOVE: usize = 1024;

/// Why a password attempt was refused before any hashing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The user has a check in flight already.
    #[error("A room password check of yours is still running; wait for its answer")]
    Busy,
    /// The user failed too often.
    #[error("Too many wrong room passwords: try again in {0} s")]
    UserLocked(u64),
    /// The room's password failed too often.
    #[error("Too many wrong passwords for this room: try again in {0} s")]
    RoomLocked(u64),
}

#[derive(Debug)]
struct Failures {
    since: Instant,
    count: u32,
}

#[derive(Debug, Default)]
struct GuardState {
    busy: HashSet<String>,
    by_user: HashMap<String, Failures>,
    by_room: HashMap<String, Failures>,
}

/// The node's password guard.
#[derive(Debug)]
pub struct PasswordGuard {
    per_user: u32,
    per_room: u32,
    window: Duration,
    state: Mutex<GuardState>,
}

/// An attempt admitted by [`PasswordGuard::begin`]; the user's slot is freed when it is dropped.
#[derive(Debug)]
pub struct Attempt<'a> {
    guard: &'a PasswordGuard,
    user: String,
    room: Option<String>,
}

impl PasswordGuard {
    /// At most `per_user` failures per user and `per_room` per room within `window`.
    pub fn new(per_user: u32, per_room: u32, window: Duration) -> Self {
        Self {
            per_user,
            per_room,
            window,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GuardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds left of a window that is at its limit, `None` when attempts are allowed.
    fn locked(&self, failures: Option<&Failures>, limit: u32, now: Instant) -> Option<u64> {
        let f = failures?;
        let ends = f.since + self.window;
        (f.count >= limit && ends > now).then(|| (ends - now).as_secs().max(1))
    }

    /// Admits a password check by `user` for `room` (`None` for hashing a new room's password).
    pub fn begin(&self, user: &str, room: Option<&str>) -> Result<Attempt<'_>, Refusal> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(secs) = self.locked(state.by_user.get(user), self.per_user, now) {
            return Err(Refusal::UserLocked(secs));
        }
        if let Some(room) = room
            && let Some(secs) = self.locked(state.by_room.get(room), self.per_room, now)
        {
            return Err(Refusal::RoomLocked(secs));
        }
        if !state.busy.insert(user.to_owned()) {
            return Err(Refusal::Busy);
        }
        Ok(Attempt {
            guard: self,
            user: user.to_owned(),
            room: room.map(str::to_owned),
        })
    }

    fn count(&self, map: &mut HashMap<String, Failures>, key: &str, now: Instant) {
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, f| f.since + self.window > now);
        }
        let f = map.entry(key.to_owned()).or_insert(Failures {
            since: now,
            count: 0,
        });
        if f.since + self.window <= now {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count += 1;
    }

    /// Users and rooms with failures counted (for the tests of shrinking).
    pub fn tracked(&self) -> usize {
        let now = Instant::now();
        let mut state = self.lock();
        state.by_user.retain(|_, f| f.since + self.window > now);
        state.by_room.retain(|_, f| f.since + self.window > now);
        state.by_user.len() + state.by_room.len()
    }
}

impl Attempt<'_> {
    /// Records that the password was wrong.
    pub fn failed(self) {
        let now = Instant::now();
        let guard = self.guard;
        let mut state = guard.lock();
        let state = &mut *state;
        guard.count(&mut state.by_user, &self.user, now);
        if let Some(room) = &self.room {
            guard.count(&mut state.by_room, room, now);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.guard.lock().busy.remove(&self.user);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_attempt_in_flight_per_user() {
        let g = PasswordGuard::new(5, 20, Duration::from_secs(60));
        let a = g.begin("u", Some("r")).unwrap();
        assert_eq!(g.begin("u", Some("q")).unwrap_err(), Refusal::Busy);
        let other = g.begin("v", Some("r")).unwrap();
        drop(a);
        assert!(g.begin("u", Some("r")).is_ok());
        drop(other);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lock_the_user_then_the_window_ends() {
        let g = PasswordGuard::new(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            g.begin("u", Some("r")).unwrap().failed();
        }
        assert_eq!(
            g.begin("u", Some("other")).unwrap_err(),
            Refusal::UserLocked(60)
        );
        assert!(
            g.begin("v", Some("r")).is_ok(),
            "other users are not locked"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(g.begin("u", Some("r")).is_ok());
        assert_eq!(g.tracked(), 0, "expired counters are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lock_the_room_for_everyone() {
        let g = PasswordGuard::new(100, 2, Duration::from_secs(60));
        g.begin("a", Some("r")).unwrap().failed();
        g.begin("b", Some("r")).unwrap().failed();
        assert!(matches!(
            g.begin("c", Some("r")),
            Err(Refusal::RoomLocked(_))
        ));
        assert!(g.begin("c", Some("q")).is_ok());
        assert!(
            g.begin("c", None).is_ok(),
            "hashing a new password is not a room's"
        );
    }
}
