//! Subscription patterns over type names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A pattern over event type names.
///
/// A pattern is a dotted list of segments. A `*` segment matches exactly one segment, except in
/// last position, where it matches one or more. So `*` matches every type, `user.*` matches
/// `user.login` and `user.login.failed`, and `*.created` matches `data.created` only.
/// A pattern without `*` matches the one type it names.
///
/// ```
/// use plugbus_contract::Pattern;
/// let p: Pattern = "user.*".parse()?;
/// assert!(p.matches("user.login"));
/// assert!(!p.matches("user"));
/// assert!(!p.matches("data.created"));
/// assert!(Pattern::parse("*")?.matches("anything.at.all"));
/// # Ok::<(), plugbus_contract::PatternError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern {
    text: String,
}

/// Why a string is not a valid pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The rejected pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |reason: String| PatternError {
            pattern: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(err("it is empty".into()));
        }
        for seg in text.split('.') {
            if seg == "*" {
                continue;
            }
            if seg.contains('*') {
                return Err(err(format!("'*' must be a whole segment, found '{seg}'")));
            }
        }
        // Validate the literal parts with the type-name grammar by substituting the wildcards.
        let probe = text.replace('*', "x");
        crate::validate_type_name(&probe).map_err(|e| err(e.to_string()))?;
        Ok(Pattern {
            text: text.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the pattern has no wildcard, i.e. names exactly one type.
    pub fn is_exact(&self) -> bool {
        !self.text.contains('*')
    }

    /// True if `name` matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        let mut pat = self.text.split('.').peekable();
        let mut segs = name.split('.');
        while let Some(p) = pat.next() {
            let last = pat.peek().is_none();
            match segs.next() {
                None => return false,
                Some(s) => {
                    if p == "*" {
                        if last {
                            return true;
                        }
                    } else if p != s {
                        return false;
                    }
                }
            }
        }
        segs.next().is_none()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl TryFrom<String> for Pattern {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Pattern::parse(&s)
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Pattern::parse(p).map(|p| p.matches(n)).unwrap_or(false)
    }

    #[test]
    fn wildcard_rules() {
        assert!(m("*", "user.login"));
        assert!(m("*", "a"));
        assert!(m("user.*", "user.login"));
        assert!(m("user.*", "user.login.failed"));
        assert!(!m("user.*", "user"));
        assert!(!m("user.*", "users.login"));
        assert!(m("*.created", "data.created"));
        assert!(!m("*.created", "data.updated"));
        assert!(!m("*.created", "x.data.created"));
        assert!(m("user.login", "user.login"));
        assert!(!m("user.login", "user.login_failed"));
        assert!(!m("user.login", "user.login.x"));
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in ["", "user*", "user.**", "User.*", "user..*", ".*"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be rejected");
        }
        let e = Pattern::parse("us*er").unwrap_err();
        assert!(e.to_string().contains("us*er"), "{e}");
    }

    #[test]
    fn serde_validates() {
        let p: Pattern = serde_json::from_str("\"data.*\"").unwrap();
        assert_eq!(p.as_str(), "data.*");
        assert!(serde_json::from_str::<Pattern>("\"da*ta\"").is_err());
    }
}
