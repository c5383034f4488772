//! The node's long-lived tasks (history writer, presence checks, cluster reactions, retried
//! disconnects): tracked, so shutdown can cancel them and wait until they are gone.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A set of tracked tasks and the token that asks them to stop.
#[derive(Debug, Default, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// Spawns a tracked task. A task that runs for the node's lifetime must end when
    /// [`Tasks::cancelled`] fires (or when what it serves is dropped).
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// The token cancelled when the node stops its tasks.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Asks every task to stop, then waits up to `within` for them to end; `false` when some
    /// were still running then (they are left to the runtime's shutdown).
    pub async fn stop(&self, within: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_cancels_and_waits_for_every_task() {
        let tasks = Tasks::default();
        for _ in 0..3 {
            let cancelled = tasks.cancelled();
            tasks.spawn(async move { cancelled.cancelled().await });
        }
        assert_eq!(tasks.len(), 3);
        assert!(tasks.stop(Duration::from_secs(1)).await);
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stop_reports_a_task_that_ignores_cancellation() {
        let tasks = Tasks::default();
        tasks.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        assert!(!tasks.stop(Duration::from_secs(1)).await);
    }
}
