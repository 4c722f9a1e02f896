//! W3C Trace Context: the `traceparent` and `tracestate` an event carries in its metadata.
//!
//! An event that carries a [`TraceContext`] belongs to a distributed trace: its `traceparent`
//! (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, [W3C Trace Context] version 00)
//! names the trace and the span the event was published in, and its `tracestate` carries
//! vendors' own entries along. Both are well-known metadata keys ([`TRACEPARENT`],
//! [`TRACESTATE`]): the JSON envelope, the audit log and a plugin's view of the event show them
//! as text, and the event keeps them parsed ([`Event::trace_context`]).
//!
//! # Propagation
//!
//! An event published while a handler of a traced event runs continues that trace: same trace
//! id, flags and tracestate, and a fresh span id of its own. This rides on the causation context
//! (see [`context`](crate::context)) and so works wherever causation does: sync and async
//! handlers, re-entrant publishing at any depth, mailboxes, deferred handlers, and the events a
//! plugin publishes while it handles a delivery. An event that brings its own valid
//! `traceparent` keeps it, except that a copy of its cause's exact traceparent (a plugin that
//! passed the metadata it was given back) counts as none, so no two events share a span id.
//!
//! # What the bus does not do
//!
//! It does not start traces on its own: an event published with no `traceparent` and no traced
//! cause stays untraced, so an application that does not use tracing pays nothing for it
//! (causation and correlation ids still link every event). An application or an input edge
//! that wants every event traced starts one with [`TraceContext::new_root`] and
//! [`EventBuilder::trace_context`](crate::EventBuilder::trace_context).
//!
//! # Bad input
//!
//! Parsing is strict ([`TraceContext::parse`], [`TraceState::parse`], with typed errors), but
//! building an event never fails on trace metadata: an invalid `traceparent` is not carried
//! (W3C: restart the trace): the event continues the trace of the handler it is published from,
//! if that one has a trace, and otherwise starts a new one. An invalid `tracestate` is dropped
//! and the `traceparent` kept.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/
//! [`Event::trace_context`]: crate::Event::trace_context

use std::collections::HashMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, OnceLock, Weak};

use parking_lot::Mutex;

/// The metadata key of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key of the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// The most list members a `tracestate` may have (W3C).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not the length the version requires (55 characters for version 00).
    #[error("a version {version} traceparent has 55 characters, this one has {found}")]
    Length {
        /// The version field, as written.
        version: String,
        /// The length found.
        found: usize,
    },
    /// The version is `ff`, or not two lowercase hex digits.
    #[error("'{0}' is not a traceparent version (two lowercase hex digits, not 'ff')")]
    Version(String),
    /// A field is not made of lowercase hex digits.
    #[error("the {field} of a traceparent is {digits} lowercase hex digits, found '{found}'")]
    NotHex {
        /// `trace id`, `parent id` or `flags`.
        field: &'static str,
        /// How many digits it has.
        digits: usize,
        /// What was found instead.
        found: String,
    },
    /// A `-` is missing between fields.
    #[error("a traceparent separates its fields with '-' (after the {after})")]
    Separator {
        /// The field before the missing separator.
        after: &'static str,
    },
    /// The trace id or parent id is all zeros, which W3C reserves as invalid.
    #[error("the {0} of a traceparent must not be all zeros")]
    Zero(&'static str),
}

/// Why a `tracestate` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceStateError {
    /// More than [`MAX_TRACESTATE_MEMBERS`] list members.
    #[error("a tracestate has at most {MAX_TRACESTATE_MEMBERS} members, this one has {0}")]
    TooManyMembers(usize),
    /// A member is not `key=value` with a valid key and value.
    #[error("tracestate member '{member}' is invalid: {reason}")]
    Member {
        /// The member as written.
        member: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two members have the same key.
    #[error("tracestate key '{0}' appears twice")]
    DuplicateKey(String),
}

/// A trace id: 16 bytes, not all zero.
///
/// ```
/// use plugbus::trace_context::TraceId;
/// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse()?;
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(TraceId::from_bytes([0; 16]).is_none());
/// # Ok::<(), plugbus::trace_context::TraceParentError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// From 16 bytes; `None` for all zeros.
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        if u128::from_be_bytes(bytes) == 0 {
            None
        } else {
            Some(TraceId(bytes))
        }
    }

    /// The 16 bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A random trace id.
    pub fn random() -> TraceId {
        TraceId(fastrand::u128(1..).to_be_bytes())
    }
}

