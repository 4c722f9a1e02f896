//! A model of the bus's promises, checked over random programs.
//!
//! Each case is a random sequence of subscribe, unsubscribe, publish, emit, try_emit, cancelled
//! emit, bus filter add and remove, time passing and shutdown, over subscriptions whose
//! handlers and filters behave in random ways (succeed, fail, fail retryably, call the event
//! bad, panic, run slowly, or outlive their timeout). After shutdown it checks:
//!
//! - the account balances: accepted = filtered + unrouted + routed, and every delivery is
//!   delivered, skipped, failed or dead-lettered, with nothing in flight;
//! - the bus's counts equal what the handlers counted themselves (successes, and the publishes
//!   the model made);
//! - every subscription handled each event at most once, and the events that reached it
//!   through `emit` in the order they were emitted;
//! - no handler ran after shutdown returned.
//!
//! Time is tokio's paused clock, so slow handlers and timeouts cost no wall time and each case
//! is deterministic given its program; handlers are sync and async (blocking and deferred
//! handlers run on real threads and have suites of their own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use plugbus::{
    BreakerConfig, Bus, Event, EventType, FilterId, HandlerError, Overflow, PublishErrorKind,
    RetryPolicy, SubscriptionId,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TYPES: [EventType; 4] = [
    EventType::USER_LOGIN,
    EventType::USER_LOGOUT,
    EventType::DATA_CREATED,
    EventType::DATA_UPDATED,
];
const PATTERNS: [&str; 5] = ["user.*", "user.login", "data.*", "*", "data.updated"];

/// What a handler does with an event.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    Fail,
    Retryable,
    BadEvent,
    Panic,
    /// Sleeps 1 ms (its timeout is 5 ms), then succeeds.
    Slow,
    /// Sleeps 50 ms: always timed out.
    TimesOut,
    /// Each event does one of the above, by its sequence number.
    Mixed,
}

#[derive(Debug, Clone, Copy)]
enum SubFilter {
    None,
    /// Lets even sequence numbers through.
    Even,
    /// Panics on multiples of 3.
    PanicsOnThirds,
}

#[derive(Debug, Clone, Copy)]
enum BusFilter {
    /// Drops multiples of 4.
    DropFourths,
    /// Panics on multiples of 5.
    PanicsOnFifths,
}

#[derive(Debug, Clone)]
struct SubSpec {
    pattern: usize,
    asynchronous: bool,
    behaviour: Behaviour,
    filter: SubFilter,
    overflow: Overflow,
    capacity: usize,
    retry: bool,
    breaker: bool,
    dead_letter: bool,
    max_in_flight: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(SubSpec),
    Unsubscribe(usize),
    Publish(usize),
    Emit(usize),
    TryEmit(usize),
    /// An emit dropped after this many milliseconds, waiting or not.
    CancelledEmit(usize, u64),
    AddFilter(BusFilter),
    RemoveFilter(usize),
    Sleep(u64),
    Shutdown,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        3 => Just(Behaviour::Ok),
        1 => Just(Behaviour::Fail),
        1 => Just(Behaviour::Retryable),
        1 => Just(Behaviour::BadEvent),
        1 => Just(Behaviour::Panic),
        2 => Just(Behaviour::Slow),
        1 => Just(Behaviour::TimesOut),
        3 => Just(Behaviour::Mixed),
    ]
}

