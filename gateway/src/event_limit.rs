//! Per-socket event rate limit: a token bucket (`EVENT_RATE_LIMIT` events/s, `EVENT_RATE_BURST`
//! burst), plus the flood rule that disconnects a socket which keeps going over the limit.
//!
//! The clock is passed in (`Instant`), so tests drive time explicitly.

use std::time::{Duration, Instant};

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

/// A token bucket with a flood counter.
#[derive(Debug, Clone)]
pub struct EventLimiter {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    rejected_in_window: u32,
    window_start: Instant,
    flood_threshold: u32,
}

impl EventLimiter {
    /// A full bucket refilled at `rate_per_sec`, holding at most `burst` tokens.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = burst.max(1);
        Self {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            rejected_in_window: 0,
            window_start: now,
            flood_threshold: burst.saturating_mul(3),
        }
    }

    /// Takes one token for an event arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allowed;
        }
        if now.saturating_duration_since(self.window_start) > FLOOD_WINDOW {
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

    #[test]
    fn burst_then_limited() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(20, 40, t0);
        for _ in 0..40 {
            assert_eq!(l.check(t0), Verdict::Allowed);
        }
        assert_eq!(l.check(t0), Verdict::Limited);
    }

    #[test]
    fn refills_at_the_rate() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(20, 40, t0);
        for _ in 0..40 {
            l.check(t0);
        }
        assert_eq!(l.check(t0), Verdict::Limited);
        // 50 ms at 20/s is one token.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(l.check(t1), Verdict::Allowed);
        assert_eq!(l.check(t1), Verdict::Limited);
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..40 {
            assert_eq!(l.check(t2), Verdict::Allowed);
        }
        assert_eq!(l.check(t2), Verdict::Limited);
    }

    #[test]
    fn steady_rate_is_never_limited() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(20, 40, t0);
        for i in 0..1000u64 {
            assert_eq!(
                l.check(t0 + Duration::from_millis(50 * i)),
                Verdict::Allowed
            );
        }
    }

    #[test]
    fn flooding_after_three_bursts_of_rejections() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(1, 2, t0);
        assert_eq!(l.check(t0), Verdict::Allowed);
        assert_eq!(l.check(t0), Verdict::Allowed);
        for _ in 0..5 {
            assert_eq!(l.check(t0), Verdict::Limited);
        }
        assert_eq!(l.check(t0), Verdict::Flooding);
    }

    #[test]
    fn rejections_spread_over_time_are_not_flooding() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(1, 2, t0);
        l.check(t0);
        l.check(t0);
        let mut now = t0;
        for _ in 0..20 {
            assert_eq!(l.check(now), Verdict::Limited);
            // 4 rejections per window of 10 s: below 6.
            now += Duration::from_millis(2600);
            // Spend the token that came back meanwhile.
            l.check(now);
            l.check(now);
        }
    }
}