/// A span id (the `parent-id` of a traceparent): 8 bytes, not all zero.
///
/// ```
/// use plugbus::trace_context::SpanId;
/// let id: SpanId = "00f067aa0ba902b7".parse()?;
/// assert_eq!(id.to_bytes(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
/// # Ok::<(), plugbus::trace_context::TraceParentError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// From 8 bytes; `None` for all zeros.
    pub const fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        match NonZeroU64::new(u64::from_be_bytes(bytes)) {
            Some(n) => Some(SpanId(n)),
            None => None,
        }
    }

    /// The 8 bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.get().to_be_bytes()
    }

    /// A random span id.
    pub fn random() -> SpanId {
        SpanId(NonZeroU64::new(fastrand::u64(1..)).unwrap_or(NonZeroU64::MIN))
    }
}

/// The trace flags of a traceparent; bit 0 is "sampled". Unknown bits are carried as given.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The sampled flag: the caller may have recorded its part of the trace.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);

    /// Flags from their byte.
    pub const fn new(bits: u8) -> TraceFlags {
        TraceFlags(bits)
    }

    /// The byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if the sampled flag is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }
}

/// A validated `tracestate`: up to 32 `key=value` members, kept in order. Cloning it is one
/// reference count.
///
/// Parsing drops empty members and the optional white space around members, so the text is
/// normalized (`a=1,b=2`); it is never modified otherwise.
///
/// ```
/// use plugbus::trace_context::TraceState;
/// let state: TraceState = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE".parse()?;
/// assert_eq!(state.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
/// assert!("Rojo=1".parse::<TraceState>().is_err()); // keys are lowercase
/// # Ok::<(), plugbus::trace_context::TraceStateError>(())
/// ```
#[derive(Clone)]
pub struct TraceState(Arc<str>);

impl TraceState {
    /// Parses a `tracestate` header value.
    ///
    /// # Errors
    /// More than 32 members, a member that is not a valid `key=value`, or a key that appears
    /// twice.
    pub fn parse(text: &str) -> Result<TraceState, TraceStateError> {
        let mut members: Vec<(&str, &str)> = Vec::new();
        for raw in text.split(',') {
            let member = raw.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue;
            }
            let invalid = |reason| TraceStateError::Member {
                member: member.to_owned(),
                reason,
            };
            let (key, value) = member.split_once('=').ok_or(invalid("no '='"))?;
            check_key(key).map_err(invalid)?;
            check_value(value).map_err(invalid)?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(TraceStateError::DuplicateKey(key.to_owned()));
            }
            members.push((key, value));
            if members.len() > MAX_TRACESTATE_MEMBERS {
                let count = text.split(',').filter(|m| !m.trim().is_empty()).count();
                return Err(TraceStateError::TooManyMembers(count));
            }
        }
        let mut normalized = String::with_capacity(text.len());
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                normalized.push(',');
            }
            normalized.push_str(key);
            normalized.push('=');
            normalized.push_str(value);
        }
        Ok(TraceState(Arc::from(normalized)))
    }

    /// The normalized text (`key=value` members joined by `,`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when it has no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .split(',')
            .filter_map(|member| member.split_once('='))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl PartialEq for TraceState {
    fn eq(&self, other: &TraceState) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TraceState {}

impl std::hash::Hash for TraceState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl FromStr for TraceState {
    type Err = TraceStateError;
    fn from_str(s: &str) -> Result<TraceState, TraceStateError> {
        TraceState::parse(s)
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceState({:?})", self.as_str())
    }
}

/// `simple-key` or `tenant-id@system-id`.
fn check_key(key: &str) -> Result<(), &'static str> {
    fn rest_ok(s: &[u8]) -> bool {
        s.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
        })
    }
    let bytes = key.as_bytes();
    match key.split_once('@') {
        None => {
            let first_ok = bytes.first().is_some_and(u8::is_ascii_lowercase);
            if !first_ok || bytes.len() > 256 || !rest_ok(&bytes[1..]) {
                return Err("a key is a lowercase letter then up to 255 of a-z 0-9 _ - * /");
            }
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            let tenant_ok = t
                .first()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && t.len() <= 241
                && rest_ok(&t[1..]);
            let system_ok =
                s.first().is_some_and(u8::is_ascii_lowercase) && s.len() <= 14 && rest_ok(&s[1..]);
            if !tenant_ok || !system_ok {
                return Err("a multi-tenant key is tenant@system: up to 241 and 14 of a-z 0-9 _ - * /, the system starting with a letter");
            }
        }
    }
    Ok(())
}

