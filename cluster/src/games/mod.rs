//! Per-game sequence numbers: the trait, with the in-memory backend ([`MemoryGames`]) and the
//! Redis one ([`RedisGames`]) side by side.

mod memory;
mod redis;

use std::fmt::Debug;

use async_trait::async_trait;

pub use memory::MemoryGames;
pub use redis::RedisGames;

use crate::error::StateResult;

/// Per-game sequence numbers that increase by one, cluster-wide, with no gaps or repeats.
#[async_trait]
pub trait GameSequence: Send + Sync + Debug {
    /// The next number of this game (1 for its first action).
    async fn next(&self, game_id: &str) -> StateResult<u64>;
}
