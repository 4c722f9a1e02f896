//! Graceful shutdown with a deadline, and the account it returns.
//!
//! 1. Stop accepting: new publishes get [`PublishErrorKind::ShuttingDown`] with their event back.
//! 2. Wait for publishes that were already past the door to finish routing (an `emit` waiting
//!    for room included: the mailboxes keep draining meanwhile).
//! 3. Enqueue `system.shutdown` to its subscribers, behind what they already have.
//! 4. Close every mailbox, those of removed subscriptions still draining included, and let the
//!    tasks drain until the deadline.
//! 5. At the deadline, stop the tasks still running and dead-letter (reason `Shutdown`) whatever
//!    was queued or being delivered.
//!
//! The returned [`ShutdownReport`] balances: every accepted event is filtered, unrouted or
//! routed, and every routed delivery is delivered, skipped, failed or dead-lettered.
//! Deliveries started by a `publish` call that is still awaiting its handlers when the deadline
//! passes are reported as `in_flight` (their caller still gets their outcome).
//!
//! [`PublishErrorKind::ShuttingDown`]: crate::PublishErrorKind::ShuttingDown

use crate::bus::Bus;
use crate::dispatch;
use crate::event::Event;
use crate::event_type::EventType;
use crate::mailbox::Push;

use crate::stats::DeliveryTotals;
use crate::subscription::Outcome;
use plugbus_contract::payload::SystemShutdown;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long shutdown waits, past its deadline, for what it cannot interrupt: handlers running
/// in aborted tasks, and emits recording that their mailbox closed.
const GRACE: Duration = Duration::from_millis(100);

/// Waits until every accepted event has finished routing, or `until`; true if it did.
async fn settle_routing(bus: &Bus, until: tokio::time::Instant) -> bool {
    let shared = bus.shared();
    settle(until, || shared.routing_settled()).await
}

/// Waits until no delivery is in flight, or `until`; true if none is.
async fn settle_deliveries(bus: &Bus, until: tokio::time::Instant) -> bool {
    settle(until, || bus.in_flight() == 0).await
}

async fn settle(until: tokio::time::Instant, done: impl Fn() -> bool) -> bool {
    let mut spins = 0u32;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        // Routing is a few hundred nanoseconds unless an emit waits for room: yield first,
        // then sleep so that waiting costs no CPU.
        if spins < 64 {
            spins += 1;
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep_until(
                until.min(tokio::time::Instant::now() + Duration::from_millis(1)),
            )
            .await;
        }
    }
}

/// The account of everything the bus accepted, as of the end of shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events accepted (including the `system.shutdown` event itself).
    pub accepted: u64,
    /// Accepted events dropped by bus-wide filters.
    pub filtered: u64,
    /// Of `filtered`: events a bus-wide filter panicked on.
    pub filter_panics: u64,
    /// Accepted events no subscription matched.
    pub unrouted: u64,
    /// Accepted events routed to at least one subscription.
    pub routed: u64,
    /// Deliveries routed.
    pub deliveries: u64,
    /// How the deliveries ended.
    pub totals: DeliveryTotals,
    /// Deliveries not finished at the end: still running in `publish` calls whose callers
    /// have not polled them to the end, or in handlers that could not be interrupted (a sync
    /// handler stuck past the deadline and its grace). Zero whenever the account balances.
    pub in_flight: u64,
    /// Dead letters made by shutdown itself (queued or interrupted deliveries); the same
    /// deliveries are in `totals.shutdown` when their subscription keeps dead letters. Zero
    /// unless `deadline_reached`.
    pub dead_lettered_at_shutdown: u64,
    /// True if the deadline passed before the mailboxes drained.
    pub deadline_reached: bool,
    /// How long shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// True when the books balance: `accepted = filtered + unrouted + routed` and
    /// `deliveries = delivered + skipped + failed + dead_lettered` with nothing in flight.
    pub fn is_balanced(&self) -> bool {
        self.accepted == self.filtered + self.unrouted + self.routed
            && self.deliveries == self.totals.finished()
            && self.in_flight == 0
    }
}

