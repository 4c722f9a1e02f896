//! Property test: whatever mix of handlers, failures, policies and publishing methods, the
//! shutdown account balances, and its counts agree with what the handlers actually saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus::{Bus, Event, EventType, HandlerError, Overflow, RetryPolicy};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    Fail,
    FailRetryable,
    /// Fails retryably for the first `n` calls of each event, then succeeds.
    Flaky(u8),
    Panic,
    Hang,
    SkipOdd,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sync,
    Async,
    Blocking,
}

#[derive(Debug, Clone)]
struct SubSpec {
    behaviour: Behaviour,
    kind: Kind,
    retry: bool,
    dead_letter: bool,
    overflow: Overflow,
    capacity: usize,
}

#[derive(Debug, Clone, Copy)]
enum Send {
    Publish,
    Emit,
    TryEmit,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        3 => Just(Behaviour::Ok),
        1 => Just(Behaviour::Fail),
        1 => Just(Behaviour::FailRetryable),
        1 => (1u8..3).prop_map(Behaviour::Flaky),
        1 => Just(Behaviour::Panic),
        1 => Just(Behaviour::Hang),
        1 => Just(Behaviour::SkipOdd),
    ]
}

fn sub_spec() -> impl Strategy<Value = SubSpec> {
    (
        behaviour(),
        prop_oneof![Just(Kind::Sync), Just(Kind::Async), Just(Kind::Blocking)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(Overflow::Wait),
            Just(Overflow::Reject),
            Just(Overflow::DropOldest),
            Just(Overflow::DeadLetter)
        ],
        1usize..8,
    )
        .prop_map(
            |(behaviour, kind, retry, dead_letter, overflow, capacity)| SubSpec {
                behaviour,
                kind,
                retry,
                dead_letter,
                overflow,
                capacity,
            },
        )
}

fn run_case(subs: Vec<SubSpec>, sends: Vec<(Send, bool)>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bus = Bus::builder().build().unwrap();
        let succeeded = Arc::new(AtomicU64::new(0));
        let calls_per_event = Arc::new(parking_lot::Mutex::new(std::collections::HashMap::<
            (usize, plugbus::EventId),
            u8,
        >::new()));
        for (i, spec) in subs.iter().enumerate() {
            let b = spec.behaviour;
            let ok = succeeded.clone();
            let calls = calls_per_event.clone();
            let run = move |e: &Event| -> Result<(), HandlerError> {
                match b {
                    Behaviour::Ok | Behaviour::SkipOdd => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                    Behaviour::Fail => Err(HandlerError::permanent("no")),
                    Behaviour::FailRetryable => Err(HandlerError::retryable("again")),
                    Behaviour::Flaky(n) => {
                        let mut c = calls.lock();
                        let k = c.entry((i, e.id())).or_insert(0);
                        *k += 1;
                        if *k > n {
                            ok.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        } else {
                            Err(HandlerError::retryable("flaky"))
                        }
                    }
                    Behaviour::Panic => panic!("boom"),
                    // Outlives its 10 ms timeout: the bus stops waiting and records TimedOut;
                    // the thread's late success is (rightly) not a delivery.
                    Behaviour::Hang => {
                        std::thread::sleep(Duration::from_millis(30));
                        Ok(())
                    }
                }
            };
            let mut builder = bus
                .subscribe(EventType::DATA_CREATED)
                .name(format!("s{i}"))
                .timeout(Duration::from_millis(10))
                .dead_letter(spec.dead_letter)
                .overflow(spec.overflow)
                .mailbox_capacity(spec.capacity);
            if spec.retry {
                builder =
                    builder.retry(RetryPolicy::new(3).initial_backoff(Duration::from_micros(100)));
            }
            if matches!(b, Behaviour::SkipOdd) {
                builder = builder.filter(|e: &Event| e.source() == "even");
            }
            let is_hang = matches!(b, Behaviour::Hang);
            match (spec.kind, is_hang) {
                (Kind::Blocking, _) | (_, true) => {
                    builder.handle_blocking(run).unwrap();
                }
                (Kind::Sync, false) => {
                    builder.handle(run).unwrap();
                }
                (Kind::Async, false) => {
                    let run = Arc::new(run);
                    builder
                        .handle_async(move |e: Event| {
                            let run = run.clone();
                            async move {
                                tokio::task::yield_now().await;
                                run(&e)
                            }
                        })
                        .unwrap();
                }
            }
        }
        let mut accepted_by_me = 0u64;
        for (how, even) in &sends {
            let e = Event::builder(EventType::DATA_CREATED)
                .source(if *even { "even" } else { "odd" })
                .build()
                .unwrap();
            accepted_by_me += 1;
            match how {
                Send::Publish => {
                    bus.publish(e).await.unwrap();
                }
                Send::Emit => {
                    let _ = bus.emit(e).await;
                }
                Send::TryEmit => {
                    let _ = bus.try_emit(e);
                }
            }
        }
        let report = bus.shutdown(Duration::from_secs(10)).await;
        assert!(report.is_balanced(), "unbalanced: {report:#?}");
        assert_eq!(
            report.accepted,
            accepted_by_me + 1,
            "+1 for system.shutdown"
        );
        assert_eq!(report.routed, accepted_by_me);
        assert_eq!(report.deliveries, accepted_by_me * subs.len() as u64);
        assert_eq!(
            report.totals.delivered,
            succeeded.load(Ordering::SeqCst),
            "delivered count equals handler successes: {report:#?}"
        );
        let dl: u64 = bus.dead_letters().len() as u64 + bus.stats().dead_letter_evicted;
        assert_eq!(report.totals.dead_lettered, dl);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_account_balances_for_any_mix(
        subs in prop::collection::vec(sub_spec(), 1..5),
        sends in prop::collection::vec(
            (prop_oneof![Just(Send::Publish), Just(Send::Emit), Just(Send::TryEmit)], any::<bool>()),
            1..40,
        ),
    ) {
        run_case(subs, sends);
    }
}
