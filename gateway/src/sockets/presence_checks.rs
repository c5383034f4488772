//! The queue of presence checks of sockets admitted to `/` (what a check does is
//! `actions::presence_guard`).
//!
//! The checks wait in one queue served by one task rather than in a task per socket: a sleeping
//! task costs about 3 KiB, which every freshly connected client carried for the whole wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketioxide::socket::Sid;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Session, lock};

/// How long after admission a socket must have entered the namespace.
pub const ADMISSION_GUARD: Duration = Duration::from_secs(5);

/// Checks waiting in the queue at most. Past it (a connection burst beyond any configured rate
/// limit), a check waits in a task of its own instead: nothing is dropped.
pub const MAX_QUEUED: usize = 100_000;

/// One pending check: whether socket `sid`, admitted with `session`, entered `/` by `due`.
#[derive(Debug)]
pub struct Check {
    /// When the check runs.
    pub due: Instant,
    /// The socket checked.
    pub sid: Sid,
    /// Its session.
    pub session: Session,
}

impl Check {
    /// The check of a socket admitted now.
    pub fn of_admitted(sid: Sid, session: &Session) -> Self {
        Self {
            due: Instant::now() + ADMISSION_GUARD,
            sid,
            session: session.clone(),
        }
    }
}

/// The queue of pending checks, oldest first (all wait the same time, so also soonest first).
#[derive(Debug, Default)]
pub struct PresenceChecks {
    queue: Mutex<VecDeque<Check>>,
    queued: Arc<Notify>,
}

impl PresenceChecks {
    /// Queues `check`, or gives it back when the queue is at [`MAX_QUEUED`].
    pub fn push(&self, check: Check) -> Result<(), Check> {
        {
            let mut queue = lock(&self.queue);
            if queue.len() >= MAX_QUEUED {
                return Err(check);
            }
            queue.push_back(check);
        }
        self.queued.notify_one();
        Ok(())
    }

    /// Takes the checks due by `now`, and tells when the next one is due.
    pub fn take_due(&self, now: Instant) -> (Vec<Check>, Option<Instant>) {
        let mut queue = lock(&self.queue);
        let ready = queue.iter().take_while(|c| c.due <= now).count();
        let due: Vec<Check> = queue.drain(..ready).collect();
        (due, queue.front().map(|c| c.due))
    }

    /// Notified when a check is queued. `notify_one` stores a permit, so a check queued after a
    /// look at the queue still wakes a wait that starts later.
    pub fn queued(&self) -> Arc<Notify> {
        Arc::clone(&self.queued)
    }

    /// Checks waiting.
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Whether no check waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
