//! The bus: a cheap `Clone` handle over shared state, and its builder.

use crate::context;
use crate::counters::Shard;
use crate::dead_letter::{DeadLetter, DeadLetterQueue, DeadLetterSink};
use crate::dispatch::{self, PendingDelivery, Started};
use crate::emit::Emit;
use crate::error::{BuildError, PublishError, PublishErrorKind, SubscribeError};
use crate::event::Event;
use crate::event_type::EventType;
use crate::filter::{Filter, FilterId};
use crate::mailbox::{Overflow, Push};
use crate::policy::breaker::BreakerConfig;
use crate::policy::retry::RetryPolicy;
use crate::report::PublishReport;
use crate::stats::{self, BusStats, Retired, SubscriptionStats};
use crate::subscription::{Defaults, DeliveryReport, Outcome, Sub, SubscriptionId};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::borrow::{Borrow, Cow};
use std::fmt;
use std::future::Future as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::Poll;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};
use tracing::Instrument as _;

/// Matching subscriptions for one event type, in subscription order.
pub(crate) type Route = Arc<[Arc<Sub>]>;

/// What [`Shared::enqueue`] did with an event.
#[derive(Default)]
pub(crate) struct Enqueued {
    /// Full mailboxes under [`Overflow::Wait`]: the deliveries still owed.
    pub(crate) waiting: Vec<Arc<Sub>>,
    /// Subscriptions that refused the event.
    pub(crate) rejected: Vec<SubscriptionId>,
    /// The event was routed (not filtered or unrouted): the caller counts it routed once the
    /// `waiting` deliveries are settled.
    pub(crate) routed: bool,
}

/// What an emit returns once every delivery it owes is settled.
#[inline]
pub(crate) fn emit_result(event: Event, rejected: Vec<SubscriptionId>) -> Result<(), PublishError> {
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(PublishError {
            kind: PublishErrorKind::Full(rejected),
            event,
        })
    }
}

/// True if every bus-wide filter accepts `event`. A filter that panics drops the event (counted
/// as filtered, and as a filter panic) instead of unwinding into the publisher.
#[inline]
fn passes_filters(shard: &Shard, table: &Table, event: &Event) -> bool {
    match catch_unwind(AssertUnwindSafe(|| {
        table.filters.iter().all(|(_, f)| f.matches(event))
    })) {
        Ok(pass) => pass,
        Err(p) => {
            shard.filter_panicked();
            let message = crate::handler::panic_message(&*p);
            tracing::warn!(event_id = %event.id(), event_type = event.event_type().name(), panic = &*message, "bus filter panicked: event dropped");
            false
        }
    }
}

/// The deliveries an `emit` still owes after its first pass: the subscriptions whose mailbox
/// was full under [`Overflow::Wait`]. Whatever ends the emit, this settles the account: if the
/// emit's future is dropped while it waits, each subscription still owed is recorded as
/// [`Outcome::Cancelled`], and the event is counted routed either way.
struct Owed<'a> {
    shared: &'a Shared,
    event: &'a Event,
    subs: Vec<Arc<Sub>>,
    routed: bool,
}

impl Drop for Owed<'_> {
    fn drop(&mut self) {
        for sub in self.subs.drain(..) {
            dispatch::not_delivered(self.shared, &sub, self.event, Outcome::Cancelled, 0);
        }
        if self.routed {
            self.shared.counters.local().routed();
        }
    }
}

/// What [`Bus::publish`] takes: an [`Event`], or `&Event` to publish an event you keep (no
/// reference count is touched unless a delivery has to outlive the first poll).
///
/// ```
/// # async fn f(bus: plugbus::Bus, event: plugbus::Event) -> Result<(), plugbus::PublishError> {
/// bus.publish(&event).await?; // keeps `event`
/// bus.publish(event).await?; // gives it up
/// # Ok(()) }
/// ```
pub trait EventArg: Borrow<Event> + Into<Event> + Unpin {}

impl<T: Borrow<Event> + Into<Event> + Unpin> EventArg for T {}

/// An admitted event: as given, or a copy that took the publisher's causation context.
enum Admitted<E> {
    As(E),
    Caused(Event),
}

impl<E: EventArg> Admitted<E> {
    #[inline]
    fn get(&self) -> &Event {
        match self {
            Admitted::As(e) => e.borrow(),
            Admitted::Caused(e) => e,
        }
    }

    fn into_event(self) -> Event {
        match self {
            Admitted::As(e) => e.into(),
            Admitted::Caused(e) => e,
        }
    }
}

/// Where an accepted event goes; see `Shared::route`.
enum Routing<'t> {
    Filtered,
    Unrouted,
    To(Cow<'t, Route>),
}

/// The immutable routing snapshot publishers read. Replaced (never mutated) when subscriptions
/// or filters change; routes are resolved per type on first use and cached in the snapshot.
pub(crate) struct Table {
    subs: Vec<Arc<Sub>>,
    routes: Box<[OnceLock<Route>]>,
    filters: Vec<(FilterId, Filter)>,
}

