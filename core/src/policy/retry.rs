//! Retry with exponential backoff and jitter.
//!
//! Only errors the handler marks [`retryable`](crate::HandlerError::retryable) are retried:
//! a timeout or a panic says nothing about whether trying again is safe, and retrying permanent
//! errors only multiplies load. Backoff doubles per attempt up to a cap, and each delay is
//! jittered (uniform in `[delay/2, delay]`) so that many subscriptions failing together do not
//! retry in lock-step against the resource that failed them.

use std::time::Duration;

/// How a subscription retries retryable failures.
///
/// ```
/// use plugbus::RetryPolicy;
/// use std::time::Duration;
/// let p = RetryPolicy::new(3).initial_backoff(Duration::from_millis(10));
/// assert_eq!(p.max_attempts(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    jitter: bool,
}

impl RetryPolicy {
    /// At most `max_attempts` calls in all (the first included). Defaults: initial backoff
    /// 10 ms, max backoff 1 s, jitter on.
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            jitter: true,
        }
    }

    /// The delay before the first retry. The default is 10 ms.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// The largest delay. The default is 1 s.
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Whether delays are jittered. The default is true.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Calls in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// True if a failure on attempt `attempt` (1-based) may be followed by another.
    pub fn should_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The delay after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        if self.jitter && !base.is_zero() {
            let half = base / 2;
            let span = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
            half + Duration::from_nanos(fastrand::u64(0..=span))
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let p = RetryPolicy::new(10)
            .initial_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(100))
            .jitter(false);
        assert_eq!(p.backoff(1), Duration::from_millis(10));
        assert_eq!(p.backoff(2), Duration::from_millis(20));
        assert_eq!(p.backoff(4), Duration::from_millis(80));
        assert_eq!(p.backoff(5), Duration::from_millis(100));
        assert_eq!(p.backoff(40), Duration::from_millis(100));
        let j = p.jitter(true);
        for attempt in 1..8 {
            let d = j.backoff(attempt);
            let base = p.backoff(attempt);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
        assert!(p.should_retry(9));
        assert!(!p.should_retry(10));
        assert_eq!(RetryPolicy::new(0).max_attempts(), 1);
    }
}
