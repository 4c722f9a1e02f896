//! Two `plugbus run` processes bridged by a real `nats-server` (started here on a free
//! loopback port with JetStream and a temporary store; skipped, saying so, when no
//! `nats-server` binary is found: `.ci/run` installs Debian's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus_bridge_nats::local_server::LocalServer;
use plugbus_bridge_nats::Outbox;
use plugbus_tests::{crates, plugbus_binary, PluginDir};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

fn server() -> Option<LocalServer> {
    let s = LocalServer::start().expect("starting nats-server");
    if s.is_none() {
        eprintln!(
            "SKIPPED: no nats-server found (install Debian's nats-server, or set NATS_SERVER)"
        );
    }
    s
}

/// A host's config: its plugins (others disabled), its audit log, its bridge.
fn host_config(
    dir: &PluginDir,
    name: &str,
    url: &str,
    plugins: &[&str],
    forward: &str,
    receive: &str,
) -> (PathBuf, PathBuf) {
    let audit = dir.scratch().join(format!("{name}-audit.jsonl"));
    // Each host's own plugin folder, holding only its plugins.
    let plugin_dir = dir.scratch().join(format!("{name}-plugins"));
    std::fs::create_dir_all(&plugin_dir).unwrap();
    for p in plugins {
        let krate = if *p == "audit-logger" {
            crates::AUDIT_LOGGER
        } else {
            crates::AUTH_ENHANCER
        };
        let file = plugbus_tests::library_file_name(krate);
        std::fs::copy(dir.path().join(&file), plugin_dir.join(&file)).unwrap();
    }
    let mut text = format!("[plugins]\ndirectories = [\"{}\"]\n", plugin_dir.display());
    if plugins.contains(&"audit-logger") {
        text.push_str(&format!(
            "[plugin.audit-logger]\nconfig = {{ path = \"{}\" }}\n",
            audit.display()
        ));
    }
    text.push_str(&format!(
        "[bridge.nats]\nurl = \"{url}\"\ndurable = \"{name}\"\nforward = {forward}\nreceive = {receive}\n"
    ));
    let path = dir.scratch().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, audit)
}

