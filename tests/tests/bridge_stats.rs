//! `plugbus bridge stats` through the real binary against a real `nats-server` (started here
//! on a free loopback port with JetStream; skipped, saying so, when no `nats-server` binary is
//! found: `.ci/run` installs Debian's):
//! - a receiving host that is not running: its consumer's lag is what was published meanwhile;
//! - a broker that is down: the outbox still holds the events, `bridge stats` shows them and
//!   fails (exit 1) naming the broker's URL, and a writer holding the outbox does not stop it;
//! - a running host serving metrics: its live bridge counters are shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus_bridge_nats::local_server::LocalServer;
use plugbus_bridge_nats::Outbox;
use plugbus_tests::{output_text, plugbus_binary};
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
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

/// A host's config in `dir`: no plugins, a short shutdown, its bridge, and `[metrics]` when
/// `metrics` is given.
fn host_config(
    dir: &Path,
    name: &str,
    url: &str,
    forward: &str,
    receive: &str,
    metrics: Option<&str>,
) -> PathBuf {
    let plugins = dir.join("no-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut text = format!(
        "[plugins]\ndirectories = [\"{}\"]\n[bus]\nshutdown_timeout = \"1s\"\n",
        plugins.display()
    );
    if let Some(addr) = metrics {
        text.push_str(&format!("[metrics]\nlisten = \"{addr}\"\n"));
    }
    text.push_str(&format!(
        "[bridge.nats]\nurl = \"{url}\"\ndurable = \"{name}\"\nforward = {forward}\nreceive = {receive}\n"
    ));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn logins(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"type\":\"user.login\",\"source\":\"web\",\"data\":{{\"user_id\":\"u{i}\",\"ip\":\"10.0.0.1\"}}}}\n"
            )
        })
        .collect()
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