/// 1 to 256 printable ASCII characters but `,` and `=`, the last not a space.
fn check_value(value: &str) -> Result<(), &'static str> {
    let bytes = value.as_bytes();
    let printable = |c: &u8| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=';
    if bytes.is_empty()
        || bytes.len() > 256
        || !bytes.iter().all(printable)
        || bytes.last() == Some(&b' ')
    {
        return Err(
            "a value is 1 to 256 printable ASCII characters but ',' and '=', not ending in a space",
        );
    }
    Ok(())
}

/// The trace context of an event: the W3C `traceparent` fields and the `tracestate`.
///
/// ```
/// use plugbus::trace_context::{TraceContext, TraceState};
/// let parent: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// assert!(parent.flags.is_sampled());
/// let parent = parent.with_state(Some("congo=t61rcWkgMzE".parse()?));
///
/// // What an event published while handling one carrying `parent` gets:
/// let child = parent.child();
/// assert_eq!(child.trace_id, parent.trace_id);
/// assert_ne!(child.span_id, parent.span_id);
/// assert_eq!(child.state, parent.state);
/// assert!(child.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
///
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse::<TraceContext>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace this event belongs to.
    pub trace_id: TraceId,
    /// The span it was published in (the traceparent's `parent-id`).
    pub span_id: SpanId,
    /// The trace flags.
    pub flags: TraceFlags,
    /// Vendors' entries, carried along unchanged; `None` when there are none.
    pub state: Option<TraceState>,
}

impl TraceContext {
    /// A context from its parts, without tracestate.
    pub const fn new(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> TraceContext {
        TraceContext {
            trace_id,
            span_id,
            flags,
            state: None,
        }
    }

    /// A new trace: random trace and span ids, sampled, no tracestate.
    ///
    /// ```
    /// let a = plugbus::TraceContext::new_root();
    /// let b = plugbus::TraceContext::new_root();
    /// assert_ne!(a.trace_id, b.trace_id);
    /// assert!(a.flags.is_sampled());
    /// ```
    pub fn new_root() -> TraceContext {
        TraceContext::new(TraceId::random(), SpanId::random(), TraceFlags::SAMPLED)
    }

    /// Parses a `traceparent` (no tracestate).
    ///
    /// Version 00 is exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, with neither id all
    /// zeros; a later version (01 to fe) is read by its version 00 fields, as W3C asks, and
    /// written back as version 00. White space around the value is ignored.
    ///
    /// # Errors
    /// What is wrong, by field.
    pub fn parse(traceparent: &str) -> Result<TraceContext, TraceParentError> {
        let s = traceparent
            .trim_matches(|c| c == ' ' || c == '\t')
            .as_bytes();
        let version = s.get(..2).unwrap_or(s);
        let version_text = || String::from_utf8_lossy(version).into_owned();
        if version.len() != 2 || !version.iter().all(is_lower_hex) || version == b"ff" {
            return Err(TraceParentError::Version(version_text()));
        }
        let long_enough = if version == b"00" {
            s.len() == 55
        } else {
            s.len() == 55 || (s.len() > 55 && s.get(55) == Some(&b'-'))
        };
        if !long_enough {
            return Err(TraceParentError::Length {
                version: version_text(),
                found: s.len(),
            });
        }
        for (at, after) in [(2, "version"), (35, "trace id"), (52, "parent id")] {
            if s.get(at) != Some(&b'-') {
                return Err(TraceParentError::Separator { after });
            }
        }
        let trace = hex_field::<16>(s, 3, "trace id")?;
        let span = hex_field::<8>(s, 36, "parent id")?;
        let [flags] = hex_field::<1>(s, 53, "flags")?;
        Ok(TraceContext {
            trace_id: TraceId::from_bytes(trace).ok_or(TraceParentError::Zero("trace id"))?,
            span_id: SpanId::from_bytes(span).ok_or(TraceParentError::Zero("parent id"))?,
            flags: TraceFlags(flags),
            state: None,
        })
    }

    /// Parses a `traceparent` and an optional `tracestate` as W3C asks: an invalid
    /// tracestate is dropped, the traceparent kept.
    ///
    /// # Errors
    /// The traceparent is invalid.
    pub fn from_headers(
        traceparent: &str,
        tracestate: Option<&str>,
    ) -> Result<TraceContext, TraceParentError> {
        let state = tracestate.and_then(|s| TraceState::parse(s).ok());
        Ok(TraceContext::parse(traceparent)?.with_state(state))
    }

    /// The same context with `state` as its tracestate (an empty one counts as none).
    pub fn with_state(mut self, state: Option<TraceState>) -> TraceContext {
        self.state = state.filter(|s| !s.is_empty());
        self
    }

    /// The context of an event published in this one's span: same trace id, flags and
    /// tracestate, a fresh random span id.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// The `traceparent` text, version 00.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id.0);
        out.push('-');
        push_hex(&mut out, &self.span_id.to_bytes());
        out.push('-');
        push_hex(&mut out, &[self.flags.0]);
        out
    }

