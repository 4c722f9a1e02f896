//! Event-level counters of a bus, kept off the shared cache lines of the hot path.
//!
//! Every publish used to bump four shared atomics (routed, deliveries, ...); a locked add costs
//! ~6 ns here and makes publishers on different cores fight over one cache line. Instead each
//! thread gets its own shard, which only that thread writes (a plain load and store, no lock
//! prefix) and any thread may read; totals are the sum over shards.
//!
//! `accepted` stays one shared counter: shutdown closes the door and then reads it, and the
//! admission protocol needs the sequentially consistent read-modify-write to be sure it sees
//! every publish that got in.

use std::sync::atomic::{AtomicU64, Ordering};
use thread_local::ThreadLocal;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    filtered: AtomicU64,
    unrouted: AtomicU64,
    routed: AtomicU64,
    deliveries: AtomicU64,
}

/// Adds to a counter only the current thread writes.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Release,
    );
}

#[derive(Debug, Default)]
pub(crate) struct BusCounters {
    accepted: AtomicU64,
    shards: ThreadLocal<Shard>,
}

/// A sum of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) accepted: u64,
    pub(crate) filtered: u64,
    pub(crate) unrouted: u64,
    pub(crate) routed: u64,
    pub(crate) deliveries: u64,
}

impl BusCounters {
    #[inline]
    fn shard(&self) -> &Shard {
        self.shards.get_or_default()
    }

    /// Counts an event in; see the admission protocol in `Shared::admit`.
    #[inline]
    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back an [`accept`](Self::accept) for an event refused after all.
    pub(crate) fn unaccept(&self) {
        self.accepted.fetch_sub(1, Ordering::SeqCst);
    }

    /// An accepted event dropped by a bus-wide filter.
    pub(crate) fn filtered(&self) {
        bump(&self.shard().filtered, 1);
    }

    /// An accepted event no subscription matched.
    pub(crate) fn unrouted(&self) {
        bump(&self.shard().unrouted, 1);
    }

    /// Deliveries about to start (counted before any of them can finish).
    #[inline]
    pub(crate) fn deliveries(&self, n: u64) {
        bump(&self.shard().deliveries, n);
    }

    /// An accepted event has been routed (after its deliveries were counted).
    #[inline]
    pub(crate) fn routed(&self) {
        bump(&self.shard().routed, 1);
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals {
            accepted: self.accepted.load(Ordering::SeqCst),
            ..Totals::default()
        };
        for s in self.shards.iter() {
            // `routed` first: its release store follows the shard's deliveries count.
            t.routed += s.routed.load(Ordering::Acquire);
            t.filtered += s.filtered.load(Ordering::Acquire);
            t.unrouted += s.unrouted.load(Ordering::Acquire);
            t.deliveries += s.deliveries.load(Ordering::Acquire);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shards_sum_across_threads() {
        let c = Arc::new(BusCounters::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.accept();
                        c.deliveries(3);
                        c.routed();
                    }
                    c.accept();
                    c.filtered();
                    c.accept();
                    c.unrouted();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap_or_default();
        }
        let t = c.totals();
        assert_eq!(t.accepted, 4 * 10_002);
        assert_eq!((t.routed, t.deliveries), (40_000, 120_000));
        assert_eq!((t.filtered, t.unrouted), (4, 4));
    }
}
