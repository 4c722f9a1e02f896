//! `plugbus trace` over the demo's real audit log, written by the real plugins through the
//! real binary: the brute-force alert's causation tree, the formats, a correlation, and a
//! clear error for an id that is not in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plugbus_tests::{crates, plugbus_binary, PluginDir};

use plugbus_tests::output_text as text;

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

/// The first record whose line contains every needle.
fn record(log: &Path, needles: &[&str]) -> serde_json::Value {
    let all = std::fs::read_to_string(log).unwrap();
    let line = all
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no record with {needles:?}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_brute_force_alert_traces_back_to_the_failed_login_that_triggered_it() {
    let (_dir, log) = demo_log();
    let alert = record(&log, &["\"security.alert\"", "brute_force_user"]);
    let id = alert["event_id"].as_str().unwrap();
    let trigger = alert["data"]["trigger_event_id"].as_str().unwrap();
    let logs = log.to_str().unwrap();

    let out = plugbus(&["trace", id, "--log", logs]);
    let tree = text(&out);
    assert_eq!(out.status.code(), Some(0), "{tree}");
    let lines: Vec<&str> = tree.lines().collect();
    assert!(
        lines[0].starts_with("user.login_failed") && lines[0].contains(trigger),
        "the root is the failed login that tripped the threshold: {tree}"
    );
    assert!(lines[0].contains("origin=local"), "{tree}");
    let at = lines.iter().position(|l| l.contains(id)).unwrap();
    assert!(lines[at].contains("security.alert") && lines[at].contains("<== this event"));
    assert!(lines[at].contains("origin=plugin:auth-enhancer"), "{tree}");
    assert!(lines[at].contains("after its cause"), "{tree}");

    let json = plugbus(&["trace", id, "--log", logs, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["target"], id);
    let events = v["events"].as_array().unwrap();
    let me = events.iter().find(|e| e["id"] == id).unwrap();
    assert_eq!(me["parent"], trigger);

    let mermaid = text(&plugbus(&[
        "trace", id, "--log", logs, "--format", "mermaid",
    ]));
    assert!(
        mermaid.starts_with("flowchart TD") && mermaid.contains("-->"),
        "{mermaid}"
    );
    let dot = text(&plugbus(&["trace", id, "--log", logs, "--format", "dot"]));
    assert!(
        dot.starts_with("digraph trace") && dot.contains("->"),
        "{dot}"
    );

    // The whole correlation of the trigger: at least it and the alerts it caused.
    let corr = alert["correlation_id"].as_str().unwrap();
    let out = plugbus(&["trace", "--correlation", corr, "--log", logs]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(trigger) && all.contains(id), "{all}");
}

#[test]
fn an_id_that_is_not_in_the_log_is_a_clear_error() {
    let (_dir, log) = demo_log();
    let logs = log.to_str().unwrap();
    let out = plugbus(&[
        "trace",
        "01a231c2-0000-7000-8000-000000000000",
        "--log",
        logs,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not in the log"), "{}", text(&out));
    let out = plugbus(&["trace", "not-an-id", "--log", logs]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not an event id"), "{}", text(&out));
}
