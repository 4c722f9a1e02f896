//! `plugbus bridge stats`: a host's NATS bridge seen from outside, for an operator asking a
//! running deployment (or one that is stopped).
//!
//! From the config's `[bridge.nats]` table it reads, each part on its own so one failing does
//! not hide the others:
//! - the outbox file, read-only (`plugbus_bridge_nats::inspect`): rows waiting for JetStream,
//!   rows staged by the application, received ids whose ack is not confirmed yet, the oldest
//!   and newest waiting rows;
//! - JetStream, with the bridge's own connection options: the stream's state and this host's
//!   durable consumer (its lag `num_pending`, `num_ack_pending`, redeliveries, sequences);
//! - the live counters of a running host, which live in that process only: scraped from its
//!   `/metrics` (the `plugbus_bridge_*` figures) when the config has `[metrics] listen` or
//!   `--metrics ADDR` is given.
//!
//! Tables by default, one JSON object with `--json`. Exit status 0 when every part could be
//! read, 1 when one could not (the reasons on stderr), 2 when the config is unusable. A
//! missing outbox, stream or consumer is a finding (the host has not run yet), and so is a
//! metrics address nobody answers on (no host is running); neither fails the command.
//!
//! Built without the `nats` feature, the command is refused by name.

use crate::Finish;
use clap::{Args, Subcommand};
use std::path::Path;

/// `plugbus bridge ...`: the NATS bridge's tools.
#[derive(Debug, Subcommand)]
pub(crate) enum BridgeCommand {
    /// The bridge's figures: its outbox (read-only), its stream and durable consumer on
    /// JetStream (the consumer lag), and a running host's live counters from its metrics.
    /// Exit status 1 when a part could not be read (broker down, outbox unreadable).
    Stats(StatsArgs),
}

/// `plugbus bridge stats` options (the config is the global `-c FILE`).
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print one JSON object with every figure instead of tables.
    #[arg(long)]
    json: bool,
    /// Ask the running host serving metrics at ADDR (`IP:PORT`) for its live counters;
    /// overrides the config's `[metrics] listen` (a host started with `run --metrics ADDR`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// Runs a `bridge` command.
pub(crate) async fn bridge(config: Option<&Path>, cmd: BridgeCommand) -> anyhow::Result<Finish> {
    match cmd {
        BridgeCommand::Stats(args) => stats(config, args).await,
    }
}

#[cfg(feature = "nats")]
async fn stats(config: Option<&Path>, args: StatsArgs) -> anyhow::Result<Finish> {
    imp::stats(config, args).await
}

#[cfg(not(feature = "nats"))]
async fn stats(_config: Option<&Path>, _args: StatsArgs) -> anyhow::Result<Finish> {
    anyhow::bail!("bridge stats: this plugbus was built without the `nats` feature")
}

#[cfg(feature = "nats")]
mod imp {
    use super::StatsArgs;
    use crate::Finish;
    use anyhow::Context as _;
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
    use plugbus_bridge_nats::inspect::{JetStreamReport, OutboxReport};
    use plugbus_bridge_nats::{BridgeReport, NatsConfig};
    use serde::Serialize;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::path::{Path, PathBuf};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// How long connecting to and reading a host's `/metrics` may take.
    const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

    /// The largest `/metrics` answer read.
    const SCRAPE_MAX_BYTES: u64 = 16 * 1024 * 1024;

    /// The prefix of the bridge's metric names.
    const PREFIX: &str = "plugbus_bridge_";

    /// The live counters in the order they are shown (the rest follow, by name).
    const ORDER: &[&str] = &[
        "forwarded",
        "queued",
        "staged",
        "publish_errors",
        "broker_duplicates",
        "outbox_depth",
        "received",
        "acked",
        "nacked",
        "redelivered",
        "duplicates",
        "own",
        "malformed",
        "refused",
    ];

