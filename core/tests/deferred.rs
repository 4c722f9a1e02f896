//! Deferred handlers: completions finished on another thread, in order, under the timeout,
//! retry, panic and shutdown rules every other handler follows. Real bus, real threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use plugbus::{Bus, Completion, DeadLetterReason, Event, EventType, HandlerError, RetryPolicy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

fn numbered(i: usize) -> Event {
    Event::builder(EventType::DATA_CREATED)
        .metadata("n", &i.to_string())
        .build()
        .unwrap()
}

fn n(e: &Event) -> usize {
    e.metadata().get("n").unwrap().parse().unwrap()
}

/// Where a test's handler sends its work, and the order the worker saw the events in.
type Work = (mpsc::Sender<(Event, Completion)>, Arc<Mutex<Vec<usize>>>);

/// A worker thread that finishes each completion with what `answer` says (None: keep it open
/// forever), recording the order it saw the events in.
fn worker(answer: impl Fn(usize) -> Option<Result<(), HandlerError>> + Send + 'static) -> Work {
    let (tx, rx) = mpsc::channel::<(Event, Completion)>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for (event, done) in rx {
            s.lock().push(n(&event));
            match answer(n(&event)) {
                Some(r) => {
                    done.finish(r);
                }
                None => kept.push(done),
            }
        }
    });
    (tx, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_from_another_thread_deliver_everything_in_order() {
    let bus = Bus::builder().mailbox_capacity(256).build().unwrap();
    let (tx, seen) = worker(|_| Some(Ok(())));
    let tx = Mutex::new(tx);
    let id = bus
        .subscribe(EventType::DATA_CREATED)
        .name("deferred")
        .max_in_flight(64)
        .handle_deferred(move |e: &Event, done: Completion| {
            tx.lock().send((e.clone(), done)).unwrap();
        })
        .unwrap();
    for i in 0..5_000 {
        bus.emit(numbered(i)).await.unwrap();
    }
    assert!(bus.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(*seen.lock(), (0..5_000).collect::<Vec<_>>());
    let stats = bus.subscription_stats(id).unwrap();
    assert_eq!(stats.totals.delivered, 5_000);
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(report.totals.delivered, 5_000);
}

/// One open delivery at a time, answered at once from another thread: the mailbox task must
/// notice room that appears while it is between a pop and its wait (no push will tell it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_that_appears_between_pop_and_wait_is_not_missed() {
    let bus = Bus::builder().mailbox_capacity(10_000).build().unwrap();
    let (tx, seen) = worker(|_| Some(Ok(())));
    let tx = Mutex::new(tx);
    bus.subscribe(EventType::DATA_CREATED)
        .max_in_flight(1)
        .handle_deferred(move |e: &Event, done: Completion| {
            tx.lock().send((e.clone(), done)).unwrap();
        })
        .unwrap();
    for i in 0..10_000 {
        bus.try_emit(numbered(i)).unwrap();
    }
    assert!(bus.wait_idle(Duration::from_secs(20)).await);
    assert_eq!(seen.lock().len(), 10_000);
    assert!(bus.shutdown(Duration::from_secs(1)).await.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_delivery_times_out_once_and_a_late_finish_is_refused() {
    let bus = Bus::builder().build().unwrap();
    let kept: Arc<Mutex<Vec<Completion>>> = Arc::default();
    let k = Arc::clone(&kept);
    let id = bus
        .subscribe(EventType::DATA_CREATED)
        .name("slow")
        .timeout(Duration::from_millis(50))
        .max_in_flight(8)
        .handle_deferred(move |e: &Event, done: Completion| {
            if n(e) % 2 == 0 {
                done.finish(());
            } else {
                k.lock().push(done);
            }
        })
        .unwrap();
    for i in 0..10 {
        bus.emit(numbered(i)).await.unwrap();
    }
    assert!(bus.wait_idle(Duration::from_secs(5)).await);
    let stats = bus.subscription_stats(id).unwrap();
    assert_eq!(stats.totals.delivered, 5);
    assert_eq!(stats.totals.timed_out, 5);
    assert_eq!(stats.totals.dead_lettered, 5);
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 5);
    assert!(letters
        .iter()
        .all(|l| matches!(l.reason, DeadLetterReason::TimedOut(_)) && n(&l.event) % 2 == 1));
    let late: Vec<Completion> = std::mem::take(&mut *kept.lock());
    assert_eq!(late.len(), 5);
    for done in late {
        assert!(done.is_abandoned());
        assert!(!done.finish(()), "a late answer must not count");
    }
    let stats = bus.subscription_stats(id).unwrap();
    assert_eq!((stats.totals.delivered, stats.totals.timed_out), (5, 5));
    assert!(bus.shutdown(Duration::from_secs(1)).await.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_and_dropped_or_panicking_completions_fail() {
    let bus = Bus::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let (tx, _seen) = worker(move |i| {
        let call = c.fetch_add(1, Ordering::SeqCst);
        Some(match i {
            // Event 0 fails retryably on its first call only.
            0 if call == 0 => Err(HandlerError::retryable("busy")),
            1 => Err(HandlerError::permanent("bad")),
            _ => Ok(()),
        })
    });
    let tx = Mutex::new(tx);
    let id = bus
        .subscribe(EventType::DATA_CREATED)
        .name("flaky")
        .retry(RetryPolicy::new(3).initial_backoff(Duration::from_millis(1)))
        .max_in_flight(4)
        .handle_deferred(move |e: &Event, done: Completion| match n(e) {
            2 => drop(done),
            3 => panic!("deferred boom"),
            _ => tx.lock().send((e.clone(), done)).unwrap(),
        })
        .unwrap();
    for i in 0..5 {
        bus.emit(numbered(i)).await.unwrap();
    }
    assert!(bus.wait_idle(Duration::from_secs(5)).await);
    let t = bus.subscription_stats(id).unwrap().totals;
    assert_eq!(t.delivered, 2, "{t:?}"); // 0 (after a retry) and 4
    assert_eq!(t.retried, 1, "{t:?}");
    assert_eq!(t.errors, 2, "{t:?}"); // 1 (permanent) and 2 (dropped)
    assert_eq!(t.panicked, 1, "{t:?}");
    let reasons: Vec<String> = bus
        .dead_letters()
        .iter()
        .map(|l| format!("{}: {:?}", n(&l.event), l.reason))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons
        .iter()
        .any(|r| r.starts_with("2:") && r.contains("without finishing")));
    assert!(reasons
        .iter()
        .any(|r| r.starts_with("3:") && r.contains("panicked")));
    assert!(bus.shutdown(Duration::from_secs(1)).await.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_dead_letters_open_deliveries_and_balances() {
    let bus = Bus::builder().build().unwrap();
    let (tx, _seen) = worker(|i| if i < 3 { Some(Ok(())) } else { None });
    let tx = Mutex::new(tx);
    bus.subscribe(EventType::DATA_CREATED)
        .name("stuck")
        .timeout(Duration::from_secs(600))
        .max_in_flight(16)
        .handle_deferred(move |e: &Event, done: Completion| {
            tx.lock().send((e.clone(), done)).unwrap();
        })
        .unwrap();
    for i in 0..10 {
        bus.emit(numbered(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = bus.shutdown(Duration::from_millis(100)).await;
    assert!(report.deadline_reached);
    assert!(report.is_balanced(), "{report:?}");
    assert_eq!(report.totals.delivered, 3);
    assert_eq!(report.totals.shutdown, 7);
    assert_eq!(report.dead_lettered_at_shutdown, 7);
}

#[tokio::test]
async fn publish_waits_for_a_deferred_handler_and_reports_its_outcome() {
    let bus = Bus::builder().build().unwrap();
    let (tx, _seen) = worker(|i| Some(if i == 0 { Ok(()) } else { Err("no".into()) }));
    let tx = Mutex::new(tx);
    bus.subscribe(EventType::DATA_CREATED)
        .handle_deferred(move |e: &Event, done: Completion| {
            tx.lock().send((e.clone(), done)).unwrap();
        })
        .unwrap();
    let ok = bus.publish(numbered(0)).await.unwrap();
    assert!(ok.all_delivered());
    let failed = bus.publish(numbered(1)).await.unwrap();
    assert_eq!(failed.failures().count(), 1);
}
