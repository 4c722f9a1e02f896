//! The restart policy of a supervised child process, as an OTP supervisor keeps it: at most
//! `max_restarts` restarts within any `restart_window`, each after an exponential backoff;
//! beyond that the plugin is failed and stays failed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The first backoff; each restart within the window doubles it, up to [`MAX_BACKOFF`].
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest backoff between two restarts.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Restarts granted so far, and the budget.
#[derive(Debug)]
pub(super) struct RestartBudget {
    max: u32,
    window: Duration,
    /// When each restart within the window was granted, oldest first.
    granted: VecDeque<Instant>,
}

impl RestartBudget {
    pub(super) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            granted: VecDeque::new(),
        }
    }

    /// After a crash at `now`: `Some(backoff)` to restart after waiting that long, or `None`
    /// when the budget is spent (the plugin is failed).
    pub(super) fn next(&mut self, now: Instant) -> Option<Duration> {
        while let Some(first) = self.granted.front() {
            if now.duration_since(*first) >= self.window {
                self.granted.pop_front();
            } else {
                break;
            }
        }
        if self.granted.len() >= usize::try_from(self.max).unwrap_or(usize::MAX) {
            return None;
        }
        let doublings = u32::try_from(self.granted.len())
            .unwrap_or(u32::MAX)
            .min(16);
        self.granted.push_back(now);
        Some(
            FIRST_BACKOFF
                .saturating_mul(1 << doublings)
                .min(MAX_BACKOFF),
        )
    }

    /// Restarts granted within the current window.
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.granted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_the_budget_ends() {
        let mut budget = RestartBudget::new(3, Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(budget.next(t), Some(Duration::from_millis(100)));
        assert_eq!(budget.next(t), Some(Duration::from_millis(200)));
        assert_eq!(budget.next(t), Some(Duration::from_millis(400)));
        assert_eq!(budget.next(t), None);
        assert_eq!(
            budget.next(t),
            None,
            "a spent budget stays spent within the window"
        );
    }

    #[test]
    fn restarts_older_than_the_window_are_forgotten() {
        let mut budget = RestartBudget::new(2, Duration::from_secs(10));
        let t = Instant::now();
        assert!(budget.next(t).is_some());
        assert!(budget.next(t + Duration::from_secs(5)).is_some());
        assert_eq!(budget.next(t + Duration::from_secs(9)), None);
        // The first one left the window: one more, with the backoff of the second.
        assert_eq!(
            budget.next(t + Duration::from_secs(10)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(budget.used(), 2);
    }

    #[test]
    fn zero_restarts_fails_at_the_first_crash_and_backoff_is_capped() {
        assert_eq!(
            RestartBudget::new(0, Duration::from_secs(1)).next(Instant::now()),
            None
        );
        let mut budget = RestartBudget::new(100, Duration::from_secs(3600));
        let t = Instant::now();
        let last = (0..40).filter_map(|_| budget.next(t)).last();
        assert_eq!(last, Some(MAX_BACKOFF));
    }
}
