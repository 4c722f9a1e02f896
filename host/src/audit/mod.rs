//! Verifies the hash chain of an audit log (`plugbus audit verify FILE`).
//!
//! The audit-logger plugin appends JSON Lines. Each record body `B` is a compact
//! JSON object with (among others) `seq` (+1 per record) and `prev_hash` (the
//! previous record's `hash`, or 64 `0`s for the first record ever). The line on disk
//! is `B` with its final `}` replaced by `,"hash":"<hex SHA-256 of B>"}`, then `\n`.
//!
//! Verification rebuilds `B` byte for byte from each line (drop the hash suffix,
//! put the `}` back), recomputes the hash, then checks `seq` and `prev_hash` against
//! the previous line. So an edited record fails its own hash, and a removed,
//! inserted or reordered record breaks the chain at the first line after it. The
//! first broken record is reported with its line number, its `seq` when readable
//! and the reason.
//!
//! The first line of a lone file may start the chain anywhere (rotation moves older
//! records to other files): its `prev_hash` is reported in
//! [`VerifyReport::first_prev_hash`], not checked, except that a record with `seq` 1
//! must have an all-zero `prev_hash`. [`verify_files`] checks a rotated set given
//! oldest first, continuing the chain across files.
//!
//! The verifier streams: memory stays bounded by the longest line
//! ([`MAX_LINE_BYTES`]), whatever the size of the log.
//!
//! # What a chain alone cannot tell, and seals
//!
//! Whoever can write the file can cut records off its end or its start, empty it, drop a
//! whole file of a rotated set, or rewrite it and recompute every hash: the chain still
//! agrees with itself. With a signing key the audit logger also writes signed seal records,
//! and [`verify_sealed`] checks them against the public key ([`seals`] says what that
//! detects); [`keys`] makes and reads the key pair (`plugbus audit keygen`).

pub mod keys;
pub mod seals;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use plugbus::contract::audit::is_seal_record;
use sha2::{Digest, Sha256};

use crate::error::{VerifyError, VerifyErrorKind};
use seals::{SealCheck, SealSummary};

/// The longest line the verifier accepts, not counting its `\n`: 16 MiB.
///
/// This is the audit log format's one line limit,
/// [`MAX_RECORD_BYTES`](plugbus_plugin_api::contract::audit::MAX_RECORD_BYTES), which the
/// audit-logger plugin also obeys when writing: the writer never produces a line this verifier
/// refuses, so a genuine log is never called broken for its size.
pub const MAX_LINE_BYTES: usize = plugbus_plugin_api::contract::audit::MAX_RECORD_BYTES;

/// `prev_hash` of the first record ever: 64 zeros.
pub const GENESIS_PREV_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// What precedes the hash at the end of every line.
const HASH_PREFIX: &[u8] = b",\"hash\":\"";
/// What follows the hash at the end of every line.
const HASH_SUFFIX: &[u8] = b"\"}";
/// Length of a hex SHA-256.
const HEX_LEN: usize = 64;

/// A verified log (or rotated set of logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records verified (non-empty lines).
    pub records: u64,
    /// `seq` of the first record; `None` when there were no records.
    pub first_seq: Option<u64>,
    /// `seq` of the last record; `None` when there were no records.
    pub last_seq: Option<u64>,
    /// `hash` of the last record (lowercase hex): the next record's `prev_hash`.
    pub last_hash: Option<String>,
    /// `prev_hash` of the first record: where the verified part of the chain hangs
    /// from (all zeros when it starts at the first record ever). Reported, not
    /// checked, unless the first record has `seq` 1.
    pub first_prev_hash: Option<String>,
    /// Records that are seal records (counted, not checked, without a key).
    pub seal_records: u64,
}

/// Verifies one audit log file on its own.
///
/// An empty file is valid (0 records).
pub fn verify_file(path: &Path) -> Result<VerifyReport, VerifyError> {
    let mut chain = Chain::default();
    chain.verify_path(path)?;
    Ok(chain.report)
}

