//! Handlers: what a subscription runs for each event.
//!
//! Three kinds, chosen at subscribe time:
//! - **sync** (`Fn(&Event)`): run inline by the dispatcher. The cheapest; must not block, and
//!   cannot be timed out (nothing can interrupt a running function).
//! - **async** (`Fn(Event) -> impl Future`): polled once inline; only if it does not finish at
//!   once is a timer armed, so handlers that complete immediately cost no timer.
//! - **blocking** (`Fn(&Event)` that may block): run on tokio's blocking pool; the bus stops
//!   waiting at the timeout and records it, though the thread cannot be cancelled.
//! - **deferred** (`Fn(&Event, Completion)`): hands the event on and returns at once; whoever
//!   does the work finishes the [`Completion`](crate::Completion) later, from any thread (see
//!   [`crate::deferred`]'s docs for why this is the cheap way to feed another thread).
//!
//! A handler returns `()` or `Result<(), E>` with `E: Into<HandlerError>`. Mark an error
//! [`retryable`](HandlerError::retryable) to let the subscription's retry policy try again, or
//! [`bad_event`](HandlerError::bad_event) when the event itself is malformed (a poison message:
//! dead-lettered, never retried, and never held against the handler's circuit breaker).

use crate::event::Event;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An error returned by a handler.
///
/// One pointer wide, so outcomes and reports stay small on the hot path.
#[derive(Clone, PartialEq, Eq)]
pub struct HandlerError(Arc<ErrorInner>);

#[derive(PartialEq, Eq)]
struct ErrorInner {
    message: String,
    kind: ErrorKind,
}

/// What kind of failure a [`HandlerError`] is; it decides retries, the breaker and the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Permanent,
    Retryable,
    Panicked,
    BadEvent,
}

impl HandlerError {
    /// A failure worth retrying (a busy resource, a lost connection).
    pub fn retryable(message: impl fmt::Display) -> HandlerError {
        HandlerError::of(ErrorKind::Retryable, message)
    }

    fn of(kind: ErrorKind, message: impl fmt::Display) -> HandlerError {
        HandlerError(Arc::new(ErrorInner {
            message: message.to_string(),
            kind,
        }))
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl fmt::Display) -> HandlerError {
        HandlerError::of(ErrorKind::Permanent, message)
    }

    /// The *event* is bad, not the handler: its payload does not decode, or a field it must
    /// have is missing. A poison message: never retried, dead-lettered with this reason, and
    /// never counted towards the circuit breaker, so a stream of malformed input cannot switch
    /// a handler off for the good events behind it. The outcome is
    /// [`Outcome::BadEvent`](crate::Outcome::BadEvent).
    ///
    /// ```
    /// use plugbus::{Event, HandlerError};
    /// fn handle(e: &Event) -> Result<(), HandlerError> {
    ///     let bytes = e.data_json().map_err(HandlerError::bad_event)?;
    ///     let v: serde_json::Value = serde_json::from_slice(bytes)
    ///         .map_err(|err| HandlerError::bad_event(format!("payload: {err}")))?;
    ///     let _user = v.get("user_id").ok_or_else(|| HandlerError::bad_event("no user_id"))?;
    ///     Ok(())
    /// }
    /// ```
    pub fn bad_event(message: impl fmt::Display) -> HandlerError {
        HandlerError::of(ErrorKind::BadEvent, message)
    }

    /// True for errors made with [`HandlerError::bad_event`].
    pub fn is_bad_event(&self) -> bool {
        self.0.kind == ErrorKind::BadEvent
    }

    /// A handler that panicked somewhere the bus could not catch it itself (another thread, a
    /// plugin behind an ABI) reports it with this: the delivery's outcome is then
    /// [`Outcome::Panicked`](crate::Outcome::Panicked), never retried.
    pub fn panicked(message: impl fmt::Display) -> HandlerError {
        HandlerError::of(ErrorKind::Panicked, message)
    }

    /// True for errors made with [`HandlerError::panicked`].
    pub fn is_panic(&self) -> bool {
        self.0.kind == ErrorKind::Panicked
    }

    /// True if the retry policy may try again.
    pub fn is_retryable(&self) -> bool {
        self.0.kind == ErrorKind::Retryable
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0.kind {
            ErrorKind::Permanent => "",
            ErrorKind::Retryable => "retryable, ",
            ErrorKind::Panicked => "panicked, ",
            ErrorKind::BadEvent => "bad event, ",
        };
        write!(f, "HandlerError({kind}{:?})", self.0.message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<&str> for HandlerError {
    fn from(s: &str) -> Self {
        HandlerError::permanent(s)
    }
}

impl From<String> for HandlerError {
    fn from(s: String) -> Self {
        HandlerError::permanent(s)
    }
}

/// What a handler call produces.
pub type HandlerResult = Result<(), HandlerError>;

/// Return types a handler may have: `()` or `Result<(), E>`.
pub trait IntoHandlerResult {
    /// Converts to a [`HandlerResult`].
    fn into_handler_result(self) -> HandlerResult;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> HandlerResult {
        Ok(())
    }
}

impl<E: Into<HandlerError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> HandlerResult {
        self.map_err(Into::into)
    }
}

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;
pub(crate) type SyncFn = dyn Fn(&Event) -> HandlerResult + Send + Sync;
pub(crate) type AsyncFn = dyn Fn(Event) -> BoxFuture + Send + Sync;
pub(crate) type DeferredFn = dyn Fn(&Event, crate::Completion) + Send + Sync;

/// A handler with its kind erased.
#[derive(Clone)]
pub(crate) enum HandlerFn {
    Sync(Arc<SyncFn>),
    Async(Arc<AsyncFn>),
    Blocking(Arc<SyncFn>),
    Deferred(Arc<DeferredFn>),
}

impl HandlerFn {
    pub(crate) fn sync<F, R>(f: F) -> HandlerFn
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        HandlerFn::Sync(Arc::new(move |e| f(e).into_handler_result()))
    }

    pub(crate) fn blocking<F, R>(f: F) -> HandlerFn
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        HandlerFn::Blocking(Arc::new(move |e| f(e).into_handler_result()))
    }

    pub(crate) fn asynchronous<F, Fut, R>(f: F) -> HandlerFn
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult,
    {
        HandlerFn::Async(Arc::new(move |e| {
            let fut = f(e);
            Box::pin(async move { fut.await.into_handler_result() })
        }))
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            HandlerFn::Sync(_) => "sync",
            HandlerFn::Async(_) => "async",
            HandlerFn::Blocking(_) => "blocking",
            HandlerFn::Deferred(_) => "deferred",
        }
    }
}

impl fmt::Debug for HandlerFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerFn({})", self.kind())
    }
}

/// Turns a caught panic payload into text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("panic with a non-string payload")
    }
}
