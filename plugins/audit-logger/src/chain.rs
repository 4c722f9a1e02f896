//! The hash-chained file: appending, resuming, rotating, and verifying.

use crate::seal::{self, FirstSeal, Sealer};
use plugbus_plugin_api::contract::audit::{Seal, SealKind, MAX_RECORD_BYTES};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `prev_hash` of the first record ever: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_PREFIX: &str = ",\"hash\":\"";

/// How much longer the line is than its body `B`: `,"hash":"<64 hex>"}` replaces the final `}`.
const SEAL_OVERHEAD: usize = HASH_PREFIX.len() + 64 + 2 - 1;

/// The longest body whose line fits in [`MAX_RECORD_BYTES`].
pub(crate) const MAX_BODY_BYTES: usize = MAX_RECORD_BYTES - SEAL_OVERHEAD;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Turns a body `B` into the line written: `B` with its final `}` replaced by
/// `,"hash":"<hash>"}`, then `\n`. Returns the line and the hash.
pub(crate) fn seal_line(body: &str) -> (String, String) {
    let hash = sha256_hex(body.as_bytes());
    let open = body.strip_suffix('}').unwrap_or(body);
    let mut line = String::with_capacity(body.len() + 80);
    line.push_str(open);
    line.push_str(HASH_PREFIX);
    line.push_str(&hash);
    line.push_str("\"}\n");
    (line, hash)
}

/// Splits a line (without its `\n`) into body `B` and recorded hash, if it ends the right way.
fn unseal(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_suffix("\"}")?;
    if rest.len() < 64 + HASH_PREFIX.len() {
        return None;
    }
    let (open, hash) = rest.split_at(rest.len() - 64);
    let open = open.strip_suffix(HASH_PREFIX)?;
    if !hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Some((format!("{open}}}"), hash))
}

/// Why a chain does not verify, and where.
#[derive(Debug)]
pub struct ChainError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number of the first bad line (0 when the file could not be read at all).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit chain broken in '{}' at line {}: {}",
            self.path.display(),
            self.line,
            self.reason
        )
    }
}

impl std::error::Error for ChainError {}

/// `seq` and `prev_hash` of a body.
fn body_fields(body: &str) -> Result<(u64, String), String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("record is not JSON: {e}"))?;
    let seq = v
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or("record has no unsigned 'seq'")?;
    let prev = v
        .get("prev_hash")
        .and_then(serde_json::Value::as_str)
        .ok_or("record has no string 'prev_hash'")?;
    Ok((seq, prev.to_owned()))
}

