//! Test doubles for plugin unit tests: [`FakeHost`], [`TestEvent`], [`LoadedPlugin`].
//!
//! **Needs the crate feature `testing`.** A plugin turns it on for its tests only, with a
//! second entry for this crate under `[dev-dependencies]`:
//!
//! ```toml
//! [dependencies]
//! plugbus-plugin-api = "0.1"
//!
//! [dev-dependencies]
//! plugbus-plugin-api = { version = "0.1", features = ["testing"] }
//! # or, against a checkout: { path = "../plugbus/plugin-api", features = ["testing"] }
//! ```
//!
//! The feature adds no dependency. With Cargo's feature resolver 2 (the default since edition
//! 2021) a dev-dependency's features reach only tests, examples and benches, so the plugin's
//! `cdylib` from `cargo build` is built without this module. (This page is in `cargo doc`
//! whatever the features; using the items needs the feature.)
//!
//! - [`FakeHost`] loads a plugin through exactly what a real host calls: the root module
//!   [`export_plugin!`](crate::export_plugin) built, its `info` and `new` functions, and the
//!   [`PluginBox`] trait object, so the macro's panic catching, configuration parsing and log
//!   forwarding run too. It records what the plugin publishes ([`FakeHost::published`]),
//!   what it refuses ([`FakeHost::refused`]) and every log line ([`FakeHost::logs`]).
//! - It **refuses what the real host refuses**, with the same [`RefusalKind`]: see
//!   [`FakeHost`] for the list. It can also refuse on demand, as a busy bus
//!   ([`RefusalKind::Full`]) or one shutting down ([`RefusalKind::Closed`]) would:
//!   [`FakeHost::refuse_publishes_as`], [`FakeHost::refuse_next`].
//! - [`TestEvent`] is an owned event to deliver, typed ([`TestEvent::typed`]) or raw JSON.
//! - [`LoadedPlugin`] is the loaded instance: [`start`](LoadedPlugin::start),
//!   [`deliver`](LoadedPlugin::deliver) (to every subscription that matches, as the host
//!   routes), [`handle`](LoadedPlugin::handle) (one handler), [`stop`](LoadedPlugin::stop).
//!
//! # Example
//!
//! A plugin that publishes `account.locked` on a user's second failed login, and its test:
//!
//! ```rust
//! use plugbus_plugin_api::contract::{payload::UserLoginFailed, Category};
//! use plugbus_plugin_api::testing::{FakeHost, TestEvent};
//! use plugbus_plugin_api::{
//!     export_plugin, Event, EventDraft, HostHandle, Plugin, PluginError, RefusalKind,
//!     Subscription,
//! };
//!
//! struct Lockout {
//!     host: HostHandle,
//!     failures: u32,
//! }
//!
//! impl Plugin for Lockout {
//!     const NAME: &'static str = "lockout";
//!     const VERSION: &'static str = "0.1.0";
//!
//!     fn new(host: HostHandle, _config: serde_json::Value) -> Result<Self, PluginError> {
//!         Ok(Lockout { host, failures: 0 })
//!     }
//!
//!     fn subscriptions(&self) -> Vec<Subscription> {
//!         vec![Subscription::to_types(["user.login_failed"])]
//!     }
//!
//!     fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
//!         let failed: UserLoginFailed = event.data()?;
//!         self.failures += 1;
//!         if self.failures == 2 {
//!             let payload = serde_json::json!({ "user_id": failed.user_id });
//!             let locked = EventDraft::new("account.locked", Category::Business)
//!                 .json(payload.to_string());
//!             self.host.publish_with(locked)?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Lockout);
//!
//! # fn main() -> Result<(), PluginError> {
//! let host = FakeHost::new();
//! let mut plugin = host.load::<Lockout>(serde_json::json!({}))?;
//! plugin.start()?;
//! let failed = TestEvent::typed(&UserLoginFailed {
//!     user_id: "bob".into(),
//!     ..Default::default()
//! });
//! for _ in 0..2 {
//!     for (_handler, result) in plugin.deliver(&failed) {
//!         result?;
//!     }
//! }
//! let published = host.published();
//! assert_eq!(published.len(), 1);
//! assert_eq!(published[0].event_type, "account.locked");
//! assert_eq!(published[0].caused_by, Some(failed.id)); // the host's causation_id
//!
//! plugin.stop()?;
//!
//! // A bus shutting down refuses the publish, and the plugin's `?` fails the delivery
//! // (permanently: a refused publish never makes the host deliver the event again).
//! let mut again = host.load::<Lockout>(serde_json::json!({}))?;
//! again.start()?;
//! host.refuse_publishes_as(Some((RefusalKind::Closed, "the bus is shutting down")));
//! again.handle(0, &failed)?;
//! let error = again.handle(0, &failed).unwrap_err();
//! assert!(!error.is_retryable());
//! assert_eq!(host.refused()[0].kind, RefusalKind::Closed);
//! # Ok(()) }
//! ```

