//! What a plugin wants to receive: [`Subscription`] (builder) and [`AbiSubscription`] (ABI).

use crate::{error::PluginError, filter::AbiFilter};
use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};
use plugbus_contract::{validate_type_name, Category, Pattern};
use std::time::Duration;

/// One subscription of a plugin, as it crosses the ABI.
///
/// An event is delivered to `handler` when it matches **any** of `event_types`, `categories` or
/// `patterns` (an empty subscription matches nothing) **and** `filter`, if set, matches it
/// (see [`filter_matches`](crate::filter_matches)). If one event matches several subscriptions
/// of a plugin, each one's handler receives it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct AbiSubscription {
    /// The value passed back as `handler` to `handle`.
    pub handler: u32,
    /// Exact type names.
    pub event_types: RVec<RString>,
    /// Categories, as `Category as u8`; values the host does not know never match.
    pub categories: RVec<u8>,
    /// Type patterns such as `user.*` or `*` (see `plugbus_contract::Pattern`).
    pub patterns: RVec<RString>,
    /// An optional declarative filter the host evaluates before delivery.
    pub filter: ROption<AbiFilter>,
    /// How long the host waits for one `handle` call, in milliseconds; 0 = the host's default.
    pub timeout_ms: u64,
    /// The subscription's name (empty = unnamed): the host labels its counters
    /// `<plugin>/<name>` instead of `<plugin>/<handler>`, and the plugin sees it as
    /// [`Event::subscription`](crate::Event::subscription). Since ABI 0.4.
    pub name: RString,
}

/// A subscription as plugin authors write it.
///
/// ```
/// use plugbus_plugin_api::{contract::Category, Filter, Subscription};
/// use std::time::Duration;
///
/// let subs = vec![
///     Subscription::to_types(["user.login", "user.logout"]).timeout(Duration::from_secs(2)),
///     Subscription::to_categories([Category::Lifecycle]).pattern("security.*"),
///     Subscription::to_pattern("data.*").filter(Filter::new().eq("data.entity", "invoice")),
/// ];
/// # let _ = subs;
/// ```
///
/// The handler index defaults to the subscription's position in the vector
/// [`Plugin::subscriptions`](crate::Plugin::subscriptions) returns; [`Subscription::handler`] sets
/// it explicitly. [`Subscription::named`] gives it a name, which the host's tables show and
/// [`Event::subscription`](crate::Event::subscription) returns, so `handle` can match on names
/// instead of numbers; [`Handlers`](crate::Handlers) goes further, with a function per
/// subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    handler: Option<u32>,
    name: Option<String>,
    event_types: Vec<String>,
    categories: Vec<Category>,
    patterns: Vec<String>,
    filter: Option<AbiFilter>,
    timeout: Option<Duration>,
}

impl Subscription {
    /// A subscription to the given exact type names.
    pub fn to_types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscription::default().types(types)
    }

    /// A subscription to every type of the given categories.
    pub fn to_categories(categories: impl IntoIterator<Item = Category>) -> Self {
        Subscription::default().categories(categories)
    }

    /// A subscription to the types matching `pattern` (e.g. `user.*`).
    pub fn to_pattern(pattern: impl Into<String>) -> Self {
        Subscription::default().pattern(pattern)
    }

    /// Adds exact type names.
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Adds categories.
    pub fn categories(mut self, categories: impl IntoIterator<Item = Category>) -> Self {
        self.categories.extend(categories);
        self
    }

    /// Adds a pattern.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Sets the declarative filter.
    pub fn filter(mut self, filter: AbiFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets how long the host waits for one `handle` call. The default is the host's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the handler index passed to `handle` (default: the position in the list).
    pub fn handler(mut self, handler: u32) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Names the subscription (1 to 64 of `a-z 0-9 - _ .`, starting with a letter or digit;
    /// unique among the plugin's subscriptions).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The name given with [`named`](Self::named).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Validates and converts into the ABI form; `position` is the default handler index.
    ///
    /// # Errors
    /// [`PluginError::Config`] naming an invalid type name, pattern, filter field or
    /// subscription name.
    pub fn to_abi(&self, position: u32) -> Result<AbiSubscription, PluginError> {
        if let Some(name) = &self.name {
            validate_subscription_name(name)?;
        }
        for t in &self.event_types {
            validate_type_name(t)
                .map_err(|e| PluginError::config(format_args!("subscription type: {e}")))?;
        }
        for p in &self.patterns {
            Pattern::parse(p)
                .map_err(|e| PluginError::config(format_args!("subscription pattern: {e}")))?;
        }
        if let Some(f) = &self.filter {
            f.validate()
                .map_err(|e| PluginError::config(format_args!("subscription filter: {e}")))?;
        }
        let timeout_ms = self
            .timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0);
        Ok(AbiSubscription {
            handler: self.handler.unwrap_or(position),
            event_types: self
                .event_types
                .iter()
                .map(|s| RString::from(s.as_str()))
                .collect(),
            categories: self.categories.iter().map(|c| *c as u8).collect(),
            patterns: self
                .patterns
                .iter()
                .map(|s| RString::from(s.as_str()))
                .collect(),
            filter: self.filter.clone().into(),
            timeout_ms,
            name: self.name.as_deref().unwrap_or_default().into(),
        })
    }
}

