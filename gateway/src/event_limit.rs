//! Per-socket event rate limit: a governor GCRA limiter (`EVENT_RATE_LIMIT` events/s,
//! `EVENT_RATE_BURST` burst), plus the flood rule that disconnects a socket which keeps going
//! over the limit.
//!
//! The limiter reads a governor [`Clock`]; tests drive a [`governor::clock::FakeRelativeClock`].

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// How long rejected events are remembered for the flood rule.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// What the limiter says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Allowed,
    /// Over the limit: reject with `Rate limit exceeded`.
    Limited,
    /// Over the limit, and the socket has been rejected `3 × burst` times within
    /// [`FLOOD_WINDOW`]: disconnect it.
    Flooding,
}

/// A rate limiter with a flood counter: `burst` events at once, then `rate_per_sec` a second.
#[derive(Debug)]
pub struct EventLimiter<C: Clock = DefaultClock> {
    clock: C,
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    rejected_in_window: u32,
    window_start: C::Instant,
    flood_threshold: u32,
}

impl EventLimiter {
    /// A full budget of `burst` events refilled at `rate_per_sec` (both at least 1).
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self::with_clock(rate_per_sec, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> EventLimiter<C> {
    /// Like [`new`](EventLimiter::new) on a clock of the caller's (tests).
    pub fn with_clock(rate_per_sec: u32, burst: u32, clock: C) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let rate = NonZeroU32::new(rate_per_sec).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Self {
            window_start: clock.now(),
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            rejected_in_window: 0,
            flood_threshold: burst.get().saturating_mul(3),
        }
    }

    /// Spends one event of the budget.
    pub fn check(&mut self) -> Verdict {
        if self.limiter.check().is_ok() {
            return Verdict::Allowed;
        }
        let now = self.clock.now();
        if Duration::from(now.duration_since(self.window_start)) > FLOOD_WINDOW {
            self.window_start = now;
            self.rejected_in_window = 0;
        }
        self.rejected_in_window += 1;
        if self.rejected_in_window >= self.flood_threshold {
            Verdict::Flooding
        } else {
            Verdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(rate: u32, burst: u32) -> (EventLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (EventLimiter::with_clock(rate, burst, clock.clone()), clock)
    }

    #[test]
    fn burst_then_limited() {
        let (mut l, _clock) = limiter(20, 40);
        for _ in 0..40 {
            assert_eq!(l.check(), Verdict::Allowed);
        }
        assert_eq!(l.check(), Verdict::Limited);
    }

    #[test]
    fn refills_at_the_rate() {
        let (mut l, clock) = limiter(20, 40);
        for _ in 0..40 {
            l.check();
        }
        assert_eq!(l.check(), Verdict::Limited);
        // 50 ms at 20/s is one token.
        clock.advance(Duration::from_millis(50));
        assert_eq!(l.check(), Verdict::Allowed);
        assert_eq!(l.check(), Verdict::Limited);
        // A long pause refills to the burst, never beyond.
        clock.advance(Duration::from_secs(60));
        for _ in 0..40 {
            assert_eq!(l.check(), Verdict::Allowed);
        }
        assert_eq!(l.check(), Verdict::Limited);
    }

    #[test]
    fn steady_rate_is_never_limited() {
        let (mut l, clock) = limiter(20, 40);
        for _ in 0..1000u64 {
            assert_eq!(l.check(), Verdict::Allowed);
            clock.advance(Duration::from_millis(50));
        }
    }

    #[test]
    fn flooding_after_three_bursts_of_rejections() {
        let (mut l, _clock) = limiter(1, 2);
        assert_eq!(l.check(), Verdict::Allowed);
        assert_eq!(l.check(), Verdict::Allowed);
        for _ in 0..5 {
            assert_eq!(l.check(), Verdict::Limited);
        }
        assert_eq!(l.check(), Verdict::Flooding);
    }

    #[test]
    fn rejections_spread_over_time_are_not_flooding() {
        let (mut l, clock) = limiter(1, 2);
        l.check();
        l.check();
        for _ in 0..20 {
            assert_eq!(l.check(), Verdict::Limited);
            // 4 rejections per window of 10 s: below 6.
            clock.advance(Duration::from_millis(2600));
            // Spend the token that came back meanwhile.
            l.check();
            l.check();
        }
    }
}
