//! The host as a plugin sees it: [`AbiHost`] (ABI trait object the host implements) and
//! [`HostHandle`] (the safe handle plugin code uses).
// The `#[sabi_trait]` expansion trips these lints on current compilers (DESIGN.md section 5).
#![allow(non_local_definitions, non_camel_case_types)]

use crate::{
    error::PluginError,
    refusal::{PublishError, PublishRefusal, RefusalKind},
    view::KeyValue,
};
use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};
use plugbus_contract::{Category, TypedEvent};
use std::fmt;

/// An event a plugin publishes, in ABI types (owned: the host takes it).
///
/// The host assigns the id and timestamp, uses the plugin's name when `source` is empty, and sets
/// `causation_id` / `correlation_id` itself when the plugin publishes while handling an event.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    /// The dotted type name.
    pub event_type: RString,
    /// The category, as `Category as u8`.
    pub category: u8,
    /// The source; empty = the publishing plugin's name.
    pub source: RString,
    /// The payload schema version.
    pub schema_version: u32,
    /// The payload as JSON text.
    pub payload_json: RString,
    /// Metadata entries (key, value).
    pub metadata: RVec<Tuple2<RString, RString>>,
}

impl OwnedEvent {
    /// The event's size as the host measures it against
    /// [`contract::audit::MAX_EVENT_BYTES`](plugbus_contract::audit::MAX_EVENT_BYTES): the
    /// bytes of the payload, source, type name and every metadata key and value. A larger
    /// event is refused as [`RefusalKind::Invalid`].
    pub fn size_bytes(&self) -> usize {
        self.payload_json.len()
            + self.source.len()
            + self.event_type.len()
            + self
                .metadata
                .iter()
                .map(|pair| pair.0.len() + pair.1.len())
                .sum::<usize>()
    }
}

impl fmt::Debug for OwnedEvent {
    /// Prints everything but the payload (payloads may carry secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedEvent")
            .field("event_type", &self.event_type.as_str())
            .field("category", &self.category)
            .field("source", &self.source.as_str())
            .field("schema_version", &self.schema_version)
            .field("payload_len", &self.payload_json.len())
            .field(
                "metadata",
                &self
                    .metadata
                    .iter()
                    .map(|t| (t.0.as_str(), t.1.as_str()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Log levels as they cross the ABI in [`AbiHost::log`].
pub mod level {
    /// Error.
    pub const ERROR: u8 = 1;
    /// Warning.
    pub const WARN: u8 = 2;
    /// Information.
    pub const INFO: u8 = 3;
    /// Debugging detail.
    pub const DEBUG: u8 = 4;
    /// Tracing detail.
    pub const TRACE: u8 = 5;
}

/// The ABI trait the host implements and hands to each plugin's constructor as a [`HostBox`].
///
/// Implementations must be callable from any thread (plugin threads of their own, too).
/// Methods may only be appended (after `log`), with a default, in a minor ABI version.
#[sabi_trait]
pub trait AbiHost: Send + Sync {
    /// Publishes an event on the bus. The event follows the bus's overflow policies like any
    /// publisher's: when the bus is busy this may block the calling thread, for at most the
    /// plugin's handler timeout, before it is refused as [`RefusalKind::Full`]. `Err` says why
    /// the host refused it (since ABI 0.2, typed; a text before).
    fn publish(&self, event: OwnedEvent) -> RResult<(), PublishRefusal>;

    /// Records a log line: `level` 1 = error .. 5 = trace (see [`level`]), `target` the module
    /// path inside the plugin, `fields` the other structured fields as strings.
    #[sabi(last_prefix_field)]
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, KeyValue<'_>>);

    /// Records a log line with its fields' types, module path, file and line (what the log
    /// bridge sends since ABI 0.4). The default passes it on to [`log`](AbiHost::log) as text.
    fn log_record(&self, record: &LogRecord<'_>) {
        let texts: Vec<String> = record.fields.iter().map(|f| f.value.to_string()).collect();
        let kvs: Vec<KeyValue<'_>> = record
            .fields
            .iter()
            .zip(&texts)
            .map(|(f, text)| KeyValue::new(f.key.as_str(), text))
            .collect();
        self.log(
            record.level,
            record.target,
            record.message,
            RSlice::from_slice(&kvs),
        );
    }
}

/// One log line of a plugin, as it crosses the ABI in [`AbiHost::log_record`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// 1 = error .. 5 = trace (see [`level`]).
    pub level: u8,
    /// The `tracing` target inside the plugin (by default its module path).
    pub target: RStr<'a>,
    /// The module path of the call site, empty when unknown.
    pub module_path: RStr<'a>,
    /// The source file of the call site, empty when unknown.
    pub file: RStr<'a>,
    /// The line of the call site, 0 when unknown.
    pub line: u32,
    /// The `message` field.
    pub message: RStr<'a>,
    /// Every other field, with its type.
    pub fields: RSlice<'a, LogField<'a>>,
}

/// A structured field of a [`LogRecord`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct LogField<'a> {
    /// The field's name.
    pub key: RStr<'a>,
    /// Its value.
    pub value: LogValue<'a>,
}

/// The value of a [`LogField`], typed as `tracing` recorded it.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub enum LogValue<'a> {
    /// A string (`record_str`, or `%value`, its `Display` form).
    Str(RStr<'a>),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Anything else, in its `Debug` form (`?value`).
    Debug(RStr<'a>),
}

impl fmt::Display for LogValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogValue::Str(s) | LogValue::Debug(s) => f.write_str(s.as_str()),
            LogValue::I64(v) => write!(f, "{v}"),
            LogValue::U64(v) => write!(f, "{v}"),
            LogValue::F64(v) => write!(f, "{v}"),
            LogValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// The host handle as it crosses the ABI (a reference-counted trait object, `Send + Sync`).
///
/// Hosts build one with [`host_box`]; [`clone_host_box`] copies the reference.
pub type HostBox = AbiHost_TO<'static, RArc<()>>;

/// Wraps a host implementation into a [`HostBox`].
pub fn host_box<H: AbiHost + 'static>(host: H) -> HostBox {
    AbiHost_TO::from_ptr(RArc::new(host), TD_Opaque)
}

/// Another reference to the same host object.
pub fn clone_host_box(host: &HostBox) -> HostBox {
    AbiHost_TO::from_sabi(host.obj.shallow_clone())
}

/// An event to publish with control over source, metadata and raw payload.
///
/// ```
/// use plugbus_plugin_api::{contract::Category, EventDraft};
/// let draft = EventDraft::new("billing.invoice_paid", Category::Business)
///     .json(r#"{"invoice":"INV-1","cents":1200}"#)
///     .source("billing-plugin")
///     .metadata("request_id", "r-42");
/// # let _ = draft;
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct EventDraft {
    event_type: String,
    category: Category,
    source: String,
    schema_version: u32,
    payload_json: String,
    metadata: Vec<(String, String)>,
}

impl EventDraft {
    /// A draft of the given type and category with payload `{}`, schema version 1, no source.
    pub fn new(event_type: impl Into<String>, category: Category) -> Self {
        EventDraft {
            event_type: event_type.into(),
            category,
            source: String::new(),
            schema_version: 1,
            payload_json: "{}".to_owned(),
            metadata: Vec::new(),
        }
    }

    /// A draft carrying a typed payload (type, category and schema version from `T`).
    ///
    /// # Errors
    /// [`PluginError::Permanent`] if the payload does not serialize.
    pub fn typed<T: TypedEvent>(payload: &T) -> Result<Self, PluginError> {
        let json = serde_json::to_string(payload).map_err(|e| {
            PluginError::permanent(format_args!("cannot serialize '{}': {e}", T::EVENT_TYPE))
        })?;
        Ok(EventDraft::new(T::EVENT_TYPE, T::CATEGORY)
            .json(json)
            .schema_version(T::SCHEMA_VERSION))
    }

    /// Sets the raw JSON payload (sent as is; the host may reject invalid JSON).
    pub fn json(mut self, json: impl Into<String>) -> Self {
        self.payload_json = json.into();
        self
    }

    /// Sets the source (default: the plugin's name, filled in by the host).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the payload schema version (default 1).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Adds a metadata entry. Causation and correlation ids are set by the host.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Converts into the ABI form.
    pub fn into_owned_event(self) -> OwnedEvent {
        OwnedEvent {
            event_type: self.event_type.into(),
            category: self.category as u8,
            source: self.source.into(),
            schema_version: self.schema_version,
            payload_json: self.payload_json.into(),
            metadata: self
                .metadata
                .into_iter()
                .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                .collect(),
        }
    }
}

impl fmt::Debug for EventDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventDraft")
            .field("event_type", &self.event_type)
            .field("category", &self.category)
            .field("source", &self.source)
            .field("payload_len", &self.payload_json.len())
            .finish_non_exhaustive()
    }
}

