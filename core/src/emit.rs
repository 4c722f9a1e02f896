//! The future [`Bus::emit`] returns.
//!
//! An emit is synchronous unless a mailbox under [`Overflow::Wait`](crate::Overflow::Wait) is
//! full: admission, routing and a push into every matching mailbox all happen in its first
//! poll. So the future is a small hand-written one that does that work in place; only an emit
//! that must wait for room boxes the rest (the wait and its cancel-safe bookkeeping). An
//! `async fn` here built and moved a state machine sized for the waiting case on every emit,
//! which cost more than the pushes it wrapped.

use crate::bus::{emit_result, Enqueued};
use crate::error::PublishError;
use crate::event::Event;
use crate::subscription::SubscriptionId;
use crate::Bus;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Waiting<'a> = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send + 'a>>;

/// The future of [`Bus::emit`] and [`Bus::emit_to`]. Like every future it does nothing until
/// polled (awaited); see [`Bus::emit`] for what it does then and for its cancel safety.
#[must_use = "an emit does nothing unless awaited"]
pub struct Emit<'a> {
    bus: &'a Bus,
    only: Option<&'a [SubscriptionId]>,
    state: State<'a>,
}

enum State<'a> {
    Start(Event),
    Waiting(Waiting<'a>),
    Done,
}

impl<'a> Emit<'a> {
    pub(crate) fn new(bus: &'a Bus, event: Event, only: Option<&'a [SubscriptionId]>) -> Self {
        Emit {
            bus,
            only,
            state: State::Start(event),
        }
    }
}

impl Future for Emit<'_> {
    type Output = Result<(), PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match std::mem::replace(&mut this.state, State::Done) {
            State::Start(event) => {
                let mut queued = Enqueued::default();
                let event = match this.bus.begin_emit(event, this.only, &mut queued) {
                    Ok(event) => event,
                    Err(refused) => return Poll::Ready(Err(refused)),
                };
                if queued.waiting.is_empty() {
                    return Poll::Ready(emit_result(event, queued.rejected));
                }
                let bus = this.bus;
                let Enqueued {
                    waiting,
                    rejected,
                    routed,
                } = queued;
                this.state = State::Waiting(Box::pin(async move {
                    bus.finish_emit(&event, (waiting, routed)).await;
                    emit_result(event, rejected)
                }));
                Pin::new(this).poll(cx)
            }
            State::Waiting(mut rest) => match rest.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending => {
                    this.state = State::Waiting(rest);
                    Poll::Pending
                }
            },
            // Polled after completion: never ready again.
            State::Done => Poll::Pending,
        }
    }
}

impl fmt::Debug for Emit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start(_) => "start",
            State::Waiting(_) => "waiting for room",
            State::Done => "done",
        };
        f.debug_struct("Emit").field("state", &state).finish()
    }
}
