//! The JSON form of an event (the envelope the CLI reads, the audit log writes and a broker bridge
//! carries).
//!
//! ```json
//! {"id":"0192…","type":"user.login","category":"business","source":"auth",
//!  "timestamp":"2026-11-22T05:00:00.123456789Z","schema_version":1,
//!  "data":{"user_id":"alice"},"metadata":{"correlation_id":"0192…","request_id":"r-1"}}
//! ```
//!
//! On input only `type` is required: a missing `id` or `timestamp` is generated, `source`
//! defaults to [`DEFAULT_SOURCE`](crate::event::DEFAULT_SOURCE), `data` to `null`, and
//! `category` to the type's known category (or `custom` for a new type). Unknown fields are
//! errors, so a typo does not silently drop data. An `origin` field is refused: the origin is
//! stamped by whoever admits the event ([`Origin`](crate::Origin)), never claimed by it, and the
//! JSON form does not carry it.
//!
//! A W3C `traceparent` and `tracestate` travel as plain metadata entries and are validated on
//! input: valid ones become the event's [trace context](crate::Event::trace_context), invalid ones
//! are not carried and start a new trace instead (see [`trace_context`](crate::trace_context)).

use crate::error::{DecodeError, EventError};
use crate::event::Event;
use crate::event_type::EventType;
use crate::id::EventId;
use crate::payload_value::Payload;
use chrono::{DateTime, Utc};
use plugbus_contract::Category;
use serde::ser::{Error as _, SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = self.data_json().map_err(S::Error::custom)?;
        let text = std::str::from_utf8(json).map_err(S::Error::custom)?;
        let raw = RawValue::from_string(text.to_owned()).map_err(S::Error::custom)?;
        let mut s = serializer.serialize_struct("Event", 8)?;
        s.serialize_field("id", &self.id())?;
        s.serialize_field("type", self.event_type().name())?;
        s.serialize_field("category", &self.category())?;
        s.serialize_field("source", self.source())?;
        s.serialize_field(
            "timestamp",
            &self
                .timestamp()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )?;
        s.serialize_field("schema_version", &self.schema_version())?;
        s.serialize_field("data", &raw)?;
        s.serialize_field("metadata", &MetadataSer(self))?;
        s.end()
    }
}

struct MetadataSer<'a>(&'a Event);

impl Serialize for MetadataSer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        for (k, v) in self.0.metadata_pairs() {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    #[serde(default)]
    id: Option<EventId>,
    #[serde(rename = "type", alias = "event_type")]
    event_type: String,
    #[serde(default)]
    category: Option<Category>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Never accepted: the origin is stamped by whoever admits the event
    /// ([`Origin`](crate::Origin)), so a claim of one is refused by name rather than as an
    /// unknown field.
    #[serde(default)]
    origin: Option<serde::de::IgnoredAny>,
}

impl Event {
    /// Parses the JSON envelope.
    ///
    /// # Errors
    /// Malformed JSON, an unknown field, a bad type name, a category that contradicts the type's
    /// known one, or a well-known metadata id that is not a UUID; the error says what and where.
    ///
    /// ```
    /// let e = plugbus::Event::from_json(br#"{"type":"user.login","data":{"user_id":"a"}}"#)?;
    /// assert_eq!(e.event_type(), plugbus::EventType::USER_LOGIN);
    /// let err = plugbus::Event::from_json(br#"{"type":"user.login","dta":{}}"#).unwrap_err();
    /// assert!(err.to_string().contains("dta"));
    /// # Ok::<(), plugbus::DecodeError>(())
    /// ```
    pub fn from_json(bytes: &[u8]) -> Result<Event, DecodeError> {
        let wire: WireEvent = serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        wire.into_event().map_err(DecodeError::Event)
    }

    /// The JSON envelope as bytes.
    ///
    /// # Errors
    /// The payload failed to serialize.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(self.json_size_hint());
        self.write_json(&mut out)?;
        Ok(out)
    }

    /// Appends the JSON envelope (the bytes of [`to_json`](Self::to_json)) to `out`: many
    /// events written into one buffer (a batch for a file or a socket) cost one allocation.
    /// On an error, `out` is left as it was.
    ///
    /// ```
    /// let e = plugbus::Event::builder(plugbus::EventType::USER_LOGIN).build()?;
    /// let mut buf = b"[".to_vec();
    /// e.write_json(&mut buf)?;
    /// assert_eq!(&buf[1..], e.to_json()?.as_slice());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The payload failed to serialize.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let at = out.len();
        let written = self.write_json_unchecked(out);
        if written.is_err() {
            out.truncate(at);
        }
        written
    }

    /// About the size of the envelope, for sizing a buffer.
    fn json_size_hint(&self) -> usize {
        self.data_json().map_or(0, <[u8]>::len) + self.source().len() + 224
    }

    fn write_json_unchecked(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        // The same bytes as `serde_json::to_vec(self)`, written straight into the buffer: the
        // payload's JSON is known valid (checked or produced when the event was built), so it
        // is copied once instead of being parsed again into a `RawValue` and copied through a
        // growing buffer.
        use serde::ser::Error as _;
        let data = self.data_json().map_err(serde_json::Error::custom)?;
        // As `RawValue` holds it: UTF-8, without surrounding whitespace.
        let data = std::str::from_utf8(data)
            .map_err(serde_json::Error::custom)?
            .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        let timestamp = self
            .timestamp()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        out.reserve(self.json_size_hint());
        out.extend_from_slice(b"{\"id\":");
        serde_json::to_writer(&mut *out, &self.id())?;
        out.extend_from_slice(b",\"type\":");
        serde_json::to_writer(&mut *out, self.event_type().name())?;
        out.extend_from_slice(b",\"category\":");
        serde_json::to_writer(&mut *out, &self.category())?;
        out.extend_from_slice(b",\"source\":");
        serde_json::to_writer(&mut *out, self.source())?;
        out.extend_from_slice(b",\"timestamp\":");
        serde_json::to_writer(&mut *out, &timestamp)?;
        out.extend_from_slice(b",\"schema_version\":");
        serde_json::to_writer(&mut *out, &self.schema_version())?;
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data.as_bytes());
        out.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut *out, &MetadataSer(self))?;
        out.push(b'}');
        Ok(())
    }
}

