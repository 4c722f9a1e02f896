//! The in-order mailbox task: delivers a subscription's queued events one at a time, in
//! order, in batches.
//!
//! A task woken for one event and handling one event per wake-up spends most of its time on
//! the wake-up, the task's poll and the bookkeeping around the handler. So each poll takes a
//! batch: it pops and delivers events synchronously until the mailbox is empty or the poll has
//! had its [`SLICE`] of the worker, entering each event's causation context around its handler
//! but setting up everything else (the task context, the latency sample, the delivered
//! counter's flush, the check whether spans are wanted) once per batch; a delivery gets its
//! `plugbus.dispatch` span only when TRACE is enabled. A delivery that cannot end
//! synchronously (an async handler still pending, a retry, a blocking handler) ends the batch
//! and is awaited on its own, so order is kept whatever the handler does.
//!
//! Delivered events are released in bursts of up to [`RELEASE_BURST`], not one by one between
//! handlers (see [`batch`]).
//!
//! Accounting stays exact: every synchronous delivery of a batch ends within one poll (nothing
//! can abort the task in between), and the batch's delivered count is added before the poll
//! returns; a delivery awaited across polls is held by an [`InHand`] guard, which records it
//! if the task is stopped (shutdown's deadline) before it ends.

use crate::bus::{InHand, Shared};
use crate::context;
use crate::dispatch::{self, Continue, Started};
use crate::event::Event;
use crate::id::Instant;
use crate::subscription::Sub;
use smallvec::SmallVec;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::Instrument as _;

/// How long one poll of a mailbox task may keep its worker before it lets the runtime run
/// other tasks, checked every [`SLICE_CHECK`] deliveries.
///
/// A slice of time, not a count: a count of 128 (tokio's own budget) made a task with cheap
/// handlers yield long before its mailbox was empty, and each yield sent it to the back of the
/// run queue, where the other worker stole it: the consumer then ran on the other core from
/// its publisher, and every event crossed between their caches (`emit` to one subscription:
/// 108-112 ns per delivery with the count, 93-100 ns with this slice, A/B in one sitting).
/// A handler that takes a millisecond, on the other hand, kept the worker 128 ms.
const SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// Deliveries between two looks at the clock (a read costs a few nanoseconds, a cheap handler
/// not much more).
const SLICE_CHECK: usize = 16;

/// Delivered events a batch holds before it releases them together.
const RELEASE_BURST: usize = 32;

/// How a batch ended.
enum Batch {
    /// The mailbox is empty.
    Empty,
    /// The poll used its [`SLICE`]; more may be queued.
    Full,
    /// A delivery must be awaited: this event, and how it goes on.
    Wait(Event, Continue),
}

/// The mailbox task of a subscription delivering one event at a time.
pub(crate) async fn in_order(shared: Arc<Shared>, s: Arc<Sub>) {
    loop {
        let batch = std::future::poll_fn(|cx| Poll::Ready(batch(&shared, &s, cx))).await;
        match batch {
            Batch::Empty => {
                if s.mailbox.is_closed() && s.mailbox.len() == 0 {
                    break;
                }
                s.mailbox.wait_for_work().await;
            }
            Batch::Full => tokio::task::yield_now().await,
            Batch::Wait(event, how) => {
                let mut in_hand = InHand::new(&shared, &s, event.clone());
                let ctx = Some(event.causation());
                dispatch::finish(Arc::clone(&shared), Arc::clone(&s), event.clone(), ctx, how)
                    .instrument(dispatch::span(&s, &event))
                    .await;
                // Same poll as the delivery's outcome: an abort cannot fall in between.
                in_hand.done();
            }
        }
    }
}

/// One synchronous pass over the mailbox (see the module docs).
fn batch(shared: &Shared, s: &Sub, cx: &mut Context<'_>) -> Batch {
    // A latency sample for one delivery in a sampled batch, as `publish` samples publishes.
    let mut timed = dispatch::sample();
    // Spans per delivery only when someone collects them: asking once per batch costs a load,
    // making a span per delivery costs more than a typical handler.
    let traced = tracing::enabled!(tracing::Level::TRACE);
    let mut delivered = 0u64;
    let mut made = 0usize;
    let began = Instant::now();
    // Each event's causation around its handler; the thread's own restored once, at the end.
    let context = context::Batch::new();
    // Delivered events are released in bursts, not one by one between handlers: an event
    // reaching many subscriptions has its count raised by the publisher's core and lowered by
    // the consumers', and each interleaved decrement pulled the count's line across (-25% per
    // delivery at 16 subscriptions). Released before the delivered count is published, so
    // whoever sees the deliveries counted sees the references gone.
    let mut handled: SmallVec<[Event; RELEASE_BURST]> = SmallVec::new();
    let end = loop {
        if made % SLICE_CHECK == 0 && made > 0 && began.elapsed() >= SLICE {
            break Batch::Full;
        }
        let Some(event) = s.mailbox.pop_quietly() else {
            break Batch::Empty;
        };
        made += 1;
        if made == 1 {
            s.mailbox.wake_space_waiter();
        }
        let span = traced.then(|| dispatch::span(s, &event));
        let _entered = span.as_ref().map(tracing::Span::enter);
        context.set(Some(event.causation()));
        let started = match &s.plain_sync {
            // The common case: no policy can intervene, so a success is one count.
            Some(f) if !timed => match catch_unwind(AssertUnwindSafe(|| f(&event))) {
                Ok(Ok(())) => {
                    delivered += 1;
                    if handled.len() == RELEASE_BURST {
                        handled.clear();
                    }
                    handled.push(event);
                    continue;
                }
                r => Some(dispatch::settle_sync(shared, s, &event, r, None)),
            },
            _ => Some(dispatch::start(
                shared,
                s,
                &event,
                std::mem::take(&mut timed),
                cx,
            )),
        };
        if let Some(Started::Continue(how)) = started {
            break Batch::Wait(event, how);
        }
    };
    drop(handled);
    drop(context);
    s.counters.delivered_n(delivered);
    if made > 1 {
        s.mailbox.wake_space_waiter();
    }
    end
}
