//! `plugbus audit`: make the audit key pair, verify an audit log's chain and seals.

use crate::Finish;
use anyhow::Context as _;
use clap::Subcommand;
use plugbus_host::audit::{self, keys, seals::SealSummary, VerifyReport};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Write a new Ed25519 key pair for signed audit seals: `audit.key` (secret, mode 0600:
    /// the audit logger's `signing_key`) and `audit.pub` (for `verify --pubkey`).
    Keygen {
        /// The directory to write them into (created with mode 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Verify an audit log. Give a rotated set oldest first
    /// (`audit.jsonl.2 audit.jsonl.1 audit.jsonl`) to check it across files.
    Verify {
        /// The log file(s), oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The public key (`audit.pub`): check the signed seals too, which detects truncation,
        /// removed leading records, a rewritten chain and missing or extra files.
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// The log is still being written: records after the last seal are reported, not an
        /// error.
        #[arg(long)]
        live: bool,
    },
}

pub(crate) fn audit(cmd: AuditCommand) -> anyhow::Result<Finish> {
    match cmd {
        AuditCommand::Keygen { out } => {
            let pair = keys::keygen(&out)?;
            println!(
                "wrote {} (secret, mode 0600) and {} (public); key id {}",
                pair.secret.display(),
                pair.public.display(),
                pair.key_id
            );
            println!(
                "set signing_key = \"{}\" in [plugin.audit-logger], and verify with --pubkey {}",
                pair.secret.display(),
                pair.public.display()
            );
            Ok(Finish::Clean)
        }
        AuditCommand::Verify {
            files,
            pubkey: Some(pubkey),
            live,
        } => {
            let key = keys::read_public_key(&pubkey)
                .with_context(|| "reading the public key given with --pubkey".to_owned())?;
            match audit::verify_sealed(&files, &key, live) {
                Ok((report, summary)) => {
                    println!("{}", sealed_ok(&report, &summary, &keys::key_id(&key)));
                    Ok(Finish::Clean)
                }
                Err(e) => {
                    println!("broken: {e}");
                    Ok(Finish::WithErrors)
                }
            }
        }
        AuditCommand::Verify { files, live, .. } => {
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
                    println!(
                        "hash chain only: edited, removed, inserted or reordered records inside \
                         the log are detected; records cut from its end or start, an emptied \
                         file, a missing file of a rotated set, or a chain rewritten and \
                         rehashed by whoever can write the file are NOT (sign the log with \
                         signing_key and verify with --pubkey)"
                    );
                    if r.seal_records == 0 {
                        return Ok(Finish::Clean);
                    }
                    // A sealed log: what the seals say about its ends and files needs no key,
                    // only their signatures do.
                    match audit::verify_seal_structure(&files, live) {
                        Ok((_, summary)) => {
                            println!(
                                "the log holds {} seals; their places, ranges and files agree \
                                 ({}), but their signatures were NOT checked: verify with \
                                 --pubkey to prove the log was not rewritten",
                                summary.seals,
                                summary.last.as_ref().map_or("no seal".to_owned(), |l| {
                                    format!("last: {} at seq {}", l.kind.as_str(), l.seq)
                                })
                            );
                            Ok(Finish::Clean)
                        }
                        Err(e) => {
                            println!(
                                "broken: {e} (found without the key: the seals are checked for \
                                 their places, not their signatures)"
                            );
                            Ok(Finish::WithErrors)
                        }
                    }
                }
                Err(e) => {
                    println!("broken: {e}");
                    Ok(Finish::WithErrors)
                }
            }
        }
    }
}

fn sealed_ok(report: &VerifyReport, summary: &SealSummary, key_id: &str) -> String {
    let files = match (summary.files.first(), summary.files.last()) {
        (Some(a), Some(b)) if a == b => format!("file {a}"),
        (Some(a), Some(b)) => format!("files {a}..{b}"),
        _ => "no file".to_owned(),
    };
    let mut text = format!(
        "ok: {} records, seq {}..{}, {files} of log {}, {} seals by key {key_id}",
        report.records,
        report
            .first_seq
            .map_or_else(|| "-".into(), |s| s.to_string()),
        report
            .last_seq
            .map_or_else(|| "-".into(), |s| s.to_string()),
        summary.log_id.as_deref().unwrap_or("-"),
        summary.seals,
    );
    if let Some(last) = &summary.last {
        if summary.unsealed_tail > 0 || last.kind.as_str() != "final" {
            text.push_str(&format!(
                "; live: last seal ({}) at seq {} ({}), {} records after it not sealed yet",
                last.kind.as_str(),
                last.seq,
                last.time,
                summary.unsealed_tail
            ));
        } else {
            text.push_str(&format!(
                "; closed by a final seal at seq {} ({})",
                last.seq, last.time
            ));
        }
    }
    text
}