fn sub_spec() -> impl Strategy<Value = SubSpec> {
    (
        (0..PATTERNS.len(), any::<bool>(), behaviour()),
        prop_oneof![
            3 => Just(SubFilter::None),
            1 => Just(SubFilter::Even),
            1 => Just(SubFilter::PanicsOnThirds),
        ],
        prop_oneof![
            Just(Overflow::Wait),
            Just(Overflow::Reject),
            Just(Overflow::DropOldest),
            Just(Overflow::DeadLetter)
        ],
        (
            1usize..4,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1usize..3,
        ),
    )
        .prop_map(
            |(
                (pattern, asynchronous, behaviour),
                filter,
                overflow,
                (capacity, retry, breaker, dead_letter, max_in_flight),
            )| SubSpec {
                pattern,
                asynchronous,
                behaviour,
                filter,
                overflow,
                capacity,
                retry,
                breaker,
                dead_letter,
                max_in_flight,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TYPES.len();
    prop_oneof![
        3 => sub_spec().prop_map(Op::Subscribe),
        1 => (0usize..8).prop_map(Op::Unsubscribe),
        3 => t.clone().prop_map(Op::Publish),
        4 => t.clone().prop_map(Op::Emit),
        2 => t.clone().prop_map(Op::TryEmit),
        2 => (t, 0u64..3).prop_map(|(t, ms)| Op::CancelledEmit(t, ms)),
        1 => prop_oneof![Just(BusFilter::DropFourths), Just(BusFilter::PanicsOnFifths)]
            .prop_map(Op::AddFilter),
        1 => (0usize..4).prop_map(Op::RemoveFilter),
        1 => (0u64..20).prop_map(Op::Sleep),
        1 => Just(Op::Shutdown),
    ]
}

/// What the handlers saw, counted by themselves.
#[derive(Default)]
struct Seen {
    /// Per subscription (by the model's index): (sequence number, came through emit) of each
    /// successful handling, in the order it happened.
    handled: Mutex<HashMap<usize, Vec<(u64, bool)>>>,
    successes: AtomicU64,
    /// Subscriptions that promise order: one delivery at a time (with more in flight, waits
    /// overlap and a retry can finish after a later event, as documented).
    ordered: Mutex<std::collections::HashSet<usize>>,
    /// Set once shutdown has returned: a handler that starts or finishes after it is a bug.
    closed: AtomicBool,
    ran_after_shutdown: AtomicU64,
}

fn seq_of(e: &Event) -> (u64, bool) {
    let seq = e
        .metadata()
        .get("seq")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (seq, e.source() == "emit")
}

fn effective(b: Behaviour, seq: u64) -> Behaviour {
    match b {
        Behaviour::Mixed => match seq % 7 {
            0 => Behaviour::Fail,
            1 => Behaviour::Retryable,
            2 => Behaviour::BadEvent,
            3 => Behaviour::Panic,
            4 => Behaviour::Slow,
            5 => Behaviour::TimesOut,
            _ => Behaviour::Ok,
        },
        other => other,
    }
}

/// One handler call; `attempt` lets a retryable failure succeed on the second try.
fn outcome(
    b: Behaviour,
    attempts: &Mutex<HashMap<u64, u32>>,
    seq: u64,
) -> Result<(), HandlerError> {
    match effective(b, seq) {
        Behaviour::Ok | Behaviour::Slow | Behaviour::TimesOut | Behaviour::Mixed => Ok(()),
        Behaviour::Fail => Err(HandlerError::permanent("no")),
        Behaviour::BadEvent => Err(HandlerError::bad_event("malformed")),
        Behaviour::Retryable => {
            let mut a = attempts.lock();
            let n = a.entry(seq).or_insert(0);
            *n += 1;
            if *n >= 2 {
                Ok(())
            } else {
                Err(HandlerError::retryable("busy"))
            }
        }
        Behaviour::Panic => panic!("handler panicked on purpose"),
    }
}

fn subscribe(bus: &Bus, index: usize, spec: &SubSpec, seen: &Arc<Seen>) -> Option<SubscriptionId> {
    let mut b = bus
        .subscribe_pattern(PATTERNS[spec.pattern])
        .name(format!("s{index}"))
        .timeout(Duration::from_millis(5))
        .overflow(spec.overflow)
        .mailbox_capacity(spec.capacity)
        .dead_letter(spec.dead_letter)
        .max_in_flight(spec.max_in_flight);
    if spec.retry {
        b = b.retry(
            RetryPolicy::new(3)
                .initial_backoff(Duration::from_micros(200))
                .jitter(false),
        );
    }
    if spec.breaker {
        b = b.circuit_breaker(BreakerConfig::new(3, Duration::from_millis(10)));
    }
    match spec.filter {
        SubFilter::None => {}
        SubFilter::Even => b = b.filter(|e: &Event| seq_of(e).0 % 2 == 0),
        SubFilter::PanicsOnThirds => {
            b = b.filter(|e: &Event| {
                if seq_of(e).0 % 3 == 0 {
                    panic!("filter panicked on purpose")
                }
                true
            })
        }
    }
    if spec.max_in_flight == 1 {
        seen.ordered.lock().insert(index);
    }
    let behaviour = spec.behaviour;
    let attempts: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let s = Arc::clone(seen);
    let record = move |e: &Event| {
        let (seq, via_emit) = seq_of(e);
        if s.closed.load(Ordering::SeqCst) {
            s.ran_after_shutdown.fetch_add(1, Ordering::SeqCst);
        }
        s.handled
            .lock()
            .entry(index)
            .or_default()
            .push((seq, via_emit));
        s.successes.fetch_add(1, Ordering::SeqCst);
    };
    let id = if spec.asynchronous {
        let s = Arc::clone(seen);
        let record = Arc::new(record);
        b.handle_async(move |e: Event| {
            let (attempts, record, s) =
                (Arc::clone(&attempts), Arc::clone(&record), Arc::clone(&s));
            async move {
                if s.closed.load(Ordering::SeqCst) {
                    s.ran_after_shutdown.fetch_add(1, Ordering::SeqCst);
                }
                let (seq, _) = seq_of(&e);
                match effective(behaviour, seq) {
                    Behaviour::Slow => tokio::time::sleep(Duration::from_millis(1)).await,
                    Behaviour::TimesOut => tokio::time::sleep(Duration::from_millis(50)).await,
                    _ => tokio::task::yield_now().await,
                }
                let r = outcome(behaviour, &attempts, seq);
                if r.is_ok() {
                    record(&e);
                }
                r
            }
        })
    } else {
        b.handle(move |e: &Event| {
            let (seq, _) = seq_of(e);
            // A sync handler cannot be slow without blocking the runtime: slow and timed-out
            // behaviours simply succeed here.
            let r = outcome(behaviour, &attempts, seq);
            if r.is_ok() {
                record(e);
            }
            r
        })
    };
    id.ok()
}

fn event(t: usize, seq: u64, via_emit: bool) -> Event {
    Event::builder(TYPES[t])
        .source(if via_emit { "emit" } else { "publish" })
        .metadata("seq", &seq.to_string())
        .build()
        .unwrap()
}

/// Panics the model causes on purpose are expected: keep them out of the output.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_purpose = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.ends_with("on purpose"));
            if !on_purpose {
                default(info);
            }
        }));
    });
}

