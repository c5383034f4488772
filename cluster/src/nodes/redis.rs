//! Node registry on Redis.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;

use super::{NodeRegistry, NodeStats};
use crate::error::StateResult;
use crate::keys;
use crate::lock::lock;
use crate::redis::conn::{Conn, decode, encode, state_error};

/// Node registry on Redis: `cluster:stats:<serverId>` keys with a TTL, listed with `SCAN`.
#[derive(Debug)]
pub struct RedisNodes {
    pub(crate) conn: Conn,
    pub(crate) ttl: Duration,
    /// The last record this process published, republished by a resync.
    pub(crate) last_published: Mutex<Option<NodeStats>>,
    /// The liveness TTL this node's records declare, in milliseconds; 0 until the first liveness
    /// beat has landed (a record must never declare a key that is not there yet).
    liveness_ttl_ms: AtomicU64,
}

impl RedisNodes {
    pub(crate) fn new(conn: Conn, ttl: Duration) -> Self {
        Self {
            conn,
            ttl,
            last_published: Mutex::new(None),
            liveness_ttl_ms: AtomicU64::new(0),
        }
    }

    /// From now on, records say that this node writes a liveness key with this TTL.
    pub(crate) fn declare_liveness(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.liveness_ttl_ms.store(ms, Ordering::Release);
    }

    pub(crate) fn last_published(&self) -> Option<NodeStats> {
        lock(&self.last_published).clone()
    }
}

#[async_trait]
impl NodeRegistry for RedisNodes {
    async fn publish(&self, stats: &NodeStats) -> StateResult<()> {
        self.conn.ensure_connected()?;
        let ttl_ms = i64::try_from(self.ttl.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut stats = stats.clone();
        loop {
            let declared = self.liveness_ttl_ms.load(Ordering::Acquire);
            stats.liveness_ttl_ms = (declared != 0).then_some(declared);
            let _: Value = self
                .conn
                .client
                .set(
                    keys::stats_key(&stats.server_id),
                    encode(&stats)?,
                    Some(Expiration::PX(ttl_ms)),
                    None,
                    false,
                )
                .await
                .map_err(|e| state_error(&e))?;
            // The liveness beat republishes once it declares its key; a record read before that
            // and written after must not have the last word.
            if self.liveness_ttl_ms.load(Ordering::Acquire) == declared {
                break;
            }
        }
        *lock(&self.last_published) = Some(stats);
        Ok(())
    }

    async fn withdraw(&self, server_id: &str) -> StateResult<()> {
        self.conn.ensure_connected()?;
        let _: i64 = self
            .conn
            .client
            .del(keys::stats_key(server_id))
            .await
            .map_err(|e| state_error(&e))?;
        let mut last = lock(&self.last_published);
        if last.as_ref().is_some_and(|s| s.server_id == server_id) {
            *last = None;
        }
        Ok(())
    }

    async fn live_nodes(&self) -> StateResult<Vec<NodeStats>> {
        let mut nodes: Vec<NodeStats> = self
            .scan_records()
            .await?
            .into_iter()
            .filter_map(|(_, record)| record)
            .collect();
        nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        nodes.dedup_by(|a, b| a.server_id == b.server_id);
        Ok(nodes)
    }
}

impl RedisNodes {
    /// Every stats key's server id with its record, `None` where the record is not one this crate
    /// can read (a Node.js node of the original design writes its own shape; it is alive all the
    /// same).
    pub(crate) async fn scan_records(&self) -> StateResult<Vec<(String, Option<NodeStats>)>> {
        let keys = self.conn.scan_keys(keys::STATS_KEY_PATTERN).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(id) = keys::server_id_of_stats_key(&key) else {
                continue;
            };
            // A key can expire between SCAN and GET; that node is simply gone.
            let json: Option<String> = self
                .conn
                .client
                .get(&key)
                .await
                .map_err(|e| state_error(&e))?;
            let Some(json) = json else { continue };
            let record = match decode::<NodeStats>(&json) {
                Ok(stats) => Some(stats),
                Err(e) => {
                    tracing::debug!(%key, error = %e, "stats record in another shape");
                    None
                }
            };
            out.push((id.to_owned(), record));
        }
        Ok(out)
    }
}