    /// The `tracestate` text, if there is one.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_ref().map(TraceState::as_str)
    }
}

impl FromStr for TraceContext {
    type Err = TraceParentError;
    fn from_str(s: &str) -> Result<TraceContext, TraceParentError> {
        TraceContext::parse(s)
    }
}

/// The traceparent text.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TraceContext");
        d.field("traceparent", &self.traceparent());
        if let Some(state) = &self.state {
            d.field("tracestate", &state.as_str());
        }
        d.finish()
    }
}

/// The trace of the event being handled, as the causation context carries it
/// ([`Causation::trace`](crate::context::Causation::trace)): a key into a table of the trace
/// contexts of live events. It is four bytes and `Copy`, so the context set around every
/// handler stays as cheap to copy as it was without tracing; only traced events touch the
/// table (once when first handled, once per event published while they are).
///
/// It resolves as long as an event carrying that context is alive, which is always the case
/// while that event's handlers run; a `TraceRef` kept longer may resolve to nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceRef(NonZeroU32);

impl TraceRef {
    /// The context it refers to (tracestate included), while an event carrying it is alive.
    pub fn context(&self) -> Option<TraceContext> {
        cells::lookup(*self).map(|cell| cell.context.clone())
    }

    /// The context of an event published in this span ([`TraceContext::child`]), while an
    /// event carrying it is alive.
    pub fn child(&self) -> Option<TraceContext> {
        cells::lookup(*self).map(|cell| cell.context.child())
    }
}

impl fmt::Debug for TraceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceRef({})", self.0)
    }
}

/// An event's trace context as the event holds it: shared by the copies of its envelope, and
/// named in the table of live contexts (by a [`TraceRef`]) once the event is first handled.
#[derive(Debug)]
pub(crate) struct TraceCell {
    pub(crate) context: TraceContext,
    key: OnceLock<Option<TraceRef>>,
}

impl TraceCell {
    pub(crate) fn new(context: TraceContext) -> Arc<TraceCell> {
        Arc::new(TraceCell {
            context,
            key: OnceLock::new(),
        })
    }

    /// Its key in the table, registering it the first time.
    #[inline]
    pub(crate) fn to_ref(cell: &Arc<TraceCell>) -> Option<TraceRef> {
        *cell.key.get_or_init(|| cells::register(cell))
    }
}

/// The table of the trace contexts of live events, so that a `Copy` context can name one.
///
/// Sharded by key, so that threads handling traced events rarely meet on one lock. Entries are
/// weak: an event's context lives as long as the event. Dead entries are swept when a shard has
/// doubled since its last sweep, so the table stays about as large as the number of live traced
/// events that were handled.
mod cells {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const SHARDS: usize = 16;

    struct Shard {
        live: HashMap<NonZeroU32, Weak<TraceCell>>,
        sweep_at: usize,
    }

    static NEXT: AtomicU32 = AtomicU32::new(0);

