//! Building one audit record body: field order, timestamps, redaction, compact JSON.

use plugbus_plugin_api::contract::keys;
use plugbus_plugin_api::Event;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt::{self, Write as _};

/// The value written in place of a redacted field.
pub const REDACTED: &str = "[REDACTED]";

/// A JSON value that keeps object keys in their original order (serde_json's `Value` sorts
/// them unless a crate-wide feature is enabled, which would change every other crate too).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(v)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl Json {
    /// Replaces, at any depth, the value of every object key in `redact` (compared
    /// case-insensitively; `redact` holds lowercase keys) by [`REDACTED`].
    pub(crate) fn redact(&mut self, redact: &[String]) {
        match self {
            Json::Array(items) => items.iter_mut().for_each(|i| i.redact(redact)),
            Json::Object(entries) => {
                for (k, v) in entries.iter_mut() {
                    if redact.iter().any(|r| r.eq_ignore_ascii_case(k)) {
                        *v = Json::String(REDACTED.to_owned());
                    } else {
                        v.redact(redact);
                    }
                }
            }
            _ => {}
        }
    }

    /// Appends the compact JSON text of the value.
    pub(crate) fn write_to(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Json::String(s) => push_json_str(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_to(out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_str(out, k);
                    out.push(':');
                    v.write_to(out);
                }
                out.push('}');
            }
        }
    }
}

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

/// Builds the body `B` of a record: the exact bytes that are hashed.
///
/// Field order: `seq`, `ts`, `event_id`, `event_type`, `category`, `source`, `correlation_id`
/// and `causation_id` (if present), `metadata` (the other entries, if any), `data` (redacted),
/// `prev_hash`.
pub(crate) fn record_body(
    seq: u64,
    event: &Event<'_>,
    redact: &[String],
    prev_hash: &str,
) -> String {
    let mut out = String::with_capacity(256 + event.data_json().len());
    let _ = write!(out, "{{\"seq\":{seq},\"ts\":");
    push_json_str(&mut out, &rfc3339_nanos(event.timestamp_unix_nanos()));
    out.push_str(",\"event_id\":");
    push_json_str(&mut out, &event.id_string());
    out.push_str(",\"event_type\":");
    push_json_str(&mut out, event.event_type());
    out.push_str(",\"category\":");
    match event.category() {
        Some(c) => push_json_str(&mut out, c.as_str()),
        None => push_json_str(&mut out, &format!("unknown({})", event.view().category)),
    }
    out.push_str(",\"source\":");
    push_json_str(&mut out, event.source());
    if let Some(c) = event.correlation_id() {
        out.push_str(",\"correlation_id\":");
        push_json_str(&mut out, c);
    }
    if let Some(c) = event.causation_id() {
        out.push_str(",\"causation_id\":");
        push_json_str(&mut out, c);
    }
    let mut first = true;
    for (k, v) in event.metadata_entries() {
        if k == keys::CORRELATION_ID || k == keys::CAUSATION_ID {
            continue;
        }
        out.push_str(if first { ",\"metadata\":{" } else { "," });
        first = false;
        push_json_str(&mut out, k);
        out.push(':');
        if redact.iter().any(|r| r.eq_ignore_ascii_case(k)) {
            push_json_str(&mut out, REDACTED);
        } else {
            push_json_str(&mut out, v);
        }
    }
    if !first {
        out.push('}');
    }
    out.push_str(",\"data\":");
    match serde_json::from_slice::<Json>(event.data_json()) {
        Ok(mut data) => {
            data.redact(redact);
            data.write_to(&mut out);
        }
        Err(_) => {
            // Not JSON: record that, not the raw bytes (they could hold unredacted secrets).
            let _ = write!(
                out,
                "{{\"invalid_json_bytes\":{}}}",
                event.data_json().len()
            );
        }
    }
    out.push_str(",\"prev_hash\":");
    push_json_str(&mut out, prev_hash);
    out.push('}');
    out
}
