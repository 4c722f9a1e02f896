//! Where an event really came from: [`Origin`].
//!
//! An event's `source` is what its publisher *says* (any text, chosen by whoever built the
//! event). Its origin is what the party that *accepted* it knows: the application's own code,
//! the host, line 17 of an input, the plugin `auth-enhancer`, a remote bus. The envelope's JSON
//! form has no such field, so no publisher can set it: the code that admits an event from
//! outside (the host for plugins and input lines, a bridge for remote events) stamps it with
//! [`Event::with_origin`](crate::Event::with_origin), and the audit log records it beside the
//! claimed source. An event published by the application through the [`Bus`](crate::Bus)
//! carries [`Origin::LOCAL`].

use crate::text::SmallText;
use std::fmt;

/// Where an event came from, as stamped by whoever admitted it (never by the event's author:
/// an event's `source` is what its publisher says, its origin what the party that accepted it
/// knows).
///
/// Its text form is stable (it is written to audit logs and crosses the plugin ABI):
/// `local`, `host`, `input:<name>:<line>`, `plugin:<name>` or `remote:<peer>`.
///
/// ```
/// use plugbus::{Origin, OriginKind};
///
/// let o = Origin::input("stdin", 17);
/// assert_eq!(o.as_str(), "input:stdin:17");
/// assert_eq!(o.kind(), OriginKind::Input);
/// assert_eq!(Origin::plugin("auth-enhancer").as_str(), "plugin:auth-enhancer");
/// assert_eq!(Origin::LOCAL.kind(), OriginKind::Local);
/// ```
#[derive(Clone)]
pub struct Origin(SmallText);

/// The kind of an [`Origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OriginKind {
    /// The application's own code, through the bus's API (the default).
    Local,
    /// The host itself (lifecycle and system events).
    Host,
    /// A line of an input stream (e.g. `plugbus run`'s standard input).
    Input,
    /// A plugin.
    Plugin,
    /// Another bus, through a bridge.
    Remote,
}

impl Origin {
    /// Published by the application through the bus's API.
    pub const LOCAL: Origin = Origin(SmallText::from_static("local"));
    /// Published by the host itself.
    pub const HOST: Origin = Origin(SmallText::from_static("host"));

    /// Read from line `line` (1-based) of the input called `name`.
    pub fn input(name: &str, line: u64) -> Origin {
        Origin(SmallText::new(&format!("input:{name}:{line}")))
    }

    /// Published by the plugin `name`.
    pub fn plugin(name: &str) -> Origin {
        Origin(SmallText::new(&format!("plugin:{name}")))
    }

    /// Received from the remote bus `peer` (a host id).
    pub fn remote(peer: &str) -> Origin {
        Origin(SmallText::new(&format!("remote:{peer}")))
    }

    /// The text form (see the type's docs).
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// What kind of origin it is.
    pub fn kind(&self) -> OriginKind {
        let text = self.as_str();
        match text.split_once(':').map_or(text, |(head, _)| head) {
            "host" => OriginKind::Host,
            "input" => OriginKind::Input,
            "plugin" => OriginKind::Plugin,
            "remote" => OriginKind::Remote,
            _ => OriginKind::Local,
        }
    }
}

impl Default for Origin {
    fn default() -> Self {
        Origin::LOCAL
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Origin {}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_and_kinds() {
        let cases = [
            (Origin::LOCAL, "local", OriginKind::Local),
            (Origin::HOST, "host", OriginKind::Host),
            (
                Origin::input("/a:b/in.jsonl", 3),
                "input:/a:b/in.jsonl:3",
                OriginKind::Input,
            ),
            (Origin::plugin("x"), "plugin:x", OriginKind::Plugin),
            (Origin::remote("h-2"), "remote:h-2", OriginKind::Remote),
        ];
        for (origin, text, kind) in cases {
            assert_eq!(origin.as_str(), text);
            assert_eq!(origin.kind(), kind);
            assert_eq!(origin.to_string(), text);
        }
        assert_eq!(Origin::default(), Origin::LOCAL);
        let long = "p".repeat(100);
        assert_eq!(Origin::plugin(&long).as_str(), format!("plugin:{long}"));
    }
}
