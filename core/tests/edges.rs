//! The account at the edges: filters that panic, emits that are cancelled, shutdown right after
//! an unsubscribe, and publishers racing shutdown. Each test is a defect an independent
//! conformance suite found; each failed on the code before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use plugbus::{
    Bus, DeadLetterReason, Event, EventId, EventType, HandlerError, Outcome, Overflow,
    PublishErrorKind,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

fn ev(t: EventType) -> Event {
    Event::builder(t).build().unwrap()
}

fn counter() -> (Arc<AtomicUsize>, impl Fn(&Event) + Send + Sync + 'static) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = Arc::clone(&n);
    (n, move |_: &Event| {
        m.fetch_add(1, Ordering::SeqCst);
    })
}

/// Every test here ends with a shutdown that must return within its deadline (plus slack) and
/// balance.
async fn shut(bus: &Bus, deadline: Duration) -> plugbus::ShutdownReport {
    let r = tokio::time::timeout(deadline + Duration::from_secs(1), bus.shutdown(deadline))
        .await
        .expect("shutdown did not honour its deadline");
    assert!(r.is_balanced(), "unbalanced: {r:#?}");
    r
}

// ---- 1. filters that panic -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_subscription_filter_is_caught_in_publish_and_the_others_are_delivered() {
    let bus = Bus::builder().build().unwrap();
    let (seen, count) = counter();
    bus.subscribe(EventType::USER_LOGIN)
        .name("picky")
        .filter(|_: &Event| -> bool { panic!("filter exploded") })
        .handle(|_: &Event| {})
        .unwrap();
    bus.subscribe(EventType::USER_LOGIN)
        .name("plain")
        .handle(count)
        .unwrap();
    // From a spawned task: a panic escaping would end it in a JoinError.
    let b = bus.clone();
    let report = tokio::spawn(async move { b.publish(ev(EventType::USER_LOGIN)).await })
        .await
        .expect("the filter's panic escaped into the publisher")
        .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(report.deliveries.len(), 2);
    match &report.deliveries[0].outcome {
        Outcome::Panicked(m) => assert!(m.contains("filter panicked"), "{m}"),
        other => panic!("expected a panicked filter, got {other:?}"),
    }
    assert!(report.deliveries[1].outcome.is_delivered());
    let r = shut(&bus, Duration::from_secs(2)).await;
    assert_eq!(r.totals.panicked, 1);
    assert_eq!(r.totals.delivered, 1);
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 1);
    assert!(
        matches!(&letters[0].reason, DeadLetterReason::Panicked(m) if m.contains("filter panicked"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_panicking_on_one_emitted_event_loses_nothing_else() {
    let bus = Bus::builder().build().unwrap();
    let (seen, count) = counter();
    bus.subscribe(EventType::USER_LOGIN)
        .name("picky")
        .filter(|e: &Event| -> bool {
            if e.source() == "bad" {
                panic!("filter exploded")
            }
            true
        })
        .handle(count)
        .unwrap();
    for source in ["good", "bad", "good"] {
        let e = Event::builder(EventType::USER_LOGIN)
            .source(source)
            .build()
            .unwrap();
        bus.emit(e).await.unwrap();
    }
    assert!(
        bus.wait_idle(Duration::from_secs(2)).await,
        "{:?}",
        bus.stats()
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(bus.stats().in_flight, 0);
    let r = shut(&bus, Duration::from_secs(2)).await;
    assert_eq!((r.totals.delivered, r.totals.panicked), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_bus_filter_is_caught_on_every_path_and_counted_for_the_bus() {
    let bus = Bus::builder().build().unwrap();
    let (seen, count) = counter();
    bus.subscribe(EventType::USER_LOGIN).handle(count).unwrap();
    bus.add_filter(|e: &Event| -> bool {
        if e.source() == "bad" {
            panic!("bus filter exploded")
        }
        true
    });
    let bad = || {
        Event::builder(EventType::USER_LOGIN)
            .source("bad")
            .build()
            .unwrap()
    };
    let b = bus.clone();
    let report = tokio::spawn(async move { b.publish(bad()).await })
        .await
        .expect("the bus filter's panic escaped publish")
        .unwrap();
    assert!(report.filtered);
    let b = bus.clone();
    tokio::spawn(async move { b.emit(bad()).await })
        .await
        .expect("the bus filter's panic escaped emit")
        .unwrap();
    let b = bus.clone();
    std::thread::spawn(move || b.try_emit(bad()))
        .join()
        .expect("the bus filter's panic escaped try_emit")
        .unwrap();
    bus.emit(ev(EventType::USER_LOGIN)).await.unwrap();
    assert!(bus.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let stats = bus.stats();
    assert_eq!((stats.filtered, stats.filter_panics), (3, 3), "{stats:?}");
    let r = shut(&bus, Duration::from_secs(2)).await;
    assert_eq!((r.filtered, r.filter_panics), (3, 3));
}

// ---- 2. cancelled emits ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiting_emit_leaves_nothing_in_flight() {
    let bus = Bus::builder().build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let (seen, count) = counter();
    let count = Arc::new(count);
    bus.subscribe(EventType::DATA_CREATED)
        .name("slow")
        .mailbox_capacity(1)
        .overflow(Overflow::Wait)
        .handle_async(move |e: Event| {
            let g = Arc::clone(&g);
            let count = Arc::clone(&count);
            async move {
                g.acquire().await.unwrap().forget();
                count(&e);
            }
        })
        .unwrap();
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap(); // being handled
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap(); // queued
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        bus.emit(ev(EventType::DATA_CREATED)),
    )
    .await;
    assert!(waited.is_err(), "the third emit should have waited");
    gate.add_permits(10);
    assert!(
        bus.wait_idle(Duration::from_secs(2)).await,
        "{:?}",
        bus.stats()
    );
    let stats = bus.stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(stats.totals.cancelled, 1, "{stats:?}");
    let r = shut(&bus, Duration::from_secs(2)).await;
    assert_eq!(
        (r.deliveries, r.totals.delivered, r.totals.cancelled),
        (3, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_emit_says_exactly_which_subscriptions_it_reached() {
    let bus = Bus::builder().build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let (fast_seen, fast) = counter();
    bus.subscribe(EventType::DATA_CREATED)
        .name("fast")
        .handle(fast)
        .unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .name("slow")
        .mailbox_capacity(1)
        .handle_async(move |_e: Event| {
            let g = Arc::clone(&g);
            async move { g.acquire().await.unwrap().forget() }
        })
        .unwrap();
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        bus.emit(ev(EventType::DATA_CREATED)),
    )
    .await;
    assert!(cut.is_err());
    gate.add_permits(10);
    assert!(bus.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(fast_seen.load(Ordering::SeqCst), 3, "fast got all three");
    let stats = bus.stats();
    let slow = stats
        .subscriptions
        .iter()
        .find(|s| s.name == "slow")
        .unwrap();
    assert_eq!((slow.totals.delivered, slow.totals.cancelled), (2, 1));
    let fast = stats
        .subscriptions
        .iter()
        .find(|s| s.name == "fast")
        .unwrap();
    assert_eq!((fast.totals.delivered, fast.totals.cancelled), (3, 0));
    shut(&bus, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_emitting_into_its_own_full_mailbox_and_timed_out_leaks_nothing() {
    let bus = Bus::builder().build().unwrap();
    let b = bus.clone();
    bus.subscribe(EventType::DATA_CREATED)
        .name("loop")
        .mailbox_capacity(1)
        .timeout(Duration::from_millis(30))
        .handle_async(move |_e: Event| {
            let b = b.clone();
            async move {
                // The mailbox is full of our own work: this waits until the timeout cuts it.
                for _ in 0..3 {
                    let _ = b.emit(ev(EventType::DATA_UPDATED)).await;
                    let _ = b.emit(ev(EventType::DATA_CREATED)).await;
                }
            }
        })
        .unwrap();
    bus.subscribe(EventType::DATA_UPDATED)
        .name("other")
        .handle(|_: &Event| {})
        .unwrap();
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The handler keeps feeding itself; shutdown still ends it within the deadline, balanced.
    let r = shut(&bus, Duration::from_millis(500)).await;
    assert!(r.totals.timed_out >= 1, "{r:#?}");
}

// ---- 3. shutdown after unsubscribe -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_right_after_unsubscribe_drains_the_removed_mailbox() {
    let bus = Bus::builder().build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = Arc::clone(&ran);
    let id = bus
        .subscribe_pattern("user.*")
        .handle_async(move |_e: Event| {
            let r2 = Arc::clone(&r2);
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                r2.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    bus.emit(ev(EventType::USER_LOGIN)).await.unwrap();
    assert!(bus.unsubscribe(id));
    let r = shut(&bus, Duration::from_secs(2)).await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "the handler ran before shutdown returned"
    );
    assert_eq!((r.totals.delivered, r.in_flight), (1, 0), "{r:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "no handler runs after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_mailbox_still_draining_is_dead_lettered_at_the_deadline() {
    let bus = Bus::builder().build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = Arc::clone(&ran);
    let id = bus
        .subscribe_pattern("user.*")
        .handle_async(move |_e: Event| {
            let r2 = Arc::clone(&r2);
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                r2.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    for _ in 0..3 {
        bus.emit(ev(EventType::USER_LOGIN)).await.unwrap();
    }
    bus.unsubscribe(id);
    let r = shut(&bus, Duration::from_millis(100)).await;
    assert!(r.deadline_reached);
    assert_eq!(r.dead_lettered_at_shutdown, 3, "{r:#?}");
    assert_eq!(r.totals.shutdown, 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// ---- 4. publishers racing shutdown -----------------------------------------------------------

#[test]
fn events_admitted_before_the_door_closed_are_delivered_when_the_deadline_is_not_reached() {
    for round in 0..5 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let bus = rt.block_on(async { Bus::builder().build().unwrap() });
        let seen: Arc<Mutex<HashSet<EventId>>> = Arc::default();
        let s = Arc::clone(&seen);
        rt.block_on(async {
            bus.subscribe(EventType::DATA_CREATED)
                .mailbox_capacity(8)
                .dead_letter(false)
                .handle_async(move |e: Event| {
                    let s = Arc::clone(&s);
                    async move {
                        tokio::task::yield_now().await;
                        s.lock().insert(e.id());
                    }
                })
                .unwrap();
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accepted: Arc<Mutex<Vec<EventId>>> = Arc::default();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (bus, stop, accepted) = (bus.clone(), stop.clone(), accepted.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let e = ev(EventType::DATA_CREATED);
                        let id = e.id();
                        match bus.try_emit(e) {
                            Ok(()) => accepted.lock().push(id),
                            Err(err) if matches!(err.kind, PublishErrorKind::ShuttingDown) => break,
                            Err(_) => std::thread::yield_now(),
                        }
                    }
                })
            })
            .collect();
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let (bus, accepted) = (bus.clone(), accepted.clone());
                rt.spawn(async move {
                    loop {
                        let e = ev(EventType::DATA_CREATED);
                        let id = e.id();
                        let r = if i == 0 {
                            bus.publish(e).await.map(|_| ())
                        } else {
                            bus.emit(e).await
                        };
                        match r {
                            Ok(()) => accepted.lock().push(id),
                            Err(err) if matches!(err.kind, PublishErrorKind::ShuttingDown) => break,
                            Err(_) => tokio::task::yield_now().await,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let report = rt.block_on(bus.shutdown(Duration::from_secs(8)));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        rt.block_on(async {
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert!(report.is_balanced(), "round {round}: {report:#?}");
        assert!(!report.deadline_reached, "round {round}: {report:#?}");
        assert_eq!(report.totals.shutdown, 0, "round {round}: {report:#?}");
        assert_eq!(report.dead_lettered_at_shutdown, 0);
        let seen = seen.lock();
        let missing = accepted
            .lock()
            .iter()
            .filter(|id| !seen.contains(id))
            .count();
        assert_eq!(
            missing, 0,
            "round {round}: accepted but never handled; {report:#?}"
        );
    }
}

// ---- also: poison messages, finishing a partial try_emit, reports ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_is_dead_lettered_unretried_and_never_opens_the_circuit() {
    use plugbus::{BreakerConfig, RetryPolicy};
    let bus = Bus::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    bus.subscribe(EventType::USER_LOGIN)
        .retry(RetryPolicy::new(5).initial_backoff(Duration::from_millis(1)))
        .circuit_breaker(BreakerConfig::new(3, Duration::from_secs(60)))
        .handle(move |e: &Event| {
            c.fetch_add(1, Ordering::SeqCst);
            if e.source() == "junk" {
                Err(HandlerError::bad_event("user_id missing"))
            } else {
                Ok(())
            }
        })
        .unwrap();
    for _ in 0..10 {
        let junk = Event::builder(EventType::USER_LOGIN)
            .source("junk")
            .build()
            .unwrap();
        let r = bus.publish(junk).await.unwrap();
        assert!(matches!(&r.deliveries[0].outcome, Outcome::BadEvent(e) if e.is_bad_event()));
        assert!(r.deliveries[0].dead_lettered);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10, "never retried");
    let r = bus.publish(ev(EventType::USER_LOGIN)).await.unwrap();
    assert!(r.all_delivered(), "the circuit stayed closed: {r:?}");
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 10);
    assert!(matches!(&letters[0].reason, DeadLetterReason::BadEvent(m) if m.contains("user_id")));
    let s = shut(&bus, Duration::from_secs(1)).await;
    assert_eq!((s.totals.bad_event, s.totals.delivered), (10, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_try_emit_can_be_finished_for_exactly_the_subscriptions_owed() {
    let bus = Bus::builder().build().unwrap();
    let (a_seen, a) = counter();
    let b_seen = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    bus.subscribe(EventType::DATA_CREATED)
        .name("a")
        .handle(a)
        .unwrap();
    let (g, bs) = (Arc::clone(&gate), Arc::clone(&b_seen));
    let b = bus
        .subscribe(EventType::DATA_CREATED)
        .name("b")
        .mailbox_capacity(1)
        .handle_async(move |_e: Event| {
            let (g, bs) = (Arc::clone(&g), Arc::clone(&bs));
            async move {
                g.acquire().await.unwrap().forget();
                bs.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    bus.try_emit(ev(EventType::DATA_CREATED)).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.try_emit(ev(EventType::DATA_CREATED)).unwrap();
    let err = bus.try_emit(ev(EventType::DATA_CREATED)).unwrap_err();
    assert_eq!(err.owed(), &[b]);
    gate.add_permits(1);
    // Retry only what is owed, until it fits: "a" must not see the event twice.
    let mut err = err;
    loop {
        match bus.try_emit_to(err.event.clone(), err.owed()) {
            Ok(()) => break,
            Err(e) => {
                err = e;
                gate.add_permits(1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    gate.add_permits(10);
    assert!(bus.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(a_seen.load(Ordering::SeqCst), 3);
    assert_eq!(b_seen.load(Ordering::SeqCst), 3);
    let r = shut(&bus, Duration::from_secs(1)).await;
    assert_eq!(r.totals.delivered, 6);
}

#[tokio::test]
async fn a_report_hands_out_its_deliveries() {
    let bus = Bus::builder().build().unwrap();
    bus.subscribe(EventType::USER_LOGIN)
        .handle(|_: &Event| {})
        .unwrap();
    let report = bus.publish(ev(EventType::USER_LOGIN)).await.unwrap();
    let deliveries: Vec<plugbus::DeliveryReport> = report.into_deliveries();
    assert_eq!(deliveries.len(), 1);
    let cfg = plugbus::DedupConfig::new(100).ttl(Duration::from_secs(5));
    assert_eq!((cfg.window, cfg.ttl), (100, Some(Duration::from_secs(5))));
}

// ---- 6. the event an emit hands back ---------------------------------------------------------

type Recorded = Arc<Mutex<Vec<EventId>>>;
type Gated = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A handler that records event ids and waits for a permit first.
fn gated_recorder(
    gate: &Arc<Semaphore>,
) -> (Recorded, impl Fn(Event) -> Gated + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (g, s) = (Arc::clone(gate), Arc::clone(&seen));
    (seen, move |e: Event| {
        let (g, s) = (Arc::clone(&g), Arc::clone(&s));
        let gated: Gated = Box::pin(async move {
            g.acquire().await.unwrap().forget();
            s.lock().push(e.id());
        });
        gated
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_refused_by_its_last_mailboxes_hands_back_the_event_it_was_given() {
    // When the last matching mailboxes refuse the event, it must come back whole (the very
    // event emitted), and every other mailbox keep its copy.
    let bus = Bus::builder().build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a_seen, a) = counter();
    bus.subscribe(EventType::DATA_CREATED)
        .name("a")
        .handle(a)
        .unwrap();
    let (b_seen, b) = gated_recorder(&gate);
    bus.subscribe(EventType::DATA_CREATED)
        .name("b")
        .mailbox_capacity(1)
        .overflow(Overflow::DeadLetter)
        .handle_async(b)
        .unwrap();
    let (c_seen, c) = gated_recorder(&gate);
    let c_id = bus
        .subscribe(EventType::DATA_CREATED)
        .name("c")
        .mailbox_capacity(1)
        .overflow(Overflow::Reject)
        .handle_async(c)
        .unwrap();
    let first = ev(EventType::DATA_CREATED);
    bus.emit(first.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await; // b and c hold `first` in their handlers
    let second = ev(EventType::DATA_CREATED);
    bus.emit(second.clone()).await.unwrap(); // fills b and c
    let third = ev(EventType::DATA_CREATED);
    let refused = bus.emit(third.clone()).await.unwrap_err();
    assert!(refused.event.ptr_eq(&third), "not the event emitted");
    assert_eq!(refused.owed(), &[c_id]);
    gate.add_permits(100);
    assert!(bus.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(a_seen.load(Ordering::SeqCst), 3);
    assert_eq!(*b_seen.lock(), vec![first.id(), second.id()]);
    assert_eq!(*c_seen.lock(), vec![first.id(), second.id()]);
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.id(), third.id());
    assert_eq!(letters[0].reason, DeadLetterReason::MailboxFull);
    let r = shut(&bus, Duration::from_secs(1)).await;
    assert_eq!(r.totals.delivered, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_waiting_for_an_earlier_mailbox_still_delivers_to_the_last_and_then_to_it() {
    let bus = Bus::builder().build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a_seen, a) = gated_recorder(&gate);
    bus.subscribe(EventType::DATA_CREATED)
        .name("a")
        .mailbox_capacity(1)
        .overflow(Overflow::Wait)
        .handle_async(a)
        .unwrap();
    let b_seen = Arc::new(Mutex::new(Vec::new()));
    let bs = Arc::clone(&b_seen);
    bus.subscribe(EventType::DATA_CREATED)
        .name("b")
        .handle(move |e: &Event| bs.lock().push(e.id()))
        .unwrap();
    let events: Vec<Event> = (0..3).map(|_| ev(EventType::DATA_CREATED)).collect();
    bus.emit(events[0].clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await; // a holds events[0] in its handler
    bus.emit(events[1].clone()).await.unwrap(); // fills a
    let waiting = {
        let (bus, e) = (bus.clone(), events[2].clone());
        tokio::spawn(async move { bus.emit(e).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiting.is_finished(), "the emit should wait for room in a");
    let ids: Vec<EventId> = events.iter().map(Event::id).collect();
    assert_eq!(
        *b_seen.lock(),
        ids,
        "b gets the event while the emit waits for a"
    );
    gate.add_permits(100);
    waiting.await.unwrap().unwrap();
    assert!(bus.wait_idle(Duration::from_secs(2)).await);
    assert_eq!(*a_seen.lock(), ids);
    let r = shut(&bus, Duration::from_secs(1)).await;
    assert_eq!(r.totals.delivered, 6);
}
