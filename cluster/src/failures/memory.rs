//! Failure counters of a single node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{FailureCounters, FailureScope, FailureWindow};
use crate::error::StateResult;
use crate::lock::lock;

/// Scopes past which ended windows are swept as new ones open.
const SWEEP_ABOVE: usize = 1024;

/// Failure counters of a single node. Only scopes with an open window are held.
#[derive(Debug, Default)]
pub struct MemoryFailures {
    windows: Mutex<HashMap<FailureScope, (Instant, u32)>>,
}

impl MemoryFailures {
    /// Scopes with an open window (for the tests of shrinking).
    pub fn tracked(&self) -> usize {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        windows.retain(|_, (ends, _)| *ends > now);
        windows.len()
    }
}

fn open_window(entry: Option<&(Instant, u32)>, now: Instant) -> FailureWindow {
    match entry {
        Some(&(ends, count)) if ends > now => FailureWindow {
            count,
            remaining: ends - now,
        },
        _ => FailureWindow::default(),
    }
}

#[async_trait]
impl FailureCounters for MemoryFailures {
    async fn window(&self, scope: &FailureScope) -> StateResult<FailureWindow> {
        Ok(open_window(lock(&self.windows).get(scope), Instant::now()))
    }

    async fn record(&self, scope: &FailureScope, length: Duration) -> StateResult<FailureWindow> {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (ends, _)| *ends > now);
        }
        let entry = windows.entry(scope.clone()).or_insert((now + length, 0));
        if entry.0 <= now {
            *entry = (now + length, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Ok(open_window(Some(entry), now))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_window_opens_with_its_first_failure_and_ends_after_its_length() {
        let f = MemoryFailures::default();
        let user = FailureScope::RoomPasswordsOfUser("u".into());
        let minute = Duration::from_secs(60);
        assert_eq!(f.window(&user).await.unwrap(), FailureWindow::default());
        f.record(&user, minute).await.unwrap();
        tokio::time::advance(Duration::from_secs(20)).await;
        let w = f.record(&user, minute).await.unwrap();
        assert_eq!((w.count, w.remaining), (2, Duration::from_secs(40)));
        assert_eq!(
            f.window(&FailureScope::PasswordsOfRoom("u".into()))
                .await
                .unwrap()
                .count,
            0,
            "a room and a user of the same id are different scopes"
        );
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(f.window(&user).await.unwrap().count, 0);
        assert_eq!(f.tracked(), 0, "ended windows are forgotten");
        assert_eq!(f.record(&user, minute).await.unwrap().count, 1);
    }
}
