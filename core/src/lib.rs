//! # plugbus
//!
//! A thread-safe, tokio-native in-process event bus: typed events, subscriptions by type,
//! category or pattern, per-handler timeouts, retries, circuit breakers, deduplication, bounded
//! mailboxes, a dead-letter queue and a shutdown that accounts for every event.
//!
//! Plugins loaded from shared libraries are the host's business (`plugbus-host`); this crate
//! knows nothing of them.
//!
//! ## Which publishing method
//!
//! - [`Bus::publish`]: deliver now, to every match concurrently, and get every handler's
//!   [`Outcome`] back. Sync handlers run inline; nothing is queued. For request/response-like
//!   flows and tests.
//!
//!   ```
//!   # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!   use plugbus::{Bus, Event, EventType};
//!   use plugbus::payload::UserLogin;
//!   let bus = Bus::builder().build()?;
//!   bus.subscribe_typed(|login: &UserLogin| println!("welcome {}", login.user_id))?;
//!   let report = bus.publish(Event::new(UserLogin { user_id: "alice".into(), ..Default::default() })?).await?;
//!   assert!(report.all_delivered());
//!   # Ok(()) }
//!   ```
//!
//! - [`Bus::emit`]: enqueue into each matching subscription's bounded mailbox and return; each
//!   subscription's task delivers in order. A slow handler delays only itself. For
//!   fire-and-forget traffic.
//!
//!   ```
//!   # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!   use plugbus::{Bus, Event, EventType};
//!   use std::time::Duration;
//!   let bus = Bus::builder().build()?;
//!   bus.subscribe_pattern("data.*").name("indexer").handle(|e: &plugbus::Event| {
//!       let _ = e.data_json();
//!   })?;
//!   bus.emit(Event::builder(EventType::DATA_CREATED).json(r#"{"entity":"doc","entity_id":"1"}"#).build()?).await?;
//!   let account = bus.shutdown(Duration::from_secs(1)).await;
//!   assert!(account.is_balanced());
//!   assert_eq!(account.totals.delivered, 1);
//!   # Ok(()) }
//!   ```
//!
//! - [`Bus::try_emit`]: like `emit` from synchronous code; never waits for space.
//!
//! ## Which handler
//!
//! - [`handle`](SubscriptionBuilder::handle): `Fn(&Event)`, run inline; the cheapest. It must not
//!   block, and cannot be timed out.
//! - [`handle_async`](SubscriptionBuilder::handle_async): polled once inline; a timer is armed
//!   only if it does not finish at once.
//! - [`handle_blocking`](SubscriptionBuilder::handle_blocking): runs on tokio's blocking pool.
//! - [`handle_deferred`](SubscriptionBuilder::handle_deferred): hands the event on (a worker
//!   thread, a queue, a socket) with a [`Completion`] that is finished later, from anywhere. The
//!   cheap way to feed another thread: no future, channel or timer per delivery (see
//!   [`deferred`]). The plugin host feeds plugins this way.
//!
//! ## Guarantees
//!
//! - **Ordering**: through `emit`, each subscription sees events in the order they were
//!   enqueued. `publish` makes no ordering promise across concurrent callers.
//! - **No lock while a handler runs**: publishers read an immutable routing snapshot; handlers may
//!   publish, subscribe and unsubscribe re-entrantly.
//! - **Causation**: an event published while a handler runs gets the handled event's id as
//!   `causation_id` and its correlation id (see [`context`]).
//! - **Tracing**: an event carrying a W3C `traceparent` (and `tracestate`) passes its trace on to
//!   every event published while it is handled, each with a fresh span id (see
//!   [`trace_context`]). Events without one cost nothing extra.
//! - **Accounting**: every delivery ends delivered, skipped, failed or dead-lettered; the
//!   [`ShutdownReport`] balances to the event.
//! - **Panics** in handlers are caught and reported; they never unwind into the bus.
//! - **Threads**: the bus runs mailbox tasks on the runtime current at build (or one it owns,
//!   see [`BusBuilder::own_runtime`]).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod bus;
pub mod context;
mod counters;
mod dead_letter;
pub mod deferred;
mod dispatch;
mod drain;
mod emit;
mod error;
mod event;
mod event_type;
mod fence;
mod filter;
mod handler;
mod id;
mod interest;
mod mailbox;
mod metadata;
mod origin;
mod payload_value;
pub mod policy;
mod report;
mod shutdown;
mod stats;
mod subscription;
mod text;
pub mod timeout;
pub mod trace_context;
mod wire;

pub use bus::{Bus, BusBuilder, EventArg, Publish, ReplayReport};
pub use dead_letter::{DeadLetter, DeadLetterReason, DeadLetterSink};
pub use deferred::Completion;
pub use emit::Emit;
pub use error::{
    BuildError, DecodeError, EventError, EventTypeError, PayloadError, PublishError,
    PublishErrorKind, SubscribeError,
};
pub use event::{Event, EventBuilder, Metadata, DEFAULT_SOURCE};
pub use event_type::EventType;
pub use filter::{Filter, FilterId};
pub use handler::{HandlerError, HandlerResult, IntoHandlerResult};
pub use id::EventId;
pub use interest::Interest;
pub use mailbox::Overflow;
pub use origin::{Origin, OriginKind};
pub use payload_value::Payload;
pub use policy::breaker::{BreakerConfig, BreakerState};
pub use policy::dedup::DedupConfig;
pub use policy::retry::RetryPolicy;
pub use report::PublishReport;
pub use shutdown::ShutdownReport;
pub use stats::{BusStats, DeliveryTotals, LatencyHistogram, SubscriptionStats, LATENCY_BOUNDS};
pub use subscription::{DeliveryReport, Outcome, SubscriptionBuilder, SubscriptionId};
pub use trace_context::{TraceContext, TraceState};

pub use plugbus_contract as contract;
pub use plugbus_contract::{keys, payload, types, Category, Pattern, TypedEvent};
