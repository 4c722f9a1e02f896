//! The event envelope.
//!
//! An [`Event`] is an immutable, reference-counted envelope: cloning it for every subscriber costs
//! one atomic increment, and the payload is never copied. Build one with [`Event::new`] for a
//! typed payload or [`Event::builder`] for full control.

use crate::context::Causation;
use crate::error::{EventError, PayloadError};
use crate::event_type::EventType;
use crate::id::{new_id_and_time, EventId};
pub use crate::metadata::Metadata;
use crate::origin::Origin;
use crate::payload_value::Payload;
use crate::text::SmallText;
use crate::trace_context::{TraceCell, TraceContext, TraceState, TRACEPARENT, TRACESTATE};
use chrono::{DateTime, Utc};
use plugbus_contract::{keys, Category, TypedEvent};
use std::borrow::Cow;
use std::fmt;
use triomphe::{Arc, UniqueArc};

/// The source given to events built without one.
pub const DEFAULT_SOURCE: &str = "local";

/// An event: id, type, source, timestamp, payload and metadata.
///
/// ```
/// use plugbus::Event;
/// use plugbus::payload::UserLogin;
///
/// let event = Event::builder_typed(UserLogin { user_id: "alice".into(), ..Default::default() })
///     .source("auth-service")
///     .request_id("req-42")
///     .build()?;
/// assert_eq!(event.event_type().name(), "user.login");
/// assert_eq!(event.data::<UserLogin>()?.user_id, "alice");
/// assert_eq!(event.metadata().get("request_id"), Some("req-42"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Event(Arc<EventInner>);

#[derive(Clone)]
struct EventInner {
    id: EventId,
    event_type: EventType,
    timestamp_nanos: i64,
    schema_version: u32,
    correlation_id: Option<EventId>,
    causation_id: Option<EventId>,
    source: SmallText,
    origin: Origin,
    metadata: Metadata,
    payload: Payload,
    /// Behind a pointer: most events carry none, and every event's envelope is copied at least
    /// once. Shared by the copies of the envelope.
    trace: Option<std::sync::Arc<TraceCell>>,
}

impl Event {
    /// An event carrying a typed payload, with a fresh id, the current time and the default
    /// source.
    ///
    /// # Errors
    /// `T::EVENT_TYPE` is not a valid type name or clashes with an existing type's category.
    pub fn new<T: TypedEvent>(payload: T) -> Result<Event, EventError> {
        Event::builder_typed(payload).build()
    }

    /// A builder for an event of `event_type`.
    pub fn builder(event_type: EventType) -> EventBuilder {
        EventBuilder {
            inner: UniqueArc::new(EventInner {
                id: EventId::nil(),
                event_type,
                timestamp_nanos: UNSET_TIME,
                schema_version: 1,
                correlation_id: None,
                causation_id: None,
                source: SmallText::from_static(DEFAULT_SOURCE),
                origin: Origin::LOCAL,
                metadata: Metadata::new(),
                payload: Payload::empty(),
                trace: None,
            }),
            rare: None,
        }
    }

    /// A builder for an event carrying a typed payload.
    pub fn builder_typed<T: TypedEvent>(payload: T) -> EventBuilder {
        match EventType::of::<T>() {
            Ok(t) => Event::builder(t)
                .schema_version(T::SCHEMA_VERSION)
                .payload(Payload::typed(payload)),
            Err(e) => {
                let mut b = Event::builder(EventType::SYSTEM_STARTUP);
                b.fail(e.into());
                b
            }
        }
    }

    /// Where the event really came from, as stamped by whoever admitted it (see [`Origin`]);
    /// [`Origin::LOCAL`] unless [`with_origin`](Self::with_origin) or
    /// [`EventBuilder::origin`] set it.
    pub fn origin(&self) -> &Origin {
        &self.0.origin
    }

    /// The same event stamped with `origin`. For the code that admits events from outside the
    /// application (a plugin host, an input reader, a bridge): it replaces whatever origin the
    /// event had, and copies the envelope only if it is shared.
    ///
    /// ```
    /// use plugbus::{Event, Origin};
    /// let e = Event::from_json(br#"{"type":"user.login","source":"host"}"#)?
    ///     .with_origin(Origin::input("stdin", 1));
    /// assert_eq!(e.source(), "host"); // what it claims
    /// assert_eq!(e.origin().as_str(), "input:stdin:1"); // where it came from
    /// # Ok::<(), plugbus::DecodeError>(())
    /// ```
    pub fn with_origin(mut self, origin: Origin) -> Event {
        Arc::make_mut(&mut self.0).origin = origin;
        self
    }

