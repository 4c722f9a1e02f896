//! The grammar of event type names.

/// Longest accepted type name, in bytes.
pub const MAX_TYPE_NAME_LEN: usize = 128;

/// Why a string is not a valid event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeNameError {
    /// The name is empty.
    #[error("event type name is empty")]
    Empty,
    /// The name is longer than [`MAX_TYPE_NAME_LEN`].
    #[error("event type name '{name}…' is {len} bytes long (at most {MAX_TYPE_NAME_LEN})")]
    TooLong {
        /// The first characters of the name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A dot-separated segment is empty (`user..login`, `.login`, `user.`).
    #[error("event type name '{0}' has an empty segment")]
    EmptySegment(String),
    /// A character outside `[a-z0-9_-]` and `.`.
    #[error("event type name '{name}' has invalid character {ch:?} at byte {at} (allowed: a-z 0-9 _ - and '.')")]
    InvalidChar {
        /// The name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks that `name` is a dotted type name: segments of `a-z`, `0-9`, `_` and `-`, separated by
/// single dots, at most [`MAX_TYPE_NAME_LEN`] bytes.
///
/// ```
/// use plugbus_contract::validate_type_name;
/// assert!(validate_type_name("user.login_failed").is_ok());
/// assert!(validate_type_name("User.Login").is_err());
/// assert!(validate_type_name("user..login").is_err());
/// ```
pub fn validate_type_name(name: &str) -> Result<(), TypeNameError> {
    if name.is_empty() {
        return Err(TypeNameError::Empty);
    }
    if name.len() > MAX_TYPE_NAME_LEN {
        let cut = name.char_indices().nth(32).map_or(name.len(), |(i, _)| i);
        return Err(TypeNameError::TooLong {
            name: name[..cut].to_owned(),
            len: name.len(),
        });
    }
    for (at, ch) in name.char_indices() {
        let ok = matches!(ch, 'a'..='z' | '0'..='9' | '_' | '-' | '.');
        if !ok {
            return Err(TypeNameError::InvalidChar {
                name: name.to_owned(),
                ch,
                at,
            });
        }
    }
    if name.split('.').any(str::is_empty) {
        return Err(TypeNameError::EmptySegment(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dotted_lowercase_names() {
        for ok in [
            "user.login",
            "a",
            "data.created",
            "x-y.z_9",
            "security.alert",
        ] {
            assert_eq!(validate_type_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_the_reason() {
        assert_eq!(validate_type_name(""), Err(TypeNameError::Empty));
        assert!(matches!(
            validate_type_name("user.Login"),
            Err(TypeNameError::InvalidChar { ch: 'L', at: 5, .. })
        ));
        assert!(matches!(
            validate_type_name("user.*"),
            Err(TypeNameError::InvalidChar { ch: '*', .. })
        ));
        assert!(matches!(
            validate_type_name("user."),
            Err(TypeNameError::EmptySegment(_))
        ));
        let long = "a".repeat(MAX_TYPE_NAME_LEN + 1);
        assert!(matches!(
            validate_type_name(&long),
            Err(TypeNameError::TooLong { len, .. }) if len == MAX_TYPE_NAME_LEN + 1
        ));
    }
}
