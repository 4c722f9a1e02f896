//! W3C trace context through real plugin `.so` files: what a plugin publishes while handling a
//! traced event continues its trace (two levels deep through the re-entrant fixture, and the
//! auth enhancer's alert; and from a plugin in a child process of its own), the audit logger
//! sees and records the traceparent and tracestate, a bad traceparent from an input line is
//! never carried, an untraced event stays untraced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use plugbus::payload::{UserLogin, UserLoginFailed};
use plugbus::{Bus, Event, EventType, Interest, TraceContext};
use plugbus_host::PluginManager;
use plugbus_tests::{crates, plugbus_binary, PluginDir, Recorder};

const WAIT: Duration = Duration::from_secs(10);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn traced_login() -> Event {
    Event::builder_typed(UserLogin {
        user_id: "alice".into(),
        ..Default::default()
    })
    .metadata("traceparent", TRACEPARENT)
    .metadata("tracestate", TRACESTATE)
    .build()
    .unwrap()
}

/// The re-entrant fixture loaded on a fresh bus, with a recorder on `test.*`.
async fn reentrant() -> (PluginDir, Bus, PluginManager, Recorder) {
    reentrant_with("").await
}

/// [`reentrant`] with `config` as the host's configuration.
async fn reentrant_with(config: &str) -> (PluginDir, Bus, PluginManager, Recorder) {
    let dir = PluginDir::new();
    let path = dir.add(crates::REENTRANT);
    let bus = Bus::builder().build().unwrap();
    let echoes = Recorder::subscribe(&bus, Interest::pattern("test.*").unwrap(), "echoes");
    let manager = PluginManager::new(bus.clone(), dir.config(config));
    manager.load_and_start(&path).await.unwrap();
    (dir, bus, manager, echoes)
}

