//! `plugbus flows`: who publishes and who receives what.
//!
//! The configured plugins are loaded and constructed through the real plugin manager (as
//! `plugins check` does) but never started, so no plugin sees an event or opens its files (an
//! audit logger does not append to the log being read); their declared subscriptions and the
//! binary's own in-process ones are the receivers. With `--log`, the audit log's events add
//! the observed publisher -> type -> receiver edges with their counts.

use crate::session;
use crate::Finish;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use plugbus_host::flows::{FlowMap, Receiver};
use plugbus_host::trace::TraceLog;
use plugbus_host::{ManagerError, PluginManager};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Tables in the terminal.
    Table,
    /// A Mermaid flowchart (`flowchart LR`).
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

#[derive(Debug, Args)]
pub(crate) struct FlowsArgs {
    /// Plugin directories (replace the config's `plugins.directories`).
    #[arg(long = "plugins", short = 'p', value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Audit logs to count the observed flows from: `--log FILE` (repeatable, a rotated set
    /// oldest first).
    #[arg(skip)]
    pub(crate) logs: Vec<PathBuf>,
    /// How to draw it.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// JSON instead (receivers with what they select, observed flows with counts).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn flows(config_path: Option<&Path>, args: FlowsArgs) -> anyhow::Result<Finish> {
    let mut config = session::load_config(config_path)?;
    session::override_dirs(&mut config, &args.plugin_dirs)?;
    // The log first: a wrong path fails before any plugin is loaded.
    let log = if args.logs.is_empty() {
        None
    } else {
        Some(TraceLog::read(&args.logs)?)
    };
    let bus = plugbus_host::bus_builder(&config.bus)
        .build()
        .context("building the bus")?;
    let manager = PluginManager::new(bus.clone(), config);
    let mut failed = false;
    for found in manager.trust_policy().discover() {
        let file = match found {
            Ok(file) => file,
            Err(e) => {
                eprintln!("plugbus: {e}");
                failed = true;
                continue;
            }
        };
        match manager.load(file.path()).await {
            Ok(_) => {}
            // Disabled in the configuration: not a receiver, and not a failure.
            Err(ManagerError::InvalidState { .. }) => {}
            Err(e) => {
                eprintln!("plugbus: {e}");
                failed = true;
            }
        }
    }
    let plugins = manager.plugins();
    let _ = manager.shutdown().await;
    let _ = bus.shutdown(Duration::from_secs(5)).await;

    let mut receivers: Vec<Receiver> = plugins
        .iter()
        .flat_map(|p| p.declared.iter().map(|d| Receiver::from_plugin(&p.name, d)))
        .collect();
    receivers.extend(session::in_process_receivers());
    let mut map = FlowMap::new(receivers);
    if let Some(log) = &log {
        map.observe(log);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&map.to_json())?);
    } else {
        match args.format {
            Format::Table => print_tables(&map, &args.logs),
            Format::Mermaid => print!("{}", map.to_mermaid()),
            Format::Dot => print!("{}", map.to_dot()),
        }
    }
    Ok(if failed {
        Finish::WithErrors
    } else {
        Finish::Clean
    })
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    t
}

fn print_tables(map: &FlowMap, logs: &[PathBuf]) {
    println!("Receivers");
    let mut t = table(&["subscription", "owner", "receives"]);
    for r in &map.receivers {
        t.add_row(vec![r.name.clone(), r.owner.to_string(), r.selects()]);
    }
    println!("{t}");
    if logs.is_empty() {
        println!("\nNo audit log given (--log FILE): receivers only, no observed flows.");
        return;
    }
    println!("\nObserved flows");
    let mut t = table(&["publisher", "type", "events", "received by"]);
    for f in &map.flows {
        let receivers = if f.receivers.is_empty() {
            "(nobody)".to_owned()
        } else {
            f.receivers.join(", ")
        };
        t.add_row(vec![
            f.publisher.clone(),
            f.event_type.clone(),
            f.count.to_string(),
            receivers,
        ]);
    }
    if let Some(c) = t.column_mut(2) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    println!("{t}");
    println!(
        "{} event records read from {}",
        map.events_read,
        logs.iter()
            .map(|l| format!("'{}'", l.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