fn spawn(config: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

fn finish(child: Child, stdin: ChildStdin) -> String {
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

/// Audited records by type: event id -> (times, origin).
fn audited(path: &Path, event_type: &str) -> HashMap<String, (u32, String)> {
    let mut m: HashMap<String, (u32, String)> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return m;
    };
    for line in text.lines() {
        let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if r["event_type"] == event_type {
            let e = m
                .entry(r["event_id"].as_str().unwrap().to_owned())
                .or_insert((0, r["origin"].as_str().unwrap_or_default().to_owned()));
            e.0 += 1;
        }
    }
    m
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` failed logins per user for `users` users, each from its own network (so only the
/// per-user brute-force rule fires: one alert per user).
fn burst(users: usize, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for u in 0..users {
        for k in 0..n {
            lines.push(format!(
                "{{\"type\":\"user.login_failed\",\"source\":\"web\",\"data\":{{\"user_id\":\"u{u}\",\"ip\":\"10.{u}.{k}.1\",\"reason\":\"bad_password\"}}}}\n"
            ));
        }
    }
    lines
}

#[test]
fn a_burst_on_host_a_is_enhanced_on_host_b_and_each_alert_audited_on_a_once() {
    let Some(server) = server() else { return };
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let url = server.url();
    let (a_conf, a_audit) = host_config(
        &dir,
        "host-a",
        &url,
        &["audit-logger"],
        "[\"user.*\"]",
        "[\"security.*\"]",
    );
    let (b_conf, b_audit) = host_config(
        &dir,
        "host-b",
        &url,
        &["audit-logger", "auth-enhancer"],
        "[\"security.*\"]",
        "[\"user.*\"]",
    );
    let (b, b_in) = spawn(&b_conf);
    let (a, mut a_in) = spawn(&a_conf);
    const USERS: usize = 20;
    for line in burst(USERS, 5) {
        a_in.write_all(line.as_bytes()).unwrap();
    }
    a_in.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while audited(&a_audit, "security.alert").len() < USERS {
        if Instant::now() > deadline {
            drop(a_in);
            drop(b_in);
            let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
            panic!(
                "timed out waiting for A's audit to record every alert\nA: {}{}\nB: {}{}",
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&a.stderr),
                String::from_utf8_lossy(&b.stdout),
                String::from_utf8_lossy(&b.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let a_text = finish(a, a_in);
    let b_text = finish(b, b_in);

    let failed_a = audited(&a_audit, "user.login_failed");
    let failed_b = audited(&b_audit, "user.login_failed");
    assert_eq!(failed_a.len(), USERS * 5, "{a_text}");
    assert_eq!(
        failed_b.len(),
        USERS * 5,
        "every failed login reached B: {b_text}"
    );
    for (id, (times, origin)) in &failed_b {
        assert_eq!(*times, 1, "login {id} reached B {times} times");
        assert_eq!(origin, "remote:host-a");
        assert!(failed_a.contains_key(id), "B got a login A never had: {id}");
    }
    let alerts_b = audited(&b_audit, "security.alert");
    let alerts_a = audited(&a_audit, "security.alert");
    assert_eq!(alerts_b.len(), USERS, "one alert per user on B: {b_text}");
    assert_eq!(alerts_a.len(), USERS, "{a_text}");
    for (id, (times, origin)) in &alerts_a {
        assert_eq!(*times, 1, "alert {id} audited {times} times on A");
        assert_eq!(origin, "remote:host-b");
        assert!(
            alerts_b.contains_key(id),
            "A audited an alert B never raised: {id}"
        );
    }
    assert!(a_text.contains("Bridge (NATS JetStream)"), "{a_text}");
}

#[test]
fn host_a_killed_mid_stream_and_restarted_loses_nothing_and_repeats_nothing() {
    let Some(server) = server() else { return };
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let url = server.url();
    let (a_conf, _) = host_config(&dir, "host-a", &url, &[], "[\"user.*\"]", "[]");
    let (b_conf, b_audit) = host_config(
        &dir,
        "host-b",
        &url,
        &["audit-logger"],
        "[]",
        "[\"user.*\"]",
    );
    let outbox = dir.scratch().join("host-a.outbox.sqlite");
    const N: usize = 3000;
    let lines: Vec<String> = (0..N)
        .map(|i| {
            let id = plugbus::EventId::new();
            format!("{{\"id\":\"{id}\",\"type\":\"user.login\",\"data\":{{\"user_id\":\"u{i}\",\"ip\":\"10.0.0.1\"}}}}\n")
        })
        .collect();
    let (b, b_in) = spawn(&b_conf);
    let (mut a, mut a_in) = spawn(&a_conf);
    for (i, line) in lines.iter().enumerate() {
        if a_in.write_all(line.as_bytes()).is_err() {
            break;
        }
        if i == N / 2 {
            let _ = a_in.flush();
            wait_for("B to receive some", Duration::from_secs(30), || {
                !audited(&b_audit, "user.login").is_empty()
            });
            // SIGKILL: no drain, no shutdown, whatever the outbox holds stays there.
            a.kill().unwrap();
            a.wait().unwrap();
            break;
        }
    }
    drop(a_in);
    let conn = Outbox::connect(&outbox).unwrap();
    let pending = Outbox::pending_ids(&conn).unwrap();
    drop(conn);
    eprintln!("{} event(s) in A's outbox after the kill", pending.len());

    // Restarted with no input: the outbox drains.
    let (a2, a2_in) = spawn(&a_conf);
    let text = finish(a2, a2_in);
    let conn = Outbox::connect(&outbox).unwrap();
    assert!(Outbox::pending_ids(&conn).unwrap().is_empty(), "{text}");
    drop(conn);
    wait_for(
        "B to receive what A's outbox held",
        Duration::from_secs(30),
        || {
            let got = audited(&b_audit, "user.login");
            pending.iter().all(|id| got.contains_key(&id.to_string()))
        },
    );

    // Restarted with the whole input again: what it had sent before is dropped as
    // duplicates, the rest goes out; B ends with every event exactly once.
    let (a3, mut a3_in) = spawn(&a_conf);
    for line in &lines {
        a3_in.write_all(line.as_bytes()).unwrap();
    }
    let text = finish(a3, a3_in);
    wait_for("B to receive every event", Duration::from_secs(60), || {
        audited(&b_audit, "user.login").len() >= N
    });
    std::thread::sleep(Duration::from_millis(500));
    let b_text = finish(b, b_in);
    let got = audited(&b_audit, "user.login");
    assert_eq!(got.len(), N, "{text}\n{b_text}");
    for (id, (times, origin)) in &got {
        assert_eq!(*times, 1, "event {id} reached B {times} times: {b_text}");
        assert_eq!(origin, "remote:host-a");
    }
}
