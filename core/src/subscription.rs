//! Subscriptions: ids, per-subscription options and the builder that registers them.

use crate::bus::Bus;
use crate::dead_letter::DeadLetterReason;
use crate::deferred::{Completion, DeferredState};
use crate::error::SubscribeError;
use crate::event::Event;
use crate::event_type::EventType;
use crate::filter::Filter;
use crate::handler::{HandlerError, HandlerFn, IntoHandlerResult, SyncFn};
use crate::interest::Interest;
use crate::mailbox::{Mailbox, Overflow};
use crate::policy::breaker::{Breaker, BreakerConfig};
use crate::policy::dedup::{Dedup, DedupConfig};
use crate::policy::retry::RetryPolicy;
use crate::stats::{Retired, SubCounters};
use plugbus_contract::TypedEvent;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Identifies a subscription on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// The number behind the id.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub#{}", self.0)
    }
}

/// A registered subscription, shared by the routing table, its mailbox task and in-flight
/// deliveries.
pub(crate) struct Sub {
    pub(crate) id: SubscriptionId,
    pub(crate) name: Arc<str>,
    pub(crate) interest: Interest,
    pub(crate) handler: HandlerFn,
    /// The handler again when nothing but it decides a delivery (a sync handler with no filter,
    /// dedup or breaker): `publish` then calls it straight from its loop.
    pub(crate) plain_sync: Option<Arc<SyncFn>>,
    pub(crate) filter: Option<Filter>,
    pub(crate) timeout: Duration,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) breaker: Option<Breaker>,
    pub(crate) dedup: Option<Dedup>,
    pub(crate) dead_letter: bool,
    pub(crate) overflow: Overflow,
    pub(crate) max_in_flight: usize,
    pub(crate) mailbox: Mailbox,
    pub(crate) counters: SubCounters,
    pub(crate) retired: Arc<Retired>,
    /// Open deliveries of a deferred handler's mailbox task.
    pub(crate) deferred: DeferredState,
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.retired.fold(&self.counters.totals());
    }
}

impl fmt::Debug for Sub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sub")
            .field("id", &self.id)
            .field("name", &&*self.name)
            .field("interest", &self.interest)
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

/// What happened to one delivery (one event, one subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded.
    Delivered,
    /// The subscription's filter skipped it.
    Skipped,
    /// The event id was seen before (dedup).
    Duplicate,
    /// The handler returned this error (after any retries).
    Failed(HandlerError),
    /// The handler said the event itself is malformed ([`HandlerError::bad_event`]): never
    /// retried, dead-lettered, not counted towards the circuit breaker.
    BadEvent(HandlerError),
    /// The handler did not finish within this timeout.
    TimedOut(Duration),
    /// The handler panicked with this message.
    Panicked(Arc<str>),
    /// The circuit was open; the handler was not called.
    CircuitOpen,
    /// The mailbox was full and the event was refused.
    Rejected,
    /// The mailbox was full and the event was dropped.
    Dropped,
    /// The bus shut down before the delivery ran.
    Shutdown,
    /// The `emit` that was waiting for room in this subscription's mailbox was cancelled
    /// (its future dropped) before the event got in.
    Cancelled,
}

impl Outcome {
    /// True for [`Outcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered)
    }

    pub(crate) fn dead_letter_reason(&self) -> Option<DeadLetterReason> {
        Some(match self {
            Outcome::Failed(e) => DeadLetterReason::Error(e.message().to_owned()),
            Outcome::BadEvent(e) => DeadLetterReason::BadEvent(e.message().to_owned()),
            Outcome::TimedOut(d) => DeadLetterReason::TimedOut(*d),
            Outcome::Panicked(m) => DeadLetterReason::Panicked(m.to_string()),
            Outcome::CircuitOpen => DeadLetterReason::CircuitOpen,
            Outcome::Rejected | Outcome::Dropped => DeadLetterReason::MailboxFull,
            Outcome::Shutdown => DeadLetterReason::Shutdown,
            Outcome::Delivered | Outcome::Skipped | Outcome::Duplicate | Outcome::Cancelled => {
                return None
            }
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Skipped => f.write_str("skipped by filter"),
            Outcome::Duplicate => f.write_str("duplicate"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
            Outcome::BadEvent(e) => write!(f, "bad event: {e}"),
            Outcome::TimedOut(d) => write!(f, "timed out after {d:?}"),
            Outcome::Panicked(m) => write!(f, "panicked: {m}"),
            Outcome::CircuitOpen => f.write_str("circuit open"),
            Outcome::Rejected => f.write_str("rejected: mailbox full"),
            Outcome::Dropped => f.write_str("dropped: mailbox full"),
            Outcome::Shutdown => f.write_str("not delivered before shutdown"),
            Outcome::Cancelled => f.write_str("cancelled: the emit was dropped while it waited"),
        }
    }
}

/// The outcome of one delivery, with its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The subscription.
    pub subscription: SubscriptionId,
    /// What happened.
    pub outcome: Outcome,
    /// Handler calls made.
    pub attempts: u32,
    /// True if the delivery went to the dead-letter queue.
    pub dead_lettered: bool,
}

