//! The audit log format's shared parts: its limits, its seals and its key files.
//!
//! The audit-logger plugin writes the log and `plugbus audit verify` (in the host) reads it. They
//! are built separately and neither depends on the other, so what both must agree on lives here:
//! the line limit (if the writer accepted a line the verifier refuses, a genuine log would be
//! called broken), the [`Seal`] and the exact bytes its signature covers, how a seal record is
//! told from an event record, and the key file format of `plugbus audit keygen`.

/// The longest record line of an audit log, in bytes, not counting its terminating `\n`:
/// 16 MiB.
///
/// The writer never writes a longer line (an event whose record would be longer is recorded by
/// a short marker record instead), and the verifier refuses longer lines without reading them
/// whole, which keeps its memory bounded whatever it is given.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The largest event a host admits from an input line or a plugin, in bytes of its JSON (the
/// input line; a plugin's payload and metadata): 15 MiB.
///
/// A larger one is refused at the door with an error naming both sizes, so every admitted
/// event's audit record (the event's JSON plus a few hundred bytes of the record's own fields)
/// fits in [`MAX_RECORD_BYTES`], and a log is never written that its verifier would refuse.
pub const MAX_EVENT_BYTES: usize = 15 * 1024 * 1024;

/// The type of the event an audit logger publishes for each seal it writes (a witness: a
/// bridge or another plugin can ship it off the host, where whoever can rewrite the log cannot
/// reach it). Its payload is the [`Seal`].
pub const AUDIT_SEALED: &str = "audit.sealed";

/// The version of the seal format, [`Seal::v`].
pub const SEAL_VERSION: u32 = 1;

/// Why a seal was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealKind {
    /// The first record of a file: a new log (file 1) or the file a rotation opened. It covers
    /// nothing new; it binds the file to its number, its predecessor and the files kept.
    Begin,
    /// The first record written after the logger started on an existing file: it covers the
    /// records since the last seal, such as those of a run that did not close the log.
    Resume,
    /// Every `seal_every` records and every `seal_interval`.
    Periodic,
    /// The last record of a file before a rotation; [`Seal::next_file`] names the next one.
    Rotate,
    /// The last record the logger wrote when it stopped: the log was closed properly.
    Final,
}

impl SealKind {
    /// The name used in the record and in the signed message.
    pub fn as_str(self) -> &'static str {
        match self {
            SealKind::Begin => "begin",
            SealKind::Resume => "resume",
            SealKind::Periodic => "periodic",
            SealKind::Rotate => "rotate",
            SealKind::Final => "final",
        }
    }
}

/// A signed seal over an audit log: the `seal` field of a seal record, and the payload of the
/// [`AUDIT_SEALED`] event.
///
/// A seal record is a record of the hash chain like any other (it has its `seq` and
/// `prev_hash`); its Ed25519 signature, by the key in the audit logger's `signing_key`, covers
/// [`Seal::signing_message`]: the log, the file, the range of records since the previous seal
/// and the hash of the last of them. Since each record's hash covers the one before it, a valid
/// seal vouches for every record up to [`Seal::head_hash`]; whoever can write the file but does
/// not hold the key cannot make a new one, so rewriting, truncating or dropping files shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// The seal format's version ([`SEAL_VERSION`]).
    pub v: u32,
    /// Why it was written.
    pub kind: SealKind,
    /// The log's id: a UUID chosen when the log was created, the same in every file.
    pub log_id: String,
    /// The number of the file it is in: 1 for the log's first file, +1 at each rotation (the
    /// number stays with the file's content, whatever it is renamed to).
    pub file: u64,
    /// The `seq` of the seal record itself.
    pub seq: u64,
    /// The first `seq` the seal covers: one after the previous seal's `seq` (1 for the first).
    pub from_seq: u64,
    /// The last `seq` it covers: `seq - 1`.
    pub to_seq: u64,
    /// How many records it covers: `to_seq - from_seq + 1` (0 for a `begin` seal).
    pub records: u64,
    /// The `hash` of record `to_seq` (the seal record's `prev_hash`).
    pub head_hash: String,
    /// When it was written, RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// For a `begin` seal after a rotation: the number of the file before this one.
    pub prev_file: Option<u64>,
    /// For a `rotate` seal: the number of the file the log continues in.
    pub next_file: Option<u64>,
    /// The oldest file number the rotation policy keeps at this point: a set of files given
    /// to a verifier must start there (an older missing file was dropped by rotation, a newer
    /// one by someone else).
    pub keep_from: u64,
    /// The first 16 hex digits of the SHA-256 of the public key that signed it.
    pub key_id: String,
    /// The Ed25519 signature of [`Seal::signing_message`], lowercase hex (128 digits).
    pub sig: String,
}

