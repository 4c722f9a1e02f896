//! Signed seals: the records that make truncation, rewriting and missing files detectable.
//!
//! A hash chain alone proves only that the records agree with each other: whoever can write the
//! file can cut its end, or rewrite it and recompute every hash. With a signing key the logger
//! also writes seal records ([`Seal`], in the chain like any record): an Ed25519 signature over
//! the log's id, the file's number, the range of records since the previous seal and the hash
//! of the last of them. Without the key no one can make a new seal, so a verifier holding the
//! public key (`plugbus audit verify --pubkey`) sees any rewrite (the seals no longer match),
//! any cut (the log no longer ends with a `final` seal) and any missing, extra or reordered
//! file of a rotated set (each file's `begin` and `rotate` seals name its neighbours).
//!
//! The [`Sealer`] holds the key and the log's sealing state; [`ChainWriter`](crate::chain)
//! asks it for each seal's body, and it finds its state again in the log when the logger
//! starts on an existing file ([`last_seal`]).

use crate::chain::rotated;
use crate::record::{push_json_str, rfc3339_nanos};
use ed25519_dalek::{Signer, SigningKey};
use plugbus_plugin_api::contract::audit::{
    hex, is_seal_record, parse_key_file, Seal, SealKind, SEAL_VERSION, SECRET_KEY_HEADER,
};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longer than any seal record's line.
const MAX_SEAL_LINE: usize = 4096;

/// What marks a seal record: its body starts `{"seq":N,"ts":"…","seal":`.
const SEAL_KEY: &str = ",\"seal\":";

/// The signing key and where the log's sealing stands.
pub(crate) struct Sealer {
    key: SigningKey,
    key_id: String,
    /// Seal at least every this many records.
    pub(crate) every: u64,
    /// Seal at least this often while records are waiting.
    pub(crate) interval: Duration,
    /// Rotated files the writer keeps (for [`Seal::keep_from`]).
    max_files: u32,
    pub(crate) state: SealState,
    /// When the last seal was written.
    pub(crate) sealed_at: Instant,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .field("every", &self.every)
            .field("interval", &self.interval)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The log's sealing state, as the last seal left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealState {
    pub(crate) log_id: String,
    /// The number of the file being written.
    pub(crate) file: u64,
    /// The `seq` of the last seal (0 before the first).
    pub(crate) last_seal_seq: u64,
    /// [`Seal::keep_from`] of the current file.
    pub(crate) keep_from: u64,
}

