//! Event predicates: per-subscription filters and bus-wide filters.
//!
//! A per-subscription filter skips deliveries to one subscription (counted as skipped). A
//! bus-wide filter, added with [`Bus::add_filter`](crate::Bus::add_filter), drops an event before
//! any routing (counted as filtered); every bus-wide filter must accept an event for it to be
//! dispatched.

use crate::event::Event;
use std::fmt;
use std::sync::Arc;

/// A shareable predicate over events.
///
/// ```
/// use plugbus::{Event, EventType, Filter};
/// let only_auth = Filter::new(|e: &Event| e.source() == "auth");
/// let e = Event::builder(EventType::USER_LOGIN).source("auth").build()?;
/// assert!(only_auth.matches(&e));
/// # Ok::<(), plugbus::EventError>(())
/// ```
#[derive(Clone)]
pub struct Filter(Arc<dyn Fn(&Event) -> bool + Send + Sync>);

impl Filter {
    /// Wraps a predicate.
    pub fn new(f: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Filter {
        Filter(Arc::new(f))
    }

    /// Does `event` pass?
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        (self.0)(event)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Filter(..)")
    }
}

impl<F: Fn(&Event) -> bool + Send + Sync + 'static> From<F> for Filter {
    fn from(f: F) -> Self {
        Filter::new(f)
    }
}

/// Identifies a bus-wide filter, for [`Bus::remove_filter`](crate::Bus::remove_filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilterId(pub(crate) u64);
