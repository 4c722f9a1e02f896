//! The event as a plugin sees it: [`EventView`] (ABI, borrowed) and [`Event`] (safe wrapper).
//!
//! Nothing here does I/O or allocates on the way in: the host lends an [`EventView`] over its own
//! event for the duration of one `handle` call, and [`Event`] only reads it.

use crate::error::PluginError;
use abi_stable::{
    std_types::{RSlice, RStr},
    StableAbi,
};
use plugbus_contract::{keys, Category, TypedEvent};
use std::fmt;

/// One metadata entry, borrowed. Used in [`EventView::metadata`] and in log fields.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq)]
pub struct KeyValue<'a> {
    /// The key, e.g. `correlation_id`.
    pub key: RStr<'a>,
    /// The value, as a string.
    pub value: RStr<'a>,
}

impl<'a> KeyValue<'a> {
    /// A key/value pair borrowing both strings.
    pub fn new(key: &'a str, value: &'a str) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl fmt::Debug for KeyValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.key.as_str(), self.value.as_str())
    }
}

/// An event lent by the host to a plugin for the duration of one call (ABI type).
///
/// Every field is borrowed from the host's event; copy what you need to keep. Plugin code usually
/// reads it through [`Event`], which the export macro builds from it.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct EventView<'a> {
    /// The event id (a UUID, big-endian bytes as in RFC 9562).
    pub id: [u8; 16],
    /// The dotted type name, e.g. `user.login`.
    pub event_type: RStr<'a>,
    /// The category, as `plugbus_contract::Category as u8` (see `Category::from_u8`).
    pub category: u8,
    /// Who published the event, as the publisher says.
    pub source: RStr<'a>,
    /// Where the event really came from, stamped by the host (`local`, `host`,
    /// `input:<name>:<line>`, `plugin:<name>`, `remote:<peer>`); no publisher can set it.
    pub origin: RStr<'a>,
    /// When it was published, in nanoseconds since the Unix epoch (UTC).
    pub timestamp_unix_nanos: i64,
    /// The version of the payload's schema.
    pub schema_version: u32,
    /// The payload, as UTF-8 JSON.
    pub payload_json: RSlice<'a, u8>,
    /// Metadata entries (`correlation_id`, `causation_id`, `request_id`, custom keys).
    pub metadata: RSlice<'a, KeyValue<'a>>,
}

impl<'a> EventView<'a> {
    /// The value of the first metadata entry named `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&'a str> {
        let entries: &'a [KeyValue<'a>] = self.metadata.as_slice();
        entries
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str())
    }
}

impl fmt::Debug for EventView<'_> {
    /// Prints everything but the payload bytes (payloads may carry secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventView")
            .field("id", &format_uuid(&self.id))
            .field("event_type", &self.event_type.as_str())
            .field("category", &self.category)
            .field("source", &self.source.as_str())
            .field("origin", &self.origin.as_str())
            .field("timestamp_unix_nanos", &self.timestamp_unix_nanos)
            .field("schema_version", &self.schema_version)
            .field("payload_len", &self.payload_json.len())
            .field("metadata", &self.metadata.as_slice())
            .finish()
    }
}

/// Formats 16 bytes as a lowercase hyphenated UUID (`8-4-4-4-12` hex digits).
pub fn format_uuid(id: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// The event a plugin's [`handle`](crate::Plugin::handle) receives: a safe, read-only view.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    view: &'a EventView<'a>,
    subscription: &'a str,
}

impl<'a> Event<'a> {
    /// Wraps a view lent by the host.
    pub fn new(view: &'a EventView<'a>) -> Self {
        Event {
            view,
            subscription: "",
        }
    }

    /// Wraps a view delivered through the subscription named `subscription`.
    pub fn with_subscription(view: &'a EventView<'a>, subscription: &'a str) -> Self {
        Event { view, subscription }
    }

