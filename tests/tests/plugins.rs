//! Both bundled plugins, loaded from their `.so` files, end to end through the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use plugbus::payload::{
    DataChange, DataCreated, DataUpdated, UserLogin, UserLoginFailed, UserLogout,
};
use plugbus::{Bus, Event, EventType, TypedEvent};
use plugbus_host::{verify_file, PluginManager, PluginState, VerifyErrorKind};
use plugbus_tests::{crates, wait_until, PluginDir, Recorder};

const WAIT: Duration = Duration::from_secs(10);

fn config_text(audit_path: &Path) -> String {
    format!(
        r#"
[plugin.audit-logger]
config = {{ path = "{}", fsync = "never" }}

[plugin.auth-enhancer]
config = {{ max_failures = 10, failure_window_secs = 300, alert_new_address = true }}
"#,
        audit_path.display()
    )
}

async fn start(dir: &PluginDir, audit_path: &Path) -> (Bus, PluginManager, Recorder) {
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let bus = Bus::builder().build().unwrap();
    let alerts = Recorder::subscribe(&bus, EventType::SECURITY_ALERT, "test-alerts");
    let manager = PluginManager::new(bus.clone(), dir.config(&config_text(audit_path)));
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.started, ["audit-logger", "auth-enhancer"]);
    (bus, manager, alerts)
}

fn login(user: &str, ip: &str) -> Event {
    Event::new(UserLogin {
        user_id: user.into(),
        ip: ip.into(),
        ..Default::default()
    })
    .unwrap()
}

fn failed(user: &str, ip: &str) -> Event {
    Event::new(UserLoginFailed {
        user_id: user.into(),
        ip: ip.into(),
        ..Default::default()
    })
    .unwrap()
}

