//! Per-game ordering of `game update` on this node.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// One async lock per game, so that on this node the action that got `seq` n is emitted before
/// the one that got n + 1 (the sequence number and the emit are one step per game). Entries are
/// dropped once no action of that game is in flight, so the map holds only busy games.
#[derive(Debug, Default)]
pub struct GameLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl GameLocks {
    /// Runs `f` while holding the lock of `game_id`.
    pub async fn with<F, Fut, T>(&self, game_id: &str, f: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = Arc::clone(
            self.map()
                .entry(game_id.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
        );
        let result = {
            let _guard = lock.lock().await;
            f().await
        };
        let mut map = self.map();
        // Two references: the map's and ours. Nobody else waits for it: forget the game.
        if Arc::strong_count(&lock) == 2 {
            map.remove(game_id);
        }
        result
    }

    /// Games with an action in flight.
    pub fn busy(&self) -> usize {
        self.map().len()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actions_of_one_game_run_one_at_a_time_in_seq_order() {
        let locks = Arc::new(GameLocks::default());
        let seq = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (locks, seq, delivered) = (locks.clone(), seq.clone(), delivered.clone());
            tasks.push(tokio::spawn(async move {
                locks
                    .with("g", || async {
                        let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
                        // A yield between taking the number and delivering it is where an
                        // unlocked version reorders (the other worker takes the next number).
                        tokio::task::yield_now().await;
                        delivered.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                    })
                    .await;
            }));
        }
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        }
        let got = delivered.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(got, (1..=50).collect::<Vec<u64>>());
        assert_eq!(locks.busy(), 0, "idle games are forgotten");
    }
}
