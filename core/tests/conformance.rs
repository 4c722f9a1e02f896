//! Conformance suite in the spirit of Watermill's universal Pub/Sub tests: real bus, real
//! handlers, real concurrency. Each test states the property it checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use plugbus::payload::UserLogin;
use plugbus::{
    Bus, Category, DeadLetterReason, DedupConfig, Event, EventId, EventType, HandlerError,
    Interest, Outcome, Overflow, PublishErrorKind, RetryPolicy,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn ev(t: EventType) -> Event {
    Event::builder(t).build().unwrap()
}

fn seq_event(t: EventType, publisher: usize, seq: usize) -> Event {
    Event::builder(t)
        .metadata("publisher", &publisher.to_string())
        .metadata("seq", &seq.to_string())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_five_thousand_events_nothing_lost_nothing_duplicated() {
    let bus = Bus::builder().mailbox_capacity(256).build().unwrap();
    let seen: Vec<Arc<Mutex<Vec<EventId>>>> = (0..50).map(|_| Arc::default()).collect();
    for (i, log) in seen.iter().enumerate() {
        let log = log.clone();
        bus.subscribe(EventType::DATA_CREATED)
            .name(format!("sub-{i}"))
            .handle(move |e: &Event| log.lock().push(e.id()))
            .unwrap();
    }
    let mut published = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let e = ev(EventType::DATA_CREATED);
        published.push(e.id());
        bus.emit(e).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_balanced(), "{report:?}");
    assert!(!report.deadline_reached);
    let expected: HashSet<EventId> = published.iter().copied().collect();
    for log in &seen {
        let log = log.lock();
        assert_eq!(log.len(), 5000, "each subscriber gets each event once");
        let got: HashSet<EventId> = log.iter().copied().collect();
        assert_eq!(got, expected);
        assert_eq!(*log, published, "and in publish order");
    }
    assert_eq!(report.totals.delivered, 50 * 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_types_in_parallel_each_subscriber_sees_exactly_its_own() {
    let bus = Bus::builder().build().unwrap();
    let types: Vec<EventType> = (0..20)
        .map(|i| EventType::new(&format!("conf.iso.t{i}"), Category::Custom).unwrap())
        .collect();
    let got: Vec<Arc<Mutex<Vec<EventType>>>> = types.iter().map(|_| Arc::default()).collect();
    for (t, log) in types.iter().zip(&got) {
        let log = log.clone();
        bus.subscribe(*t)
            .handle(move |e: &Event| log.lock().push(e.event_type()))
            .unwrap();
    }
    let tasks: Vec<_> = types
        .iter()
        .map(|t| {
            let bus = bus.clone();
            let t = *t;
            tokio::spawn(async move {
                for _ in 0..500 {
                    bus.emit(ev(t)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_balanced(), "{report:?}");
    for (t, log) in types.iter().zip(&got) {
        let log = log.lock();
        assert_eq!(log.len(), 500);
        assert!(log.iter().all(|x| x == t), "foreign type delivered to {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subscription_order_is_kept_under_emit_with_concurrent_publishers() {
    let bus = Bus::builder().mailbox_capacity(64).build().unwrap();
    type Log = Arc<Mutex<Vec<(usize, usize)>>>;
    let logs: Vec<Log> = (0..4).map(|_| Arc::default()).collect();
    for (i, log) in logs.iter().enumerate() {
        let log = log.clone();
        let slow = i == 0;
        bus.subscribe(EventType::DATA_UPDATED)
            .name(format!("ordered-{i}"))
            .handle_async(move |e: Event| {
                let log = log.clone();
                async move {
                    if slow {
                        tokio::task::yield_now().await;
                    }
                    let p = e.metadata().get("publisher").unwrap().parse().unwrap();
                    let s = e.metadata().get("seq").unwrap().parse().unwrap();
                    log.lock().push((p, s));
                }
            })
            .unwrap();
    }
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for s in 0..1000 {
                    bus.emit(seq_event(EventType::DATA_UPDATED, p, s))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    assert!(bus.shutdown(Duration::from_secs(30)).await.is_balanced());
    for log in &logs {
        let log = log.lock();
        assert_eq!(log.len(), 4000);
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (p, s) in log.iter() {
            if let Some(prev) = last.insert(*p, *s) {
                assert!(*s == prev + 1, "publisher {p}: {s} after {prev}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_unsubscribe_race_with_publishers_without_loss_or_deadlock() {
    let bus = Bus::builder().build().unwrap();
    let stable = Arc::new(AtomicUsize::new(0));
    let s = stable.clone();
    bus.subscribe(EventType::USER_LOGOUT)
        .name("stable")
        .handle(move |_: &Event| {
            s.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    let churn = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let id = bus
                    .subscribe(EventType::USER_LOGOUT)
                    .name(format!("churn-{i}"))
                    .handle(|_: &Event| {})
                    .unwrap();
                tokio::task::yield_now().await;
                assert!(bus.unsubscribe(id));
                assert!(!bus.unsubscribe(id), "second unsubscribe is a no-op");
            }
        })
    };
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..2000 {
                    if i % 2 == 0 {
                        bus.emit(ev(EventType::USER_LOGOUT)).await.unwrap();
                    } else {
                        let r = bus.publish(ev(EventType::USER_LOGOUT)).await.unwrap();
                        assert!(r.all_delivered());
                    }
                }
            })
        })
        .collect();
    churn.await.unwrap();
    for p in publishers {
        p.await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(
        stable.load(Ordering::Relaxed),
        4000,
        "the stable subscriber lost nothing"
    );
    assert_eq!(bus.stats().subscriptions.len(), 1);
}

#[tokio::test]
async fn failing_twice_then_succeeding_is_retried_and_delivered() {
    let bus = Bus::builder().build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let id = bus
        .subscribe(EventType::DATA_CREATED)
        .name("flaky")
        .retry(RetryPolicy::new(5).initial_backoff(Duration::from_millis(1)))
        .handle(move |_: &Event| {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(HandlerError::retryable("db busy"))
            } else {
                Ok(())
            }
        })
        .unwrap();
    let r = bus.publish(ev(EventType::DATA_CREATED)).await.unwrap();
    assert_eq!(r.deliveries[0].outcome, Outcome::Delivered);
    assert_eq!(r.deliveries[0].attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let s = bus.subscription_stats(id).unwrap();
    assert_eq!((s.totals.delivered, s.totals.retried), (1, 2));
    assert!(bus.dead_letters().is_empty());
}

#[tokio::test]
async fn always_failing_ends_in_the_dead_letter_queue_with_its_reason_and_can_be_replayed() {
    let bus = Bus::builder().build().unwrap();
    let healthy = Arc::new(AtomicU32::new(0));
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let id = bus
        .subscribe(EventType::DATA_DELETED)
        .name("broken")
        .retry(RetryPolicy::new(3).initial_backoff(Duration::from_millis(1)))
        .handle(move |_: &Event| {
            if f.load(Ordering::SeqCst) {
                Err(HandlerError::retryable("disk full"))
            } else {
                Ok(())
            }
        })
        .unwrap();
    let h = healthy.clone();
    bus.subscribe(EventType::DATA_DELETED)
        .handle(move |_: &Event| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let e = ev(EventType::DATA_DELETED);
    let r = bus.publish(e.clone()).await.unwrap();
    assert!(
        matches!(&r.deliveries[0].outcome, Outcome::Failed(err) if err.message() == "disk full")
    );
    assert_eq!(r.deliveries[0].attempts, 3);
    assert!(r.deliveries[0].dead_lettered);
    assert!(r.deliveries[1].outcome.is_delivered());
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.id(), e.id());
    assert_eq!(letters[0].subscription, id);
    assert_eq!(&*letters[0].subscriber, "broken");
    assert_eq!(
        letters[0].reason,
        DeadLetterReason::Error("disk full".into())
    );
    assert_eq!(letters[0].attempts, 3);

    fail.store(false, Ordering::SeqCst);
    let replay = bus.replay_dead_letters().await;
    assert_eq!(replay.replayed.len(), 1);
    assert!(replay.replayed[0].1.outcome.is_delivered());
    assert_eq!(
        healthy.load(Ordering::SeqCst),
        1,
        "replay goes to its subscription only"
    );
    assert!(bus.dead_letters().is_empty());
    let report = bus.shutdown(Duration::from_secs(1)).await;
    assert!(report.is_balanced(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_timeout_is_timed_out_while_others_are_delivered_on_time() {
    let bus = Bus::builder().build().unwrap();
    bus.subscribe(EventType::USER_LOGIN)
        .name("sleepy")
        .timeout(Duration::from_millis(50))
        .handle_async(|_| async { tokio::time::sleep(Duration::from_secs(30)).await })
        .unwrap();
    bus.subscribe(EventType::USER_LOGIN)
        .name("blocking-sleepy")
        .timeout(Duration::from_millis(50))
        .handle_blocking(|_: &Event| std::thread::sleep(Duration::from_millis(400)))
        .unwrap();
    let quick_at = Arc::new(Mutex::new(None));
    let q = quick_at.clone();
    let started = std::time::Instant::now();
    bus.subscribe(EventType::USER_LOGIN)
        .name("quick")
        .handle_async(move |_| {
            let q = q.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                *q.lock() = Some(started.elapsed());
            }
        })
        .unwrap();
    let r = bus.publish(ev(EventType::USER_LOGIN)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        r.deliveries[0].outcome,
        Outcome::TimedOut(Duration::from_millis(50))
    );
    assert_eq!(
        r.deliveries[1].outcome,
        Outcome::TimedOut(Duration::from_millis(50))
    );
    assert_eq!(r.deliveries[2].outcome, Outcome::Delivered);
    assert!(
        quick_at.lock().unwrap() < Duration::from_millis(50),
        "quick handler was not held up"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "publish waited for the sleeper: {elapsed:?}"
    );
    let stats = bus.stats();
    assert_eq!(stats.totals.timed_out, 2);
    assert_eq!(bus.dead_letters().len(), 2);
}

#[tokio::test]
async fn a_panicking_handler_is_reported_and_the_bus_keeps_working() {
    let bus = Bus::builder().build().unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .name("sync-panic")
        .handle(|_: &Event| -> Result<(), HandlerError> { panic!("sync boom") })
        .unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .name("async-panic")
        .handle_async(|_| async {
            tokio::task::yield_now().await;
            if true {
                panic!("async boom");
            }
        })
        .unwrap();
    let ok = Arc::new(AtomicU32::new(0));
    let o = ok.clone();
    bus.subscribe(EventType::DATA_CREATED)
        .handle(move |_: &Event| {
            o.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for _ in 0..3 {
        let r = bus.publish(ev(EventType::DATA_CREATED)).await.unwrap();
        assert_eq!(
            r.deliveries[0].outcome,
            Outcome::Panicked("sync boom".into())
        );
        assert_eq!(
            r.deliveries[1].outcome,
            Outcome::Panicked("async boom".into())
        );
        assert!(r.deliveries[2].outcome.is_delivered());
    }
    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(ok.load(Ordering::SeqCst), 4);
    assert_eq!(report.totals.panicked, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_under_drop_oldest_stays_bounded_and_counts_its_drops() {
    let bus = Bus::builder().build().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let id = bus
        .subscribe(EventType::DATA_UPDATED)
        .name("stalled")
        .overflow(Overflow::DropOldest)
        .mailbox_capacity(100)
        .timeout(Duration::from_secs(60))
        .handle_async(move |e: Event| {
            let g = g.clone();
            let s = s.clone();
            async move {
                let _permit = g.acquire().await.unwrap();
                s.lock()
                    .push(e.metadata().get("seq").unwrap().parse::<usize>().unwrap());
            }
        })
        .unwrap();
    const N: usize = 100_000;
    for i in 0..N {
        bus.try_emit(seq_event(EventType::DATA_UPDATED, 0, i))
            .unwrap();
        if i % 10_000 == 0 {
            let depth = bus.subscription_stats(id).unwrap().mailbox_depth;
            assert!(depth <= 100, "mailbox grew to {depth}");
        }
    }
    let stats = bus.subscription_stats(id).unwrap();
    assert!(stats.mailbox_depth <= 100);
    gate.add_permits(N);
    let report = bus.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_balanced(), "{report:?}");
    let seen = seen.lock();
    let t = report.totals;
    assert_eq!(t.delivered as usize, seen.len());
    assert_eq!(
        t.dropped as usize + seen.len(),
        N,
        "every event delivered or counted dropped"
    );
    assert_eq!(t.failed, t.dropped, "drops are failures, not dead letters");
    assert!(
        seen.len() <= 101,
        "at most the mailbox plus the one in hand survive"
    );
    assert_eq!(*seen.last().unwrap(), N - 1, "the newest survive");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_events_in_flight_balances_the_account_exactly() {
    let bus = Bus::builder().mailbox_capacity(10_000).build().unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .name("slow")
        .handle_async(|_| async { tokio::time::sleep(Duration::from_millis(2)).await })
        .unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .name("hung")
        .timeout(Duration::from_secs(600))
        .handle_async(|_| std::future::pending::<()>())
        .unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .name("fast")
        .handle(|_: &Event| {})
        .unwrap();
    bus.add_filter(|e: &Event| e.source() != "noise");
    bus.subscribe(EventType::SYSTEM_SHUTDOWN)
        .name("notice")
        .handle(|_: &Event| {})
        .unwrap();
    for i in 0..1000 {
        let source = if i % 10 == 0 { "noise" } else { "app" };
        bus.emit(
            Event::builder(EventType::DATA_CREATED)
                .source(source)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    }
    bus.emit(ev(EventType::USER_LOGOUT)).await.unwrap();
    let report = bus.shutdown(Duration::from_millis(200)).await;
    assert!(report.deadline_reached);
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(report.accepted, 1002, "1001 emitted + system.shutdown");
    assert_eq!(report.filtered, 100);
    assert_eq!(report.unrouted, 1);
    assert_eq!(report.routed, 901);
    assert_eq!(report.deliveries, 900 * 3 + 1);
    let t = report.totals;
    assert_eq!(t.delivered + t.dead_lettered, report.deliveries);
    assert!(
        t.dead_lettered >= 900,
        "the hung subscriber's whole queue: {t:?}"
    );
    assert_eq!(report.dead_lettered_at_shutdown, t.dead_lettered);
    let err = bus.emit(ev(EventType::DATA_CREATED)).await.unwrap_err();
    assert_eq!(err.kind, PublishErrorKind::ShuttingDown);
    assert!(err.to_string().contains("shutting down"));
    assert!(bus
        .subscribe(EventType::DATA_CREATED)
        .handle(|_: &Event| {})
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_and_causation_propagate_through_two_levels_of_reentrant_publishing() {
    let bus = Bus::builder().build().unwrap();
    let level1 = EventType::new("conf.chain.one", Category::Custom).unwrap();
    let level2 = EventType::new("conf.chain.two", Category::Custom).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Event>::new()));
    {
        let bus2 = bus.clone();
        bus.subscribe(EventType::USER_LOGIN)
            .handle_async(move |_| {
                let bus = bus2.clone();
                async move {
                    bus.publish(ev(level1)).await.unwrap();
                }
            })
            .unwrap();
    }
    {
        let bus2 = bus.clone();
        bus.subscribe(level1)
            .handle(move |_: &Event| {
                bus2.try_emit(ev(level2)).unwrap();
            })
            .unwrap();
    }
    for t in [level1, level2] {
        let s = seen.clone();
        bus.subscribe(t)
            .handle(move |e: &Event| s.lock().push(e.clone()))
            .unwrap();
    }
    let root = Event::builder_typed(UserLogin {
        user_id: "alice".into(),
        ..Default::default()
    })
    .request_id("req-9")
    .build()
    .unwrap();
    bus.publish(root.clone()).await.unwrap();
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
    let seen = seen.lock();
    let one = seen.iter().find(|e| e.event_type() == level1).unwrap();
    let two = seen.iter().find(|e| e.event_type() == level2).unwrap();
    assert_eq!(one.causation_id(), Some(root.id()));
    assert_eq!(one.correlation_id(), Some(root.id()));
    assert_eq!(two.causation_id(), Some(one.id()));
    assert_eq!(
        two.correlation_id(),
        Some(root.id()),
        "correlation is inherited"
    );
    assert_eq!(plugbus::context::current(), None, "context does not leak");
}

#[tokio::test]
async fn duplicate_names_on_overlapping_types_are_errors() {
    let bus = Bus::builder().build().unwrap();
    bus.subscribe(EventType::USER_LOGIN)
        .name("audit")
        .handle(|_: &Event| {})
        .unwrap();
    let err = bus
        .subscribe(Category::Business)
        .name("audit")
        .handle(|_: &Event| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("audit") && err.to_string().contains("user.login"),
        "{err}"
    );
    bus.subscribe(EventType::USER_LOGOUT)
        .name("audit")
        .handle(|_: &Event| {})
        .unwrap();
    assert!(bus
        .subscribe(Interest::none())
        .handle(|_: &Event| {})
        .is_err());
    assert!(bus
        .subscribe_pattern("us*er")
        .handle(|_: &Event| {})
        .is_err());
}

#[tokio::test]
async fn bus_filters_drop_and_count_and_can_be_removed() {
    let bus = Bus::builder().build().unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let c = n.clone();
    bus.subscribe_pattern("*")
        .handle(move |_: &Event| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let f = bus.add_filter(|e: &Event| e.source() != "spam");
    let spam = || {
        Event::builder(EventType::DATA_CREATED)
            .source("spam")
            .build()
            .unwrap()
    };
    let r = bus.publish(spam()).await.unwrap();
    assert!(r.filtered && r.deliveries.is_empty());
    bus.publish(ev(EventType::DATA_CREATED)).await.unwrap();
    assert!(bus.remove_filter(f));
    assert!(!bus.remove_filter(f));
    bus.publish(spam()).await.unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert_eq!(bus.stats().filtered, 1);
}

#[tokio::test]
async fn subscription_filters_skip_and_dedup_delivers_a_replayed_id_once() {
    let bus = Bus::builder().build().unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let c = n.clone();
    let id = bus
        .subscribe(EventType::DATA_CREATED)
        .filter(|e: &Event| e.source() == "crm")
        .dedup(DedupConfig::default())
        .handle(move |_: &Event| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let e = Event::builder(EventType::DATA_CREATED)
        .source("crm")
        .build()
        .unwrap();
    let again = Event::from_json(&e.to_json().unwrap()).unwrap();
    assert_eq!(
        bus.publish(e).await.unwrap().deliveries[0].outcome,
        Outcome::Delivered
    );
    assert_eq!(
        bus.publish(again).await.unwrap().deliveries[0].outcome,
        Outcome::Duplicate
    );
    let other = ev(EventType::DATA_CREATED);
    assert_eq!(
        bus.publish(other).await.unwrap().deliveries[0].outcome,
        Outcome::Skipped
    );
    assert_eq!(n.load(Ordering::SeqCst), 1);
    let s = bus.subscription_stats(id).unwrap().totals;
    assert_eq!((s.delivered, s.skipped, s.duplicates), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_consecutive_failures_and_recovers_after_cool_down() {
    let bus = Bus::builder().build().unwrap();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    bus.subscribe(EventType::DATA_CREATED)
        .name("fragile")
        .circuit_breaker(plugbus::BreakerConfig::new(3, Duration::from_millis(100)))
        .handle(move |_: &Event| {
            if h.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(HandlerError::permanent("down"))
            }
        })
        .unwrap();
    let outcome = |r: plugbus::PublishReport| r.deliveries[0].outcome.clone();
    for _ in 0..3 {
        assert!(matches!(
            outcome(bus.publish(ev(EventType::DATA_CREATED)).await.unwrap()),
            Outcome::Failed(_)
        ));
    }
    assert_eq!(
        outcome(bus.publish(ev(EventType::DATA_CREATED)).await.unwrap()),
        Outcome::CircuitOpen
    );
    healthy.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(
        outcome(bus.publish(ev(EventType::DATA_CREATED)).await.unwrap()),
        Outcome::Delivered
    );
    assert_eq!(
        bus.stats().subscriptions[0].breaker,
        Some(plugbus::BreakerState::Closed)
    );
    assert_eq!(bus.stats().totals.circuit_open, 1);
}

#[tokio::test]
async fn typed_subscribers_borrow_the_payload_and_reject_foreign_shapes() {
    let bus = Bus::builder().build().unwrap();
    let users = Arc::new(Mutex::new(Vec::new()));
    let u = users.clone();
    bus.subscribe_typed(move |login: &UserLogin| u.lock().push(login.user_id.clone()))
        .unwrap();
    bus.publish(
        Event::new(UserLogin {
            user_id: "alice".into(),
            ..Default::default()
        })
        .unwrap(),
    )
    .await
    .unwrap();
    let from_json = Event::from_json(br#"{"type":"user.login","data":{"user_id":"bob"}}"#).unwrap();
    bus.publish(from_json).await.unwrap();
    let bad = Event::from_json(br#"{"type":"user.login","data":{"uid":"x"}}"#).unwrap();
    let r = bus.publish(bad).await.unwrap();
    assert!(
        matches!(&r.deliveries[0].outcome, Outcome::BadEvent(e) if e.message().contains("user_id"))
    );
    assert!(
        r.deliveries[0].dead_lettered,
        "a poison message is dead-lettered"
    );
    assert_eq!(*users.lock(), vec!["alice".to_string(), "bob".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_emit_reports_full_mailboxes_and_hands_the_event_back() {
    let bus = Bus::builder().build().unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let id = bus
        .subscribe(EventType::DATA_CREATED)
        .mailbox_capacity(2)
        .overflow(Overflow::Wait)
        .handle_async(move |_| {
            let g = g.clone();
            async move { g.notified().await }
        })
        .unwrap();
    let mut rejected = 0;
    for _ in 0..10 {
        match bus.try_emit(ev(EventType::DATA_CREATED)) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.kind, PublishErrorKind::Full(vec![id]));
                assert_eq!(e.event.event_type(), EventType::DATA_CREATED);
                rejected += 1;
            }
        }
    }
    assert!(rejected >= 7, "capacity 2 + 1 in hand: {rejected}");
    assert_eq!(bus.stats().totals.rejected, rejected);
    for _ in 0..10 {
        gate.notify_one();
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_balanced(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_policy_applies_backpressure_and_loses_nothing() {
    let bus = Bus::builder().build().unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let c = n.clone();
    bus.subscribe(EventType::DATA_CREATED)
        .mailbox_capacity(4)
        .handle_async(move |_| {
            let c = c.clone();
            async move {
                tokio::task::yield_now().await;
                c.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    for _ in 0..2000 {
        bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
        assert!(bus.stats().subscriptions[0].mailbox_depth <= 4);
    }
    let report = bus.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_balanced());
    assert_eq!(n.load(Ordering::SeqCst), 2000);
}

#[tokio::test]
async fn dead_letter_overflow_keeps_what_a_full_mailbox_cannot_take_and_the_sink_sees_it() {
    let sunk = Arc::new(AtomicU32::new(0));
    let s = sunk.clone();
    let bus = Bus::builder()
        .dead_letter_sink(move |_: &plugbus::DeadLetter| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    bus.subscribe(EventType::DATA_CREATED)
        .mailbox_capacity(1)
        .overflow(Overflow::DeadLetter)
        .handle_async(|_| std::future::pending::<()>())
        .unwrap();
    for _ in 0..5 {
        bus.try_emit(ev(EventType::DATA_CREATED)).unwrap();
    }
    let letters = bus.dead_letters();
    assert!(letters.len() >= 3);
    assert!(letters
        .iter()
        .all(|l| l.reason == DeadLetterReason::MailboxFull));
    assert_eq!(sunk.load(Ordering::SeqCst) as usize, letters.len());
    let report = bus.shutdown(Duration::from_millis(50)).await;
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(report.totals.dead_lettered, 5);
}

#[test]
fn a_bus_that_owns_its_runtime_works_from_plain_threads() {
    let bus = Bus::builder().own_runtime(1).build().unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let c = n.clone();
    bus.subscribe(EventType::SYSTEM_STARTUP)
        .handle(move |_: &Event| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let r = bus.publish_blocking(ev(EventType::SYSTEM_STARTUP)).unwrap();
    assert!(r.all_delivered());
    bus.try_emit(ev(EventType::SYSTEM_STARTUP)).unwrap();
    let report = bus.shutdown_blocking(Duration::from_secs(5));
    assert!(report.is_balanced());
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert!(matches!(
        Bus::builder().build(),
        Err(plugbus::BuildError::NoRuntime)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_drains_the_mailboxes_and_frees_the_bus() {
    let bus = Bus::builder().build().unwrap();
    let delivered = Arc::new(AtomicU32::new(0));
    let token = Arc::new(());
    let (d, t) = (delivered.clone(), token.clone());
    bus.subscribe(EventType::DATA_CREATED)
        .handle_async(move |_| {
            let d = d.clone();
            let _keep = t.clone();
            async move {
                tokio::task::yield_now().await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    for _ in 0..100 {
        bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
    }
    let weak = Arc::downgrade(&token);
    drop(token);
    drop(bus);
    for _ in 0..500 {
        if weak.upgrade().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        100,
        "queued events are still delivered"
    );
    assert!(
        weak.upgrade().is_none(),
        "the handler (and the bus) were freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mailboxes_start_in_order_overlap_waits_and_still_balance() {
    let bus = Bus::builder().build().unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let s = started.clone();
    bus.subscribe(EventType::DATA_UPDATED)
        .name("pipelined")
        .max_in_flight(64)
        .mailbox_capacity(1024)
        .handle_async(move |e: Event| {
            // Recorded at the first poll, before any await: this is the hand-off point.
            s.lock()
                .push(e.metadata().get("seq").unwrap().parse::<usize>().unwrap());
            async move { tokio::time::sleep(Duration::from_millis(20)).await }
        })
        .unwrap();
    let t0 = std::time::Instant::now();
    for i in 0..200 {
        bus.emit(seq_event(EventType::DATA_UPDATED, 0, i))
            .await
            .unwrap();
    }
    assert!(bus.wait_idle(Duration::from_secs(10)).await);
    let elapsed = t0.elapsed();
    assert_eq!(
        *started.lock(),
        (0..200).collect::<Vec<_>>(),
        "started in mailbox order"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "waits overlapped: {elapsed:?} (4 s if serial)"
    );
    assert_eq!(bus.stats().totals.delivered, 200);

    // Hung deliveries in flight when shutdown's deadline passes are accounted for too.
    bus.subscribe(EventType::DATA_DELETED)
        .name("pipelined-hung")
        .max_in_flight(8)
        .timeout(Duration::from_secs(600))
        .handle_async(|_| std::future::pending::<()>())
        .unwrap();
    for _ in 0..20 {
        bus.emit(ev(EventType::DATA_DELETED)).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_millis(100)).await;
    assert!(report.deadline_reached);
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(report.dead_lettered_at_shutdown, 20);
}

/// Publishers on plain threads race `shutdown`: every publish either is refused with its event
/// back or counts in the report, which balances to the event (the admission protocol with the
/// per-thread counters and the asymmetric fence).
#[test]
fn publishers_racing_shutdown_are_either_refused_or_counted() {
    for _round in 0..20 {
        let bus = Bus::builder().own_runtime(1).build().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&seen);
        bus.subscribe(EventType::DATA_CREATED)
            .handle(move |_: &Event| {
                s.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let publishers: Vec<_> = (0..3)
            .map(|_| {
                let bus = bus.clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let event = ev(EventType::DATA_CREATED);
                    let (mut ok, mut refused) = (0usize, 0usize);
                    while !stop.load(Ordering::Relaxed) {
                        // By reference: the event stays ours, refused or not.
                        match bus.publish_blocking(&event) {
                            Ok(r) => {
                                assert!(r.all_delivered());
                                ok += 1;
                            }
                            Err(e) => {
                                assert_eq!(e.event.id(), event.id());
                                refused += 1;
                                if refused > 10 {
                                    break;
                                }
                            }
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        let report = bus.shutdown_blocking(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        let ok: usize = publishers.into_iter().map(|p| p.join().unwrap().0).sum();
        assert!(report.is_balanced(), "{report:?}");
        // Every publish that got in is in the report (plus the shutdown notice, unrouted).
        assert_eq!(report.accepted, ok as u64 + 1, "{report:?}");
        assert_eq!(report.totals.delivered, ok as u64);
        assert_eq!(seen.load(Ordering::Relaxed), ok);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_never_leave_an_event_in_a_parked_mailbox() {
    // Consumers that keep emptying their mailbox park between events; one push per park sends
    // the wake-up. If a wake-up were lost, an event would sit in a parked mailbox until
    // something else woke it: `wait_idle` (which wakes nobody) would time out. Shutdown is not
    // used to check, since closing a mailbox wakes its task anyway.
    let bus = Bus::builder().mailbox_capacity(2).build().unwrap();
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    for (i, c) in counts.iter().enumerate() {
        let c = Arc::clone(c);
        bus.subscribe(EventType::DATA_CREATED)
            .name(format!("sub-{i}"))
            .handle(move |_: &Event| {
                c.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    }
    const PUBLISHERS: usize = 4;
    const EACH: usize = 5_000;
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for k in 0..EACH {
                    if (k + p) % 3 == 0 {
                        // Now and then a pause, so consumers catch up and park.
                        tokio::task::yield_now().await;
                    }
                    bus.emit(ev(EventType::DATA_CREATED)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        // A publisher waiting for room in a mailbox whose task was never woken waits forever.
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a publisher stuck waiting for room: its mailbox's task was never woken")
            .unwrap();
    }
    assert!(
        bus.wait_idle(Duration::from_secs(10)).await,
        "an event was left in a mailbox: delivered {:?}",
        counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
    for c in &counts {
        assert_eq!(c.load(Ordering::Relaxed), PUBLISHERS * EACH);
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_balanced(), "{report:?}");
}

/// A payload that counts its drops: the event holding it is released when it drops.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct DropProbe {
    #[serde(skip)]
    drops: Arc<AtomicUsize>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl plugbus::TypedEvent for DropProbe {
    const EVENT_TYPE: &'static str = "conformance.drop_probe";
    const CATEGORY: Category = Category::Custom;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_event_is_released_once_its_deliveries_are_counted() {
    // Mailbox tasks release delivered events in bursts; the burst must be released before the
    // deliveries are counted, so an idle bus holds no reference to an event it delivered.
    let bus = Bus::builder().build().unwrap();
    for i in 0..3 {
        let t = EventType::new(
            <DropProbe as plugbus::TypedEvent>::EVENT_TYPE,
            Category::Custom,
        );
        bus.subscribe(t.unwrap())
            .name(format!("sub-{i}"))
            .handle(|_: &Event| {})
            .unwrap();
    }
    for round in 1..=50 {
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = DropProbe {
            drops: Arc::clone(&drops),
        };
        let event = Event::new(probe).unwrap();
        bus.emit(event).await.unwrap();
        assert!(bus.wait_idle(Duration::from_secs(5)).await);
        // The probe given to the event was moved in; its one drop is the event's release.
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "round {round}: event still held"
        );
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_balanced(), "{report:?}");
}

/// A mailbox task whose handlers are slow gives its worker back within its time slice, so the
/// other tasks of that worker run between its deliveries instead of waiting for a fixed count
/// of them (128 used to be the count: with a handler of 200 µs, 26 ms without a break).
#[tokio::test(flavor = "current_thread")]
async fn a_mailbox_task_with_slow_handlers_lets_the_other_tasks_of_its_worker_run() {
    const EVENTS: usize = 200;
    let bus = Bus::builder().mailbox_capacity(EVENTS).build().unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&handled);
    bus.subscribe(EventType::DATA_CREATED)
        .handle(move |_: &Event| {
            std::thread::sleep(Duration::from_micros(200));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for _ in 0..EVENTS {
        bus.try_emit(ev(EventType::DATA_CREATED)).unwrap();
    }
    // One thread: whenever this task runs, the mailbox task is between two polls.
    let watcher = tokio::spawn({
        let handled = Arc::clone(&handled);
        async move {
            let mut seen = Vec::new();
            loop {
                let n = handled.load(Ordering::SeqCst);
                seen.push(n);
                if n == EVENTS {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        }
    });
    let seen = watcher.await.unwrap();
    let longest = seen.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        seen[0] < 64 && longest < 64,
        "the mailbox task kept the thread for up to {longest} deliveries of 200 µs (first look: {})",
        seen[0]
    );
    assert!(bus.wait_idle(Duration::from_secs(10)).await);
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_balanced(), "{report:#?}");
}