/// Per-subscription settings taken from the bus when not set on the builder.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub(crate) timeout: Duration,
    pub(crate) mailbox_capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) breaker: Option<BreakerConfig>,
    pub(crate) dead_letter: bool,
}

/// Configures and registers a subscription; get one from [`Bus::subscribe`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use plugbus::{Bus, EventType, Overflow, RetryPolicy};
/// use std::time::Duration;
/// let bus = Bus::builder().build()?;
/// let id = bus
///     .subscribe(EventType::USER_LOGIN)
///     .name("welcome-mail")
///     .timeout(Duration::from_secs(2))
///     .retry(RetryPolicy::new(3))
///     .overflow(Overflow::DropOldest)
///     .handle_async(|event| async move { let _ = event.id(); })?;
/// assert!(bus.unsubscribe(id));
/// # Ok(()) }
/// ```
#[must_use = "call one of the handle_* methods to register the subscription"]
pub struct SubscriptionBuilder<'a> {
    bus: &'a Bus,
    interest: Result<Interest, SubscribeError>,
    name: Option<String>,
    timeout: Option<Duration>,
    filter: Option<Filter>,
    retry: Option<Option<RetryPolicy>>,
    breaker: Option<Option<BreakerConfig>>,
    dedup: Option<DedupConfig>,
    dead_letter: Option<bool>,
    overflow: Option<Overflow>,
    mailbox_capacity: Option<usize>,
    max_in_flight: usize,
}