impl Table {
    fn new(subs: Vec<Arc<Sub>>, filters: Vec<(FilterId, Filter)>) -> Table {
        // Headroom so types interned after this snapshot still get a cached slot.
        let slots = (EventType::count() + 64).next_power_of_two();
        Table {
            subs,
            routes: (0..slots).map(|_| OnceLock::new()).collect(),
            filters,
        }
    }

    fn resolve(&self, t: EventType) -> Route {
        self.subs
            .iter()
            .filter(|s| s.interest.matches(t))
            .cloned()
            .collect()
    }

    /// The route for `t`; `None` means "not cacheable here, resolve it yourself".
    #[inline]
    fn cached_route(&self, t: EventType) -> Option<&Route> {
        self.routes
            .get(t.index())
            .map(|slot| slot.get_or_init(|| self.resolve(t)))
    }
}

/// One delivery from start to end, owning what it needs (for the pipelined task).
async fn deliver_owned(shared: Arc<Shared>, s: Arc<Sub>, event: Event) {
    let mut in_hand = InHand {
        shared: &shared,
        sub: &s,
        event: Some(event),
    };
    if let Some(event) = &in_hand.event {
        dispatch::deliver(&shared, &s, event).await;
    }
    in_hand.event = None;
}

/// A mailbox task that keeps up to `max_in_flight` deliveries going. Each delivery is started
/// (polled once) in mailbox order before the next is taken, so a handler whose first poll hands
/// the event on in order (a plugin's FIFO queue) sees the mailbox's order, while the waits for
/// its answers overlap.
async fn drain_pipelined(shared: Arc<Shared>, s: Arc<Sub>) {
    use futures_util::stream::{FuturesUnordered, StreamExt as _};
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < s.max_in_flight {
            let Some(event) = s.mailbox.pop() else { break };
            let mut delivery = Box::pin(deliver_owned(Arc::clone(&shared), Arc::clone(&s), event));
            let started = std::future::poll_fn(|cx| Poll::Ready(delivery.as_mut().poll(cx))).await;
            if started.is_pending() {
                running.push(delivery);
            }
        }
        if running.is_empty() {
            if s.mailbox.is_closed() && s.mailbox.len() == 0 {
                break;
            }
            s.mailbox.wait_for_work().await;
            continue;
        }
        if running.len() < s.max_in_flight {
            tokio::select! {
                _ = running.next() => {}
                () = s.mailbox.wait_for_work() => {}
            }
        } else {
            running.next().await;
        }
    }
}

/// The event a mailbox task is delivering. If the task is stopped mid-delivery (shutdown's
/// deadline aborts it), dropping this records the delivery as not made, so the account still
/// balances; a delivery that finished has taken the event out first.
pub(crate) struct InHand<'a> {
    shared: &'a Shared,
    sub: &'a Sub,
    event: Option<Event>,
}

impl<'a> InHand<'a> {
    pub(crate) fn new(shared: &'a Shared, sub: &'a Sub, event: Event) -> Self {
        InHand {
            shared,
            sub,
            event: Some(event),
        }
    }

    /// The delivery has recorded its outcome.
    pub(crate) fn done(&mut self) {
        self.event = None;
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            dispatch::not_delivered(self.shared, self.sub, &event, Outcome::Shutdown, 0);
        }
    }
}

pub(crate) struct Shared {
    table: ArcSwap<Table>,
    write: Mutex<()>,
    next_id: AtomicU64,
    pub(crate) accepting: AtomicBool,
    pub(crate) counters: crate::counters::BusCounters,
    pub(crate) retired: Arc<Retired>,
    pub(crate) known: Mutex<Vec<Weak<Sub>>>,
    pub(crate) dead_letters: DeadLetterQueue,
    pub(crate) defaults: Defaults,
    pub(crate) runtime: Handle,
    owned_runtime: Mutex<Option<Runtime>>,
    pub(crate) shutdown_report: Mutex<Option<crate::shutdown::ShutdownReport>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(rt) = self.owned_runtime.lock().take() {
            rt.shutdown_background();
        }
    }
}

