//! Counters and latency histograms, readable at any time.
//!
//! Every counter is a relaxed atomic owned by one subscription, so publishers on different
//! subscriptions never share a cache line for bookkeeping. Snapshots ([`SubscriptionStats`],
//! [`BusStats`]) are plain `Copy`/`Clone` values. When a subscription is dropped its counts are
//! folded into the bus totals, so totals never go backwards.

use crate::policy::breaker::BreakerState;
use crate::subscription::SubscriptionId;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Duration;
use thread_local::ThreadLocal;

/// Final outcomes of deliveries and their reasons, summed.
///
/// Every routed delivery ends in exactly one of `delivered`, `skipped`, `failed` or
/// `dead_lettered`; the reason counters (`errors` .. `dropped`) break down the last two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryTotals {
    /// Handled successfully.
    pub delivered: u64,
    /// Skipped on purpose: the subscription's filter said no, or a duplicate id.
    pub skipped: u64,
    /// Not delivered and not dead-lettered (dead-lettering off, rejected or dropped on overflow).
    pub failed: u64,
    /// Not delivered and kept in the dead-letter queue.
    pub dead_lettered: u64,
    /// Reason: the handler returned an error (after any retries).
    pub errors: u64,
    /// Reason: the handler said the event is malformed (a poison message).
    pub bad_event: u64,
    /// Reason: the handler did not finish within its timeout.
    pub timed_out: u64,
    /// Reason: the handler panicked.
    pub panicked: u64,
    /// Reason: the circuit was open.
    pub circuit_open: u64,
    /// Reason: the mailbox was full and the policy rejected the event.
    pub rejected: u64,
    /// Reason: the mailbox was full and the event was dropped (drop-oldest).
    pub dropped: u64,
    /// Reason: the bus shut down before the delivery ran.
    pub shutdown: u64,
    /// Reason: the `emit` waiting for room in the mailbox was cancelled (always in `failed`).
    pub cancelled: u64,
    /// Attempts that were retried (not an outcome).
    pub retried: u64,
    /// Of `skipped`: duplicates.
    pub duplicates: u64,
}

impl DeliveryTotals {
    /// All final outcomes: `delivered + skipped + failed + dead_lettered`.
    pub fn finished(&self) -> u64 {
        self.delivered + self.skipped + self.failed + self.dead_lettered
    }

    fn add(&mut self, o: &DeliveryTotals) {
        self.delivered += o.delivered;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.dead_lettered += o.dead_lettered;
        self.errors += o.errors;
        self.bad_event += o.bad_event;
        self.timed_out += o.timed_out;
        self.panicked += o.panicked;
        self.circuit_open += o.circuit_open;
        self.rejected += o.rejected;
        self.dropped += o.dropped;
        self.shutdown += o.shutdown;
        self.cancelled += o.cancelled;
        self.retried += o.retried;
        self.duplicates += o.duplicates;
    }
}

/// Why a delivery did not succeed; each maps to one reason counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Error,
    BadEvent,
    TimedOut,
    Panicked,
    CircuitOpen,
    Rejected,
    Dropped,
    Shutdown,
    Cancelled,
}

/// One thread's count of successful deliveries, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct DeliveredShard(AtomicU64);

#[derive(Debug, Default)]
pub(crate) struct SubCounters {
    /// Per thread: the one counter every successful delivery bumps, so it takes a plain store
    /// instead of a locked add on a line shared by every publishing thread (see
    /// [`crate::counters`]). The rarer outcomes below share plain atomics.
    delivered: ThreadLocal<DeliveredShard>,
    skipped: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    errors: AtomicU64,
    bad_event: AtomicU64,
    timed_out: AtomicU64,
    panicked: AtomicU64,
    circuit_open: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    shutdown: AtomicU64,
    cancelled: AtomicU64,
    retried: AtomicU64,
    pub(crate) latency: Histogram,
}