/// Verifies a rotated set of audit logs given oldest first (`audit.jsonl.3`,
/// `audit.jsonl.2`, `audit.jsonl.1`, `audit.jsonl`), checking that the chain
/// continues from each file into the next. Empty files are allowed anywhere.
pub fn verify_files(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let mut chain = Chain::default();
    for path in paths {
        chain.verify_path(path)?;
    }
    Ok(chain.report)
}

/// Verifies a rotated set of audit logs (oldest first, or one file) with their seals: the
/// chain as [`verify_files`] does, and every seal against `key` (see [`seals`]). With
/// `live`, records after the last seal (a log still being written) are reported in
/// [`SealSummary::unsealed_tail`] instead of failing the check.
///
/// # Errors
/// The first broken record or seal, or what is wrong with the set as a whole (a missing
/// first or last file, no final seal) with the last file's name and no line.
pub fn verify_sealed(
    paths: &[PathBuf],
    key: &VerifyingKey,
    live: bool,
) -> Result<(VerifyReport, SealSummary), VerifyError> {
    verify_with(paths, SealCheck::new(Some(*key), live))
}

/// [`verify_sealed`] without the key, for a log that holds seal records: every check but the
/// signatures. It catches a log cut after its last seal, records removed before the first, a
/// missing or extra file, a seal removed; it cannot tell seals a forger wrote from genuine ones
/// (that takes the key).
///
/// # Errors
/// As [`verify_sealed`].
pub fn verify_seal_structure(
    paths: &[PathBuf],
    live: bool,
) -> Result<(VerifyReport, SealSummary), VerifyError> {
    verify_with(paths, SealCheck::new(None, live))
}

fn verify_with(
    paths: &[PathBuf],
    check: SealCheck,
) -> Result<(VerifyReport, SealSummary), VerifyError> {
    let mut chain = Chain {
        seals: Some(check),
        ..Chain::default()
    };
    for path in paths {
        chain.verify_path(path)?;
    }
    let last = paths.last().cloned().unwrap_or_default();
    let summary = chain
        .seals
        .take()
        .map(SealCheck::finish)
        .transpose()
        .map_err(|reason| VerifyError {
            path: last,
            line: None,
            seq: None,
            kind: VerifyErrorKind::Seal { reason },
        })?
        .unwrap_or_default();
    Ok((chain.report, summary))
}

/// Verifies a log read from `reader` (e.g. standard input); `name` stands for the
/// file in errors.
pub fn verify_reader<R: BufRead>(reader: R, name: &Path) -> Result<VerifyReport, VerifyError> {
    let mut chain = Chain::default();
    chain.verify_reader(reader, name)?;
    Ok(chain.report)
}

/// The running state of a verification.
#[derive(Debug, Default)]
struct Chain {
    /// `seq` and `hash` of the last verified record.
    last: Option<(u64, String)>,
    report: VerifyReport,
    /// With a key: the seal checks.
    seals: Option<SealCheck>,
}

/// A broken line, before the file name is attached.
struct Broken {
    seq: Option<u64>,
    kind: VerifyErrorKind,
}

impl Broken {
    fn new(seq: Option<u64>, kind: VerifyErrorKind) -> Self {
        Self { seq, kind }
    }
}

impl Chain {
    fn verify_path(&mut self, path: &Path) -> Result<(), VerifyError> {
        let file = File::open(path).map_err(|source| VerifyError {
            path: path.to_path_buf(),
            line: None,
            seq: None,
            kind: VerifyErrorKind::Io { source },
        })?;
        self.verify_reader(BufReader::new(file), path)
    }

