//! Building one audit record body: field order, timestamps, redaction, the payload's forms.

use crate::redact::Redactor;
use crate::scan::{self, ScanError};
use plugbus_plugin_api::contract::audit::MAX_RECORD_BYTES;
use plugbus_plugin_api::contract::keys;
use plugbus_plugin_api::Event;
use std::fmt::Write as _;

/// The value written in place of a redacted field.
pub const REDACTED: &str = "[REDACTED]";

/// Appends `s` as a JSON string literal (serde_json's escaping).
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serializing a &str cannot fail; keep a correct fallback anyway.
        Err(_) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

/// RFC 3339 UTC with nanoseconds (`2026-11-22T05:16:29.123456789Z`).
pub(crate) fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = u32::try_from(unix_nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        // Out of chrono's range cannot happen for an i64 of nanoseconds; stay total anyway.
        None => format!("@{unix_nanos}ns"),
    }
}

/// The longest `event_type` or `source` written in a too-large record, in bytes: that record
/// must stay short whatever the event holds.
const MARKER_FIELD_BYTES: usize = 1024;

/// The record of an event would be longer than the line limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// The longest prefix of `s` that has at most `max` bytes and ends on a character boundary, and
/// whether anything was cut.
fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// `{"seq":..,"ts":..,"event_id":..,"event_type":..,"category":..,"source":..,"origin":..` (no
/// closing brace), with `event_type`, `source` and `origin` cut to `max_field` bytes. Returns whether one was cut.
fn header(out: &mut String, seq: u64, event: &Event<'_>, max_field: usize) -> bool {
    let _ = write!(out, "{{\"seq\":{seq},\"ts\":");
    push_json_str(out, &rfc3339_nanos(event.timestamp_unix_nanos()));
    out.push_str(",\"event_id\":");
    push_json_str(out, &event.id_string());
    out.push_str(",\"event_type\":");
    let (event_type, cut_type) = cut(event.event_type(), max_field);
    push_json_str(out, event_type);
    out.push_str(",\"category\":");
    match event.category() {
        Some(c) => push_json_str(out, c.as_str()),
        None => push_json_str(out, &format!("unknown({})", event.view().category)),
    }
    out.push_str(",\"source\":");
    let (source, cut_source) = cut(event.source(), max_field);
    push_json_str(out, source);
    // Where it really came from (stamped by the host), beside what it claims to be from.
    out.push_str(",\"origin\":");
    let (origin, cut_origin) = cut(event.origin(), max_field);
    push_json_str(out, origin);
    cut_type || cut_source || cut_origin
}

/// Appends `"key":"value"`, or the redaction marker as the value when `key` is redacted.
fn push_entry(out: &mut String, redactor: &Redactor, key: &str, value: &str) {
    push_json_str(out, key);
    out.push(':');
    if redactor.matches(key) {
        push_json_str(out, REDACTED);
    } else {
        push_json_str(out, value);
    }
}

/// Builds the body `B` of a record: the exact bytes that are hashed.
///
/// Field order: `seq`, `ts`, `event_id`, `event_type`, `category`, `source`, `origin`, `correlation_id`
/// and `causation_id` (if present), `metadata` (the other entries, if any), then the payload as
/// exactly one of `data`, `data_text` or `data_invalid` (see the crate docs), then `prev_hash`.
///
/// # Errors
/// [`TooLarge`] if the body would be longer than `max_body` bytes. The payload is copied only
/// up to that budget, so an oversized event costs little more than its own size in memory.
pub(crate) fn record_body(
    seq: u64,
    event: &Event<'_>,
    redactor: &Redactor,
    prev_hash: &str,
    max_body: usize,
) -> Result<String, TooLarge> {
    let payload = event.data_json();
    let mut out = String::with_capacity(256 + payload.len().min(max_body));
    header(&mut out, seq, event, usize::MAX);
    if let Some(c) = event.correlation_id() {
        out.push(',');
        push_entry(&mut out, redactor, keys::CORRELATION_ID, c);
    }
    if let Some(c) = event.causation_id() {
        out.push(',');
        push_entry(&mut out, redactor, keys::CAUSATION_ID, c);
    }
    let mut first = true;
    for (k, v) in event.metadata_entries() {
        if k == keys::CORRELATION_ID || k == keys::CAUSATION_ID {
            continue;
        }
        out.push_str(if first { ",\"metadata\":{" } else { "," });
        first = false;
        push_entry(&mut out, redactor, k, v);
        if out.len() > max_body {
            return Err(TooLarge);
        }
    }
    if !first {
        out.push('}');
    }
    // What follows the payload: `,"prev_hash":"<hash>"}`.
    let tail = ",\"prev_hash\":".len() + prev_hash.len() + 3;
    let field = out.len();
    out.push_str(",\"data\":");
    let data = out.len();
    match scan::copy_redacted(payload, redactor, &mut out, max_body.saturating_sub(tail)) {
        Ok(scanned) if scanned.inline() => {}
        Ok(_) => {
            // Valid JSON that common readers refuse (too deep, huge numbers, lone surrogates):
            // the same text, as a string.
            let text = out.split_off(data);
            out.truncate(field);
            out.push_str(",\"data_text\":");
            push_json_str(&mut out, &text);
        }
        Err(ScanError::Invalid { offset, reason }) => {
            // Not JSON: record that, not the bytes (they could hold unredacted secrets).
            out.truncate(field);
            let _ = write!(
                out,
                ",\"data_invalid\":{{\"bytes\":{},\"offset\":{offset},\"error\":",
                payload.len()
            );
            push_json_str(&mut out, reason);
            out.push('}');
        }
        Err(ScanError::TooLarge) => return Err(TooLarge),
    }
    out.push_str(",\"prev_hash\":");
    push_json_str(&mut out, prev_hash);
    out.push('}');
    if out.len() > max_body {
        return Err(TooLarge);
    }
    Ok(out)
}

/// Builds the body of the record that stands for an event whose record would be too long: the
/// header fields, then `too_large` with the sizes (so the loss is visible and can be traced to
/// the event), then `prev_hash`. It is at most a few KiB whatever the event holds.
pub(crate) fn too_large_body(seq: u64, event: &Event<'_>, prev_hash: &str) -> String {
    let mut out = String::with_capacity(512);
    let cut = header(&mut out, seq, event, MARKER_FIELD_BYTES);
    let (entries, metadata_bytes) = event
        .metadata_entries()
        .fold((0usize, 0usize), |(n, bytes), (k, v)| {
            (n + 1, bytes.saturating_add(k.len()).saturating_add(v.len()))
        });
    let _ = write!(
        out,
        ",\"too_large\":{{\"payload_bytes\":{},\"metadata_entries\":{entries},\"metadata_bytes\":{metadata_bytes},\"limit\":{MAX_RECORD_BYTES}",
        event.data_json().len()
    );
    if cut {
        out.push_str(",\"cut\":true");
    }
    out.push_str("},\"prev_hash\":");
    push_json_str(&mut out, prev_hash);
    out.push('}');
    out
}