    pub(super) async fn stats(config: Option<&Path>, args: StatsArgs) -> anyhow::Result<Finish> {
        let Some(path) = config else {
            anyhow::bail!(
                "bridge stats reads the host's config: give it with -c FILE (a file with [bridge.nats])"
            );
        };
        let host = crate::session::load_config(Some(path))?;
        let Some(table) = host.bridge.nats.clone() else {
            anyhow::bail!("'{}' has no [bridge.nats] table", path.display());
        };
        let nats = NatsConfig::from_table(table, path)
            .with_context(|| format!("reading '{}'", path.display()))?;
        let metrics = args
            .metrics
            .or_else(|| host.metrics.as_ref().map(|m| m.listen));
        let (report, live) = tokio::join!(plugbus_bridge_nats::inspect(&nats), live(metrics));
        let view = View::of(path, &report, live);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            print!("{}", render(&view));
        }
        for e in &view.errors {
            eprintln!("plugbus: bridge stats: {e}");
        }
        Ok(if view.ok {
            Finish::Clean
        } else {
            Finish::WithErrors
        })
    }

    /// Everything `bridge stats` found, as `--json` prints it.
    #[derive(Debug, Serialize)]
    struct View {
        /// Every part could be read.
        ok: bool,
        config: PathBuf,
        host_id: String,
        durable: String,
        url: String,
        stream: String,
        subject_prefix: String,
        outbox: OutboxView,
        jetstream: JetStreamView,
        live: Live,
        /// Why parts could not be read.
        errors: Vec<String>,
    }

    #[derive(Debug, Serialize)]
    struct OutboxView {
        path: PathBuf,
        #[serde(flatten)]
        figures: Option<OutboxReport>,
        error: Option<String>,
    }

    #[derive(Debug, Serialize)]
    struct JetStreamView {
        url: String,
        /// Whether the config has `receive` patterns (a consumer is expected once the host ran).
        receives: bool,
        #[serde(flatten)]
        figures: Option<JetStreamReport>,
        error: Option<String>,
    }

    /// A running host's live counters, from its `/metrics`.
    #[derive(Debug, Default, Serialize)]
    struct Live {
        /// The address scraped.
        metrics_url: Option<String>,
        /// The `plugbus_bridge_*` figures, by short name (`forwarded`, `outbox_depth`, ...).
        counters: Option<BTreeMap<String, u64>>,
        /// Why there are none, when that is no failure (no address, nobody running).
        note: Option<String>,
        /// Why they could not be read.
        error: Option<String>,
    }

    impl View {
        fn of(config: &Path, r: &BridgeReport, live: Live) -> View {
            let mut errors = Vec::new();
            let outbox = OutboxView {
                path: r.outbox_path.clone(),
                figures: r.outbox.as_ref().ok().cloned(),
                error: r.outbox.as_ref().err().map(|e| e.to_string()),
            };
            let jetstream = JetStreamView {
                url: r.url.clone(),
                receives: r.receives,
                figures: r.jetstream.as_ref().ok().cloned(),
                error: r.jetstream.as_ref().err().map(|e| e.to_string()),
            };
            errors.extend(outbox.error.clone());
            errors.extend(jetstream.error.clone());
            errors.extend(live.error.clone());
            View {
                ok: errors.is_empty(),
                config: config.to_path_buf(),
                host_id: r.host_id.clone(),
                durable: r.durable.clone(),
                url: r.url.clone(),
                stream: r.stream.clone(),
                subject_prefix: r.subject_prefix.clone(),
                outbox,
                jetstream,
                live,
                errors,
            }
        }
    }

    /// Where to scrape a host listening on `listen`: an unspecified address (`0.0.0.0`,
    /// `::`) is asked on loopback; port 0 cannot be asked (the host picked one at start).
    fn scrape_address(listen: SocketAddr) -> Option<SocketAddr> {
        if listen.port() == 0 {
            return None;
        }
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Some(SocketAddr::new(ip, listen.port()))
    }

    /// The live counters of the host serving metrics at `listen`, if any.
    async fn live(listen: Option<SocketAddr>) -> Live {
        let Some(listen) = listen else {
            return Live {
                note: Some(
                    "the live counters need [metrics] listen in the config (or --metrics ADDR): \
                     they are in the running host's process only"
                        .to_owned(),
                ),
                ..Live::default()
            };
        };
        let Some(addr) = scrape_address(listen) else {
            return Live {
                note: Some(format!(
                    "[metrics] listen is {listen}: the port is picked at start; give the one \
                     the host printed with --metrics ADDR"
                )),
                ..Live::default()
            };
        };
        let url = format!("http://{addr}/metrics");
        let mut live = Live {
            metrics_url: Some(url.clone()),
            ..Live::default()
        };
        match scrape(addr).await {
            Ok(body) => {
                let counters = bridge_counters(&body);
                if counters.is_empty() {
                    live.note = Some(format!(
                        "the host at {url} serves no {PREFIX}* figures (it runs without its bridge?)"
                    ));
                }
                live.counters = Some(counters);
            }
            Err(Scrape::Refused) => {
                live.note = Some(format!(
                    "no host answers at {url}: none is running with this config"
                ));
            }
            Err(Scrape::Failed(e)) => live.error = Some(format!("live counters from {url}: {e}")),
        }
        live
    }

    /// Why a scrape got no figures.
    #[derive(Debug)]
    enum Scrape {
        /// Nothing listens there.
        Refused,
        /// Something else went wrong.
        Failed(String),
    }

    /// `GET /metrics` over HTTP/1.0 (the server closes the connection after its answer): the
    /// body of a 200 answer.
    async fn scrape(addr: SocketAddr) -> Result<String, Scrape> {
        let timed_out = || Scrape::Failed(format!("no answer within {SCRAPE_TIMEOUT:?}"));
        let mut stream = match tokio::time::timeout(
            SCRAPE_TIMEOUT,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(Scrape::Refused)
            }
            Ok(Err(e)) => return Err(Scrape::Failed(format!("cannot connect: {e}"))),
            Ok(Ok(s)) => s,
        };
        let exchange = async {
            stream
                .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
                .await?;
            let mut raw = Vec::new();
            (&mut stream)
                .take(SCRAPE_MAX_BYTES)
                .read_to_end(&mut raw)
                .await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = match tokio::time::timeout(SCRAPE_TIMEOUT, exchange).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(Scrape::Failed(e.to_string())),
            Ok(Ok(raw)) => raw,
        };
        let text = String::from_utf8_lossy(&raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return Err(Scrape::Failed("not an HTTP answer".to_owned()));
        };
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(Scrape::Failed(format!("the server answered '{status}'")));
        }
        Ok(body.to_owned())
    }

    /// The `plugbus_bridge_*` samples of a Prometheus text exposition, by short name: the
    /// prefix and a counter's `_total` taken off (`plugbus_bridge_forwarded_total` ->
    /// `forwarded`); a sample with labels keeps them (`name{a="b"}`).
    fn bridge_counters(exposition: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for line in exposition.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(rest) = line.strip_prefix(PREFIX) else {
                continue;
            };
            let (series, value) = match rest.find('{') {
                Some(open) => match rest[open..].find('}') {
                    Some(close) => rest.split_at(open + close + 1),
                    None => continue,
                },
                None => match rest.split_once(char::is_whitespace) {
                    Some((s, v)) => (s, v),
                    None => continue,
                },
            };
            let Some(value) = value.split_whitespace().next() else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if !value.is_finite() || value < 0.0 {
                continue;
            }
            let (name, labels) = series.split_at(series.find('{').unwrap_or(series.len()));
            let name = name.strip_suffix("_total").unwrap_or(name);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            out.insert(format!("{name}{labels}"), value.round() as u64);
        }
        out
    }

    fn table() -> Table {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t
    }

    /// A two-column table of figures, numbers right-aligned.
    fn figures(rows: Vec<(&str, String)>) -> Table {
        let mut t = table();
        for (k, v) in rows {
            let numeric = v.starts_with(|c: char| c.is_ascii_digit()) || v == "-";
            let value = Cell::new(v);
            let value = if numeric {
                value.set_alignment(CellAlignment::Right)
            } else {
                value
            };
            t.add_row(vec![Cell::new(k), value]);
        }
        t
    }

    fn or_dash<T: ToString>(v: Option<T>) -> String {
        v.map_or_else(|| "-".to_owned(), |v| v.to_string())
    }

    /// `1.2s`, `3m 4s`: an age to read at a glance.
    fn age(ms: u64) -> String {
        let d = if ms < 10_000 {
            Duration::from_millis(ms)
        } else {
            Duration::from_secs(ms / 1000)
        };
        humantime::format_duration(d).to_string()
    }

    /// The tables `bridge stats` prints.
    fn render(v: &View) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "NATS bridge of host '{}' ({}): stream '{}' on {}, durable consumer '{}'",
            v.host_id,
            v.config.display(),
            v.stream,
            v.url,
            v.durable
        );

        let _ = writeln!(out, "\nOutbox ({})", v.outbox.path.display());
        match (&v.outbox.figures, &v.outbox.error) {
            (_, Some(e)) => {
                let _ = writeln!(out, "  cannot be read: {e}");
            }
            (Some(o), None) if !o.present => {
                let _ = writeln!(
                    out,
                    "  no outbox file (the bridge has not run here): nothing waits"
                );
            }
            (Some(o), None) => {
                let oldest = match (&o.oldest_timestamp, o.oldest_age_ms) {
                    (Some(ts), Some(ms)) => format!("{ts} ({} ago)", age(ms)),
                    (Some(ts), None) => ts.clone(),
                    _ => "-".to_owned(),
                };
                let t = figures(vec![
                    ("waiting for JetStream (depth)", o.depth.to_string()),
                    ("staged by the application", o.staged.to_string()),
                    (
                        "remembered ids, acks unconfirmed",
                        o.unconfirmed_received.to_string(),
                    ),
                    ("oldest waiting seq", or_dash(o.oldest_seq)),
                    ("newest waiting seq", or_dash(o.newest_seq)),
                    ("oldest waiting event's time", oldest),
                ]);
                let _ = writeln!(out, "{t}");
            }
            (None, None) => {}
        }

        let _ = writeln!(out, "\nJetStream ({})", v.jetstream.url);
        match (&v.jetstream.figures, &v.jetstream.error) {
            (_, Some(e)) => {
                let _ = writeln!(out, "  cannot be asked: {e}");
            }
            (Some(j), None) => {
                match &j.stream {
                    None => {
                        let _ = writeln!(
                            out,
                            "  stream '{}' does not exist yet (no bridge has connected)",
                            v.stream
                        );
                    }
                    Some(s) => {
                        let t = figures(vec![
                            ("stream", s.name.clone()),
                            ("subjects", s.subjects.join(", ")),
                            ("messages", s.messages.to_string()),
                            ("bytes", s.bytes.to_string()),
                            ("first seq", s.first_seq.to_string()),
                            ("last seq", s.last_seq.to_string()),
                            ("consumers", s.consumer_count.to_string()),
                        ]);
                        let _ = writeln!(out, "{t}");
                    }
                }
                match &j.consumer {
                    Some(c) => {
                        let filter = if c.filter_subject.is_empty() {
                            "(all)".to_owned()
                        } else {
                            c.filter_subject.clone()
                        };
                        let t = figures(vec![
                            ("consumer", c.name.clone()),
                            ("filter", filter),
                            (
                                "lag: not yet delivered (num_pending)",
                                c.num_pending.to_string(),
                            ),
                            (
                                "delivered, not acked (num_ack_pending)",
                                c.num_ack_pending.to_string(),
                            ),
                            (
                                "redelivered (num_redelivered)",
                                c.num_redelivered.to_string(),
                            ),
                            ("waiting pulls (num_waiting)", c.num_waiting.to_string()),
                            (
                                "delivered seq (stream / consumer)",
                                format!(
                                    "{} / {}",
                                    c.delivered_stream_seq, c.delivered_consumer_seq
                                ),
                            ),
                            (
                                "ack floor seq (stream / consumer)",
                                format!(
                                    "{} / {}",
                                    c.ack_floor_stream_seq, c.ack_floor_consumer_seq
                                ),
                            ),
                        ]);
                        let _ = writeln!(out, "{t}");
                    }
                    None if j.stream.is_none() => {}
                    None if v.jetstream.receives => {
                        let _ = writeln!(
                            out,
                            "  consumer '{}' does not exist yet (the host has not run with its receive patterns)",
                            v.durable
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "  no consumer '{}': the config receives nothing",
                            v.durable
                        );
                    }
                }
            }
            (None, None) => {}
        }

        match &v.live.metrics_url {
            Some(url) => {
                let _ = writeln!(out, "\nLive counters ({url})");
            }
            None => {
                let _ = writeln!(out, "\nLive counters");
            }
        }
        if let Some(e) = &v.live.error {
            let _ = writeln!(out, "  cannot be read: {e}");
        }
        if let Some(n) = &v.live.note {
            let _ = writeln!(out, "  {n}");
        }
        if let Some(c) = v.live.counters.as_ref().filter(|c| !c.is_empty()) {
            let mut rows: Vec<(&str, String)> = ORDER
                .iter()
                .filter_map(|k| c.get(*k).map(|v| (*k, v.to_string())))
                .collect();
            rows.extend(
                c.iter()
                    .filter(|(k, _)| !ORDER.contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.to_string())),
            );
            let _ = writeln!(out, "{}", figures(rows));
        }
        out
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    mod tests {
        use super::*;

        const EXPOSITION: &str = "\
# HELP plugbus_bridge_forwarded_total events forwarded to JetStream and acked
# TYPE plugbus_bridge_forwarded_total counter
plugbus_bridge_forwarded_total 12
plugbus_bridge_received_total 3
plugbus_bridge_outbox_depth 4
plugbus_bridge_labelled_total{kind=\"a b\"} 7 1700000000
plugbus_events_published_total 99
plugbus_bridge_broken
plugbus_bridge_nan NaN
";

        #[test]
        fn bridge_counters_are_taken_by_short_name() {
            let c = bridge_counters(EXPOSITION);
            assert_eq!(c.get("forwarded"), Some(&12));
            assert_eq!(c.get("received"), Some(&3));
            assert_eq!(c.get("outbox_depth"), Some(&4));
            assert_eq!(c.get("labelled{kind=\"a b\"}"), Some(&7));
            assert_eq!(c.len(), 4, "{c:?}");
        }

        #[test]
        fn unspecified_and_zero_addresses() {
            let a: SocketAddr = "0.0.0.0:9464".parse().unwrap();
            assert_eq!(scrape_address(a), Some("127.0.0.1:9464".parse().unwrap()));
            let a: SocketAddr = "[::]:9464".parse().unwrap();
            assert_eq!(scrape_address(a), Some("[::1]:9464".parse().unwrap()));
            let a: SocketAddr = "10.1.2.3:9464".parse().unwrap();
            assert_eq!(scrape_address(a), Some(a));
            assert_eq!(scrape_address("127.0.0.1:0".parse().unwrap()), None);
        }

        fn view(outbox: OutboxView, jetstream: JetStreamView, live: Live) -> View {
            let mut errors: Vec<String> = Vec::new();
            errors.extend(outbox.error.clone());
            errors.extend(jetstream.error.clone());
            errors.extend(live.error.clone());
            View {
                ok: errors.is_empty(),
                config: "/etc/a.toml".into(),
                host_id: "host-a".into(),
                durable: "host-a".into(),
                url: "nats://127.0.0.1:4222".into(),
                stream: "PLUGBUS".into(),
                subject_prefix: "plugbus".into(),
                outbox,
                jetstream,
                live,
                errors,
            }
        }

        #[test]
        fn a_broker_down_keeps_the_outbox_figures_in_both_forms() {
            let outbox = sample_outbox();
            let v = view(
                OutboxView {
                    path: "/etc/a.outbox.sqlite".into(),
                    figures: Some(outbox),
                    error: None,
                },
                JetStreamView {
                    url: "nats://127.0.0.1:4222".into(),
                    receives: false,
                    figures: None,
                    error: Some(
                        "bridge.nats: cannot connect to 'nats://127.0.0.1:4222': refused".into(),
                    ),
                },
                Live {
                    note: Some("the live counters need [metrics] listen".into()),
                    ..Live::default()
                },
            );
            assert!(!v.ok);
            let text = render(&v);
            assert!(text.contains("waiting for JetStream (depth)"), "{text}");
            let depth = text.lines().find(|l| l.contains("(depth)")).unwrap();
            assert!(depth.trim_end_matches([' ', '│']).ends_with(" 5"), "{text}");
            assert!(
                text.contains(
                    "cannot be asked: bridge.nats: cannot connect to 'nats://127.0.0.1:4222'"
                ),
                "{text}"
            );
            assert!(text.contains("[metrics] listen"), "{text}");
            let json = serde_json::to_value(&v).unwrap();
            assert_eq!(json["ok"], false);
            assert_eq!(json["outbox"]["depth"], 5);
            assert_eq!(json["outbox"]["present"], true);
            assert_eq!(json["outbox"]["error"], serde_json::Value::Null);
            assert!(json["jetstream"]["error"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1:4222"));
            assert_eq!(json["errors"].as_array().unwrap().len(), 1);
        }

        #[test]
        fn live_counters_are_shown_in_order() {
            let v = view(
                OutboxView {
                    path: "/etc/a.outbox.sqlite".into(),
                    figures: Some(sample_outbox()),
                    error: None,
                },
                JetStreamView {
                    url: "nats://127.0.0.1:4222".into(),
                    receives: true,
                    figures: None,
                    error: Some("down".into()),
                },
                Live {
                    metrics_url: Some("http://127.0.0.1:9464/metrics".into()),
                    counters: Some(bridge_counters(EXPOSITION)),
                    ..Live::default()
                },
            );
            let text = render(&v);
            let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in {text}"));
            assert!(at("forwarded") < at("outbox_depth"));
            assert!(at("outbox_depth") < at("received"));
            assert!(at("received") < at("labelled"));
            assert!(text.contains("Live counters (http://127.0.0.1:9464/metrics)"));
        }

        /// An outbox report of five waiting rows (seq 3 to 7), read by the library.
        fn sample_outbox() -> OutboxReport {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("o.sqlite");
            let conn = plugbus_bridge_nats::Outbox::connect(&path).unwrap();
            let events: Vec<plugbus::Event> = (0..5)
                .map(|_| {
                    plugbus::Event::builder(plugbus::EventType::USER_LOGIN)
                        .build()
                        .unwrap()
                })
                .collect();
            plugbus_bridge_nats::Outbox::append_for_tests(&conn, 3, &events).unwrap();
            plugbus_bridge_nats::inspect::inspect_outbox(&path).unwrap()
        }
    }
}