/// `plugbus run -c config` with `input` on stdin, to its end.
fn run(config: &Path, input: &str) -> Output {
    let (child, mut stdin) = spawn(config);
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn stats(config: &Path, json: bool) -> Output {
    let mut cmd = Command::new(plugbus_binary());
    cmd.args(["bridge", "stats", "-c"]).arg(config);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn stats_json(config: &Path) -> (Option<i32>, Value, String) {
    let out = stats(config, true);
    let text = output_text(&out);
    let json: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (out.status.code(), json, text)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_lag_of_a_receiving_host_that_is_not_running_is_what_was_published() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let a = host_config(dir.path(), "host-a", &url, "[\"user.*\"]", "[]", None);
    let b = host_config(dir.path(), "host-b", &url, "[]", "[\"user.*\"]", None);

    // B runs once (its durable consumer is made), then is gone.
    let out = run(&b, "");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let (code, before, text) = stats_json(&b);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(before["jetstream"]["consumer"]["num_pending"], 0, "{text}");

    // A forwards while B is away.
    const N: u64 = 25;
    let out = run(&a, &logins(N as usize));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let (code, json, text) = stats_json(&b);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(json["ok"], true, "{text}");
    let consumer = &json["jetstream"]["consumer"];
    assert_eq!(consumer["name"], "host-b", "{text}");
    assert_eq!(
        consumer["num_pending"], N,
        "the lag is every event A sent: {text}"
    );
    assert_eq!(consumer["num_ack_pending"], 0, "{text}");
    assert_eq!(consumer["filter_subject"], "plugbus.user.>", "{text}");
    let stream = &json["jetstream"]["stream"];
    assert_eq!(stream["name"], "PLUGBUS", "{text}");
    assert_eq!(stream["messages"], N, "{text}");
    assert_eq!(stream["last_seq"], N, "{text}");
    assert_eq!(stream["consumer_count"], 1, "{text}");
    assert_eq!(json["outbox"]["depth"], 0, "{text}");
    assert!(
        json["live"]["note"]
            .as_str()
            .unwrap()
            .contains("[metrics] listen"),
        "{text}"
    );

    // The tables, for A: its outbox is empty, it has no consumer.
    let out = stats(&a, false);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("waiting for JetStream (depth)"), "{text}");
    assert!(
        text.contains("no consumer 'host-a': the config receives nothing"),
        "{text}"
    );
    assert!(text.contains(&format!("JetStream ({url})")), "{text}");
}

#[test]
fn with_the_broker_down_the_outbox_depth_is_shown_and_the_url_named() {
    let Some(mut server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let a = host_config(dir.path(), "host-a", &url, "[\"user.*\"]", "[]", None);
    server.kill();

    const N: u64 = 7;
    let out = run(&a, &logins(N as usize));
    let run_text = output_text(&out);
    let outbox = dir.path().join("host-a.outbox.sqlite");
    assert!(outbox.exists(), "{run_text}");
    // Two more staged by an application, still held in a transaction of its own while
    // `bridge stats` reads: a reader waits for no writer.
    let app = Outbox::connect(&outbox).unwrap();
    for _ in 0..2 {
        let event = plugbus::Event::builder(plugbus::EventType::DATA_CREATED)
            .json(r#"{"table":"accounts"}"#)
            .build()
            .unwrap();
        Outbox::stage(&app, &event).unwrap();
    }
    app.execute_batch("BEGIN IMMEDIATE; CREATE TABLE accounts (name TEXT);")
        .unwrap();

    let started = Instant::now();
    let out = stats(&a, false);
    let text = output_text(&out);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}: {text}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot connect to '{url}'")),
        "{text}"
    );
    let depth_row = text
        .lines()
        .find(|l| l.contains("waiting for JetStream (depth)"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(depth_row.contains(&format!(" {N} ")), "{depth_row}\n{text}");
    let staged_row = text
        .lines()
        .find(|l| l.contains("staged by the application"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(staged_row.contains(" 2 "), "{staged_row}\n{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "the reason names the URL: {stderr}");

    let (code, json, text) = stats_json(&a);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(json["ok"], false, "{text}");
    assert_eq!(json["outbox"]["present"], true, "{text}");
    assert_eq!(json["outbox"]["depth"], N, "{text}");
    assert_eq!(json["outbox"]["staged"], 2, "{text}");
    assert_eq!(json["outbox"]["oldest_seq"], 1, "{text}");
    assert_eq!(json["outbox"]["newest_seq"], N, "{text}");
    assert!(json["outbox"]["oldest_age_ms"].as_u64().is_some(), "{text}");
    assert!(
        json["jetstream"]["error"].as_str().unwrap().contains(&url),
        "{text}"
    );
    assert_eq!(json["errors"].as_array().unwrap().len(), 1, "{text}");
    app.execute_batch("COMMIT").unwrap();
    drop(app);

    // Nothing was written by the reader: the same rows are there.
    let conn = Outbox::connect(&outbox).unwrap();
    assert_eq!(Outbox::pending_ids(&conn).unwrap().len() as u64, N);

    // A missing outbox is reported as such and not created.
    let c = host_config(dir.path(), "host-c", &url, "[\"user.*\"]", "[]", None);
    let (code, json, text) = stats_json(&c);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(json["outbox"]["present"], false, "{text}");
    assert!(!dir.path().join("host-c.outbox.sqlite").exists());
}

#[test]
fn the_live_counters_of_a_running_host_come_from_its_metrics() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let listen = format!("127.0.0.1:{}", free_port());
    let a = host_config(
        dir.path(),
        "host-a",
        &url,
        "[\"user.*\"]",
        "[\"security.*\"]",
        Some(&listen),
    );

    // Nothing runs yet: a finding, not a failure.
    let (code, json, text) = stats_json(&a);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        json["live"]["note"]
            .as_str()
            .unwrap()
            .contains("no host answers"),
        "{text}"
    );
    assert!(json["jetstream"]["stream"].is_null(), "{text}");

    const N: u64 = 12;
    let (child, mut stdin) = spawn(&a);
    stdin.write_all(logins(N as usize).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (json, text) = loop {
        let (code, json, text) = stats_json(&a);
        if code == Some(0) && json["live"]["counters"]["forwarded"] == N {
            break (json, text);
        }
        if Instant::now() > deadline {
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out waiting for the live counters\n{text}\n--- run ---\n{}",
                output_text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let live = &json["live"];
    assert_eq!(
        live["metrics_url"],
        format!("http://{listen}/metrics"),
        "{text}"
    );
    assert_eq!(live["counters"]["queued"], N, "{text}");
    assert_eq!(live["counters"]["received"], 0, "{text}");
    assert!(
        live["counters"]["outbox_depth"].as_u64().is_some(),
        "{text}"
    );
    assert!(live["error"].is_null(), "{text}");
    // The running host's consumer (it receives security.*) is there too.
    assert_eq!(json["jetstream"]["consumer"]["name"], "host-a", "{text}");
    assert_eq!(json["jetstream"]["stream"]["messages"], N, "{text}");

    let out = stats(&a, false);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("Live counters (http://{listen}/metrics)")),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.contains("forwarded"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(&format!(" {N} ")), "{row}\n{text}");

    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}
