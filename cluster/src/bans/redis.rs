//! Bans on Redis.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use fred::prelude::*;

use super::{Ban, BanList};
use crate::error::{StateError, StateResult};
use crate::lock::{MutexGuard, lock};
use crate::redis::conn::{Conn, decode, encode, state_error};

/// Bans on Redis; a ban with an expiry is stored with a matching Redis TTL.
///
/// Redis may lose every ban (the shipped Redis keeps nothing on disk), so each node also keeps
/// the bans it knows in a book: those it stored or read, those other nodes announced, and all of
/// Redis's at every [`RedisBans::sync`]. A marker key holds a random epoch, written by the first
/// node to find it missing; a node that sees a different epoch than at its last sync knows Redis
/// lost its data and writes its book back (`SET NX`, so a ban stored meanwhile wins).
#[derive(Debug)]
pub struct RedisBans {
    pub(crate) conn: Conn,
    book: Mutex<BanBook>,
}

#[derive(Debug, Default)]
struct BanBook {
    bans: HashMap<String, Ban>,
    /// The marker's value at this node's last sync.
    epoch: Option<String>,
}

/// What [`RedisBans::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BanSync {
    /// Bans this node wrote back because Redis had lost them.
    pub reregistered: usize,
    /// Every ban in force cluster-wide after the sync.
    pub active: Vec<Ban>,
}

/// Ban records read per `MGET` when a node loads every ban.
const BAN_LOAD_BATCH: usize = 500;

/// A value no other node picks for the epoch marker (only the first `SET NX` wins anyway).
fn fresh_epoch() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

