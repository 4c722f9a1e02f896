//! The `plugbus` binary: runs the bus with plugins loaded from `.so` files.
//!
//! `anyhow` lives only here, at the edge; the library returns typed errors. Exit status: 0 when
//! everything worked, 1 when the run finished but something failed along the way (a plugin that
//! did not load, a malformed input line, a broken audit chain), 2 on a fatal error.

mod audit;
mod bridge;
mod bridge_stats;
mod demo;
mod flows;
mod lines;
mod metrics;
mod otel;
mod plugins;
mod run;
mod scaffold;
mod session;
mod summary;
mod trace;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: an event bus allocates small, short-lived blocks
/// (events, payload bytes, jobs) on one thread and frees them on another (a plugin's), which
/// glibc's allocator handles poorly (a quarter of plugin delivery time went to it). Plugins keep
/// their own allocator: every value that crosses the ABI is freed by the side that made it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A child started to probe a plugin file maps it and answers, nothing else.
    if let Some(code) = plugbus_host::probe::main_if_probe() {
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(3));
    }
    // A child started to serve one plugin (`isolation = "process"`) does only that.
    if let Some(code) = plugbus_host::isolation::main_if_child() {
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // Every plugin file this process has not seen is first mapped in such a child.
    plugbus_host::probe::enable_current_exe(std::time::Duration::from_secs(5));
    // Plugins configured to run in a process of their own are served by this executable.
    plugbus_host::isolation::enable_current_exe();
    run_cli()
}

/// plugbus: an in-process event bus extended by plugins loaded from shared libraries.
#[derive(Debug, Parser)]
#[command(name = "plugbus", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The configuration file (plugbus.toml). Without it, defaults apply.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log filter, in `RUST_LOG` syntax. Plugin logs have the target
    /// `plugbus::plugin::<name>` (e.g. `info`, `warn,plugbus::plugin=trace`,
    /// `warn,plugbus::plugin::auth-enhancer=debug`). For `trace`, `--log FILE` names the
    /// audit log to read instead (repeatable, a rotated set oldest first); for `flows`, every
    /// `--log` names an audit log.
    #[arg(long, global = true, value_name = "FILTER|FILE", action = clap::ArgAction::Append)]
    log: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish JSON Lines events from a file or stdin through the bus to the loaded plugins.
    Run(run::RunArgs),
    /// Run a built-in scenario (logins, logouts, data changes, a brute-force attempt).
    Demo(demo::DemoArgs),
    /// List or inspect plugin files without starting them.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Measure what a delivery costs, beside in-run baselines (use a release build).
    Bench(plugbus_bench::BenchArgs),
    /// An event's causation tree (its ancestors and everything it caused), or a whole
    /// correlation, from an audit log.
    Trace(trace::TraceArgs),
    /// Who publishes and who receives what: the plugins' declared subscriptions and the
    /// binary's own, and with `--log FILE` the observed flows of an audit log, with counts.
    Flows(flows::FlowsArgs),
    /// The NATS bridge of a host (`[bridge.nats]`): `bridge stats` shows its outbox, its
    /// stream and consumer on JetStream, and a running host's live counters.
    #[command(subcommand)]
    Bridge(bridge_stats::BridgeCommand),
}

/// The log filter without `--log`: warnings, and what plugins log at info.
const DEFAULT_LOG: &str = "warn,plugbus::plugin=info";

/// How a command ended, beyond fatal errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Everything worked.
    Clean,
    /// The command completed, but something failed on the way (reported already).
    WithErrors,
}

fn run_cli() -> ExitCode {
    let mut cli = Cli::parse();
    // `trace --log FILE`: the values naming files are the audit logs to read, not filters.
    if let Command::Trace(args) = &mut cli.command {
        let (files, filters): (Vec<String>, Vec<String>) = std::mem::take(&mut cli.log)
            .into_iter()
            .partition(|v| std::path::Path::new(v).is_file());
        args.logs.extend(files.into_iter().map(PathBuf::from));
        cli.log = filters;
    }
    // `flows --log FILE`: every value names an audit log (a missing one is an error).
    if let Command::Flows(args) = &mut cli.command {
        args.logs
            .extend(std::mem::take(&mut cli.log).into_iter().map(PathBuf::from));
    }
    let filter = if cli.log.is_empty() {
        DEFAULT_LOG.to_owned()
    } else {
        cli.log.join(",")
    };
    // `[otel]` is a layer of the subscriber installed next, so it is read first.
    let export = match &cli.command {
        Command::Run(_) | Command::Demo(_) => {
            match otel::Export::from_config(cli.config.as_deref()) {
                Ok(export) => export,
                Err(e) => {
                    eprintln!("plugbus: {e:#}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => otel::Export::default(),
    };
    init_tracing(&filter, &export);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("plugbus-rt")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plugbus: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(cli.config.as_deref(), args).await,
            Command::Demo(args) => demo::demo(cli.config.as_deref(), args).await,
            Command::Plugins(cmd) => plugins::plugins(cli.config.as_deref(), cmd).await,
            Command::Audit(cmd) => audit::audit(cmd),
            Command::Bench(args) => plugbus_bench::bench(args).await.map(|()| Finish::Clean),
            Command::Trace(args) => trace::trace(args),
            Command::Flows(args) => flows::flows(cli.config.as_deref(), args).await,
            Command::Bridge(cmd) => bridge_stats::bridge(cli.config.as_deref(), cmd).await,
        }
    });
    export.finish();
    // Plugin threads that hung are abandoned, not joined: do not wait for them on exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(Finish::Clean) => ExitCode::SUCCESS,
        Ok(Finish::WithErrors) => ExitCode::from(1),
        Err(e) => {
            eprintln!("plugbus: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(filter: &str, export: &otel::Export) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal as _;
    #[cfg(feature = "otel")]
    if let Some(otel) = export.layer() {
        // The log filter applies to the log lines only; the export layer has its own.
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let log = tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_target(true)
            .with_filter(filter);
        let _ = tracing_subscriber::registry()
            .with(otel)
            .with(log)
            .try_init();
        return;
    }
    #[cfg(not(feature = "otel"))]
    let _ = export;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
