//! What [`Bus::publish`](crate::Bus::publish) returns.
//!
//! A report is made for every publish and usually dropped a moment later, so its list of
//! deliveries recycles its buffer: a dropped report leaves the buffer in a per-thread slot that
//! the next report on that thread takes, instead of a `malloc` and a `free` per publish. The report itself stays small (48 bytes), so returning it through the future and
//! the caller's `?` moves a few words, not an inline array.

use crate::id::EventId;
use crate::subscription::{DeliveryReport, Outcome};
use std::cell::Cell;

/// Every handler's outcome for one published event, in subscription order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The event.
    pub event_id: EventId,
    /// True if a bus-wide filter dropped the event (then `deliveries` is empty).
    pub filtered: bool,
    /// One entry per matching subscription.
    pub deliveries: Vec<DeliveryReport>,
}

/// The largest buffer kept (larger ones are freed).
const LARGEST: usize = 1024;

thread_local! {
    /// One spare buffer per thread: publishes on a thread follow each other, so one is enough
    /// (a publish nested in a handler simply allocates).
    static SPARE: Cell<Vec<DeliveryReport>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer for at least `capacity` deliveries, recycled when one is at hand.
#[inline]
fn buffer(capacity: usize) -> Vec<DeliveryReport> {
    let mut v = SPARE.try_with(Cell::take).unwrap_or_default();
    v.reserve(capacity);
    v
}

impl Drop for PublishReport {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.deliveries);
        if v.capacity() == 0 || v.capacity() > LARGEST {
            return;
        }
        v.clear();
        // During thread teardown the spare may be gone: the buffer is then simply freed.
        let _ = SPARE.try_with(|s| s.set(v));
    }
}

impl PublishReport {
    pub(crate) fn new(event_id: EventId, capacity: usize) -> Self {
        PublishReport {
            event_id,
            filtered: false,
            deliveries: if capacity == 0 {
                Vec::new()
            } else {
                buffer(capacity)
            },
        }
    }

    pub(crate) fn filtered(event_id: EventId) -> Self {
        PublishReport {
            event_id,
            filtered: true,
            deliveries: Vec::new(),
        }
    }

    /// Takes the deliveries out (the report recycles its buffer when dropped, so its fields
    /// cannot be moved out directly).
    ///
    /// ```
    /// # async fn f(bus: plugbus::Bus, event: plugbus::Event) -> Result<(), plugbus::PublishError> {
    /// let deliveries: Vec<plugbus::DeliveryReport> = bus.publish(event).await?.into_deliveries();
    /// # Ok(()) }
    /// ```
    pub fn into_deliveries(mut self) -> Vec<DeliveryReport> {
        std::mem::take(&mut self.deliveries)
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