impl WireEvent {
    fn into_event(self) -> Result<Event, EventError> {
        if self.origin.is_some() {
            return Err(EventError::InvalidField {
                field: "origin",
                reason: "an event's origin is stamped by the host that admits it; a publisher \
                         cannot set it"
                    .to_owned(),
            });
        }
        let event_type = match (EventType::lookup(&self.event_type), self.category) {
            (Some(t), None) => t,
            (_, Some(c)) => EventType::new(&self.event_type, c)?,
            (None, None) => EventType::new(&self.event_type, Category::Custom)?,
        };
        let mut b = Event::builder(event_type);
        if let Some(id) = self.id {
            b = b.id(id);
        }
        if let Some(text) = &self.timestamp {
            let ts = DateTime::parse_from_rfc3339(text)
                .map_err(|e| EventError::InvalidField {
                    field: "timestamp",
                    reason: format!("'{text}' is not an RFC 3339 date-time: {e}"),
                })?
                .with_timezone(&Utc);
            let nanos = ts
                .timestamp_nanos_opt()
                .ok_or_else(|| EventError::InvalidField {
                    field: "timestamp",
                    reason: format!("{ts} is outside the range of Unix nanoseconds"),
                })?;
            b = b.timestamp_unix_nanos(nanos);
        }
        if let Some(s) = &self.source {
            b = b.source(s);
        }
        if let Some(v) = self.schema_version {
            b = b.schema_version(v);
        }
        if let Some(raw) = self.data {
            let text: Box<str> = raw.into();
            let bytes: Box<[u8]> = text.into();
            b = b.payload(Payload::from_json_unchecked(bytes.into()));
        }
        for (k, v) in &self.metadata {
            b = b.metadata(k, v);
        }
        b.build()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use plugbus_contract::payload::UserLogin;

    /// `to_json` writes the envelope by hand: it must be the bytes serde writes.
    #[test]
    fn to_json_is_what_serde_writes() {
        let parent = EventId::new();
        let events = [
            Event::builder_typed(UserLogin {
                user_id: "al\"ice\u{e9}\u{1f600}".into(),
                ip: "10.1.1.1".into(),
                ..Default::default()
            })
            .source("auth \\ \n service")
            .correlation_id(parent)
            .causation_id(EventId::new())
            .request_id("r-1")
            .metadata("k\"ey", "v\u{0}alue")
            .build()
            .unwrap(),
            Event::builder(EventType::USER_LOGIN)
                .json(" \n\t{ \"a\" : [1, 2.5e3, null, \"x\\u0041\"] }\r\n ")
                .build()
                .unwrap(),
            Event::builder(EventType::SYSTEM_STARTUP).build().unwrap(),
            Event::builder(EventType::new("custom.thing", Category::Custom).unwrap())
                .json("\"just a string\"")
                .metadata(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .build()
                .unwrap(),
        ];
        for e in &events {
            let fast = e.to_json().unwrap();
            let serde = serde_json::to_vec(e).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde)
            );
            assert_eq!(Event::from_json(&fast).unwrap().id(), e.id());
        }
    }

    #[test]
    fn round_trips_through_json() {
        let parent = EventId::new();
        let e = Event::builder_typed(UserLogin {
            user_id: "alice".into(),
            ip: "10.1.1.1".into(),
            ..Default::default()
        })
        .source("auth")
        .correlation_id(parent)
        .request_id("r-1")
        .build()
        .unwrap();
        let json = e.to_json().unwrap();
        let back = Event::from_json(&json).unwrap();
        assert_eq!(back.id(), e.id());
        assert_eq!(back.event_type(), EventType::USER_LOGIN);
        assert_eq!(back.source(), "auth");
        assert_eq!(back.timestamp_unix_nanos(), e.timestamp_unix_nanos());
        assert_eq!(back.correlation_id(), Some(parent));
        assert_eq!(back.request_id(), Some("r-1"));
        assert_eq!(back.data::<UserLogin>().unwrap().ip, "10.1.1.1");
        assert_eq!(back.to_json().unwrap(), json);
    }

    #[test]
    fn minimal_input_fills_defaults() {
        let e = Event::from_json(br#"{"type":"orders.shipped"}"#).unwrap();
        assert_eq!(e.category(), Category::Custom);
        assert_eq!(e.data_json().unwrap(), b"null");
        assert_eq!(e.schema_version(), 1);
        assert_eq!(e.id().as_uuid().get_version_num(), 7);
    }

    #[test]
    fn malformed_input_names_the_problem_and_place() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"type":"user.login""#, "line 1"),
            (br#"{"data":{}}"#, "type"),
            (br#"{"type":"User Login"}"#, "invalid character"),
            (br#"{"type":"user.login","category":"system"}"#, "category"),
            (
                br#"{"type":"x.y","metadata":{"causation_id":"zz"}}"#,
                "causation_id",
            ),
            (br#"{"type":"x.y","timestamp":"yesterday"}"#, "timestamp"),
        ];
        for (input, needle) in cases {
            let err = Event::from_json(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
