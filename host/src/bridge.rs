//! The crossing between the bus and a plugin: core [`Event`] ⇄ ABI [`EventView`] /
//! [`OwnedEvent`], the host handle plugins call ([`PluginHost`]), and [`PluginError`] →
//! [`HandlerError`].
//!
//! Nothing here owns a thread or a plugin; the [manager](crate::manager) wires these pieces.
//!
//! # Payload bytes
//!
//! A plugin sees the payload as JSON. It comes from `event.payload().json_shared()`, which
//! serializes a typed payload at most once per event and hands every consumer the same
//! shared buffer, so ten plugins cost one serialization.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use abi_stable::std_types::{RResult, RSlice, RStr, RString};
use plugbus::{Bus, Category, Event, EventType, HandlerError, Payload, PublishErrorKind};
use plugbus_plugin_api::{AbiHost, EventView, KeyValue, OwnedEvent, PluginError};

use crate::log_forward;
use crate::manager::Counters;

/// Runs `f` with an [`EventView`] lending `event`'s fields and `payload` (the event's JSON).
///
/// The view borrows everything; metadata (correlation and causation ids included, as text)
/// is collected into a small vector for the duration of the call.
pub fn with_view<R>(event: &Event, payload: &[u8], f: impl FnOnce(&EventView<'_>) -> R) -> R {
    let pairs: Vec<(&str, Cow<'_, str>)> = event.metadata_pairs().collect();
    let metadata: Vec<KeyValue<'_>> = pairs
        .iter()
        .map(|(key, value)| KeyValue::new(key, value))
        .collect();
    let view = EventView {
        id: event.id().to_bytes(),
        event_type: event.event_type().name().into(),
        category: event.category() as u8,
        source: event.source().into(),
        timestamp_unix_nanos: event.timestamp_unix_nanos(),
        schema_version: event.schema_version(),
        payload_json: RSlice::from_slice(payload),
        metadata: RSlice::from_slice(&metadata),
    };
    f(&view)
}

/// Maps a plugin's error to the bus's: only [`PluginError::Retryable`] may be retried, a
/// panic is reported as one (the delivery's outcome is `Panicked`), and
/// [`PluginError::InvalidEvent`] is a bad event (a poison message: dead-lettered, never
/// retried, never counted towards the plugin's circuit breaker); the message keeps the kind
/// (`panicked: <panic message>`).
pub fn handler_error(error: &PluginError) -> HandlerError {
    if error.is_panic() {
        HandlerError::panicked(error)
    } else if matches!(error, PluginError::InvalidEvent(_)) {
        HandlerError::bad_event(error)
    } else if error.is_retryable() {
        HandlerError::retryable(error)
    } else {
        HandlerError::permanent(error)
    }
}

/// Builds the core event for an event a plugin publishes.
///
/// The type is interned with the declared category (a clash with an existing type's category
/// is an error), the payload must be one JSON value, an empty source becomes the plugin's
/// name. Causation and correlation are set by the bus from the context the plugin's thread
/// runs in, unless the plugin set them.
///
/// # Errors
/// A message saying what is wrong with the event.
pub fn owned_to_event(plugin: &str, owned: &OwnedEvent) -> Result<Event, String> {
    let name = owned.event_type.as_str();
    let category = Category::from_u8(owned.category)
        .ok_or_else(|| format!("unknown category {} for '{name}'", owned.category))?;
    let event_type = EventType::new(name, category).map_err(|e| e.to_string())?;
    let payload = Payload::from_json(owned.payload_json.as_str().as_bytes())
        .map_err(|e| format!("payload of '{name}': {e}"))?;
    let source = match owned.source.as_str() {
        "" => plugin,
        source => source,
    };
    let mut builder = Event::builder(event_type)
        .source(source)
        .payload(payload)
        .schema_version(owned.schema_version);
    for pair in owned.metadata.iter() {
        builder = builder.metadata(pair.0.as_str(), pair.1.as_str());
    }
    builder.build().map_err(|e| e.to_string())
}

/// The host handle given to one plugin instance: publishes on the bus and logs to the
/// host's `tracing` under the plugin's name.
#[derive(Debug)]
pub struct PluginHost {
    bus: Bus,
    name: Arc<str>,
    counters: Arc<Counters>,
}

impl PluginHost {
    pub(crate) fn new(bus: Bus, name: Arc<str>, counters: Arc<Counters>) -> Self {
        Self {
            bus,
            name,
            counters,
        }
    }
}

impl AbiHost for PluginHost {
    /// Never blocks the plugin's thread: the event goes through `Bus::try_emit`; a full
    /// mailbox or a bus shutting down comes back as an error text.
    fn publish(&self, event: OwnedEvent) -> RResult<(), RString> {
        let result = owned_to_event(&self.name, &event).and_then(|event| {
            self.bus.try_emit(event).map_err(|err| match err.kind {
                PublishErrorKind::Full(subs) => format!(
                    "mailbox full for {} subscription(s); event not enqueued there",
                    subs.len()
                ),
                _ => err.to_string(),
            })
        });
        match result {
            Ok(()) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                RResult::ROk(())
            }
            Err(reason) => {
                self.counters
                    .publish_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin = &*self.name, %reason, "plugin publish refused");
                RResult::RErr(reason.into())
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
        log_forward::forward(
            &self.name,
            level,
            target.as_str(),
            message.as_str(),
            fields.as_slice(),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RVec, Tuple2};
    use plugbus::context;
    use plugbus::payload::UserLogin;

    #[test]
    fn view_lends_every_field() {
        let event = Event::builder_typed(UserLogin {
            user_id: "alice".into(),
            ..Default::default()
        })
        .source("web")
        .request_id("r-1")
        .causation_id(plugbus::EventId::new())
        .build()
        .unwrap();
        let payload = event.payload().json_shared().unwrap();
        with_view(&event, &payload, |view| {
            assert_eq!(view.id, event.id().to_bytes());
            assert_eq!(view.event_type.as_str(), "user.login");
            assert_eq!(view.category, Category::Business as u8);
            assert_eq!(view.source.as_str(), "web");
            assert_eq!(view.timestamp_unix_nanos, event.timestamp_unix_nanos());
            assert_eq!(view.metadata_value("request_id"), Some("r-1"));
            assert_eq!(
                view.metadata_value("causation_id"),
                Some(event.causation_id().unwrap().to_string().as_str())
            );
            let json: serde_json::Value =
                serde_json::from_slice(view.payload_json.as_slice()).unwrap();
            assert_eq!(json["user_id"], "alice");
        });
    }

    #[test]
    fn errors_keep_kind_and_retryability() {
        let e = handler_error(&PluginError::retryable("busy"));
        assert!(e.is_retryable());
        let e = handler_error(&PluginError::panicked("boom"));
        assert!(!e.is_retryable());
        assert!(e.is_panic());
        assert_eq!(e.message(), "panicked: boom");
        let e = handler_error(&PluginError::invalid_event("no user_id"));
        assert!(e.is_bad_event() && !e.is_retryable());
        assert_eq!(e.message(), "invalid event: no user_id");
    }

    fn owned(name: &str, category: u8, payload: &str) -> OwnedEvent {
        OwnedEvent {
            event_type: name.into(),
            category,
            source: RString::new(),
            schema_version: 2,
            payload_json: payload.into(),
            metadata: RVec::from(vec![Tuple2(RString::from("k"), RString::from("v"))]),
        }
    }

    #[test]
    fn owned_events_become_core_events() {
        let event = owned_to_event("p", &owned("fixture.thing", 3, r#"{"a":1}"#)).unwrap();
        assert_eq!(event.event_type().name(), "fixture.thing");
        assert_eq!(event.category(), Category::Custom);
        assert_eq!(event.source(), "p");
        assert_eq!(event.schema_version(), 2);
        assert_eq!(event.metadata().get("k"), Some("v"));
        assert_eq!(event.data_json().unwrap(), br#"{"a":1}"#);

        let err = owned_to_event("p", &owned("fixture.thing", 9, "{}")).unwrap_err();
        assert!(err.contains("unknown category 9"), "{err}");
        let err = owned_to_event("p", &owned("fixture.thing", 3, "{nope")).unwrap_err();
        assert!(err.contains("payload of 'fixture.thing'"), "{err}");
        let err = owned_to_event("p", &owned("user.login", 3, "{}")).unwrap_err();
        assert!(!err.is_empty());
    }

    #[tokio::test]
    async fn publish_goes_to_the_bus_with_causation() {
        let bus = Bus::builder().build().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        bus.subscribe_pattern("fixture.*")
            .handle(move |e: &Event| {
                let _ = tx.send(e.clone());
            })
            .unwrap();
        let counters = Arc::new(Counters::default());
        let host = PluginHost::new(bus.clone(), "p".into(), Arc::clone(&counters));
        let cause = Event::builder(EventType::USER_LOGIN).build().unwrap();
        let r = context::enter(Some(cause.causation()), || {
            host.publish(owned("fixture.ping", 3, "{}"))
        });
        assert!(r.is_ok());
        let got = rx.recv().await.unwrap();
        assert_eq!(got.causation_id(), Some(cause.id()));
        assert_eq!(got.correlation_id(), Some(cause.id()));
        assert_eq!(counters.published.load(Ordering::Relaxed), 1);
        let r = host.publish(owned("fixture.ping", 3, "nope"));
        assert!(r.into_result().is_err());
        assert_eq!(counters.publish_rejected.load(Ordering::Relaxed), 1);
    }
}