use crate::{
    abi::PluginInfo,
    error::PluginError,
    export::ExportedPlugin,
    facade::{host_box, AbiHost, OwnedEvent},
    plugin::PluginBox,
    refusal::{PublishRefusal, RefusalKind},
    schema::ConfigSchema,
    subscription::AbiSubscription,
    view::{format_uuid, EventView, KeyValue},
};
use abi_stable::std_types::{RResult, RSlice, RStr};
use plugbus_contract::audit::MAX_EVENT_BYTES;
use plugbus_contract::{keys, reserved, validate_type_name, Category, TypedEvent, BUILTIN_TYPES};
use std::collections::HashMap;
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
    /// The module path of the call site (empty when the plugin used `HostHandle::log`).
    pub module_path: String,
    /// The message.
    pub message: String,
    /// The other fields, as text (numbers and booleans in their usual form).
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

/// An event the fake host refused, with the refusal the plugin got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    /// The event as the plugin published it.
    pub event: PublishedEvent,
    /// Why: the kind the plugin saw in its [`PublishError`](crate::PublishError).
    pub kind: RefusalKind,
    /// The explanation, as the host words it.
    pub message: String,
}

/// A refusal a test asked for, for `remaining` more publishes (`None`: until told otherwise).
#[derive(Clone)]
struct OnDemand {
    refusal: PublishRefusal,
    remaining: Option<usize>,
}

#[derive(Default)]
struct Shared {
    published: Mutex<Vec<PublishedEvent>>,
    refused: Mutex<Vec<RefusedEvent>>,
    logs: Mutex<Vec<LogRecord>>,
    handling: Mutex<Option<[u8; 16]>>,
    on_demand: Mutex<Option<OnDemand>>,
    /// Types met so far (published or delivered) beyond the built-in ones, with their
    /// categories: the host's type table is process-wide and never forgets a type, so a type
    /// published again with another category is refused.
    types: Mutex<HashMap<String, Category>>,
}

impl Shared {
    /// The category a type has in this host's table, if it is in it.
    fn category_of(&self, name: &str) -> Option<Category> {
        BUILTIN_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
            .or_else(|| lock(&self.types).get(name).copied())
    }

    /// Enters a type in the table, as the host interns the type of every event it takes.
    fn meet(&self, name: &str, category: Category) {
        if self.category_of(name).is_none() && validate_type_name(name).is_ok() {
            lock(&self.types).insert(name.to_owned(), category);
        }
    }

    /// The refusal asked for, if any, counting it down.
    fn take_on_demand(&self) -> Option<PublishRefusal> {
        let mut slot = lock(&self.on_demand);
        let on = slot.as_mut()?;
        let refusal = on.refusal.clone();
        match &mut on.remaining {
            Some(0) => {
                *slot = None;
                return None;
            }
            Some(1) => *slot = None,
            Some(n) => *n -= 1,
            None => {}
        }
        Some(refusal)
    }

