//! Deferred handlers: the handler hands the event on (to another thread, a queue, a socket)
//! and returns at once; whoever does the work later calls [`Completion::finish`], from any
//! thread.
//!
//! An async handler that waits for another thread's answer costs, per event, a boxed future, a
//! channel for the answer, a timer for the timeout and a wake-up of the waiting task when the
//! answer comes. For a plugin thread fed by a queue that was most of the cost of a delivery.
//! A deferred subscription's mailbox task instead keeps its open deliveries in a queue, in the
//! order it started them, and the completion records the outcome itself, on the finishing
//! thread, without waking anyone. Timeouts need one timer per subscription, not one per
//! delivery: deliveries start in order and share a timeout, so the oldest open one always
//! expires first. The task is woken only when it waits for room (`max_in_flight`), for the last
//! answers before it ends, or to run a retry.
//!
//! Every delivery still ends in exactly one outcome: the first of the completion, the timeout
//! and shutdown to claim it wins (a compare-and-swap on its status), and the others see it
//! taken. A late completion returns `false`, and [`Completion::is_abandoned`] lets the worker
//! skip work the bus no longer waits for.

use crate::bus::{InHand, Shared};
use crate::context;
use crate::dispatch::{self, Continue};
use crate::event::Event;
use crate::handler::{panic_message, HandlerError, HandlerFn, HandlerResult, IntoHandlerResult};
use crate::id::Instant;
use crate::subscription::{Outcome, Sub};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::oneshot;
use tracing::Instrument as _;

/// The promise to finish one delivery of a deferred handler
/// ([`SubscriptionBuilder::handle_deferred`](crate::SubscriptionBuilder::handle_deferred)).
///
/// Send it wherever the work happens and call [`finish`](Self::finish) there. Dropping it
/// unfinished fails the delivery ("dropped without finishing"), so nothing waits forever on a
/// worker that went away.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use plugbus::{Bus, Completion, Event, EventType};
/// let bus = Bus::builder().build()?;
/// let (tx, rx) = std::sync::mpsc::channel::<(Event, Completion)>();
/// std::thread::spawn(move || {
///     for (event, done) in rx {
///         if done.is_abandoned() {
///             continue; // the bus gave up on it (timeout, shutdown)
///         }
///         let _ = event.source(); // ... the work ...
///         done.finish(());
///     }
/// });
/// bus.subscribe(EventType::USER_LOGIN)
///     .handle_deferred(move |event: &Event, done: Completion| {
///         let _ = tx.send((event.clone(), done));
///     })?;
/// let report = bus.publish(Event::builder(EventType::USER_LOGIN).build()?).await?;
/// assert!(report.all_delivered());
/// # Ok(()) }
/// ```
pub struct Completion(Option<Sink>);

enum Sink {
    /// A delivery of a deferred mailbox task: the completion records the outcome.
    Tracked(Arc<Open>),
    /// A delivery someone awaits (`publish`, an in-order mailbox, a retry).
    Reply(oneshot::Sender<HandlerResult>),
}

impl Completion {
    fn reply(tx: oneshot::Sender<HandlerResult>) -> Completion {
        Completion(Some(Sink::Reply(tx)))
    }

    /// Finishes the delivery with the handler's result (`()` or `Result<(), E>`). Returns
    /// false if the bus had already given up on it (timed out, shut down): the result is then
    /// ignored.
    pub fn finish(mut self, result: impl IntoHandlerResult) -> bool {
        match self.0.take() {
            Some(sink) => settle(sink, result.into_handler_result()),
            None => false,
        }
    }

