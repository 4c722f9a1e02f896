//! Graceful shutdown with a deadline, and the account it returns.
//!
//! 1. Stop accepting: new publishes get [`PublishErrorKind::ShuttingDown`] with their event back.
//! 2. Wait for publishes that were already past the door to finish routing.
//! 3. Enqueue `system.shutdown` to its subscribers, behind what they already have.
//! 4. Close every mailbox and let the tasks drain until the deadline.
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

use crate::stats::DeliveryTotals;
use crate::subscription::Outcome;
use plugbus_contract::payload::SystemShutdown;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The account of everything the bus accepted, as of the end of shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events accepted (including the `system.shutdown` event itself).
    pub accepted: u64,
    /// Accepted events dropped by bus-wide filters.
    pub filtered: u64,
    /// Accepted events no subscription matched.
    pub unrouted: u64,
    /// Accepted events routed to at least one subscription.
    pub routed: u64,
    /// Deliveries routed.
    pub deliveries: u64,
    /// How the deliveries ended.
    pub totals: DeliveryTotals,
    /// Deliveries still running in `publish` calls at the end.
    pub in_flight: u64,
    /// Dead letters made by shutdown itself (queued or interrupted deliveries).
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
    /// New publishes are refused from the start (the event is handed back); `system.shutdown` is
    /// enqueued behind what subscribers already have; mailboxes drain until the deadline; then
    /// what is still queued or being delivered is dead-lettered with reason `Shutdown`. The
    /// returned [`ShutdownReport`] balances.
    /// Calling it again returns the first call's report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
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
        while !shared.routing_settled() {
            tokio::task::yield_now().await;
        }

        if let Ok(e) = Event::builder(EventType::SYSTEM_SHUTDOWN)
            .data(SystemShutdown {
                reason: "shutdown requested".into(),
            })
            .source("plugbus")
            .build()
        {
            let shard = shared.counters.local();
            shard.accept();
            let (waiting, _rejected) = shared.enqueue(shard, &e);
            for sub in waiting {
                // Do not wait for space at shutdown: a full mailbox dead-letters the notice.
                dispatch::not_delivered(shared, &sub, &e, Outcome::Shutdown, 0);
            }
        }

        let subs = shared.subs();
        for sub in &subs {
            sub.mailbox.close();
        }
        let until = tokio::time::Instant::from_std(started + deadline);
        // (subscription, its task, whether the task has been awaited to completion)
        let mut tasks: Vec<_> = subs
            .iter()
            .filter_map(|s| s.mailbox.task.lock().take().map(|t| (s, t, false)))
            .collect();
        let mut deadline_reached = false;
        for (_, task, done) in tasks.iter_mut() {
            match tokio::time::timeout_at(until, &mut *task).await {
                Ok(_) => *done = true,
                Err(_) => {
                    deadline_reached = true;
                    break;
                }
            }
        }

        let dead_before = shared.live_totals().dead_lettered;
        if deadline_reached {
            for (_, task, done) in tasks.iter_mut() {
                if !*done {
                    task.abort();
                }
            }
            for (sub, task, done) in tasks {
                if !done {
                    // The aborted task records the deliveries it was making as not made when
                    // it is dropped. A sync handler cannot be interrupted: give it a moment.
                    let _ = tokio::time::timeout(Duration::from_millis(100), task).await;
                }
                while let Some(event) = sub.mailbox.pop() {
                    dispatch::not_delivered(shared, sub, &event, Outcome::Shutdown, 0);
                }
            }
        }

        let totals = shared.live_totals();
        let c = shared.counters.totals();
        let report = ShutdownReport {
            accepted: c.accepted,
            filtered: c.filtered,
            unrouted: c.unrouted,
            routed: c.routed,
            deliveries: c.deliveries,
            totals,
            in_flight: c.deliveries.saturating_sub(totals.finished()),
            dead_lettered_at_shutdown: totals.dead_lettered - dead_before,
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
