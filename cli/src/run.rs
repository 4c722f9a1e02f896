//! `plugbus run`: JSON Lines events in, through the bus, to the loaded plugins.

use crate::lines::{LineError, LineReader};
use crate::session;
use crate::{summary, Finish};
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plugbus::{Event, Origin};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufRead, BufReader};

/// Why an input event may not be published, if it may not (see
/// [`plugbus_host::bridge::forbidden_for_plugins`]: the same rule as for plugins).
fn forbidden(event: &Event) -> Option<String> {
    plugbus_host::bridge::forbidden_for_plugins(event.event_type().name(), event.source())
}

/// How often, in published events, `run` looks at the required plugins.
const REQUIRED_CHECK_EVERY: u64 = 512;

/// ... and at least this often, however slowly input comes.
const REQUIRED_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// JSON Lines events to publish: a file, or `-` for stdin.
    #[arg(long, short = 'e', value_name = "FILE|-", default_value = "-")]
    events: String,
    /// Plugin directories (replace the config's `plugins.directories`).
    #[arg(long = "plugins", short = 'p', value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Longest input line accepted, in bytes, without its line ending. A longer line is
    /// reported and skipped without being held in memory: this bounds what one line can cost.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_LINE_BYTES,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    max_line_bytes: u64,
    /// After the input ends, keep running this long (e.g. `5s`) before shutting down, so
    /// events coming back through `[bridge.nats]` are still taken (Ctrl-C ends it early).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    linger: Option<std::time::Duration>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` while running (e.g.
    /// `127.0.0.1:9464`; port 0 picks a free one, printed on stderr). Overrides the config's
    /// `[metrics] listen`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// The largest event the host admits ([`MAX_EVENT_BYTES`](plugbus::contract::audit::MAX_EVENT_BYTES),
/// 15 MiB): far above any event the bus is meant to carry, far below what hurts the host, and
/// small enough that every admitted event's audit record fits the log's line limit.
const DEFAULT_MAX_LINE_BYTES: u64 = plugbus::contract::audit::MAX_EVENT_BYTES as u64;

/// Read size for the input. Lines are copied out of it, so it need not hold a whole line.
const READ_BUFFER_BYTES: usize = 64 * 1024;

type Input = Box<dyn AsyncBufRead + Unpin + Send>;

/// Opens the input before any plugin starts, so a wrong path fails fast with nothing to undo.
async fn open_input(events: &str) -> anyhow::Result<Input> {
    Ok(if events == "-" {
        Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            tokio::io::stdin(),
        ))
    } else {
        let f = tokio::fs::File::open(events)
            .await
            .with_context(|| format!("opening events file '{events}'"))?;
        Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, f))
    })
}

