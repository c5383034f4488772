//! A map whose idle entries lapse, for the in-memory backends' per-scope state.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A map whose entries are dropped once not touched for a TTL: each write stamps its entry, and
/// a sweep (at most once per TTL/4, on a write) drops what is older. Its size is bounded by what
/// was written within about one TTL.
#[derive(Debug)]
pub(crate) struct Expiring<K, V> {
    entries: HashMap<K, (Instant, V)>,
    last_sweep: Instant,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Default> Expiring<K, V> {
    pub(crate) fn sweep(&mut self, ttl: Duration) {
        let now = Instant::now();
        self.entries
            .retain(|_, (at, _)| now.duration_since(*at) < ttl);
        self.last_sweep = now;
    }

    /// The live entry of `key` (a fresh default when absent or expired), stamped now.
    pub(crate) fn touch(&mut self, key: K, ttl: Duration) -> &mut V {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) >= ttl / 4 {
            self.sweep(ttl);
        }
        let entry = self
            .entries
            .entry(key)
            .or_insert_with(|| (now, V::default()));
        if now.duration_since(entry.0) >= ttl {
            entry.1 = V::default();
        }
        entry.0 = now;
        &mut entry.1
    }

    pub(crate) fn get(&self, key: &K, ttl: Duration) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| v)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