impl Shared {
    pub(crate) fn next_subscription_id(&self) -> SubscriptionId {
        SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn insert(&self, sub: Arc<Sub>) -> Result<(), SubscribeError> {
        let _w = self.write.lock();
        if !self.accepting.load(Ordering::Acquire) {
            return Err(SubscribeError::ShuttingDown);
        }
        let table = self.table.load();
        for other in &table.subs {
            if other.name == sub.name {
                if let Some(on) = other.interest.overlap(&sub.interest) {
                    return Err(SubscribeError::DuplicateName {
                        name: sub.name.to_string(),
                        on,
                    });
                }
            }
        }
        let mut subs = table.subs.clone();
        subs.push(Arc::clone(&sub));
        self.table
            .store(Arc::new(Table::new(subs, table.filters.clone())));
        let mut known = self.known.lock();
        known.retain(|w| w.strong_count() > 0);
        known.push(Arc::downgrade(&sub));
        tracing::debug!(subscription = %sub.id, name = &*sub.name, interest = ?sub.interest, "subscribed");
        Ok(())
    }

    fn remove(&self, id: SubscriptionId) -> Option<Arc<Sub>> {
        let _w = self.write.lock();
        let table = self.table.load();
        let pos = table.subs.iter().position(|s| s.id == id)?;
        let mut subs = table.subs.clone();
        let sub = subs.remove(pos);
        self.table
            .store(Arc::new(Table::new(subs, table.filters.clone())));
        sub.mailbox.close();
        Some(sub)
    }

    fn update_filters(&self, f: impl FnOnce(&mut Vec<(FilterId, Filter)>)) {
        let _w = self.write.lock();
        let table = self.table.load();
        let mut filters = table.filters.clone();
        f(&mut filters);
        self.table
            .store(Arc::new(Table::new(table.subs.clone(), filters)));
    }

    pub(crate) fn subs(&self) -> Vec<Arc<Sub>> {
        self.table.load().subs.clone()
    }

    /// Every subscription still alive: those in the table, and those removed whose mailbox
    /// task is still delivering what was queued before the removal.
    pub(crate) fn live_subs(&self) -> Vec<Arc<Sub>> {
        self.known.lock().iter().filter_map(Weak::upgrade).collect()
    }

    pub(crate) fn find(&self, id: SubscriptionId) -> Option<Arc<Sub>> {
        self.table.load().subs.iter().find(|s| s.id == id).cloned()
    }

    pub(crate) fn live_totals(&self) -> stats::DeliveryTotals {
        let live: Vec<_> = self
            .known
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| s.counters.totals())
            .collect();
        stats::sum(self.retired.get(), &live)
    }

    /// Starts `sub`'s mailbox task if it is not running.
    fn ensure_drain(self: &Arc<Self>, sub: &Arc<Sub>) {
        if sub.mailbox.claim_start() {
            let shared = Arc::clone(self);
            let s = Arc::clone(sub);
            let handle = if matches!(s.handler, crate::handler::HandlerFn::Deferred(_)) {
                self.runtime.spawn(crate::deferred::drain(shared, s))
            } else if s.max_in_flight <= 1 {
                self.runtime.spawn(crate::drain::in_order(shared, s))
            } else {
                self.runtime.spawn(drain_pipelined(shared, s))
            };
            *sub.mailbox.task.lock() = Some(handle);
        }
    }

    /// Counts the event as accepted in this thread's shard if the bus still accepts, and
    /// applies the current causation context. See [`crate::counters`] for why shutdown, which
    /// closes first and then reads the counts, sees every event that got in.
    #[inline]
    fn admit<E: EventArg>(&self, shard: &Shard, event: E) -> Result<Admitted<E>, PublishError> {
        if !shard.admit(&self.accepting) {
            return Err(PublishError {
                kind: PublishErrorKind::ShuttingDown,
                event: event.into(),
            });
        }
        Ok(match context::current() {
            Some(ctx) if event.borrow().takes_cause(ctx) => {
                Admitted::Caused(event.borrow().clone().caused_by(ctx))
            }
            _ => Admitted::As(event),
        })
    }

    /// True once every accepted event has finished routing.
    pub(crate) fn routing_settled(&self) -> bool {
        let t = self.counters.totals();
        t.filtered + t.unrouted + t.routed >= t.accepted
    }

    /// Applies the bus-wide filters to an accepted event and finds its route (narrowed to
    /// `only`, when given), counting the event as filtered or unrouted, or counting the
    /// deliveries the caller is about to start (before any of them can finish, so `in_flight`
    /// never undercounts).
    #[inline(always)]
    fn route<'t>(
        &self,
        shard: &Shard,
        table: &'t Table,
        event: &Event,
        only: Option<&[SubscriptionId]>,
    ) -> Routing<'t> {
        if !table.filters.is_empty() && !passes_filters(shard, table, event) {
            shard.filtered();
            return Routing::Filtered;
        }
        let mut route = match table.cached_route(event.event_type()) {
            Some(r) => Cow::Borrowed(r),
            None => Cow::Owned(table.resolve(event.event_type())),
        };
        if let Some(only) = only {
            route = Cow::Owned(
                route
                    .iter()
                    .filter(|s| only.contains(&s.id))
                    .cloned()
                    .collect(),
            );
        }
        if route.is_empty() {
            shard.unrouted();
            return Routing::Unrouted;
        }
        shard.deliveries(route.len() as u64);
        Routing::To(route)
    }

    /// Enqueues into every matching mailbox (or those in `only`) without waiting. The caller
    /// deals with the subscriptions whose mailbox was full under the `Wait` policy, then
    /// counts the event routed if `routed` says so: an event is routed only once every
    /// delivery it owes has been handed over (or accounted for), so shutdown, which waits for
    /// routing to settle before it closes the mailboxes, never closes one on an event a
    /// publisher is still trying to put in.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        shard: &Shard,
        event: &Event,
        only: Option<&[SubscriptionId]>,
        out: &mut Enqueued,
    ) {
        let table = self.table.load();
        let Routing::To(route) = self.route(shard, &table, event, only) else {
            return;
        };
        out.routed = true;
        for sub in route.iter() {
            self.ensure_drain(sub);
            match sub.mailbox.push_quietly(event.clone(), sub.overflow) {
                Push::Queued => {}
                Push::Evicted(old) => {
                    dispatch::not_delivered(self, sub, &old, Outcome::Dropped, 0);
                }
                Push::Full(e) => match sub.overflow {
                    Overflow::Wait => out.waiting.push(Arc::clone(sub)),
                    Overflow::DeadLetter => self.dead_letter_overflow(sub, e),
                    _ => {
                        dispatch::not_delivered(self, sub, &e, Outcome::Rejected, 0);
                        out.rejected.push(sub.id);
                    }
                },
                Push::Closed(e) => self.closed_on_push(sub, &e),
            }
        }
        crate::mailbox::wake_parked(route.iter().map(|sub| &sub.mailbox));
    }

    /// A push found the mailbox closed: unsubscribed while we routed (the event never reached
    /// the subscription: skipped), or the bus shut down at its deadline while we waited.
    fn closed_on_push(&self, sub: &Sub, event: &Event) {
        if self.accepting.load(Ordering::Acquire) {
            sub.counters.skipped(false);
        } else {
            dispatch::not_delivered(self, sub, event, Outcome::Shutdown, 0);
        }
    }

    /// A full mailbox under [`Overflow::DeadLetter`]: the new event is kept for replay.
    fn dead_letter_overflow(&self, sub: &Sub, event: Event) {
        sub.counters
            .not_delivered(crate::stats::Reason::Rejected, true);
        self.dead_letters.push(DeadLetter {
            event,
            subscription: sub.id,
            subscriber: Arc::clone(&sub.name),
            reason: crate::dead_letter::DeadLetterReason::MailboxFull,
            attempts: 0,
            at: crate::id::utc_now(),
        });
    }
}