impl Seal {
    /// The exact bytes that are signed: one `key=value` line per field, in a fixed order,
    /// after a line naming the format. Every field but `key_id` and `sig` is covered.
    ///
    /// ```
    /// use plugbus_contract::audit::{Seal, SealKind, SEAL_VERSION};
    /// let seal = Seal {
    ///     v: SEAL_VERSION, kind: SealKind::Final, log_id: "l".into(), file: 1, seq: 4,
    ///     from_seq: 2, to_seq: 3, records: 2, head_hash: "ab".into(), time: "t".into(),
    ///     prev_file: None, next_file: None, keep_from: 1, key_id: String::new(),
    ///     sig: String::new(),
    /// };
    /// let text = String::from_utf8(seal.signing_message()).unwrap();
    /// assert!(text.starts_with("plugbus-audit-seal/1\nkind=final\nlog_id=l\nfile=1\nseq=4\n"));
    /// ```
    pub fn signing_message(&self) -> Vec<u8> {
        fn opt(v: Option<u64>) -> String {
            v.map_or_else(|| "-".to_owned(), |n| n.to_string())
        }
        format!(
            "plugbus-audit-seal/{}\nkind={}\nlog_id={}\nfile={}\nseq={}\nfrom_seq={}\nto_seq={}\n\
             records={}\nhead_hash={}\ntime={}\nprev_file={}\nnext_file={}\nkeep_from={}\n",
            self.v,
            self.kind.as_str(),
            self.log_id,
            self.file,
            self.seq,
            self.from_seq,
            self.to_seq,
            self.records,
            self.head_hash,
            self.time,
            opt(self.prev_file),
            opt(self.next_file),
            self.keep_from,
        )
        .into_bytes()
    }
}

impl crate::TypedEvent for Seal {
    const EVENT_TYPE: &'static str = AUDIT_SEALED;
    const CATEGORY: crate::Category = crate::Category::System;
}

/// The first line of a secret key file written by `plugbus audit keygen` (`audit.key`); the
/// second line is the 32-byte Ed25519 seed in lowercase hex.
pub const SECRET_KEY_HEADER: &str = "plugbus-audit-secret-key ed25519 v1";

/// The first line of a public key file (`audit.pub`); the second line is the 32-byte Ed25519
/// public key in lowercase hex.
pub const PUBLIC_KEY_HEADER: &str = "plugbus-audit-public-key ed25519 v1";

/// Reads a key file's 32 bytes: the `header` line, then 64 hex digits (surrounding whitespace
/// and a final newline allowed).
///
/// # Errors
/// A message saying what is wrong (never the key material).
pub fn parse_key_file(text: &str, header: &str) -> Result<[u8; 32], String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some(first) if first == header => {}
        Some(_) => return Err(format!("the first line is not '{header}'")),
        None => return Err("the file is empty".to_owned()),
    }
    let hex = lines.next().ok_or("the key line is missing")?;
    if lines.next().is_some() {
        return Err("unexpected lines after the key".to_owned());
    }
    if hex.len() != 64 {
        return Err(format!("the key is {} hex digits, not 64", hex.len()));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or("the key is not hex")?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| "the key is not hex".to_owned())?;
    }
    Ok(out)
}

/// True if a record body has the shape of a seal record:
/// `{"seq":<digits>,"ts":"<time>","seal":{...` (an event record has `"event_id"` where a seal
/// record has `"seal"`). Checked on bytes, so telling a long event record apart costs a few
/// comparisons, not a parse; the writer and the verifier both decide with it.
///
/// ```
/// use plugbus_contract::audit::is_seal_record;
/// assert!(is_seal_record(br#"{"seq":7,"ts":"2026-12-01T00:00:00Z","seal":{"v":1}}"#));
/// assert!(!is_seal_record(br#"{"seq":7,"ts":"2026-12-01T00:00:00Z","event_id":"x","data":{"seal":1}}"#));
/// ```
pub fn is_seal_record(body: &[u8]) -> bool {
    let Some(rest) = body.strip_prefix(b"{\"seq\":") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(rest) = rest
        .get(digits..)
        .and_then(|r| r.strip_prefix(b",\"ts\":\""))
    else {
        return false;
    };
    match rest.iter().take(64).position(|b| *b == b'"') {
        Some(end) => rest
            .get(end + 1..)
            .is_some_and(|r| r.starts_with(b",\"seal\":")),
        None => false,
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_files_parse_and_refuse_clearly() {
        let key = [7u8; 32];
        let text = format!("{PUBLIC_KEY_HEADER}\n{}\n", hex(&key));
        assert_eq!(parse_key_file(&text, PUBLIC_KEY_HEADER), Ok(key));
        assert!(parse_key_file(&text, SECRET_KEY_HEADER)
            .unwrap_err()
            .contains("first line"));
        assert!(parse_key_file("", PUBLIC_KEY_HEADER)
            .unwrap_err()
            .contains("empty"));
        let short = format!("{PUBLIC_KEY_HEADER}\nabcd\n");
        assert!(parse_key_file(&short, PUBLIC_KEY_HEADER)
            .unwrap_err()
            .contains("4 hex digits"));
        let bad = format!("{PUBLIC_KEY_HEADER}\n{}\n", "zz".repeat(32));
        assert!(parse_key_file(&bad, PUBLIC_KEY_HEADER)
            .unwrap_err()
            .contains("not hex"));
    }
}