    /// The name of the subscription that delivered the event
    /// ([`Subscription::named`](crate::Subscription::named)), empty when it has none.
    ///
    /// ```
    /// # use plugbus_plugin_api::{Event, PluginError};
    /// fn handle(event: &Event<'_>) -> Result<(), PluginError> {
    ///     match event.subscription() {
    ///         "logins" => Ok(()),
    ///         "alerts" => Ok(()),
    ///         other => Err(PluginError::permanent(format_args!("no subscription {other:?}"))),
    ///     }
    /// }
    /// ```
    pub fn subscription(&self) -> &'a str {
        self.subscription
    }

    /// The underlying ABI view.
    pub fn view(&self) -> &'a EventView<'a> {
        self.view
    }

    /// The dotted type name, e.g. `user.login`.
    pub fn event_type(&self) -> &'a str {
        self.view.event_type.as_str()
    }

    /// The category; `None` if the host sent a value this plugin does not know.
    pub fn category(&self) -> Option<Category> {
        Category::from_u8(self.view.category)
    }

    /// The event id as bytes.
    pub fn id(&self) -> [u8; 16] {
        self.view.id
    }

    /// The event id as a lowercase hyphenated UUID string.
    pub fn id_string(&self) -> String {
        format_uuid(&self.view.id)
    }

    /// Who published the event, as its publisher says (any text; see [`origin`](Self::origin)).
    pub fn source(&self) -> &'a str {
        self.view.source.as_str()
    }

    /// Where the event really came from, as the host stamped it: `local` (the application),
    /// `host`, `input:<name>:<line>`, `plugin:<name>` or `remote:<peer>`. Unlike
    /// [`source`](Self::source), no publisher can set it.
    pub fn origin(&self) -> &'a str {
        self.view.origin.as_str()
    }

    /// When the event was published, in nanoseconds since the Unix epoch (UTC).
    pub fn timestamp_unix_nanos(&self) -> i64 {
        self.view.timestamp_unix_nanos
    }

    /// The payload schema version.
    pub fn schema_version(&self) -> u32 {
        self.view.schema_version
    }

    /// The payload as raw JSON bytes.
    pub fn data_json(&self) -> &'a [u8] {
        self.view.payload_json.as_slice()
    }

    /// The payload parsed as `T`.
    ///
    /// # Errors
    /// [`PluginError::InvalidEvent`] if the event's type is not `T::EVENT_TYPE` or the payload does
    /// not parse as `T`.
    pub fn data<T: TypedEvent>(&self) -> Result<T, PluginError> {
        if self.event_type() != T::EVENT_TYPE {
            return Err(PluginError::invalid_event(format_args!(
                "expected a '{}' event, got '{}'",
                T::EVENT_TYPE,
                self.event_type()
            )));
        }
        serde_json::from_slice(self.data_json()).map_err(|e| {
            PluginError::invalid_event(format_args!(
                "payload of '{}' event {} does not parse: {e}",
                self.event_type(),
                self.id_string()
            ))
        })
    }

    /// The payload parsed as a generic JSON value.
    ///
    /// # Errors
    /// [`PluginError::InvalidEvent`] if the payload is not valid JSON.
    pub fn data_value(&self) -> Result<serde_json::Value, PluginError> {
        serde_json::from_slice(self.data_json()).map_err(|e| {
            PluginError::invalid_event(format_args!(
                "payload of '{}' event {} is not JSON: {e}",
                self.event_type(),
                self.id_string()
            ))
        })
    }

    /// The value of metadata entry `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        self.view.metadata_value(key)
    }

    /// Every metadata entry, in the host's order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let entries: &'a [KeyValue<'a>] = self.view.metadata.as_slice();
        entries
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
    }

    /// The `correlation_id` metadata entry.
    pub fn correlation_id(&self) -> Option<&'a str> {
        self.metadata(keys::CORRELATION_ID)
    }

    /// The `causation_id` metadata entry (the id of the event whose handling produced this one).
    pub fn causation_id(&self) -> Option<&'a str> {
        self.metadata(keys::CAUSATION_ID)
    }

    /// The `request_id` metadata entry.
    pub fn request_id(&self) -> Option<&'a str> {
        self.metadata(keys::REQUEST_ID)
    }
}

impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.view, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use plugbus_contract::payload::{UserLogin, UserLogout};

    fn view<'a>(payload: &'a [u8], meta: &'a [KeyValue<'a>]) -> EventView<'a> {
        EventView {
            id: [
                0x01, 0x8f, 0x3a, 0x2b, 0x4c, 0x5d, 0x7e, 0x6f, 0x80, 0x91, 0xa2, 0xb3, 0xc4, 0xd5,
                0xe6, 0xf7,
            ],
            event_type: "user.login".into(),
            category: Category::Business as u8,
            source: "app".into(),
            origin: "input:stdin:7".into(),
            timestamp_unix_nanos: 1_700_000_000_123_456_789,
            schema_version: 1,
            payload_json: payload.into(),
            metadata: meta.into(),
        }
    }

    #[test]
    fn reads_fields_metadata_and_typed_data() {
        let meta = [
            KeyValue::new("correlation_id", "c-1"),
            KeyValue::new("causation_id", "e-0"),
            KeyValue::new("tenant", "acme"),
        ];
        let payload = br#"{"user_id":"alice","ip":"10.0.0.1"}"#;
        let v = view(payload, &meta);
        let e = Event::new(&v);
        assert_eq!(e.event_type(), "user.login");
        assert_eq!(e.category(), Some(Category::Business));
        assert_eq!(e.id_string(), "018f3a2b-4c5d-7e6f-8091-a2b3c4d5e6f7");
        assert_eq!(e.source(), "app");
        assert_eq!(e.correlation_id(), Some("c-1"));
        assert_eq!(e.causation_id(), Some("e-0"));
        assert_eq!(e.request_id(), None);
        assert_eq!(e.metadata("tenant"), Some("acme"));
        assert_eq!(e.metadata_entries().count(), 3);
        let login: UserLogin = e.data().unwrap();
        assert_eq!(login.user_id, "alice");
        assert_eq!(e.data_value().unwrap()["ip"], "10.0.0.1");

        let wrong = e.data::<UserLogout>().unwrap_err();
        assert!(matches!(wrong, PluginError::InvalidEvent(_)), "{wrong}");
        assert!(wrong.message().contains("user.logout"));
    }

    #[test]
    fn bad_payload_is_an_invalid_event_and_debug_hides_it() {
        let payload = br#"{"password":"hunter2""#;
        let v = view(payload, &[]);
        let e = Event::new(&v);
        assert!(matches!(
            e.data::<UserLogin>(),
            Err(PluginError::InvalidEvent(_))
        ));
        assert!(e.data_value().is_err());
        let dbg = format!("{e:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("user.login"));
    }
}