/// A thread-safe event bus. Cloning is cheap; clones share everything.
///
/// See the [crate docs](crate) for which publishing method to use when.
///
/// # Dropping
/// When the last `Bus` handle is dropped without [`shutdown`](Bus::shutdown), every mailbox is
/// closed: what is queued is still delivered, then the mailbox tasks end and the bus's memory is
/// freed. A handler that captures a `Bus` clone keeps the bus alive (as any reference cycle
/// would); call `shutdown` to end such a bus.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
    _lifeline: Arc<Lifeline>,
}

/// Held only by user-facing handles: its drop means nobody can publish any more.
struct Lifeline(Arc<Shared>);

impl Drop for Lifeline {
    fn drop(&mut self) {
        for sub in self.0.subs() {
            sub.mailbox.close();
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("subscriptions", &self.shared.table.load().subs.len())
            .field("accepting", &self.shared.accepting.load(Ordering::Relaxed))
            .finish()
    }
}

impl Bus {
    /// A builder with the documented defaults.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Delivers `event` to every matching subscription concurrently and waits for all of them.
    ///
    /// Sync handlers run inline on the caller's task, async handlers are polled inline first; only
    /// what is still pending is awaited. The report has every handler's outcome, in subscription
    /// order. Mailboxes are bypassed: use [`emit`](Self::emit) for queued, ordered delivery.
    ///
    /// The returned future resolves to `Err` with the event handed back if the bus is shutting
    /// down.
    pub fn publish<E: EventArg>(&self, event: E) -> Publish<'_, E> {
        Publish {
            bus: self,
            state: PublishState::Start(event),
        }
    }

    #[inline(always)]
    fn fan_out(
        &self,
        shard: &Shard,
        event: &Event,
        cx: &mut std::task::Context<'_>,
    ) -> (PublishReport, Vec<Pending>) {
        let shared = &self.shared;
        let mut pending: Vec<Pending> = Vec::new();
        let table = shared.table.load();
        let route = match shared.route(shard, &table, event, None) {
            Routing::Filtered => return (PublishReport::filtered(event.id()), pending),
            Routing::Unrouted => return (PublishReport::new(event.id(), 0), pending),
            Routing::To(route) => route,
        };
        let mut report = PublishReport::new(event.id(), route.len());
        let ctx = Some(event.causation());
        let timed = dispatch::sample();
        context::enter(ctx, || {
            for sub in route.iter() {
                let started = match &sub.plain_sync {
                    // The common case, kept to a call and a push: no policy can intervene.
                    Some(f) if !timed => match catch_unwind(AssertUnwindSafe(|| f(event))) {
                        Ok(Ok(())) => {
                            report.deliveries.push(dispatch::plain_delivered(sub));
                            continue;
                        }
                        r => dispatch::settle_sync(shared, sub, event, r, None),
                    },
                    _ => dispatch::start(shared, sub, event, timed, cx),
                };
                match started {
                    Started::Done(r) => report.deliveries.push(r),
                    Started::Continue(how) => {
                        pending.push((
                            report.deliveries.len(),
                            Arc::clone(sub),
                            Box::pin(
                                dispatch::finish(
                                    Arc::clone(shared),
                                    Arc::clone(sub),
                                    event.clone(),
                                    ctx,
                                    how,
                                )
                                .instrument(dispatch::span(sub, event)),
                            ),
                        ));
                        report.deliveries.push(DeliveryReport {
                            subscription: sub.id,
                            outcome: Outcome::Shutdown,
                            attempts: 0,
                            dead_lettered: false,
                        });
                    }
                }
            }
        });
        shard.routed();
        (report, pending)
    }