/// The handle plugin code uses to talk to the host: publish events and log.
///
/// Cheap to clone, `Send + Sync`; keep it in your plugin struct.
pub struct HostHandle {
    inner: HostBox,
}

impl HostHandle {
    /// Wraps the ABI host object.
    pub fn new(host: HostBox) -> Self {
        HostHandle { inner: host }
    }

    /// The ABI host object.
    pub fn as_abi(&self) -> &HostBox {
        &self.inner
    }

    /// Publishes a typed event.
    ///
    /// Allowed from any thread, the plugin's own threads included (see
    /// [`guide::threads`](crate::guide::threads)). When the bus is busy the call may wait, at
    /// most the plugin's handler timeout, for room in the host's queue for this plugin's
    /// events. In a child process of its own it is a round trip to the host
    /// ([`guide::isolation`](crate::guide::isolation)).
    ///
    /// # Errors
    /// A [`PublishError`] saying why the host refused the event: [`RefusalKind::Full`] is
    /// transient, the others permanent ([`RefusalKind::Invalid`] also when the payload does not
    /// serialize). `?` turns it into a permanent [`PluginError`]: the delivery being handled is
    /// never redelivered because of it.
    pub fn publish<T: TypedEvent>(&self, payload: &T) -> Result<(), PublishError> {
        let draft = EventDraft::typed(payload).map_err(|e| {
            PublishError::new(RefusalKind::Invalid, T::EVENT_TYPE, e.message().to_owned())
        })?;
        self.publish_with(draft)
    }

    /// Publishes a drafted event.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn publish_with(&self, draft: EventDraft) -> Result<(), PublishError> {
        let event_type = draft.event_type.clone();
        self.inner
            .publish(draft.into_owned_event())
            .into_result()
            .map_err(|r| PublishError::new(r.kind, event_type, r.message.into_string()))
    }

    /// Sends a log line to the host directly (plugin code normally uses `tracing` macros, which
    /// the export macro forwards here).
    pub fn log(&self, level: u8, target: &str, message: &str, fields: &[(&str, &str)]) {
        let kvs: Vec<KeyValue<'_>> = fields.iter().map(|(k, v)| KeyValue::new(k, v)).collect();
        self.inner.log(
            level,
            target.into(),
            message.into(),
            RSlice::from_slice(&kvs),
        );
    }
}

impl Clone for HostHandle {
    fn clone(&self) -> Self {
        HostHandle {
            inner: clone_host_box(&self.inner),
        }
    }
}

impl fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostHandle")
    }
}
