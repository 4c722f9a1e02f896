//! The ids of events received lately, so a redelivered event reaches the local bus once.

use plugbus::EventId;
use std::collections::{HashSet, VecDeque};

/// A bounded set of event ids: the oldest is forgotten when a new one would exceed the
/// capacity. The broker redelivers within its ack wait, so a window of the last N ids (N well
/// above what can be in flight) catches every redelivery of a live consumer.
#[derive(Debug)]
pub(crate) struct SeenIds {
    set: HashSet<EventId>,
    order: VecDeque<EventId>,
    capacity: usize,
}

impl SeenIds {
    pub(crate) fn new(capacity: usize) -> SeenIds {
        SeenIds {
            set: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn contains(&self, id: &EventId) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`; false if it was known already.
    pub(crate) fn insert(&mut self, id: EventId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest() {
        let ids: Vec<EventId> = (0..3).map(|_| EventId::new()).collect();
        let mut seen = SeenIds::new(2);
        assert!(seen.insert(ids[0]));
        assert!(!seen.insert(ids[0]));
        assert!(seen.insert(ids[1]));
        assert!(seen.insert(ids[2]));
        assert!(!seen.contains(&ids[0]));
        assert!(seen.contains(&ids[1]) && seen.contains(&ids[2]));
    }
}
