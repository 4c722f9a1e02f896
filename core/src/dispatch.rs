//! Delivery: one event to one subscription, through its policies.
//!
//! The bus pushes events to handlers (it does not let them pull): it has to, because mailboxes,
//! retries, timeouts and the breaker all need to drive the call. A delivery starts
//! synchronously ([`start`]): filter, dedup and breaker checks, then the handler — a sync handler
//! runs to completion, an async one is polled once. Most deliveries end right there, with no
//! allocation and no timer. Only a handler that is still pending, must be retried, or blocks goes
//! on in [`finish`], an async function that arms the timeout and sleeps out backoffs.
//!
//! Every delivery ends in exactly one counter of its subscription (see
//! [`DeliveryTotals`](crate::DeliveryTotals)), recorded in the same synchronous step that
//! produces its [`DeliveryReport`]; shutdown's account relies on that.

use crate::bus::Shared;
use crate::context::{self, Causation};
use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::handler::{panic_message, BoxFuture, HandlerError, HandlerFn, HandlerResult};
use crate::id::Instant;
use crate::stats::Reason;
use crate::subscription::{DeliveryReport, Outcome, Sub};
use crate::timeout::{Deadline, Elapsed};
use futures_util::FutureExt;
use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::Instrument as _;

/// The result of one handler call.
enum Attempt {
    Ok,
    Err(HandlerError),
    TimedOut(Elapsed),
    Panicked(Arc<str>),
}

impl From<HandlerResult> for Attempt {
    fn from(r: HandlerResult) -> Self {
        match r {
            Ok(()) => Attempt::Ok,
            Err(e) => Attempt::Err(e),
        }
    }
}

/// How a delivery that did not finish synchronously goes on.
pub(crate) enum Continue {
    /// The first attempt's future is pending.
    Pending(BoxFuture, Instant),
    /// The first attempt failed with a retryable error.
    Retry(HandlerError, Instant),
    /// Nothing ran yet (blocking handlers).
    Fresh,
}

pub(crate) enum Started {
    Done(DeliveryReport),
    Continue(Continue),
}

thread_local! {
    static SAMPLE_TICK: Cell<u32> = const { Cell::new(0) };
}

/// True for 1 call in 64 per thread: inline sync deliveries are timed only for a sample of
/// publishes, because reading a clock costs more than a typical handler.
#[inline]
pub(crate) fn sample() -> bool {
    SAMPLE_TICK.with(|t| {
        let v = t.get().wrapping_add(1);
        t.set(v);
        v & 63 == 1
    })
}

fn report(sub: &Sub, outcome: Outcome, attempts: u32, dead_lettered: bool) -> DeliveryReport {
    DeliveryReport {
        subscription: sub.id,
        outcome,
        attempts,
        dead_lettered,
    }
}

#[inline]
pub(crate) fn delivered(sub: &Sub, attempts: u32, started: Option<Instant>) -> DeliveryReport {
    if let Some(t0) = started {
        sub.counters.latency.record(t0.elapsed());
    }
    if let Some(b) = &sub.breaker {
        b.on_success();
    }
    sub.counters.delivered();
    report(sub, Outcome::Delivered, attempts, false)
}

/// Records a delivery that did not succeed: breaker, dedup, dead letter, counters.
pub(crate) fn not_delivered(
    shared: &Shared,
    sub: &Sub,
    event: &Event,
    outcome: Outcome,
    attempts: u32,
) -> DeliveryReport {
    let reason = match &outcome {
        Outcome::Failed(_) => Reason::Error,
        Outcome::BadEvent(_) => Reason::BadEvent,
        Outcome::Cancelled => Reason::Cancelled,
        Outcome::TimedOut(_) => Reason::TimedOut,
        Outcome::Panicked(_) => Reason::Panicked,
        Outcome::CircuitOpen => Reason::CircuitOpen,
        Outcome::Rejected => Reason::Rejected,
        Outcome::Dropped => Reason::Dropped,
        Outcome::Shutdown => Reason::Shutdown,
        Outcome::Delivered | Outcome::Skipped | Outcome::Duplicate => {
            return report(sub, outcome, attempts, false)
        }
    };
    // A bad event says nothing about the handler's health: counting it would let malformed
    // input open the circuit and hide the good events behind it.
    if attempts > 0 && reason != Reason::BadEvent {
        if let Some(b) = &sub.breaker {
            if b.on_failure() {
                tracing::warn!(subscriber = &*sub.name, "circuit opened");
            }
        }
    }
    if let Some(d) = &sub.dedup {
        d.forget(event.id());
    }
    // Drop-oldest and reject exist to shed load: dead-lettering those would defeat them. A
    // cancelled emit was the publisher's choice: the event never reached this subscription.
    let dead_letter = sub.dead_letter
        && !matches!(
            reason,
            Reason::Dropped | Reason::Rejected | Reason::Cancelled
        );
    if dead_letter && reason == Reason::Shutdown {
        shared.counters.shutdown_dead_letter();
    }
    if dead_letter {
        if let Some(why) = outcome.dead_letter_reason() {
            shared.dead_letters.push(DeadLetter {
                event: event.clone(),
                subscription: sub.id,
                subscriber: Arc::clone(&sub.name),
                reason: why,
                attempts,
                at: crate::id::utc_now(),
            });
        }
    }
    sub.counters.not_delivered(reason, dead_letter);
    report(sub, outcome, attempts, dead_letter)
}

