//! `plugbus run --metrics ADDR` through the real binary and the real plugins: `/metrics`
//! scraped over HTTP while the run waits for more input, judged by `promtool check metrics`,
//! and its counters compared with the summary the run prints once its input ends.
//!
//! promtool comes with Debian's `prometheus` package, which `.ci/run` installs; without it
//! the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plugbus_tests::{crates, plugbus_binary, PluginDir};

/// `GET /metrics` over a plain TCP connection: (status line, body).
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    // hyper answers a `Connection: close` request with a plain body (no chunking).
    (status, body.to_owned())
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = n == name
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        if matches {
            value.parse().ok()
        } else {
            None
        }
    })
}

fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is needed to judge the exposition and was not found ({e}): install Debian's \
             `prometheus` package (apt-get install -y prometheus); .ci/run does"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rows of the summary table that follows the line `title`: cells, trimmed.
fn table_rows(summary: &str, title: &str) -> Vec<Vec<String>> {
    summary
        .lines()
        .skip_while(|l| l.trim() != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with('│'))
        .skip(1) // the header
        .map(|l| {
            l.trim_matches('│')
                .split('┆')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn a_scrape_during_a_run_passes_promtool_and_its_counters_equal_the_summary() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let audit = dir.scratch().join("audit.jsonl");
    let config = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndirectories = [{:?}]\n[plugin.audit-logger]\nconfig = {{ path = {:?} }}\n",
            dir.path(),
            audit
        ),
    )
    .unwrap();
    let mut child = Command::new(plugbus_binary())
        .args(["--config", config.to_str().unwrap()])
        .args(["run", "--metrics", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The address taken is printed on stderr; the rest of stderr is kept for messages.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(at) = line.find("serving metrics at http://") {
                let url = &line[at + "serving metrics at http://".len()..];
                let _ = tx.send(url.trim_end_matches("/metrics").to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("plugbus run never said where it serves metrics");

    let mut stdin = child.stdin.take().unwrap();
    for i in 0..10 {
        writeln!(
            stdin,
            r#"{{"type":"user.login","source":"web","data":{{"user_id":"u{i}","ip":"10.0.0.{i}","session_id":"s{i}"}}}}"#
        )
        .unwrap();
    }
    // Six failures for one account: the auth enhancer raises a brute-force alert.
    for _ in 0..6 {
        writeln!(
            stdin,
            r#"{{"type":"user.login_failed","source":"web","data":{{"user_id":"admin","ip":"203.0.113.9","reason":"bad_password"}}}}"#
        )
        .unwrap();
    }
    stdin.flush().unwrap();

    // Scrape until every delivery finished and two scrapes agree: the run now only waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let text = loop {
        let (status, body) = get(&addr, "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        let settled = sample(&body, "plugbus_deliveries_in_flight", &[]) == Some(0.0)
            && sample(&body, "plugbus_events_accepted_total", &[]).unwrap_or(0.0) >= 16.0
            && sample(
                &body,
                "plugbus_plugin_published_total",
                &[("plugin", "auth-enhancer")],
            )
            .unwrap_or(0.0)
                >= 1.0;
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.contains("latency"))
                .map(str::to_owned)
                .collect::<std::collections::BTreeSet<_>>()
        };
        if settled && strip(&body) == strip(&last) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the figures never settled:\n{body}"
        );
        last = body;
        std::thread::sleep(Duration::from_millis(300));
    };
    promtool_check(&text);
    // The handler latency histogram: cumulative buckets ending in +Inf = _count, a _sum.
    assert!(
        text.contains("# TYPE plugbus_delivery_latency_seconds histogram"),
        "{text}"
    );
    let count = sample(
        &text,
        "plugbus_delivery_latency_seconds_count",
        &[("subscription", "audit-logger/0")],
    )
    .expect("a latency histogram for the audit logger");
    assert!(count > 0.0, "{text}");
    let inf = sample(
        &text,
        "plugbus_delivery_latency_seconds_bucket",
        &[("subscription", "audit-logger/0"), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(count), "{text}");
    let (status, _) = get(&addr, "/nothing-here");
    assert!(status.contains(" 404 "), "{status}");

    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = errors.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{summary}{errors}");

    // Every handler's row of the summary equals its counters in the scrape.
    let rows = table_rows(&summary, "Deliveries, by handler");
    assert!(rows.len() >= 4, "{summary}");
    for row in &rows {
        let name = row[0].as_str();
        for (col, outcome) in [
            (1, "delivered"),
            (2, "skipped"),
            (3, "failed"),
            (6, "dead_lettered"),
        ] {
            let scraped = sample(
                &text,
                "plugbus_deliveries_total",
                &[("subscription", name), ("outcome", outcome)],
            )
            .unwrap_or_else(|| panic!("no {outcome} series for {name}:\n{text}"));
            assert_eq!(
                scraped,
                row[col].parse::<f64>().unwrap(),
                "{name} {outcome}: scrape vs summary\n{summary}\n{text}"
            );
        }
        let timed_out = sample(
            &text,
            "plugbus_delivery_failures_total",
            &[("subscription", name), ("reason", "timed_out")],
        );
        assert_eq!(timed_out, Some(row[4].parse().unwrap()), "{name}");
    }
    let counter = rows
        .iter()
        .find(|r| r[0] == "plugbus-cli/event-counter")
        .unwrap();
    assert!(counter[1].parse::<u64>().unwrap() >= 16, "{summary}");

    // The alerts the summary lists are what the auth enhancer published.
    let alerts: f64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("Security alerts raised: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alerts >= 1.0, "{summary}");
    assert_eq!(
        sample(
            &text,
            "plugbus_plugin_published_total",
            &[("plugin", "auth-enhancer")]
        ),
        Some(alerts)
    );
    // The Plugins table: the auth enhancer handled every login and failure.
    let plugins = table_rows(&summary, "Plugins");
    let auth = plugins.iter().find(|r| r[0] == "auth-enhancer").unwrap();
    assert_eq!(
        sample(
            &text,
            "plugbus_plugin_deliveries_total",
            &[("plugin", "auth-enhancer"), ("outcome", "delivered")]
        ),
        Some(auth[4].parse().unwrap()),
        "{summary}"
    );
    // Plugin state, restarts and the bus totals are there.
    for (plugin, _) in [("audit-logger", 0), ("auth-enhancer", 0)] {
        assert_eq!(
            sample(
                &text,
                "plugbus_plugin_state",
                &[("plugin", plugin), ("state", "running")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "plugbus_plugin_restarts_total",
                &[("plugin", plugin)]
            ),
            Some(0.0)
        );
    }
    assert!(
        text.contains("plugbus_dead_letter_queue_events 0"),
        "{text}"
    );
    assert!(
        text.contains("plugbus_delivery_latency_p99_seconds{"),
        "{text}"
    );
}

#[test]
fn a_taken_port_fails_the_run_before_any_plugin_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = PluginDir::new();
    let out = Command::new(plugbus_binary())
        .args([
            "run",
            "-p",
            dir.path().to_str().unwrap(),
            "--metrics",
            &addr,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = plugbus_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("metrics: cannot listen on {addr}")),
        "{text}"
    );
}

#[test]
fn the_metrics_table_is_read_and_checked() {
    let dir = PluginDir::new();
    let config = dir.scratch().join("plugbus.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"127.0.0.1:0\"\nport = 1\n").unwrap();
    let out = Command::new(plugbus_binary())
        .args(["--config", config.to_str().unwrap(), "run"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = plugbus_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("unknown key 'metrics.port'"), "{text}");
    // A good table serves: the address is announced.
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndirectories = [{:?}]\n",
            dir.path()
        ),
    )
    .unwrap();
    let out = Command::new(plugbus_binary())
        .args(["--config", config.to_str().unwrap(), "run"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = plugbus_tests::output_text(&out);
    assert!(
        text.contains("serving metrics at http://127.0.0.1:"),
        "{text}"
    );
}

/// With `[bridge.nats]`, the bridge's counters are in the scrape (against a real
/// `nats-server`; skipped, saying so, when none is installed: `.ci/run` installs it).
#[test]
fn the_bridge_counters_are_scraped_while_it_forwards() {
    let Some(server) = plugbus_bridge_nats::local_server::LocalServer::start().unwrap() else {
        eprintln!("SKIPPED: no nats-server found");
        return;
    };
    let dir = PluginDir::new();
    let config = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndirectories = [{:?}]\n[bridge.nats]\nurl = {:?}\ndurable = \"metrics\"\nforward = [\"user.*\"]\nreceive = []\noutbox = {:?}\n",
            dir.path(),
            server.url(),
            dir.scratch().join("outbox.db")
        ),
    )
    .unwrap();
    let mut child = Command::new(plugbus_binary())
        .args(["--config", config.to_str().unwrap()])
        .args(["run", "--metrics", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(at) = line.find("serving metrics at http://") {
                let url = &line[at + "serving metrics at http://".len()..];
                let _ = tx.send(url.trim_end_matches("/metrics").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("plugbus run never said where it serves metrics");
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..25 {
        writeln!(
            stdin,
            r#"{{"type":"user.login","data":{{"user_id":"u{i}"}}}}"#
        )
        .unwrap();
    }
    stdin.flush().unwrap();
    let started = std::time::Instant::now();
    let forwarded = loop {
        let (_, text) = get(&addr, "/metrics");
        let n = sample(&text, "plugbus_bridge_forwarded_total", &[]).unwrap_or(0.0);
        if n >= 25.0 || started.elapsed() > Duration::from_secs(30) {
            assert_eq!(
                sample(&text, "plugbus_bridge_outbox_depth", &[]),
                Some(0.0),
                "{text}"
            );
            assert_eq!(
                sample(&text, "plugbus_bridge_queued_total", &[]),
                Some(25.0)
            );
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(forwarded, 25.0);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}
