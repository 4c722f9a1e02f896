//! Which keys have their values redacted: case-insensitive key patterns.
//!
//! A pattern is a key, optionally with `*` wildcards; `*` matches any run of characters,
//! including none. So `pwd` matches only the key `pwd`, and `*token*` matches `token`,
//! `access_token` and `refreshToken`.
//!
//! Matching ignores ASCII case and treats `-` and `_` as the same character, in keys and in
//! patterns alike. The second rule is there because the same secret travels under both
//! spellings (`api_key` in a JSON body, `X-Api-Key` as a header copied into metadata), and a
//! pattern written for one should not silently miss the other. Other characters, non-ASCII ones
//! included, must match exactly.
//!
//! Patterns are checked when the plugin is configured: an empty pattern, `**`, leading or
//! trailing whitespace, control characters, or glob syntax this matcher does not have (`?`,
//! `[`, `]`, `{`, `}`) are errors, so that a pattern never quietly means something else than
//! what its author expected.

use std::fmt;

/// The default patterns: what the plugin redacts unless `redact` replaces them.
///
/// They cover, among others, `password`, `passwd`, `pwd`, `new_password`, `secret`,
/// `client_secret`, `token`, `access_token`, `refresh_token`, `api_key`, `apiKey`, `x-api-key`,
/// `authorization`, `cookie`, `private_key` and `privateKey`, in any ASCII case.
pub const DEFAULT_REDACT: &[&str] = &[
    "*password*",
    "*passwd*",
    "pwd",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*api-key*",
    "authorization",
    "cookie",
    "*private_key*",
    "*privatekey*",
];

/// The longest pattern accepted, in bytes; longer ones are almost certainly not key names.
const MAX_PATTERN_BYTES: usize = 256;

/// Folds one byte for comparison: ASCII lowercase, and `-` as `_`.
fn fold(b: u8) -> u8 {
    if b == b'-' {
        b'_'
    } else {
        b.to_ascii_lowercase()
    }
}

/// True if `hay` starts with `needle` (already folded), comparing folded bytes.
fn starts_with_folded(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.iter().zip(needle).all(|(h, n)| fold(*h) == *n)
}

/// The first position at which `needle` (already folded) occurs in `hay`, comparing folded
/// bytes.
fn find_folded(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    (0..=hay.len().checked_sub(needle.len())?).find(|&i| starts_with_folded(&hay[i..], needle))
}

/// One compiled pattern: the folded text between its `*`s.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    /// The pattern split at `*`; one part means no wildcard (an exact key).
    parts: Vec<Vec<u8>>,
}

impl KeyPattern {
    fn parse(pattern: &str) -> Result<KeyPattern, String> {
        if pattern.is_empty() {
            return Err("is empty".to_owned());
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!("is longer than {MAX_PATTERN_BYTES} bytes"));
        }
        if pattern.trim() != pattern {
            return Err("starts or ends with whitespace".to_owned());
        }
        if pattern.chars().any(char::is_control) {
            return Err("contains a control character".to_owned());
        }
        if pattern.contains("**") {
            return Err(
                "contains '**'; a single '*' already matches any run of characters".to_owned(),
            );
        }
        if let Some(c) = pattern.chars().find(|c| "?[]{}".contains(*c)) {
            return Err(format!("contains '{c}'; the only wildcard is '*'"));
        }
        let parts = pattern
            .split('*')
            .map(|part| part.bytes().map(fold).collect())
            .collect();
        Ok(KeyPattern { parts })
    }

    /// True if `key` matches: the first part is a prefix, the last a suffix, and the parts in
    /// between occur in order in what is left. Taking each middle part at its first occurrence
    /// is enough for `*`-only patterns and keeps matching linear in the key's length per part.
    fn matches(&self, key: &[u8]) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            return key.len() == first.len() && starts_with_folded(key, first);
        };
        if key.len() < first.len() + last.len()
            || !starts_with_folded(key, first)
            || !starts_with_folded(&key[key.len() - last.len()..], last)
        {
            return false;
        }
        let mut hay = &key[first.len()..key.len() - last.len()];
        for part in middle {
            match find_folded(hay, part) {
                Some(at) => hay = &hay[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// An invalid pattern in the configuration, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatternError {
    pattern: String,
    reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pattern '{}' {}",
            self.pattern.escape_debug(),
            self.reason
        )
    }
}