/// Reads the secret key file written by `plugbus audit keygen`.
///
/// # Errors
/// The file cannot be read, or is not a key file; the message names the file, never the key.
pub(crate) fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read signing key '{}': {e}", path.display()))?;
    let seed = parse_key_file(&text, SECRET_KEY_HEADER).map_err(|e| {
        format!(
            "'{}' is not a plugbus audit secret key: {e}",
            path.display()
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The first 16 hex digits of the SHA-256 of a public key: names the key in every seal.
pub(crate) fn key_id(public: &[u8; 32]) -> String {
    hex(&Sha256::digest(public)[..8])
}

/// A random UUID (version 4) for a new log.
fn new_log_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

impl Sealer {
    /// A sealer for a log whose state is found with [`Sealer::resume`].
    pub(crate) fn new(key: SigningKey, every: u64, interval: Duration, max_files: u32) -> Sealer {
        let key_id = key_id(&key.verifying_key().to_bytes());
        Sealer {
            key,
            key_id,
            every,
            interval,
            max_files,
            state: SealState {
                log_id: String::new(),
                file: 1,
                last_seal_seq: 0,
                keep_from: 1,
            },
            sealed_at: Instant::now(),
        }
    }

    /// The key's id ([`Seal::key_id`]).
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Decides the first seal of this run from the last seal found in the log (if any), and
    /// sets the state from it. `rotated_away` says the seal was found in `path.1` because the
    /// current file is empty.
    pub(crate) fn resume(&mut self, last: Option<(Seal, bool)>) -> io::Result<FirstSeal> {
        Ok(match last {
            None => {
                // A new log, or one written without a key until now: this seal starts the
                // sealed log and vouches for whatever the chain holds before it.
                self.state = SealState {
                    log_id: new_log_id()?,
                    file: 1,
                    last_seal_seq: 0,
                    keep_from: 1,
                };
                FirstSeal::Begin { prev_file: None }
            }
            Some((seal, rotated_away)) => {
                self.state = SealState {
                    log_id: seal.log_id.clone(),
                    file: seal.file,
                    last_seal_seq: seal.seq,
                    keep_from: seal.keep_from,
                };
                match (seal.kind, rotated_away) {
                    // The rotation renamed the file but stopped before the new one began.
                    (SealKind::Rotate, true) => {
                        self.begin_next_file();
                        FirstSeal::Begin {
                            prev_file: Some(seal.file),
                        }
                    }
                    // The rotate seal was written but the rename did not happen.
                    (SealKind::Rotate, false) => FirstSeal::FinishRotation,
                    // The current file is empty but its predecessor did not end with a
                    // rotation: start the file afresh (a verifier will see the gap).
                    (_, true) => {
                        self.begin_next_file();
                        FirstSeal::Begin {
                            prev_file: Some(seal.file),
                        }
                    }
                    (_, false) => FirstSeal::Resume,
                }
            }
        })
    }

    /// Moves the state to the next file, as a rotation does.
    pub(crate) fn begin_next_file(&mut self) {
        self.state.file += 1;
        self.state.keep_from = self
            .state
            .file
            .saturating_sub(u64::from(self.max_files))
            .max(1);
    }

    /// Builds and signs the seal for a seal record at `seq` whose `prev_hash` is `head_hash`,
    /// and returns it with the record's body. Does not change the state: call
    /// [`Sealer::sealed`] once the record is written.
    pub(crate) fn build(
        &self,
        kind: SealKind,
        seq: u64,
        head_hash: &str,
        unix_nanos: i64,
        prev_file: Option<u64>,
        next_file: Option<u64>,
    ) -> (Seal, String) {
        let from_seq = self.state.last_seal_seq + 1;
        let to_seq = seq.saturating_sub(1);
        let time = rfc3339_nanos(unix_nanos);
        let mut seal = Seal {
            v: SEAL_VERSION,
            kind,
            log_id: self.state.log_id.clone(),
            file: self.state.file,
            seq,
            from_seq,
            to_seq,
            records: (to_seq + 1).saturating_sub(from_seq),
            head_hash: head_hash.to_owned(),
            time: time.clone(),
            prev_file,
            next_file,
            keep_from: self.state.keep_from,
            key_id: self.key_id.clone(),
            sig: String::new(),
        };
        seal.sig = hex(&self.key.sign(&seal.signing_message()).to_bytes());
        let mut body = String::with_capacity(640);
        body.push_str("{\"seq\":");
        body.push_str(&seq.to_string());
        body.push_str(",\"ts\":");
        push_json_str(&mut body, &time);
        body.push_str(SEAL_KEY);
        // A struct of strings and numbers: serializing it cannot fail.
        body.push_str(&serde_json::to_string(&seal).unwrap_or_default());
        body.push_str(",\"prev_hash\":");
        push_json_str(&mut body, head_hash);
        body.push('}');
        (seal, body)
    }

    /// Records that the seal at `seq` was written.
    pub(crate) fn sealed(&mut self, seq: u64) {
        self.state.last_seal_seq = seq;
        self.sealed_at = Instant::now();
    }
}

/// What the logger writes first when it starts with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstSeal {
    /// A `begin` seal: a new log, or a new file.
    Begin { prev_file: Option<u64> },
    /// A `resume` seal in the current file.
    Resume,
    /// Rename the file (its rotate seal is written) and begin the next one.
    FinishRotation,
}

/// The seal of a record body, if it is a seal record.
pub(crate) fn parse_seal(body: &str) -> Option<Seal> {
    if !is_seal_record(body.as_bytes()) {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct SealRecord {
        seal: Seal,
    }
    serde_json::from_str::<SealRecord>(body)
        .ok()
        .map(|r| r.seal)
}

/// The last seal in `path` (scanning back from the end), with whether it came from `path.1`
/// because `path` holds no record.
///
/// # Errors
/// Reading failed.
pub(crate) fn last_seal(path: &Path) -> io::Result<Option<(Seal, bool)>> {
    match last_seal_in(path)? {
        Scan::Found(seal) => Ok(Some((*seal, false))),
        Scan::NoSeal => Ok(None),
        Scan::Empty => match last_seal_in(&rotated(path, 1))? {
            Scan::Found(seal) => Ok(Some((*seal, true))),
            Scan::NoSeal | Scan::Empty => Ok(None),
        },
    }
}

enum Scan {
    Found(Box<Seal>),
    /// Records, but no seal among them.
    NoSeal,
    /// No record (or no file).
    Empty,
}

fn last_seal_in(path: &Path) -> io::Result<Scan> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Scan::Empty),
        Err(e) => return Err(e),
    };
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Scan::Empty);
    }
    // Walk back in chunks. A chunk boundary cuts at most one line, whose start is carried
    // into the next (older) chunk's end.
    const CHUNK: u64 = 256 * 1024;
    let mut end = len;
    let mut carry: Vec<u8> = Vec::new();
    // The carried line is longer than any seal: it need not be kept or checked.
    let mut carry_long = false;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut pieces: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        if carry_long {
            // The last piece belongs to the long line.
            pieces.pop();
        }
        // Unless at the start of the file, the first piece may be the tail of a longer line.
        let head = if start > 0 && !pieces.is_empty() {
            pieces.remove(0)
        } else {
            &[]
        };
        for line in pieces.iter().rev() {
            if !is_seal_record(line) {
                continue;
            }
            if let Some(seal) = std::str::from_utf8(line)
                .ok()
                .and_then(crate::chain::body_of)
                .as_deref()
                .and_then(parse_seal)
            {
                return Ok(Scan::Found(Box::new(seal)));
            }
        }
        let whole_chunk_one_line = !buf[..buf.len() - carry.len()].contains(&b'\n');
        if whole_chunk_one_line && carry_long {
            // Still inside the same long line.
        } else if head.len() > MAX_SEAL_LINE {
            carry_long = true;
            carry.clear();
        } else {
            carry_long = false;
            carry = head.to_vec();
        }
        end = start;
    }
    Ok(Scan::NoSeal)
}
