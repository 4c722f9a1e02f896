//! W3C trace context through a real bus: two levels of re-entrant publishing by sync handlers
//! (`publish`), async handlers (`emit` and mailboxes), blocking, deferred and retried handlers;
//! explicit, copied, invalid and absent traceparents; the JSON envelope.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use plugbus::trace_context::{SpanId, TraceFlags, TraceId};
use plugbus::{
    Bus, Category, Completion, Event, EventType, HandlerError, RetryPolicy, TraceContext,
    TraceState,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn ty(name: &str) -> EventType {
    EventType::new(name, Category::Custom).unwrap()
}

fn traced_root(name: &str) -> Event {
    Event::builder(ty(name))
        .metadata("traceparent", TRACEPARENT)
        .metadata("tracestate", TRACESTATE)
        .build()
        .unwrap()
}

type Seen = Arc<Mutex<Vec<Event>>>;

/// Records every event of `types` that reaches the bus.
fn record(bus: &Bus, types: &[EventType]) -> Seen {
    let seen: Seen = Arc::default();
    for &t in types {
        let s = Arc::clone(&seen);
        bus.subscribe(t)
            .name(format!("record-{}", t.name()))
            .handle(move |e: &Event| s.lock().push(e.clone()))
            .unwrap();
    }
    seen
}

/// Waits until an event of type `t` was recorded (at most 5 s).
async fn wait_for(seen: &Seen, t: EventType) {
    for _ in 0..500 {
        if seen.lock().iter().any(|e| e.event_type() == t) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn find(seen: &Seen, t: EventType) -> Event {
    seen.lock()
        .iter()
        .find(|e| e.event_type() == t)
        .cloned()
        .unwrap_or_else(|| panic!("no {} seen", t.name()))
}

/// root -> one -> two continue one trace: same trace id, flags and tracestate, a fresh span id
/// at every level, causation ids in a chain.
fn assert_chain(root: &Event, one: &Event, two: &Event) {
    let r = root.trace_context().expect("root traced");
    let a = one.trace_context().expect("level 1 traced");
    let b = two.trace_context().expect("level 2 traced");
    assert_eq!(a.trace_id, r.trace_id);
    assert_eq!(b.trace_id, r.trace_id);
    assert_eq!(a.flags, r.flags);
    assert_eq!(b.flags, r.flags);
    assert_eq!(a.tracestate(), Some(TRACESTATE));
    assert_eq!(b.tracestate(), Some(TRACESTATE));
    let spans: HashSet<SpanId> = [r.span_id, a.span_id, b.span_id].into();
    assert_eq!(spans.len(), 3, "every event has its own span id");
    assert_eq!(one.causation_id(), Some(root.id()));
    assert_eq!(two.causation_id(), Some(one.id()));
    // The text forms agree with the parsed one.
    let text: Vec<(String, String)> = two
        .metadata_pairs()
        .map(|(k, v)| (k.to_owned(), v.into_owned()))
        .collect();
    assert!(text.contains(&("traceparent".into(), b.traceparent())));
    assert!(text.contains(&("tracestate".into(), TRACESTATE.into())));
    assert_eq!(plugbus::context::current(), None, "context does not leak");
}

#[tokio::test]
async fn sync_handlers_publishing_two_levels_deep_continue_the_trace() {
    let bus = Bus::builder().build().unwrap();
    let (root_t, one_t, two_t) = (ty("sync.root"), ty("sync.one"), ty("sync.two"));
    for (from, to) in [(root_t, one_t), (one_t, two_t)] {
        let b = bus.clone();
        bus.subscribe(from)
            .handle(move |_: &Event| {
                // `publish` from inside a sync handler: the nested future is driven right here.
                let e = Event::builder(to).build().unwrap();
                let report = futures_util::FutureExt::now_or_never(b.publish(e));
                assert!(report.is_some(), "sync-only fan-out finishes in one poll");
            })
            .unwrap();
    }
    let seen = record(&bus, &[one_t, two_t]);
    let root = traced_root("sync.root");
    bus.publish(&root).await.unwrap();
    assert_chain(&root, &find(&seen, one_t), &find(&seen, two_t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handlers_through_mailboxes_continue_the_trace() {
    let bus = Bus::builder().build().unwrap();
    let (root_t, one_t, two_t) = (ty("async.root"), ty("async.one"), ty("async.two"));
    for (from, to) in [(root_t, one_t), (one_t, two_t)] {
        let b = bus.clone();
        bus.subscribe(from)
            .handle_async(move |_: Event| {
                let b = b.clone();
                async move {
                    // Across an await point, and on whichever worker thread resumes us.
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    b.emit(Event::builder(to).build().unwrap()).await.unwrap();
                }
            })
            .unwrap();
    }
    let seen = record(&bus, &[one_t, two_t]);
    let root = traced_root("async.root");
    bus.emit(root.clone()).await.unwrap();
    wait_for(&seen, two_t).await;
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
    assert_chain(&root, &find(&seen, one_t), &find(&seen, two_t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_deferred_handlers_continue_the_trace() {
    let bus = Bus::builder().build().unwrap();
    let (root_t, one_t, two_t) = (ty("mixed.root"), ty("mixed.one"), ty("mixed.two"));
    {
        let b = bus.clone();
        bus.subscribe(root_t)
            .handle_blocking(move |_: &Event| {
                b.try_emit(Event::builder(one_t).build().unwrap()).unwrap();
            })
            .unwrap();
    }
    {
        // A deferred handler hands the event to a worker thread: the cause has to travel with
        // the event (`with_current_cause`), as the plugin host does it.
        let (tx, rx) = std::sync::mpsc::channel::<(Event, Completion)>();
        let b = bus.clone();
        std::thread::spawn(move || {
            for (child, done) in rx {
                b.try_emit(child).unwrap();
                done.finish(());
            }
        });
        let tx = Mutex::new(tx);
        bus.subscribe(one_t)
            .handle_deferred(move |_: &Event, done: Completion| {
                let child = Event::builder(two_t).build().unwrap().with_current_cause();
                tx.lock().send((child, done)).unwrap();
            })
            .unwrap();
    }
    let seen = record(&bus, &[one_t, two_t]);
    let root = traced_root("mixed.root");
    bus.emit(root.clone()).await.unwrap();
    wait_for(&seen, two_t).await;
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
    assert_chain(&root, &find(&seen, one_t), &find(&seen, two_t));
}

#[tokio::test]
async fn a_retried_handler_still_publishes_in_the_trace() {
    let bus = Bus::builder().build().unwrap();
    let (root_t, one_t) = (ty("retry.root"), ty("retry.one"));
    let attempts = Arc::new(Mutex::new(0));
    {
        let b = bus.clone();
        let attempts = Arc::clone(&attempts);
        bus.subscribe(root_t)
            .retry(RetryPolicy::new(3).initial_backoff(Duration::from_millis(1)))
            .handle_async(move |_: Event| {
                let b = b.clone();
                let attempts = Arc::clone(&attempts);
                async move {
                    *attempts.lock() += 1;
                    if *attempts.lock() == 1 {
                        return Err(HandlerError::retryable("not yet"));
                    }
                    b.emit(Event::builder(one_t).build().unwrap())
                        .await
                        .unwrap();
                    Ok(())
                }
            })
            .unwrap();
    }
    let seen = record(&bus, &[one_t]);
    let root = traced_root("retry.root");
    bus.emit(root.clone()).await.unwrap();
    wait_for(&seen, one_t).await;
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
    assert_eq!(*attempts.lock(), 2);
    let one = find(&seen, one_t);
    let (r, a) = (root.trace_context().unwrap(), one.trace_context().unwrap());
    assert_eq!(a.trace_id, r.trace_id);
    assert_ne!(a.span_id, r.span_id);
    assert_eq!(a.tracestate(), Some(TRACESTATE));
}

#[tokio::test]
async fn untraced_events_stay_untraced() {
    let bus = Bus::builder().build().unwrap();
    let (root_t, one_t) = (ty("plain.root"), ty("plain.one"));
    let b = bus.clone();
    bus.subscribe(root_t)
        .handle(move |_: &Event| {
            b.try_emit(Event::builder(one_t).build().unwrap()).unwrap();
        })
        .unwrap();
    let seen = record(&bus, &[one_t]);
    let root = Event::builder(root_t).build().unwrap();
    bus.publish(&root).await.unwrap();
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
    let one = find(&seen, one_t);
    assert_eq!(one.causation_id(), Some(root.id()));
    assert!(one.trace_context().is_none());
    assert!(one.metadata_pairs().all(|(k, _)| !k.starts_with("trace")));
}

#[tokio::test]
async fn explicit_copied_and_invalid_traceparents_inside_a_handler() {
    let bus = Bus::builder().build().unwrap();
    let root_t = ty("kinds.root");
    let (own_t, copied_t, bad_t) = (ty("kinds.own"), ty("kinds.copied"), ty("kinds.bad"));
    let other = TraceContext::new_root();
    {
        let b = bus.clone();
        let other = other.clone();
        bus.subscribe(root_t)
            .handle(move |cause: &Event| {
                let own = Event::builder(own_t).trace_context(other.clone()).build();
                // A publisher that passes on the metadata it was given, traceparent included.
                let mut copied = Event::builder(copied_t);
                for (k, v) in cause.metadata_pairs() {
                    if k.starts_with("trace") {
                        copied = copied.metadata(k, &v);
                    }
                }
                let bad = Event::builder(bad_t)
                    .metadata("traceparent", "00-not-a-trace-01")
                    .metadata("tracestate", "evil=1")
                    .build();
                for e in [own, copied.build(), bad] {
                    b.try_emit(e.unwrap()).unwrap();
                }
            })
            .unwrap();
    }
    let seen = record(&bus, &[own_t, copied_t, bad_t]);
    let root = traced_root("kinds.root");
    let r = root.trace_context().unwrap().clone();
    bus.publish(&root).await.unwrap();
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());

    let own = find(&seen, own_t);
    assert_eq!(
        own.trace_context(),
        Some(&other),
        "an explicit trace context is kept"
    );
    assert_eq!(own.causation_id(), Some(root.id()));

    let copied = find(&seen, copied_t);
    let c = copied.trace_context().unwrap();
    assert_eq!(c.trace_id, r.trace_id);
    assert_ne!(
        c.span_id, r.span_id,
        "a copied traceparent gets its own span id"
    );
    assert_eq!(c.tracestate(), Some(TRACESTATE));

    let bad = find(&seen, bad_t);
    let b = bad.trace_context().unwrap();
    assert_eq!(
        b.trace_id, r.trace_id,
        "an invalid traceparent gives way to the cause's trace"
    );
    assert_ne!(b.span_id, r.span_id);
    assert_eq!(
        b.tracestate(),
        Some(TRACESTATE),
        "the cause's tracestate, not the bad one's"
    );
    assert!(bad
        .metadata_pairs()
        .all(|(_, v)| !v.contains("not-a-trace")));
}

#[test]
fn the_json_envelope_carries_and_validates_the_trace_context() {
    let line = format!(
        r#"{{"type":"user.login","metadata":{{"traceparent":"{TRACEPARENT}","tracestate":" congo=t61rcWkgMzE , rojo=00f067aa0ba902b7","tenant":"acme"}}}}"#
    );
    let e = Event::from_json(line.as_bytes()).unwrap();
    let t = e.trace_context().unwrap();
    assert_eq!(t.traceparent(), TRACEPARENT);
    assert_eq!(t.tracestate(), Some(TRACESTATE), "normalized");
    assert_eq!(e.metadata().get("tenant"), Some("acme"));
    let json: serde_json::Value = serde_json::from_slice(&e.to_json().unwrap()).unwrap();
    assert_eq!(json["metadata"]["traceparent"], TRACEPARENT);
    assert_eq!(json["metadata"]["tracestate"], TRACESTATE);
    let back = Event::from_json(&e.to_json().unwrap()).unwrap();
    assert_eq!(back.trace_context(), e.trace_context());

    // Invalid traceparents from input: never an error, never carried; the trace restarts.
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "garbage",
        "",
    ] {
        let line = format!(
            r#"{{"type":"user.login","metadata":{{"traceparent":"{bad}","tracestate":"congo=1"}}}}"#
        );
        let e = Event::from_json(line.as_bytes()).unwrap();
        let t = e.trace_context().expect("a new trace");
        assert_ne!(
            t.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad}"
        );
        assert_eq!(
            t.tracestate(),
            None,
            "{bad}: no tracestate without its traceparent"
        );
        let out = String::from_utf8(e.to_json().unwrap()).unwrap();
        assert!(bad.is_empty() || !out.contains(bad), "{out}");
    }

    // An invalid tracestate is dropped; the traceparent stays.
    let line = format!(
        r#"{{"type":"user.login","metadata":{{"traceparent":"{TRACEPARENT}","tracestate":"Bad Key=1"}}}}"#
    );
    let e = Event::from_json(line.as_bytes()).unwrap();
    assert_eq!(e.trace_context().unwrap().traceparent(), TRACEPARENT);
    assert_eq!(e.trace_context().unwrap().tracestate(), None);

    // A tracestate without a traceparent means nothing.
    let e = Event::from_json(br#"{"type":"user.login","metadata":{"tracestate":"a=1"}}"#).unwrap();
    assert!(e.trace_context().is_none());
    assert!(e
        .to_json()
        .map(|j| !String::from_utf8_lossy(&j).contains("tracestate"))
        .unwrap());
}

#[test]
fn the_typed_api_builds_what_the_text_says() {
    let trace_id = TraceId::from_bytes([0x4b; 16]).unwrap();
    let span_id = SpanId::from_bytes([0x07; 8]).unwrap();
    let tc = TraceContext::new(trace_id, span_id, TraceFlags::SAMPLED)
        .with_state(Some(TraceState::parse("a=1").unwrap()));
    let e = Event::builder(ty("typed.one"))
        .trace_context(tc.clone())
        .build()
        .unwrap();
    assert_eq!(
        e.metadata_pairs()
            .find(|(k, _)| *k == "traceparent")
            .map(|(_, v)| v.into_owned()),
        Some(format!("00-{}-{}-01", "4b".repeat(16), "07".repeat(8)))
    );
    assert_eq!(e.causation().trace.and_then(|t| t.context()), Some(tc));
}
