//! [`PluginError`]: what a plugin tells the host when something went wrong.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// An error a plugin returns across the ABI, and the facade's error type.
///
/// The host maps each variant to a delivery outcome:
///
/// | variant | meaning | host outcome |
/// |---|---|---|
/// | [`Retryable`](Self::Retryable) | transient (I/O hiccup, busy resource) | retried per the subscription's policy |
/// | [`Permanent`](Self::Permanent) | retrying cannot help | failed, not retried |
/// | [`Config`](Self::Config) | the plugin's configuration is invalid | plugin fails to load/start |
/// | [`InvalidEvent`](Self::InvalidEvent) | the event's payload does not fit what the plugin expects | failed, not retried |
/// | [`Panicked`](Self::Panicked) | the plugin panicked; the message is the panic's | panicked; the plugin's state may be inconsistent |
///
/// The `Display` form is `"<kind>: <message>"` with kind from [`PluginError::kind`].
///
/// Adding a variant changes the layout abi_stable checks at load, so it comes with an ABI major bump.
#[repr(u8)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// A transient failure; handling the same event again later may succeed.
    Retryable(RString),
    /// A failure that handling the event again cannot fix.
    Permanent(RString),
    /// The plugin's configuration is invalid; the message names the key.
    Config(RString),
    /// The event's payload is not what its type promises (or not the type the plugin asked for).
    InvalidEvent(RString),
    /// The plugin panicked; the message is the panic message.
    Panicked(RString),
}

impl PluginError {
    /// A [`PluginError::Retryable`] with the given message.
    pub fn retryable(msg: impl fmt::Display) -> Self {
        PluginError::Retryable(msg.to_string().into())
    }

    /// A [`PluginError::Permanent`] with the given message.
    pub fn permanent(msg: impl fmt::Display) -> Self {
        PluginError::Permanent(msg.to_string().into())
    }

    /// A [`PluginError::Config`] with the given message (name the offending key in it).
    pub fn config(msg: impl fmt::Display) -> Self {
        PluginError::Config(msg.to_string().into())
    }

    /// A [`PluginError::InvalidEvent`] with the given message.
    pub fn invalid_event(msg: impl fmt::Display) -> Self {
        PluginError::InvalidEvent(msg.to_string().into())
    }

    /// A [`PluginError::Panicked`] with the given message.
    pub fn panicked(msg: impl fmt::Display) -> Self {
        PluginError::Panicked(msg.to_string().into())
    }

    /// The error's message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            PluginError::Retryable(m)
            | PluginError::Permanent(m)
            | PluginError::Config(m)
            | PluginError::InvalidEvent(m)
            | PluginError::Panicked(m) => m.as_str(),
        }
    }

    /// A short lowercase name of the variant: `retryable`, `permanent`, `config`, `invalid event`
    /// or `panicked`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Retryable(_) => "retryable",
            PluginError::Permanent(_) => "permanent",
            PluginError::Config(_) => "config",
            PluginError::InvalidEvent(_) => "invalid event",
            PluginError::Panicked(_) => "panicked",
        }
    }

    /// True only for [`PluginError::Retryable`]: the one kind a host should retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PluginError::Retryable(_))
    }

    /// True for [`PluginError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, PluginError::Panicked(_))
    }

    /// Builds a [`PluginError::Panicked`] from a panic payload as returned by
    /// [`std::panic::catch_unwind`], keeping the message when it is a string.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        };
        PluginError::Panicked(msg.into())
    }
}

impl fmt::Debug for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PluginError::{}({:?})",
            self.variant_name(),
            self.message()
        )
    }
}

impl PluginError {
    fn variant_name(&self) -> &'static str {
        match self {
            PluginError::Retryable(_) => "Retryable",
            PluginError::Permanent(_) => "Permanent",
            PluginError::Config(_) => "Config",
            PluginError::InvalidEvent(_) => "InvalidEvent",
            PluginError::Panicked(_) => "Panicked",
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for PluginError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_messages_and_panic_payloads() {
        let e = PluginError::retryable("disk busy");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "retryable: disk busy");
        assert!(!PluginError::permanent("x").is_retryable());
        assert_eq!(PluginError::config("bad key 'path'").kind(), "config");

        let p = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(
            PluginError::from_panic(&*p),
            PluginError::panicked("boom 7")
        );
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(PluginError::from_panic(&*p).message(), "static");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(42_u8)).unwrap_err();
        assert!(PluginError::from_panic(&*p).is_panic());
    }
}
