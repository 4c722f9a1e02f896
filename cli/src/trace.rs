//! `plugbus trace`: an event's causation tree, or a whole correlation, from an audit log.

use crate::Finish;
use clap::{Args, ValueEnum};
use plugbus_host::trace::TraceLog;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// An indented tree.
    Tree,
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The event id: shows its ancestors up to the root and everything it caused.
    #[arg(value_name = "ID", required_unless_present = "correlation")]
    id: Option<String>,
    /// Every event of this correlation id instead.
    #[arg(long, value_name = "ID", conflicts_with = "id")]
    correlation: Option<String>,
    /// The audit log: `--log FILE` (repeatable, a rotated set oldest first), or the files
    /// after the id.
    #[arg(value_name = "FILE")]
    pub(crate) logs: Vec<PathBuf>,
    /// How to draw it.
    #[arg(long, value_enum, default_value_t = Format::Tree)]
    format: Format,
    /// JSON instead (events with their parent and delay).
    #[arg(long)]
    json: bool,
}

pub(crate) fn trace(args: TraceArgs) -> anyhow::Result<Finish> {
    if args.logs.is_empty() {
        anyhow::bail!("no audit log: give one with --log FILE (an existing file)");
    }
    let log = TraceLog::read(&args.logs)?;
    let forest = match (&args.id, &args.correlation) {
        (_, Some(c)) => log.correlation(c),
        (Some(id), None) => log.tree(id),
        (None, None) => anyhow::bail!("give an event id or --correlation ID"),
    };
    let forest = match forest {
        Ok(f) => f,
        Err(e) => {
            eprintln!("plugbus: {e}");
            return Ok(Finish::WithErrors);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&forest.to_json())?);
    } else {
        print!(
            "{}",
            match args.format {
                Format::Tree => forest.to_tree(),
                Format::Mermaid => forest.to_mermaid(),
                Format::Dot => forest.to_dot(),
            }
        );
    }
    Ok(Finish::Clean)
}
