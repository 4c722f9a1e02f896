//! Checking an audit log's signed seals (`plugbus audit verify --pubkey`).
//!
//! The chain check (the parent module) proves the records agree with each other. With the
//! public key, the seal check ([`verify_sealed`](super::verify_sealed)) also proves they are
//! the ones the logger wrote, all of them:
//!
//! - every seal's Ed25519 signature is valid for the key, and the seal agrees with its place:
//!   its `seq`, its `head_hash` (the record before it), the range it covers (from one after the
//!   previous seal), the log's id and the file's number;
//! - every file starts with a `begin` seal naming its number and its predecessor, and every
//!   file but the newest ends with a `rotate` seal naming its successor, so a missing, extra,
//!   duplicated or reordered file shows; the set must start at the oldest file the rotation
//!   keeps;
//! - the log ends with a `final` seal: records after the last seal were never vouched for
//!   (the tail was cut, or the host stopped without closing the log). With `live`, such a
//!   tail of a log still being written is reported, not an error;
//! - after a `final` seal, the next record is the `resume` seal of the next run.
//!
//! Whoever can write the file but lacks the secret key can delete, add or rewrite records
//! and recompute every hash, but cannot make the seals agree.
//!
//! Without the key ([`verify_seal_structure`](super::verify_seal_structure)) the same checks
//! run but for the signatures: they catch a naive cut or a dropped file of a sealed log, but
//! not a forger who writes seal records of their own.

use ed25519_dalek::{Signature, VerifyingKey};
use plugbus::contract::audit::{hex, is_seal_record, Seal, SealKind, SEAL_VERSION};
use sha2::{Digest, Sha256};

/// What the seals of a verified log say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealSummary {
    /// Seals checked.
    pub seals: u64,
    /// The log's id.
    pub log_id: Option<String>,
    /// File numbers of the set, oldest first.
    pub files: Vec<u64>,
    /// The last seal (a `final` one unless the log is live).
    pub last: Option<Seal>,
    /// Records after the last seal (0 unless `live`).
    pub unsealed_tail: u64,
}

/// The seal checks, fed record by record and file by file.
#[derive(Debug)]
pub(crate) struct SealCheck {
    /// `None`: the structure only (see the module docs).
    key: Option<VerifyingKey>,
    key_id: String,
    live: bool,
    summary: SealSummary,
    /// The file being read: its number once its first seal is seen.
    file: Option<u64>,
    /// Records of the current file so far.
    file_records: u64,
    /// The `seq` of the set's first record.
    first_seq: Option<u64>,
    /// The last seal seen, and whether records followed it.
    last_seal: Option<Seal>,
    since_seal: u64,
    /// The newest `keep_from` seen (from the newest file's `begin` seal).
    keep_from: Option<u64>,
}

fn key_id_of(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.to_bytes())[..8])
}

impl SealCheck {
    pub(crate) fn new(key: Option<VerifyingKey>, live: bool) -> SealCheck {
        SealCheck {
            key_id: key.as_ref().map(key_id_of).unwrap_or_default(),
            key,
            live,
            summary: SealSummary::default(),
            file: None,
            file_records: 0,
            first_seq: None,
            last_seal: None,
            since_seal: 0,
            keep_from: None,
        }
    }

    /// A new file of the set begins: the previous one must have ended with a rotation.
    pub(crate) fn start_file(&mut self) -> Result<(), String> {
        if self.file_records > 0 {
            match &self.last_seal {
                Some(s) if s.kind == SealKind::Rotate => {}
                _ => {
                    return Err(format!(
                        "the previous file (file {}) does not end with a rotate seal, yet \
                         another file follows it: give the files of one log, oldest first",
                        self.file.map_or_else(|| "?".to_owned(), |f| f.to_string())
                    ))
                }
            }
        }
        self.file_records = 0;
        Ok(())
    }

