//! History of a single node.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{History, HistoryScope, Messages};
use crate::error::StateResult;
use crate::expiring::Expiring;
use crate::lock::lock;
use crate::retention::Retention;
use crate::rooms::MemoryRooms;

/// Bounded history of a single node: a ring of `capacity` messages per scope. Rooms' rings live
/// in their [`MemoryRooms`] entry when the history is built [`MemoryHistory::with_rooms`]; every
/// other scope is forgotten once it has had no message for the TTL.
#[derive(Debug)]
pub struct MemoryHistory {
    capacity: usize,
    ttl: Duration,
    rooms: Option<Arc<MemoryRooms>>,
    scopes: Mutex<Expiring<HistoryScope, VecDeque<serde_json::Value>>>,
}

impl MemoryHistory {
    /// A history keeping at most `capacity` messages per scope (at least one), rooms included.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl: Retention::default().history,
            rooms: None,
            scopes: Mutex::default(),
        }
    }

    /// A history whose room scopes are kept by `rooms` (deleted with their room), the other
    /// scopes forgotten after `ttl` without a message.
    pub fn with_rooms(capacity: usize, ttl: Duration, rooms: Arc<MemoryRooms>) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            rooms: Some(rooms),
            scopes: Mutex::default(),
        }
    }

    /// How many scopes outside rooms hold messages (for the tests of shrinking).
    pub fn scope_count(&self) -> usize {
        let mut scopes = lock(&self.scopes);
        scopes.sweep(self.ttl);
        scopes.len()
    }
}

#[async_trait]
impl History for MemoryHistory {
    async fn append(&self, scope: &HistoryScope, message: serde_json::Value) -> StateResult<()> {
        if let (Some(rooms), HistoryScope::Room(room_id)) = (&self.rooms, scope) {
            rooms.append_history(room_id, message, self.capacity);
            return Ok(());
        }
        let mut scopes = lock(&self.scopes);
        let ring = scopes.touch(scope.clone(), self.ttl);
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(message);
        Ok(())
    }

    async fn newest(&self, scope: &HistoryScope, limit: NonZeroUsize) -> StateResult<Messages> {
        let limit = limit.get();
        if let (Some(rooms), HistoryScope::Room(room_id)) = (&self.rooms, scope) {
            return Ok(rooms.recent_history(room_id, limit));
        }
        let scopes = lock(&self.scopes);
        Ok(scopes
            .get(scope, self.ttl)
            .map(|ring| {
                let skip = ring.len().saturating_sub(limit);
                ring.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn history_is_bounded_and_oldest_first() {
        let h = MemoryHistory::new(3);
        let scope = HistoryScope::Room("r".into());
        for i in 0..5 {
            h.append(&scope, serde_json::json!({ "i": i }))
                .await
                .unwrap();
        }
        let got = h.recent(&scope, 10).await.unwrap();
        assert_eq!(
            got,
            vec![
                serde_json::json!({"i":2}),
                serde_json::json!({"i":3}),
                serde_json::json!({"i":4})
            ]
        );
        let got = h.recent(&scope, 2).await.unwrap();
        assert_eq!(
            got,
            vec![serde_json::json!({"i":3}), serde_json::json!({"i":4})]
        );
        assert_eq!(
            HistoryScope::private("b", "a"),
            HistoryScope::private("a", "b")
        );
    }
}
