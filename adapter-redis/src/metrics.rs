//! Counters of one adapter connection (shared by all its namespaces).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub reconnects: AtomicU64,
    pub publish_failures: AtomicU64,
    pub subscribe_failures: AtomicU64,
    pub sharded_repairs: AtomicU64,
    pub sharded_resubscribes: AtomicU64,
    pub sharded_repair_gap_ms_sum: AtomicU64,
    pub sharded_repair_gap_ms_max: AtomicU64,
    pub join_fence_broadcasts: AtomicU64,
    pub join_fence_late: AtomicU64,
    pub unheld_room_messages: AtomicU64,
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn snapshot(&self, subscriptions: u64) -> AdapterMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AdapterMetricsSnapshot {
            published: get(&self.published),
            received: get(&self.received),
            dropped: get(&self.dropped),
            decode_errors: get(&self.decode_errors),
            request_timeouts: get(&self.request_timeouts),
            reconnects: get(&self.reconnects),
            publish_failures: get(&self.publish_failures),
            subscribe_failures: get(&self.subscribe_failures),
            sharded_repairs: get(&self.sharded_repairs),
            sharded_resubscribes: get(&self.sharded_resubscribes),
            sharded_repair_gap_ms_sum: get(&self.sharded_repair_gap_ms_sum),
            sharded_repair_gap_ms_max: get(&self.sharded_repair_gap_ms_max),
            join_fence_broadcasts: get(&self.join_fence_broadcasts),
            join_fence_late: get(&self.join_fence_late),
            unheld_room_messages: get(&self.unheld_room_messages),
            subscriptions,
        }
    }
}

/// A copy of the adapter's counters. The gateway exports each field as
/// `socketio_adapter_<field>` (counters get a `_total` suffix, `subscriptions` is a gauge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdapterMetricsSnapshot {
    /// Messages published to Redis (broadcasts, requests, responses).
    pub published: u64,
    /// Messages received from Redis on any subscribed channel or pattern.
    pub received: u64,
    /// Messages lost to a full bounded queue or to fred's broadcast channel lagging.
    pub dropped: u64,
    /// Messages from Redis that could not be decoded (malformed or hostile); each is logged.
    pub decode_errors: u64,
    /// Requests that ended at their deadline without every expected answer.
    pub request_timeouts: u64,
    /// Times the connection to Redis came back after being lost.
    pub reconnects: u64,
    /// Messages that could not be published (Redis unreachable, command error or timeout).
    pub publish_failures: u64,
    /// SUBSCRIBE/UNSUBSCRIBE commands that failed or that Redis did not confirm within the
    /// request timeout (they are retried on reconnect).
    pub subscribe_failures: u64,
    /// Sharded pub/sub only: times subscriptions were found lost (a slot moved away from a
    /// primary, a primary failed over, a connection was renewed) and subscribed again.
    pub sharded_repairs: u64,
    /// Sharded pub/sub only: channels subscribed again by those repairs.
    pub sharded_resubscribes: u64,
    /// Sharded pub/sub only: milliseconds, summed over the repairs, from the last check that
    /// found every subscription in place to Redis confirming the repair: an upper bound of
    /// each window in which messages to those channels may have been missed.
    pub sharded_repair_gap_ms_sum: u64,
    /// Sharded pub/sub only: the longest such window, in milliseconds.
    pub sharded_repair_gap_ms_max: u64,
    /// Sharded `dynamic` modes only: single-room broadcasts sent on the main channel instead
    /// of the room's because this node announced a join to that room within the join fence.
    pub join_fence_broadcasts: u64,
    /// Sharded `dynamic` modes only: joins announced by other nodes whose room subscription
    /// here took longer than the join fence (broadcasts to the room in that gap can be missed).
    pub join_fence_late: u64,
    /// Classic mode with pattern subscriptions only: room broadcasts received for rooms no
    /// local socket holds, dropped before decoding.
    pub unheld_room_messages: u64,
    /// Channels and patterns currently wanted (gauge).
    pub subscriptions: u64,
}
