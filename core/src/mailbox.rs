//! Bounded per-subscription mailboxes for [`Bus::emit`](crate::Bus::emit).
//!
//! Each subscription owns one mailbox and one task that drains it in order, so a slow handler
//! delays only its own subscription, and every subscription sees events in the order they were
//! enqueued. The queue is a fixed-size lock-free ring allocated once: memory stays bounded
//! whatever the publish rate.
//!
//! # Overflow
//! When the ring is full, the subscription's [`Overflow`] policy decides: wait for space
//! (backpressure on the publisher), reject the event for this subscription, drop the oldest queued
//! event to make room, or dead-letter the new event. Each outcome is counted.
//!
//! # Disconnection
//! Unsubscribing closes the mailbox: no new events enter, and the task delivers what is already
//! queued, then ends.
//!
//! # Clean Shutdown
//! [`Bus::shutdown`](crate::Bus::shutdown) closes every mailbox, lets the tasks drain until the
//! deadline, then stops them and dead-letters whatever is still queued or in flight, so the
//! account balances.
//!
//! # Allocation behavior
//! The ring is allocated when the subscription is made (`capacity` slots of one pointer each);
//! enqueueing never allocates.

use crate::event::Event;
use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a full mailbox does with a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The publisher waits for space (`emit` awaits; `try_emit` reports the subscription full).
    #[default]
    Wait,
    /// The event is refused for this subscription and counted as rejected.
    Reject,
    /// The oldest queued event is dropped (counted) to make room.
    DropOldest,
    /// The new event goes to the dead-letter queue.
    DeadLetter,
}

pub(crate) enum Push {
    Queued,
    /// Queued, after evicting this older event.
    Evicted(Event),
    Full(Event),
    Closed(Event),
}

