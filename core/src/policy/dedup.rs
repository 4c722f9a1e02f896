//! Deduplication by event id.
//!
//! Brokers redeliver and operators replay: with dedup on, an event id that reached this
//! subscription within the last `window` distinct ids (and, if set, within `ttl`) is skipped.
//! An id is remembered when its delivery starts and forgotten again if the delivery finally
//! fails, so retries are never duplicates and a failed event can be replayed from the
//! dead-letter queue.

use crate::id::EventId;
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Dedup settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// How many recent ids are remembered. The default is 10,000.
    pub window: usize,
    /// How long an id is remembered; `None` = until pushed out of the window. The default is
    /// `None`.
    pub ttl: Option<Duration>,
}

impl DedupConfig {
    /// Remember the last `window` distinct ids (at least 1), with no time limit.
    ///
    /// ```
    /// use plugbus::DedupConfig;
    /// use std::time::Duration;
    /// let cfg = DedupConfig::new(50_000).ttl(Duration::from_secs(600));
    /// assert_eq!(cfg.window, 50_000);
    /// ```
    pub fn new(window: usize) -> DedupConfig {
        DedupConfig {
            window: window.max(1),
            ttl: None,
        }
    }

    /// Forget an id after `ttl`, even if it is still within the window.
    pub fn ttl(mut self, ttl: Duration) -> DedupConfig {
        self.ttl = Some(ttl);
        self
    }
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window: 10_000,
            ttl: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Dedup {
    cfg: DedupConfig,
    inner: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    seen: HashSet<EventId>,
    order: VecDeque<(EventId, Instant)>,
}

impl Dedup {
    pub(crate) fn new(cfg: DedupConfig) -> Dedup {
        Dedup {
            cfg: DedupConfig {
                window: cfg.window.max(1),
                ttl: cfg.ttl,
            },
            inner: Mutex::new(Window::default()),
        }
    }

    /// Records `id`; false if it was already there (a duplicate).
    pub(crate) fn first_time(&self, id: EventId) -> bool {
        let now = Instant::now();
        let mut w = self.inner.lock();
        if let Some(ttl) = self.cfg.ttl {
            while let Some(&(old, at)) = w.order.front() {
                if now.duration_since(at) < ttl {
                    break;
                }
                w.order.pop_front();
                w.seen.remove(&old);
            }
        }
        if !w.seen.insert(id) {
            return false;
        }
        w.order.push_back((id, now));
        while w.order.len() > self.cfg.window {
            if let Some((old, _)) = w.order.pop_front() {
                w.seen.remove(&old);
            }
        }
        true
    }

    /// Forgets `id` after a failed delivery, so it may be replayed.
    pub(crate) fn forget(&self, id: EventId) {
        let mut w = self.inner.lock();
        if w.seen.remove(&id) {
            w.order.retain(|(x, _)| *x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_memory_and_forget_allows_replay() {
        let d = Dedup::new(DedupConfig {
            window: 3,
            ttl: None,
        });
        let ids: Vec<EventId> = (0..5).map(|_| EventId::new()).collect();
        assert!(d.first_time(ids[0]));
        assert!(!d.first_time(ids[0]));
        for id in &ids[1..4] {
            assert!(d.first_time(*id));
        }
        assert!(d.first_time(ids[0]), "pushed out of the 3-id window");
        d.forget(ids[3]);
        assert!(d.first_time(ids[3]), "forgotten after failure");
        assert!(d.inner.lock().order.len() <= 3);
    }

    #[test]
    fn ttl_expires_ids() {
        let d = Dedup::new(DedupConfig {
            window: 100,
            ttl: Some(Duration::from_millis(20)),
        });
        let id = EventId::new();
        assert!(d.first_time(id));
        assert!(!d.first_time(id));
        std::thread::sleep(Duration::from_millis(30));
        assert!(d.first_time(id));
    }
}
