//! What a subscription selects: exact types, categories and patterns.

use crate::error::SubscribeError;
use crate::event_type::EventType;
use plugbus_contract::{Category, Pattern};
use smallvec::SmallVec;
use std::fmt;

/// The set of event types a subscription receives: the union of some exact types, some
/// categories and some patterns.
///
/// Matching is resolved once per event type and cached by the bus, so a pattern costs nothing per
/// publish.
///
/// ```
/// use plugbus::{Category, EventType, Interest};
/// let i = Interest::pattern("user.*")?.or_category(Category::Lifecycle);
/// assert!(i.matches(EventType::USER_LOGIN));
/// assert!(i.matches(EventType::PLUGIN_LOADED));
/// assert!(!i.matches(EventType::DATA_CREATED));
/// # Ok::<(), plugbus::SubscribeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Interest {
    types: SmallVec<[EventType; 2]>,
    categories: u8,
    patterns: Vec<Pattern>,
}

impl Interest {
    /// Nothing (add to it with the `or_*` methods).
    pub fn none() -> Interest {
        Interest::default()
    }

    /// Every event type.
    pub fn all() -> Interest {
        Interest {
            categories: 0b1111,
            ..Interest::default()
        }
    }

    /// Exactly one type.
    pub fn exact(t: EventType) -> Interest {
        Interest::none().or_type(t)
    }

    /// Several exact types.
    pub fn types(ts: impl IntoIterator<Item = EventType>) -> Interest {
        ts.into_iter().fold(Interest::none(), Interest::or_type)
    }

    /// Every type of a category.
    pub fn category(c: Category) -> Interest {
        Interest::none().or_category(c)
    }

    /// Every type matching a pattern (`user.*`, `*`).
    ///
    /// # Errors
    /// The pattern is malformed.
    pub fn pattern(p: &str) -> Result<Interest, SubscribeError> {
        Ok(Interest::none().or_pattern_parsed(Pattern::parse(p)?))
    }

    /// Adds an exact type.
    pub fn or_type(mut self, t: EventType) -> Interest {
        if !self.types.contains(&t) {
            self.types.push(t);
        }
        self
    }

    /// Adds a category.
    pub fn or_category(mut self, c: Category) -> Interest {
        self.categories |= 1 << (c as u8);
        self
    }

    /// Adds a pattern.
    ///
    /// # Errors
    /// The pattern is malformed.
    pub fn or_pattern(self, p: &str) -> Result<Interest, SubscribeError> {
        Ok(self.or_pattern_parsed(Pattern::parse(p)?))
    }

    /// Adds a parsed pattern (an exact one is stored as a type when the type exists).
    pub fn or_pattern_parsed(mut self, p: Pattern) -> Interest {
        if p.as_str() == "*" {
            return self.or_all();
        }
        if p.is_exact() {
            if let Some(t) = EventType::lookup(p.as_str()) {
                return self.or_type(t);
            }
        }
        if !self.patterns.contains(&p) {
            self.patterns.push(p);
        }
        self
    }

    fn or_all(mut self) -> Interest {
        self.categories = 0b1111;
        self
    }

    /// True if nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.categories == 0 && self.patterns.is_empty()
    }

    /// Does this interest select `t`?
    pub fn matches(&self, t: EventType) -> bool {
        self.types.contains(&t)
            || self.categories & (1 << (t.category() as u8)) != 0
            || self.patterns.iter().any(|p| p.matches(t.name()))
    }

    /// A selector both interests name identically, if any (for duplicate-name checks).
    pub(crate) fn overlap(&self, other: &Interest) -> Option<String> {
        if let Some(t) = self.types.iter().find(|t| other.matches(**t)) {
            return Some(format!("type '{t}'"));
        }
        if let Some(t) = other.types.iter().find(|t| self.matches(**t)) {
            return Some(format!("type '{t}'"));
        }
        let common = self.categories & other.categories;
        if common != 0 {
            let c = Category::ALL
                .into_iter()
                .find(|c| common & (1 << (*c as u8)) != 0)
                .unwrap_or(Category::Custom);
            return Some(format!("category '{c}'"));
        }
        self.patterns
            .iter()
            .find(|p| other.patterns.contains(p))
            .map(|p| format!("pattern '{p}'"))
    }
}

impl From<EventType> for Interest {
    fn from(t: EventType) -> Self {
        Interest::exact(t)
    }
}

impl From<Category> for Interest {
    fn from(c: Category) -> Self {
        Interest::category(c)
    }
}

impl From<Pattern> for Interest {
    fn from(p: Pattern) -> Self {
        Interest::none().or_pattern_parsed(p)
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.types.iter().map(|t| t.name().to_owned()).collect();
        if self.categories == 0b1111 {
            parts.push("*".into());
        } else {
            parts.extend(
                Category::ALL
                    .into_iter()
                    .filter(|c| self.categories & (1 << (*c as u8)) != 0)
                    .map(|c| format!("category:{c}")),
            );
        }
        parts.extend(self.patterns.iter().map(|p| p.to_string()));
        write!(f, "Interest({})", parts.join(" | "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn union_of_selectors() {
        let i = Interest::exact(EventType::DATA_DELETED)
            .or_category(Category::System)
            .or_pattern("security.*")
            .unwrap();
        assert!(i.matches(EventType::DATA_DELETED));
        assert!(i.matches(EventType::SYSTEM_SHUTDOWN));
        assert!(i.matches(EventType::SECURITY_ALERT));
        assert!(!i.matches(EventType::DATA_CREATED));
        assert!(Interest::pattern("*")
            .unwrap()
            .matches(EventType::USER_LOGOUT));
        assert!(Interest::none().is_empty());
        assert!(Interest::pattern("us*").is_err());
    }

    #[test]
    fn overlap_names_the_shared_selector() {
        let a = Interest::exact(EventType::USER_LOGIN);
        let b = Interest::category(Category::Business);
        assert_eq!(a.overlap(&b).as_deref(), Some("type 'user.login'"));
        let c = Interest::exact(EventType::USER_LOGOUT);
        assert_eq!(a.overlap(&c), None);
    }
}
