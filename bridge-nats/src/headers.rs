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

/// The headers of a message carrying the outbox's event `row`, forwarded by `host`.
pub(crate) fn build(host: &str, row: &crate::outbox::PendingRow) -> HeaderMap {
    use async_nats::header::HeaderName;
    let mut h = HeaderMap::new();
    h.insert(HeaderName::from_static(MSG_ID), row.id());
    h.insert(HeaderName::from_static(HOST), host);
    h.insert(HeaderName::from_static(ORIGIN), row.origin());
    if let Some(c) = row.correlation() {
        h.insert(HeaderName::from_static(CORRELATION_ID), c);
    }
    if let Some(c) = row.causation() {
        h.insert(HeaderName::from_static(CAUSATION_ID), c);
    }
    h
}

/// The value of header `name`, if present.
pub(crate) fn get<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}
