//! Game sequence numbers on Redis.

use std::time::Duration;

use async_trait::async_trait;

use super::GameSequence;
use crate::error::{StateError, StateResult};
use crate::redis::conn::{Conn, millis};
use crate::redis::scripts;

/// Game sequence numbers on Redis (`INCR`), each counter expiring once its game is idle.
#[derive(Debug)]
pub struct RedisGames {
    pub(crate) conn: Conn,
    pub(crate) ttl: Duration,
}

#[async_trait]
impl GameSequence for RedisGames {
    async fn next(&self, game_id: &str) -> StateResult<u64> {
        let n: i64 = self
            .conn
            .eval(
                &scripts::NEXT_GAME_SEQ,
                vec![self.conn.keys.game_seq(game_id)],
                vec![millis(self.ttl).to_string()],
            )
            .await?;
        u64::try_from(n).map_err(|_| StateError::Corrupt(format!("game sequence {n}")))
    }
}
