//! Admission of Engine.IO handshakes, before any session exists (docs/protocol.md, section
//! "HTTP routes").
//!
//! A handshake (a request to the Socket.IO path without `sid`) creates a session that holds
//! memory until it joins a namespace, times out or closes, and the token is only checked at the
//! namespace CONNECT. So before a session is created, the gate checks two things:
//!
//! - the client address's budget of handshakes (`HANDSHAKE_RATE_LIMIT` a minute, counted under
//!   [`crate::client_addr::limit_key`], so an IPv6 client by its /64), a governor GCRA limiter
//!   per address in the bounded table of [`AddressBudgets`];
//! - the node-wide number of sessions that have not joined a namespace yet
//!   (`MAX_PENDING_SESSIONS`).
//!
//! An admitted handshake carries a [`PendingTicket`] in its request extensions. engineioxide keeps
//! the handshake's request parts for the life of the session, so the ticket lives exactly as long
//! as the session: it stops counting as pending when the session joins a namespace
//! ([`PendingTicket::joined`]) or when it is dropped (connect timeout, client gone, failed
//! handshake).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use http::HeaderMap;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::client_addr::client_addr;
use crate::connection_limit::AddressBudgets;
use crate::metrics::Metrics;

/// Most client addresses the handshake limiter remembers at once.
pub use crate::connection_limit::MAX_TRACKED_ADDRESSES;

/// Why a handshake was refused. `Display` is the body's `error` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address spent its handshake budget.
    #[error(
        "Too many Socket.IO handshakes from this address (at most {per_minute} a minute): retry in {} s",
        retry_after.as_secs().max(1)
    )]
    RateLimited {
        /// The address's budget.
        per_minute: u32,
        /// When the next handshake would be admitted.
        retry_after: Duration,
    },
    /// Too many sessions on this node are waiting to join a namespace.
    #[error(
        "Too many sessions are waiting to join a namespace on this node (at most {max}): retry shortly"
    )]
    TooManyPending {
        /// The node-wide cap.
        max: usize,
    },
}

impl Refusal {
    /// Seconds a client should wait before trying again (`Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::RateLimited { retry_after, .. } => retry_after.as_secs().max(1),
            Self::TooManyPending { .. } => 1,
        }
    }
}

/// Per-address handshake budget: `per_minute` at once, refilled evenly over each minute.
#[derive(Debug)]
pub struct HandshakeLimiter<C: Clock = DefaultClock> {
    per_minute: u32,
    budgets: AddressBudgets<C>,
}

impl HandshakeLimiter {
    /// `per_minute` handshakes per client address (at least 1).
    pub fn new(per_minute: u32) -> Self {
        Self::with_clock(per_minute, MAX_TRACKED_ADDRESSES, DefaultClock::default())
    }
}

impl<C: Clock + Clone> HandshakeLimiter<C> {
    /// Like [`new`](HandshakeLimiter::new) with a table bound and a clock of the caller's (tests).
    pub fn with_clock(per_minute: u32, max_tracked: usize, clock: C) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            per_minute,
            budgets: AddressBudgets::new(per_minute, max_tracked, clock),
        }
    }

    /// Spends one handshake of `addr`'s budget; the refusal says when to retry.
    ///
    /// The table of addresses is bounded (see [`AddressBudgets`]): when it is full, addresses
    /// whose budget is whole again are forgotten, then those with the most budget left, so an
    /// address being limited stays limited however many addresses a flood spreads over.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refusal> {
        self.budgets
            .spend(addr)
            .map_err(|retry_after| Refusal::RateLimited {
                per_minute: self.per_minute,
                retry_after,
            })
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.budgets.tracked()
    }
}

/// A session that has not joined a namespace yet; see the module documentation.
#[derive(Debug, Clone)]
pub struct PendingTicket(Arc<Ticket>);

#[derive(Debug)]
struct Ticket {
    pending: Gauge,
    abandoned: Counter,
    joined: AtomicBool,
}

