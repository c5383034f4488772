//! A lock-free log-linear latency histogram (microseconds, under 0.8 % relative error) and the
//! recorder every receiving connection writes into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Values below this are counted exactly.
const EXACT: u64 = 256;
/// Sub-buckets per power of two above [`EXACT`].
const SUB_BUCKETS: u64 = 128;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (EXACT + (64 - 8) * SUB_BUCKETS) as usize;

/// The bucket holding `value`.
pub fn bucket_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let exp = 63 - u64::from(value.leading_zeros());
    let shift = exp - 7;
    let top = value >> shift;
    (EXACT + (exp - 8) * SUB_BUCKETS + (top - SUB_BUCKETS)) as usize
}

/// The smallest value in `bucket` and the bucket's width.
pub fn bucket_range(bucket: usize) -> (u64, u64) {
    let b = bucket as u64;
    if b < EXACT {
        return (b, 1);
    }
    let exp = (b - EXACT) / SUB_BUCKETS + 8;
    let top = (b - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
    let shift = exp - 7;
    (top << shift, 1 << shift)
}

/// Counts per bucket, updated concurrently with relaxed atomics.
#[derive(Debug)]
pub struct AtomicHistogram {
    buckets: Vec<AtomicU64>,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl AtomicHistogram {
    /// Counts one value.
    pub fn record(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> Histogram {
        Histogram {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A plain copy of a histogram's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Histogram {
    /// Builds one from values (tests and small samples).
    pub fn from_values(values: impl IntoIterator<Item = u64>) -> Self {
        let mut counts = vec![0; BUCKETS];
        for v in values {
            counts[bucket_of(v)] += 1;
        }
        Self { counts }
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding the value of rank
    /// `ceil(q * count)`; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bucket_range(bucket);
                return Some(low + width / 2);
            }
        }
        None
    }

    /// The largest bucket's midpoint with a count; `None` when empty.
    pub fn max(&self) -> Option<u64> {
        self.counts.iter().rposition(|&n| n > 0).map(|b| {
            let (low, width) = bucket_range(b);
            low + width / 2
        })
    }
}

/// Measurement steps a run may use (the tag's step indexes into this many counters).
pub const MAX_STEPS: usize = 64;

/// Counters of one measurement step.
#[derive(Debug, Default)]
pub struct StepCounters {
    /// `room message` frames received.
    pub delivered: AtomicU64,
    /// Publish-to-receive latency in microseconds.
    pub latency_us: AtomicHistogram,
}

/// Where every connection of the generator reports what it saw; one clock (`epoch`) for all.
#[derive(Debug)]
pub struct Recorder {
    epoch: Instant,
    steps: Vec<StepCounters>,
    /// Deliveries whose step was out of range or whose tag did not parse.
    pub malformed: AtomicU64,
    /// `error` events received (rejected events, e.g. the rate limit).
    pub rejections: AtomicU64,
    /// Connections that ended without the generator closing them.
    pub disconnects: AtomicU64,
    /// Time of the latest delivery, microseconds since the epoch.
    pub last_delivery_us: AtomicU64,
    /// Deliveries per client id (ids beyond the end are not counted per client).
    per_client: Vec<AtomicU64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::with_clients(0)
    }
}

impl Recorder {
    /// A recorder that also counts deliveries for client ids `0..clients`.
    pub fn with_clients(clients: usize) -> Self {
        Self {
            per_client: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            steps: (0..MAX_STEPS).map(|_| StepCounters::default()).collect(),
            malformed: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
        }
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Counts one delivery to client `client` of a message sent at `sent_us` in `step`.
    pub fn delivered(&self, step: u32, sent_us: u64, client: usize) {
        let now = self.now_us();
        match self.steps.get(step as usize) {
            Some(counters) => {
                if let Some(c) = self.per_client.get(client) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                counters.latency_us.record(now.saturating_sub(sent_us));
                self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
            }
            None => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Deliveries counted so far in `step`.
    pub fn delivered_in(&self, step: usize) -> u64 {
        self.steps
            .get(step)
            .map_or(0, |c| c.delivered.load(Ordering::Relaxed))
    }

    /// Deliveries counted so far per client id.
    pub fn per_client(&self) -> Vec<u64> {
        self.per_client
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// The latency histogram of `step`.
    pub fn latency_in(&self, step: usize) -> Histogram {
        self.steps
            .get(step)
            .map_or_else(|| Histogram::from_values([]), |c| c.latency_us.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_with_bounded_error() {
        let mut previous = 0;
        for v in (0..5000u64).chain([
            1 << 20,
            (1 << 20) + 12_345,
            9_999_999,
            u64::MAX / 3,
            u64::MAX,
        ]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> bucket {b}");
            let (low, width) = bucket_range(b);
            assert!(low <= v && v - low < width, "{v} not in [{low}, +{width})");
            assert!(width as f64 / low.max(1) as f64 <= 1.0 / 128.0 || width == 1);
            if v < 5000 {
                assert!(b >= previous, "buckets must be monotonic");
                previous = b;
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_sample() {
        let h = Histogram::from_values(1..=1000);
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).unwrap_or(0);
        assert!((498..=503).contains(&p50), "p50 {p50}");
        let p99 = h.quantile(0.99).unwrap_or(0);
        assert!((986..=994).contains(&p99), "p99 {p99}");
        let max = h.max().unwrap_or(0);
        assert!((996..=1003).contains(&max), "max {max}");
        assert_eq!(Histogram::from_values([]).quantile(0.5), None);
    }

    #[test]
    fn p999_sees_a_rare_outlier() {
        let values = std::iter::repeat_n(100, 9_980).chain(std::iter::repeat_n(50_000, 20));
        let h = Histogram::from_values(values);
        assert_eq!(h.quantile(0.99), Some(100));
        let p999 = h.quantile(0.999).unwrap_or(0);
        assert!((49_800..=50_200).contains(&p999), "p999 {p999}");
    }

    #[test]
    fn recorder_counts_per_step_and_rejects_unknown_steps() {
        let r = Recorder::with_clients(2);
        r.delivered(3, 0, 1);
        r.delivered(3, 0, 1);
        r.delivered(3, 0, 7);
        r.delivered(MAX_STEPS as u32, 0, 0);
        assert_eq!(r.per_client(), vec![0, 2]);
        assert_eq!(r.delivered_in(3), 3);
        assert_eq!(r.delivered_in(2), 0);
        assert_eq!(r.latency_in(3).count(), 3);
        assert_eq!(r.malformed.load(Ordering::Relaxed), 1);
    }
}
