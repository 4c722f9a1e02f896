//! The dead-letter queue: deliveries that could not be made, kept for inspection and replay.
//!
//! A delivery is dead-lettered when it finally fails (error after retries, timeout, panic, open
//! circuit), when a mailbox with the `DeadLetter` overflow policy is full, or when shutdown's
//! deadline passes with the delivery still queued. The queue is bounded: past its capacity the
//! oldest entry is evicted and counted. A [`DeadLetterSink`] sees every entry as it arrives,
//! before any eviction, so a sink that persists them loses nothing.

use crate::event::Event;
use crate::subscription::SubscriptionId;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a delivery was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The handler returned this error (after any retries).
    Error(String),
    /// The handler said the event is malformed (a poison message).
    BadEvent(String),
    /// The handler did not finish within this timeout.
    TimedOut(Duration),
    /// The handler panicked with this message.
    Panicked(String),
    /// The subscription's circuit was open.
    CircuitOpen,
    /// The subscription's mailbox was full.
    MailboxFull,
    /// The bus shut down before the delivery ran.
    Shutdown,
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::Error(e) => write!(f, "handler error: {e}"),
            DeadLetterReason::BadEvent(e) => write!(f, "bad event: {e}"),
            DeadLetterReason::TimedOut(d) => write!(f, "timed out after {d:?}"),
            DeadLetterReason::Panicked(m) => write!(f, "handler panicked: {m}"),
            DeadLetterReason::CircuitOpen => f.write_str("circuit open"),
            DeadLetterReason::MailboxFull => f.write_str("mailbox full"),
            DeadLetterReason::Shutdown => f.write_str("bus shut down before delivery"),
        }
    }
}

/// One delivery that could not be made.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event.
    pub event: Event,
    /// The subscription it was for.
    pub subscription: SubscriptionId,
    /// That subscription's name.
    pub subscriber: Arc<str>,
    /// Why it failed.
    pub reason: DeadLetterReason,
    /// How many handler calls were made (0 if none was).
    pub attempts: u32,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
}

/// Receives every dead letter as it is recorded (persist it, alert on it, ...).
///
/// Called on the delivering task: keep it quick. Closures `Fn(&DeadLetter)` implement it.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Called once per dead letter.
    fn on_dead_letter(&self, letter: &DeadLetter);
}

impl<F: Fn(&DeadLetter) + Send + Sync + 'static> DeadLetterSink for F {
    fn on_dead_letter(&self, letter: &DeadLetter) {
        self(letter)
    }
}

pub(crate) struct DeadLetterQueue {
    capacity: usize,
    entries: Mutex<VecDeque<DeadLetter>>,
    evicted: AtomicU64,
    sink: Option<Arc<dyn DeadLetterSink>>,
}

impl fmt::Debug for DeadLetterQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterQueue")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("has_sink", &self.sink.is_some())
            .finish()
    }
}

impl DeadLetterQueue {
    pub(crate) fn new(capacity: usize, sink: Option<Arc<dyn DeadLetterSink>>) -> Self {
        DeadLetterQueue {
            capacity,
            entries: Mutex::new(VecDeque::new()),
            evicted: AtomicU64::new(0),
            sink,
        }
    }

    pub(crate) fn push(&self, letter: DeadLetter) {
        tracing::warn!(
            event_id = %letter.event.id(),
            event_type = letter.event.event_type().name(),
            subscriber = &*letter.subscriber,
            attempts = letter.attempts,
            reason = %letter.reason,
            "dead-lettered"
        );
        if let Some(sink) = &self.sink {
            let guarded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sink.on_dead_letter(&letter)
            }));
            if guarded.is_err() {
                tracing::error!("dead-letter sink panicked; the letter is still queued");
            }
        }
        let mut q = self.entries.lock();
        if self.capacity == 0 {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while q.len() >= self.capacity {
            q.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(letter);
    }

    pub(crate) fn list(&self) -> Vec<DeadLetter> {
        self.entries.lock().iter().cloned().collect()
    }

    pub(crate) fn drain(&self) -> Vec<DeadLetter> {
        self.entries.lock().drain(..).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}