fn outcome_of(a: Attempt) -> Outcome {
    match a {
        Attempt::Ok => Outcome::Delivered,
        Attempt::Err(e) => failed(e),
        Attempt::TimedOut(Elapsed(d)) => Outcome::TimedOut(d),
        Attempt::Panicked(m) => Outcome::Panicked(m),
    }
}

/// The outcome of a final handler error: a reported panic counts as a panic, a bad event as a
/// bad event.
pub(crate) fn failed(e: HandlerError) -> Outcome {
    if e.is_panic() {
        Outcome::Panicked(Arc::from(e.message()))
    } else if e.is_bad_event() {
        Outcome::BadEvent(e)
    } else {
        Outcome::Failed(e)
    }
}

pub(crate) fn retryable(sub: &Sub, err: &HandlerError, attempt: u32) -> bool {
    err.is_retryable() && sub.retry.is_some_and(|r| r.should_retry(attempt))
}

/// The subscription's own checks before its handler runs: filter, dedup, breaker. `Some` is a
/// delivery decided (and counted) without calling the handler.
///
/// A filter that panics decides the delivery too: it ends [`Outcome::Panicked`] with a reason
/// that says the filter panicked (dead-lettered if the subscription keeps dead letters), and
/// the panic goes no further.
#[inline]
pub(crate) fn precheck(shared: &Shared, sub: &Sub, event: &Event) -> Option<DeliveryReport> {
    if let Some(f) = &sub.filter {
        if let Some(r) = apply_filter(shared, sub, f, event) {
            return Some(r);
        }
    }
    if let Some(d) = &sub.dedup {
        if !d.first_time(event.id()) {
            sub.counters.skipped(true);
            return Some(report(sub, Outcome::Duplicate, 0, false));
        }
    }
    if let Some(b) = &sub.breaker {
        if !b.allow() {
            return Some(not_delivered(shared, sub, event, Outcome::CircuitOpen, 0));
        }
    }
    None
}

/// The subscription's filter, with its panic caught. Out of line: a subscription without a
/// filter must not pay for the unwinding landing pad in `start`, which every delivery runs
/// (inlined, it measurably slowed `emit` across cores).
#[inline(never)]
fn apply_filter(
    shared: &Shared,
    sub: &Sub,
    f: &crate::filter::Filter,
    event: &Event,
) -> Option<DeliveryReport> {
    match catch_unwind(AssertUnwindSafe(|| f.matches(event))) {
        Ok(true) => None,
        Ok(false) => {
            sub.counters.skipped(false);
            Some(report(sub, Outcome::Skipped, 0, false))
        }
        Err(p) => Some(filter_panicked(shared, sub, event, &*p)),
    }
}

#[cold]
fn filter_panicked(
    shared: &Shared,
    sub: &Sub,
    event: &Event,
    payload: &(dyn std::any::Any + Send),
) -> DeliveryReport {
    let message = panic_message(payload);
    tracing::warn!(subscriber = &*sub.name, event_id = %event.id(), panic = &*message, "subscription filter panicked");
    let outcome = Outcome::Panicked(Arc::from(format!("filter panicked: {message}")));
    not_delivered(shared, sub, event, outcome, 0)
}

