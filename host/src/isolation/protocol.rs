//! The framed protocol between the host and a plugin's child process.
//!
//! One stream socket, both ways. A frame is a little-endian `u32` length and that many bytes
//! of JSON: one `ToChild` or `FromChild`. JSON because the payload already is JSON (the
//! event's shared bytes cross as they are, embedded raw, never parsed into values on the way),
//! and because a frame is then readable in a trace; the framing keeps a payload's newlines
//! harmless. A frame larger than [`MAX_FRAME`] ends the connection: an event is at most
//! [`MAX_EVENT_BYTES`](plugbus::contract::audit::MAX_EVENT_BYTES), so only a broken peer
//! sends one.
//!
//! The conversation: the host sends `ToChild::Hello`; the child applies its limits, loads
//! and checks the library, constructs the plugin and answers `FromChild::Ready` (or
//! `FromChild::LoadFailed`). Then the host sends lifecycle calls and batches of deliveries;
//! the child answers each delivery once (`FromChild::Done`, in batches too), publishes and
//! logs, and beats (`FromChild::Beat`) while no call into the plugin has run longer than the
//! heartbeat timeout.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::ProcessLimits;

/// The protocol's version; the handshake refuses any other.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest frame either side accepts (an event is at most 15 MiB; a batch of deliveries
/// is cut before it grows past this).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A batch of deliveries is sent once it holds this many bytes, or this many events.
pub(crate) const BATCH_BYTES: usize = 1024 * 1024;
/// See [`BATCH_BYTES`].
pub(crate) const BATCH_EVENTS: usize = 256;

/// What the host says to a child.
///
/// Externally tagged (`{"deliver": {...}}`), as is [`FromChild`]: an internally tagged enum
/// buffers its content, which a raw payload cannot go through.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToChild {
    /// The first frame: what to load and how.
    Hello(Hello),
    /// Call the plugin's `start`; answered by [`FromChild::Answer`] with the same id.
    Start { id: u64 },
    /// Call the plugin's `stop`, answer, and exit.
    Stop { id: u64 },
    /// Deliveries, in the order the plugin must see them.
    Deliver { batch: Vec<Delivery> },
    /// The host's answer to a [`FromChild::Publish`].
    Published { id: u64, refusal: Option<Refusal> },
    /// Call the plugin's `reconfigure` with this configuration (JSON); answered by
    /// [`FromChild::Reconfigured`] with the same id.
    Reconfigure { id: u64, config_json: String },
}

/// The handshake's first frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    /// The plugin's name, as the host loaded it (the child checks the library says the same).
    pub(crate) name: String,
    /// The host's private copy of the file, to map.
    pub(crate) path: std::path::PathBuf,
    /// The SHA-256 the host checked; the child refuses a file with other bytes.
    pub(crate) sha256: String,
    /// The plugin's configuration, as JSON.
    pub(crate) config_json: String,
    pub(crate) limits: ProcessLimits,
    /// How often to beat, in milliseconds; also how long one call may run before the child
    /// stops beating (and is killed).
    pub(crate) heartbeat_ms: u64,
    pub(crate) hang_ms: u64,
}

/// One delivery: an event for one of the plugin's handlers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Delivery {
    /// The host's number for this delivery; the answer names it.
    pub(crate) seq: u64,
    pub(crate) handler: u32,
    pub(crate) event: WireEvent,
}

/// An event as it crosses: every field an [`EventView`](plugbus_plugin_api::EventView) lends.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub(crate) id: [u8; 16],
    pub(crate) event_type: String,
    pub(crate) category: u8,
    pub(crate) source: String,
    pub(crate) origin: String,
    pub(crate) timestamp_unix_nanos: i64,
    pub(crate) schema_version: u32,
    pub(crate) metadata: Vec<(String, String)>,
    /// The payload's JSON, as the bus serialized it once for every plugin.
    pub(crate) payload: Box<RawValue>,
}

/// A plugin's error, as it crosses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub(crate) enum WireError {
    Retryable(String),
    Permanent(String),
    Config(String),
    InvalidEvent(String),
    Panicked(String),
}

/// A refused publish, as it crosses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Refusal {
    /// [`RefusalKind`](plugbus_plugin_api::RefusalKind) as `u8`.
    pub(crate) kind: u8,
    pub(crate) message: String,
}

/// One declared subscription, as it crosses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireSubscription {
    pub(crate) handler: u32,
    pub(crate) event_types: Vec<String>,
    pub(crate) categories: Vec<u8>,
    pub(crate) patterns: Vec<String>,
    /// (field, op as `u8`, value) of each condition.
    pub(crate) filter: Option<Vec<(String, u8, String)>>,
    pub(crate) timeout_ms: u64,
    /// The subscription's name, empty when it has none.
    #[serde(default)]
    pub(crate) name: String,
}

