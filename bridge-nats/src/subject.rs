//! Event types <-> NATS subjects.
//!
//! An event of type `user.login` travels on `<prefix>.user.login`. A plugbus pattern maps onto a
//! NATS subject filter segment by segment: a `*` inside the pattern is NATS' `*` (one token), a
//! `*` at its end matches one or more segments, as NATS' `>` does.
//!
//! ```
//! use plugbus_bridge_nats::subject::{filter_for, subject_for};
//! assert_eq!(subject_for("plugbus", "user.login"), "plugbus.user.login");
//! assert_eq!(filter_for("plugbus", "user.*"), "plugbus.user.>");
//! assert_eq!(filter_for("plugbus", "*.created"), "plugbus.*.created");
//! assert_eq!(filter_for("plugbus", "*"), "plugbus.>");
//! ```

/// The subject an event of type `event_type` travels on.
pub fn subject_for(prefix: &str, event_type: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 1 + event_type.len());
    s.push_str(prefix);
    s.push('.');
    s.push_str(event_type);
    s
}

/// The NATS subject filter matching what the plugbus `pattern` matches (`pattern` must be
/// valid, see [`plugbus::Pattern`]).
pub fn filter_for(prefix: &str, pattern: &str) -> String {
    let segments: Vec<&str> = pattern.split('.').collect();
    let last = segments.len().saturating_sub(1);
    let mapped: Vec<&str> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| if *s == "*" && i == last { ">" } else { s })
        .collect();
    subject_for(prefix, &mapped.join("."))
}

/// The one filter covering every pattern in `patterns`: the pattern's own filter when there
/// is one, else everything under the prefix (the bridge then filters on receipt).
pub fn covering_filter(prefix: &str, patterns: &[String]) -> String {
    match patterns {
        [one] => filter_for(prefix, one),
        _ => format!("{prefix}.>"),
    }
}

/// The type name carried by `subject`, if it is under `prefix`.
pub fn type_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    subject.strip_prefix(prefix)?.strip_prefix('.')
}

/// True if `name` is one NATS token usable as a stream or consumer name.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

/// True if `prefix` is dotted tokens without wildcards.
pub(crate) fn is_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && prefix.split('.').all(is_token)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(filter_for("p", "security.alert"), "p.security.alert");
        assert_eq!(filter_for("a.b", "x.*.z"), "a.b.x.*.z");
        assert_eq!(covering_filter("p", &["user.*".into()]), "p.user.>");
        assert_eq!(covering_filter("p", &["user.*".into(), "x".into()]), "p.>");
        assert_eq!(type_of("p", "p.user.login"), Some("user.login"));
        assert_eq!(type_of("p", "pq.user"), None);
        assert!(is_prefix("plugbus.events"));
        assert!(!is_prefix("plugbus.*"));
        assert!(!is_prefix("a..b"));
        assert!(!is_token("a b"));
    }
}
