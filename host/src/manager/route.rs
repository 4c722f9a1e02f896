//! The bus side of one plugin subscription: what the bus calls for each delivery (filter
//! host-side, then hand the job to the plugin's queue), the interest a declared subscription
//! stands for, and what the bus gave up on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use plugbus::{Bus, Category, Completion, Event, HandlerError, Interest, Pattern, SubscriptionId};
use plugbus_plugin_api::{filter_matches, AbiFilter, AbiSubscription};
use tokio::sync::mpsc;

use super::{Job, PluginShared};
use crate::bridge;

/// The bus interest of a declared subscription: the union of its exact types (by name, so a
/// type not interned yet still matches whatever category it is published with), categories
/// (unknown ones never match) and patterns.
pub(super) fn interest_of(sub: &AbiSubscription) -> Result<Interest, String> {
    let mut interest = Interest::none();
    for name in sub.event_types.iter() {
        let pattern = Pattern::parse(name.as_str()).map_err(|e| e.to_string())?;
        if !pattern.is_exact() {
            return Err(format!("'{name}' is not an exact type name"));
        }
        interest = interest.or_pattern_parsed(pattern);
    }
    for category in sub.categories.iter() {
        if let Some(category) = Category::from_u8(*category) {
            interest = interest.or_category(category);
        }
    }
    for pattern in sub.patterns.iter() {
        interest = interest
            .or_pattern(pattern.as_str())
            .map_err(|e| e.to_string())?;
    }
    Ok(interest)
}

/// Deliveries the bus stopped waiting for (timed out, or cut off by shutdown) on these
/// subscriptions, as the bus counts them.
pub(super) fn given_up(bus: &Bus, ids: impl Iterator<Item = SubscriptionId>) -> u64 {
    ids.filter_map(|id| bus.subscription_stats(id))
        .map(|s| s.totals.timed_out + s.totals.shutdown)
        .sum()
}

/// What one plugin subscription's bus handler needs.
///
/// The bus owns this (through the subscription); it holds nothing that keeps the bus alive.
pub(super) struct Route {
    pub(super) handler: u32,
    pub(super) filter: Option<AbiFilter>,
    pub(super) tx: mpsc::UnboundedSender<Job>,
    pub(super) shared: Arc<PluginShared>,
}

impl Route {
    /// Hands `event` to the plugin thread with its completion; the thread finishes it.
    pub(super) fn deliver(&self, event: &Event, done: Completion) {
        let counters = &self.shared.counters;
        let payload = match event.payload().json_shared() {
            Ok(payload) => payload,
            Err(e) => {
                let error = format!("cannot serialize payload: {e}");
                done.finish(Err(HandlerError::permanent(error)));
                return;
            }
        };
        if let Some(filter) = &self.filter {
            if !bridge::with_view(event, &payload, |view| filter_matches(filter, view)) {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                done.finish(());
                return;
            }
        }
        counters.queued.fetch_add(1, Ordering::Relaxed);
        let job = Job::Handle {
            handler: self.handler,
            event: event.clone(),
            payload,
            done,
        };
        if let Err(mpsc::error::SendError(job)) = self.tx.send(job) {
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            if let Job::Handle { done, .. } = job {
                done.finish(Err(HandlerError::permanent(format!(
                    "plugin '{}' is not running",
                    self.shared.plugin_ref.name
                ))));
            }
        }
    }
}
