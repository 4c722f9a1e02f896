//! Why a host refused an event a plugin published: typed, so a plugin can tell a transient
//! refusal (wait and try again) from a permanent one (give up, fix the event).
//!
//! The host answers [`AbiHost::publish`](crate::AbiHost::publish) with a [`PublishRefusal`]
//! (ABI types); plugin code sees it as a [`PublishError`] from
//! [`HostHandle::publish`](crate::HostHandle::publish).
//!
//! A refusal never makes the host deliver the event being handled again by itself: `?` on a
//! [`PublishError`] inside `handle` turns it into a [`PluginError::Permanent`] (the delivery
//! fails, once). A plugin that wants the delivery retried says so with
//! [`PluginError::retryable`].

use crate::error::PluginError;
use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// The reason class of a refused publish.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// Transient: the host's queue for this plugin's events stayed full for the plugin's whole
    /// handler timeout (the bus is overloaded). Trying again later may succeed.
    Full,
    /// Permanent: the bus is shutting down or the plugin is being stopped.
    Closed,
    /// Permanent: the plugin may not publish this type or source (the host's own types,
    /// `plugin.*`, `system.*`, `config.*`, and the host's source names).
    Forbidden,
    /// Permanent: the event is malformed (bad type name, category clash, payload not JSON, too
    /// large).
    Invalid,
}

impl RefusalKind {
    /// True for [`RefusalKind::Full`]: the same event may be accepted later.
    pub fn is_transient(self) -> bool {
        self == RefusalKind::Full
    }

    /// A short lowercase name: `full`, `closed`, `forbidden` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Full => "full",
            RefusalKind::Closed => "closed",
            RefusalKind::Forbidden => "forbidden",
            RefusalKind::Invalid => "invalid",
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused publish as it crosses the ABI: the kind and the host's explanation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PublishRefusal {
    /// Transient or permanent, and why.
    pub kind: RefusalKind,
    /// The host's explanation, naming what was wrong.
    pub message: RString,
}

impl PublishRefusal {
    /// A refusal of `kind` with `message`.
    pub fn new(kind: RefusalKind, message: impl fmt::Display) -> Self {
        PublishRefusal {
            kind,
            message: message.to_string().into(),
        }
    }
}

/// The host refused an event the plugin published.
///
/// ```
/// # use plugbus_plugin_api::{HostHandle, PluginError, RefusalKind};
/// # use plugbus_plugin_api::contract::payload::SecurityAlert;
/// # fn f(host: &HostHandle, alert: &SecurityAlert) -> Result<(), PluginError> {
/// match host.publish(alert) {
///     Ok(()) => {}
///     // The bus stayed overloaded for a whole handler timeout: keep the alert, try later.
///     Err(e) if e.is_transient() => { /* remember it */ }
///     // Closed, forbidden or invalid: trying again cannot help.
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    kind: RefusalKind,
    event_type: String,
    message: String,
}

impl PublishError {
    /// A refusal of an event of `event_type`.
    pub fn new(
        kind: RefusalKind,
        event_type: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PublishError {
            kind,
            event_type: event_type.into(),
            message: message.into(),
        }
    }

    /// Why.
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }

    /// True if trying again later may succeed ([`RefusalKind::Full`]).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The type of the refused event.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The host's explanation.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host refused '{}' event ({}): {}",
            self.event_type, self.kind, self.message
        )
    }
}

impl std::error::Error for PublishError {}

/// `?` in `handle`: the delivery fails once, and is not delivered again (a refused publish is
/// not a reason to handle the same event twice). Ask for a retry explicitly with
/// [`PluginError::retryable`] if that is what the plugin wants.
impl From<PublishError> for PluginError {
    fn from(e: PublishError) -> Self {
        PluginError::permanent(e)
    }
}