    /// Enqueues `event` into every matching subscription's mailbox and returns; each
    /// subscription's task delivers it in order. A full mailbox applies its overflow policy;
    /// under [`Overflow::Wait`] this waits for space.
    ///
    /// # Cancel safety
    /// This method is cancel safe, as tokio's `mpsc::Sender::send` is: dropping the future
    /// (a `select!` branch that lost, a `timeout`) while it waits for room leaves nothing in
    /// flight. The subscriptions that already had the event keep it and deliver it; each one
    /// still waiting for room records the delivery as [`Outcome::Cancelled`] (counted in
    /// `failed`, reason `cancelled`), so the account says exactly who got the event.
    ///
    /// # Errors
    /// The bus is shutting down, or some mailboxes rejected the event (it was enqueued for every
    /// other match); the event is handed back, with the subscriptions it is still owed to (see
    /// [`PublishError::owed`] and [`emit_to`](Self::emit_to)).
    pub fn emit(&self, event: Event) -> Emit<'_> {
        Emit::new(self, event, None)
    }

    /// [`emit`](Self::emit) to only the listed subscriptions (those of them that still exist
    /// and match the event): the way to finish an emit that some mailboxes refused without
    /// delivering it twice to the others. The retry is a publish of its own: it is accepted,
    /// routed and accounted like any emit, and the first attempt's refused deliveries stay
    /// counted as rejected.
    ///
    /// ```
    /// # async fn f(bus: plugbus::Bus, event: plugbus::Event) {
    /// if let Err(refused) = bus.emit(event).await {
    ///     let owed = refused.owed().to_vec();
    ///     // ... later, once the slow subscribers caught up:
    ///     let _ = bus.emit_to(refused.event, &owed).await;
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As `emit`.
    pub fn emit_to<'a>(&'a self, event: Event, subs: &'a [SubscriptionId]) -> Emit<'a> {
        Emit::new(self, event, Some(subs))
    }

    /// The synchronous part of an emit: admission, routing, and a push into every mailbox
    /// with room. Leaves in `queued` the full `Wait` mailboxes still owed the event and the
    /// subscriptions that refused it (written in place: the caller's future holds it, and
    /// returning it by value cost a copy per emit).
    #[inline]
    pub(crate) fn begin_emit(
        &self,
        event: Event,
        only: Option<&[SubscriptionId]>,
        queued: &mut Enqueued,
    ) -> Result<Event, PublishError> {
        let span = tracing::trace_span!(
            "plugbus.emit",
            event_type = event.event_type().name(),
            event_id = %event.id(),
        );
        let _entered = span.enter();
        let shard = self.shared.counters.local();
        let event = self.shared.admit(shard, event)?.into_event();
        self.shared.enqueue(shard, &event, only, queued);
        if queued.waiting.is_empty() && queued.routed {
            shard.routed();
        }
        Ok(event)
    }

    /// Waits for room in each mailbox still owed the event (the `Wait` policy).
    pub(crate) async fn finish_emit(
        &self,
        event: &Event,
        (waiting, routed): (Vec<Arc<Sub>>, bool),
    ) {
        let mut owed = Owed {
            shared: &self.shared,
            event,
            subs: waiting,
            routed,
        };
        // The subscription leaves `owed` only once its push has ended, so a cancel at the
        // await below finds it still owed.
        while let Some(sub) = owed.subs.last() {
            let pushed = sub.mailbox.push_wait(event.clone()).await;
            let Some(sub) = owed.subs.pop() else { break };
            match pushed {
                Push::Queued => {}
                Push::Evicted(old) => {
                    dispatch::not_delivered(&self.shared, &sub, &old, Outcome::Dropped, 0);
                }
                Push::Full(e) | Push::Closed(e) => self.shared.closed_on_push(&sub, &e),
            }
        }
    }

    /// Like [`emit`](Self::emit) but never waits: a full mailbox under [`Overflow::Wait`] counts
    /// as rejected for that subscription.
    ///
    /// # Errors
    /// The bus is shutting down, or some mailboxes were full; the event is handed back with
    /// the subscriptions still owed ([`PublishError::owed`]), which
    /// [`try_emit_to`](Self::try_emit_to) retries without duplicating the event for the others.
    pub fn try_emit(&self, event: Event) -> Result<(), PublishError> {
        self.try_emit_inner(event, None)
    }

    /// [`try_emit`](Self::try_emit) to only the listed subscriptions (those that still exist
    /// and match): finishes a partial `try_emit`.
    ///
    /// ```
    /// # fn f(bus: plugbus::Bus, event: plugbus::Event) {
    /// let mut next = bus.try_emit(event);
    /// for _ in 0..3 {
    ///     match next {
    ///         Err(refused) if !refused.owed().is_empty() => {
    ///             std::thread::yield_now();
    ///             let owed = refused.owed().to_vec();
    ///             next = bus.try_emit_to(refused.event, &owed);
    ///         }
    ///         _ => break,
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As `try_emit`.
    pub fn try_emit_to(&self, event: Event, subs: &[SubscriptionId]) -> Result<(), PublishError> {
        self.try_emit_inner(event, Some(subs))
    }

    fn try_emit_inner(
        &self,
        event: Event,
        only: Option<&[SubscriptionId]>,
    ) -> Result<(), PublishError> {
        let span = tracing::trace_span!(
            "plugbus.emit",
            event_type = event.event_type().name(),
            event_id = %event.id(),
        );
        let _entered = span.enter();
        let shard = self.shared.counters.local();
        let event = self.shared.admit(shard, event)?.into_event();
        let mut queued = Enqueued::default();
        self.shared.enqueue(shard, &event, only, &mut queued);
        let Enqueued {
            waiting,
            mut rejected,
            routed,
        } = queued;
        for sub in waiting {
            dispatch::not_delivered(&self.shared, &sub, &event, Outcome::Rejected, 0);
            rejected.push(sub.id);
        }
        if routed {
            shard.routed();
        }
        emit_result(event, rejected)
    }

    /// Removes a subscription. Events already in its mailbox are still delivered; publishes that
    /// start after this returns no longer reach it. Returns false if the id was unknown.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        match self.shared.remove(id) {
            Some(sub) => {
                tracing::debug!(subscription = %id, name = &*sub.name, "unsubscribed");
                true
            }
            None => false,
        }
    }

    /// Removes a subscription and waits, at most `timeout`, until the events already in its
    /// mailbox have been delivered. Returns false if the id was unknown or the wait timed out
    /// (the mailbox keeps draining in the background either way).
    ///
    /// Use it before tearing down what a handler depends on (a plugin about to stop), so that
    /// nothing queued for it fails for that reason.
    pub async fn unsubscribe_drained(&self, id: SubscriptionId, timeout: Duration) -> bool {
        let Some(sub) = self.shared.remove(id) else {
            return false;
        };
        let task = sub.mailbox.task.lock().take();
        match task {
            None => true,
            Some(mut task) => match tokio::time::timeout(timeout, &mut task).await {
                Ok(_) => true,
                Err(_) => {
                    // Still draining: hand the task back so shutdown can still account for it.
                    *sub.mailbox.task.lock() = Some(task);
                    false
                }
            },
        }
    }

    /// Adds a bus-wide filter: events it rejects are dropped before routing and counted as
    /// filtered.
    pub fn add_filter(&self, filter: impl Into<Filter>) -> FilterId {
        let id = FilterId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let filter = filter.into();
        self.shared.update_filters(|fs| fs.push((id, filter)));
        id
    }

    /// Removes a bus-wide filter; false if unknown.
    pub fn remove_filter(&self, id: FilterId) -> bool {
        let mut found = false;
        self.shared.update_filters(|fs| {
            let before = fs.len();
            fs.retain(|(f, _)| *f != id);
            found = fs.len() != before;
        });
        found
    }

    /// Counters of the bus and of every live subscription.
    pub fn stats(&self) -> BusStats {
        let s = &self.shared;
        let subs = s.subs();
        let subscriptions = subs.iter().map(|sub| sub_stats(sub)).collect();
        // Outcomes first, then deliveries: a delivery that starts and ends in between is then
        // over-counted as in flight, never under-counted.
        let totals = s.live_totals();
        let c = s.counters.totals();
        BusStats {
            accepted: c.accepted,
            filtered: c.filtered,
            filter_panics: c.filter_panics,
            unrouted: c.unrouted,
            routed: c.routed,
            deliveries: c.deliveries,
            in_flight: c.deliveries.saturating_sub(totals.finished()),
            totals,
            dead_letter_len: s.dead_letters.len(),
            dead_letter_evicted: s.dead_letters.evicted(),
            subscriptions,
        }
    }

    /// Deliveries routed but not finished yet: queued, running, waiting for a retry, or owed by
    /// an `emit` still waiting for room. Zero exactly when every delivery so far has ended.
    pub fn in_flight(&self) -> u64 {
        // Outcomes first (see `stats`).
        let finished = self.shared.live_totals().finished();
        self.shared
            .counters
            .totals()
            .deliveries
            .saturating_sub(finished)
    }

    /// Waits until nothing is in flight, or `timeout` passes; returns true if idle.
    ///
    /// Idle is a moment, not a state: handlers that publish can make the bus busy again.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The stats of one subscription, if it is live.
    pub fn subscription_stats(&self, id: SubscriptionId) -> Option<SubscriptionStats> {
        self.shared.find(id).map(|sub| sub_stats(&sub))
    }

    /// The dead letters now queued, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.dead_letters.list()
    }

    /// Removes and returns every dead letter.
    pub fn drain_dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.dead_letters.drain()
    }

    /// Drains the dead-letter queue and delivers each letter again to its own subscription
    /// (not to everyone). Letters whose subscription is gone are returned untouched; the rest
    /// end like any delivery (and may be dead-lettered again).
    pub async fn replay_dead_letters(&self) -> ReplayReport {
        let mut out = ReplayReport::default();
        for letter in self.drain_dead_letters() {
            match self.shared.find(letter.subscription) {
                Some(sub) => {
                    self.shared.counters.deliveries(1);
                    let r = dispatch::deliver(&self.shared, &sub, &letter.event).await;
                    out.replayed.push((letter.event.id(), r));
                }
                None => out.orphaned.push(letter),
            }
        }
        out
    }

    /// True until [`shutdown`](Self::shutdown) starts.
    pub fn is_accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::Acquire)
    }

    /// A handle to the runtime the bus runs its tasks on.
    pub fn runtime(&self) -> &Handle {
        &self.shared.runtime
    }

    /// [`publish`](Self::publish) from synchronous code, on the bus's runtime. Must not be called
    /// from inside an async context.
    ///
    /// # Errors
    /// As `publish`.
    pub fn publish_blocking<E: EventArg>(&self, event: E) -> Result<PublishReport, PublishError> {
        self.shared.runtime.block_on(self.publish(event))
    }
}