fn run(ops: Vec<Op>) {
    quiet_panics();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let bus = Bus::builder().build().unwrap();
        let seen = Arc::new(Seen::default());
        let mut subs: Vec<(usize, SubscriptionId)> = Vec::new();
        let mut filters: Vec<FilterId> = Vec::new();
        let mut made = 0usize;
        let mut seq = 0u64;
        let mut admitted = 0u64;
        let mut refused = 0u64;
        let mut first_report = None;
        for op in ops {
            let shut = first_report.is_some();
            match op {
                Op::Subscribe(spec) => {
                    made += 1;
                    if let Some(id) = subscribe(&bus, made, &spec, &seen) {
                        assert!(!shut, "subscribed after shutdown");
                        subs.push((made, id));
                    }
                }
                Op::Unsubscribe(i) => {
                    if !subs.is_empty() {
                        let (_, id) = subs.remove(i % subs.len());
                        bus.unsubscribe(id);
                    }
                }
                Op::Publish(t) | Op::Emit(t) | Op::TryEmit(t) | Op::CancelledEmit(t, _) => {
                    seq += 1;
                    let via_emit = !matches!(op, Op::Publish(_));
                    let e = event(t, seq, via_emit);
                    let result = match op {
                        Op::Publish(_) => bus.publish(e).await.map(|_| ()),
                        Op::Emit(_) => bus.emit(e).await,
                        Op::TryEmit(_) => bus.try_emit(e),
                        Op::CancelledEmit(_, ms) => {
                            match tokio::time::timeout(Duration::from_millis(ms), bus.emit(e)).await
                            {
                                Ok(r) => r,
                                // Cancelled: the event was admitted (the door was open).
                                Err(_) => Ok(()),
                            }
                        }
                        _ => unreachable!(),
                    };
                    match result {
                        Ok(()) => admitted += 1,
                        Err(err) => match err.kind {
                            PublishErrorKind::ShuttingDown => {
                                assert!(shut, "refused while open");
                                refused += 1;
                            }
                            // Refused by some mailboxes, enqueued for the rest: admitted.
                            _ => admitted += 1,
                        },
                    }
                }
                Op::AddFilter(f) => {
                    let id = match f {
                        BusFilter::DropFourths => bus.add_filter(|e: &Event| seq_of(e).0 % 4 != 0),
                        BusFilter::PanicsOnFifths => bus.add_filter(|e: &Event| {
                            if seq_of(e).0 % 5 == 0 {
                                panic!("bus filter panicked on purpose")
                            }
                            true
                        }),
                    };
                    filters.push(id);
                }
                Op::RemoveFilter(i) => {
                    if !filters.is_empty() {
                        let id = filters.remove(i % filters.len());
                        assert!(bus.remove_filter(id));
                    }
                }
                Op::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Op::Shutdown => {
                    let r = bus.shutdown(Duration::from_secs(2)).await;
                    seen.closed.store(true, Ordering::SeqCst);
                    if let Some(first) = &first_report {
                        assert_eq!(&r, first, "a second shutdown returns the first report");
                    }
                    first_report.get_or_insert(r);
                }
            }
        }
        let report = match first_report {
            Some(r) => r,
            None => {
                let r = bus.shutdown(Duration::from_secs(2)).await;
                seen.closed.store(true, Ordering::SeqCst);
                r
            }
        };
        // Anything left running would show up now.
        tokio::time::sleep(Duration::from_secs(1)).await;

        assert!(report.is_balanced(), "unbalanced: {report:#?}");
        assert_eq!(report.in_flight, 0);
        assert_eq!(
            report.accepted,
            admitted + 1,
            "+1 for system.shutdown: {report:#?}"
        );
        assert_eq!(
            bus.stats().accepted,
            report.accepted,
            "{refused} publishes after shutdown were refused, not accepted"
        );
        assert!(report.filter_panics <= report.filtered);
        assert_eq!(
            report.totals.delivered,
            seen.successes.load(Ordering::SeqCst),
            "the bus's delivered count is what the handlers counted: {report:#?}"
        );
        assert_eq!(
            seen.ran_after_shutdown.load(Ordering::SeqCst),
            0,
            "a handler ran after shutdown returned"
        );
        assert_eq!(
            bus.stats().totals,
            report.totals,
            "nothing changed after shutdown"
        );
        for (sub, handled) in seen.handled.lock().iter() {
            let mut once = std::collections::HashSet::new();
            for (seq, _) in handled {
                assert!(
                    once.insert(seq),
                    "s{sub} handled event {seq} twice: {handled:?}"
                );
            }
            if !seen.ordered.lock().contains(sub) {
                continue;
            }
            let emitted: Vec<u64> = handled.iter().filter(|h| h.1).map(|h| h.0).collect();
            assert!(
                emitted.windows(2).all(|w| w[0] < w[1]),
                "s{sub} saw emitted events out of order: {emitted:?}"
            );
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_accepted_event_is_accounted_for(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}

/// The minimal program the model must catch on the code before the fix: a subscription
/// removed with an event still in its mailbox, then shutdown.
#[test]
fn the_model_covers_shutdown_right_after_unsubscribe() {
    let spec = SubSpec {
        pattern: 0,
        asynchronous: true,
        behaviour: Behaviour::Slow,
        filter: SubFilter::None,
        overflow: Overflow::Wait,
        capacity: 4,
        retry: false,
        breaker: false,
        dead_letter: true,
        max_in_flight: 1,
    };
    run(vec![
        Op::Subscribe(spec),
        Op::Emit(0),
        Op::Unsubscribe(0),
        Op::Shutdown,
    ]);
}