/// Verifies one audit file: every record's hash matches its body, `seq` grows by one and each
/// `prev_hash` is the previous record's hash. The first record may continue a chain from a
/// rotated file (any `prev_hash`), unless its `seq` is 1, which needs the all-zero hash. A line
/// longer than [`MAX_RECORD_BYTES`] (without its `\n`) is an error, as in the host's verifier,
/// and is never read whole.
///
/// # Errors
/// A [`ChainError`] naming the first bad line and the reason.
pub fn verify_chain(path: impl AsRef<Path>) -> Result<u64, ChainError> {
    let path = path.as_ref();
    let err = |line: u64, reason: String| ChainError {
        path: path.to_owned(),
        line,
        reason,
    };
    let file = File::open(path).map_err(|e| err(0, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut last: Option<(u64, String)> = None;
    let mut records = 0u64;
    let mut buffer = Vec::new();
    let mut n = 0u64;
    loop {
        n += 1;
        buffer.clear();
        let read = (&mut reader)
            .take(u64::try_from(MAX_RECORD_BYTES).unwrap_or(u64::MAX) + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|e| err(n, format!("cannot read: {e}")))?;
        if read == 0 {
            break;
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        } else if buffer.len() > MAX_RECORD_BYTES {
            return Err(err(n, format!("line longer than {MAX_RECORD_BYTES} bytes")));
        }
        let line = std::str::from_utf8(&buffer).map_err(|e| err(n, format!("not UTF-8: {e}")))?;
        let (body, hash) =
            unseal(line).ok_or_else(|| err(n, "line does not end with a hash".into()))?;
        let actual = sha256_hex(body.as_bytes());
        if actual != hash {
            return Err(err(
                n,
                format!("hash mismatch: recorded {hash}, computed {actual}"),
            ));
        }
        let (seq, prev) = body_fields(&body).map_err(|r| err(n, r))?;
        match &last {
            Some((last_seq, last_hash)) => {
                if Some(seq) != last_seq.checked_add(1) {
                    return Err(err(n, format!("seq {seq} does not follow {last_seq}")));
                }
                if prev != *last_hash {
                    return Err(err(
                        n,
                        format!("prev_hash {prev} is not the previous hash {last_hash}"),
                    ));
                }
            }
            None if seq == 1 && prev != GENESIS_HASH => {
                return Err(err(n, format!("first record has prev_hash {prev}")));
            }
            None => {}
        }
        last = Some((seq, hash.to_owned()));
        records += 1;
    }
    Ok(records)
}

/// When to fsync the file (the file is flushed after every record in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsyncPolicy {
    Always,
    EveryN(u64),
    Never,
}

/// The open chain: where the next record goes and what it links to.
#[derive(Debug)]
pub(crate) struct ChainWriter {
    path: PathBuf,
    file: File,
    size: u64,
    seq: u64,
    prev_hash: String,
    unsynced: u64,
    sync: FsyncPolicy,
    max_bytes: u64,
    max_files: u32,
    /// With a signing key: writes the seals.
    sealer: Option<Sealer>,
}

/// The path of rotated file number `n` (`audit.jsonl.1`, ...).
pub(crate) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The body `B` of a line (without its `\n`), if it ends with a hash as records do.
pub(crate) fn body_of(line: &str) -> Option<String> {
    unseal(line).map(|(body, _)| body)
}

/// Reads the last complete line of a file; truncates a torn final line (a write cut short by a
/// crash: bytes after the last `\n`). Returns the line (without `\n`), if any.
fn last_line(file: &mut File, path: &Path) -> io::Result<Option<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    // Read backwards in chunks until we have the last two newlines (or the start).
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let chunk = 64 * 1024;
    // Our last line, its `\n`, and a torn write after it are each at most this long; a file
    // with more than that after its second-to-last `\n` was not written by this plugin.
    let most = 2 * (MAX_RECORD_BYTES + 1) + 64 * 1024;
    loop {
        let start = pos.saturating_sub(chunk);
        let mut buf = vec![0u8; usize::try_from(pos - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        pos = start;
        let newlines = tail.iter().filter(|b| **b == b'\n').count();
        if pos == 0 || newlines >= 2 {
            break;
        }
        if tail.len() > most {
            return Err(invalid(
                path,
                format!("last line is longer than {MAX_RECORD_BYTES} bytes"),
            ));
        }
    }
    // `tail` covers [pos, len).
    let end_complete = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => i,
        None => {
            // No complete line at all: the whole file is one torn write.
            tracing::warn!(path = %path.display(), bytes = len, "truncating torn audit record");
            file.set_len(pos)?;
            return Ok(None);
        }
    };
    let complete_len = pos + u64::try_from(end_complete).unwrap_or(0) + 1;
    if complete_len < len {
        tracing::warn!(
            path = %path.display(),
            bytes = len - complete_len,
            "truncating torn audit record at end of file"
        );
        file.set_len(complete_len)?;
    }
    let head = &tail[..end_complete];
    let start = head.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(String::from_utf8_lossy(&head[start..]).into_owned()))
}

fn invalid(path: &Path, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "cannot continue audit chain of '{}': {reason}",
            path.display()
        ),
    )
}

