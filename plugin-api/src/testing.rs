//! A fake host for plugin unit tests (feature `testing`).
//!
//! [`FakeHost::load`] goes through exactly what a real host calls: the root module the export
//! macro built, its `info` and `new` functions, and the [`PluginBox`] trait object, so the
//! macro's panic catching, configuration parsing and log forwarding are exercised too. The fake
//! host records every event the plugin publishes and every log line it sends.
//!
//! How the bundled plugins' unit tests use it (see `plugins/*/src/lib.rs`):
//!
//! ```text
//! let host = FakeHost::new();
//! let mut plugin = host.load::<MyPlugin>(serde_json::json!({"threshold": 3}))?;
//! plugin.start()?;
//! let results = plugin.deliver(&TestEvent::typed(&UserLogin { user_id: "alice".into(), ..Default::default() }));
//! assert!(results.iter().all(|(_, r)| r.is_ok()));
//! assert_eq!(host.published().len(), 1);
//! ```

use crate::{
    abi::PluginInfo,
    error::PluginError,
    export::ExportedPlugin,
    facade::{host_box, AbiHost, OwnedEvent},
    plugin::PluginBox,
    refusal::{PublishRefusal, RefusalKind},
    subscription::AbiSubscription,
    view::{format_uuid, EventView, KeyValue},
};
use abi_stable::std_types::{RResult, RSlice, RStr};
use plugbus_contract::{Category, TypedEvent};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// An event a plugin published through the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The type name.
    pub event_type: String,
    /// The category as `Category as u8`.
    pub category: u8,
    /// The source the plugin set (empty: the host would use the plugin's name).
    pub source: String,
    /// The payload schema version.
    pub schema_version: u32,
    /// The payload as JSON text.
    pub payload_json: String,
    /// Metadata entries the plugin set.
    pub metadata: Vec<(String, String)>,
    /// The id of the event the plugin was handling when it published (the real host makes it the
    /// `causation_id`), or `None` outside `handle`.
    pub caused_by: Option<[u8; 16]>,
}

impl PublishedEvent {
    /// The payload parsed as `T`, if the type matches and it parses.
    ///
    /// # Errors
    /// [`PluginError::InvalidEvent`] on a type mismatch or a payload that does not parse.
    pub fn data<T: TypedEvent>(&self) -> Result<T, PluginError> {
        if self.event_type != T::EVENT_TYPE {
            return Err(PluginError::invalid_event(format_args!(
                "expected '{}', published '{}'",
                T::EVENT_TYPE,
                self.event_type
            )));
        }
        serde_json::from_str(&self.payload_json)
            .map_err(|e| PluginError::invalid_event(format_args!("payload does not parse: {e}")))
    }
}

/// A log line a plugin sent to the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// 1 = error .. 5 = trace.
    pub level: u8,
    /// The target (module path inside the plugin).
    pub target: String,
    /// The message.
    pub message: String,
    /// The other fields.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `key`, if any.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    published: Mutex<Vec<PublishedEvent>>,
    logs: Mutex<Vec<LogRecord>>,
    handling: Mutex<Option<[u8; 16]>>,
    refuse: Mutex<Option<PublishRefusal>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct HostImpl(Arc<Shared>);

impl AbiHost for HostImpl {
    fn publish(&self, event: OwnedEvent) -> RResult<(), PublishRefusal> {
        if let Some(refusal) = lock(&self.0.refuse).clone() {
            return RResult::RErr(refusal);
        }
        if let Err(refusal) = check_like_the_host(&event) {
            return RResult::RErr(refusal);
        }
        let caused_by = *lock(&self.0.handling);
        lock(&self.0.published).push(PublishedEvent {
            event_type: event.event_type.into(),
            category: event.category,
            source: event.source.into(),
            schema_version: event.schema_version,
            payload_json: event.payload_json.into(),
            metadata: event
                .metadata
                .into_iter()
                .map(|t| (t.0.into(), t.1.into()))
                .collect(),
            caused_by,
        });
        RResult::ROk(())
    }

    fn log(
        &self,
        level: u8,
        target: RStr<'_>,
        message: RStr<'_>,
        fields: RSlice<'_, KeyValue<'_>>,
    ) {
        lock(&self.0.logs).push(LogRecord {
            level,
            target: target.as_str().to_owned(),
            message: message.as_str().to_owned(),
            fields: fields
                .iter()
                .map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().to_owned()))
                .collect(),
        });
    }
}

