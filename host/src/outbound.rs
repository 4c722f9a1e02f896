//! A plugin's outbound queue: the events a plugin publishes, on their way to the bus.
//!
//! A plugin publishes from a plain thread (its dispatch thread, or one it spawned), which
//! cannot `await`; the bus's `try_emit` from there would refuse an event the moment any one
//! subscriber's mailbox is full, which under load switched the auth enhancer's alerts off while
//! the run still balanced. Instead each plugin instance has a bounded FIFO of events and one
//! task that hands them to the bus with [`Bus::emit`], which follows every subscription's
//! overflow policy (it waits for room under `Wait`, as any publisher would).
//!
//! Why this shape, and not blocking the plugin thread inside `emit`:
//! - **No deadlock.** A plugin that subscribes to what it publishes, or two plugins feeding
//!   each other, would block a thread that is itself what drains the full mailbox. Here the
//!   plugin thread blocks only when its own queue is full, and only for its handler timeout;
//!   then the publish is refused as [`RefusalKind::Full`] (transient), and the plugin goes on.
//! - **Order.** One queue and one task per plugin: every subscriber sees a plugin's events in
//!   the order it published them.
//! - **Cost.** A publish is a lock, a push and, when the task sleeps, a wake-up: a few hundred
//!   nanoseconds on the plugin's thread, the routing on the task.
//! - **Nothing lost silently.** Every event is counted once: accepted by the bus, refused at
//!   the queue (by [`RefusalKind`]), or refused later by the bus (shut down, or rejected by a
//!   subscription's `Reject` policy), and [`Outbound::flush`] lets the host wait for the queue
//!   to empty before it stops plugins or shuts the bus down.

use parking_lot::{Condvar, Mutex};
use plugbus::{Bus, Event, PublishErrorKind};
use plugbus_plugin_api::RefusalKind;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How many events a plugin may have on their way to the bus before its `publish` waits.
pub(crate) const CAPACITY: usize = 1024;

/// Per-plugin figures of what it published, as counted here.
#[derive(Debug, Default)]
pub(crate) struct PublishCounters {
    /// Accepted by the bus.
    pub(crate) published: AtomicU64,
    /// Refused: the queue stayed full for the whole wait.
    pub(crate) refused_full: AtomicU64,
    /// Refused: the plugin was stopping or the bus shutting down.
    pub(crate) refused_closed: AtomicU64,
    /// Refused: a type or source reserved for the host.
    pub(crate) refused_forbidden: AtomicU64,
    /// Refused: a malformed event.
    pub(crate) refused_invalid: AtomicU64,
    /// Accepted by the bus but refused by some subscriptions' `Reject` policy (those
    /// deliveries are in the bus's account as rejected).
    pub(crate) rejected_by_subscribers: AtomicU64,
}

impl PublishCounters {
    pub(crate) fn refused(&self, kind: RefusalKind) {
        let c = match kind {
            RefusalKind::Full => &self.refused_full,
            RefusalKind::Closed => &self.refused_closed,
            RefusalKind::Forbidden => &self.refused_forbidden,
            RefusalKind::Invalid => &self.refused_invalid,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Event>,
    /// An event the task took and is still handing to the bus.
    busy: bool,
    closed: bool,
}

/// One plugin instance's outbound queue; see the module docs.
#[derive(Debug)]
pub(crate) struct Outbound {
    plugin: Arc<str>,
    state: Mutex<State>,
    /// Room appeared, or the queue drained (plugin threads and `flush` wait on it).
    changed: Condvar,
    /// Work for the task.
    work: Notify,
    capacity: usize,
    pub(crate) counters: Arc<PublishCounters>,
}

impl Outbound {
    /// A queue for `plugin`, drained into `bus` by a task on the bus's runtime.
    pub(crate) fn start(bus: &Bus, plugin: Arc<str>, counters: Arc<PublishCounters>) -> Arc<Self> {
        let outbound = Arc::new(Outbound {
            plugin,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            work: Notify::new(),
            capacity: CAPACITY,
            counters,
        });
        bus.runtime()
            .spawn(Arc::clone(&outbound).drain(bus.clone()));
        outbound
    }

    /// Queues `event` for the bus, waiting at most `wait` for room.
    ///
    /// # Errors
    /// [`RefusalKind::Full`] if there was no room within `wait`, [`RefusalKind::Closed`] if the
    /// queue is closed; the refusal is counted.
    pub(crate) fn push(&self, event: Event, wait: Duration) -> Result<(), RefusalKind> {
        let until = Instant::now() + wait;
        let mut state = self.state.lock();
        loop {
            if state.closed {
                self.counters.refused(RefusalKind::Closed);
                return Err(RefusalKind::Closed);
            }
            if state.queue.len() < self.capacity {
                break;
            }
            if self.changed.wait_until(&mut state, until).timed_out()
                && state.queue.len() >= self.capacity
                && !state.closed
            {
                self.counters.refused(RefusalKind::Full);
                return Err(RefusalKind::Full);
            }
        }
        state.queue.push_back(event);
        drop(state);
        self.work.notify_one();
        Ok(())
    }

    /// Refuses further events; what is queued still goes to the bus.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
        self.work.notify_one();
    }

    /// Events queued or being handed to the bus.
    pub(crate) fn pending(&self) -> usize {
        let state = self.state.lock();
        state.queue.len() + usize::from(state.busy)
    }

    /// Waits until everything queued so far reached the bus, or `timeout` passed; true if it
    /// did.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The task: hands the events to the bus in order, waiting as `emit` waits.
    async fn drain(self: Arc<Self>, bus: Bus) {
        loop {
            let next = {
                let mut state = self.state.lock();
                let next = state.queue.pop_front();
                state.busy = next.is_some();
                if next.is_none() && state.closed {
                    return;
                }
                next
            };
            let Some(event) = next else {
                self.work.notified().await;
                continue;
            };
            self.changed.notify_all();
            match bus.emit(event).await {
                Ok(()) => {
                    self.counters.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => match err.kind {
                    PublishErrorKind::Full(subs) => {
                        // Accepted, and enqueued everywhere but where a `Reject` (or
                        // dead-letter) policy refused it: the bus's account has those.
                        self.counters.published.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .rejected_by_subscribers
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            plugin = &*self.plugin,
                            subscriptions = subs.len(),
                            "plugin event rejected by full mailboxes"
                        );
                    }
                    _ => {
                        self.counters.refused(RefusalKind::Closed);
                        tracing::warn!(
                            plugin = &*self.plugin,
                            event_type = err.event.event_type().name(),
                            "plugin event refused: the bus is shutting down"
                        );
                    }
                },
            }
            let mut state = self.state.lock();
            state.busy = false;
            let drained = state.queue.is_empty();
            drop(state);
            if drained {
                self.changed.notify_all();
            }
        }
    }
}
