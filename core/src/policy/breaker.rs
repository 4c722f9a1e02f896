//! Circuit breaker per subscription.
//!
//! After `failure_threshold` consecutive failures or timeouts the circuit opens: deliveries fail
//! fast as `CircuitOpen` instead of calling a handler that is down or hung (a hung blocking
//! handler would otherwise take a thread per event). After `cool_down` one trial delivery is let
//! through (half-open); its success closes the circuit, its failure opens it again.
//!
//! The closed state costs one atomic load per delivery; the clock is read only while open.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit. The default is 5.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a trial. The default is 30 s.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    /// Opens after `failure_threshold` consecutive failures, tries again after `cool_down`.
    pub fn new(failure_threshold: u32, cool_down: Duration) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: failure_threshold.max(1),
            cool_down,
        }
    }
}

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries go through.
    Closed,
    /// Deliveries fail fast.
    Open,
    /// One trial delivery is in flight.
    HalfOpen,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug)]
pub(crate) struct Breaker {
    cfg: BreakerConfig,
    state: AtomicU8,
    consecutive: AtomicU32,
    opened_at_nanos: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    pub(crate) fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            state: AtomicU8::new(CLOSED),
            consecutive: AtomicU32::new(0),
            opened_at_nanos: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// May a delivery go ahead now?
    pub(crate) fn allow(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            CLOSED => true,
            OPEN => {
                let opened = self.opened_at_nanos.load(Ordering::Acquire);
                let cool = u64::try_from(self.cfg.cool_down.as_nanos()).unwrap_or(u64::MAX);
                self.now().saturating_sub(opened) >= cool
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            }
            _ => false,
        }
    }

    pub(crate) fn on_success(&self) {
        self.consecutive.store(0, Ordering::Release);
        if self.state.load(Ordering::Acquire) != CLOSED {
            self.state.store(CLOSED, Ordering::Release);
        }
    }

    /// Records a failure; returns true if this failure opened the circuit.
    pub(crate) fn on_failure(&self) -> bool {
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let state = self.state.load(Ordering::Acquire);
        if state == HALF_OPEN || (state == CLOSED && n >= self.cfg.failure_threshold) {
            self.opened_at_nanos.store(self.now(), Ordering::Release);
            self.state.store(OPEN, Ordering::Release);
            return true;
        }
        false
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_after_cool_down() {
        let b = Breaker::new(BreakerConfig::new(3, Duration::from_millis(30)));
        assert!(b.allow());
        assert!(!b.on_failure());
        assert!(!b.on_failure());
        b.on_success();
        assert!(!b.on_failure());
        assert!(!b.on_failure());
        assert!(b.on_failure(), "third consecutive failure opens");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one trial after cool-down");
        assert!(!b.allow(), "only one trial at a time");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.on_failure(), "failed trial re-opens");
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }
}