/// Checks a subscription name: 1 to 64 bytes of `a-z 0-9 - _ .`, starting with a letter or
/// digit (it becomes part of a metrics label and a table cell).
///
/// # Errors
/// [`PluginError::Config`] naming the name and what is wrong with it.
pub fn validate_subscription_name(name: &str) -> Result<(), PluginError> {
    let ok_start = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if name.len() > 64 || !ok_start || !ok_rest {
        return Err(PluginError::config(format_args!(
            "subscription name {name:?}: use 1 to 64 of a-z 0-9 - _ ., starting with a letter or digit"
        )));
    }
    Ok(())
}

impl AbiSubscription {
    /// True if `event_type` / `category` is selected by the types, categories or patterns
    /// (not considering the filter). Patterns that do not parse never match.
    pub fn selects(&self, event_type: &str, category: u8) -> bool {
        self.event_types.iter().any(|t| t.as_str() == event_type)
            || self.categories.contains(&category)
            || self
                .patterns
                .iter()
                .any(|p| Pattern::parse(p.as_str()).is_ok_and(|p| p.matches(event_type)))
    }

    /// True if the event is selected and passes the filter: the host's whole delivery test.
    pub fn matches(&self, event: &crate::EventView<'_>) -> bool {
        self.selects(event.event_type.as_str(), event.category)
            && match &self.filter {
                ROption::RSome(f) => crate::filter_matches(f, event),
                ROption::RNone => true,
            }
    }
}

/// Converts a list of subscriptions, defaulting handler indexes to positions.
///
/// # Errors
/// An invalid subscription, or two with the same name.
pub(crate) fn to_abi_list(subs: &[Subscription]) -> Result<RVec<AbiSubscription>, PluginError> {
    let list: RVec<AbiSubscription> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| s.to_abi(u32::try_from(i).unwrap_or(u32::MAX)))
        .collect::<Result<_, _>>()?;
    for (i, sub) in list.iter().enumerate() {
        if !sub.name.is_empty() && list[..i].iter().any(|other| other.name == sub.name) {
            return Err(PluginError::config(format_args!(
                "two subscriptions are named {:?}",
                sub.name.as_str()
            )));
        }
    }
    Ok(list)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Filter;

    #[test]
    fn builder_converts_and_defaults_handler_to_position() {
        let subs = [
            Subscription::to_types(["user.login"]).timeout(Duration::from_millis(1500)),
            Subscription::to_categories([Category::Lifecycle, Category::Business])
                .pattern("security.*")
                .handler(7),
            Subscription::to_pattern("data.*").filter(Filter::new().eq("data.entity", "x")),
        ];
        let abi = to_abi_list(&subs).unwrap();
        assert_eq!(abi[0].handler, 0);
        assert_eq!(abi[0].timeout_ms, 1500);
        assert_eq!(abi[1].handler, 7);
        assert_eq!(abi[1].categories.as_slice(), &[0, 2]);
        assert_eq!(abi[1].timeout_ms, 0);
        assert_eq!(abi[2].handler, 2);
        assert!(abi[2].filter.is_some());

        assert!(abi[0].selects("user.login", 2));
        assert!(!abi[0].selects("user.logout", 2));
        assert!(abi[1].selects("plugin.loaded", 0));
        assert!(abi[1].selects("security.alert", 3));
        assert!(!abi[1].selects("system.startup", 1));
        assert!(abi[2].selects("data.created", 2));
    }

    #[test]
    fn invalid_parts_are_config_errors() {
        let bad_type = Subscription::to_types(["User Login"])
            .to_abi(0)
            .unwrap_err();
        assert!(matches!(bad_type, PluginError::Config(_)), "{bad_type}");
        let bad_pattern = Subscription::to_pattern("us*er").to_abi(0).unwrap_err();
        assert!(bad_pattern.message().contains("us*er"), "{bad_pattern}");
        let bad_filter = Subscription::to_pattern("*")
            .filter(Filter::new().exists("nope"))
            .to_abi(0)
            .unwrap_err();
        assert!(bad_filter.message().contains("nope"), "{bad_filter}");
    }
}