/// A log field's value, as it crosses (a [`LogValue`](plugbus_plugin_api::LogValue), owned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireLogValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Debug(String),
}

/// An event a plugin publishes, as it crosses (the fields of an `OwnedEvent`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireOwned {
    pub(crate) event_type: String,
    pub(crate) category: u8,
    pub(crate) source: String,
    pub(crate) schema_version: u32,
    pub(crate) payload_json: String,
    pub(crate) metadata: Vec<(String, String)>,
}

/// What a child says to the host.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FromChild {
    /// Constructed; these are its subscriptions.
    Ready {
        version: u32,
        pid: u32,
        subscriptions: Vec<WireSubscription>,
    },
    /// Loading or constructing failed; the child exits after this.
    LoadFailed { error: String },
    /// The answer to a lifecycle call.
    Answer { id: u64, error: Option<WireError> },
    /// Answers to deliveries: (seq, error if it failed).
    Done {
        results: Vec<(u64, Option<WireError>)>,
    },
    /// The plugin published an event; `cause` is the delivery being handled on the thread
    /// that published, if any. Answered by [`ToChild::Published`].
    Publish {
        id: u64,
        cause: Option<u64>,
        event: WireOwned,
    },
    /// A log record of the plugin's (the fields of a
    /// [`LogRecord`](plugbus_plugin_api::LogRecord)).
    Log {
        level: u8,
        target: String,
        module_path: String,
        file: String,
        line: u32,
        message: String,
        fields: Vec<(String, WireLogValue)>,
    },
    /// The answer to [`ToChild::Reconfigure`]: applied, or the plugin asks for a reload, or
    /// an error.
    Reconfigured {
        id: u64,
        applied: bool,
        error: Option<WireError>,
    },
    /// Alive, and no call into the plugin has run longer than the hang limit.
    Beat,
}

/// Writes one frame.
///
/// # Errors
/// The write failed, or the frame would be larger than [`MAX_FRAME`].
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, frame: &T) -> io::Result<()> {
    let body = serde_json::to_vec(frame).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {} bytes, more than {MAX_FRAME}", body.len()),
        ));
    }
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&body)
}

/// Reads one frame; `Ok(None)` at a clean end of the stream (between frames).
///
/// # Errors
/// A read error, a stream cut inside a frame, a frame larger than [`MAX_FRAME`], or one that
/// is not the JSON of a `T`.
pub(crate) fn read_frame<T: for<'de> Deserialize<'de>>(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = usize::try_from(u32::from_le_bytes(len)).map_err(io::Error::other)?;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes, more than {MAX_FRAME}"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    input.read_exact(buf)?;
    serde_json::from_slice(buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_payloads_stay_raw() {
        let payload = RawValue::from_string(r#"{"a": [1, 2], "b": "x\ny"}"#.to_owned()).unwrap();
        let frame = ToChild::Deliver {
            batch: vec![Delivery {
                seq: 7,
                handler: 2,
                event: WireEvent {
                    id: [1; 16],
                    event_type: "user.login".into(),
                    category: 2,
                    source: "web".into(),
                    origin: "host".into(),
                    timestamp_unix_nanos: 5,
                    schema_version: 1,
                    metadata: vec![("request_id".into(), "r".into())],
                    payload,
                },
            }],
        };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &frame).unwrap();
        write_frame(&mut bytes, &ToChild::Stop { id: 1 }).unwrap();
        let mut input = &bytes[..];
        let mut buf = Vec::new();
        let Some(ToChild::Deliver { batch }) = read_frame(&mut input, &mut buf).unwrap() else {
            panic!("not a delivery");
        };
        assert_eq!(
            batch[0].event.payload.get(),
            r#"{"a": [1, 2], "b": "x\ny"}"#
        );
        assert!(matches!(
            read_frame::<ToChild>(&mut input, &mut buf).unwrap(),
            Some(ToChild::Stop { id: 1 })
        ));
        assert!(read_frame::<ToChild>(&mut input, &mut buf)
            .unwrap()
            .is_none());
    }

    #[test]
    fn cut_and_oversized_frames_are_errors_not_panics() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &FromChild::Beat).unwrap();
        let mut buf = Vec::new();
        for cut in 1..bytes.len() {
            let mut input = &bytes[..cut];
            assert!(
                read_frame::<FromChild>(&mut input, &mut buf).is_err(),
                "cut at {cut}"
            );
        }
        let huge = u32::MAX.to_le_bytes();
        assert!(read_frame::<FromChild>(&mut &huge[..], &mut buf).is_err());
        let mut junk = 3u32.to_le_bytes().to_vec();
        junk.extend_from_slice(b"{x}");
        assert!(read_frame::<FromChild>(&mut &junk[..], &mut buf).is_err());
    }
}
