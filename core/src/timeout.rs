//! Per-attempt timeouts that cost nothing when the handler finishes at once.
//!
//! Arming a tokio timer costs tens of nanoseconds, more than most handlers take. So the handler's
//! future is polled first, and the timer is created only if that poll returns `Pending`; the
//! deadline is still measured from the start of the attempt.

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The attempt did not finish within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct Elapsed(pub Duration);

pin_project! {
    /// A future with a lazily armed deadline; see the [module docs](self).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Deadline<F> {
        #[pin]
        fut: F,
        timeout: Duration,
        started: Instant,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Deadline<F> {
    /// Runs `fut` with `timeout`, counted from now.
    pub fn new(fut: F, timeout: Duration) -> Self {
        Deadline {
            fut,
            timeout,
            started: Instant::now(),
            sleep: None,
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let deadline = *this.started + *this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(*this.timeout))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_futures_never_arm_a_timer_and_slow_ones_time_out() {
        let mut d = Box::pin(Deadline::new(async { 7 }, Duration::from_millis(5)));
        let r = std::future::poll_fn(|cx| Poll::Ready(d.as_mut().poll(cx))).await;
        assert_eq!(r, Poll::Ready(Ok(7)));
        assert!(d.sleep.is_none());

        let slow = Deadline::new(
            tokio::time::sleep(Duration::from_secs(10)),
            Duration::from_millis(5),
        );
        assert_eq!(slow.await, Err(Elapsed(Duration::from_millis(5))));

        let ok = Deadline::new(
            tokio::time::sleep(Duration::from_millis(1)),
            Duration::from_millis(5),
        );
        assert_eq!(ok.await, Ok(()));
    }
}