/// The checks the real host makes before it takes an event from a plugin, so a unit test
/// catches what the host would refuse: the host's own types and sources (forbidden), a bad
/// type name, an unknown category or one that contradicts a built-in type's, a payload that
/// is not one JSON value (invalid).
fn check_like_the_host(event: &OwnedEvent) -> Result<(), PublishRefusal> {
    use plugbus_contract::{reserved, validate_type_name, Category, BUILTIN_TYPES};
    let name = event.event_type.as_str();
    if let Some(why) = reserved::host_only(name, event.source.as_str()) {
        return Err(PublishRefusal::new(RefusalKind::Forbidden, why));
    }
    let invalid = |why: String| Err(PublishRefusal::new(RefusalKind::Invalid, why));
    if let Err(e) = validate_type_name(name) {
        return invalid(format!("'{name}': {e}"));
    }
    let Some(category) = Category::from_u8(event.category) else {
        return invalid(format!("unknown category {} for '{name}'", event.category));
    };
    if let Some((_, builtin)) = BUILTIN_TYPES.iter().find(|(n, _)| *n == name) {
        if *builtin != category {
            return invalid(format!("'{name}' is a {builtin:?} type, not {category:?}"));
        }
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(event.payload_json.as_str()) {
        return invalid(format!("payload of '{name}' is not one JSON value: {e}"));
    }
    Ok(())
}

/// A host that records what plugins publish and log. Cheap to clone (clones share the records).
#[derive(Clone, Default)]
pub struct FakeHost {
    shared: Arc<Shared>,
}

impl fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeHost")
            .field("published", &lock(&self.shared.published).len())
            .field("logs", &lock(&self.shared.logs).len())
            .finish()
    }
}

impl FakeHost {
    /// A fake host with nothing recorded.
    pub fn new() -> Self {
        FakeHost::default()
    }

    /// Loads plugin `P` the way a host does: root module, `info`, `new(host, config)`, then
    /// `subscriptions()`.
    ///
    /// # Errors
    /// Whatever `new` or `subscriptions` returned, panics included as [`PluginError::Panicked`].
    pub fn load<P: ExportedPlugin>(
        &self,
        config: serde_json::Value,
    ) -> Result<LoadedPlugin, PluginError> {
        let module = P::root_module();
        let info = (module.info())();
        let config_json = config.to_string();
        let host = host_box(HostImpl(Arc::clone(&self.shared)));
        let plugin = (module.new())(host, config_json.as_str().into()).into_result()?;
        let subscriptions = plugin.subscriptions().into_result()?.into_vec();
        Ok(LoadedPlugin {
            info,
            plugin,
            subscriptions,
            shared: Arc::clone(&self.shared),
        })
    }

    /// A [`HostHandle`](crate::HostHandle) to this fake host, for testing code that publishes
    /// without loading a whole plugin. It checks publishes as the real host does:
    ///
    /// ```
    /// use plugbus_plugin_api::testing::FakeHost;
    /// use plugbus_plugin_api::{contract::Category, EventDraft, RefusalKind};
    /// let fake = FakeHost::new();
    /// let host = fake.host_handle();
    /// host.publish_with(EventDraft::new("account.locked", Category::Business)).unwrap();
    /// // What the real host would refuse, refused here too:
    /// let bad_name = host.publish_with(EventDraft::new("Account Locked", Category::Business));
    /// assert_eq!(bad_name.unwrap_err().kind(), RefusalKind::Invalid);
    /// let forged = host.publish_with(EventDraft::new("plugin.loaded", Category::Lifecycle));
    /// assert_eq!(forged.unwrap_err().kind(), RefusalKind::Forbidden);
    /// assert_eq!(fake.published().len(), 1);
    /// ```
    pub fn host_handle(&self) -> crate::HostHandle {
        crate::HostHandle::new(host_box(HostImpl(Arc::clone(&self.shared))))
    }

    /// Everything published so far.
    pub fn published(&self) -> Vec<PublishedEvent> {
        lock(&self.shared.published).clone()
    }

    /// Everything published so far, clearing the record.
    pub fn take_published(&self) -> Vec<PublishedEvent> {
        std::mem::take(&mut *lock(&self.shared.published))
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        lock(&self.shared.logs).clone()
    }

    /// Makes `publish` fail with `reason` (`Some`), as a transient [`RefusalKind::Full`]
    /// refusal, or succeed again (`None`).
    pub fn refuse_publishes(&self, reason: Option<&str>) {
        *lock(&self.shared.refuse) = reason.map(|r| PublishRefusal::new(RefusalKind::Full, r));
    }

    /// Makes `publish` fail with a refusal of `kind` (`Some`), or succeed again (`None`).
    pub fn refuse_publishes_as(&self, refusal: Option<(RefusalKind, &str)>) {
        *lock(&self.shared.refuse) = refusal.map(|(kind, r)| PublishRefusal::new(kind, r));
    }
}

/// A plugin instance loaded by a [`FakeHost`].
pub struct LoadedPlugin {
    info: PluginInfo,
    plugin: PluginBox,
    subscriptions: Vec<AbiSubscription>,
    shared: Arc<Shared>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// What the plugin's `info` returned.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// What the plugin's `subscriptions` returned at load.
    pub fn subscriptions(&self) -> &[AbiSubscription] {
        &self.subscriptions
    }

    /// Calls `start`.
    ///
    /// # Errors
    /// The plugin's error.
    pub fn start(&mut self) -> Result<(), PluginError> {
        self.plugin.start().into_result()
    }