impl SubCounters {
    #[inline]
    pub(crate) fn delivered(&self) {
        let c = &self.delivered.get_or_default().0;
        c.store(c.load(Relaxed).wrapping_add(1), Release);
    }
    /// `n` successful deliveries at once (a mailbox task's batch).
    #[inline]
    pub(crate) fn delivered_n(&self, n: u64) {
        if n > 0 {
            let c = &self.delivered.get_or_default().0;
            c.store(c.load(Relaxed).wrapping_add(n), Release);
        }
    }
    pub(crate) fn skipped(&self, duplicate: bool) {
        self.skipped.fetch_add(1, Relaxed);
        if duplicate {
            self.duplicates.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }
    pub(crate) fn not_delivered(&self, reason: Reason, dead_lettered: bool) {
        let r = match reason {
            Reason::Error => &self.errors,
            Reason::BadEvent => &self.bad_event,
            Reason::TimedOut => &self.timed_out,
            Reason::Panicked => &self.panicked,
            Reason::CircuitOpen => &self.circuit_open,
            Reason::Rejected => &self.rejected,
            Reason::Dropped => &self.dropped,
            Reason::Shutdown => &self.shutdown,
            Reason::Cancelled => &self.cancelled,
        };
        r.fetch_add(1, Relaxed);
        if dead_lettered {
            self.dead_lettered.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn totals(&self) -> DeliveryTotals {
        DeliveryTotals {
            delivered: self.delivered.iter().map(|c| c.0.load(Acquire)).sum(),
            skipped: self.skipped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bad_event: self.bad_event.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            circuit_open: self.circuit_open.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            shutdown: self.shutdown.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            retried: self.retried.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
        }
    }
}

/// Totals of subscriptions that no longer exist.
#[derive(Debug, Default)]
pub(crate) struct Retired(parking_lot::Mutex<DeliveryTotals>);

impl Retired {
    pub(crate) fn fold(&self, t: &DeliveryTotals) {
        self.0.lock().add(t);
    }
    pub(crate) fn get(&self) -> DeliveryTotals {
        *self.0.lock()
    }
}

pub(crate) fn sum<'a>(
    base: DeliveryTotals,
    it: impl IntoIterator<Item = &'a DeliveryTotals>,
) -> DeliveryTotals {
    let mut t = base;
    for x in it {
        t.add(x);
    }
    t
}

/// Log-linear latency histogram: 4 buckets per power of two of nanoseconds (<= 19% error).
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    /// The sum of every sample, in nanoseconds (a Prometheus histogram's `_sum`).
    sum_nanos: AtomicU64,
}

const SUB_BITS: u32 = 2;
const BUCKETS: usize = (64 << SUB_BITS) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn index(nanos: u64) -> usize {
        if nanos < (1 << SUB_BITS) {
            return nanos as usize;
        }
        let log = 63 - nanos.leading_zeros();
        let sub = (nanos >> (log - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        ((log - SUB_BITS + 1) << SUB_BITS) as usize + sub as usize
    }

    /// The upper bound of bucket `i`, in nanoseconds.
    fn upper(i: usize) -> u64 {
        let sub_count = 1usize << SUB_BITS;
        if i < sub_count {
            return i as u64;
        }
        let log = (i / sub_count) as u32 + SUB_BITS - 1;
        let sub = (i % sub_count) as u64;
        let low = (1u64 << log) | (sub << (log - SUB_BITS));
        low + (1u64 << (log - SUB_BITS)) - 1
    }

    pub(crate) fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::index(nanos).min(BUCKETS - 1)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The samples as cumulative counts at [`LATENCY_BOUNDS`] (each bound counts the samples
    /// whose bucket lies wholly at or below it), with the total count and sum.
    pub(crate) fn cumulative(&self) -> LatencyHistogram {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count = counts.iter().sum();
        let buckets = LATENCY_BOUNDS
            .iter()
            .map(|bound| {
                let limit = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
                // Every bucket before the one holding `limit` lies below it; that one counts
                // only if it ends exactly there.
                let at = Self::index(limit).min(BUCKETS - 1);
                let mut below: u64 = counts[..at].iter().sum();
                if Self::upper(at) == limit {
                    below += counts[at];
                }
                (*bound, below)
            })
            .collect();
        LatencyHistogram {
            buckets,
            count,
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
        }
    }

    /// (count, p50, p99)
    pub(crate) fn summary(&self) -> (u64, Option<Duration>, Option<Duration>) {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return (0, None, None);
        }
        let q = |p: f64| {
            let rank = ((total as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(Duration::from_nanos(Self::upper(i)));
                }
            }
            None
        };
        (total, q(0.50), q(0.99))
    }
}

/// The upper bounds of [`LatencyHistogram::buckets`]: 1 µs to 10 s, 1-2.5-5 per decade.
pub const LATENCY_BOUNDS: [Duration; 22] = [
    Duration::from_micros(1),
    Duration::from_nanos(2_500),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_nanos(2_500_000),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// A subscription's handler latencies as a cumulative histogram (what a Prometheus
/// histogram exposes): bucket bounds are [`LATENCY_BOUNDS`]; the bus's own buckets are finer
/// (4 per power of two), so a sample is counted under a bound only when its whole bucket is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// (upper bound, samples at or below it), ascending.
    pub buckets: Vec<(Duration, u64)>,
    /// Every sample (the `+Inf` bucket).
    pub count: u64,
    /// The sum of every sample.
    pub sum: Duration,
}

/// A snapshot of one subscription's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionStats {
    /// The subscription.
    pub id: SubscriptionId,
    /// Its name.
    pub name: String,
    /// Outcomes and reasons.
    pub totals: DeliveryTotals,
    /// Events waiting in its mailbox.
    pub mailbox_depth: usize,
    /// Its mailbox's capacity.
    pub mailbox_capacity: usize,
    /// Latency samples taken (every slow-path delivery; inline sync deliveries of 1 publish in 64).
    pub latency_samples: u64,
    /// Median handler latency.
    pub p50: Option<Duration>,
    /// 99th percentile handler latency.
    pub p99: Option<Duration>,
    /// The latency samples as a cumulative histogram.
    pub latency: LatencyHistogram,
    /// Its circuit breaker, if it has one.
    pub breaker: Option<BreakerState>,
}

/// A snapshot of the whole bus.
#[derive(Debug, Clone, PartialEq)]
pub struct BusStats {
    /// Events accepted by publish/emit.
    pub accepted: u64,
    /// Accepted events dropped by bus-wide filters.
    pub filtered: u64,
    /// Of `filtered`: events a bus-wide filter panicked on (dropped, and logged).
    pub filter_panics: u64,
    /// Accepted events no subscription matched.
    pub unrouted: u64,
    /// Accepted events routed to at least one subscription.
    pub routed: u64,
    /// Deliveries routed (one per event per matching subscription).
    pub deliveries: u64,
    /// Deliveries routed and not finished yet: queued in a mailbox, running, waiting for a retry,
    /// or owed by an `emit` still waiting for room. Zero exactly when every delivery has ended.
    pub in_flight: u64,
    /// Outcomes over all subscriptions, past and present.
    pub totals: DeliveryTotals,
    /// Entries now in the dead-letter queue.
    pub dead_letter_len: usize,
    /// Dead letters evicted because the queue was full.
    pub dead_letter_evicted: u64,
    /// Per live subscription.
    pub subscriptions: Vec<SubscriptionStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_within_bucket_error() {
        let h = Histogram::default();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i));
        }
        let cumulative = h.cumulative();
        assert_eq!(cumulative.count, h.summary().0);
        assert!(cumulative.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(cumulative
            .buckets
            .iter()
            .all(|(_, c)| *c <= cumulative.count));
        assert!(cumulative.sum > Duration::ZERO);
        let (n, p50, p99) = h.summary();
        assert_eq!(n, 1000);
        let p50 = p50.unwrap_or_default().as_micros() as f64;
        let p99 = p99.unwrap_or_default().as_micros() as f64;
        assert!((p50 - 500.0).abs() / 500.0 < 0.2, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.2, "p99 {p99}");
    }

    #[test]
    fn bucket_bounds_are_monotonic_and_cover_values() {
        for v in [0u64, 1, 3, 4, 5, 7, 8, 100, 1_000_000, u64::MAX / 2] {
            let i = Histogram::index(v);
            assert!(Histogram::upper(i) >= v, "value {v} bucket {i}");
            if i > 0 {
                assert!(Histogram::upper(i - 1) < v, "value {v} bucket {i}");
            }
        }
    }
}
