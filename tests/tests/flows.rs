//! `plugbus flows` over the demo's real audit log and the real plugins through the real binary:
//! the receivers the plugins declare and the binary's own, the observed publisher -> type ->
//! receiver edges with their counts, the formats, and a log left untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use plugbus_tests::output_text as text;
use plugbus_tests::{crates, plugbus_binary, PluginDir};

fn plugbus(args: &[&str]) -> Output {
    Command::new(plugbus_binary()).args(args).output().unwrap()
}

/// Runs the demo with both bundled plugins; returns the folder and its audit log.
fn demo_log() -> (PluginDir, PathBuf) {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let log = dir.scratch().join("audit.jsonl");
    let out = plugbus(&[
        "demo",
        "-p",
        dir.path().to_str().unwrap(),
        "--audit-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (dir, log)
}

/// Records of the log whose line contains `needle`.
fn count(log: &std::path::Path, needle: &str) -> u64 {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .count() as u64
}

#[test]
fn the_demo_map_shows_who_publishes_and_who_receives_what() {
    let (dir, log) = demo_log();
    let plugins = dir.path().to_str().unwrap();
    let logs = log.to_str().unwrap();
    // The audit logger pointed at the very log being read: flows must not write to it.
    let config = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config,
        format!("[plugin.audit-logger]\nconfig = {{ path = {logs:?} }}\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let before = std::fs::read(&log).unwrap();

    let out = plugbus(&[
        "--config", config, "flows", "-p", plugins, "--log", logs, "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let map: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "flows changed the log"
    );

    // Receivers: the plugins' declared subscriptions and the binary's own.
    let receivers = map["receivers"].as_array().unwrap();
    let receiver = |name: &str| {
        receivers
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no receiver {name}: {map:#}"))
    };
    let auth = receiver("auth-enhancer/0");
    assert_eq!(auth["owner"]["kind"], "plugin");
    assert_eq!(auth["owner"]["name"], "auth-enhancer");
    for t in ["user.login", "user.login_failed", "user.logout"] {
        assert!(
            auth["event_types"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == t),
            "{auth}"
        );
    }
    let audit = receiver("audit-logger/0");
    assert!(
        audit["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "security.*"),
        "{audit}"
    );
    assert_eq!(
        receiver("plugbus-cli/alerts")["owner"]["kind"],
        "in_process"
    );
    receiver("plugbus-cli/event-counter");

    // Observed: the app's failed logins reach the auth enhancer, and its alerts reach the
    // audit logger and the binary's alert watcher, with the log's counts.
    let flows = map["flows"].as_array().unwrap();
    let flow = |publisher: &str, ty: &str| {
        flows
            .iter()
            .find(|f| f["publisher"] == publisher && f["event_type"] == ty)
            .unwrap_or_else(|| panic!("no flow {publisher} -> {ty}: {map:#}"))
    };
    let names = |f: &serde_json::Value| -> Vec<String> {
        f["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    let failed = flow("demo-app", "user.login_failed");
    assert_eq!(failed["count"], count(&log, "\"user.login_failed\""));
    assert_eq!(failed["count"], 12);
    assert!(
        names(failed).contains(&"auth-enhancer/0".to_owned()),
        "{failed}"
    );
    let alerts = flow("plugin:auth-enhancer", "security.alert");
    assert_eq!(alerts["count"], count(&log, "\"security.alert\""));
    assert!(alerts["count"].as_u64().unwrap() >= 1);
    for r in [
        "audit-logger/0",
        "plugbus-cli/alerts",
        "plugbus-cli/event-counter",
    ] {
        assert!(names(alerts).contains(&r.to_owned()), "{alerts}");
    }
    assert!(
        !names(alerts).contains(&"auth-enhancer/0".to_owned()),
        "{alerts}"
    );
    let logins = flow("demo-app", "user.login");
    assert!(!names(logins).contains(&"plugbus-cli/alerts".to_owned()));
    let events: u64 = flows.iter().map(|f| f["count"].as_u64().unwrap()).sum();
    assert_eq!(map["events_read"], events);
    assert_eq!(events, count(&log, "\"event_id\""));

    // The table names the same edges.
    let out = plugbus(&["--config", config, "flows", "-p", plugins, "--log", logs]);
    let table = text(&out);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("Receivers") && table.contains("Observed flows"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains("plugin:auth-enhancer") && l.contains("security.alert"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("plugbus-cli/alerts") && row.contains("audit-logger/0"),
        "{row}"
    );

    // Mermaid and DOT.
    let out = plugbus(&["flows", "-p", plugins, "--log", logs, "--format", "mermaid"]);
    let m = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(m.starts_with("flowchart LR\n"), "{m}");
    assert!(m.contains("([\"plugin:auth-enhancer\"])"), "{m}");
    assert!(m.contains("{{\"security.alert\"}}"), "{m}");
    assert!(m.contains("-->|12|"), "{m}");
    let out = plugbus(&["flows", "-p", plugins, "--log", logs, "--format", "dot"]);
    let d = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        d.starts_with("digraph flows {") && d.contains("[label=\"12\"]"),
        "{d}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "flows changed the log"
    );
}

#[test]
fn without_a_log_the_map_is_the_receivers_and_a_missing_log_is_an_error() {
    let dir = PluginDir::new();
    dir.add(crates::AUTH_ENHANCER);
    let plugins = dir.path().to_str().unwrap();
    let out = plugbus(&["flows", "-p", plugins]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("auth-enhancer/0") && t.contains("user.login_failed"),
        "{t}"
    );
    assert!(t.contains("no observed flows"), "{t}");
    let out = plugbus(&["flows", "-p", plugins, "--format", "mermaid"]);
    let m = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(m.starts_with("flowchart LR\n") && m.contains("-.->"), "{m}");

    let missing = dir.scratch().join("no-such.jsonl");
    let out = plugbus(&["flows", "-p", plugins, "--log", missing.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("no-such.jsonl"), "{t}");
}