impl RedisBans {
    pub(crate) fn new(conn: Conn) -> Self {
        Self {
            conn,
            book: Mutex::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, BanBook> {
        lock(&self.book)
    }

    /// Records a ban this node heard of (a `user_banned` notice from another node).
    pub fn remember(&self, ban: Ban) {
        if ban.is_active_at(Utc::now()) {
            self.book().bans.insert(ban.user_id.clone(), ban);
        }
    }

    /// The bans in force that this node knows of.
    pub fn known(&self) -> Vec<Ban> {
        let now = Utc::now();
        let mut book = self.book();
        book.bans.retain(|_, b| b.is_active_at(now));
        book.bans.values().cloned().collect()
    }

    async fn epoch(&self) -> StateResult<Option<String>> {
        self.conn
            .client
            .get(self.conn.keys.bans_marker())
            .await
            .map_err(|e| state_error(&e))
    }

    /// Makes Redis and this node agree on the bans: writes the book back when Redis lost its data
    /// (a new epoch), then reloads the book from Redis. Call it at start-up (so a restarted node
    /// knows every ban), after every reconnect, and from time to time (so unbans made through
    /// other nodes leave the book).
    pub async fn sync(&self) -> StateResult<BanSync> {
        self.conn.ensure_connected()?;
        let marker = self.conn.keys.bans_marker();
        let epoch = match self.epoch().await? {
            Some(e) => e,
            None => {
                let _: Value = self
                    .conn
                    .client
                    .set(&marker, fresh_epoch(), None, Some(SetOptions::NX), false)
                    .await
                    .map_err(|e| state_error(&e))?;
                self.epoch()
                    .await?
                    .ok_or_else(|| StateError::Backend("the bans epoch marker vanished".into()))?
            }
        };
        let (previous, book) = {
            let book = self.book();
            (
                book.epoch.clone(),
                book.bans.values().cloned().collect::<Vec<_>>(),
            )
        };
        let mut reregistered = 0;
        if previous.as_ref() != Some(&epoch) {
            let now = Utc::now();
            for ban in book.iter().filter(|b| b.is_active_at(now)) {
                if self.store(ban, Some(SetOptions::NX)).await? {
                    reregistered += 1;
                }
            }
        }
        let mut loaded = HashMap::new();
        let keys = self.conn.scan_keys(&self.conn.keys.ban_pattern()).await?;
        // Under one hash tag (classic layout) one MGET per batch; spread over the slots, one GET
        // per key, sent together. A key that expired since the SCAN reads as nil.
        for chunk in keys.chunks(BAN_LOAD_BATCH) {
            let jsons = self.conn.get_each(chunk.to_vec()).await?;
            for (key, json) in chunk.iter().zip(jsons) {
                let Some(json) = json else { continue };
                match decode::<Ban>(&json) {
                    Ok(ban) if ban.is_active_at(Utc::now()) => {
                        loaded.insert(ban.user_id.clone(), ban);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%key, error = %e, "unreadable ban record"),
                }
            }
        }
        let active = loaded.values().cloned().collect();
        let mut book = self.book();
        book.bans = loaded;
        book.epoch = Some(epoch);
        if reregistered > 0 {
            tracing::info!(reregistered, "wrote back bans that Redis had lost");
        }
        Ok(BanSync {
            reregistered,
            active,
        })
    }

    /// Writes one ban with its TTL; `false` when it has lapsed or `NX` found one already.
    async fn store(&self, ban: &Ban, options: Option<SetOptions>) -> StateResult<bool> {
        let key = self.conn.keys.ban(&ban.user_id);
        let expiry = match ban.expires_at {
            None => None,
            Some(at) => {
                let ms = (at - Utc::now()).num_milliseconds();
                if ms <= 0 {
                    return Ok(false);
                }
                Some(Expiration::PX(ms))
            }
        };
        let written: Value = self
            .conn
            .client
            .set(key, encode(ban)?, expiry, options, false)
            .await
            .map_err(|e| state_error(&e))?;
        Ok(!written.is_null())
    }
}

#[async_trait]
impl BanList for RedisBans {
    async fn ban(&self, ban: Ban) -> StateResult<()> {
        self.conn.ensure_connected()?;
        let lapsed = ban.expires_at.is_some_and(|at| at <= Utc::now());
        if lapsed {
            // Storing it would only shadow nothing, but it must replace (lift) any earlier ban,
            // as the in-memory backend does.
            let _: i64 = self
                .conn
                .client
                .del(self.conn.keys.ban(&ban.user_id))
                .await
                .map_err(|e| state_error(&e))?;
            self.book().bans.remove(&ban.user_id);
            return Ok(());
        }
        self.store(&ban, None).await?;
        self.remember(ban);
        Ok(())
    }

    async fn unban(&self, user_id: &str) -> StateResult<bool> {
        self.conn.ensure_connected()?;
        let removed: i64 = self
            .conn
            .client
            .del(self.conn.keys.ban(user_id))
            .await
            .map_err(|e| state_error(&e))?;
        self.book().bans.remove(user_id);
        Ok(removed > 0)
    }

    async fn active(&self, user_id: &str) -> StateResult<Option<Ban>> {
        self.conn.ensure_connected()?;
        let json: Option<String> = self
            .conn
            .client
            .get(self.conn.keys.ban(user_id))
            .await
            .map_err(|e| state_error(&e))?;
        let now = Utc::now();
        let ban: Option<Ban> = json.as_deref().map(decode).transpose()?;
        // The TTL has millisecond precision; the record decides at the boundary.
        if let Some(ban) = ban.filter(|b| b.is_active_at(now)) {
            self.remember(ban.clone());
            return Ok(Some(ban));
        }
        let known = self
            .book()
            .bans
            .get(user_id)
            .filter(|b| b.is_active_at(now))
            .cloned();
        let Some(known) = known else {
            return Ok(None);
        };
        // Redis has no ban but this node knows one: lifted elsewhere if Redis still holds the
        // data of the last sync (or this node never synced, so knows of no loss), lost with
        // Redis's data otherwise (and still in force).
        let epoch = self.epoch().await?;
        let synced = self.book().epoch.clone();
        if synced.is_none() || epoch == synced {
            self.book().bans.remove(user_id);
            return Ok(None);
        }
        Ok(Some(known))
    }
}