    /// The id.
    pub fn id(&self) -> EventId {
        self.0.id
    }

    /// The type.
    pub fn event_type(&self) -> EventType {
        self.0.event_type
    }

    /// The type's category.
    pub fn category(&self) -> Category {
        self.0.event_type.category()
    }

    /// Who published it.
    pub fn source(&self) -> &str {
        self.0.source.as_str()
    }

    /// When it was created, UTC.
    pub fn timestamp(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0.timestamp_nanos)
    }

    /// When it was created, in nanoseconds since the Unix epoch (the form that crosses the ABI).
    pub fn timestamp_unix_nanos(&self) -> i64 {
        self.0.timestamp_nanos
    }

    /// The version of the payload's schema (1 unless the producer said otherwise).
    pub fn schema_version(&self) -> u32 {
        self.0.schema_version
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.0.payload
    }

    /// The payload as `T`, borrowed when it was published as a `T`, parsed otherwise.
    ///
    /// # Errors
    /// The event's type is not `T::EVENT_TYPE`, or the payload does not fit `T`.
    pub fn data<T: TypedEvent>(&self) -> Result<Cow<'_, T>, PayloadError> {
        if self.0.event_type.name() != T::EVENT_TYPE {
            return Err(PayloadError::TypeMismatch {
                event_type: self.0.event_type.name(),
                expected: T::EVENT_TYPE,
            });
        }
        self.0.payload.get::<T>()
    }

    /// The payload as JSON bytes, serialized at most once per event.
    ///
    /// # Errors
    /// A typed payload failed to serialize.
    pub fn data_json(&self) -> Result<&[u8], PayloadError> {
        self.0.payload.json()
    }

    /// Other metadata (request id and application keys). Correlation and causation ids and the
    /// trace context have their own accessors.
    pub fn metadata(&self) -> &Metadata {
        &self.0.metadata
    }

    /// The W3C trace context (`traceparent` and `tracestate`), if the event carries one; see
    /// [`trace_context`](crate::trace_context).
    ///
    /// ```
    /// use plugbus::{Event, EventType};
    /// let e = Event::builder(EventType::USER_LOGIN)
    ///     .metadata("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    ///     .metadata("tracestate", "congo=t61rcWkgMzE")
    ///     .build()?;
    /// let trace = e.trace_context().unwrap();
    /// assert_eq!(trace.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));
    /// assert_eq!(e.metadata().get("traceparent"), None); // kept parsed, not as text
    /// # Ok::<(), plugbus::EventError>(())
    /// ```
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.0.trace.as_deref().map(|cell| &cell.context)
    }

    /// The correlation id: groups every event stemming from one origin.
    pub fn correlation_id(&self) -> Option<EventId> {
        self.0.correlation_id
    }

    /// The causation id: the event whose handling produced this one.
    pub fn causation_id(&self) -> Option<EventId> {
        self.0.causation_id
    }

    /// The request id, if set.
    pub fn request_id(&self) -> Option<&str> {
        self.0.metadata.get(keys::REQUEST_ID)
    }

    /// Every metadata entry as text, well-known ids and the trace context included (the form
    /// used on the wire).
    pub fn metadata_pairs(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> + '_ {
        let ids = [
            (keys::CORRELATION_ID, self.0.correlation_id),
            (keys::CAUSATION_ID, self.0.causation_id),
        ];
        let trace = self.trace_context();
        ids.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, Cow::Owned(v.to_string()))))
            .chain(trace.map(|t| (TRACEPARENT, Cow::Owned(t.traceparent()))))
            .chain(
                trace
                    .and_then(TraceContext::tracestate)
                    .map(|s| (TRACESTATE, Cow::Borrowed(s))),
            )
            .chain(self.0.metadata.iter().map(|(k, v)| (k, Cow::Borrowed(v))))
    }

    /// The causation context handlers of this event run in.
    #[inline]
    pub fn causation(&self) -> Causation {
        Causation {
            event_id: self.0.id,
            correlation_id: self.0.correlation_id.unwrap_or(self.0.id),
            trace: self.0.trace.as_ref().and_then(TraceCell::to_ref),
        }
    }

    /// True if [`caused_by`](Self::caused_by) would change the event.
    #[inline]
    pub(crate) fn takes_cause(&self, ctx: Causation) -> bool {
        self.0.causation_id.is_none() && ctx.event_id != self.0.id
    }

    /// Fills causation and correlation from `ctx` unless the event already has a causation id,
    /// and continues the cause's trace: an event without a trace context, or with a copy of the
    /// cause's traceparent, gets a child of the cause's (a fresh span id, the cause's flags and
    /// tracestate); one with a trace context of its own keeps it.
    pub(crate) fn caused_by(mut self, ctx: Causation) -> Event {
        if !self.takes_cause(ctx) {
            return self;
        }
        let inner = Arc::make_mut(&mut self.0);
        inner.causation_id = Some(ctx.event_id);
        if inner.correlation_id.is_none() {
            inner.correlation_id = Some(ctx.correlation_id);
        }
        if let Some(parent) = ctx.trace.and_then(|t| t.context()) {
            let copied = |own: &TraceCell| {
                own.context.trace_id == parent.trace_id && own.context.span_id == parent.span_id
            };
            match &inner.trace {
                Some(own) if !copied(own) => {}
                _ => inner.trace = Some(TraceCell::new(parent.child())),
            }
        }
        self
    }

    /// Takes the causation of the handler running on this thread now, as `publish` and `emit`
    /// do when they admit an event: its id becomes `causation_id`, its correlation id this
    /// event's, and its trace is continued (unless this event already has a causation id). For an event built here but
    /// published from another task or thread, where that context is gone.
    ///
    /// ```
    /// # fn f(event: plugbus::Event, queue: std::sync::mpsc::Sender<plugbus::Event>) {
    /// // Inside a handler: keep the cause before the event leaves this thread.
    /// let _ = queue.send(event.with_current_cause());
    /// # }
    /// ```
    pub fn with_current_cause(self) -> Event {
        match crate::context::current() {
            Some(ctx) => self.caused_by(ctx),
            None => self,
        }
    }

    /// True if both handles point at the same envelope.
    pub fn ptr_eq(&self, other: &Event) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Shows the envelope but never the payload (payloads carry secrets).