    fn verify_reader<R: BufRead>(&mut self, mut reader: R, path: &Path) -> Result<(), VerifyError> {
        let mut buffer = Vec::new();
        let mut line_number: u64 = 0;
        if let Some(seals) = self.seals.as_mut() {
            seals.start_file().map_err(|reason| VerifyError {
                path: path.to_path_buf(),
                line: Some(1),
                seq: None,
                kind: VerifyErrorKind::Seal { reason },
            })?;
        }
        loop {
            buffer.clear();
            line_number += 1;
            let fail = |line: Option<u64>, broken: Broken| VerifyError {
                path: path.to_path_buf(),
                line,
                seq: broken.seq,
                kind: broken.kind,
            };
            let read = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buffer)
                .map_err(|source| {
                    fail(
                        Some(line_number),
                        Broken::new(None, VerifyErrorKind::Io { source }),
                    )
                })?;
            if read == 0 {
                return Ok(());
            }
            let complete = buffer.last() == Some(&b'\n');
            if complete {
                buffer.pop();
            } else if buffer.len() > MAX_LINE_BYTES {
                return Err(fail(
                    Some(line_number),
                    Broken::new(
                        None,
                        VerifyErrorKind::LineTooLong {
                            limit: MAX_LINE_BYTES,
                        },
                    ),
                ));
            }
            self.verify_line(&buffer, complete)
                .map_err(|broken| fail(Some(line_number), broken))?;
        }
    }

    /// Verifies one line (without its `\n`) and advances the chain.
    fn verify_line(&mut self, line: &[u8], complete: bool) -> Result<(), Broken> {
        if line.is_empty() {
            return Err(Broken::new(None, VerifyErrorKind::EmptyLine));
        }
        let Some((body, recorded)) = split_hash(line) else {
            let kind = if complete {
                VerifyErrorKind::MissingHash
            } else {
                VerifyErrorKind::Truncated
            };
            return Err(Broken::new(peek_seq(line), kind));
        };
        let computed = hex::encode(Sha256::digest(&body));
        if computed != recorded {
            return Err(Broken::new(
                peek_seq(&body),
                VerifyErrorKind::HashMismatch {
                    recorded: recorded.to_owned(),
                    computed,
                },
            ));
        }
        let (seq, prev_hash) = read_fields(&body)?;
        let broken = |kind| Broken::new(Some(seq), kind);
        match &self.last {
            Some((last_seq, last_hash)) => {
                let expected = last_seq.checked_add(1);
                if expected != Some(seq) {
                    return Err(broken(VerifyErrorKind::SeqGap {
                        expected: expected.unwrap_or(u64::MAX),
                        found: seq,
                    }));
                }
                if prev_hash != *last_hash {
                    return Err(broken(VerifyErrorKind::PrevHashMismatch {
                        expected: last_hash.clone(),
                        found: prev_hash,
                    }));
                }
            }
            None => {
                if seq == 1 && prev_hash != GENESIS_PREV_HASH {
                    return Err(broken(VerifyErrorKind::PrevHashMismatch {
                        expected: GENESIS_PREV_HASH.to_owned(),
                        found: prev_hash,
                    }));
                }
                self.report.first_seq = Some(seq);
                self.report.first_prev_hash = Some(prev_hash.clone());
            }
        }
        if let Some(seals) = self.seals.as_mut() {
            seals
                .record(seq, &prev_hash, &body)
                .map_err(|reason| broken(VerifyErrorKind::Seal { reason }))?;
        }
        if is_seal_record(&body) {
            self.report.seal_records += 1;
        }
        self.report.records += 1;
        self.report.last_seq = Some(seq);
        self.report.last_hash = Some(recorded.to_owned());
        self.last = Some((seq, recorded.to_owned()));
        Ok(())
    }
}