/// Starts a delivery and finishes it if it can be finished without waiting.
///
/// The caller has entered the event's causation context (once for all the deliveries of a
/// publish) and decided whether this publish is timed (`timed`).
#[inline]
pub(crate) fn start(
    shared: &Shared,
    sub: &Sub,
    event: &Event,
    timed: bool,
    cx: &mut Context<'_>,
) -> Started {
    if let Some(r) = precheck(shared, sub, event) {
        return Started::Done(r);
    }
    match &sub.handler {
        HandlerFn::Sync(f) => {
            let t0 = timed.then(Instant::now);
            let r = catch_unwind(AssertUnwindSafe(|| f(event)));
            settle_sync(shared, sub, event, r, t0)
        }
        HandlerFn::Async(f) => {
            let made = catch_unwind(AssertUnwindSafe(|| f(event.clone())));
            let mut fut = match made {
                Ok(fut) => fut,
                Err(p) => {
                    let o = Outcome::Panicked(panic_message(&*p));
                    return Started::Done(not_delivered(shared, sub, event, o, 1));
                }
            };
            let t0 = Instant::now();
            let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)));
            match polled {
                Ok(Poll::Ready(Ok(()))) => Started::Done(delivered(sub, 1, timed.then_some(t0))),
                Ok(Poll::Ready(Err(e))) if retryable(sub, &e, 1) => {
                    Started::Continue(Continue::Retry(e, t0))
                }
                Ok(Poll::Ready(Err(e))) => {
                    Started::Done(not_delivered(shared, sub, event, failed(e), 1))
                }
                Ok(Poll::Pending) => Started::Continue(Continue::Pending(fut, t0)),
                Err(p) => Started::Done(not_delivered(
                    shared,
                    sub,
                    event,
                    Outcome::Panicked(panic_message(&*p)),
                    1,
                )),
            }
        }
        HandlerFn::Blocking(_) | HandlerFn::Deferred(_) => Started::Continue(Continue::Fresh),
    }
}

/// What a sync handler's first call (its result, or its panic) means for the delivery.
#[inline]
pub(crate) fn settle_sync(
    shared: &Shared,
    sub: &Sub,
    event: &Event,
    r: std::thread::Result<HandlerResult>,
    t0: Option<Instant>,
) -> Started {
    match r {
        Ok(Ok(())) => Started::Done(delivered(sub, 1, t0)),
        Ok(Err(e)) => settle_sync_error(shared, sub, event, e, t0),
        Err(p) => Started::Done(not_delivered(
            shared,
            sub,
            event,
            Outcome::Panicked(panic_message(&*p)),
            1,
        )),
    }
}

#[cold]
fn settle_sync_error(
    shared: &Shared,
    sub: &Sub,
    event: &Event,
    e: HandlerError,
    t0: Option<Instant>,
) -> Started {
    if retryable(sub, &e, 1) {
        Started::Continue(Continue::Retry(e, t0.unwrap_or_else(Instant::now)))
    } else {
        Started::Done(not_delivered(shared, sub, event, failed(e), 1))
    }
}

/// A plain sync delivery that succeeded (see `Sub::plain_sync`): count it, report it.
#[inline]
pub(crate) fn plain_delivered(sub: &Sub) -> DeliveryReport {
    sub.counters.delivered();
    report(sub, Outcome::Delivered, 1, false)
}

/// Runs one fresh attempt, whatever the handler kind, under the subscription's timeout.
async fn attempt(sub: &Sub, event: &Event, ctx: Option<Causation>) -> Attempt {
    match &sub.handler {
        HandlerFn::Sync(f) => {
            match catch_unwind(AssertUnwindSafe(|| context::enter(ctx, || f(event)))) {
                Ok(r) => r.into(),
                Err(p) => Attempt::Panicked(panic_message(&*p)),
            }
        }
        HandlerFn::Async(f) => {
            let made = catch_unwind(AssertUnwindSafe(|| {
                context::enter(ctx, || f(event.clone()))
            }));
            match made {
                Ok(fut) => wait(fut, sub, ctx).await,
                Err(p) => Attempt::Panicked(panic_message(&*p)),
            }
        }
        HandlerFn::Deferred(f) => match crate::deferred::call_awaited(&**f, event, ctx) {
            Ok(fut) => wait(fut, sub, ctx).await,
            Err(p) => Attempt::Panicked(panic_message(&*p)),
        },
        HandlerFn::Blocking(f) => {
            let f = Arc::clone(f);
            let event = event.clone();
            let job = tokio::task::spawn_blocking(move || context::enter(ctx, || f(&event)));
            match Deadline::new(job, sub.timeout).await {
                Ok(Ok(r)) => r.into(),
                Ok(Err(join)) if join.is_panic() => {
                    Attempt::Panicked(panic_message(&*join.into_panic()))
                }
                Ok(Err(join)) => Attempt::Err(HandlerError::permanent(join)),
                Err(elapsed) => Attempt::TimedOut(elapsed),
            }
        }
    }
}