/// A copy of the handle (the event itself is shared), so that `&Event` can be published.
impl From<&Event> for Event {
    fn from(e: &Event) -> Event {
        e.clone()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.0.id)
            .field("type", &self.0.event_type.name())
            .field("source", &self.0.source.as_str())
            .field("origin", &self.0.origin)
            .field("timestamp", &self.timestamp())
            .field("correlation_id", &self.0.correlation_id)
            .field("causation_id", &self.0.causation_id)
            .field("trace", &self.0.trace)
            .field("payload", &self.0.payload)
            .finish()
    }
}

/// Marks a timestamp the builder was not given (the event gets its id's creation time).
const UNSET_TIME: i64 = i64::MIN;

/// Builds an [`Event`]; see [`Event::builder`].
///
/// The builder owns the event's one allocation from the start and fills it in place, so chaining
/// setters moves two pointers, not the envelope.
#[must_use = "call build() to get the event"]
pub struct EventBuilder {
    inner: UniqueArc<EventInner>,
    /// What most builders never need: an error to report, trace metadata to settle at build.
    rare: Option<Box<Rare>>,
}

#[derive(Debug, Default)]
struct Rare {
    error: Option<EventError>,
    /// The trace context given (as metadata or typed).
    trace: Option<TraceContext>,
    /// A `tracestate` given as metadata, for the trace context the event ends up with.
    state: Option<TraceState>,
    /// An invalid `traceparent` was given (and not carried): the trace restarts at build.
    restart_trace: bool,
}

impl fmt::Debug for EventBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBuilder")
            .field("type", &self.inner.event_type.name())
            .field("source", &self.inner.source.as_str())
            .field("error", &self.rare.as_ref().and_then(|r| r.error.as_ref()))
            .finish_non_exhaustive()
    }
}