impl PendingTicket {
    /// The session joined a namespace: it no longer counts as pending (idempotent).
    pub fn joined(&self) {
        if !self.0.joined.swap(true, Ordering::AcqRel) {
            self.0.pending.dec();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !*self.joined.get_mut() {
            self.pending.dec();
            self.abandoned.inc();
        }
    }
}

/// The gate every handshake passes before a session is created.
#[derive(Debug)]
pub struct HandshakeGate {
    limiter: HandshakeLimiter,
    trusted_proxies: Vec<IpNet>,
    max_pending: usize,
    pending: Gauge,
    abandoned: Counter,
    rate_limited: Counter,
    over_pending_cap: Counter,
    connection_errors: Counter,
}

impl HandshakeGate {
    /// A gate with the given limits, counting into `metrics`.
    pub fn new(
        per_minute: u32,
        max_pending: usize,
        trusted_proxies: Vec<IpNet>,
        metrics: &Metrics,
    ) -> Self {
        Self {
            limiter: HandshakeLimiter::new(per_minute),
            trusted_proxies,
            max_pending: max_pending.max(1),
            pending: metrics.sessions_pending.clone(),
            abandoned: metrics.sessions_abandoned.clone(),
            rate_limited: metrics.handshakes_rate_limited.clone(),
            over_pending_cap: metrics.handshakes_over_pending_cap.clone(),
            connection_errors: metrics.connection_errors.clone(),
        }
    }

    /// Admits or refuses the handshake of a client whose TCP peer is `peer` (`None` when
    /// unknown: no per-address budget then, the node-wide cap still applies).
    pub fn admit(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<PendingTicket, Refusal> {
        let addr = client_addr(peer, headers, &self.trusted_proxies);
        if let Some(addr) = addr
            && let Err(refusal) = self.limiter.check(addr)
        {
            self.rate_limited.inc();
            self.connection_errors.inc();
            tracing::debug!(%addr, "handshake refused: {refusal}");
            return Err(refusal);
        }
        // Take a slot first, give it back when over: concurrent handshakes never overshoot.
        let before = self.pending.inc();
        if usize::try_from(before).unwrap_or(0) >= self.max_pending {
            self.pending.dec();
            self.over_pending_cap.inc();
            self.connection_errors.inc();
            let refusal = Refusal::TooManyPending {
                max: self.max_pending,
            };
            tracing::debug!(?addr, "handshake refused: {refusal}");
            return Err(refusal);
        }
        Ok(PendingTicket(Arc::new(Ticket {
            pending: self.pending.clone(),
            abandoned: self.abandoned.clone(),
            joined: AtomicBool::new(false),
        })))
    }

    /// Sessions that have not joined a namespace yet.
    pub fn pending(&self) -> i64 {
        self.pending.get()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip(s), 40_000))
    }

