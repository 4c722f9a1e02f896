//! The NATS bridge against a local `nats-server` (found on `PATH` or in `/usr/sbin`; the
//! group is skipped, saying so, when there is none): forwarding throughput with the durable
//! outbox on, and publish-to-handler latency from host A to host B.
//!
//! - `nats_forward`: A emits events as fast as it takes them; the time until JetStream has
//!   acknowledged every one (each went through A's SQLite outbox). Host B starts receiving
//!   only then, so each side has the machine's cores as two real hosts would (beside the
//!   broker); `received_per_s` is B draining the stream A filled.
//! - `nats_latency`: one event per millisecond; from A's `emit` to B's handler. `ns_per_op`
//!   is the p99, the p50 beside it.
//! - `jetstream_raw`: the baseline of `nats_forward`, what the broker takes on this machine
//!   without plugbus: the same envelopes, headers and subjects published by one client
//!   straight to a stream of the same settings, as many acknowledgements outstanding as the
//!   bridge allows (`max_in_flight`), no bus, no outbox, no receiver.
//!
//! `jetstream_raw` and `nats_forward` carry `broker_cpu_us` and `host_cpu_us`: the CPU time
//! per event of nats-server and of this process over the phase. With two cores, their sum
//! bounds the rate at 2 s / (sum) events per second.

use super::{Plan, Row, EVENT};
use parking_lot::Mutex;
use plugbus::{Bus, Event, EventType};
use plugbus_bridge_nats::local_server::LocalServer;
use plugbus_bridge_nats::{NatsBridge, NatsConfig};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BODY: &str = r#"{"user_id":"alice","ip":"10.0.0.1","session_id":"s-1","user_agent":"bench"}"#;

