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
//!
//! # Trace context
//!
//! A plugin sees the event's W3C `traceparent` and `tracestate` among its metadata. What it
//! publishes while handling the event continues that trace: the host stamps it with the cause
//! of the delivery running on the plugin's thread ([`Event::with_current_cause`]), which gives
//! it the cause's trace id, flags and tracestate and a span id of its own, unless the plugin
//! set a valid traceparent of its own (one copied from the event it handles counts as none).
//! An invalid traceparent from a plugin is not carried. With the `otel` feature, deliveries
//! made through [`with_delivery_view`] run in a span of their own, and what the plugin publishes
//! meanwhile takes that span as its parent (see the `otel` module).

use std::borrow::Cow;
use std::sync::Arc;

use std::time::Duration;

use abi_stable::std_types::{RResult, RSlice, RStr};
use plugbus::contract::audit::MAX_EVENT_BYTES;
use plugbus::{Bus, Category, Event, EventId, EventType, HandlerError, Origin, Payload};
use plugbus_plugin_api::{
    AbiHost, EventView, KeyValue, LogRecord, OwnedEvent, PluginError, PublishRefusal, RefusalKind,
};

use crate::log_forward;
use crate::manager::Counters;
use crate::outbound::{self, Outbound};

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
        origin: event.origin().as_str().into(),
        timestamp_unix_nanos: event.timestamp_unix_nanos(),
        schema_version: event.schema_version(),
        payload_json: RSlice::from_slice(payload),
        metadata: RSlice::from_slice(&metadata),
    };
    f(&view)
}

