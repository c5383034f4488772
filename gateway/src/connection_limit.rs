//! Per-client-address connection attempt limit (`CONNECTION_RATE_LIMIT` a minute), and the
//! bounded table of per-address governor limiters it shares with the handshake limiter
//! ([`AddressBudgets`]).
//!
//! Addresses are counted under [`limit_key`]: IPv6 clients by their /64 network.
//!
//! Each address may make `limit` attempts at once and then `limit` more spread evenly over each
//! minute. The table is bounded: past [`MAX_TRACKED_ADDRESSES`] entries, addresses whose budget
//! is whole again (idle ones, which carry no information) are forgotten; if none is, those with
//! the most budget left are, so an address being limited keeps its state however many other
//! addresses come.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::client_addr::limit_key;

/// Most addresses remembered at once.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

type Budget<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// One remembered address.
#[derive(Debug)]
struct Tracked<C: Clock> {
    budget: Budget<C>,
    /// When the address last made an attempt.
    last: C::Instant,
    /// Attempts it had left after that one.
    remaining: u32,
}

/// A governor limiter per client address (counted under [`limit_key`]), in a table bounded as
/// the module documentation says.
#[derive(Debug)]
pub struct AddressBudgets<C: Clock = DefaultClock> {
    quota: Quota,
    clock: C,
    max_tracked: usize,
    addresses: Mutex<HashMap<IpAddr, Tracked<C>>>,
}

