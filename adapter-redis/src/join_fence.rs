//! The join fence of the sharded `dynamic` modes (`docs/sharded-adapter.md`, section 3): the
//! rooms this node announced a join to moments ago, whose broadcasts go on the main channel
//! (behind the join) until the fence ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Rooms fenced at once. Past it, expired entries are dropped; if every entry is still
/// running, every room is fenced until the latest end asked for (safe: the order is kept, at
/// the cost of main-channel broadcasts), so memory stays bounded whatever joins are made.
pub(crate) const MAX_FENCED_ROOMS: usize = 4096;

/// When each fenced room's fence ends.
#[derive(Debug, Default)]
pub(crate) struct JoinFences {
    until: HashMap<String, Instant>,
    /// Set when the map was full of running fences: every room is fenced until then.
    all_until: Option<Instant>,
}

impl JoinFences {
    /// Fences `rooms` from `now` for `period`.
    pub(crate) fn fence(
        &mut self,
        rooms: impl IntoIterator<Item = String>,
        now: Instant,
        period: Duration,
    ) {
        // A period too long for the clock fences for a year instead (never panics).
        let end = now
            .checked_add(period)
            .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
            .unwrap_or(now);
        for room in rooms {
            if self.until.len() >= MAX_FENCED_ROOMS && !self.until.contains_key(&room) {
                self.until.retain(|_, until| *until > now);
                if self.until.len() >= MAX_FENCED_ROOMS {
                    self.all_until = Some(self.all_until.map_or(end, |all| all.max(end)));
                    continue;
                }
            }
            self.until.insert(room, end);
        }
    }

    /// Whether broadcasts to `room` must still go on the main channel at `now`.
    pub(crate) fn is_fenced(&self, room: &str, now: Instant) -> bool {
        self.all_until.is_some_and(|all| now < all)
            || self.until.get(room).is_some_and(|until| now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_holds_for_its_period_then_ends() {
        let mut fences = JoinFences::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(5);
        fences.fence(["room:a".to_owned()], t0, period);
        assert!(fences.is_fenced("room:a", t0));
        assert!(fences.is_fenced("room:a", t0 + Duration::from_millis(4999)));
        assert!(!fences.is_fenced("room:a", t0 + period));
        assert!(!fences.is_fenced("room:b", t0));
        // A later join extends it.
        fences.fence(["room:a".to_owned()], t0 + Duration::from_secs(3), period);
        assert!(fences.is_fenced("room:a", t0 + Duration::from_secs(7)));
    }

    #[test]
    fn a_period_beyond_the_clock_fences_without_panicking() {
        let mut fences = JoinFences::default();
        let t0 = Instant::now();
        fences.fence(["room:a".to_owned()], t0, Duration::MAX);
        assert!(fences.is_fenced("room:a", t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn when_full_of_running_fences_every_room_is_fenced_and_memory_stays_bounded() {
        let mut fences = JoinFences::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(5);
        fences.fence(
            (0..MAX_FENCED_ROOMS + 10).map(|i| format!("r{i}")),
            t0,
            period,
        );
        assert_eq!(fences.until.len(), MAX_FENCED_ROOMS);
        assert!(fences.is_fenced("never-joined", t0));
        assert!(!fences.is_fenced("never-joined", t0 + period));
        // Once the running fences ended, new rooms take the expired places.
        let later = t0 + period;
        fences.fence(["fresh".to_owned()], later, period);
        assert_eq!(fences.until.len(), 1);
        assert!(fences.is_fenced("fresh", later));
        assert!(!fences.is_fenced("other", later));
    }
}
