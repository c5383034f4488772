//! A byte bound shared by the messages of one queue: a message enters only with a [`Held`]
//! share of the budget, given back when the message is dropped (handled or discarded), so the
//! queue's memory is bounded whatever the size of its messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The bytes one queue may hold.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
    /// Woken whenever bytes are given back, for [`Self::hold`].
    freed: Notify,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            freed: Notify::new(),
        })
    }

    /// Takes `bytes` of the budget; `None` when that would go over it. A message larger than
    /// the whole budget still enters an empty queue, so no size is refused for ever.
    pub(crate) fn try_hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let next = used.checked_add(bytes)?;
                (next <= self.limit || used == 0).then_some(next)
            })
            .ok()?;
        Some(Held {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Takes `bytes` of the budget, waiting until enough is given back (no deadline: wrap it
    /// in a timeout).
    pub(crate) async fn hold(self: &Arc<Self>, bytes: usize) -> Held {
        loop {
            // Registered before trying, so bytes given back in between still wake this waiter.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(held) = self.try_hold(bytes) {
                return held;
            }
            freed.await;
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A share of a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_the_limit_and_gives_back_on_drop() {
        let budget = ByteBudget::new(100);
        let a = budget.try_hold(60).unwrap();
        let b = budget.try_hold(40).unwrap();
        assert!(budget.try_hold(1).is_none(), "over the limit");
        drop(a);
        assert_eq!(budget.used(), 40);
        let c = budget.try_hold(60).unwrap();
        drop((b, c));
        assert_eq!(budget.used(), 0);
        // Larger than the whole budget: only into an empty queue.
        let big = budget.try_hold(1000).unwrap();
        assert!(budget.try_hold(1).is_none());
        drop(big);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_waiting_hold_gets_its_bytes_once_they_are_given_back() {
        let budget = ByteBudget::new(100);
        let first = budget.try_hold(80).unwrap();
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.hold(50).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "50 more bytes would go over the limit"
        );
        drop(first);
        let second = waiter.await.unwrap();
        assert_eq!(budget.used(), 50);
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