impl<C: Clock + Clone> AddressBudgets<C> {
    /// `per_minute` attempts per address (at least 1), at most `max_tracked` addresses
    /// remembered, time read from `clock`.
    pub fn new(per_minute: u32, max_tracked: usize, clock: C) -> Self {
        Self {
            quota: Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN)),
            clock,
            max_tracked: max_tracked.max(1),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one attempt of `addr`'s budget; the error says how long until the next one.
    pub fn spend(&self, addr: IpAddr) -> Result<(), Duration> {
        let key = limit_key(addr);
        let now = self.clock.now();
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if !addresses.contains_key(&key) && addresses.len() >= self.max_tracked {
            self.evict(&mut addresses, now);
        }
        let tracked = addresses.entry(key).or_insert_with(|| Tracked {
            budget: RateLimiter::direct_with_clock(self.quota, self.clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            last: now,
            remaining: self.quota.burst_size().get(),
        });
        tracked.last = now;
        match tracked.budget.check() {
            Ok(snapshot) => {
                tracked.remaining = snapshot.remaining_burst_capacity();
                Ok(())
            }
            Err(not_until) => {
                tracked.remaining = 0;
                Err(not_until.wait_time_from(now))
            }
        }
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Attempts `t` has now: what it had left, plus what came back since, up to the burst.
    fn budget_now(&self, t: &Tracked<C>, now: C::Instant) -> u32 {
        let elapsed = Duration::from(now.duration_since(t.last));
        let per_attempt = self.quota.replenish_interval().as_nanos().max(1);
        let refilled = u32::try_from(elapsed.as_nanos() / per_attempt).unwrap_or(u32::MAX);
        t.remaining
            .saturating_add(refilled)
            .min(self.quota.burst_size().get())
    }

    fn evict(&self, addresses: &mut HashMap<IpAddr, Tracked<C>>, now: C::Instant) {
        let burst = self.quota.burst_size().get();
        addresses.retain(|_, t| self.budget_now(t, now) < burst);
        if addresses.len() >= self.max_tracked {
            // Still full of addresses that spent attempts: forget those with the most left first
            // (the least limited), a tenth of the table at a time so the sort is rare.
            let mut by_budget: Vec<(IpAddr, u32)> = addresses
                .iter()
                .map(|(a, t)| (*a, self.budget_now(t, now)))
                .collect();
            by_budget.sort_by_key(|(_, left)| std::cmp::Reverse(*left));
            let excess = addresses.len() + 1 - self.max_tracked;
            for (addr, _) in by_budget.into_iter().take(excess.max(addresses.len() / 10)) {
                addresses.remove(&addr);
            }
        }
    }
}

/// Connection attempt limiter shared by every namespace of a node.
#[derive(Debug)]
pub struct ConnectionLimiter<C: Clock = DefaultClock> {
    budgets: AddressBudgets<C>,
}

impl ConnectionLimiter {
    /// `limit` attempts per address per minute (at least 1).
    pub fn new(limit: u32) -> Self {
        Self::with_capacity(limit, MAX_TRACKED_ADDRESSES)
    }

    /// Like [`new`](Self::new) with a custom table bound (tests).
    pub fn with_capacity(limit: u32, max_tracked: usize) -> Self {
        Self::with_clock(limit, max_tracked, DefaultClock::default())
    }
}

impl<C: Clock + Clone> ConnectionLimiter<C> {
    /// Like [`with_capacity`](ConnectionLimiter::with_capacity) on a clock of the caller's
    /// (tests).
    pub fn with_clock(limit: u32, max_tracked: usize, clock: C) -> Self {
        Self {
            budgets: AddressBudgets::new(limit, max_tracked, clock),
        }
    }

    /// Records an attempt from `addr`; `false` when it is over the limit.
    pub fn allow(&self, addr: IpAddr) -> bool {
        self.budgets.spend(addr).is_ok()
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.budgets.tracked()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limiter(
        limit: u32,
        max_tracked: usize,
    ) -> (ConnectionLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            ConnectionLimiter::with_clock(limit, max_tracked, clock.clone()),
            clock,
        )
    }

    #[test]
    fn limit_per_address() {
        let (l, _clock) = limiter(50, MAX_TRACKED_ADDRESSES);
        for _ in 0..50 {
            assert!(l.allow(ip("10.0.0.1")));
        }
        assert!(!l.allow(ip("10.0.0.1")));
        // Another address has its own budget.
        assert!(l.allow(ip("10.0.0.2")));
    }

    #[test]
    fn one_ipv6_network_shares_one_budget() {
        let (l, _clock) = limiter(3, MAX_TRACKED_ADDRESSES);
        for host in 1..=3 {
            assert!(l.allow(ip(&format!("2001:db8:7:7::{host}"))));
        }
        // A fourth address of the same /64 is the same client.
        assert!(!l.allow(ip("2001:db8:7:7:dead:beef::4")));
        assert!(l.allow(ip("2001:db8:7:8::1")));
    }

    #[test]
    fn refills_over_the_minute() {
        let (l, clock) = limiter(60, MAX_TRACKED_ADDRESSES);
        for _ in 0..60 {
            assert!(l.allow(ip("::1")));
        }
        clock.advance(Duration::from_millis(500));
        assert!(!l.allow(ip("::1")));
        clock.advance(Duration::from_millis(500));
        assert!(l.allow(ip("::1")));
        assert!(!l.allow(ip("::1")));
        clock.advance(Duration::from_secs(60));
        for _ in 0..60 {
            assert!(l.allow(ip("::1")));
        }
        assert!(!l.allow(ip("::1")));
    }

    #[test]
    fn table_is_bounded_and_keeps_busy_addresses() {
        let (l, _clock) = limiter(2, 3);
        assert!(l.allow(ip("1.1.1.1")));
        assert!(l.allow(ip("1.1.1.1")));
        assert!(!l.allow(ip("1.1.1.1")));
        for i in 0..10 {
            l.allow(ip(&format!("2.2.2.{i}")));
            assert!(l.tracked() <= 3);
        }
        // The limited address kept its state through the evictions.
        assert!(!l.allow(ip("1.1.1.1")));
    }

    #[test]
    fn idle_addresses_make_room_for_new_ones() {
        let (l, clock) = limiter(2, 3);
        for i in 0..3 {
            assert!(l.allow(ip(&format!("3.3.3.{i}"))));
        }
        assert_eq!(l.tracked(), 3);
        // A minute later those budgets are whole again: forgotten when a new address comes.
        clock.advance(Duration::from_secs(60));
        assert!(l.allow(ip("4.4.4.4")));
        assert!(l.allow(ip("4.4.4.4")));
        assert!(!l.allow(ip("4.4.4.4")));
        assert!(l.tracked() <= 3);
    }
}
