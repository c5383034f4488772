//! The long-lived tasks of one Redis connection: tracked, so shutdown waits until they are gone,
//! and cancelled together, or one at a time through a child token held by the task's handle.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every task a [`super::RedisCluster`] starts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// Runs `task` until it ends or the whole set is cancelled.
    pub(crate) fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_until(self.cancel.clone(), task)
    }

    /// Runs `task` until it ends, the returned token is cancelled (by the task's own handle), or
    /// the whole set is cancelled.
    pub(crate) fn spawn_stoppable<F>(&self, task: F) -> (CancellationToken, JoinHandle<()>)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.cancel.child_token();
        let handle = self.spawn_until(token.clone(), task);
        (token, handle)
    }

    fn spawn_until<F>(&self, token: CancellationToken, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            // The task's own future is dropped at its next await once the token is cancelled.
            let _ = token.run_until_cancelled(task).await;
        })
    }

    /// Cancels every task without waiting (for `Drop`).
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels every task and waits until all have ended.
    pub(crate) async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Sets its flag when dropped, so a test sees a task's future go away.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn forever(flag: &Arc<AtomicBool>) -> impl Future<Output = ()> + Send + 'static {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_every_task_and_waits_for_them() {
        let tasks = Tasks::default();
        let (a, b) = (Arc::default(), Arc::default());
        drop(tasks.spawn(forever(&a)));
        let (_token, _) = tasks.spawn_stoppable(forever(&b));
        tasks.stop().await;
        assert!(a.load(Ordering::SeqCst) && b.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stoppable_task_stops_alone() {
        let tasks = Tasks::default();
        let (kept, stopped) = (Arc::default(), Arc::default());
        drop(tasks.spawn(forever(&kept)));
        let (token, handle) = tasks.spawn_stoppable(forever(&stopped));
        token.cancel();
        handle.await.unwrap();
        assert!(stopped.load(Ordering::SeqCst));
        assert!(!kept.load(Ordering::SeqCst));
        tasks.stop().await;
        assert!(kept.load(Ordering::SeqCst));
    }
}
