//! Game sequence numbers of a single node.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::GameSequence;
use crate::error::StateResult;
use crate::expiring::Expiring;
use crate::lock::lock;
use crate::retention::Retention;

/// Game sequence numbers of a single node; a game idle for the TTL is forgotten.
#[derive(Debug)]
pub struct MemoryGames {
    ttl: Duration,
    seqs: Mutex<Expiring<String, u64>>,
}

impl Default for MemoryGames {
    fn default() -> Self {
        Self::new(Retention::default().game_sequence)
    }
}

impl MemoryGames {
    /// Counters forgotten after `ttl` without an action.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seqs: Mutex::default(),
        }
    }

    /// How many games have a live counter (for the tests of shrinking).
    pub fn game_count(&self) -> usize {
        let mut seqs = lock(&self.seqs);
        seqs.sweep(self.ttl);
        seqs.len()
    }
}

#[async_trait]
impl GameSequence for MemoryGames {
    async fn next(&self, game_id: &str) -> StateResult<u64> {
        let mut seqs = lock(&self.seqs);
        let seq = seqs.touch(game_id.to_owned(), self.ttl);
        *seq += 1;
        Ok(*seq)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn game_sequence_has_no_gaps() {
        let g = Arc::new(MemoryGames::default());
        let mut handles = Vec::new();
        for _ in 0..8 {
            let g = g.clone();
            handles.push(tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..100 {
                    v.push(g.next("g").await.unwrap());
                }
                v
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=800).collect::<Vec<u64>>());
        assert_eq!(g.next("other").await.unwrap(), 1);
    }
}
