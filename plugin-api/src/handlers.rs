//! [`Handlers`]: a function per subscription, instead of one `handle` matching on an index.

use crate::{error::PluginError, subscription::Subscription, view::Event};
use std::fmt;

/// The function a [`Handlers`] entry calls: the plugin, then the event.
pub type HandlerFn<P> = Box<dyn FnMut(&mut P, &Event<'_>) -> Result<(), PluginError> + Send>;

/// Subscriptions, each with the function that handles its deliveries. Returned by
/// [`Plugin::handlers`](crate::Plugin::handlers); see there for an example.
///
/// Entries get handler indexes in order (0, 1, ...), replacing any set with
/// [`Subscription::handler`]; name them with [`Subscription::named`] to see the names in the
/// host's tables.
pub struct Handlers<P> {
    entries: Vec<(Subscription, HandlerFn<P>)>,
}

impl<P> Default for Handlers<P> {
    fn default() -> Self {
        Handlers {
            entries: Vec::new(),
        }
    }
}

impl<P> fmt::Debug for Handlers<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(s, _)| s))
            .finish()
    }
}

impl<P> Handlers<P> {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription and the function that handles what it delivers: a method
    /// (`Self::on_login`) or a closure `|plugin, event| ...`.
    pub fn on<F>(mut self, subscription: Subscription, handler: F) -> Self
    where
        F: FnMut(&mut P, &Event<'_>) -> Result<(), PluginError> + Send + 'static,
    {
        self.entries.push((subscription, Box::new(handler)));
        self
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The subscriptions, with handler indexes 0, 1, ... in order.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, (s, _))| s.clone().handler(u32::try_from(i).unwrap_or(u32::MAX)))
            .collect()
    }

    /// Calls the function of entry `index`.
    ///
    /// # Errors
    /// What the function returns; [`PluginError::Permanent`] for an index with no entry.
    pub fn call(
        &mut self,
        plugin: &mut P,
        index: u32,
        event: &Event<'_>,
    ) -> Result<(), PluginError> {
        match self.entries.get_mut(index as usize) {
            Some((_, f)) => f(plugin, event),
            None => Err(PluginError::permanent(format_args!(
                "no handler {index} ({} declared)",
                self.entries.len()
            ))),
        }
    }
}