/// Keeps a value on cache lines of its own (two, for adjacent-line prefetching), so writes to
/// it do not evict what the other core reads.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: ArrayQueue<Event>,
    /// Written by every push (the publisher's core) and by the consumer when it parks: kept
    /// apart from the fields both sides only read per event (`closed`, `space_waiters`), which
    /// would otherwise miss in the consumer's cache on every push.
    consumer: Padded<Notify>,
    /// The consumer is parked, or about to: only then does a push notify it (a notify per push
    /// while it drains would make both cores fight over the `Notify`'s line for nothing). The
    /// push that notifies clears it, so one wake-up is sent per park: the consumer may take a
    /// while to run, and every push in between used to see it still parked and notify again
    /// (13 notifies per event at 16 subscriptions, each a lock of the `Notify`).
    parked: Padded<AtomicBool>,
    space: Notify,
    space_waiters: AtomicUsize,
    closed: AtomicBool,
    started: AtomicBool,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Mailbox {
        Mailbox {
            queue: ArrayQueue::new(capacity.max(1)),
            consumer: Padded(Notify::new()),
            parked: Padded(AtomicBool::new(false)),
            space: Notify::new(),
            space_waiters: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            started: AtomicBool::new(false),
            task: Mutex::new(None),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// True exactly once: the caller must start the drain task.
    pub(crate) fn claim_start(&self) -> bool {
        !self.started.load(Ordering::Acquire)
            && self
                .started
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub(crate) fn try_push(&self, event: Event, overflow: Overflow) -> Push {
        let pushed = self.push_quietly(event, overflow);
        self.wake_consumer();
        pushed
    }

    /// [`try_push`](Self::try_push) without waking the consumer: the caller pushes into
    /// several mailboxes, then calls [`wake_parked`] once for all of them, paying one fence
    /// per event instead of one per mailbox.
    pub(crate) fn push_quietly(&self, event: Event, overflow: Overflow) -> Push {
        if self.is_closed() {
            return Push::Closed(event);
        }
        if overflow == Overflow::DropOldest {
            match self.queue.force_push(event) {
                None => Push::Queued,
                Some(old) => Push::Evicted(old),
            }
        } else {
            match self.queue.push(event) {
                Ok(()) => Push::Queued,
                Err(e) => Push::Full(e),
            }
        }
    }

    /// After a push: wakes the consumer if it parked. Dekker's pattern with `wait_for_work`
    /// (each side writes its flag, then reads the other's): the push is written before
    /// `parked` is read, and the consumer's `parked` before it looks at the queue again, so
    /// either it sees the event or we see it parked.
    #[inline]
    fn wake_consumer(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake_if_parked();
    }

    /// After [`push_quietly`](Self::push_quietly): wakes the consumer if it parked (the
    /// caller issued the fence of [`wake_parked`]).
    #[inline]
    fn wake_if_parked(&self) {
        // The load first: the swap is a locked write, paid only when there is a wake-up to send.
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.consumer.notify_one();
        }
    }

    /// Waits for space (the `Wait` policy).
    pub(crate) async fn push_wait(&self, mut event: Event) -> Push {
        loop {
            match self.try_push(event, Overflow::Wait) {
                Push::Full(e) => event = e,
                other => return other,
            }
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.space_waiters.fetch_add(1, Ordering::AcqRel);
            // Space may have appeared between the failed push and registering interest.
            let retry = self.try_push(event, Overflow::Wait);
            match retry {
                Push::Full(e) => {
                    event = e;
                    notified.await;
                    self.space_waiters.fetch_sub(1, Ordering::AcqRel);
                }
                other => {
                    self.space_waiters.fetch_sub(1, Ordering::AcqRel);
                    return other;
                }
            }
        }
    }

    pub(crate) fn pop(&self) -> Option<Event> {
        let e = self.queue.pop()?;
        self.wake_space_waiter();
        Some(e)
    }

    /// [`pop`](Self::pop) without waking a publisher waiting for space: a batch pops many,
    /// and a waiting publisher stays counted until it runs, so waking per pop would notify it
    /// again and again. The batch calls [`wake_space_waiter`](Self::wake_space_waiter) after
    /// its first pop (so a publisher on another core refills while it drains) and at its end.
    pub(crate) fn pop_quietly(&self) -> Option<Event> {
        self.queue.pop()
    }

    /// Wakes one publisher waiting for space, if any.
    #[inline]
    pub(crate) fn wake_space_waiter(&self) {
        if self.space_waiters.load(Ordering::Acquire) > 0 {
            self.space.notify_one();
        }
    }

    /// Waits until something may have been pushed (or the mailbox closed).
    pub(crate) async fn wait_for_work(&self) {
        let notified = self.consumer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.parked.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        // Only queued work returns at once: a closed mailbox is reported once, by the
        // notification `close` leaves, so a task that waits on other things too (the
        // pipelined drain's running deliveries) is not woken again and again by it.
        if self.queue.is_empty() {
            notified.await;
        }
        self.parked.store(false, Ordering::Relaxed);
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.consumer.notify_one();
        self.space.notify_waiters();
    }
}

/// After pushing quietly into `mailboxes`: one fence (the Dekker pairing of
/// [`Mailbox::wake_consumer`]), then a wake-up for each consumer that parked. Waking one whose
/// push failed is harmless: it finds its mailbox as it left it and parks again.
pub(crate) fn wake_parked<'a>(mailboxes: impl Iterator<Item = &'a Mailbox>) {
    std::sync::atomic::fence(Ordering::SeqCst);
    for m in mailboxes {
        m.wake_if_parked();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::EventType;

    fn ev() -> Event {
        Event::builder(EventType::DATA_CREATED).build().unwrap()
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_returns_the_evicted() {
        let m = Mailbox::new(2);
        let (a, b, c) = (ev(), ev(), ev());
        assert!(matches!(
            m.try_push(a.clone(), Overflow::DropOldest),
            Push::Queued
        ));
        assert!(matches!(
            m.try_push(b.clone(), Overflow::DropOldest),
            Push::Queued
        ));
        match m.try_push(c.clone(), Overflow::DropOldest) {
            Push::Evicted(old) => assert!(old.ptr_eq(&a)),
            _ => panic!("expected eviction"),
        }
        assert!(m.pop().unwrap().ptr_eq(&b));
        assert!(m.pop().unwrap().ptr_eq(&c));
        assert!(m.pop().is_none());
    }

    #[test]
    fn full_and_closed_hand_the_event_back() {
        let m = Mailbox::new(1);
        assert!(matches!(m.try_push(ev(), Overflow::Reject), Push::Queued));
        assert!(matches!(m.try_push(ev(), Overflow::Reject), Push::Full(_)));
        m.close();
        assert!(matches!(
            m.try_push(ev(), Overflow::Reject),
            Push::Closed(_)
        ));
    }

    #[tokio::test]
    async fn push_wait_resumes_when_space_frees() {
        let m = std::sync::Arc::new(Mailbox::new(1));
        assert!(matches!(m.try_push(ev(), Overflow::Wait), Push::Queued));
        let m2 = m.clone();
        let waiter = tokio::spawn(async move { matches!(m2.push_wait(ev()).await, Push::Queued) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        m.pop().unwrap();
        assert!(waiter.await.unwrap());
        assert_eq!(m.len(), 1);
    }
}
