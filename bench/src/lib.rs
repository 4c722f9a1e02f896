//! `plugbus bench`: what a delivery costs, beside in-run baselines.
//!
//! Each plugbus scenario runs in the same process as its baseline, interleaved (baseline and
//! scenario alternate within each round, the order flipping every round), for several rounds;
//! the table shows the median of the rounds. A round is one timed batch, sized at the start so
//! it takes about `Plan::batch`. `ns_per_op` is per delivery (one event reaching one
//! handler) for the dispatch scenarios, and per event for `event_new`, the plugin scenarios and
//! `stalled_drop_oldest`.
//!
//! Everything runs on one task of the binary's multi-threaded runtime (a worker thread, so
//! tasks a scenario spawns go to that worker's own queue, as they would in an application).
//!
//! - `baselines`: the floor, the Go design ported ("seed"), a tokio mpsc hop, `join_all`;
//! - `scenarios`: the plugbus side of each;
//! - `fanout`: `emit` to N tasks beside tokio broadcast and flume, and paced latency;
//! - `rss`: the resident set, for the stalled-subscriber scenario;
//! - `cpu`: CPU time of this process and of the broker, for the NATS scenarios.

mod baselines;
#[cfg(feature = "nats")]
mod cpu;
mod fanout;
#[cfg(feature = "nats")]
mod nats;
mod rss;
mod scenarios;

use anyhow::Context as _;
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A short run (under a minute on two cores) with the same scenarios.
    #[arg(long)]
    quick: bool,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run only the groups with a scenario whose name contains SUBSTR (repeatable). A
    /// scenario's baseline always runs with it.
    #[arg(long, value_name = "SUBSTR")]
    filter: Vec<String>,
    /// A folder with `libplugbus_fixture_counter.so` and `libplugbus_fixture_counter_2.so`
    /// (`cargo xtask bench` builds them); without it the plugin scenarios are skipped.
    #[arg(long = "plugins", value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Rounds per scenario (default 7, or 5 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=101))]
    rounds: Option<u32>,
}

/// How long and how often to measure.
#[derive(Debug, Clone)]
struct Plan {
    rounds: usize,
    /// The time one timed batch should take.
    batch: Duration,
    /// `try_emit`s of the stalled-subscriber scenario.
    stalled_emits: u64,
}

