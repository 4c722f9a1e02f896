//! The NATS headers an event travels with.
//!
//! The envelope (the event's JSON form) is the payload; beside it:
//! - `Nats-Msg-Id`: the event id, so the stream's duplicate window drops a re-sent event;
//! - `Plugbus-Host`: the id of the host that forwarded it (loop prevention);
//! - `Plugbus-Origin`: its origin on that host (`input:stdin:3`, `plugin:auth-enhancer`);
//! - `Plugbus-Correlation-Id`, `Plugbus-Causation-Id`: when set, as in the envelope, so a
//!   broker-side tool can follow a chain without parsing payloads.

use async_nats::HeaderMap;

/// JetStream's de-duplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The forwarding host's id.
pub const HOST: &str = "Plugbus-Host";
/// The event's origin on the forwarding host.
pub const ORIGIN: &str = "Plugbus-Origin";
/// The event's correlation id.
pub const CORRELATION_ID: &str = "Plugbus-Correlation-Id";
/// The event's causation id.
pub const CAUSATION_ID: &str = "Plugbus-Causation-Id";

/// What an outbox row needs to become a message's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) id: String,
    pub(crate) origin: String,
    pub(crate) correlation: Option<String>,
    pub(crate) causation: Option<String>,
}

/// The headers of a message carrying an event stamped `stamp`, forwarded by `host`. The
/// stamp's strings become the values as they are (no copy).
pub(crate) fn build(host: &str, stamp: Stamp) -> HeaderMap {
    use async_nats::header::{HeaderName, HeaderValue};
    let mut h = HeaderMap::new();
    h.insert(HeaderName::from_static(MSG_ID), HeaderValue::from(stamp.id));
    h.insert(HeaderName::from_static(HOST), host);
    h.insert(
        HeaderName::from_static(ORIGIN),
        HeaderValue::from(stamp.origin),
    );
    if let Some(c) = stamp.correlation {
        h.insert(
            HeaderName::from_static(CORRELATION_ID),
            HeaderValue::from(c),
        );
    }
    if let Some(c) = stamp.causation {
        h.insert(HeaderName::from_static(CAUSATION_ID), HeaderValue::from(c));
    }
    h
}

/// The value of header `name`, if present.
pub(crate) fn get<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}
