//! History on Redis.

use std::num::NonZeroUsize;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;

use super::{History, HistoryScope, Messages};
use crate::error::StateResult;
use crate::redis::conn::{Conn, decode, encode, millis, state_error};
use crate::redis::scripts;

/// History on Redis: one stream per scope, trimmed to `capacity` entries on every append, with
/// a TTL restarted by every append. A room's stream is deleted with the room, and a message for
/// a room that no longer exists is not stored.
#[derive(Debug)]
pub struct RedisHistory {
    pub(crate) conn: Conn,
    pub(crate) capacity: usize,
    pub(crate) ttl: Duration,
}

#[async_trait]
impl History for RedisHistory {
    async fn append(&self, scope: &HistoryScope, message: serde_json::Value) -> StateResult<()> {
        let k = &self.conn.keys;
        let stream = k.history(scope);
        let (guard, must_exist) = match scope {
            HistoryScope::Room(room_id) => (k.room(room_id), "1"),
            _ => (stream.clone(), "0"),
        };
        let _: i64 = self
            .conn
            .eval(
                &scripts::APPEND_HISTORY,
                vec![stream, guard],
                vec![
                    encode(&message)?,
                    self.capacity.max(1).to_string(),
                    millis(self.ttl).to_string(),
                    must_exist.to_owned(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn newest(&self, scope: &HistoryScope, limit: NonZeroUsize) -> StateResult<Messages> {
        self.conn.ensure_connected()?;
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .conn
            .client
            .xrevrange(
                self.conn.keys.history(scope),
                "+",
                "-",
                Some(u64::try_from(limit.get()).unwrap_or(u64::MAX)),
            )
            .await
            .map_err(|e| state_error(&e))?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, fields) in entries.into_iter().rev() {
            if let Some((_, json)) = fields.into_iter().find(|(f, _)| f == "m") {
                out.push(decode(&json)?);
            }
        }
        Ok(out)
    }
}