    /// The host's checks, in the host's order (`PluginHost::publish` in the host's `bridge`
    /// module): forbidden names first, then what makes an event invalid.
    fn check_like_the_host(&self, event: &OwnedEvent) -> Result<(), PublishRefusal> {
        let name = event.event_type.as_str();
        let forbidden = |why: String| Err(PublishRefusal::new(RefusalKind::Forbidden, why));
        let invalid = |why: String| Err(PublishRefusal::new(RefusalKind::Invalid, why));
        if let Some(why) = reserved::host_only(name, event.source.as_str()) {
            return forbidden(why);
        }
        let size = event.size_bytes();
        if size > MAX_EVENT_BYTES {
            return invalid(format!(
                "'{name}' is {size} bytes (payload and metadata), more than the limit of \
                 {MAX_EVENT_BYTES} bytes an event may have"
            ));
        }
        let Some(category) = Category::from_u8(event.category) else {
            return invalid(format!("unknown category {} for '{name}'", event.category));
        };
        match self.category_of(name) {
            Some(existing) if existing != category => {
                return invalid(format!(
                    "event type '{name}' is already registered with category {existing}, \
                     not {category}"
                ));
            }
            Some(_) => {}
            None => {
                if let Err(e) = validate_type_name(name) {
                    return invalid(e.to_string());
                }
                self.meet(name, category);
            }
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(event.payload_json.as_str()) {
            return invalid(format!(
                "payload of '{name}': payload is not valid JSON: {e}"
            ));
        }
        for pair in event.metadata.iter() {
            let (key, value) = (pair.0.as_str(), pair.1.as_str());
            if (key == keys::CORRELATION_ID || key == keys::CAUSATION_ID) && !is_uuid(value) {
                return invalid(format!(
                    "metadata '{key}' is invalid: not a UUID: '{value}'"
                ));
            }
        }
        Ok(())
    }
}

/// True for the forms of a UUID the host accepts in `correlation_id` and `causation_id`:
/// 32 hex digits, the hyphenated form, and that form in braces or after `urn:uuid:`.
fn is_uuid(text: &str) -> bool {
    let hyphenated = |t: &str| {
        t.len() == 36
            && t.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    if let Some(inner) = text.strip_prefix("urn:uuid:") {
        return hyphenated(inner);
    }
    if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        return hyphenated(inner);
    }
    (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())) || hyphenated(text)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn recorded(event: OwnedEvent, caused_by: Option<[u8; 16]>) -> PublishedEvent {
    PublishedEvent {
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
    }
}

struct HostImpl(Arc<Shared>);

impl AbiHost for HostImpl {
    fn publish(&self, event: OwnedEvent) -> RResult<(), PublishRefusal> {
        let shared = &self.0;
        // The host's order: its checks first, then its queue (full, closed).
        let refusal = shared
            .check_like_the_host(&event)
            .err()
            .or_else(|| shared.take_on_demand());
        let caused_by = *lock(&shared.handling);
        match refusal {
            None => {
                lock(&shared.published).push(recorded(event, caused_by));
                RResult::ROk(())
            }
            Some(refusal) => {
                lock(&shared.refused).push(RefusedEvent {
                    event: recorded(event, caused_by),
                    kind: refusal.kind,
                    message: refusal.message.as_str().to_owned(),
                });
                RResult::RErr(refusal)
            }
        }
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
            module_path: String::new(),
            message: message.as_str().to_owned(),
            fields: fields
                .iter()
                .map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().to_owned()))
                .collect(),
        });
    }

    fn log_record(&self, record: &crate::facade::LogRecord<'_>) {
        lock(&self.0.logs).push(LogRecord {
            level: record.level,
            target: record.target.as_str().to_owned(),
            module_path: record.module_path.as_str().to_owned(),
            message: record.message.as_str().to_owned(),
            fields: record
                .fields
                .iter()
                .map(|f| (f.key.as_str().to_owned(), f.value.to_string()))
                .collect(),
        });
    }
}