impl Bus {
    /// Shuts the bus down, draining for at most `deadline`.
    ///
    /// New publishes are refused from the start (the event is handed back); publishes already
    /// past the door finish routing (an `emit` waiting for room gets it, as the mailboxes keep
    /// draining); `system.shutdown` is enqueued behind what subscribers already have; every
    /// mailbox drains until the deadline, those of subscriptions removed but still draining
    /// included; then what is still queued or being delivered is dead-lettered with reason
    /// `Shutdown`. The returned [`ShutdownReport`] balances, and returns within the deadline
    /// (plus a grace of at most 200 ms for handlers that cannot be interrupted) whatever
    /// handlers and filters do. Calling it again returns the first call's report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
        let until = tokio::time::Instant::from_std(started + deadline);
        let shared = self.shared();
        if !shared.accepting.swap(false, Ordering::AcqRel) {
            // Someone else is shutting down: wait for their report.
            loop {
                if let Some(r) = shared.shutdown_report.lock().clone() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        shared.counters.seal();
        tracing::info!(?deadline, "bus shutting down");
        let mut deadline_reached = !settle_routing(self, until).await;

        if let Ok(e) = Event::builder(EventType::SYSTEM_SHUTDOWN)
            .data(SystemShutdown {
                reason: "shutdown requested".into(),
            })
            .source("plugbus")
            .build()
        {
            let shard = shared.counters.local();
            shard.accept();
            let mut queued = crate::bus::Enqueued::default();
            shared.enqueue(shard, &e, None, &mut queued);
            for sub in queued.waiting {
                // Wait for room for the notice until the deadline, like any emit.
                match tokio::time::timeout_at(until, sub.mailbox.push_wait(e.clone())).await {
                    Ok(Push::Queued) => {}
                    Ok(Push::Evicted(old)) => {
                        dispatch::not_delivered(shared, &sub, &old, Outcome::Dropped, 0);
                    }
                    Ok(Push::Full(e) | Push::Closed(e)) => {
                        dispatch::not_delivered(shared, &sub, &e, Outcome::Shutdown, 0);
                    }
                    Err(_) => {
                        deadline_reached = true;
                        dispatch::not_delivered(shared, &sub, &e, Outcome::Shutdown, 0);
                    }
                }
            }
            if queued.routed {
                shared.counters.local().routed();
            }
        }

        // Removed subscriptions still draining are alive too: their queued events are accepted
        // events like any other.
        let subs = shared.live_subs();
        for sub in &subs {
            sub.mailbox.close();
        }
        // (subscription, its task, whether the task has been awaited to completion)
        let mut tasks: Vec<_> = subs
            .iter()
            .filter_map(|s| s.mailbox.task.lock().take().map(|t| (s, t, false)))
            .collect();
        if !deadline_reached {
            for (_, task, done) in tasks.iter_mut() {
                match tokio::time::timeout_at(until, &mut *task).await {
                    Ok(_) => *done = true,
                    Err(_) => {
                        deadline_reached = true;
                        break;
                    }
                }
            }
        }
        // Deliveries of `publish` calls still running are their callers' to finish; wait for
        // them too, within the deadline.
        if !deadline_reached && !settle_deliveries(self, until).await {
            deadline_reached = true;
        }

        if deadline_reached {
            for (_, task, done) in tasks.iter_mut() {
                if !*done {
                    task.abort();
                }
            }
            // The aborted tasks record the deliveries they were making as not made when they
            // are dropped. A sync handler cannot be interrupted: give them one short grace,
            // together.
            let grace = tokio::time::Instant::now() + GRACE;
            for (_, task, done) in tasks.iter_mut() {
                if !*done && tokio::time::timeout_at(grace, &mut *task).await.is_ok() {
                    *done = true;
                }
            }
            for sub in &subs {
                while let Some(event) = sub.mailbox.pop() {
                    dispatch::not_delivered(shared, sub, &event, Outcome::Shutdown, 0);
                }
            }
            // Emits that were still waiting for room saw their mailbox close: let them record
            // it.
            settle_routing(self, tokio::time::Instant::now() + GRACE).await;
        }

        let totals = shared.live_totals();
        let c = shared.counters.totals();
        let report = ShutdownReport {
            accepted: c.accepted,
            filtered: c.filtered,
            filter_panics: c.filter_panics,
            unrouted: c.unrouted,
            routed: c.routed,
            deliveries: c.deliveries,
            totals,
            in_flight: c.deliveries.saturating_sub(totals.finished()),
            dead_lettered_at_shutdown: shared.counters.shutdown_dead_letters(),
            deadline_reached,
            elapsed: started.elapsed(),
        };
        tracing::info!(
            accepted = report.accepted,
            delivered = report.totals.delivered,
            dead_lettered = report.totals.dead_lettered,
            in_flight = report.in_flight,
            balanced = report.is_balanced(),
            "bus shut down"
        );
        *shared.shutdown_report.lock() = Some(report.clone());
        report
    }

    /// [`shutdown`](Self::shutdown) from synchronous code, on the bus's runtime.
    pub fn shutdown_blocking(&self, deadline: Duration) -> ShutdownReport {
        self.runtime().block_on(self.shutdown(deadline))
    }
}
