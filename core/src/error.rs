//! Error types of the bus and the event model.

use crate::event::Event;
use crate::subscription::SubscriptionId;
use plugbus_contract::{Category, PatternError, TypeNameError};
use std::fmt;

/// An event type could not be interned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventTypeError {
    /// The name breaks the type-name grammar.
    #[error(transparent)]
    InvalidName(#[from] TypeNameError),
    /// The type exists with another category.
    #[error("event type '{name}' is already registered with category {existing}, not {requested}")]
    CategoryConflict {
        /// The type name.
        name: String,
        /// Its registered category.
        existing: Category,
        /// The category asked for.
        requested: Category,
    },
    /// The process-wide type table is full.
    #[error("too many event types (at most {max}): are type names built from unbounded input?")]
    TooManyTypes {
        /// The limit.
        max: usize,
    },
}

/// A payload could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The bytes given as a JSON payload are not one JSON value.
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    /// The typed payload failed to serialize.
    #[error("payload failed to serialize: {0}")]
    Serialize(String),
    /// The JSON does not have the shape of the requested type.
    #[error("payload does not fit {expected}: {reason}")]
    Shape {
        /// The Rust type asked for.
        expected: &'static str,
        /// What serde said.
        reason: String,
    },
    /// The event is not of the type the payload struct belongs to.
    #[error("event of type '{event_type}' does not carry a '{expected}' payload")]
    TypeMismatch {
        /// The event's type.
        event_type: &'static str,
        /// The payload struct's type.
        expected: &'static str,
    },
}

/// An event could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Its type is invalid.
    #[error(transparent)]
    Type(#[from] EventTypeError),
    /// Its payload is invalid.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A metadata entry is invalid.
    #[error("metadata '{key}' is invalid: {reason}")]
    InvalidMetadata {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// An envelope field is invalid.
    #[error("field '{field}' is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A JSON envelope could not be decoded into an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The text is not valid JSON or does not have the envelope's shape.
    #[error("malformed event at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line in the input.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The JSON is well-formed but describes an invalid event.
    #[error("invalid event: {0}")]
    Event(#[from] EventError),
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The bus is shutting down or shut down.
    ShuttingDown,
    /// `try_emit` found full mailboxes with the `Wait` or `Reject` policy: the event was not
    /// enqueued for these subscriptions (it was for every other match).
    Full(Vec<SubscriptionId>),
}

/// A publish was refused; the event is handed back for retry or dead-lettering.
///
/// Its `Debug` output never shows the payload.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PublishError {
    /// Why.
    pub kind: PublishErrorKind,
    /// The event that was not (fully) accepted.
    pub event: Event,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PublishErrorKind::ShuttingDown => write!(
                f,
                "bus is shutting down: event {} ({}) not accepted",
                self.event.id(),
                self.event.event_type()
            ),
            PublishErrorKind::Full(subs) => write!(
                f,
                "mailbox full for {} subscription(s) {:?}: event {} ({}) not enqueued there",
                subs.len(),
                subs,
                self.event.id(),
                self.event.event_type()
            ),
        }
    }
}

impl PublishError {
    /// Takes the event back.
    pub fn into_event(self) -> Event {
        self.event
    }

    /// The subscriptions the event is still owed to: those whose mailbox refused it (empty
    /// when the bus is shutting down). Every other match has it already, so retry with
    /// [`Bus::try_emit_to`](crate::Bus::try_emit_to) or [`Bus::emit_to`](crate::Bus::emit_to)
    /// and these ids to deliver it once to each.
    pub fn owed(&self) -> &[SubscriptionId] {
        match &self.kind {
            PublishErrorKind::Full(subs) => subs,
            PublishErrorKind::ShuttingDown => &[],
        }
    }
}

/// A subscription could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// Another active subscription has the same name on an overlapping selector.
    #[error("a handler named '{name}' is already subscribed to {on}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The type, category or pattern both cover.
        on: String,
    },
    /// A pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A type name is malformed.
    #[error(transparent)]
    Type(#[from] EventTypeError),
    /// The subscription selects nothing.
    #[error("subscription '{0}' selects no type, category or pattern")]
    Empty(String),
    /// An option is out of range.
    #[error("subscription '{name}': {reason}")]
    InvalidOption {
        /// The subscription's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The bus is shutting down.
    #[error("bus is shutting down: no new subscriptions")]
    ShuttingDown,
}

/// A bus could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No tokio runtime was given or current, and the bus was not asked to own one.
    #[error("no tokio runtime: build the bus inside one, pass .runtime(handle), or use .own_runtime(threads)")]
    NoRuntime,
    /// The owned runtime failed to start.
    #[error("failed to start the bus's own runtime: {0}")]
    Runtime(String),
    /// A setting is out of range.
    #[error("invalid bus setting '{setting}': {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}