    /// One verified record (its hash and place in the chain are already checked).
    pub(crate) fn record(&mut self, seq: u64, prev_hash: &str, body: &[u8]) -> Result<(), String> {
        self.first_seq.get_or_insert(seq);
        self.file_records += 1;
        if !is_seal_record(body) {
            if self.file_records == 1 && self.summary.seals > 0 {
                return Err(
                    "a file of a sealed log starts with an event record, not its begin seal: \
                     records removed from its start, or a file of another log"
                        .to_owned(),
                );
            }
            if let Some(last) = &self.last_seal {
                match last.kind {
                    SealKind::Rotate => {
                        return Err(format!(
                            "a record follows the rotate seal at seq {} in the same file: \
                             appended after the file was closed",
                            last.seq
                        ))
                    }
                    SealKind::Final => {
                        return Err(format!(
                            "a record follows the final seal at seq {} without a resume seal: \
                             appended by something other than the audit logger",
                            last.seq
                        ))
                    }
                    _ => {}
                }
            }
            self.since_seal += 1;
            return Ok(());
        }
        let seal = parse(body)?;
        self.check(&seal, seq, prev_hash)?;
        self.summary.seals += 1;
        self.summary
            .log_id
            .get_or_insert_with(|| seal.log_id.clone());
        self.since_seal = 0;
        self.last_seal = Some(seal);
        Ok(())
    }

    fn check(&mut self, seal: &Seal, seq: u64, prev_hash: &str) -> Result<(), String> {
        if seal.v != SEAL_VERSION {
            return Err(format!(
                "seal format version {} (this verifier reads {SEAL_VERSION})",
                seal.v
            ));
        }
        if let Some(key) = &self.key {
            if seal.key_id != self.key_id {
                return Err(format!(
                    "sealed by key {}, not by the given key {}",
                    seal.key_id, self.key_id
                ));
            }
            let sig = parse_sig(&seal.sig)?;
            key.verify_strict(&seal.signing_message(), &sig)
                .map_err(|_| {
                    format!(
                        "the {} seal's signature does not verify: the seal was forged or modified",
                        seal.kind.as_str()
                    )
                })?;
        }
        // Signed, so the logger wrote it: now it must agree with where it is.
        if seal.seq != seq {
            return Err(format!(
                "a seal signed for seq {} stands at seq {seq}: records were removed or added \
                 before it",
                seal.seq
            ));
        }
        if seal.head_hash != prev_hash {
            return Err(format!(
                "the seal vouches for head hash {}, but the record before it hashes to \
                 {prev_hash}: the records it covers were rewritten",
                seal.head_hash
            ));
        }
        let to_seq = seq.saturating_sub(1);
        if seal.to_seq != to_seq || seal.records != (seal.to_seq + 1).saturating_sub(seal.from_seq)
        {
            return Err(format!(
                "the seal's range {}..{} ({} records) does not end before it",
                seal.from_seq, seal.to_seq, seal.records
            ));
        }
        if let Some(id) = &self.summary.log_id {
            if *id != seal.log_id {
                return Err(format!(
                    "a seal of log {}, in a set of log {id}: files of different logs",
                    seal.log_id
                ));
            }
        }
        match &self.last_seal {
            Some(last) if seal.from_seq != last.seq + 1 => {
                return Err(format!(
                    "the seal covers seq {}.. but the previous seal was at seq {}: a seal was \
                     removed",
                    seal.from_seq, last.seq
                ))
            }
            Some(last) if last.kind == SealKind::Final && seal.kind != SealKind::Resume => {
                return Err(format!(
                    "a {} seal follows the final seal at seq {} (a restart writes a resume \
                     seal first)",
                    seal.kind.as_str(),
                    last.seq
                ))
            }
            Some(_) => {}
            None => {
                // The first seal of the set must cover its first record: records before it
                // are either unvouched or the start of a set that was cut.
                let first = self.first_seq.unwrap_or(seq);
                if seal.from_seq > first {
                    return Err(format!(
                        "records {first}..{} precede the first seal and are not covered by it",
                        seal.from_seq - 1
                    ));
                }
                if seal.from_seq < first {
                    return Err(format!(
                        "the first seal covers from seq {}, but the first record given is seq \
                         {first}: records {}..{} are missing from the start",
                        seal.from_seq,
                        seal.from_seq,
                        first - 1
                    ));
                }
            }
        }
        if seal.kind == SealKind::Begin {
            if self.file_records != 1 && !(self.summary.seals == 0 && seal.file == 1) {
                return Err(format!(
                    "the begin seal of file {} is not the file's first record",
                    seal.file
                ));
            }
            match (self.file, seal.prev_file) {
                (None, _) => {}
                (Some(prev), Some(named)) if named == prev && seal.file == prev + 1 => {}
                (Some(prev), _) => {
                    return Err(format!(
                        "file {} (following file {prev}) names file {} before it: a file is \
                         missing, repeated or out of order",
                        seal.file,
                        seal.prev_file
                            .map_or_else(|| "none".to_owned(), |f| f.to_string())
                    ))
                }
            }
            if let Some(Seal {
                kind: SealKind::Rotate,
                next_file: Some(next),
                ..
            }) = &self.last_seal
            {
                if *next != seal.file {
                    return Err(format!(
                        "the previous file rotated into file {next}, but file {} follows",
                        seal.file
                    ));
                }
            }
            self.file = Some(seal.file);
            self.summary.files.push(seal.file);
            self.keep_from = Some(seal.keep_from);
        } else {
            match self.file {
                Some(file) if file == seal.file => {}
                Some(file) => {
                    return Err(format!(
                        "a seal of file {} inside file {file}: records were moved between files",
                        seal.file
                    ))
                }
                None => {
                    // A set that starts after a restart of a log whose begin seal is in an
                    // older file: the file's number comes from its first seal.
                    self.file = Some(seal.file);
                    self.summary.files.push(seal.file);
                    self.keep_from = Some(seal.keep_from);
                }
            }
        }
        Ok(())
    }