    static TABLE: LazyLock<[Mutex<Shard>; SHARDS]> = LazyLock::new(|| {
        std::array::from_fn(|_| {
            Mutex::new(Shard {
                live: HashMap::new(),
                sweep_at: 64,
            })
        })
    });

    fn shard(key: NonZeroU32) -> &'static Mutex<Shard> {
        &TABLE[key.get() as usize % SHARDS]
    }

    pub(super) fn register(cell: &Arc<TraceCell>) -> Option<TraceRef> {
        // Keys wrap after 2^32 registrations; skip any still in use.
        for _ in 0..1024 {
            let Some(key) = NonZeroU32::new(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(1))
            else {
                continue;
            };
            let mut shard = shard(key).lock();
            if shard.live.len() >= shard.sweep_at {
                shard.live.retain(|_, weak| weak.strong_count() > 0);
                shard.sweep_at = (shard.live.len() * 2).max(64);
            }
            if shard.live.get(&key).is_some_and(|w| w.strong_count() > 0) {
                continue;
            }
            shard.live.insert(key, Arc::downgrade(cell));
            return Some(TraceRef(key));
        }
        None
    }

    pub(super) fn lookup(key: TraceRef) -> Option<Arc<TraceCell>> {
        shard(key.0).lock().live.get(&key.0)?.upgrade()
    }

    #[cfg(test)]
    pub(super) fn len() -> usize {
        TABLE.iter().map(|s| s.lock().live.len()).sum()
    }
}

fn is_lower_hex(c: &u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(c)
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c.wrapping_sub(b'a').wrapping_add(10),
    }
}

/// `N` bytes from `2 * N` lowercase hex digits of `s` at `at`.
fn hex_field<const N: usize>(
    s: &[u8],
    at: usize,
    field: &'static str,
) -> Result<[u8; N], TraceParentError> {
    let digits = s.get(at..at + 2 * N).unwrap_or_default();
    if digits.len() != 2 * N || !digits.iter().all(is_lower_hex) {
        return Err(TraceParentError::NotHex {
            field,
            digits: 2 * N,
            found: String::from_utf8_lossy(digits).into_owned(),
        });
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
    }
    Ok(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

macro_rules! hex_display {
    ($t:ty, $name:literal, $n:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = String::with_capacity(2 * $n);
                push_hex(&mut s, &self.to_bytes());
                f.write_str(&s)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({})"), self)
            }
        }

        impl FromStr for $t {
            type Err = TraceParentError;
            fn from_str(s: &str) -> Result<$t, TraceParentError> {
                let field = if $n == 16 { "trace id" } else { "parent id" };
                if s.len() != 2 * $n {
                    return Err(TraceParentError::NotHex {
                        field,
                        digits: 2 * $n,
                        found: s.to_owned(),
                    });
                }
                let bytes = hex_field::<$n>(s.as_bytes(), 0, field)?;
                <$t>::from_bytes(bytes).ok_or(TraceParentError::Zero(field))
            }
        }
    };
}