    #[test]
    fn budget_per_address_refills_over_the_minute() {
        let clock = FakeRelativeClock::default();
        let l = HandshakeLimiter::with_clock(3, 100, clock.clone());
        for _ in 0..3 {
            assert!(l.check(ip("10.0.0.1")).is_ok());
        }
        let Err(Refusal::RateLimited { retry_after, .. }) = l.check(ip("10.0.0.1")) else {
            panic!("the fourth handshake passed");
        };
        assert_eq!(retry_after, Duration::from_secs(20));
        assert!(l.check(ip("10.0.0.2")).is_ok(), "another address is served");
        clock.advance(Duration::from_secs(20));
        assert!(l.check(ip("10.0.0.1")).is_ok());
        assert!(l.check(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn one_ipv6_network_shares_one_budget() {
        let l = HandshakeLimiter::with_clock(2, 100, FakeRelativeClock::default());
        assert!(l.check(ip("2001:db8:5:5::1")).is_ok());
        assert!(l.check(ip("2001:db8:5:5::2")).is_ok());
        assert!(l.check(ip("2001:db8:5:5:1:2:3:4")).is_err());
        assert!(l.check(ip("2001:db8:5:6::1")).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let l = HandshakeLimiter::with_clock(1, 10, clock.clone());
        for i in 0..50 {
            let _ = l.check(ip(&format!("10.1.0.{i}")));
            assert!(l.tracked() <= 10, "{} tracked", l.tracked());
        }
        // Once the old addresses' state is indistinguishable from a fresh one, the table makes
        // room and limits new addresses again.
        clock.advance(Duration::from_secs(600));
        assert!(l.check(ip("10.2.0.1")).is_ok());
        assert!(l.check(ip("10.2.0.1")).is_err());
    }

    #[test]
    fn a_limited_address_stays_limited_when_a_flood_fills_the_table() {
        let l = HandshakeLimiter::with_clock(2, 10, FakeRelativeClock::default());
        assert!(l.check(ip("10.0.0.1")).is_ok());
        assert!(l.check(ip("10.0.0.1")).is_ok());
        assert!(l.check(ip("10.0.0.1")).is_err());
        // Many more addresses than the table holds, each spending part of its budget.
        for i in 0..100 {
            assert!(l.check(ip(&format!("10.3.0.{i}"))).is_ok());
            assert!(l.tracked() <= 10);
        }
        assert!(
            l.check(ip("10.0.0.1")).is_err(),
            "the flood made room by forgetting the limited address"
        );
    }

    #[test]
    fn pending_sessions_are_capped_and_released() {
        let metrics = Metrics::new();
        let gate = HandshakeGate::new(1000, 2, Vec::new(), &metrics);
        let headers = HeaderMap::new();
        let a = gate.admit(peer("10.0.0.1"), &headers).unwrap();
        let b = gate.admit(peer("10.0.0.2"), &headers).unwrap();
        assert_eq!(
            gate.admit(peer("10.0.0.3"), &headers).unwrap_err(),
            Refusal::TooManyPending { max: 2 }
        );
        assert_eq!(gate.pending(), 2);
        // Joining a namespace frees the slot once, however often it is reported.
        a.joined();
        a.clone().joined();
        assert_eq!(gate.pending(), 1);
        let c = gate.admit(peer("10.0.0.3"), &headers).unwrap();
        // A session that ends without joining frees its slot and is counted as abandoned.
        drop(b);
        assert_eq!(gate.pending(), 1);
        assert_eq!(metrics.sessions_abandoned.get(), 1);
        // Dropping a joined session's ticket changes nothing.
        drop(a);
        assert_eq!(gate.pending(), 1);
        drop(c);
        assert_eq!(gate.pending(), 0);
        assert_eq!(metrics.handshakes_over_pending_cap.get(), 1);
        assert_eq!(metrics.sessions_abandoned.get(), 2);
    }

    #[test]
    fn the_rate_limit_follows_trusted_proxies() {
        let metrics = Metrics::new();
        let gate = HandshakeGate::new(1, 100, vec!["127.0.0.1/32".parse().unwrap()], &metrics);
        let mut from_a = HeaderMap::new();
        from_a.insert("x-forwarded-for", "203.0.113.1".parse().unwrap());
        let mut from_b = HeaderMap::new();
        from_b.insert("x-forwarded-for", "203.0.113.2".parse().unwrap());
        let _a = gate.admit(peer("127.0.0.1"), &from_a).unwrap();
        assert!(matches!(
            gate.admit(peer("127.0.0.1"), &from_a),
            Err(Refusal::RateLimited { per_minute: 1, .. })
        ));
        let _b = gate.admit(peer("127.0.0.1"), &from_b).unwrap();
        // An untrusted peer's header is ignored: it is counted under its own address.
        let _c = gate.admit(peer("10.9.9.9"), &from_a).unwrap();
        assert!(gate.admit(peer("10.9.9.9"), &from_b).is_err());
        assert_eq!(metrics.handshakes_rate_limited.get(), 2);
        assert_eq!(metrics.connection_errors.get(), 2);
    }

    #[test]
    fn refusal_texts_say_why() {
        let r = Refusal::RateLimited {
            per_minute: 50,
            retry_after: Duration::from_millis(200),
        };
        assert_eq!(
            r.to_string(),
            "Too many Socket.IO handshakes from this address (at most 50 a minute): retry in 1 s"
        );
        assert_eq!(r.retry_after_secs(), 1);
        assert!(
            Refusal::TooManyPending { max: 7 }
                .to_string()
                .contains("at most 7")
        );
    }
}
