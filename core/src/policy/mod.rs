//! Delivery policies: what happens around a handler call.
//!
//! Each policy is optional per subscription (`None` = off) and lives in its own module with its
//! own configuration type. The dispatcher applies them in this order, and the order matters:
//!
//! 1. **filter** — the subscription's own predicate; a miss is counted as skipped, not failed.
//! 2. **dedup** ([`dedup`]) — an event id seen before within the window is skipped; checked before
//!    the breaker so replays of delivered events never count as attempts.
//! 3. **breaker** ([`breaker`]) — an open circuit skips the call and fails fast.
//! 4. **retry** ([`retry`]) — retryable errors are tried again with jittered backoff; each attempt
//!    has its own timeout.
//! 5. **timeout** ([`crate::timeout`]) — per attempt, armed only if the handler did not finish on
//!    its first poll.
//!
//! A delivery that ends without success goes to the dead-letter queue (unless the subscription
//! turned that off) with the reason and the number of attempts.

pub mod breaker;
pub mod dedup;
pub mod retry;