/// Splits a line into the record body `B` (with its `}` restored) and the recorded
/// hash, if the line ends with `,"hash":"<64 lowercase hex>"}`.
fn split_hash(line: &[u8]) -> Option<(Vec<u8>, &str)> {
    let tail_len = HASH_PREFIX.len() + HEX_LEN + HASH_SUFFIX.len();
    let cut = line.len().checked_sub(tail_len)?;
    // The body must at least be `{` before the restored `}`.
    if cut == 0 {
        return None;
    }
    let (head, tail) = line.split_at(cut);
    let rest = tail.strip_prefix(HASH_PREFIX)?;
    let hash = rest.strip_suffix(HASH_SUFFIX)?;
    if !is_lower_hex(hash) {
        return None;
    }
    let hash = std::str::from_utf8(hash).ok()?;
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    Some((body, hash))
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.len() == HEX_LEN && bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `seq` of a line or body, if it parses as a JSON object with a `seq`; for reports.
fn peek_seq(bytes: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// Parses a body and extracts `seq` and `prev_hash`.
fn read_fields(body: &[u8]) -> Result<(u64, String), Broken> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|err| {
        Broken::new(
            None,
            VerifyErrorKind::NotJson {
                reason: err.to_string(),
            },
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(Broken::new(
            None,
            VerifyErrorKind::NotJson {
                reason: "the record is not an object".to_owned(),
            },
        ));
    };
    let seq = match object.get("seq") {
        Some(seq) => seq.as_u64().ok_or_else(|| {
            Broken::new(
                None,
                VerifyErrorKind::BadField {
                    field: "seq",
                    reason: format!("is not an unsigned integer: {seq}"),
                },
            )
        })?,
        None => {
            return Err(Broken::new(
                None,
                VerifyErrorKind::BadField {
                    field: "seq",
                    reason: "is missing".to_owned(),
                },
            ))
        }
    };
    let bad_prev = |reason: String| {
        Broken::new(
            Some(seq),
            VerifyErrorKind::BadField {
                field: "prev_hash",
                reason,
            },
        )
    };
    let prev_hash = match object.get("prev_hash") {
        Some(serde_json::Value::String(s)) if is_lower_hex(s.as_bytes()) => s.clone(),
        Some(other) => return Err(bad_prev(format!("is not 64 lowercase hex digits: {other}"))),
        None => return Err(bad_prev("is missing".to_owned())),
    };
    Ok((seq, prev_hash))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    /// A writer following the audit-log spec, independent of the verifier.
    struct Writer {
        seq: u64,
        prev_hash: String,
    }

    impl Writer {
        fn new() -> Self {
            Self {
                seq: 0,
                prev_hash: "0".repeat(64),
            }
        }

        /// The line for the next record, with `data` as payload.
        fn line(&mut self, data: serde_json::Value) -> String {
            self.seq += 1;
            let body = json!({
                "seq": self.seq,
                "prev_hash": self.prev_hash,
                "ts": "2026-11-22T05:00:00.000000000Z",
                "event_id": format!("0193-{:04}", self.seq),
                "event_type": "user.login",
                "category": "business",
                "source": "test",
                "correlation_id": null,
                "causation_id": null,
                "metadata": {"request_id": "r1"},
                "data": data,
            })
            .to_string();
            let hash = hex::encode(Sha256::digest(body.as_bytes()));
            self.prev_hash = hash.clone();
            let mut line = body;
            line.pop(); // the final '}'
            line.push_str(&format!(",\"hash\":\"{hash}\"}}\n"));
            line
        }

        fn lines(&mut self, n: usize) -> Vec<String> {
            (0..n)
                .map(|i| self.line(json!({"user": format!("u{i}"), "ok": true})))
                .collect()
        }
    }

    fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let path = dir.join(name);
        let mut file = File::create(&path).unwrap();
        for line in lines {
            file.write_all(line.as_bytes()).unwrap();
        }
        path
    }

    #[test]
    fn good_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::new();
        let lines = writer.lines(5);
        let path = write(dir.path(), "audit.jsonl", &lines);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.records, 5);
        assert_eq!(report.first_seq, Some(1));
        assert_eq!(report.last_seq, Some(5));
        assert_eq!(report.last_hash.as_deref(), Some(writer.prev_hash.as_str()));
        assert_eq!(report.first_prev_hash.as_deref(), Some(GENESIS_PREV_HASH));
    }

    #[test]
    fn edited_field_fails_with_hash_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Writer::new().lines(5);
        assert!(lines[2].contains("\"user\":\"u2\""));
        lines[2] = lines[2].replace("\"user\":\"u2\"", "\"user\":\"u9\"");
        let path = write(dir.path(), "audit.jsonl", &lines);
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.seq, Some(3));
        assert!(
            matches!(err.kind, VerifyErrorKind::HashMismatch { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "audit log '{}' line 3 (seq 3): hash mismatch, record modified",
                path.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn deleted_record_fails_with_seq_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Writer::new().lines(5);
        lines.remove(2);
        let path = write(dir.path(), "audit.jsonl", &lines);
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.seq, Some(4));
        assert!(
            matches!(
                err.kind,
                VerifyErrorKind::SeqGap {
                    expected: 3,
                    found: 4
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn swapped_records_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Writer::new().lines(5);
        lines.swap(2, 3);
        let path = write(dir.path(), "audit.jsonl", &lines);
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            matches!(
                err.kind,
                VerifyErrorKind::SeqGap {
                    expected: 3,
                    found: 4
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rehashed_record_with_wrong_prev_hash_fails_with_prev_hash_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::new();
        let mut lines = writer.lines(2);
        // Record 3 is self-consistent (its own hash is right) but hangs from a
        // record that is not in the log.
        writer.prev_hash = "ab".repeat(32);
        lines.push(writer.line(json!({"forged": true})));
        let path = write(dir.path(), "audit.jsonl", &lines);
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.seq, Some(3));
        match &err.kind {
            VerifyErrorKind::PrevHashMismatch { found, .. } => assert_eq!(found, &"ab".repeat(32)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err
            .to_string()
            .contains("prev_hash mismatch, record removed or reordered"));
    }

    #[test]
    fn truncated_last_line_fails() {
        let dir = tempfile::tempdir().unwrap();
        let lines = Writer::new().lines(4);
        let mut text = lines.concat();
        text.truncate(text.len() - 30);
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &text).unwrap();
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(matches!(err.kind, VerifyErrorKind::Truncated), "{err}");
    }

    #[test]
    fn complete_last_record_without_newline_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let lines = Writer::new().lines(3);
        let mut text = lines.concat();
        text.pop();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(verify_file(&path).unwrap().records, 3);
    }

    #[test]
    fn reader_verifies_like_a_file() {
        let lines = Writer::new().lines(3);
        let text = lines.concat();
        let report = verify_reader(text.as_bytes(), Path::new("<stdin>")).unwrap();
        assert_eq!(report.records, 3);
        let tampered = text.replacen("\"u1\"", "\"u7\"", 1);
        let err = verify_reader(tampered.as_bytes(), Path::new("<stdin>")).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string()
                .starts_with("audit log '<stdin>' line 2 (seq 2): hash mismatch"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_zero_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "audit.jsonl", &[]);
        let report = verify_file(&path).unwrap();
        assert_eq!(report, VerifyReport::default());
        assert_eq!(report.records, 0);
        assert_eq!(report.last_hash, None);
    }

    #[test]
    fn missing_hash_and_not_json_and_bad_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Writer::new().lines(2);
        lines.push("{\"seq\":3,\"prev_hash\":\"00\"}\n".to_owned());
        let err = verify_file(&write(dir.path(), "a", &lines)).unwrap_err();
        assert_eq!((err.line, err.seq), (Some(3), Some(3)));
        assert!(matches!(err.kind, VerifyErrorKind::MissingHash), "{err}");

        // A hash that is right for a body that is not JSON.
        let body = "{not json}";
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let line = format!("{{not json,\"hash\":\"{hash}\"}}\n");
        let err = verify_file(&write(dir.path(), "b", &[line])).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(matches!(err.kind, VerifyErrorKind::NotJson { .. }), "{err}");

        // Valid hash and JSON, but no seq.
        let body = r#"{"prev_hash":"x"}"#;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let line = format!("{{\"prev_hash\":\"x\",\"hash\":\"{hash}\"}}\n");
        let err = verify_file(&write(dir.path(), "c", &[line])).unwrap_err();
        assert!(
            matches!(err.kind, VerifyErrorKind::BadField { field: "seq", .. }),
            "{err}"
        );

        // An empty line in the middle.
        let mut lines = Writer::new().lines(2);
        lines.insert(1, "\n".to_owned());
        let err = verify_file(&write(dir.path(), "d", &lines)).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(matches!(err.kind, VerifyErrorKind::EmptyLine), "{err}");

        // An uppercase hash is not the spec's format.
        let mut lines = Writer::new().lines(1);
        let hash_start = lines[0].len() - 2 - 64;
        let upper = lines[0][hash_start..].to_uppercase();
        lines[0].replace_range(hash_start.., &upper);
        let err = verify_file(&write(dir.path(), "e", &lines)).unwrap_err();
        assert!(matches!(err.kind, VerifyErrorKind::MissingHash), "{err}");
    }

    #[test]
    fn a_line_of_exactly_the_shared_limit_verifies_and_one_byte_more_does_not() {
        assert_eq!(
            MAX_LINE_BYTES,
            plugbus_plugin_api::contract::audit::MAX_RECORD_BYTES
        );
        let dir = tempfile::tempdir().unwrap();
        let padded = |n: usize| Writer::new().line(json!({ "p": "y".repeat(n) }));
        // The limit does not count the `\n`: the writer's lines end exactly at it.
        let base = padded(0).len() - 1;
        let fits = padded(MAX_LINE_BYTES - base);
        assert_eq!(fits.len(), MAX_LINE_BYTES + 1);
        let path = write(dir.path(), "fits", &[fits]);
        assert_eq!(verify_file(&path).unwrap().records, 1);

        let over = padded(MAX_LINE_BYTES - base + 1);
        let path = write(dir.path(), "over", &[over]);
        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(
            matches!(
                err.kind,
                VerifyErrorKind::LineTooLong {
                    limit: MAX_LINE_BYTES
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn chain_may_start_mid_way_but_seq_one_needs_zero_prev_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::new();
        let lines = writer.lines(6);
        let path = write(dir.path(), "tail", &lines[3..]);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.records, 3);
        assert_eq!(report.first_seq, Some(4));
        assert_eq!(report.last_seq, Some(6));
        assert_ne!(report.first_prev_hash.as_deref(), Some(GENESIS_PREV_HASH));

        // seq 1 hanging from a non-zero prev_hash.
        let mut forged = Writer::new();
        forged.prev_hash = "1".repeat(64);
        let path = write(dir.path(), "forged", &[forged.line(json!({}))]);
        let err = verify_file(&path).unwrap_err();
        assert_eq!((err.line, err.seq), (Some(1), Some(1)));
        assert!(
            matches!(err.kind, VerifyErrorKind::PrevHashMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn rotated_set_continues_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::new();
        let lines = writer.lines(9);
        let files = vec![
            write(dir.path(), "audit.jsonl.3", &lines[0..3]),
            write(dir.path(), "audit.jsonl.2", &lines[3..5]),
            write(dir.path(), "audit.jsonl.1", &[]),
            write(dir.path(), "audit.jsonl", &lines[5..9]),
        ];
        let report = verify_files(&files).unwrap();
        assert_eq!(report.records, 9);
        assert_eq!(report.first_seq, Some(1));
        assert_eq!(report.last_seq, Some(9));
        assert_eq!(report.last_hash.as_deref(), Some(writer.prev_hash.as_str()));

        // Missing middle file: the chain breaks at line 1 of the next one.
        let gap = vec![files[0].clone(), files[3].clone()];
        let err = verify_files(&gap).unwrap_err();
        assert_eq!(err.path, files[3]);
        assert_eq!((err.line, err.seq), (Some(1), Some(6)));
        assert!(
            matches!(
                err.kind,
                VerifyErrorKind::SeqGap {
                    expected: 4,
                    found: 6
                }
            ),
            "{err}"
        );

        // Wrong order.
        let reversed = vec![files[3].clone(), files[0].clone()];
        assert!(verify_files(&reversed).is_err());

        // A file that cannot be opened.
        let missing = vec![dir.path().join("nope")];
        let err = verify_files(&missing).unwrap_err();
        assert!(err.line.is_none());
        assert!(matches!(err.kind, VerifyErrorKind::Io { .. }), "{err}");
    }
}
