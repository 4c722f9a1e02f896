//! Event-level counters of a bus, kept off the shared cache lines of the hot path.
//!
//! Every publish used to bump shared atomics (accepted, routed, deliveries, ...); a locked add
//! costs ~6 ns here and makes publishers on different cores fight over one cache line. Instead
//! each thread gets its own shard, which only that thread writes (a plain load and store, no lock
//! prefix) and any thread may read; totals are the sum over shards.
//!
//! `accepted` is sharded too, which needs care: shutdown closes the door and then reads
//! `accepted`, and must see every publish that got in. That is Dekker's pattern (each side
//! writes one location, then reads the other), which needs a store-load barrier on both sides.
//! It is made asymmetric ([`crate::fence`]): publishers issue only a compiler fence and
//! shutdown, once, a process-wide barrier. So either a publisher's count is visible to
//! shutdown's reads, or that publisher sees the door closed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use thread_local::ThreadLocal;

/// One thread's counters; only that thread writes them.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Shard {
    accepted: AtomicU64,
    filtered: AtomicU64,
    unrouted: AtomicU64,
    routed: AtomicU64,
    deliveries: AtomicU64,
    filter_panics: AtomicU64,
    shutdown_dead_letters: AtomicU64,
}

/// Adds to a counter only the current thread writes.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Release,
    );
}

impl Shard {
    /// Counts an event in if `open` still holds once the count is published; see the module
    /// docs. Returns false (and takes the count back) if the door was closed.
    #[inline]
    pub(crate) fn admit(&self, open: &AtomicBool) -> bool {
        bump(&self.accepted, 1);
        crate::fence::light();
        if open.load(Ordering::Acquire) {
            return true;
        }
        bump(&self.accepted, u64::MAX);
        false
    }

    /// Counts in an event that needs no admission (shutdown's own notice).
    pub(crate) fn accept(&self) {
        bump(&self.accepted, 1);
    }

    /// An accepted event dropped by a bus-wide filter.
    #[inline]
    pub(crate) fn filtered(&self) {
        bump(&self.filtered, 1);
    }

    /// Of the filtered: a bus-wide filter panicked on the event.
    #[cold]
    pub(crate) fn filter_panicked(&self) {
        bump(&self.filter_panics, 1);
    }

    /// An accepted event no subscription matched.
    #[inline]
    pub(crate) fn unrouted(&self) {
        bump(&self.unrouted, 1);
    }

    /// Deliveries about to start (counted before any of them can finish).
    #[inline]
    pub(crate) fn deliveries(&self, n: u64) {
        bump(&self.deliveries, n);
    }

    /// An accepted event has been routed (after its deliveries were counted).
    #[inline]
    pub(crate) fn routed(&self) {
        bump(&self.routed, 1);
    }
}

#[derive(Debug)]
pub(crate) struct BusCounters {
    shards: ThreadLocal<Shard>,
}

impl Default for BusCounters {
    fn default() -> Self {
        crate::fence::init();
        BusCounters {
            shards: ThreadLocal::new(),
        }
    }
}

/// A sum of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) accepted: u64,
    pub(crate) filtered: u64,
    pub(crate) unrouted: u64,
    pub(crate) routed: u64,
    pub(crate) deliveries: u64,
    pub(crate) filter_panics: u64,
}

impl BusCounters {
    /// This thread's shard.
    #[inline]
    pub(crate) fn local(&self) -> &Shard {
        self.shards.get_or_default()
    }

    /// Called once after the door closed (`accepting` set false) and before the counts are
    /// relied on: every admission either is visible to this thread afterwards or saw the door
    /// closed.
    pub(crate) fn seal(&self) {
        crate::fence::heavy();
    }

    /// A delivery dead-lettered because the bus shut down before it could be made. Kept in
    /// the shards like the rest: a shared atomic here would sit beside `shards`, which every
    /// publish reads, and measurably slowed `emit` across cores.
    pub(crate) fn shutdown_dead_letter(&self) {
        bump(&self.local().shutdown_dead_letters, 1);
    }

    pub(crate) fn shutdown_dead_letters(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.shutdown_dead_letters.load(Ordering::Acquire))
            .sum()
    }

    /// Deliveries about to start, counted in this thread's shard.
    pub(crate) fn deliveries(&self, n: u64) {
        self.local().deliveries(n);
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            // `routed` before `deliveries` and `accepted` before everything else: a release
            // store comes after the counts that precede it in the writer's program order.
            t.accepted += s.accepted.load(Ordering::Acquire);
            t.routed += s.routed.load(Ordering::Acquire);
            t.filtered += s.filtered.load(Ordering::Acquire);
            t.unrouted += s.unrouted.load(Ordering::Acquire);
            t.deliveries += s.deliveries.load(Ordering::Acquire);
            t.filter_panics += s.filter_panics.load(Ordering::Acquire);
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
                    let open = AtomicBool::new(true);
                    let l = c.local();
                    for _ in 0..10_000 {
                        assert!(l.admit(&open));
                        l.deliveries(3);
                        l.routed();
                    }
                    l.accept();
                    l.filtered();
                    l.accept();
                    l.unrouted();
                    open.store(false, Ordering::Release);
                    assert!(!l.admit(&open));
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
