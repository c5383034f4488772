//! A byte bound shared by the messages of one queue: a message enters only with a [`Held`]
//! share of the budget, given back when the message is dropped (handled or discarded), so the
//! queue's memory is bounded whatever the size of its messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes one queue may hold.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
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
}
