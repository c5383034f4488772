//! Per-client-address connection attempt limit (`CONNECTION_RATE_LIMIT` a minute).
//!
//! Addresses are counted under [`limit_key`]: IPv6 clients by their /64 network.
//!
//! Each address has a token bucket of `limit` tokens refilled at `limit` per minute, so a client
//! may make `limit` attempts at once and then `limit` more spread over each minute.
//! The table is bounded: past [`MAX_TRACKED_ADDRESSES`] entries, addresses whose bucket is full
//! again (idle ones, which carry no information) are forgotten; if none is, those with the most
//! tokens left are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client_addr::limit_key;

/// Most addresses remembered at once.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Connection attempt limiter shared by every namespace of a node.
#[derive(Debug)]
pub struct ConnectionLimiter {
    limit: f64,
    max_tracked: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl ConnectionLimiter {
    /// `limit` attempts per address per minute.
    pub fn new(limit: u32) -> Self {
        Self::with_capacity(limit, MAX_TRACKED_ADDRESSES)
    }

    /// Like [`new`](Self::new) with a custom table bound (tests).
    pub fn with_capacity(limit: u32, max_tracked: usize) -> Self {
        Self {
            limit: f64::from(limit.max(1)),
            max_tracked: max_tracked.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt from `addr` at `now`; `false` when it is over the limit.
    pub fn allow(&self, addr: IpAddr, now: Instant) -> bool {
        let addr = limit_key(addr);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&addr) && buckets.len() >= self.max_tracked {
            self.evict(&mut buckets, now);
        }
        let rate = self.limit / WINDOW.as_secs_f64();
        let bucket = buckets.entry(addr).or_insert(Bucket {
            tokens: self.limit,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.limit);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let rate = self.limit / WINDOW.as_secs_f64();
        let limit = self.limit;
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < limit
        });
        if buckets.len() >= self.max_tracked {
            // Still full of addresses that spent tokens: forget those with the most left first
            // (the least limited), so an address being limited keeps its state.
            let mut by_tokens: Vec<(IpAddr, f64)> = buckets
                .iter()
                .map(|(a, b)| {
                    let refilled =
                        b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate;
                    (*a, refilled.min(limit))
                })
                .collect();
            by_tokens.sort_by(|x, y| y.1.total_cmp(&x.1));
            let excess = buckets.len() + 1 - self.max_tracked;
            for (addr, _) in by_tokens.into_iter().take(excess.max(buckets.len() / 10)) {
                buckets.remove(&addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limit_per_address() {
        let t0 = Instant::now();
        let l = ConnectionLimiter::new(50);
        for _ in 0..50 {
            assert!(l.allow(ip("10.0.0.1"), t0));
        }
        assert!(!l.allow(ip("10.0.0.1"), t0));
        // Another address has its own budget.
        assert!(l.allow(ip("10.0.0.2"), t0));
    }

    #[test]
    fn one_ipv6_network_shares_one_budget() {
        let t0 = Instant::now();
        let l = ConnectionLimiter::new(3);
        for host in 1..=3 {
            assert!(l.allow(ip(&format!("2001:db8:7:7::{host}")), t0));
        }
        // A fourth address of the same /64 is the same client.
        assert!(!l.allow(ip("2001:db8:7:7:dead:beef::4"), t0));
        assert!(l.allow(ip("2001:db8:7:8::1"), t0));
    }

    #[test]
    fn refills_over_the_minute() {
        let t0 = Instant::now();
        let l = ConnectionLimiter::new(60);
        for _ in 0..60 {
            assert!(l.allow(ip("::1"), t0));
        }
        assert!(!l.allow(ip("::1"), t0 + Duration::from_millis(500)));
        assert!(l.allow(ip("::1"), t0 + Duration::from_millis(1000)));
        assert!(!l.allow(ip("::1"), t0 + Duration::from_millis(1000)));
        let later = t0 + Duration::from_secs(61);
        for _ in 0..60 {
            assert!(l.allow(ip("::1"), later));
        }
        assert!(!l.allow(ip("::1"), later));
    }

    #[test]
    fn table_is_bounded_and_keeps_busy_addresses() {
        let t0 = Instant::now();
        let l = ConnectionLimiter::with_capacity(2, 3);
        assert!(l.allow(ip("1.1.1.1"), t0));
        assert!(l.allow(ip("1.1.1.1"), t0));
        assert!(!l.allow(ip("1.1.1.1"), t0));
        for i in 0..10 {
            l.allow(ip(&format!("2.2.2.{i}")), t0);
            assert!(l.tracked() <= 3);
        }
        // The limited address kept its state through the evictions.
        assert!(!l.allow(ip("1.1.1.1"), t0));
    }
}