/// One subscription's figures, read now.
fn sub_stats(sub: &Sub) -> SubscriptionStats {
    let (samples, p50, p99) = sub.counters.latency.summary();
    SubscriptionStats {
        id: sub.id,
        name: sub.name.to_string(),
        totals: sub.counters.totals(),
        mailbox_depth: sub.mailbox.len(),
        mailbox_capacity: sub.mailbox.capacity(),
        latency_samples: samples,
        p50,
        p99,
        latency: sub.counters.latency.cumulative(),
        breaker: sub.breaker.as_ref().map(|b| b.state()),
    }
}

/// The future returned by [`Bus::publish`].
///
/// The first poll routes the event and runs every delivery that can finish at once; only if some
/// are still pending does it allocate, to wait for them.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Publish<'a, E: EventArg = Event> {
    bus: &'a Bus,
    state: PublishState<E>,
}

enum PublishState<E> {
    Start(E),
    Joining(Box<Joining>),
    Done,
}

impl<E: EventArg> fmt::Debug for PublishState<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishState::Start(e) => f.debug_tuple("Start").field(&e.borrow().id()).finish(),
            PublishState::Joining(j) => write!(f, "Joining({} pending)", j.pending.len()),
            PublishState::Done => f.write_str("Done"),
        }
    }
}

