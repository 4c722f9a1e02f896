//! `plugbus run`: JSON Lines events in, through the bus, to the loaded plugins.

use super::session::{self, Session};
use super::{summary, Finish};
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plugbus::Event;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// JSON Lines events to publish: a file, or `-` for stdin.
    #[arg(long, short = 'e', value_name = "FILE|-", default_value = "-")]
    events: String,
    /// Plugin directories (replace the config's `plugins.directories`).
    #[arg(long = "plugins", short = 'p', value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
}

pub(crate) async fn run(config: Option<&Path>, args: RunArgs) -> anyhow::Result<Finish> {
    let mut config = session::load_config(config)?;
    session::override_dirs(&mut config, &args.plugin_dirs)?;
    let session = Session::start(config).await?;
    let reader: Box<dyn AsyncBufRead + Unpin + Send> = if args.events == "-" {
        Box::new(BufReader::new(tokio::io::stdin()))
    } else {
        let f = tokio::fs::File::open(&args.events)
            .await
            .with_context(|| format!("opening events file '{}'", args.events))?;
        Box::new(BufReader::new(f))
    };
    let progress = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} events published ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut lines = reader.lines();
    let (mut published, mut malformed, mut refused) = (0u64, 0u64, 0u64);
    let mut line_no = 0u64;
    let stop = session::stop_requested();
    tokio::pin!(stop);
    loop {
        let line = tokio::select! {
            _ = &mut stop => {
                progress.suspend(|| eprintln!("stop requested: shutting down"));
                break;
            }
            line = lines.next_line() => line.with_context(|| format!("reading '{}'", args.events))?,
        };
        let Some(line) = line else { break };
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_json(line.as_bytes()) {
            Ok(event) => match session.bus.emit(event).await {
                Ok(()) => published += 1,
                Err(e) => {
                    refused += 1;
                    progress.suspend(|| eprintln!("line {line_no}: refused: {e}"));
                }
            },
            Err(e) => {
                malformed += 1;
                progress.suspend(|| eprintln!("line {line_no}: skipped: {e}"));
            }
        }
        progress.set_position(published);
    }
    progress.finish_and_clear();
    let load_failed = !session.load.is_ok();
    let outcome = session.finish().await;
    summary::print(&outcome);
    println!(
        "\nInput: {line_no} lines, {published} events published, {malformed} malformed (skipped), {refused} refused"
    );
    Ok(
        if malformed > 0 || refused > 0 || load_failed || !outcome.account.is_balanced() {
            Finish::WithErrors
        } else {
            Finish::Clean
        },
    )
}