/// A host that records what plugins publish and log, and refuses what the real host refuses.
/// Cheap to clone (clones share everything).
///
/// # What it refuses
///
/// The real host's checks (`PluginHost::publish` in `plugbus-host`), in its order, with its
/// [`RefusalKind`]; the first that fails decides:
///
/// | the event | refusal |
/// |---|---|
/// | a type of the host's own, `plugin.*`, `system.*`, `config.*`, or a source of the host's own, `plugbus`, `plugbus-host` (see [`contract::reserved`](plugbus_contract::reserved)), whatever else is wrong with it | [`Forbidden`](RefusalKind::Forbidden) |
/// | larger than [`MAX_EVENT_BYTES`] ([`OwnedEvent::size_bytes`]: payload, source, type and metadata) | [`Invalid`](RefusalKind::Invalid) |
/// | a category byte that is no [`Category`] | [`Invalid`](RefusalKind::Invalid) |
/// | a type that has another category: a built-in one (`user.login` is business), or one this fake host has met (published or delivered) with another | [`Invalid`](RefusalKind::Invalid) |
/// | a type name outside the grammar of [`validate_type_name`] (`Account Locked`, `user..login`, empty, over 128 bytes) | [`Invalid`](RefusalKind::Invalid) |
/// | a payload that is not exactly one JSON value (empty, `{}{}`, text) | [`Invalid`](RefusalKind::Invalid) |
/// | a `correlation_id` or `causation_id` metadata entry that is not a UUID | [`Invalid`](RefusalKind::Invalid) |
///
/// Then, only for an event that passed, the refusals a test asked for
/// ([`refuse_publishes_as`](Self::refuse_publishes_as), [`refuse_next`](Self::refuse_next)):
/// the real host's queue refuses with [`Full`](RefusalKind::Full) when the bus stays busy for
/// the plugin's handler timeout, and with [`Closed`](RefusalKind::Closed) when the plugin is
/// being stopped or the bus shuts down. Every refusal is recorded ([`refused`](Self::refused));
/// nothing refused is in [`published`](Self::published).
#[derive(Clone, Default)]
pub struct FakeHost {
    shared: Arc<Shared>,
}

impl fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeHost")
            .field("published", &lock(&self.shared.published).len())
            .field("refused", &lock(&self.shared.refused).len())
            .field("logs", &lock(&self.shared.logs).len())
            .finish()
    }
}

impl FakeHost {
    /// A fake host with nothing recorded.
    pub fn new() -> Self {
        FakeHost::default()
    }