/// The set of patterns in effect; a key is redacted if any of them matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Redactor {
    patterns: Vec<KeyPattern>,
}

impl Redactor {
    /// Compiles `patterns`, adding them to this set.
    pub(crate) fn add<'p>(
        &mut self,
        patterns: impl IntoIterator<Item = &'p str>,
    ) -> Result<(), PatternError> {
        for pattern in patterns {
            let compiled = KeyPattern::parse(pattern).map_err(|reason| PatternError {
                pattern: pattern.to_owned(),
                reason,
            })?;
            if !self.patterns.contains(&compiled) {
                self.patterns.push(compiled);
            }
        }
        Ok(())
    }

    /// True if the value under `key` (the decoded key text) must be redacted.
    pub(crate) fn matches(&self, key: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(key.as_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> Redactor {
        let mut r = Redactor::default();
        r.add(patterns.iter().copied()).unwrap();
        r
    }

    #[test]
    fn defaults_cover_the_listed_keys_and_spellings() {
        let r = set(DEFAULT_REDACT);
        for key in [
            "password",
            "PASSWORD",
            "Password",
            "passwd",
            "pwd",
            "PWD",
            "api_key",
            "Api_Key",
            "apiKey",
            "APIKEY",
            "api-key",
            "x-api-key",
            "X-Api-Key",
            "x_api_key",
            "access_token",
            "accessToken",
            "refresh_token",
            "client_secret",
            "clientSecret",
            "new_password",
            "newPassword",
            "private_key",
            "privateKey",
            "private-key",
            "Cookie",
            "cookie",
            "authorization",
            "Authorization",
            "secret",
            "token",
            "TOKEN",
        ] {
            assert!(r.matches(key), "{key} should be redacted");
        }
        for key in [
            "user_id",
            "ip",
            "passport",
            "pw",
            "pwd_hint_shown",
            "cookies_accepted",
            "authorized",
            "api",
            "key",
            "tok",
            "",
        ] {
            assert!(!r.matches(key), "{key} should be kept");
        }
    }

    #[test]
    fn wildcards_anchor_and_order() {
        let r = set(&["a*b*c"]);
        for key in ["abc", "aXbYc", "abbc", "a-b_c", "ABC", "abcbc"] {
            assert!(r.matches(key), "{key}");
        }
        for key in ["ab", "acb", "xabc", "abcx", "bc", "a"] {
            assert!(!r.matches(key), "{key}");
        }
        let exact = set(&["Session-ID"]);
        assert!(exact.matches("session_id"));
        assert!(exact.matches("SESSION-id"));
        assert!(!exact.matches("session_ids"));
        let star = set(&["*"]);
        assert!(star.matches("anything") && star.matches(""));
        let prefix = set(&["x-*"]);
        assert!(prefix.matches("X_Forwarded") && !prefix.matches("ax-b"));
        // Non-ASCII letters must match exactly (no Unicode case folding).
        let uni = set(&["*Kennwört*"]);
        assert!(uni.matches("altes_kennwört"));
        assert!(!uni.matches("KENNWÖRT"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        for bad in [
            "", " pwd", "pwd ", "a**b", "pass?", "[ab]", "{a,b}", "a\tb", "a\u{0}",
        ] {
            let err = Redactor::default().add([bad]).unwrap_err();
            assert!(err.to_string().starts_with("pattern '"), "{err}");
        }
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(Redactor::default().add([long.as_str()]).is_err());
        let err = Redactor::default().add(["ok", "x?"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pattern 'x?' contains '?'; the only wildcard is '*'"
        );
    }

    #[test]
    fn duplicates_are_kept_once() {
        let mut r = set(&["*token*"]);
        r.add(["*TOKEN*", "*to_ken*"]).unwrap();
        assert_eq!(r.patterns.len(), 2);
    }
}
