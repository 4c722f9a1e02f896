//! Causation context: which event is being handled right now.
//!
//! While a handler runs, the bus records the event it is handling in a thread-local slot that is
//! set around every call and every poll of the handler's future, and restored afterwards. So the
//! context follows the handler's task across await points and threads, like a task-local, but
//! costs two thread-local writes instead of a map lookup. Any event published while the slot is
//! set gets `causation_id` = the handled event's id and inherits its correlation id (or takes its
//! id as correlation id), unless the publisher set them explicitly. When the handled event
//! carries a W3C trace context, the slot carries it too ([`Causation::trace`]), and those events
//! continue its trace with a span id of their own (see [`trace_context`](crate::trace_context)).
//!
//! Code outside a handler (an HTTP request handler, a plugin host thread) can set the context
//! explicitly with [`scope`] or [`enter`]. An edge that received a W3C `traceparent` builds an
//! event carrying it ([`EventBuilder::trace_context`](crate::EventBuilder::trace_context)) and
//! enters that event's [`causation`](crate::Event::causation) while it publishes on its behalf;
//! the trace is found through the event, so keep it alive meanwhile.

use crate::id::EventId;
use crate::trace_context::{TraceContext, TraceRef};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The context handlers of an event run in: that event's id, its correlation id and its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Causation {
    /// The event being handled; becomes `causation_id` of events published meanwhile.
    pub event_id: EventId,
    /// The correlation id those events inherit.
    pub correlation_id: EventId,
    /// The handled event's trace context, if it has one: events published meanwhile continue
    /// that trace (same trace id, flags and tracestate, a fresh span id).
    pub trace: Option<TraceRef>,
}

impl Causation {
    /// A context for code outside a handler that acts on behalf of `event_id` (which also
    /// serves as the correlation id), without a trace.
    pub const fn new(event_id: EventId) -> Causation {
        Causation {
            event_id,
            correlation_id: event_id,
            trace: None,
        }
    }
}

thread_local! {
    static CURRENT: Cell<Option<Causation>> = const { Cell::new(None) };
}

/// The context of the handler running on this thread, if any.
pub fn current() -> Option<Causation> {
    CURRENT.with(Cell::get)
}

/// The trace context of the event whose handler runs on this thread, if it has one (the
/// handled event's own, tracestate included). Events published now continue it; code that
/// calls out of process (an HTTP client) can send `current_trace().map(|t| t.child())` along.
pub fn current_trace() -> Option<TraceContext> {
    current()?.trace?.context()
}

/// Runs `f` with `ctx` as the current context, restoring the previous one afterwards (also when
/// `f` panics).
pub fn enter<R>(ctx: Option<Causation>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Causation>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(ctx)));
    f()
}

/// Keeps the context found on creation and puts it back when dropped (also on a panic), while
/// [`Batch::set`] changes it in between: a mailbox task's batch sets each event's context
/// with one thread-local write, and restores once.
pub(crate) struct Batch(Option<Causation>);

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch(current())
    }

    /// Makes `ctx` the current context until the next `set` or the drop.
    #[inline]
    pub(crate) fn set(&self, ctx: Option<Causation>) {
        CURRENT.with(|c| c.set(ctx));
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Wraps a future so that `ctx` is the current context during each of its polls.
pub fn scope<F: Future>(ctx: Option<Causation>, fut: F) -> Scoped<F> {
    Scoped { ctx, fut }
}

pin_project_lite::pin_project! {
    /// A future that runs its inner future in a causation context; see [`scope`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        ctx: Option<Causation>,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let fut = this.fut;
        enter(*this.ctx, || fut.poll(cx))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx() -> Causation {
        Causation {
            event_id: EventId::new(),
            correlation_id: EventId::new(),
            trace: None,
        }
    }

    #[test]
    fn the_trace_rides_along() {
        let tc = TraceContext::new_root();
        let event = crate::Event::builder(crate::EventType::USER_LOGIN)
            .trace_context(tc.clone())
            .build()
            .unwrap();
        assert_eq!(current_trace(), None);
        enter(Some(event.causation()), || {
            assert_eq!(current_trace(), Some(tc.clone()))
        });
        assert_eq!(current_trace(), None);
    }

    #[test]
    fn enter_nests_and_restores() {
        let (a, b) = (ctx(), ctx());
        assert_eq!(current(), None);
        enter(Some(a), || {
            assert_eq!(current(), Some(a));
            enter(Some(b), || assert_eq!(current(), Some(b)));
            assert_eq!(current(), Some(a));
        });
        assert_eq!(current(), None);
    }

    #[test]
    fn enter_restores_after_panic() {
        let a = ctx();
        let r = std::panic::catch_unwind(|| enter(Some(a), || panic!("boom")));
        assert!(r.is_err());
        assert_eq!(current(), None);
    }

    #[tokio::test]
    async fn scope_follows_the_future_across_awaits() {
        let a = ctx();
        let seen = scope(Some(a), async {
            let first = current();
            tokio::task::yield_now().await;
            (first, current())
        })
        .await;
        assert_eq!(seen, (Some(a), Some(a)));
        assert_eq!(current(), None);
    }
}