impl EventBuilder {
    fn fields(&mut self) -> &mut EventInner {
        &mut self.inner
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn fail(&mut self, e: EventError) {
        let rare = self.rare();
        if rare.error.is_none() {
            rare.error = Some(e);
        }
    }

    /// Who publishes it. The default is [`DEFAULT_SOURCE`].
    pub fn source(mut self, source: &str) -> Self {
        self.fields().source = SmallText::new(source);
        self
    }

    /// Where the event comes from (see [`Origin`]). The default is [`Origin::LOCAL`].
    pub fn origin(mut self, origin: Origin) -> Self {
        self.fields().origin = origin;
        self
    }

    /// The payload. The default is none.
    pub fn payload(mut self, payload: Payload) -> Self {
        self.fields().payload = payload;
        self
    }

    /// A typed payload (does not change the event type).
    pub fn data<T: TypedEvent>(self, value: T) -> Self {
        self.payload(Payload::typed(value))
    }

    /// A payload given as JSON text; checked now, reported at [`build`](Self::build).
    pub fn json(mut self, json: &str) -> Self {
        match Payload::from_json(json.as_bytes()) {
            Ok(p) => self.fields().payload = p,
            Err(e) => self.fail(e.into()),
        }
        self
    }

    /// A given id instead of a fresh one (replays, bridges).
    pub fn id(mut self, id: EventId) -> Self {
        self.fields().id = id;
        self
    }

    /// A given time (nanoseconds since the Unix epoch) instead of now.
    pub fn timestamp_unix_nanos(mut self, nanos: i64) -> Self {
        self.fields().timestamp_nanos = nanos;
        self
    }

    /// The payload's schema version. The default is 1 (or `T::SCHEMA_VERSION` for typed payloads).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.fields().schema_version = version;
        self
    }

    /// Sets the correlation id explicitly.
    pub fn correlation_id(mut self, id: EventId) -> Self {
        self.fields().correlation_id = Some(id);
        self
    }

    /// Sets the causation id explicitly (automatic propagation then leaves it alone).
    pub fn causation_id(mut self, id: EventId) -> Self {
        self.fields().causation_id = Some(id);
        self
    }

    /// Sets the request id.
    pub fn request_id(self, id: &str) -> Self {
        self.metadata(keys::REQUEST_ID, id)
    }

    /// The W3C trace context (see [`trace_context`](crate::trace_context)); replaces one given
    /// before, as metadata or here. The default is none: the event continues the trace of the
    /// handler it is published from, if any.
    ///
    /// ```
    /// use plugbus::{Event, EventType, TraceContext};
    /// let root = TraceContext::new_root();
    /// let e = Event::builder(EventType::USER_LOGIN).trace_context(root.clone()).build()?;
    /// assert_eq!(e.trace_context(), Some(&root));
    /// # Ok::<(), plugbus::EventError>(())
    /// ```
    pub fn trace_context(mut self, trace: TraceContext) -> Self {
        let rare = self.rare();
        rare.state = None;
        rare.restart_trace = false;
        rare.trace = Some(trace);
        self
    }