/// A delivery of a publish still running: its index in the report, its subscription, and
/// the rest of it.
type Pending = (usize, Arc<Sub>, PendingDelivery);

/// A publish whose deliveries did not all finish on the first poll.
struct Joining {
    shared: Arc<Shared>,
    event: Event,
    report: PublishReport,
    pending: Vec<Pending>,
}

impl Drop for Joining {
    /// The publish was cancelled (its future dropped) with deliveries still running: each is
    /// stopped where it is and recorded as [`Outcome::Cancelled`], so nothing stays in flight.
    fn drop(&mut self) {
        for (_, sub, delivery) in self.pending.drain(..) {
            drop(delivery);
            dispatch::not_delivered(&self.shared, &sub, &self.event, Outcome::Cancelled, 1);
        }
    }
}

impl<E: EventArg> std::future::Future for Publish<'_, E> {
    type Output = Result<PublishReport, PublishError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        let this = &mut *self;
        match std::mem::replace(&mut this.state, PublishState::Done) {
            PublishState::Start(event) => {
                let span = tracing::trace_span!(
                    "plugbus.publish",
                    event_type = event.borrow().event_type().name(),
                    event_id = %event.borrow().id(),
                );
                let _entered = span.enter();
                let shard = this.bus.shared.counters.local();
                let event = match this.bus.shared.admit(shard, event) {
                    Ok(e) => e,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                let (report, pending) = this.bus.fan_out(shard, event.get(), cx);
                if pending.is_empty() {
                    return Poll::Ready(Ok(report));
                }
                this.state = PublishState::Joining(Box::new(Joining {
                    shared: Arc::clone(&this.bus.shared),
                    event: event.get().clone(),
                    report,
                    pending,
                }));
                self.poll(cx)
            }
            PublishState::Joining(mut j) => {
                let Joining {
                    report, pending, ..
                } = &mut *j;
                pending.retain_mut(|(i, _, fut)| match fut.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        report.deliveries[*i] = r;
                        false
                    }
                    Poll::Pending => true,
                });
                if pending.is_empty() {
                    let id = j.report.event_id;
                    Poll::Ready(Ok(std::mem::replace(
                        &mut j.report,
                        PublishReport::filtered(id),
                    )))
                } else {
                    this.state = PublishState::Joining(j);
                    Poll::Pending
                }
            }
            // Polled after completion: never ready again.
            PublishState::Done => Poll::Pending,
        }
    }
}

/// What [`Bus::replay_dead_letters`] did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Letters delivered again, with their new outcome.
    pub replayed: Vec<(crate::EventId, DeliveryReport)>,
    /// Letters whose subscription no longer exists.
    pub orphaned: Vec<DeadLetter>,
}