    /// Calls `stop`.
    ///
    /// # Errors
    /// The plugin's error.
    pub fn stop(&mut self) -> Result<(), PluginError> {
        self.plugin.stop().into_result()
    }

    /// Calls `handle(handler, event)` directly, whatever the subscriptions say.
    ///
    /// # Errors
    /// The plugin's error.
    pub fn handle(&mut self, handler: u32, event: &TestEvent) -> Result<(), PluginError> {
        let plugin = &mut self.plugin;
        let shared = &self.shared;
        event.with_view(|view| {
            *lock(&shared.handling) = Some(view.id);
            let result = plugin.handle(handler, view).into_result();
            *lock(&shared.handling) = None;
            result
        })
    }

    /// Delivers `event` to every subscription that matches it (types, categories, patterns and
    /// filter, as the host decides), in subscription order; returns each handler's result.
    pub fn deliver(&mut self, event: &TestEvent) -> Vec<(u32, Result<(), PluginError>)> {
        let handlers: Vec<u32> = event.with_view(|view| {
            self.subscriptions
                .iter()
                .filter(|s| s.matches(view))
                .map(|s| s.handler)
                .collect()
        });
        handlers
            .into_iter()
            .map(|h| (h, self.handle(h, event)))
            .collect()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An owned event to feed a plugin in tests; lent to it as an [`EventView`].
#[derive(Clone, PartialEq, Eq)]
pub struct TestEvent {
    /// The id (default: unique per process).
    pub id: [u8; 16],
    /// The type name.
    pub event_type: String,
    /// The category as `Category as u8`.
    pub category: u8,
    /// The source (default `test`).
    pub source: String,
    /// The origin the host would have stamped (default `local`).
    pub origin: String,
    /// Unix nanoseconds (default: now).
    pub timestamp_unix_nanos: i64,
    /// Payload schema version (default 1).
    pub schema_version: u32,
    /// The payload JSON.
    pub payload_json: String,
    /// Metadata entries.
    pub metadata: Vec<(String, String)>,
}

impl fmt::Debug for TestEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEvent")
            .field("id", &format_uuid(&self.id))
            .field("event_type", &self.event_type)
            .field("timestamp_unix_nanos", &self.timestamp_unix_nanos)
            .finish_non_exhaustive()
    }
}

impl TestEvent {
    /// An event of the given type, category and raw JSON payload.
    pub fn new(event_type: &str, category: Category, payload_json: &str) -> Self {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&0x7e57_0000_u32.to_be_bytes());
        id[6] = 0x70; // version nibble 7, like the host's ids
        id[8] = 0x80; // RFC 9562 variant
        id[10..].copy_from_slice(&n.to_be_bytes()[2..]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        TestEvent {
            id,
            event_type: event_type.to_owned(),
            category: category as u8,
            source: "test".to_owned(),
            origin: "local".to_owned(),
            timestamp_unix_nanos: now,
            schema_version: 1,
            payload_json: payload_json.to_owned(),
            metadata: Vec::new(),
        }
    }

    /// An event carrying a typed payload.
    ///
    /// # Panics
    /// If the payload does not serialize to JSON (a bug in the test).
    pub fn typed<T: TypedEvent>(payload: &T) -> Self {
        let json = serde_json::to_string(payload)
            .unwrap_or_else(|e| panic!("test payload '{}' does not serialize: {e}", T::EVENT_TYPE));
        let mut ev = TestEvent::new(T::EVENT_TYPE, T::CATEGORY, &json);
        ev.schema_version = T::SCHEMA_VERSION;
        ev
    }

    /// Sets the id.
    pub fn with_id(mut self, id: [u8; 16]) -> Self {
        self.id = id;
        self
    }

    /// Sets the source.
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = source.to_owned();
        self
    }

    /// Sets the origin the host would have stamped (`host`, `input:stdin:3`, `plugin:x`, ...).
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = origin.to_owned();
        self
    }

    /// Sets the timestamp (Unix nanoseconds).
    pub fn at_unix_nanos(mut self, nanos: i64) -> Self {
        self.timestamp_unix_nanos = nanos;
        self
    }

    /// Sets the timestamp (Unix seconds).
    pub fn at_unix_secs(self, secs: i64) -> Self {
        self.at_unix_nanos(secs.saturating_mul(1_000_000_000))
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The id as a hyphenated string.
    pub fn id_string(&self) -> String {
        format_uuid(&self.id)
    }

    /// Lends the event as an [`EventView`] to `f`.
    pub fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R {
        let metadata: Vec<KeyValue<'_>> = self
            .metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let view = EventView {
            id: self.id,
            event_type: self.event_type.as_str().into(),
            category: self.category,
            source: self.source.as_str().into(),
            origin: self.origin.as_str().into(),
            timestamp_unix_nanos: self.timestamp_unix_nanos,
            schema_version: self.schema_version,
            payload_json: self.payload_json.as_bytes().into(),
            metadata: RSlice::from_slice(&metadata),
        };
        f(&view)
    }
}