    /// True once the bus no longer waits for this delivery (it timed out, or the bus shut
    /// down): the work can be skipped.
    pub fn is_abandoned(&self) -> bool {
        match &self.0 {
            Some(Sink::Tracked(open)) => open.status.load(Ordering::Acquire) != PENDING,
            Some(Sink::Reply(tx)) => tx.is_closed(),
            None => true,
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(sink) = self.0.take() {
            let error = if std::thread::panicking() {
                HandlerError::panicked("the handler panicked before finishing")
            } else {
                HandlerError::permanent("the handler dropped its completion without finishing")
            };
            settle(sink, Err(error));
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("abandoned", &self.is_abandoned())
            .finish()
    }
}

/// Status of an open delivery; exactly one transition out of `PENDING` happens.
const PENDING: u8 = 0;
/// Finished by its completion (delivered or failed for good).
const DONE: u8 = 1;
/// Claimed by the mailbox task: timed out, or abandoned at shutdown.
const EXPIRED: u8 = 2;
/// Failed with a retryable error: the mailbox task runs the retries.
const RETRY: u8 = 3;

/// One open delivery of a deferred mailbox task.
struct Open {
    status: AtomicU8,
    shared: Arc<Shared>,
    sub: Arc<Sub>,
    event: Event,
    started: Instant,
    /// The retryable error of the first attempt, for the mailbox task.
    error: Mutex<Option<HandlerError>>,
}

fn settle(sink: Sink, result: HandlerResult) -> bool {
    match sink {
        Sink::Reply(tx) => tx.send(result).is_ok(),
        Sink::Tracked(open) => {
            let sub = &open.sub;
            match result {
                Err(e) if dispatch::retryable(sub, &e, 1) => {
                    *open.error.lock() = Some(e);
                    if !claim(&open, RETRY) {
                        return false;
                    }
                    sub.deferred.retry_ready();
                }
                Ok(()) => {
                    if !claim(&open, DONE) {
                        return false;
                    }
                    dispatch::delivered(sub, 1, Some(open.started));
                    sub.deferred.release();
                }
                Err(e) => {
                    if !claim(&open, DONE) {
                        return false;
                    }
                    let outcome = dispatch::failed(e);
                    dispatch::not_delivered(&open.shared, sub, &open.event, outcome, 1);
                    sub.deferred.release();
                }
            }
            true
        }
    }
}

fn claim(open: &Open, to: u8) -> bool {
    open.status
        .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Per-subscription state shared by a deferred mailbox task and its completions.
#[derive(Debug, Default)]
pub(crate) struct DeferredState {
    /// Deliveries started and not yet settled (or being retried).
    in_flight: AtomicUsize,
    /// The task waits for `in_flight` to fall.
    want: AtomicBool,
    /// A completion asked for a retry.
    retries: AtomicBool,
    waker: AtomicWaker,
}

impl DeferredState {
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Dekker with `changed`: it sets `want` then reads `in_flight`.
        if self.want.load(Ordering::SeqCst) && self.want.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    fn retry_ready(&self) {
        self.retries.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Resolves when a retry is asked for or, if `room` is set, when `in_flight` falls below
    /// `seen`.
    fn changed(&self, seen: usize, room: bool) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            self.waker.register(cx.waker());
            if room {
                self.want.store(true, Ordering::SeqCst);
            }
            if self.retries.load(Ordering::SeqCst)
                || (room && self.in_flight.load(Ordering::SeqCst) < seen)
            {
                self.want.store(false, Ordering::Relaxed);
                return Poll::Ready(());
            }
            Poll::Pending
        })
    }
}

/// The open deliveries of one mailbox task, oldest first. Dropping it (the task stopped at
/// shutdown's deadline) records every delivery still open as not made.
struct Book<'a> {
    shared: &'a Shared,
    sub: &'a Sub,
    open: VecDeque<Arc<Open>>,
}

impl Book<'_> {
    /// Forgets settled deliveries at the front and times out overdue ones; returns the time
    /// left until the oldest open one is due.
    fn sweep(&mut self) -> Option<std::time::Duration> {
        let timeout = self.sub.timeout;
        while let Some(front) = self.open.front() {
            match front.status.load(Ordering::Acquire) {
                PENDING => {
                    let elapsed = front.started.elapsed();
                    if elapsed < timeout {
                        return Some(timeout - elapsed);
                    }
                    if claim(front, EXPIRED) {
                        let outcome = Outcome::TimedOut(timeout);
                        dispatch::not_delivered(self.shared, self.sub, &front.event, outcome, 1);
                        self.sub.deferred.release();
                    }
                }
                RETRY => return None,
                _ => {}
            }
            self.open.pop_front();
        }
        None
    }

    /// Takes out the deliveries waiting for a retry.
    fn retries(&mut self) -> Vec<Arc<Open>> {
        let mut out = Vec::new();
        self.open.retain(|o| {
            let retry = o.status.load(Ordering::Acquire) == RETRY;
            if retry {
                out.push(Arc::clone(o));
            }
            !retry
        });
        out
    }
}

impl Drop for Book<'_> {
    fn drop(&mut self) {
        for open in self.open.drain(..) {
            let status = open.status.load(Ordering::Acquire);
            let ours = status == RETRY
                || (status == PENDING
                    && open
                        .status
                        .compare_exchange(PENDING, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok());
            if ours {
                dispatch::not_delivered(self.shared, self.sub, &open.event, Outcome::Shutdown, 0);
            }
        }
    }
}