/// Builds a [`Bus`]. Every setting has a stated default.
///
/// ```
/// # fn main() -> Result<(), plugbus::BuildError> {
/// use plugbus::{Bus, Overflow};
/// use std::time::Duration;
/// let bus = Bus::builder()
///     .default_timeout(Duration::from_secs(5))
///     .mailbox_capacity(256)
///     .overflow(Overflow::DropOldest)
///     .own_runtime(1)
///     .build()?;
/// assert!(bus.is_accepting());
/// # Ok(()) }
/// ```
#[must_use = "call build() to get the bus"]
pub struct BusBuilder {
    timeout: Duration,
    mailbox_capacity: usize,
    overflow: Overflow,
    retry: Option<RetryPolicy>,
    breaker: Option<BreakerConfig>,
    dead_letter: bool,
    dead_letter_capacity: usize,
    sink: Option<Arc<dyn DeadLetterSink>>,
    runtime: Option<Handle>,
    own_runtime: Option<usize>,
}

impl fmt::Debug for BusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusBuilder")
            .field("timeout", &self.timeout)
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("overflow", &self.overflow)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("dead_letter_capacity", &self.dead_letter_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for BusBuilder {
    fn default() -> Self {
        BusBuilder {
            timeout: Duration::from_secs(30),
            mailbox_capacity: 1024,
            overflow: Overflow::Wait,
            retry: None,
            breaker: None,
            dead_letter: true,
            dead_letter_capacity: 10_000,
            sink: None,
            runtime: None,
            own_runtime: None,
        }
    }
}

impl BusBuilder {
    /// Handler timeout for subscriptions that set none. The default is 30 s.
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Mailbox capacity for subscriptions that set none. The default is 1024.
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox_capacity = n;
        self
    }

    /// Overflow policy for subscriptions that set none. The default is [`Overflow::Wait`].
    pub fn overflow(mut self, o: Overflow) -> Self {
        self.overflow = o;
        self
    }

    /// Retry policy for subscriptions that set none. The default is no retries.
    pub fn retry(mut self, p: RetryPolicy) -> Self {
        self.retry = Some(p);
        self
    }

    /// Circuit breaker for subscriptions that set none. The default is none.
    pub fn circuit_breaker(mut self, cfg: BreakerConfig) -> Self {
        self.breaker = Some(cfg);
        self
    }

    /// Whether final failures are dead-lettered, for subscriptions that say nothing. The default
    /// is true.
    pub fn dead_letter(mut self, on: bool) -> Self {
        self.dead_letter = on;
        self
    }

    /// Capacity of the dead-letter queue; the oldest letters are evicted past it. The default is
    /// 10,000.
    pub fn dead_letter_capacity(mut self, n: usize) -> Self {
        self.dead_letter_capacity = n;
        self
    }

    /// A sink that sees every dead letter. The default is none.
    pub fn dead_letter_sink(mut self, sink: impl DeadLetterSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The runtime to run mailbox tasks on. The default is the runtime current at `build()`.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Let the bus own a multi-threaded runtime with `worker_threads` threads, for hosts without
    /// one (use the `*_blocking` methods there). The default is off.
    pub fn own_runtime(mut self, worker_threads: usize) -> Self {
        self.own_runtime = Some(worker_threads.max(1));
        self
    }

    /// Builds the bus.
    ///
    /// # Errors
    /// A setting is out of range, or there is no runtime to run on.
    pub fn build(self) -> Result<Bus, BuildError> {
        if self.timeout.is_zero() {
            return Err(BuildError::Invalid {
                setting: "default_timeout",
                reason: "must be greater than zero".into(),
            });
        }
        if self.mailbox_capacity == 0 {
            return Err(BuildError::Invalid {
                setting: "mailbox_capacity",
                reason: "must be at least 1".into(),
            });
        }
        let (runtime, owned) = match (self.runtime, self.own_runtime) {
            (Some(h), _) => (h, None),
            (None, Some(threads)) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("plugbus")
                    .enable_all()
                    .build()
                    .map_err(|e| BuildError::Runtime(e.to_string()))?;
                (rt.handle().clone(), Some(rt))
            }
            (None, None) => (
                Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
                None,
            ),
        };
        let shared = Shared {
            table: ArcSwap::from_pointee(Table::new(Vec::new(), Vec::new())),
            write: Mutex::new(()),
            next_id: AtomicU64::new(1),
            accepting: AtomicBool::new(true),
            counters: crate::counters::BusCounters::default(),
            retired: Arc::new(Retired::default()),
            known: Mutex::new(Vec::new()),
            dead_letters: DeadLetterQueue::new(self.dead_letter_capacity, self.sink),
            defaults: Defaults {
                timeout: self.timeout,
                mailbox_capacity: self.mailbox_capacity,
                overflow: self.overflow,
                retry: self.retry,
                breaker: self.breaker,
                dead_letter: self.dead_letter,
            },
            runtime,
            owned_runtime: Mutex::new(owned),
            shutdown_report: Mutex::new(None),
        };
        let shared = Arc::new(shared);
        Ok(Bus {
            _lifeline: Arc::new(Lifeline(Arc::clone(&shared))),
            shared,
        })
    }
}
