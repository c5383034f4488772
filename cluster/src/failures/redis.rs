//! Failure counters on Redis: one counter key a scope, expiring with its window.

use std::time::Duration;

use async_trait::async_trait;

use super::{FailureCounters, FailureScope, FailureWindow};
use crate::error::{StateError, StateResult};
use crate::keys::Keys;
use crate::redis::conn::{Conn, millis};
use crate::redis::scripts;

/// Failure counters on Redis (`INCR`, with the window's length as the key's TTL).
#[derive(Debug)]
pub struct RedisFailures {
    pub(crate) conn: Conn,
}

fn key(keys: &Keys, scope: &FailureScope) -> String {
    match scope {
        FailureScope::RoomPasswordsOfUser(user) => keys.password_failures_of_user(user),
        FailureScope::PasswordsOfRoom(room) => keys.password_failures_of_room(room),
    }
}

/// `{count, ms left}` as a script returns it.
fn window_of(reply: Vec<i64>) -> StateResult<FailureWindow> {
    let [count, left] = reply[..] else {
        return Err(StateError::Corrupt(format!("failure window {reply:?}")));
    };
    Ok(FailureWindow {
        count: u32::try_from(count.max(0)).unwrap_or(u32::MAX),
        remaining: Duration::from_millis(u64::try_from(left.max(0)).unwrap_or_default()),
    })
}

#[async_trait]
impl FailureCounters for RedisFailures {
    async fn window(&self, scope: &FailureScope) -> StateResult<FailureWindow> {
        let keys = vec![key(&self.conn.keys, scope)];
        window_of(
            self.conn
                .eval(&scripts::FAILURE_WINDOW, keys, vec![])
                .await?,
        )
    }

    async fn record(&self, scope: &FailureScope, length: Duration) -> StateResult<FailureWindow> {
        let keys = vec![key(&self.conn.keys, scope)];
        let args = vec![millis(length).max(1).to_string()];
        window_of(self.conn.eval(&scripts::RECORD_FAILURE, keys, args).await?)
    }
}
