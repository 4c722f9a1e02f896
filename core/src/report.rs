//! What [`Bus::publish`](crate::Bus::publish) returns.

use crate::id::EventId;
use crate::subscription::{DeliveryReport, Outcome};
use smallvec::SmallVec;

/// Every handler's outcome for one published event, in subscription order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The event.
    pub event_id: EventId,
    /// True if a bus-wide filter dropped the event (then `deliveries` is empty).
    pub filtered: bool,
    /// One entry per matching subscription.
    pub deliveries: SmallVec<[DeliveryReport; 4]>,
}

impl PublishReport {
    pub(crate) fn new(event_id: EventId, capacity: usize) -> Self {
        PublishReport {
            event_id,
            filtered: false,
            deliveries: SmallVec::with_capacity(capacity),
        }
    }

    pub(crate) fn filtered(event_id: EventId) -> Self {
        PublishReport {
            event_id,
            filtered: true,
            deliveries: SmallVec::new(),
        }
    }

    /// True if every matching handler succeeded (vacuously true with no match).
    pub fn all_delivered(&self) -> bool {
        self.deliveries.iter().all(|d| d.outcome.is_delivered())
    }

    /// How many handlers succeeded.
    pub fn delivered(&self) -> usize {
        self.deliveries
            .iter()
            .filter(|d| d.outcome.is_delivered())
            .count()
    }

    /// The deliveries that did not succeed (skips by filter or dedup excluded).
    pub fn failures(&self) -> impl Iterator<Item = &DeliveryReport> {
        self.deliveries.iter().filter(|d| {
            !matches!(
                d.outcome,
                Outcome::Delivered | Outcome::Skipped | Outcome::Duplicate
            )
        })
    }
}