/// Now, in Unix nanoseconds.
fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ChainWriter {
    /// Opens (creating if needed) the file and resumes the chain from its last record, or from
    /// the last record of `path.1` when the file is empty (a rotation just happened).
    ///
    /// With a `sealer`, finds the sealing state in the log and writes this run's first seal:
    /// `begin` for a new log or file, `resume` on an existing one. Returns the seals written.
    pub(crate) fn open(
        path: &Path,
        sync: FsyncPolicy,
        max_bytes: u64,
        max_files: u32,
        sealer: Option<Sealer>,
    ) -> io::Result<(ChainWriter, Vec<Seal>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut resume = last_line(&mut file, path)?.map(|l| (path.to_owned(), l));
        if resume.is_none() && max_files > 0 {
            let prev = rotated(path, 1);
            if let Ok(mut f) = OpenOptions::new().read(true).write(true).open(&prev) {
                resume = last_line(&mut f, &prev)?.map(|l| (prev, l));
            }
        }
        let (seq, prev_hash) = match resume {
            None => (0, GENESIS_HASH.to_owned()),
            Some((from, line)) => {
                let (body, hash) = unseal(&line)
                    .ok_or_else(|| invalid(&from, "last line does not end with a hash".into()))?;
                let (seq, _) = body_fields(&body).map_err(|r| invalid(&from, r))?;
                (seq, hash.to_owned())
            }
        };
        let size = file.seek(SeekFrom::End(0))?;
        let mut writer = ChainWriter {
            path: path.to_owned(),
            file,
            size,
            seq,
            prev_hash,
            unsynced: 0,
            sync,
            max_bytes,
            max_files,
            sealer: None,
        };
        let mut seals = Vec::new();
        if let Some(mut sealer) = sealer {
            let first = sealer.resume(seal::last_seal(path)?)?;
            writer.sealer = Some(sealer);
            match first {
                FirstSeal::Begin { prev_file } => {
                    seals.push(writer.write_seal(SealKind::Begin, prev_file, None)?);
                }
                FirstSeal::Resume => seals.push(writer.write_seal(SealKind::Resume, None, None)?),
                FirstSeal::FinishRotation => {
                    writer.rename_files()?;
                    let prev_file = writer.sealer.as_ref().map(|s| s.state.file);
                    if let Some(s) = writer.sealer.as_mut() {
                        s.begin_next_file();
                    }
                    seals.push(writer.write_seal(SealKind::Begin, prev_file, None)?);
                }
            }
        }
        Ok((writer, seals))
    }

    /// The `seq` of the last record written (0 if none).
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// True if the log is sealed (a signing key is set).
    pub(crate) fn sealing(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// Appends a record whose body `build(seq, prev_hash)` returns, and the seals it calls for
    /// (a rotation's `rotate` and `begin` before it, a periodic one after it), returned for
    /// publishing. On error nothing is recorded: a partial write is cut off again, and
    /// `seq`/`prev_hash` do not advance.
    ///
    /// A line longer than [`MAX_RECORD_BYTES`] is refused (`InvalidInput`) rather than written:
    /// the verifier would call the log broken there. Callers build bodies of at most
    /// [`MAX_BODY_BYTES`], so this is the last guard, not the way size is handled.
    pub(crate) fn append(
        &mut self,
        mut build: impl FnMut(u64, &str) -> String,
    ) -> io::Result<(u64, Vec<Seal>)> {
        let body = build(self.seq + 1, &self.prev_hash);
        if body.len() > MAX_BODY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record of {} bytes is longer than the limit of {MAX_RECORD_BYTES}",
                    body.len() + SEAL_OVERHEAD
                ),
            ));
        }
        let mut seals = Vec::new();
        let len = u64::try_from(body.len() + SEAL_OVERHEAD + 1).unwrap_or(u64::MAX);
        let (line, hash) = if self.max_bytes > 0
            && self.size > 0
            && self.size.saturating_add(len) > self.max_bytes
        {
            self.rotate(&mut seals)?;
            if seals.is_empty() {
                seal_line(&body)
            } else {
                // The seals took the `seq` it was built for: build it again in its place.
                seal_line(&build(self.seq + 1, &self.prev_hash))
            }
        } else {
            seal_line(&body)
        };
        self.write_line(&line, hash)?;
        let seq = self.seq;
        let due = self
            .sealer
            .as_ref()
            .is_some_and(|s| seq - s.state.last_seal_seq >= s.every);
        if due {
            seals.push(self.write_seal(SealKind::Periodic, None, None)?);
        }
        Ok((seq, seals))
    }

    /// Writes a seal of `kind` now: `Periodic` only if records are waiting for one (returns
    /// `None` otherwise, or without a key), `Final` always.
    pub(crate) fn seal_now(&mut self, kind: SealKind) -> io::Result<Option<Seal>> {
        let Some(sealer) = &self.sealer else {
            return Ok(None);
        };
        if kind == SealKind::Periodic && self.seq == sealer.state.last_seal_seq {
            return Ok(None);
        }
        self.write_seal(kind, None, None).map(Some)
    }

    /// True if a periodic seal is due by time: records are waiting and the last seal is older
    /// than the interval.
    pub(crate) fn seal_due_by_time(&self) -> bool {
        self.sealer.as_ref().is_some_and(|s| {
            self.seq > s.state.last_seal_seq && s.sealed_at.elapsed() >= s.interval
        })
    }

    fn write_seal(
        &mut self,
        kind: SealKind,
        prev_file: Option<u64>,
        next_file: Option<u64>,
    ) -> io::Result<Seal> {
        let Some(sealer) = &self.sealer else {
            return Err(io::Error::other("no signing key"));
        };
        let seq = self.seq + 1;
        let (seal, body) = sealer.build(
            kind,
            seq,
            &self.prev_hash,
            now_nanos(),
            prev_file,
            next_file,
        );
        let (line, hash) = seal_line(&body);
        self.write_line(&line, hash)?;
        if let Some(s) = self.sealer.as_mut() {
            s.sealed(seq);
        }
        Ok(seal)
    }

    /// Writes one sealed line and moves the chain on.
    fn write_line(&mut self, line: &str, hash: String) -> io::Result<()> {
        if let Err(e) = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
        {
            // Cut off whatever part of the line made it, so the chain stays intact.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += u64::try_from(line.len()).unwrap_or(u64::MAX);
        self.seq += 1;
        self.prev_hash = hash;
        self.unsynced += 1;
        match self.sync {
            FsyncPolicy::Always => self.sync_now()?,
            FsyncPolicy::EveryN(n) if self.unsynced >= n => self.sync_now()?,
            _ => {}
        }
        Ok(())
    }

    /// Forces written records to disk.
    pub(crate) fn sync_now(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.unsynced = 0;
        Ok(())
    }

    /// Rotates: with a key, a `rotate` seal naming the next file ends this one, and a `begin`
    /// seal naming this one starts the next (both pushed to `seals`).
    fn rotate(&mut self, seals: &mut Vec<Seal>) -> io::Result<()> {
        let file = self.sealer.as_ref().map(|s| s.state.file);
        if let Some(file) = file {
            seals.push(self.write_seal(SealKind::Rotate, None, Some(file + 1))?);
        }
        self.rename_files()?;
        if let Some(s) = self.sealer.as_mut() {
            s.begin_next_file();
        }
        if file.is_some() {
            seals.push(self.write_seal(SealKind::Begin, file, None)?);
        }
        Ok(())
    }

    /// `audit.jsonl` -> `.1`, `.1` -> `.2`, ... up to `max_files`, dropping the oldest; then a
    /// fresh file continues the chain.
    fn rename_files(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if self.max_files == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let oldest = rotated(&self.path, self.max_files);
            match fs::remove_file(&oldest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            for n in (1..self.max_files).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        self.size = 0;
        self.unsynced = 0;
        tracing::info!(path = %self.path.display(), seq = self.seq, "rotated audit log");
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_unseal_round_trip() {
        let body = r#"{"seq":1,"prev_hash":"0"}"#;
        let (line, hash) = seal_line(body);
        assert_eq!(hash, sha256_hex(body.as_bytes()));
        assert!(line.ends_with(&format!(",\"hash\":\"{hash}\"}}\n")));
        let (b, h) = unseal(line.trim_end_matches('\n')).unwrap();
        assert_eq!((b.as_str(), h), (body, hash.as_str()));
        assert!(unseal(r#"{"seq":1}"#).is_none());
        // The overhead the limit accounts for is what seal adds.
        assert_eq!(line.len() - 1, body.len() + SEAL_OVERHEAD);
    }

    fn sealer() -> Sealer {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        Sealer::new(key, 1000, std::time::Duration::from_secs(3600), 3)
    }

    fn record(w: &mut ChainWriter, n: u64) {
        w.append(|seq, prev| {
            format!(r#"{{"seq":{seq},"ts":"t","event_id":"e{n}","prev_hash":"{prev}"}}"#)
        })
        .unwrap();
    }

    fn seals_in(path: &Path) -> Vec<Seal> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(body_of)
            .filter_map(|b| seal::parse_seal(&b))
            .collect()
    }

    #[test]
    fn a_rotation_cut_short_after_its_rotate_seal_is_finished_on_restart() {
        let dir = std::env::temp_dir().join(format!("plugbus-chain-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let (mut w, seals) =
            ChainWriter::open(&path, FsyncPolicy::Never, 0, 3, Some(sealer())).unwrap();
        assert_eq!(seals[0].kind, SealKind::Begin);
        record(&mut w, 1);
        record(&mut w, 2);
        // The host dies right after the rotate seal, before the files are renamed.
        w.write_seal(SealKind::Rotate, None, Some(2)).unwrap();
        drop(w);
        let (w, seals) =
            ChainWriter::open(&path, FsyncPolicy::Never, 0, 3, Some(sealer())).unwrap();
        assert_eq!(seals.len(), 1);
        let begin = &seals[0];
        assert_eq!(begin.kind, SealKind::Begin);
        assert_eq!((begin.file, begin.prev_file), (2, Some(1)));
        assert_eq!(begin.from_seq, begin.seq, "a begin seal covers nothing new");
        drop(w);
        // The old file was moved aside and ends with its rotate seal; the new one begins.
        let old = seals_in(&rotated(&path, 1));
        assert_eq!(old.last().unwrap().kind, SealKind::Rotate);
        assert_eq!(seals_in(&path), vec![begin.clone()]);
        assert_eq!(verify_chain(rotated(&path, 1)).unwrap(), 4);
        // A restart on the fresh file resumes it, in file 2.
        let (_, seals) =
            ChainWriter::open(&path, FsyncPolicy::Never, 0, 3, Some(sealer())).unwrap();
        assert_eq!((seals[0].kind, seals[0].file), (SealKind::Resume, 2));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