/// Publishes the input's events, then always drains and shuts down and prints the account, however
/// the reading ended: end of input, a stop request, or a read error. A read error (reported after
/// the account, with its line) and any skipped or refused line make the exit status 1.
pub(crate) async fn run(config: Option<&Path>, args: RunArgs) -> anyhow::Result<Finish> {
    let max_line = usize::try_from(args.max_line_bytes).with_context(|| {
        format!(
            "--max-line-bytes {} does not fit in memory on this machine",
            args.max_line_bytes
        )
    })?;
    let config_path = config;
    let mut config = session::load_config(config_path)?;
    session::override_dirs(&mut config, &args.plugin_dirs)?;
    let input = open_input(&args.events).await?;
    let (session, _metrics) =
        crate::metrics::start_session(args.metrics, config, config_path).await?;
    let progress = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} events published ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut lines = LineReader::new(input, max_line);
    // Each event is stamped with the line it came from: its origin, which the audit log
    // records beside whatever source the line claims.
    let input_name = if args.events == "-" {
        "stdin"
    } else {
        args.events.as_str()
    };
    let (mut published, mut malformed, mut refused) = (0u64, 0u64, 0u64);
    let mut forbidden_lines = 0u64;
    // Why the input stopped before its end, if it did.
    let mut ended_early: Option<LineError> = None;
    let stop = session::stop_requested();
    tokio::pin!(stop);
    let mut stopped = false;
    // A required plugin that is not there, or fails, stops the input (fail closed).
    let mut required_failed = session.required_failure();
    let mut checked_at = 0u64;
    // Also checked on time, so slow input stops as soon as a required plugin is gone (a
    // deleted .so with hot-plug on), not hundreds of events later.
    let mut check = tokio::time::interval(REQUIRED_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while required_failed.is_none() {
        let item = tokio::select! {
            _ = &mut stop => {
                progress.suspend(|| eprintln!("stop requested: shutting down"));
                stopped = true;
                break;
            }
            _ = check.tick() => {
                required_failed = session.required_failure();
                continue;
            }
            item = lines.next_line() => item,
        };
        let line = match item {
            None => break,
            Some(Ok(line)) => line,
            Some(Err(e)) if e.ends_input() => {
                ended_early = Some(e);
                break;
            }
            Some(Err(e)) => {
                malformed += 1;
                progress.suspend(|| eprintln!("line {}: skipped: {}", e.line, e.kind));
                continue;
            }
        };
        if line.text.trim().is_empty() {
            continue;
        }
        let line_no = line.number;
        match Event::from_json(line.text.as_bytes()) {
            // Input is not the host: it may not speak as the host (lifecycle, system and
            // config events, the host's source names), which the audit trail must be able to
            // trust.
            Ok(event) => match forbidden(&event) {
                Some(why) => {
                    forbidden_lines += 1;
                    progress.suspend(|| eprintln!("line {line_no}: refused (forbidden): {why}"));
                }
                None => match session
                    .bus
                    .emit(event.with_origin(Origin::input(input_name, line_no)))
                    .await
                {
                    Ok(()) => published += 1,
                    Err(e) => {
                        refused += 1;
                        progress.suspend(|| eprintln!("line {line_no}: refused: {e}"));
                    }
                },
            },
            Err(e) => {
                malformed += 1;
                progress.suspend(|| eprintln!("line {line_no}: skipped: {e}"));
            }
        }
        progress.set_position(published);
        if published >= checked_at + REQUIRED_CHECK_EVERY {
            checked_at = published;
            required_failed = session.required_failure();
        }
    }
    progress.finish_and_clear();
    if let (Some(linger), None, false) = (args.linger, &required_failed, stopped) {
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            _ = &mut stop => {}
        }
    }
    if let Some(why) = &required_failed {
        tracing::error!("{why}: no more input is taken");
        eprintln!("plugbus: {why}: no more input is taken");
    }
    let line_no = lines.lines_read();
    let load_failed = !session.load.is_ok();
    let mut outcome = session.finish().await;
    if outcome.required_failure.is_none() {
        outcome.required_failure = required_failed.clone();
    }
    summary::print(&outcome);
    println!(
        "\nInput: {line_no} lines, {published} events published, {malformed} malformed (skipped), {refused} refused, {forbidden_lines} forbidden (the host's own types or sources)"
    );
    if let Some(e) = &ended_early {
        let name = if args.events == "-" {
            "stdin".to_owned()
        } else {
            format!("'{}'", args.events)
        };
        eprintln!(
            "plugbus: the input ended early: {name} line {}: {}",
            e.line, e.kind
        );
    }
    let required_failed = required_failed.or_else(|| outcome.required_failure.clone());
    if let Some(why) = &required_failed {
        eprintln!("plugbus: {why}");
    }
    Ok(
        if malformed > 0
            || refused > 0
            || forbidden_lines > 0
            || ended_early.is_some()
            || load_failed
            || required_failed.is_some()
            || !outcome.is_balanced()
        {
            Finish::WithErrors
        } else {
            Finish::Clean
        },
    )
}