impl fmt::Debug for SubscriptionBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionBuilder")
            .field("interest", &self.interest)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a> SubscriptionBuilder<'a> {
    pub(crate) fn new(bus: &'a Bus, interest: Result<Interest, SubscribeError>) -> Self {
        SubscriptionBuilder {
            bus,
            interest,
            name: None,
            timeout: None,
            filter: None,
            retry: None,
            breaker: None,
            dedup: None,
            dead_letter: None,
            overflow: None,
            mailbox_capacity: None,
            max_in_flight: 1,
        }
    }

    /// The handler's name: shows in stats, reports and dead letters. Two live subscriptions may
    /// not share a name on overlapping types. The default is `sub#<id>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Timeout per attempt (async and blocking handlers). The default is the bus's (30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Skip events this predicate rejects. The default is none.
    pub fn filter(mut self, filter: impl Into<Filter>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Retry retryable errors. The default is the bus's (none unless configured).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(Some(policy));
        self
    }

    /// Never retry, whatever the bus default.
    pub fn no_retry(mut self) -> Self {
        self.retry = Some(None);
        self
    }

    /// A circuit breaker. The default is the bus's (none unless configured).
    pub fn circuit_breaker(mut self, cfg: BreakerConfig) -> Self {
        self.breaker = Some(Some(cfg));
        self
    }

    /// Skip event ids seen within the window. The default is off.
    pub fn dedup(mut self, cfg: DedupConfig) -> Self {
        self.dedup = Some(cfg);
        self
    }

    /// Whether final failures go to the dead-letter queue. The default is the bus's (true).
    pub fn dead_letter(mut self, on: bool) -> Self {
        self.dead_letter = Some(on);
        self
    }

    /// What a full mailbox does. The default is the bus's ([`Overflow::Wait`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Mailbox capacity for `emit`. The default is the bus's (1024).
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = Some(capacity);
        self
    }

    /// How many mailbox deliveries may be in progress at once. The default is 1: each delivery
    /// ends before the next starts.
    ///
    /// With more, the mailbox task still *starts* deliveries in order (each is polled once before
    /// the next is taken), then lets their waits overlap. Use it for handlers whose first poll
    /// hands the event on to something that keeps order itself, such as a worker thread with a
    /// FIFO queue, so throughput is not bounded by one round trip per event. Each delivery keeps
    /// its own timeout. `publish` is not affected.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Registers a synchronous handler, run inline; it must not block.
    ///
    /// # Errors
    /// See [`SubscribeError`].
    pub fn handle<F, R>(self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.register(HandlerFn::sync(f))
    }

    /// Registers an async handler.
    ///
    /// # Errors
    /// See [`SubscribeError`].
    pub fn handle_async<F, Fut, R>(self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoHandlerResult,
    {
        self.register(HandlerFn::asynchronous(f))
    }

    /// Registers a deferred handler: it hands the event on and returns at once, and whoever
    /// does the work calls [`Completion::finish`] later, from any thread. The subscription's
    /// timeout, retries, breaker and dead letters apply as to any handler; `max_in_flight`
    /// bounds how many deliveries may be open at once. See [`Completion`] for an example.
    ///
    /// # Errors
    /// See [`SubscribeError`].
    pub fn handle_deferred<F>(self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(&Event, Completion) + Send + Sync + 'static,
    {
        self.register(HandlerFn::Deferred(Arc::new(f)))
    }

    /// Registers a handler that may block; it runs on tokio's blocking pool.
    ///
    /// # Errors
    /// See [`SubscribeError`].
    pub fn handle_blocking<F, R>(self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.register(HandlerFn::blocking(f))
    }

    /// Registers a synchronous handler that receives the payload as `T`. An event whose payload
    /// does not fit `T` is a bad event ([`Outcome::BadEvent`]): dead-lettered with the reason,
    /// never retried.
    ///
    /// # Errors
    /// See [`SubscribeError`].
    pub fn handle_typed<T, F, R>(self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        T: TypedEvent,
        F: Fn(&T, &Event) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.register(HandlerFn::sync(move |e: &Event| match e.data::<T>() {
            Ok(data) => f(&data, e).into_handler_result(),
            Err(err) => Err(HandlerError::bad_event(err)),
        }))
    }

    fn register(self, handler: HandlerFn) -> Result<SubscriptionId, SubscribeError> {
        let interest = self.interest?;
        let shared = self.bus.shared();
        let d = &shared.defaults;
        let id = shared.next_subscription_id();
        let name: Arc<str> = match self.name {
            Some(n) => n.into(),
            None => id.to_string().into(),
        };
        if interest.is_empty() {
            return Err(SubscribeError::Empty(name.to_string()));
        }
        let timeout = self.timeout.unwrap_or(d.timeout);
        if timeout.is_zero() {
            return Err(SubscribeError::InvalidOption {
                name: name.to_string(),
                reason: "timeout must be greater than zero".into(),
            });
        }
        let capacity = self.mailbox_capacity.unwrap_or(d.mailbox_capacity);
        if capacity == 0 {
            return Err(SubscribeError::InvalidOption {
                name: name.to_string(),
                reason: "mailbox capacity must be at least 1".into(),
            });
        }
        let breaker = self.breaker.unwrap_or(d.breaker).map(Breaker::new);
        let plain_sync = match &handler {
            HandlerFn::Sync(f)
                if self.filter.is_none() && self.dedup.is_none() && breaker.is_none() =>
            {
                Some(Arc::clone(f))
            }
            _ => None,
        };
        let sub = Sub {
            id,
            name,
            interest,
            handler,
            plain_sync,
            filter: self.filter,
            timeout,
            retry: self.retry.unwrap_or(d.retry),
            breaker,
            dedup: self.dedup.map(Dedup::new),
            dead_letter: self.dead_letter.unwrap_or(d.dead_letter),
            overflow: self.overflow.unwrap_or(d.overflow),
            max_in_flight: self.max_in_flight,
            mailbox: Mailbox::new(capacity),
            counters: SubCounters::default(),
            retired: Arc::clone(&shared.retired),
            deferred: DeferredState::default(),
        };
        shared.insert(Arc::new(sub))?;
        Ok(id)
    }
}

impl Bus {
    /// Starts a subscription to `interest` (an [`EventType`], a
    /// [`Category`](plugbus_contract::Category), a [`Pattern`](plugbus_contract::Pattern) or an
    /// [`Interest`]).
    pub fn subscribe(&self, interest: impl Into<Interest>) -> SubscriptionBuilder<'_> {
        SubscriptionBuilder::new(self, Ok(interest.into()))
    }

    /// Starts a subscription to every type matching `pattern` (`user.*`, `*`).
    pub fn subscribe_pattern(&self, pattern: &str) -> SubscriptionBuilder<'_> {
        SubscriptionBuilder::new(self, Interest::pattern(pattern))
    }

    /// Subscribes a synchronous handler to payload type `T`, which it receives as `&T`.
    ///
    /// # Errors
    /// See [`SubscribeError`].
    pub fn subscribe_typed<T, F, R>(&self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        T: TypedEvent,
        F: Fn(&T) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        let t = EventType::of::<T>()?;
        self.subscribe(t).handle_typed(move |data: &T, _| f(data))
    }
}
