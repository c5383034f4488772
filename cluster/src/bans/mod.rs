//! Bans, cluster-wide, with expiry: the record and trait, with the in-memory backend
//! ([`MemoryBans`]) and the Redis one ([`RedisBans`], which also keeps a book of known bans to
//! write back after Redis loses its data) side by side.

mod memory;
mod redis;

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use memory::MemoryBans;
pub use redis::{BanSync, RedisBans};

use crate::error::StateResult;

/// A ban of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    /// The banned user.
    pub user_id: String,
    /// Why; shown to the user as `Banned: <reason>`.
    pub reason: String,
    /// `userId` of the admin (or `api`) who banned.
    pub banned_by: String,
    /// When the ban was made.
    pub created_at: DateTime<Utc>,
    /// When it lapses; `None` is permanent.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Ban {
    /// Whether the ban is in force at `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// Bans, cluster-wide, with expiry.
#[async_trait]
pub trait BanList: Send + Sync + Debug {
    /// Stores (or replaces) a ban.
    async fn ban(&self, ban: Ban) -> StateResult<()>;
    /// Lifts a ban; `true` when there was one.
    async fn unban(&self, user_id: &str) -> StateResult<bool>;
    /// The ban in force for this user, if any (expired bans are never returned).
    async fn active(&self, user_id: &str) -> StateResult<Option<Ban>>;
}