impl Plan {
    fn new(quick: bool, rounds: Option<u32>) -> Plan {
        let (rounds_default, batch, stalled_emits) = if quick {
            (5, Duration::from_millis(60), 2_000_000)
        } else {
            (7, Duration::from_millis(250), 10_000_000)
        };
        Plan {
            rounds: rounds.map_or(rounds_default, |r| r as usize),
            batch,
            stalled_emits,
        }
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One measured side of a scenario.
pub(crate) trait Side: Send {
    /// Runs `iters` iterations and returns how long they took (setup excluded).
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>>;
}

/// Waits (yielding to the runtime) until `counter` reaches `target`.
pub(crate) async fn wait_count(counter: &AtomicU64, target: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut spins = 0u32;
    while counter.load(Ordering::Acquire) < target {
        spins = spins.wrapping_add(1);
        if spins % 1024 == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "consumer stuck at {} of {target}",
                counter.load(Ordering::Acquire)
            );
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// A side to measure with its name and operations (deliveries or events) per iteration.
struct Entry<'a> {
    name: &'static str,
    per_iter: u64,
    unit: &'static str,
    side: &'a mut dyn Side,
}

impl<'a> Entry<'a> {
    fn new(name: &'static str, per_iter: u64, unit: &'static str, side: &'a mut dyn Side) -> Self {
        Entry {
            name,
            per_iter,
            unit,
            side,
        }
    }
}

/// Iterations for one batch of about `plan.batch`, found by growing a trial run.
async fn calibrate(plan: &Plan, side: &mut dyn Side) -> anyhow::Result<u64> {
    let mut iters = 1u64;
    loop {
        let took = side.run(iters).await?;
        if took >= plan.batch / 8 || iters >= 1 << 30 {
            let per_iter = took.as_secs_f64() / iters as f64;
            let n = (plan.batch.as_secs_f64() / per_iter.max(1e-12)).ceil() as u64;
            return Ok(n.clamp(1, 1 << 32));
        }
        iters *= 4;
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
struct Row {
    name: &'static str,
    ns_per_op: Option<f64>,
    ops_per_sec: Option<f64>,
    baseline: Option<&'static str>,
    baseline_ns_per_op: Option<f64>,
    ratio: Option<f64>,
    /// `delivery` or `event`.
    unit: &'static str,
    rounds: usize,
    /// The target, in words, and whether this run met it (absent for baselines).
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    met: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl Row {
    fn measured(name: &'static str, unit: &'static str, samples: &[f64]) -> Row {
        let ns = median(samples);
        Row {
            name,
            ns_per_op: Some(ns),
            ops_per_sec: Some(1e9 / ns),
            baseline: None,
            baseline_ns_per_op: None,
            ratio: None,
            unit,
            rounds: samples.len(),
            target: None,
            met: None,
            extra: Map::new(),
        }
    }

    fn skipped(name: &'static str, unit: &'static str, why: &str) -> Row {
        let mut extra = Map::new();
        extra.insert("skipped".into(), Value::String(why.to_owned()));
        Row {
            name,
            ns_per_op: None,
            ops_per_sec: None,
            baseline: None,
            baseline_ns_per_op: None,
            ratio: None,
            unit,
            rounds: 0,
            target: None,
            met: None,
            extra,
        }
    }

    fn against(mut self, base: &Row) -> Row {
        self.baseline = Some(base.name);
        self.baseline_ns_per_op = base.ns_per_op;
        self.ratio = match (self.ns_per_op, base.ns_per_op) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        self
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Measures `base` and `subject` interleaved; per-round ns per operation of each.
async fn pair(plan: &Plan, base: Entry<'_>, subject: Entry<'_>) -> anyhow::Result<(Row, Row)> {
    let bi = calibrate(plan, base.side).await?;
    let si = calibrate(plan, subject.side).await?;
    let (mut bs, mut ss) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        let per_op = |d: Duration, iters: u64, per: u64| d.as_nanos() as f64 / (iters * per) as f64;
        if round % 2 == 0 {
            bs.push(per_op(base.side.run(bi).await?, bi, base.per_iter));
            ss.push(per_op(subject.side.run(si).await?, si, subject.per_iter));
        } else {
            ss.push(per_op(subject.side.run(si).await?, si, subject.per_iter));
            bs.push(per_op(base.side.run(bi).await?, bi, base.per_iter));
        }
    }
    let b = Row::measured(base.name, base.unit, &bs);
    let s = Row::measured(subject.name, subject.unit, &ss).against(&b);
    Ok((b, s))
}

/// Measures several sides interleaved (the order rotating every round); per-round ns per
/// operation of each. The last is the subject: its row's baseline is the first, and its
/// `ratio_to` holds its ratio to each of the others.
async fn interleaved(plan: &Plan, mut entries: Vec<Entry<'_>>) -> anyhow::Result<Vec<Row>> {
    let mut iters = Vec::new();
    for e in entries.iter_mut() {
        iters.push(calibrate(plan, e.side).await?);
    }
    let n = entries.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..plan.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let e = &mut entries[i];
            let d = e.side.run(iters[i]).await?;
            samples[i].push(d.as_nanos() as f64 / (iters[i] * e.per_iter) as f64);
        }
    }
    let mut rows: Vec<Row> = entries
        .iter()
        .zip(&samples)
        .map(|(e, s)| Row::measured(e.name, e.unit, s))
        .collect();
    if let Some(subject) = rows.pop() {
        let mut ratios = Map::new();
        for base in &rows {
            if let (Some(a), Some(b)) = (subject.ns_per_op, base.ns_per_op) {
                ratios.insert(base.name.to_owned(), json!(a / b));
            }
        }
        let mut subject = match rows.first() {
            Some(first) => subject.against(first),
            None => subject,
        };
        subject
            .extra
            .insert("ratio_to".into(), Value::Object(ratios));
        rows.push(subject);
    }
    Ok(rows)
}

/// The subject's ratio to `base` (from [`interleaved`]'s `ratio_to`).
fn ratio_to(row: &Row, base: &str) -> Option<f64> {
    row.extra.get("ratio_to")?.get(base)?.as_f64()
}

/// Measures one side on its own.
async fn single(plan: &Plan, e: Entry<'_>) -> anyhow::Result<Row> {
    let iters = calibrate(plan, e.side).await?;
    let mut samples = Vec::new();
    for _ in 0..plan.rounds {
        let d = e.side.run(iters).await?;
        samples.push(d.as_nanos() as f64 / (iters * e.per_iter) as f64);
    }
    Ok(Row::measured(e.name, e.unit, &samples))
}

const DELIVERY: &str = "delivery";
const EVENT: &str = "event";

/// Every scenario name, in output order, grouped as they run. `stalled_drop_oldest` runs
/// first: its target is the process's peak resident set, which the allocator's memory kept
/// from earlier scenarios (the fan-out groups' mailboxes, the plugin runs) would otherwise
/// decide.
const GROUPS: &[&[&str]] = &[
    &["stalled_drop_oldest"],
    &["floor_n1", "publish_sync_n1"],
    &["floor_n4", "publish_sync_n4"],
    &["floor_n16", "publish_sync_n16"],
    &["seed_n4", "publish_full_n4"],
    &["seed_n16", "publish_full_n16"],
    &["join_all_n4", "publish_async_n4"],
    &["mpsc_n1", "broadcast_n1", "flume_n1", "emit_n1"],
    &["broadcast_n4", "flume_n4", "emit_n4"],
    &["broadcast_n16", "flume_n16", "emit_n16"],
    &["broadcast_n4_2pub", "flume_n4_2pub", "emit_n4_2pub"],
    &["latency_broadcast_n4", "latency_emit_n4"],
    &["event_new"],
    &["plugin_emit_1", "plugin_emit_2"],
    &["plugin_emit_process"],
    &["scale_13_types", "scale_1000_types"],
    &["jetstream_raw", "nats_forward", "nats_latency"],
];

/// The target of a scenario, and whether `row` meets it.
fn judge(row: &mut Row) {
    let ratio = row.ratio;
    let (target, met): (&'static str, Option<bool>) = match row.name {
        "publish_sync_n1" => ("<= 10x floor", ratio.map(|r| r <= 10.0)),
        "publish_sync_n4" | "publish_sync_n16" => ("<= 4x floor", ratio.map(|r| r <= 4.0)),
        "publish_full_n4" => (">= 15x faster than seed", ratio.map(|r| r <= 1.0 / 15.0)),
        "publish_full_n16" => (">= 40x faster than seed", ratio.map(|r| r <= 1.0 / 40.0)),
        "publish_async_n4" => ("<= 2x join_all", ratio.map(|r| r <= 2.0)),
        "emit_n1" => (
            "<= 1.0x mpsc, <= 0.7x broadcast and flume",
            match (
                ratio_to(row, "mpsc_n1"),
                ratio_to(row, "broadcast_n1"),
                ratio_to(row, "flume_n1"),
            ) {
                (Some(m), Some(b), Some(f)) => Some(m <= 1.0 && b <= 0.7 && f <= 0.7),
                _ => None,
            },
        ),
        "emit_n4" | "emit_n16" => {
            let n = if row.name == "emit_n4" { 4 } else { 16 };
            (
                "<= 0.7x broadcast and flume",
                match (
                    ratio_to(row, &format!("broadcast_n{n}")),
                    ratio_to(row, &format!("flume_n{n}")),
                ) {
                    (Some(b), Some(f)) => Some(b <= 0.7 && f <= 0.7),
                    _ => None,
                },
            )
        }
        "emit_n4_2pub" => (
            "<= 0.8x broadcast, 2 publishers",
            ratio_to(row, "broadcast_n4_2pub").map(|r| r <= 0.8),
        ),
        "nats_forward" => (">= 100k events/s", row.ops_per_sec.map(|o| o >= 1e5)),
        "latency_emit_n4" => (
            "p99 <= broadcast's at 100k events/s",
            ratio.map(|r| r <= 1.0),
        ),
        "event_new" => ("<= 60 ns", row.ns_per_op.map(|ns| ns <= 60.0)),
        "plugin_emit_1" => (">= 2M events/s", row.ops_per_sec.map(|o| o >= 2e6)),
        "plugin_emit_process" => (
            ">= 500k events/s, <= 3x in process",
            row.ops_per_sec
                .zip(ratio)
                .map(|(o, r)| o >= 5e5 && r <= 3.0),
        ),
        "plugin_emit_2" => (
            "<= 1.3x plugin_emit_1, JSON once",
            ratio.map(|r| {
                r <= 1.3 && row.extra.get("serializations_per_event") == Some(&json!(1.0))
            }),
        ),
        "scale_1000_types" => ("<= 1.5x scale_13_types", ratio.map(|r| r <= 1.5)),
        "stalled_drop_oldest" => (
            "peak RSS <= 64 MiB, drops exact",
            row.extra
                .get("rss_mib")
                .and_then(Value::as_f64)
                .map(|m| m <= 64.0 && row.extra.get("drops_exact") == Some(&Value::Bool(true))),
        ),
        _ => return,
    };
    row.target = Some(target);
    row.met = met;
}

fn selected(filters: &[String], group: &[&str]) -> bool {
    filters.is_empty()
        || group
            .iter()
            .any(|name| filters.iter().any(|f| name.contains(f.as_str())))
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    // Run on a worker thread of the runtime, not on the thread blocked in `block_on`.
    let rows = tokio::spawn(run(args.quick, args.rounds, args.filter, args.plugins))
        .await
        .context("the bench task failed")??;
    let commit = commit();
    let machine = machine();
    print_table(&rows, &commit, &machine);
    if let Some(path) = &args.json {
        let doc = json!({
            "commit": commit,
            "dirty": dirty(),
            "machine": machine,
            "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "quick": args.quick,
            "scenarios": rows,
        });
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing '{}'", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

async fn run(
    quick: bool,
    rounds: Option<u32>,
    filters: Vec<String>,
    plugins: Option<PathBuf>,
) -> anyhow::Result<Vec<Row>> {
    let plan = Plan::new(quick, rounds);
    let mut rows = Vec::new();
    for group in GROUPS {
        if !selected(&filters, group) {
            continue;
        }
        let started = Instant::now();
        eprint!("{} ...", group.join(" / "));
        let mut got = run_group(&plan, group, plugins.as_deref()).await?;
        eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
        for row in &mut got {
            judge(row);
        }
        rows.extend(got);
    }
    Ok(rows)
}

async fn run_group(
    plan: &Plan,
    group: &'static [&'static str],
    plugins: Option<&Path>,
) -> anyhow::Result<Vec<Row>> {
    use baselines::{Floor, JoinAll, MpscHop, Seed};
    use fanout::{BroadcastFanout, EmitFanout, FlumeFanout};
    use scenarios::{EmitOne, EventNew, PublishAsync, PublishSync, Scale};
    let ev = scenarios::prebuilt_event()?;
    let two = |(a, b): (Row, Row)| vec![a, b];
    Ok(match group.first().copied().unwrap_or_default() {
        "floor_n1" | "floor_n4" | "floor_n16" => {
            let (n, sync_name) = match group[0] {
                "floor_n1" => (1, "publish_sync_n1"),
                "floor_n4" => (4, "publish_sync_n4"),
                _ => (16, "publish_sync_n16"),
            };
            let mut floor = Floor::new(n, ev);
            let mut bus = PublishSync::new(n, false)?;
            two(pair(
                plan,
                Entry::new(group[0], n as u64, DELIVERY, &mut floor),
                Entry::new(sync_name, n as u64, DELIVERY, &mut bus),
            )
            .await?)
        }
        "seed_n4" | "seed_n16" => {
            let (n, full_name) = if group[0] == "seed_n4" {
                (4, "publish_full_n4")
            } else {
                (16, "publish_full_n16")
            };
            let mut seed = Seed::new(n).await;
            let mut bus = PublishSync::new(n, true)?;
            two(pair(
                plan,
                Entry::new(group[0], n as u64, DELIVERY, &mut seed),
                Entry::new(full_name, n as u64, DELIVERY, &mut bus),
            )
            .await?)
        }
        "join_all_n4" => {
            let mut join = JoinAll::new(4, ev.clone());
            let mut bus = PublishAsync::new(4, ev)?;
            two(pair(
                plan,
                Entry::new("join_all_n4", 4, DELIVERY, &mut join),
                Entry::new("publish_async_n4", 4, DELIVERY, &mut bus),
            )
            .await?)
        }
        "mpsc_n1" => {
            let mut hop = MpscHop::new(ev.clone());
            let mut broadcast = BroadcastFanout::new(1, 1, ev.clone());
            let mut flume = FlumeFanout::new(1, 1, ev.clone());
            let mut bus = EmitOne::new(ev)?;
            let mut rows = interleaved(
                plan,
                vec![
                    Entry::new("mpsc_n1", 1, DELIVERY, &mut hop),
                    Entry::new("broadcast_n1", 1, DELIVERY, &mut broadcast),
                    Entry::new("flume_n1", 1, DELIVERY, &mut flume),
                    Entry::new("emit_n1", 1, DELIVERY, &mut bus),
                ],
            )
            .await?;
            note_lagged(&mut rows, "broadcast_n1", broadcast.lagged());
            rows
        }
        "broadcast_n4" | "broadcast_n16" | "broadcast_n4_2pub" => {
            let (n, publishers) = match group[0] {
                "broadcast_n4" => (4, 1),
                "broadcast_n16" => (16, 1),
                _ => (4, 2),
            };
            let per = n as u64;
            let mut broadcast = BroadcastFanout::new(n, publishers, ev.clone());
            let mut flume = FlumeFanout::new(n, publishers, ev.clone());
            let mut bus = EmitFanout::new(n, publishers, ev)?;
            let mut rows = interleaved(
                plan,
                vec![
                    Entry::new(group[0], per, DELIVERY, &mut broadcast),
                    Entry::new(group[1], per, DELIVERY, &mut flume),
                    Entry::new(group[2], per, DELIVERY, &mut bus),
                ],
            )
            .await?;
            note_lagged(&mut rows, group[0], broadcast.lagged());
            rows
        }
        "latency_broadcast_n4" => latency_group(plan).await?,
        #[cfg(feature = "nats")]
        "jetstream_raw" => nats::nats_group(plan).await?,
        #[cfg(not(feature = "nats"))]
        "jetstream_raw" => {
            let why = "built without the nats feature";
            vec![
                Row::skipped("jetstream_raw", EVENT, why),
                Row::skipped("nats_forward", EVENT, why),
                Row::skipped("nats_latency", "p99 latency", why),
            ]
        }
        "event_new" => vec![single(plan, Entry::new("event_new", 1, EVENT, &mut EventNew)).await?],
        "plugin_emit_1" => plugin_group(plan, plugins).await?,
        "plugin_emit_process" => process_group(plan, plugins).await?,
        "scale_13_types" => {
            let per = scenarios::SCALE_DELIVERIES;
            let mut small = Scale::new(13, 1)?;
            let mut large = Scale::new(1000, 100)?;
            let (a, mut b) = pair(
                plan,
                Entry::new("scale_13_types", per, DELIVERY, &mut small),
                Entry::new("scale_1000_types", per, DELIVERY, &mut large),
            )
            .await?;
            b.extra.insert("subscriptions".into(), json!(1100));
            vec![a, b]
        }
        "stalled_drop_oldest" => vec![stalled_row(plan).await?],
        other => anyhow::bail!("unknown scenario group {other}"),
    })
}

/// Records in the broadcast row how many events its receivers lost to lag (0: exact).
fn note_lagged(rows: &mut [Row], name: &str, lagged: u64) {
    if let Some(row) = rows.iter_mut().find(|r| r.name == name) {
        row.extra.insert("lagged".into(), json!(lagged));
    }
}

/// Publish-to-handler latency at 100k events/s to 4 subscribers: tokio broadcast and `emit`,
/// alternating over the rounds. `ns_per_op` is the median over the rounds of each run's p99;
/// the p50 is beside it.
async fn latency_group(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    use fanout::{latency, Design};
    const RATE: u64 = 100_000;
    let events = (RATE as f64 * plan.batch.as_secs_f64() * 2.0) as u64;
    let (mut b99, mut b50, mut e99, mut e50) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        let order = if round % 2 == 0 {
            [Design::Broadcast, Design::Emit]
        } else {
            [Design::Emit, Design::Broadcast]
        };
        for design in order {
            let l = latency(design, 4, RATE, events).await?;
            let (p99, p50) = match design {
                Design::Broadcast => (&mut b99, &mut b50),
                Design::Emit => (&mut e99, &mut e50),
            };
            p99.push(l.p99.max(1.0));
            p50.push(l.p50.max(1.0));
        }
    }
    let unit = "p99 latency";
    let mut b = Row::measured("latency_broadcast_n4", unit, &b99);
    let mut e = Row::measured("latency_emit_n4", unit, &e99);
    for (row, p50) in [(&mut b, &b50), (&mut e, &e50)] {
        row.ops_per_sec = None;
        row.extra.insert("p50_ns".into(), json!(median(p50)));
        row.extra.insert("rate_per_s".into(), json!(RATE));
        row.extra.insert("events_per_round".into(), json!(events));
    }
    let e = e.against(&b);
    Ok(vec![b, e])
}

async fn plugin_group(plan: &Plan, plugins: Option<&Path>) -> anyhow::Result<Vec<Row>> {
    use scenarios::{PluginEmit, COUNTER_2_LIB, COUNTER_LIB};
    let Some(dir) = plugins else {
        let why = "no --plugins DIR: run `cargo xtask bench`, which builds the counter plugins";
        eprint!(" skipped ({why})");
        return Ok(vec![
            Row::skipped("plugin_emit_1", EVENT, why),
            Row::skipped("plugin_emit_2", EVENT, why).against(&Row::skipped(
                "plugin_emit_1",
                EVENT,
                why,
            )),
        ]);
    };
    for lib in [COUNTER_LIB, COUNTER_2_LIB] {
        let path = dir.join(lib);
        anyhow::ensure!(
            path.is_file(),
            "{} not found (build it with `cargo xtask bench`)",
            path.display()
        );
    }
    let mut one = PluginEmit::new(dir, &[COUNTER_LIB]).await?;
    let mut two = PluginEmit::new(dir, &[COUNTER_LIB, COUNTER_2_LIB]).await?;
    let (mut a, mut b) = pair(
        plan,
        Entry::new("plugin_emit_1", 1, EVENT, &mut one),
        Entry::new("plugin_emit_2", 1, EVENT, &mut two),
    )
    .await?;
    for (row, side) in [(&mut a, &one), (&mut b, &two)] {
        let per_event = side.serialized as f64 / side.events.max(1) as f64;
        row.extra
            .insert("payload_bytes".into(), json!(scenarios::LOGIN_JSON_BYTES));
        row.extra
            .insert("serializations_per_event".into(), json!(per_event));
    }
    one.close().await;
    two.close().await;
    Ok(vec![a, b])
}

/// The counter plugin in a child process of its own beside the same plugin in process,
/// interleaved in this group (the ratio is to that in-process side, named as `plugin_emit_1`).
async fn process_group(plan: &Plan, plugins: Option<&Path>) -> anyhow::Result<Vec<Row>> {
    use scenarios::{PluginEmit, COUNTER_LIB};
    let why_not = if plugins.is_none() {
        Some("no --plugins DIR: run `cargo xtask bench`, which builds the counter plugins")
    } else if plugbus_host::isolation::child_exe().is_none() {
        Some("process isolation is not enabled in this executable")
    } else {
        None
    };
    let (Some(dir), None) = (plugins, why_not) else {
        let why = why_not.unwrap_or_default();
        eprint!(" skipped ({why})");
        return Ok(vec![Row::skipped("plugin_emit_process", EVENT, why)
            .against(&Row::skipped("plugin_emit_1", EVENT, why))]);
    };
    let mut inside = PluginEmit::new(dir, &[COUNTER_LIB]).await?;
    let mut child =
        PluginEmit::with_isolation(dir, &[COUNTER_LIB], plugbus_host::Isolation::Process).await?;
    let (a, b) = pair(
        plan,
        Entry::new("plugin_emit_1", 1, EVENT, &mut inside),
        Entry::new("plugin_emit_process", 1, EVENT, &mut child),
    )
    .await?;
    inside.close().await;
    child.close().await;
    Ok(vec![b.against(&a)])
}

async fn stalled_row(plan: &Plan) -> anyhow::Result<Row> {
    let s = scenarios::stalled(plan.stalled_emits, 1024).await?;
    let ns = s.elapsed.as_nanos() as f64 / s.emits.max(1) as f64;
    let mut row = Row::measured("stalled_drop_oldest", EVENT, &[ns]);
    let e = &mut row.extra;
    e.insert("emits".into(), json!(s.emits));
    e.insert("rss_mib".into(), json!(s.rss_mib.map(round1)));
    e.insert("rss_before_mib".into(), json!(s.rss_before_mib.map(round1)));
    e.insert("rss_peak_reset".into(), json!(s.peak_reset));
    e.insert("mailbox_capacity".into(), json!(s.capacity));
    e.insert("dropped".into(), json!(s.dropped));
    e.insert("in_mailbox".into(), json!(s.in_mailbox));
    e.insert("in_hand".into(), json!(s.in_hand));
    e.insert("delivered".into(), json!(s.delivered));
    e.insert("delivered_after_release".into(), json!(s.delivered_after));
    e.insert("refused".into(), json!(s.refused));
    e.insert("drops_exact".into(), json!(s.exact()));
    Ok(row)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether the work tree differs from `commit` (`None` outside a git work tree).
fn dirty() -> Option<bool> {
    std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
}

fn machine() -> Value {
    let arch = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    json!({
        "arch": arch,
        "cpus": cpus,
        "cpu_model": cpu_model,
        "os": std::env::consts::OS,
        "kernel": kernel,
    })
}

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "-".to_owned(),
        Some(x) if x >= 1e6 => format!("{:.2}M", x / 1e6),
        Some(x) if x >= 1e4 => format!("{:.0}k", x / 1e3),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn fmt_ratio(x: Option<f64>) -> String {
    match x {
        None => "-".to_owned(),
        Some(x) if x < 0.1 => format!("{x:.4}x (1/{:.0})", 1.0 / x),
        Some(x) => format!("{x:.2}x"),
    }
}

fn notes(row: &Row) -> String {
    let e = &row.extra;
    if let Some(why) = e.get("skipped").and_then(Value::as_str) {
        return format!("skipped: {why}");
    }
    match row.name {
        "plugin_emit_1" | "plugin_emit_2" => format!(
            "{} B payload; JSON serialized {}x per event",
            e.get("payload_bytes").map_or(Value::Null, Clone::clone),
            e.get("serializations_per_event")
                .and_then(Value::as_f64)
                .map_or("?".to_owned(), |v| format!("{v:.2}"))
        ),
        "stalled_drop_oldest" => format!(
            "peak RSS {} MiB; {} emits: dropped {}, in mailbox {}, in hand {}, delivered {} \
             (exact: {})",
            e.get("rss_mib").map_or(Value::Null, Clone::clone),
            e.get("emits").map_or(Value::Null, Clone::clone),
            e.get("dropped").map_or(Value::Null, Clone::clone),
            e.get("in_mailbox").map_or(Value::Null, Clone::clone),
            e.get("in_hand").map_or(Value::Null, Clone::clone),
            e.get("delivered").map_or(Value::Null, Clone::clone),
            e.get("drops_exact").map_or(Value::Null, Clone::clone),
        ),
        "scale_1000_types" => "1000 types, 1000 + 100 pattern subscriptions".to_owned(),
        "scale_13_types" => "13 types, 13 + 1 pattern subscriptions".to_owned(),
        _ => String::new(),
    }
}

fn print_table(rows: &[Row], commit: &str, machine: &Value) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "scenario",
        "ns/op",
        "per",
        "ops/s",
        "baseline",
        "base ns/op",
        "ratio",
        "target",
        "met",
        "notes",
    ]);
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        table.add_row([
            Cell::new(row.name),
            Cell::new(fmt_num(row.ns_per_op)).set_alignment(CellAlignment::Right),
            Cell::new(row.unit),
            Cell::new(fmt_num(row.ops_per_sec)).set_alignment(CellAlignment::Right),
            Cell::new(row.baseline.unwrap_or("")),
            Cell::new(fmt_num(row.baseline_ns_per_op)).set_alignment(CellAlignment::Right),
            Cell::new(fmt_ratio(row.ratio)).set_alignment(CellAlignment::Right),
            Cell::new(row.target.unwrap_or("")),
            Cell::new(met),
            Cell::new(notes(row)),
        ]);
    }
    println!("{table}");
    println!(
        "commit {commit}; {} x {} ({}), {}; medians of {} rounds",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("unknown"),
        machine["arch"].as_str().unwrap_or("unknown"),
        machine["kernel"].as_str().unwrap_or("unknown"),
        rows.iter().map(|r| r.rounds).max().unwrap_or(0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_name_once() {
        let names: Vec<&str> = GROUPS.iter().flat_map(|g| g.iter().copied()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names.len(), 37);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn filters_select_groups() {
        assert!(selected(&[], &["a"]));
        assert!(selected(
            &["sync_n4".into()],
            &["floor_n4", "publish_sync_n4"]
        ));
        assert!(!selected(
            &["plugin".into()],
            &["floor_n4", "publish_sync_n4"]
        ));
    }
}