    /// The set ended: it must start where the rotation policy keeps files and end with a
    /// final seal (or, `live`, any seal followed by a tail).
    pub(crate) fn finish(mut self) -> Result<SealSummary, String> {
        let Some(last) = self.last_seal.take() else {
            return Err(match self.first_seq {
                None => "no records at all: a sealed log holds at least its begin seal (the \
                         file was emptied)"
                    .to_owned(),
                Some(_) if self.key.is_some() => format!(
                    "no seal by key {}: the log was written without a signing key, or with \
                     another one",
                    self.key_id
                ),
                Some(_) => "no seal records: the log was written without a signing key".to_owned(),
            });
        };
        if last.kind == SealKind::Rotate {
            return Err(format!(
                "the log continues in file {}, which was not given: the newest file is missing",
                last.next_file.unwrap_or(last.file + 1)
            ));
        }
        if let (Some(first), Some(keep)) = (self.summary.files.first(), self.keep_from) {
            if *first > keep {
                let missing = if *first - keep > 1 {
                    format!("files {keep}..{} are", first - 1)
                } else {
                    format!("file {keep} is")
                };
                return Err(format!(
                    "the set starts at file {first}, but the log keeps files from file {keep}: \
                     {missing} missing (give every file, oldest first)"
                ));
            }
        }
        if last.kind != SealKind::Final || self.since_seal > 0 {
            if !self.live {
                return Err(if self.since_seal > 0 {
                    format!(
                        "{} records after the last seal (seq {}): truncated, or the host \
                         stopped without closing the log (use --live for a log being written)",
                        self.since_seal, last.seq
                    )
                } else {
                    format!(
                        "the log ends with a {} seal at seq {}, not a final one: records after \
                         it were removed, or the host stopped without closing the log (use \
                         --live for a log being written)",
                        last.kind.as_str(),
                        last.seq
                    )
                });
            }
            self.summary.unsealed_tail = self.since_seal;
        }
        self.summary.last = Some(last);
        Ok(self.summary)
    }
}

fn parse(body: &[u8]) -> Result<Seal, String> {
    #[derive(serde::Deserialize)]
    struct SealRecord {
        seal: Seal,
    }
    serde_json::from_slice::<SealRecord>(body)
        .map(|r| r.seal)
        .map_err(|e| format!("a seal record that does not parse: {e}"))
}

fn parse_sig(text: &str) -> Result<Signature, String> {
    let bytes = hex::decode(text).map_err(|_| "the seal's signature is not hex".to_owned())?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| "the seal's signature is not 64 bytes".to_owned())?;
    Ok(Signature::from_bytes(&bytes))
}