type Retrying = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Retries one delivery to the end, recording its outcome; recorded as not made if stopped.
async fn retry(shared: Arc<Shared>, sub: Arc<Sub>, open: Arc<Open>) {
    let error = open
        .error
        .lock()
        .take()
        .unwrap_or_else(|| HandlerError::retryable("retry"));
    let mut in_hand = InHand::new(&shared, &sub, open.event.clone());
    let ctx = Some(open.event.causation());
    let how = Continue::Retry(error, open.started);
    let span = dispatch::span(&sub, &open.event);
    dispatch::finish(
        Arc::clone(&shared),
        Arc::clone(&sub),
        open.event.clone(),
        ctx,
        how,
    )
    .instrument(span)
    .await;
    in_hand.done();
}

/// The mailbox task of a deferred subscription; see the module docs.
pub(crate) async fn drain(shared: Arc<Shared>, s: Arc<Sub>) {
    let HandlerFn::Deferred(handler) = &s.handler else {
        return;
    };
    let state = &s.deferred;
    let mut book = Book {
        shared: &shared,
        sub: &s,
        open: VecDeque::new(),
    };
    let mut retrying: FuturesUnordered<Retrying> = FuturesUnordered::new();
    let sleep = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        if state.retries.swap(false, Ordering::SeqCst) {
            for open in book.retries() {
                let fut = retry(Arc::clone(&shared), Arc::clone(&s), open);
                retrying.push(Box::pin(fut));
            }
        }
        while state.in_flight.load(Ordering::SeqCst) < s.max_in_flight {
            let Some(event) = s.mailbox.pop() else { break };
            if let Some(open) = start(&shared, &s, handler, event) {
                book.open.push_back(open);
            }
        }
        let due = book.sweep();
        let drained = s.mailbox.is_closed() && s.mailbox.len() == 0;
        if drained && book.open.is_empty() && retrying.is_empty() {
            break;
        }
        let seen = state.in_flight.load(Ordering::SeqCst);
        let full = seen >= s.max_in_flight;
        if !full && s.mailbox.len() > 0 {
            // Room appeared (completions, timeouts) after the last pop: no push will tell us.
            continue;
        }
        if let Some(left) = due {
            sleep.as_mut().reset(tokio::time::Instant::now() + left);
        }
        tokio::select! {
            Some(()) = retrying.next(), if !retrying.is_empty() => state.release(),
            () = state.changed(seen, full || drained) => {}
            () = &mut sleep, if due.is_some() => {}
            () = s.mailbox.wait_for_work(), if !full && !drained => {}
        }
    }
}

/// Starts one delivery: the subscription's checks, then the handler with a tracked completion.
/// Returns the open delivery, or `None` if it ended at once (skipped, circuit open, panicked).
fn start(
    shared: &Arc<Shared>,
    s: &Arc<Sub>,
    handler: &Arc<crate::handler::DeferredFn>,
    event: Event,
) -> Option<Arc<Open>> {
    if dispatch::precheck(shared, s, &event).is_some() {
        return None;
    }
    let open = Arc::new(Open {
        status: AtomicU8::new(PENDING),
        shared: Arc::clone(shared),
        sub: Arc::clone(s),
        event,
        started: Instant::now(),
        error: Mutex::new(None),
    });
    s.deferred.in_flight.fetch_add(1, Ordering::SeqCst);
    let done = Completion(Some(Sink::Tracked(Arc::clone(&open))));
    let event = &open.event;
    let called = catch_unwind(AssertUnwindSafe(|| {
        context::enter(Some(event.causation()), || handler(event, done))
    }));
    if let Err(p) = called {
        // Unwinding dropped the completion, which settled the delivery as panicked unless the
        // handler had finished it first; this only adds the panic's own message to the log.
        tracing::debug!(subscriber = &*s.name, panic = %panic_message(&*p), "deferred handler panicked");
    }
    Some(open)
}

/// One attempt of a deferred handler that someone awaits (publish, in-order mailboxes,
/// retries): the completion answers on a channel.
pub(crate) fn call_awaited(
    handler: &crate::handler::DeferredFn,
    event: &Event,
    ctx: Option<context::Causation>,
) -> std::thread::Result<crate::handler::BoxFuture> {
    let (tx, rx) = oneshot::channel();
    let done = Completion::reply(tx);
    catch_unwind(AssertUnwindSafe(|| {
        context::enter(ctx, || handler(event, done))
    }))?;
    Ok(Box::pin(async move {
        rx.await.unwrap_or_else(|_| {
            Err(HandlerError::permanent(
                "the completion went away without an answer",
            ))
        })
    }))
}