fn change(entity_id: &str) -> DataChange {
    DataChange {
        entity: "invoice".into(),
        entity_id: entity_id.into(),
        ..Default::default()
    }
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Publishes the scenario; returns the ids of the ten failures.
async fn scenario(bus: &Bus) -> Vec<plugbus::EventId> {
    bus.emit(login("alice", "10.0.0.1")).await.unwrap();
    bus.emit(Event::new(DataCreated(change("INV-1"))).unwrap())
        .await
        .unwrap();
    bus.emit(Event::new(DataUpdated(change("INV-1"))).unwrap())
        .await
        .unwrap();
    bus.emit(
        Event::new(UserLogout {
            user_id: "alice".into(),
            ..Default::default()
        })
        .unwrap(),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        let event = failed(&format!("user{n}"), "203.0.113.9");
        ids.push(event.id());
        bus.emit(event).await.unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_the_scenario_and_the_alert_with_its_causation() {
    let dir = PluginDir::new();
    let audit_path = dir.scratch().join("audit.jsonl");
    let (bus, manager, alerts) = start(&dir, &audit_path).await;

    let failures = scenario(&bus).await;

    // Exactly one alert: brute force from the address, caused by the tenth failure.
    assert!(alerts.wait_until(WAIT, |e| !e.is_empty()).await);
    // 2 lifecycle (plugin.started x2) + 4 + 10 failures + 1 alert.
    let expected = 17;
    assert!(
        wait_until(WAIT, || manager
            .status("audit-logger")
            .is_some_and(|s| s.counters.delivered == expected))
        .await,
        "{:?}",
        manager.status("audit-logger")
    );
    let alert_events = alerts.events();
    assert_eq!(alert_events.len(), 1, "{alert_events:?}");
    let alert = &alert_events[0];
    let payload: serde_json::Value = serde_json::from_slice(alert.data_json().unwrap()).unwrap();
    assert_eq!(payload["reason"], "brute_force_ip");
    assert_eq!(payload["ip"], "203.0.113.9");
    assert_eq!(payload["count"], 10);
    assert_eq!(alert.causation_id(), Some(failures[9]));
    assert_eq!(alert.correlation_id(), Some(failures[9]));
    assert_eq!(alert.source(), "auth-enhancer");

    bus.shutdown(Duration::from_secs(5)).await;
    manager.shutdown().await;

    let records = records(&audit_path);
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    let mut want = vec!["plugin.started", "plugin.started"];
    want.extend(["user.login", "data.created", "data.updated", "user.logout"]);
    want.extend(std::iter::repeat_n("user.login_failed", 10));
    want.push("security.alert");
    assert_eq!(types, want);
    assert_eq!(records[0]["data"]["name"], "audit-logger");
    assert_eq!(records[1]["data"]["name"], "auth-enhancer");
    let last = records.last().unwrap();
    assert_eq!(last["event_id"], alert.id().to_string());
    assert_eq!(last["causation_id"], failures[9].to_string());
    assert_eq!(records[15]["event_id"], failures[9].to_string());

    let report = verify_file(&audit_path).unwrap();
    assert_eq!(report.records, 17);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(17));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_audit_record_is_detected() {
    let dir = PluginDir::new();
    let audit_path = dir.scratch().join("audit.jsonl");
    let (bus, manager, _alerts) = start(&dir, &audit_path).await;
    bus.emit(login("alice", "10.0.0.1")).await.unwrap();
    bus.emit(login("bob", "10.0.0.2")).await.unwrap();
    assert!(
        wait_until(WAIT, || manager
            .status("audit-logger")
            .is_some_and(|s| s.counters.delivered == 4))
        .await
    );
    bus.shutdown(Duration::from_secs(5)).await;
    manager.shutdown().await;
    verify_file(&audit_path).unwrap();

    let text = std::fs::read_to_string(&audit_path).unwrap();
    let tampered = text.replacen("\"alice\"", "\"mallory\"", 1);
    assert_ne!(text, tampered);
    std::fs::write(&audit_path, tampered).unwrap();
    let err = verify_file(&audit_path).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(
        matches!(err.kind, VerifyErrorKind::HashMismatch { .. }),
        "{err}"
    );

    // Removing a record breaks the chain at the next one.
    let lines: Vec<&str> = text.lines().collect();
    let removed: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&audit_path, removed).unwrap();
    let err = verify_file(&audit_path).unwrap_err();
    assert!(matches!(err.kind, VerifyErrorKind::SeqGap { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plugins_in_one_process_are_really_two() {
    let dir = PluginDir::new();
    let audit_path = dir.scratch().join("audit.jsonl");
    let (bus, manager, alerts) = start(&dir, &audit_path).await;
    let plugins = manager.plugins();
    let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["audit-logger", "auth-enhancer"]);
    assert_ne!(plugins[0].sha256, plugins[1].sha256);
    assert_ne!(plugins[0].instance, plugins[1].instance);
    assert!(plugins.iter().all(|p| p.state == PluginState::Running));
    assert_eq!(plugins[0].subscriptions, ["audit-logger/0"]);
    assert_eq!(plugins[1].subscriptions, ["auth-enhancer/0"]);

    // Each behaves as itself: the enhancer alerts, the logger records.
    for n in 0..10 {
        bus.emit(failed(&format!("u{n}"), "198.51.100.7"))
            .await
            .unwrap();
    }
    assert!(alerts.wait_until(WAIT, |e| e.len() == 1).await);
    assert!(
        wait_until(WAIT, || manager
            .status("audit-logger")
            .is_some_and(|s| s.counters.delivered == 13))
        .await
    );
    // The enhancer's counters move just after the bus took its alert and it answered.
    assert!(
        wait_until(WAIT, || manager.status("auth-enhancer").is_some_and(|s| s
            .counters
            .delivered
            == 10
            && s.counters.published == 1))
        .await,
        "{:?}",
        manager.status("auth-enhancer").map(|s| s.counters)
    );
    let enhancer = manager.status("auth-enhancer").unwrap();
    assert_eq!(enhancer.counters.delivered, 10);
    assert_eq!(enhancer.counters.published, 1);
    assert_eq!(
        manager.status("audit-logger").unwrap().counters.published,
        0
    );
    let inspected: Vec<String> = [crates::AUDIT_LOGGER, crates::AUTH_ENHANCER]
        .iter()
        .map(|c| {
            plugbus_host::inspect(&dir.path().join(plugbus_tests::library_file_name(c)))
                .meta
                .unwrap()
                .name
        })
        .collect();
    assert_eq!(inspected, ["audit-logger", "auth-enhancer"]);
    bus.shutdown(Duration::from_secs(5)).await;
    manager.shutdown().await;
    assert!(manager.plugins().is_empty());
    let _ = UserLoginFailed::EVENT_TYPE;
}
