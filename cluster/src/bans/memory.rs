//! Bans of a single node.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::{Ban, BanList};
use crate::error::StateResult;
use crate::lock::lock;

/// Bans of a single node.
#[derive(Debug, Default)]
pub struct MemoryBans {
    bans: Mutex<HashMap<String, Ban>>,
}

#[async_trait]
impl BanList for MemoryBans {
    async fn ban(&self, ban: Ban) -> StateResult<()> {
        lock(&self.bans).insert(ban.user_id.clone(), ban);
        Ok(())
    }

    async fn unban(&self, user_id: &str) -> StateResult<bool> {
        let removed = lock(&self.bans).remove(user_id);
        Ok(removed.is_some_and(|b| b.is_active_at(Utc::now())))
    }

    async fn active(&self, user_id: &str) -> StateResult<Option<Ban>> {
        let mut bans = lock(&self.bans);
        let now = Utc::now();
        match bans.get(user_id) {
            Some(b) if b.is_active_at(now) => Ok(Some(b.clone())),
            Some(_) => {
                bans.remove(user_id);
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::*;
    use chrono::Duration;

    #[tokio::test]
    async fn bans_expire() {
        let bans = MemoryBans::default();
        let now = Utc::now();
        bans.ban(ban("u", "r", now, Some(now - Duration::seconds(1))))
            .await
            .unwrap();
        assert!(bans.active("u").await.unwrap().is_none());
        bans.ban(ban("u", "r", now, None)).await.unwrap();
        assert!(bans.active("u").await.unwrap().is_some());
        assert!(bans.unban("u").await.unwrap());
        assert!(bans.active("u").await.unwrap().is_none());
    }
}
