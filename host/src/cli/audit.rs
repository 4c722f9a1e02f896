//! `plugbus audit verify`: check an audit log's hash chain.

use super::Finish;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain of an audit log. Give a rotated set oldest first
    /// (`audit.jsonl.2 audit.jsonl.1 audit.jsonl`) to check the chain across files.
    Verify {
        /// The log file(s).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub(crate) fn audit(cmd: AuditCommand) -> anyhow::Result<Finish> {
    match cmd {
        AuditCommand::Verify { files } => {
            let result = if files.len() == 1 {
                plugbus_host::verify_file(&files[0])
            } else {
                plugbus_host::verify_files(&files)
            };
            match result {
                Ok(r) => {
                    println!(
                        "ok: {} records, seq {}..{}, last hash {}",
                        r.records,
                        r.first_seq.map_or_else(|| "-".into(), |s| s.to_string()),
                        r.last_seq.map_or_else(|| "-".into(), |s| s.to_string()),
                        r.last_hash.as_deref().unwrap_or("-")
                    );
                    Ok(Finish::Clean)
                }
                Err(e) => {
                    println!("broken: {e}");
                    Ok(Finish::WithErrors)
                }
            }
        }
    }
}