/// The recorded `test.echo` and `test.echo2`, once both arrived.
async fn echoes_of(echoes: &Recorder) -> (Event, Event) {
    assert!(echoes.wait_until(WAIT, |e| e.len() == 2).await);
    let events = echoes.events();
    assert_eq!(echoes.types(), ["test.echo", "test.echo2"]);
    (events[0].clone(), events[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_publishing_two_levels_deep_continues_the_trace() {
    let (_dir, bus, manager, echoes) = reentrant().await;
    let login = traced_login();
    bus.emit(login.clone()).await.unwrap();
    let (echo, echo2) = echoes_of(&echoes).await;

    let root = login.trace_context().unwrap();
    let one = echo.trace_context().expect("test.echo is traced");
    let two = echo2.trace_context().expect("test.echo2 is traced");
    for t in [one, two] {
        assert_eq!(t.trace_id, root.trace_id);
        assert_eq!(t.flags, root.flags);
        assert_eq!(t.tracestate(), Some(TRACESTATE));
    }
    let spans: HashSet<_> = [root.span_id, one.span_id, two.span_id].into();
    assert_eq!(spans.len(), 3, "a span id per event");
    assert_eq!(echo.causation_id(), Some(login.id()));
    assert_eq!(echo2.causation_id(), Some(echo.id()));
    // As text too, as the audit log and a broker would carry it.
    let json: serde_json::Value = serde_json::from_slice(&echo2.to_json().unwrap()).unwrap();
    assert_eq!(json["metadata"]["traceparent"], two.traceparent());
    assert_eq!(json["metadata"]["tracestate"], TRACESTATE);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_in_a_child_process_continues_the_trace_too() {
    plugbus_host::isolation::enable(plugbus_binary());
    let (_dir, bus, manager, echoes) = reentrant_with("[plugins]\nisolation = \"process\"\n").await;
    let login = traced_login();
    bus.emit(login.clone()).await.unwrap();
    let (echo, echo2) = echoes_of(&echoes).await;
    let root = login.trace_context().unwrap();
    let (one, two) = (
        echo.trace_context().unwrap(),
        echo2.trace_context().unwrap(),
    );
    for t in [one, two] {
        assert_eq!(t.trace_id, root.trace_id);
        assert_eq!(t.tracestate(), Some(TRACESTATE));
    }
    let spans: HashSet<_> = [root.span_id, one.span_id, two.span_id].into();
    assert_eq!(spans.len(), 3, "a span id per event");
    assert_eq!(echo2.causation_id(), Some(echo.id()));
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_traceparent_from_input_is_never_carried() {
    let (_dir, bus, manager, echoes) = reentrant().await;
    let bad = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
    let line = format!(
        r#"{{"type":"user.login","data":{{"user_id":"alice"}},"metadata":{{"traceparent":"{bad}","tracestate":"evil=1"}}}}"#
    );
    let login = Event::from_json(line.as_bytes()).unwrap();
    let restarted = login.trace_context().expect("the trace restarts").clone();
    assert_ne!(restarted.traceparent(), bad);
    assert_eq!(restarted.tracestate(), None);
    bus.emit(login).await.unwrap();
    let (echo, echo2) = echoes_of(&echoes).await;
    for e in [&echo, &echo2] {
        let t = e.trace_context().unwrap();
        assert_eq!(t.trace_id, restarted.trace_id);
        assert_eq!(t.tracestate(), None);
        let text = String::from_utf8(e.to_json().unwrap()).unwrap();
        assert!(!text.contains(bad) && !text.contains("evil"), "{text}");
    }
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untraced_event_stays_untraced_through_a_plugin() {
    let (_dir, bus, manager, echoes) = reentrant().await;
    let login = Event::new(UserLogin {
        user_id: "alice".into(),
        ..Default::default()
    })
    .unwrap();
    bus.emit(login.clone()).await.unwrap();
    let (echo, echo2) = echoes_of(&echoes).await;
    assert!(echo.trace_context().is_none() && echo2.trace_context().is_none());
    assert_eq!(echo2.correlation_id(), Some(login.id()));
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brute_force_alert_continues_the_trace_and_the_audit_log_records_it() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let audit = dir.scratch().join("audit.jsonl");
    let config = format!(
        r#"
[plugin.audit-logger]
config = {{ path = "{}", fsync = "never" }}

[plugin.auth-enhancer]
config = {{ max_failures = 3, failure_window_secs = 300 }}
"#,
        audit.display()
    );
    let bus = Bus::builder().build().unwrap();
    let alerts = Recorder::subscribe(&bus, EventType::SECURITY_ALERT, "alerts");
    let manager = PluginManager::new(bus.clone(), dir.config(&config));
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);

    // Three failed logins, each in a trace of its own; the third trips the detector.
    let mut traces = Vec::new();
    for _ in 0..3 {
        let trace = TraceContext::new_root().with_state(Some(TRACESTATE.parse().unwrap()));
        let failed = Event::builder_typed(UserLoginFailed {
            user_id: "mallory".into(),
            ip: "10.6.6.6".into(),
            ..Default::default()
        })
        .trace_context(trace.clone())
        .build()
        .unwrap();
        traces.push((failed.id(), trace));
        bus.emit(failed).await.unwrap();
    }
    assert!(alerts.wait_until(WAIT, |e| !e.is_empty()).await);
    let alert = alerts.events()[0].clone();
    let cause = alert.causation_id().expect("the alert names its cause");
    let (_, cause_trace) = traces.iter().find(|(id, _)| *id == cause).unwrap();
    let t = alert.trace_context().expect("the alert is traced");
    assert_eq!(
        t.trace_id, cause_trace.trace_id,
        "the trace of the login that tripped it"
    );
    assert_ne!(t.span_id, cause_trace.span_id);
    assert_eq!(t.tracestate(), Some(TRACESTATE));

    bus.shutdown(Duration::from_secs(5)).await;
    manager.shutdown().await;
    // The audit logger saw the trace context as metadata and kept it.
    let log = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let recorded = |id: String| {
        records
            .iter()
            .find(|r| r["event_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not in the audit log"))
            .clone()
    };
    let alert_record = recorded(alert.id().to_string());
    assert_eq!(alert_record["metadata"]["traceparent"], t.traceparent());
    assert_eq!(alert_record["metadata"]["tracestate"], TRACESTATE);
    let cause_record = recorded(cause.to_string());
    assert_eq!(
        cause_record["metadata"]["traceparent"],
        cause_trace.traceparent()
    );
}