hex_display!(TraceId, "TraceId", 16);
hex_display!(SpanId, "SpanId", 8);

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let tc = TraceContext::parse(TP).unwrap();
        assert_eq!(tc.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(tc.flags.bits(), 1);
        assert_eq!(tc.traceparent(), TP);
        assert_eq!(tc.to_string(), TP);
        assert_eq!(TraceContext::parse(&format!(" {TP}\t")).unwrap(), tc);
        let unsampled = TraceContext::parse(&TP.replace("-01", "-00")).unwrap();
        assert!(!unsampled.flags.is_sampled());
    }

    #[test]
    fn invalid_traceparents_are_refused_by_field() {
        let cases: &[(&str, &str)] = &[
            ("", "version"),
            ("0", "version"),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "55",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "55",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                "parent id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                "flags",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "'-'",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                "'-'",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                "'-'",
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "55",
            ),
            (
                "00-éf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-é4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "55",
            ),
        ];
        for (input, needle) in cases {
            let err = TraceContext::parse(input).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{input:?}: {err:?} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_fields() {
        let later = TP.replacen("00", "cc", 1);
        assert_eq!(TraceContext::parse(&later).unwrap().traceparent(), TP);
        let extended = format!("{later}-what-comes-next");
        assert_eq!(TraceContext::parse(&extended).unwrap().traceparent(), TP);
    }

    #[test]
    fn tracestate_is_validated_and_normalized() {
        let s = TraceState::parse(" a=1 ,, b@sys=x y ,\tc-*/_=!~ ").unwrap();
        assert_eq!(s.as_str(), "a=1,b@sys=x y,c-*/_=!~");
        assert_eq!(s.iter().count(), 3);
        assert_eq!(s.get("b@sys"), Some("x y"));
        assert!(TraceState::parse("").unwrap().is_empty());
        for bad in [
            "a",
            "A=1",
            "1a=1",
            "a=",
            "a=1=2",
            "a=\u{7f}",
            "a=1,a=2",
            "@s=1",
            "t@=1",
            "t@1s=1",
            "t@abcdefghijklmno=1",
        ] {
            assert!(TraceState::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let max: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(TraceState::parse(&max.join(",")).is_ok());
        let over: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            TraceState::parse(&over.join(",")).unwrap_err(),
            TraceStateError::TooManyMembers(33)
        );
        let long_value = format!("k={}", "v".repeat(256));
        assert!(TraceState::parse(&long_value).is_ok());
        assert!(TraceState::parse(&format!("{long_value}v")).is_err());
    }

    #[test]
    fn from_headers_drops_only_a_bad_tracestate() {
        let tc = TraceContext::from_headers(TP, Some("a=1")).unwrap();
        assert_eq!(tc.tracestate(), Some("a=1"));
        let tc = TraceContext::from_headers(TP, Some("A=1")).unwrap();
        assert_eq!(tc.tracestate(), None);
        assert!(TraceContext::from_headers("nope", Some("a=1")).is_err());
    }

    #[test]
    fn children_keep_trace_flags_and_state_with_a_fresh_span() {
        let parent = TraceContext::parse(TP)
            .unwrap()
            .with_state(Some(TraceState::parse("congo=t61").unwrap()));
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.flags, parent.flags);
        assert_eq!(child.state, parent.state);
        assert_ne!(child.span_id, parent.span_id);
        let cell = TraceCell::new(parent.clone());
        let r = TraceCell::to_ref(&cell).unwrap();
        assert_eq!(TraceCell::to_ref(&cell), Some(r), "registered once");
        assert_eq!(r.context(), Some(parent.clone()));
        let from_ref = r.child().unwrap();
        assert_eq!(from_ref.state, parent.state);
        assert_eq!(from_ref.trace_id, parent.trace_id);
        assert_ne!(from_ref.span_id, parent.span_id);
    }

    #[test]
    fn a_ref_outliving_its_event_resolves_to_nothing() {
        let cell = TraceCell::new(TraceContext::new_root());
        let r = TraceCell::to_ref(&cell).unwrap();
        drop(cell);
        assert_eq!(r.context(), None);
        assert_eq!(r.child(), None);
    }

    #[test]
    fn the_table_stays_about_as_small_as_the_live_contexts() {
        let kept: Vec<_> = (0..100)
            .map(|_| TraceCell::new(TraceContext::new_root()))
            .collect();
        for cell in &kept {
            let _ = TraceCell::to_ref(cell);
        }
        for _ in 0..20_000 {
            let cell = TraceCell::new(TraceContext::new_root());
            let _ = TraceCell::to_ref(&cell);
        }
        assert!(cells::len() < 5_000, "{}", cells::len());
        for cell in &kept {
            let r = TraceCell::to_ref(cell).unwrap();
            assert_eq!(r.context().as_ref(), Some(&cell.context));
        }
    }

    #[test]
    fn ids_refuse_zero_and_parse_strictly() {
        assert!(SpanId::from_bytes([0; 8]).is_none());
        assert!("0000000000000000".parse::<SpanId>().is_err());
        assert!("00f067aa0ba902b".parse::<SpanId>().is_err());
        assert_eq!(
            format!("{:?}", "00f067aa0ba902b7".parse::<SpanId>().unwrap()),
            "SpanId(00f067aa0ba902b7)"
        );
        for _ in 0..1000 {
            assert_ne!(SpanId::random().to_bytes(), [0; 8]);
        }
    }
}