/// [`with_view`] for a delivery: with the `otel` feature, `f` (the plugin's `handle`) runs in
/// the delivery's span (`otel::delivery_span`), parented on the event's traceparent;
/// without it, this is `with_view`. Filters and other looks at an event use `with_view`.
pub fn with_delivery_view<R>(
    plugin: &str,
    event: &Event,
    payload: &[u8],
    f: impl FnOnce(&EventView<'_>) -> R,
) -> R {
    #[cfg(feature = "otel")]
    let span = crate::otel::delivery_span(plugin, event);
    #[cfg(feature = "otel")]
    let _entered = span.enter();
    #[cfg(not(feature = "otel"))]
    let _ = plugin;
    with_view(event, payload, f)
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
/// name, and the event is stamped with the plugin's [`Origin`]. An event larger than
/// [`MAX_EVENT_BYTES`] is refused here, at the door, so its audit record always fits the log's
/// line limit. Causation, correlation and the trace context are set by the bus from the
/// context the plugin's thread runs in, unless the plugin set them (see the module docs on
/// [trace context](self#trace-context)).
///
/// # Errors
/// A message saying what is wrong with the event.
pub fn owned_to_event(plugin: &str, owned: &OwnedEvent) -> Result<Event, String> {
    let name = owned.event_type.as_str();
    // The same measure as plugin-api's FakeHost, so a plugin's unit test sees this refusal.
    let size = owned.size_bytes();
    if size > MAX_EVENT_BYTES {
        return Err(format!(
            "'{name}' is {size} bytes (payload and metadata), more than the limit of \
             {MAX_EVENT_BYTES} bytes an event may have"
        ));
    }
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
        .origin(Origin::plugin(plugin))
        .payload(payload)
        .schema_version(owned.schema_version);
    for pair in owned.metadata.iter() {
        builder = builder.metadata(pair.0.as_str(), pair.1.as_str());
    }
    // Published while handling an event: its id sorts after its cause's, whichever thread
    // made either.
    if let Some(cause) = plugbus::context::current() {
        builder = builder.id(EventId::new_after(cause.event_id));
    }
    #[cfg(feature = "otel")]
    if let Some(span) = crate::otel::current_trace() {
        if !own_traceparent(owned) {
            builder = builder.trace_context(span);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// True if the plugin gave the event a valid traceparent of its own: not one copied from the
/// event being handled.
#[cfg(feature = "otel")]
fn own_traceparent(owned: &OwnedEvent) -> bool {
    use plugbus::trace_context::TRACEPARENT;
    let given = owned
        .metadata
        .iter()
        .find(|pair| pair.0.as_str() == TRACEPARENT)
        .and_then(|pair| plugbus::TraceContext::parse(pair.1.as_str()).ok());
    let cause = plugbus::context::current_trace();
    match (given, cause) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(g), Some(c)) => g.trace_id != c.trace_id || g.span_id != c.span_id,
    }
}

/// Why an event of type `name` from `source` may not come from a plugin, if it may not: a
/// type or a source reserved for the host (see [`plugbus::contract::reserved`]). Checked on
/// the names as given, before anything else, so a forged `plugin.loaded` is forbidden
/// whatever category it claims.
pub fn forbidden_for_plugins(name: &str, source: &str) -> Option<String> {
    plugbus::contract::reserved::host_only(name, source)
}

/// The host handle given to one plugin instance: publishes on the bus through the
/// instance's outbound queue and logs to the host's `tracing` under the plugin's name.
#[derive(Debug)]
pub struct PluginHost {
    name: Arc<str>,
    outbound: Arc<Outbound>,
    /// How long a publish may wait for room: the plugin's handler timeout.
    wait: Duration,
}

impl PluginHost {
    pub(crate) fn new(bus: &Bus, name: Arc<str>, counters: &Counters, wait: Duration) -> Self {
        let outbound = Outbound::start(bus, Arc::clone(&name), Arc::clone(&counters.publish));
        *counters.outbound.lock() = Some(Arc::clone(&outbound));
        Self {
            name,
            outbound,
            wait,
        }
    }

    fn refuse(&self, kind: RefusalKind, message: String) -> RResult<(), PublishRefusal> {
        tracing::debug!(plugin = &*self.name, refusal = %kind, %message, "plugin publish refused");
        RResult::RErr(PublishRefusal::new(kind, message))
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.outbound.close();
    }
}

impl AbiHost for PluginHost {
    /// Checks the event, takes the cause of the event being handled on this thread, and queues
    /// it for the bus (see the `outbound` module): blocks only while the plugin's queue is full,
    /// for at most the plugin's handler timeout.
    fn publish(&self, event: OwnedEvent) -> RResult<(), PublishRefusal> {
        let counters = &self.outbound.counters;
        if let Some(reason) = forbidden_for_plugins(&event.event_type, &event.source) {
            counters.refused(RefusalKind::Forbidden);
            return self.refuse(RefusalKind::Forbidden, reason);
        }
        let event = match owned_to_event(&self.name, &event) {
            Ok(event) => event,
            Err(reason) => {
                counters.refused(RefusalKind::Invalid);
                return self.refuse(RefusalKind::Invalid, reason);
            }
        };
        let event_type = event.event_type();
        match self.outbound.push(event.with_current_cause(), self.wait) {
            Ok(()) => RResult::ROk(()),
            Err(RefusalKind::Full) => self.refuse(
                RefusalKind::Full,
                format!(
                    "'{}': {} of this plugin's events still on their way to the bus after {:?}",
                    event_type.name(),
                    outbound::CAPACITY,
                    self.wait
                ),
            ),
            Err(kind) => self.refuse(
                kind,
                format!(
                    "'{}': the plugin is stopping or the bus is shutting down",
                    event_type.name()
                ),
            ),
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

    fn log_record(&self, record: &LogRecord<'_>) {
        log_forward::forward_record(&self.name, record);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RString, RVec, Tuple2};
    use plugbus::context;
    use plugbus::payload::UserLogin;
    use std::sync::atomic::Ordering;

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
    fn an_event_published_while_handling_sorts_after_its_cause() {
        // A cause made on another thread whose counter ran ahead within the millisecond.
        let mut bytes = plugbus::EventId::new().to_bytes();
        bytes[6] |= 0x0f;
        bytes[7] = 0xff;
        let cause = plugbus::EventId::from_bytes(bytes);
        let event = context::enter(Some(context::Causation::new(cause)), || {
            owned_to_event("p", &owned("fixture.thing", 3, "{}")).unwrap()
        });
        assert!(event.id() > cause, "{} <= {cause}", event.id());
        let event = event.with_current_cause();
        assert_eq!(
            event.causation_id(),
            None,
            "outside the handler no cause is taken"
        );
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
        let counters = Counters::default();
        let host = PluginHost::new(&bus, "p".into(), &counters, Duration::from_secs(1));
        let cause = Event::builder(EventType::USER_LOGIN).build().unwrap();
        let r = context::enter(Some(cause.causation()), || {
            host.publish(owned("fixture.ping", 3, "{}"))
        });
        assert!(r.is_ok());
        let got = rx.recv().await.unwrap();
        assert_eq!(got.causation_id(), Some(cause.id()));
        assert_eq!(got.correlation_id(), Some(cause.id()));
        assert!(host.outbound.flush(Duration::from_secs(1)).await);
        let c = &counters.publish;
        assert_eq!(c.published.load(Ordering::Relaxed), 1);
        let r = host.publish(owned("fixture.ping", 3, "nope")).into_result();
        assert_eq!(r.unwrap_err().kind, RefusalKind::Invalid);
        assert_eq!(c.refused_invalid.load(Ordering::Relaxed), 1);
        for (t, cat) in [
            ("plugin.loaded", 3),
            ("system.startup", 1),
            ("config.evil", 3),
        ] {
            let r = host.publish(owned(t, cat, "{}")).into_result();
            assert_eq!(r.unwrap_err().kind, RefusalKind::Forbidden, "{t}");
        }
        let mut forged = owned("fixture.ping", 3, "{}");
        forged.source = "plugbus-host".into();
        let r = host.publish(forged).into_result().unwrap_err();
        assert!(r.kind == RefusalKind::Forbidden && r.message.contains("plugbus-host"));
        assert_eq!(c.refused_forbidden.load(Ordering::Relaxed), 4);
        // Too large for an audit record: refused at the door, sizes named.
        let big = format!("\"{}\"", "x".repeat(MAX_EVENT_BYTES));
        let r = host
            .publish(owned("fixture.ping", 3, &big))
            .into_result()
            .unwrap_err();
        assert_eq!(r.kind, RefusalKind::Invalid);
        assert!(
            r.message.contains(&MAX_EVENT_BYTES.to_string()),
            "{}",
            r.message
        );
        assert_eq!(c.refused_invalid.load(Ordering::Relaxed), 2);
        drop(host);
        assert_eq!(c.published.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn what_a_plugin_publishes_continues_the_trace_of_its_delivery() {
        let bus = Bus::builder().build().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        bus.subscribe_pattern("fixture.*")
            .handle(move |e: &Event| {
                let _ = tx.send(e.clone());
            })
            .unwrap();
        let counters = Counters::default();
        let host = PluginHost::new(&bus, "p".into(), &counters, Duration::from_secs(1));
        let cause = Event::builder(EventType::USER_LOGIN)
            .metadata(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .metadata("tracestate", "congo=t61rcWkgMzE")
            .build()
            .unwrap();
        let parent = cause.trace_context().unwrap().clone();
        let mut copied = owned("fixture.copied", 3, "{}");
        copied.metadata.push(Tuple2(
            "traceparent".into(),
            parent.traceparent().as_str().into(),
        ));
        let mut bad = owned("fixture.bad", 3, "{}");
        bad.metadata
            .push(Tuple2("traceparent".into(), "00-bad-01".into()));
        let own = plugbus::TraceContext::new_root();
        let mut explicit = owned("fixture.own", 3, "{}");
        explicit.metadata.push(Tuple2(
            "traceparent".into(),
            own.traceparent().as_str().into(),
        ));
        context::enter(Some(cause.causation()), || {
            with_delivery_view("p", &cause, b"{}", |view| {
                assert_eq!(
                    view.metadata_value("traceparent"),
                    Some(parent.traceparent().as_str())
                );
                assert_eq!(view.metadata_value("tracestate"), Some("congo=t61rcWkgMzE"));
                for e in [owned("fixture.plain", 3, "{}"), copied, bad, explicit] {
                    assert!(host.publish(e).is_ok());
                }
            })
        });
        let mut spans = std::collections::HashSet::from([parent.span_id]);
        for _ in 0..4 {
            let got = rx.recv().await.unwrap();
            let trace = got.trace_context().unwrap();
            assert_eq!(got.causation_id(), Some(cause.id()));
            if got.event_type().name() == "fixture.own" {
                assert_eq!(trace, &own);
                continue;
            }
            assert_eq!(trace.trace_id, parent.trace_id, "{got:?}");
            assert_eq!(trace.flags, parent.flags);
            assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));
            assert!(spans.insert(trace.span_id), "a span id of its own: {got:?}");
        }
        drop(host);
    }

    #[test]
    fn plugin_events_are_stamped_with_the_plugin_as_origin() {
        let event = owned_to_event("auth-enhancer", &owned("user.login_failed", 2, "{}")).unwrap();
        assert_eq!(event.origin().as_str(), "plugin:auth-enhancer");
        assert_eq!(event.source(), "auth-enhancer");
        with_view(&event, b"{}", |view| {
            assert_eq!(view.origin.as_str(), "plugin:auth-enhancer");
        });
    }
}