    /// Loads plugin `P` the way a host does: root module, `info`, its config schema (the
    /// table is checked against it, as the host does, before `new` sees it),
    /// `new(host, config)`, then `subscriptions()`.
    ///
    /// # Errors
    /// [`PluginError::Config`] naming every key that fails the schema, in the host's words;
    /// whatever `new` or `subscriptions` returned, panics included as
    /// [`PluginError::Panicked`].
    pub fn load<P: ExportedPlugin>(
        &self,
        config: serde_json::Value,
    ) -> Result<LoadedPlugin, PluginError> {
        let module = P::root_module();
        let info = (module.info())();
        let schema = match module.config_schema() {
            None => None,
            Some(read) => {
                let text = read().into_result()?;
                if text.trim().is_empty() {
                    None
                } else {
                    Some(
                        serde_json::from_str::<ConfigSchema>(text.as_str()).map_err(|e| {
                            PluginError::config(format_args!(
                                "the configuration schema of '{}' cannot be read: not a schema: {e}",
                                info.name
                            ))
                        })?,
                    )
                }
            }
        };
        if let Some(schema) = &schema {
            check_against(schema, info.name.as_str(), &config)?;
        }
        let config_json = config.to_string();
        let host = host_box(HostImpl(Arc::clone(&self.shared)));
        let plugin = (module.new())(host, config_json.as_str().into()).into_result()?;
        let subscriptions = plugin.subscriptions().into_result()?.into_vec();
        Ok(LoadedPlugin {
            info,
            plugin,
            subscriptions,
            schema,
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

    /// Every publish refused so far, with the refusal the plugin got: what the host's checks
    /// refused and what a test made it refuse.
    pub fn refused(&self) -> Vec<RefusedEvent> {
        lock(&self.shared.refused).clone()
    }

    /// Makes every publish that passes the host's checks fail with `reason` as a transient
    /// [`RefusalKind::Full`] refusal (`Some`), as the real host does when the bus stays busy
    /// for a whole handler timeout; or succeed again (`None`).
    pub fn refuse_publishes(&self, reason: Option<&str>) {
        self.refuse_publishes_as(reason.map(|r| (RefusalKind::Full, r)));
    }

    /// Makes every publish that passes the host's checks fail with a refusal of `kind`
    /// (`Some`): [`RefusalKind::Full`] for a busy bus, [`RefusalKind::Closed`] for a bus
    /// shutting down or a plugin being stopped; or succeed again (`None`). An event the host
    /// would refuse anyway keeps its own refusal, as on the real host, which checks an event
    /// before it queues it.
    pub fn refuse_publishes_as(&self, refusal: Option<(RefusalKind, &str)>) {
        *lock(&self.shared.on_demand) = refusal.map(|(kind, reason)| OnDemand {
            refusal: PublishRefusal::new(kind, reason),
            remaining: None,
        });
    }

    /// Makes the next `count` publishes that pass the host's checks fail with a refusal of
    /// `kind`, and those after them succeed: a bus that is busy for a while, then drains.
    ///
    /// ```
    /// use plugbus_plugin_api::testing::FakeHost;
    /// use plugbus_plugin_api::{contract::Category, EventDraft, RefusalKind};
    /// let fake = FakeHost::new();
    /// let host = fake.host_handle();
    /// fake.refuse_next(1, RefusalKind::Full, "the bus is busy");
    /// let draft = EventDraft::new("billing.invoice_paid", Category::Business);
    /// let first = host.publish_with(draft.clone()).unwrap_err();
    /// assert!(first.is_transient());
    /// host.publish_with(draft)?; // the same event, later: accepted
    /// assert_eq!((fake.refused().len(), fake.published().len()), (1, 1));
    /// # Ok::<(), plugbus_plugin_api::PublishError>(())
    /// ```
    pub fn refuse_next(&self, count: usize, kind: RefusalKind, reason: &str) {
        *lock(&self.shared.on_demand) = (count > 0).then(|| OnDemand {
            refusal: PublishRefusal::new(kind, reason),
            remaining: Some(count),
        });
    }
}

/// A plugin instance loaded by a [`FakeHost`].
pub struct LoadedPlugin {
    info: PluginInfo,
    plugin: PluginBox,
    subscriptions: Vec<AbiSubscription>,
    schema: Option<ConfigSchema>,
    shared: Arc<Shared>,
}

/// The host's check of a table against a schema, in the host's words.
fn check_against(
    schema: &ConfigSchema,
    name: &str,
    config: &serde_json::Value,
) -> Result<(), PluginError> {
    schema.check(config).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        PluginError::config(format_args!(
            "configuration of '{name}' does not match its schema: {}",
            problems.join("; ")
        ))
    })
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

    /// The configuration schema the plugin declares, if any.
    pub fn config_schema(&self) -> Option<&ConfigSchema> {
        self.schema.as_ref()
    }

    /// Gives the running instance a new configuration, as the host does when the config file
    /// changes: checked against the schema first, then `reconfigure`.
    /// [`Reconfigure::Reload`](crate::Reconfigure::Reload) means the host would build a new
    /// instance from it (do that with [`FakeHost::load`]).
    ///
    /// # Errors
    /// [`PluginError::Config`] for a table that fails the schema; the plugin's error.
    pub fn reconfigure(
        &mut self,
        config: serde_json::Value,
    ) -> Result<crate::Reconfigure, PluginError> {
        if let Some(schema) = &self.schema {
            check_against(schema, self.info.name.as_str(), &config)?;
        }
        let json = config.to_string();
        let applied = self
            .plugin
            .reconfigure(json.as_str().into())
            .into_result()?;
        Ok(if applied {
            crate::Reconfigure::Applied
        } else {
            crate::Reconfigure::Reload
        })
    }

    /// The subscription named `name`, if one is.
    pub fn subscription_named(&self, name: &str) -> Option<&AbiSubscription> {
        self.subscriptions.iter().find(|s| s.name.as_str() == name)
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
        if let Some(category) = Category::from_u8(event.category) {
            shared.meet(&event.event_type, category);
        }
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