/// Waits for a pending handler future under the subscription's timeout, catching panics.
async fn wait(fut: BoxFuture, sub: &Sub, ctx: Option<Causation>) -> Attempt {
    let guarded = AssertUnwindSafe(context::scope(ctx, fut)).catch_unwind();
    match Deadline::new(guarded, sub.timeout).await {
        Ok(Ok(r)) => r.into(),
        Ok(Err(p)) => Attempt::Panicked(panic_message(&*p)),
        Err(elapsed) => Attempt::TimedOut(elapsed),
    }
}

/// Finishes a delivery that [`start`] could not: waits, retries, records.
pub(crate) async fn finish(
    shared: Arc<Shared>,
    sub: Arc<Sub>,
    event: Event,
    ctx: Option<Causation>,
    how: Continue,
) -> DeliveryReport {
    let (mut n, mut result, t0) = match how {
        Continue::Pending(fut, t0) => {
            // The first poll already happened; the deadline counts from the attempt's start.
            let remaining = sub.timeout.saturating_sub(t0.elapsed());
            let guarded = AssertUnwindSafe(context::scope(ctx, fut)).catch_unwind();
            let r = match Deadline::new(guarded, remaining).await {
                Ok(Ok(r)) => r.into(),
                Ok(Err(p)) => Attempt::Panicked(panic_message(&*p)),
                Err(_) => Attempt::TimedOut(Elapsed(sub.timeout)),
            };
            (1, r, t0)
        }
        Continue::Retry(e, t0) => (1, Attempt::Err(e), t0),
        Continue::Fresh => {
            let t0 = Instant::now();
            (1, attempt(&sub, &event, ctx).await, t0)
        }
    };
    loop {
        match result {
            Attempt::Ok => return delivered(&sub, n, Some(t0)),
            Attempt::Err(e) if retryable(&sub, &e, n) => {
                sub.counters.retried();
                let delay = sub.retry.map(|r| r.backoff(n)).unwrap_or_default();
                tracing::debug!(subscriber = &*sub.name, attempt = n, ?delay, error = %e, "retrying");
                tokio::time::sleep(delay).await;
                n += 1;
                result = attempt(&sub, &event, ctx).await;
            }
            other => return not_delivered(&shared, &sub, &event, outcome_of(other), n),
        }
    }
}

/// The span of one delivery that goes beyond the synchronous pass (mailbox deliveries, and
/// publish deliveries that wait, retry or block). Inline sync deliveries are covered by the
/// publish span: a span each would cost more than the handler.
pub(crate) fn span(sub: &Sub, event: &Event) -> tracing::Span {
    tracing::trace_span!(
        "plugbus.dispatch",
        subscriber = &*sub.name,
        subscription = sub.id.as_u64(),
        event_type = event.event_type().name(),
        event_id = %event.id(),
    )
}

/// Delivers `event` to `sub` from start to end (the mailbox path).
pub(crate) async fn deliver(shared: &Arc<Shared>, sub: &Arc<Sub>, event: &Event) -> DeliveryReport {
    let span = span(sub, event);
    deliver_in(shared, sub, event).instrument(span).await
}

async fn deliver_in(shared: &Arc<Shared>, sub: &Arc<Sub>, event: &Event) -> DeliveryReport {
    let ctx = Some(event.causation());
    let started = std::future::poll_fn(|cx| {
        Poll::Ready(context::enter(ctx, || {
            start(shared, sub, event, sample(), cx)
        }))
    })
    .await;
    match started {
        Started::Done(r) => r,
        Started::Continue(how) => {
            finish(Arc::clone(shared), Arc::clone(sub), event.clone(), ctx, how).await
        }
    }
}

/// A delivery still running after the synchronous pass of a publish.
pub(crate) type PendingDelivery = Pin<Box<dyn Future<Output = DeliveryReport> + Send>>;