    /// Adds a metadata entry. `correlation_id` and `causation_id` must be UUIDs (checked now,
    /// reported at [`build`](Self::build)). `traceparent` and `tracestate` become the event's
    /// [trace context](Event::trace_context); invalid ones are not carried and are no error
    /// (see [`trace_context`](crate::trace_context#bad-input)).
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        match key {
            keys::CORRELATION_ID | keys::CAUSATION_ID => match value.parse::<EventId>() {
                Ok(id) if key == keys::CORRELATION_ID => self.fields().correlation_id = Some(id),
                Ok(id) => self.fields().causation_id = Some(id),
                Err(e) => self.fail(EventError::InvalidMetadata {
                    key: key.to_owned(),
                    reason: format!("not a UUID: {e}"),
                }),
            },
            TRACEPARENT => self.traceparent(value),
            TRACESTATE => self.tracestate(value),
            _ => self.fields().metadata.insert(key, value),
        }
        self
    }

    #[cold]
    fn traceparent(&mut self, value: &str) {
        let rare = self.rare();
        match TraceContext::parse(value) {
            Ok(trace) => {
                let state = rare.trace.take().and_then(|t| t.state);
                rare.trace = Some(trace.with_state(state));
                rare.restart_trace = false;
            }
            Err(error) => {
                tracing::debug!(%error, "not carrying an invalid traceparent: the trace restarts");
                rare.trace = None;
                rare.restart_trace = true;
            }
        }
    }

    #[cold]
    fn tracestate(&mut self, value: &str) {
        match TraceState::parse(value) {
            Ok(state) => self.rare().state = Some(state),
            Err(error) => tracing::debug!(%error, "not carrying an invalid tracestate"),
        }
    }

    /// Settles the trace metadata given: a tracestate joins the trace context, and an invalid
    /// traceparent is replaced by a child of the current handler's trace or a new trace.
    #[cold]
    fn settle_trace(&mut self, rare: Rare) {
        let trace = match rare.trace {
            Some(mut trace) => {
                if let Some(state) = rare.state {
                    trace.state = Some(state).filter(|s| !s.is_empty());
                }
                Some(trace)
            }
            None if rare.restart_trace => {
                let current = crate::context::current().and_then(|c| c.trace);
                Some(
                    current
                        .and_then(|t| t.child())
                        .unwrap_or_else(TraceContext::new_root),
                )
            }
            None => None,
        };
        self.fields().trace = trace.map(TraceCell::new);
    }

    /// Builds the event.
    ///
    /// # Errors
    /// The type was invalid, a JSON payload did not parse, or a well-known metadata id was not a
    /// UUID.
    pub fn build(mut self) -> Result<Event, EventError> {
        if let Some(mut rare) = self.rare.take() {
            if let Some(e) = rare.error.take() {
                return Err(e);
            }
            self.settle_trace(*rare);
        }
        let inner = self.fields();
        let nil = inner.id == EventId::nil();
        match (nil, inner.timestamp_nanos == UNSET_TIME) {
            (true, unset) => {
                let (id, now) = new_id_and_time();
                inner.id = id;
                if unset {
                    inner.timestamp_nanos = now;
                }
            }
            (false, true) => inner.timestamp_nanos = crate::id::unix_nanos_now(),
            (false, false) => {}
        }
        Ok(Event(self.inner.shareable()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use plugbus_contract::payload::{UserLogin, UserLogout};

    #[test]
    fn typed_event_has_its_contract_type_and_borrowed_data() {
        let e = Event::new(UserLogin {
            user_id: "alice".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.event_type(), EventType::USER_LOGIN);
        assert_eq!(e.category(), Category::Business);
        assert_eq!(e.source(), DEFAULT_SOURCE);
        assert!(matches!(e.data::<UserLogin>().unwrap(), Cow::Borrowed(_)));
        assert!(e.data::<UserLogout>().is_err());
        assert_eq!(e.schema_version(), 1);
    }

    #[test]
    fn clones_share_the_envelope() {
        let e = Event::builder(EventType::SYSTEM_STARTUP).build().unwrap();
        let c = e.clone();
        assert!(e.ptr_eq(&c));
        assert_eq!(e.data_json().unwrap(), b"null");
    }

    #[test]
    fn well_known_metadata_is_validated() {
        let id = EventId::new();
        let e = Event::builder(EventType::USER_LOGOUT)
            .metadata("correlation_id", &id.to_string())
            .metadata("tenant", "acme")
            .metadata("tenant", "globex")
            .build()
            .unwrap();
        assert_eq!(e.correlation_id(), Some(id));
        assert_eq!(e.metadata().get("tenant"), Some("globex"));
        assert_eq!(e.metadata().len(), 1);
        let pairs: Vec<_> = e
            .metadata_pairs()
            .map(|(k, v)| (k.to_owned(), v.into_owned()))
            .collect();
        assert_eq!(pairs[0], ("correlation_id".to_owned(), id.to_string()));
        let err = Event::builder(EventType::USER_LOGOUT)
            .metadata("causation_id", "nope")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("causation_id"), "{err}");
    }

    #[test]
    fn caused_by_fills_only_missing_ids() {
        let parent = Event::builder(EventType::USER_LOGIN).build().unwrap();
        let child = Event::builder(EventType::SECURITY_ALERT)
            .build()
            .unwrap()
            .caused_by(parent.causation());
        assert_eq!(child.causation_id(), Some(parent.id()));
        assert_eq!(child.correlation_id(), Some(parent.id()));
        let explicit = EventId::new();
        let kept = Event::builder(EventType::SECURITY_ALERT)
            .causation_id(explicit)
            .build()
            .unwrap()
            .caused_by(parent.causation());
        assert_eq!(kept.causation_id(), Some(explicit));
    }
}
