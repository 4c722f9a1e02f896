//! What the bridge counts, and the copy of it that callers read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, shared by the bridge's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) staged: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) broker_duplicates: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) outbox_depth: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) own: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        BridgeStats {
            staged: self.staged.load(Relaxed),
            queued: self.queued.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            broker_duplicates: self.broker_duplicates.load(Relaxed),
            publish_errors: self.publish_errors.load(Relaxed),
            outbox_depth: self.outbox_depth.load(Relaxed),
            received: self.received.load(Relaxed),
            acked: self.acked.load(Relaxed),
            nacked: self.nacked.load(Relaxed),
            redelivered: self.redelivered.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            own: self.own.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            consumer_lag: None,
        }
    }
}

/// A copy of the bridge's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Events the application staged in its own transaction and the relay took.
    pub staged: u64,
    /// Local events written to the outbox, bound for the broker.
    pub queued: u64,
    /// Events JetStream acknowledged (removed from the outbox).
    pub forwarded: u64,
    /// ... of which the stream reported as duplicates (sent again after a failure).
    pub broker_duplicates: u64,
    /// Publishes that failed (broker down, timeout); each is retried from the outbox.
    pub publish_errors: u64,
    /// Events in the outbox now (written, not yet acknowledged by JetStream).
    pub outbox_depth: u64,
    /// Remote events delivered to the local bus.
    pub received: u64,
    /// Messages acknowledged to the broker (delivered, dropped as duplicates or own, refused).
    pub acked: u64,
    /// Messages negatively acknowledged (the local bus could not take them now).
    pub nacked: u64,
    /// Messages the broker delivered more than once.
    pub redelivered: u64,
    /// Remote events dropped because their id was seen already.
    pub duplicates: u64,
    /// This host's own events, dropped on receipt (loop prevention).
    pub own: u64,
    /// Messages that are not a valid envelope (terminated, never redelivered).
    pub malformed: u64,
    /// Remote events the admission check refused (terminated).
    pub refused: u64,
    /// Messages in the stream this host's consumer has not taken yet, when asked for.
    pub consumer_lag: Option<u64>,
}
