//! Event categories.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kind of an event type. Every type belongs to exactly one category, so a subscriber can
/// follow e.g. everything in [`Category::Lifecycle`] without naming each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Category {
    /// Plugin lifecycle: `plugin.loaded`, `plugin.started`, ...
    Lifecycle = 0,
    /// The host and its configuration: `system.startup`, `config.changed`, ...
    System = 1,
    /// What the application does: `user.login`, `data.created`, `security.alert`, ...
    Business = 2,
    /// Application-defined types that fit none of the above.
    Custom = 3,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 4] = [
        Category::Lifecycle,
        Category::System,
        Category::Business,
        Category::Custom,
    ];

    /// The lowercase name used in JSON and configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Lifecycle => "lifecycle",
            Category::System => "system",
            Category::Business => "business",
            Category::Custom => "custom",
        }
    }

    /// The category with the given discriminant (`self as u8`), if any.
    pub const fn from_u8(v: u8) -> Option<Category> {
        match v {
            0 => Some(Category::Lifecycle),
            1 => Some(Category::System),
            2 => Some(Category::Business),
            3 => Some(Category::Custom),
            _ => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event category '{0}' (expected lifecycle, system, business or custom)")]
pub struct ParseCategoryError(pub String);

impl FromStr for Category {
    type Err = ParseCategoryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseCategoryError(s.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_str_and_u8() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
            assert_eq!(Category::from_u8(c as u8), Some(c));
        }
        assert!("audit".parse::<Category>().is_err());
        assert_eq!(Category::from_u8(4), None);
    }
}
