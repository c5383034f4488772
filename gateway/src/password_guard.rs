//! Who may spend the node's argon2 time, and how often (a few sockets sending wrong room
//! passwords must not stall every private-room join on the node, nor guess a password by
//! spreading their tries over the nodes).
//!
//! - One password check or hash in flight per user on this node: a user's extra concurrent
//!   attempts are refused at once instead of queueing for the node's few hashing slots, so the
//!   slots are shared fairly between users however many sockets each opens.
//! - Failed attempts are counted per user and per room over a window, cluster-wide (in the
//!   state backend's [`FailureCounters`]); past the limit, further attempts are refused without
//!   hashing until the window ends, on every node.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster::failures::{FailureCounters, FailureScope, FailureWindow};

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
    /// The failure counters could not be read (Redis unavailable): no attempt is allowed
    /// uncounted.
    #[error("Service temporarily unavailable, please retry")]
    Unavailable,
}

/// The node's password guard.
#[derive(Debug)]
pub struct PasswordGuard {
    per_user: u32,
    per_room: u32,
    window: Duration,
    failures: Arc<dyn FailureCounters>,
    busy: Mutex<HashSet<String>>,
}

/// An attempt admitted by [`PasswordGuard::begin`]; the user's slot is freed when it is dropped.
#[derive(Debug)]
pub struct Attempt<'a> {
    guard: &'a PasswordGuard,
    user: String,
    room: Option<String>,
}

/// Seconds left of a window that is at `limit`, `None` when attempts are allowed.
fn locked(window: FailureWindow, limit: u32) -> Option<u64> {
    (window.count >= limit).then(|| window.remaining.as_secs().max(1))
}

impl PasswordGuard {
    /// At most `per_user` failures per user and `per_room` per room within `window`, counted
    /// in `failures`.
    pub fn new(
        per_user: u32,
        per_room: u32,
        window: Duration,
        failures: Arc<dyn FailureCounters>,
    ) -> Self {
        Self {
            per_user,
            per_room,
            window,
            failures,
            busy: Mutex::default(),
        }
    }

    fn busy(&self) -> MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a password check by `user` for `room` (`None` for hashing a new room's password).
    pub async fn begin(&self, user: &str, room: Option<&str>) -> Result<Attempt<'_>, Refusal> {
        if !self.busy().insert(user.to_owned()) {
            return Err(Refusal::Busy);
        }
        // From here a refusal drops the attempt, which frees the user's slot.
        let attempt = Attempt {
            guard: self,
            user: user.to_owned(),
            room: room.map(str::to_owned),
        };
        let of_user = FailureScope::RoomPasswordsOfUser(user.to_owned());
        let user_window = self.failures.window(&of_user).await.map_err(unavailable)?;
        if let Some(secs) = locked(user_window, self.per_user) {
            return Err(Refusal::UserLocked(secs));
        }
        if let Some(room) = room {
            let of_room = FailureScope::PasswordsOfRoom(room.to_owned());
            let room_window = self.failures.window(&of_room).await.map_err(unavailable)?;
            if let Some(secs) = locked(room_window, self.per_room) {
                return Err(Refusal::RoomLocked(secs));
            }
        }
        Ok(attempt)
    }
}

fn unavailable(e: cluster::StateError) -> Refusal {
    tracing::warn!(error = %e, "password failure counters unavailable");
    Refusal::Unavailable
}

impl Attempt<'_> {
    /// Records that the password was wrong (for the user and the room, cluster-wide).
    pub async fn failed(self) {
        let guard = self.guard;
        let mut scopes = vec![FailureScope::RoomPasswordsOfUser(self.user.clone())];
        scopes.extend(self.room.clone().map(FailureScope::PasswordsOfRoom));
        for scope in &scopes {
            if let Err(e) = guard.failures.record(scope, guard.window).await {
                tracing::warn!(error = %e, ?scope, "cannot count a wrong room password");
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.guard.busy().remove(&self.user);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cluster::memory::MemoryFailures;

    use super::*;

    fn guard(per_user: u32, per_room: u32) -> PasswordGuard {
        let failures = Arc::new(MemoryFailures::default());
        PasswordGuard::new(per_user, per_room, Duration::from_secs(60), failures)
    }

    #[tokio::test(start_paused = true)]
    async fn one_attempt_in_flight_per_user() {
        let g = guard(5, 20);
        let a = g.begin("u", Some("r")).await.unwrap();
        assert_eq!(g.begin("u", Some("q")).await.unwrap_err(), Refusal::Busy);
        let other = g.begin("v", Some("r")).await.unwrap();
        drop(a);
        assert!(g.begin("u", Some("r")).await.is_ok());
        drop(other);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lock_the_user_then_the_window_ends() {
        let g = guard(3, 100);
        for _ in 0..3 {
            g.begin("u", Some("r")).await.unwrap().failed().await;
        }
        assert_eq!(
            g.begin("u", Some("other")).await.unwrap_err(),
            Refusal::UserLocked(60)
        );
        assert!(
            g.begin("v", Some("r")).await.is_ok(),
            "other users are not locked"
        );
        assert!(
            g.begin("u", Some("r")).await.is_err(),
            "a refusal frees the user's slot but keeps the lock"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(g.begin("u", Some("r")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lock_the_room_for_everyone() {
        let g = guard(100, 2);
        g.begin("a", Some("r")).await.unwrap().failed().await;
        g.begin("b", Some("r")).await.unwrap().failed().await;
        assert!(matches!(
            g.begin("c", Some("r")).await,
            Err(Refusal::RoomLocked(_))
        ));
        assert!(g.begin("c", Some("q")).await.is_ok());
        assert!(
            g.begin("c", None).await.is_ok(),
            "hashing a new password is not a room's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_nodes_sharing_the_counters_share_the_limit() {
        let failures: Arc<dyn FailureCounters> = Arc::new(MemoryFailures::default());
        let window = Duration::from_secs(60);
        let node_a = PasswordGuard::new(100, 2, window, Arc::clone(&failures));
        let node_b = PasswordGuard::new(100, 2, window, failures);
        node_a.begin("a", Some("r")).await.unwrap().failed().await;
        node_b.begin("b", Some("r")).await.unwrap().failed().await;
        assert!(matches!(
            node_a.begin("c", Some("r")).await,
            Err(Refusal::RoomLocked(_))
        ));
    }
}