pub(super) async fn nats_group(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let Some(server) = LocalServer::start()? else {
        let why = "no nats-server found (Debian's package nats-server; .ci/run installs it)";
        eprint!(" skipped ({why})");
        return Ok(vec![
            Row::skipped("jetstream_raw", EVENT, why),
            Row::skipped("nats_forward", EVENT, why),
            Row::skipped("nats_latency", "p99 latency", why),
        ]);
    };
    let events: u64 = if plan.rounds <= 5 { 50_000 } else { 200_000 };
    let cpu = Cpu::start(server.pid());
    let raw = raw_jetstream(&server.url(), events).await?;
    let mut raw_row = Row::measured(
        "jetstream_raw",
        EVENT,
        &[raw.as_nanos() as f64 / events as f64],
    );
    raw_row.extra.insert("events".into(), json!(events));
    cpu.record(&mut raw_row, events);
    let dir = tempfile::tempdir()?;
    let config = |durable: &str, forward: &[&str], receive: &[&str]| {
        let mut c = NatsConfig::new(&server.url(), durable)
            .with_outbox(dir.path().join(format!("{durable}.sqlite")));
        c.forward = forward.iter().map(|s| (*s).to_owned()).collect();
        c.receive = receive.iter().map(|s| (*s).to_owned()).collect();
        c
    };
    let a = Bus::builder().build()?;
    let b = Bus::builder().build()?;
    let bridge_a = NatsBridge::builder(config("bench-a", &["user.*"], &[]))
        .start(&a)
        .await?;
    let got = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (g, l) = (Arc::clone(&got), Arc::clone(&latencies));
    b.subscribe_pattern("user.*")
        .name("sink")
        .handle(move |e: &Event| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            l.lock()
                .push(u64::try_from(now - e.timestamp_unix_nanos()).unwrap_or(0));
            g.fetch_add(1, Ordering::Relaxed);
        })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let wait = |what: &'static str, done: &dyn Fn() -> bool| {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nats bench: timed out waiting for {what}"
        );
        Ok(!done())
    };
    let cpu = Cpu::start(server.pid());
    let start = Instant::now();
    for _ in 0..events {
        a.emit(Event::builder(EventType::USER_LOGIN).json(BODY).build()?)
            .await?;
    }
    while wait("JetStream's acks", &|| bridge_a.stats().forwarded >= events)? {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let forwarded = start.elapsed();
    let forward_cpu = cpu.read();
    let receiving = Instant::now();
    let bridge_b = NatsBridge::builder(config("bench-b", &[], &["user.*"]))
        .start(&b)
        .await?;
    while wait("host B", &|| got.load(Ordering::Relaxed) >= events)? {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let received = receiving.elapsed();
    let ns = forwarded.as_nanos() as f64 / events as f64;
    let mut forward = Row::measured("nats_forward", EVENT, &[ns]).against(&raw_row);
    forward.extra.insert("events".into(), json!(events));
    forward.extra.insert("outbox".into(), json!("sqlite, WAL"));
    forward_cpu.record(&mut forward, events);
    forward.extra.insert(
        "received_per_s".into(),
        json!((events as f64 / received.as_secs_f64()).round()),
    );

    latencies.lock().clear();
    let paced: u64 = if plan.rounds <= 5 { 1_000 } else { 3_000 };
    let base = got.load(Ordering::Relaxed);
    for _ in 0..paced {
        a.emit(Event::builder(EventType::USER_LOGIN).json(BODY).build()?)
            .await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while wait("host B (paced)", &|| {
        got.load(Ordering::Relaxed) >= base + paced
    })? {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut l = latencies.lock().clone();
    l.sort_unstable();
    let q = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    let mut latency = Row::measured("nats_latency", "p99 latency", &[q(0.99).max(1.0)]);
    latency.ops_per_sec = None;
    latency.extra.insert("p50_ns".into(), json!(q(0.5)));
    latency.extra.insert("events".into(), json!(l.len()));
    bridge_a.shutdown(Duration::from_secs(5)).await;
    bridge_b.shutdown(Duration::from_secs(5)).await;
    drop(server);
    Ok(vec![raw_row, forward, latency])
}

/// CPU time used by the broker and by this process over one phase: at the broker's ceiling,
/// the two together fill the machine's cores, which is what bounds events per second here.
#[derive(Clone, Copy)]
struct Cpu {
    broker: Option<u32>,
    at_start: (Option<Duration>, Option<Duration>),
    at_end: Option<(Option<Duration>, Option<Duration>)>,
}

impl Cpu {
    fn start(broker: Option<u32>) -> Cpu {
        Cpu {
            broker,
            at_start: (super::cpu::used(broker), super::cpu::used(None)),
            at_end: None,
        }
    }

    /// The phase ends now.
    fn read(mut self) -> Cpu {
        self.at_end = Some((super::cpu::used(self.broker), super::cpu::used(None)));
        self
    }

    /// Adds `broker_cpu_us` and `host_cpu_us` (per event) to `row`, where `/proc` tells.
    fn record(self, row: &mut Row, events: u64) {
        let (broker, host) = self
            .at_end
            .unwrap_or_else(|| (super::cpu::used(self.broker), super::cpu::used(None)));
        let per = |before, after| super::cpu::per_event_us(before, after, events);
        if let Some(us) = per(self.at_start.0, broker) {
            row.extra
                .insert("broker_cpu_us".into(), json!((us * 100.0).round() / 100.0));
        }
        if let Some(us) = per(self.at_start.1, host) {
            row.extra
                .insert("host_cpu_us".into(), json!((us * 100.0).round() / 100.0));
        }
    }
}

/// `jetstream_raw`: `events` envelopes of the size the bridge sends, each with the bridge's
/// headers (a unique `Nats-Msg-Id` among them), to a file-backed stream with the bridge's
/// duplicate window, [`MAX_IN_FLIGHT`] acknowledgements outstanding; the time until the
/// last is acknowledged.
async fn raw_jetstream(url: &str, events: u64) -> anyhow::Result<Duration> {
    use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
    use futures_util::stream::{FuturesOrdered, StreamExt};
    use std::future::IntoFuture;
    const MAX_IN_FLIGHT: usize = 4096;
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: "PLUGBUS_BENCH_RAW".into(),
        subjects: vec!["raw.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating the raw stream: {e}"))?;
    // The envelope of a bench event, as the bridge forwards it.
    let sample = Event::builder(EventType::USER_LOGIN).json(BODY).build()?;
    let body = bytes::Bytes::from(sample.to_json()?);
    let mut inflight: FuturesOrdered<<PublishAckFuture as IntoFuture>::IntoFuture> =
        FuturesOrdered::new();
    let start = Instant::now();
    for _ in 0..events {
        let id = Event::builder(EventType::USER_LOGIN)
            .build()?
            .id()
            .to_string();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("Plugbus-Host", "bench-raw");
        headers.insert("Plugbus-Origin", "local");
        let ack = js
            .send_publish(
                "raw.user.login",
                PublishMessage::build()
                    .headers(headers)
                    .payload(body.clone()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("publishing: {e}"))?;
        inflight.push_back(ack.into_future());
        while inflight.len() >= MAX_IN_FLIGHT {
            if let Some(ack) = inflight.next().await {
                ack.map_err(|e| anyhow::anyhow!("acknowledgement: {e}"))?;
            }
        }
    }
    while let Some(ack) = inflight.next().await {
        ack.map_err(|e| anyhow::anyhow!("acknowledgement: {e}"))?;
    }
    Ok(start.elapsed())
}
