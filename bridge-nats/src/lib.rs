//! plugbus across processes: a NATS JetStream bridge with a durable SQLite outbox.
//!
//! The core bus stays in one process and knows no broker. This crate carries chosen events
//! between buses on an existing broker, NATS JetStream (one small server, at-least-once
//! streams, duplicate detection by message id):
//!
//! - **Out**: local events matching the `forward` patterns are written to the outbox (one
//!   SQLite file, WAL mode) and their delivery to the bridge completes once they are on disk;
//!   a relay publishes them, in order, on `<subject_prefix>.<type>` with the event's JSON
//!   envelope as payload and its id as `Nats-Msg-Id`, and marks each event done once
//!   JetStream acknowledges it (a commit's events are one row, deleted once all of them are
//!   done). A broker outage, a crash or `kill -9` loses nothing (see [`outbox`]).
//! - **In**: a durable pull consumer per host (`durable`) feeds the local bus; a message is
//!   acked once the local outcome is known, nacked with backoff if the bus cannot take it;
//!   a host's own events are dropped on receipt (`Plugbus-Host` header), so are ids it
//!   delivered before (redeliveries, also after a restart); received events carry the origin `remote:<host>` and are never
//!   forwarded again (see [`NatsBridge`]).
//! - **Transactional outbox**: [`Outbox::stage`] puts an event in the application's own
//!   SQLite transaction; it exists, and is published locally and to the broker, only if that
//!   transaction commits.
//!
//! Types: [`NatsConfig`] (the `[bridge.nats]` table), [`NatsBridge`] and its
//! [`BridgeBuilder`], [`BridgeStats`], [`Outbox`]; errors [`ConfigError`], [`OutboxError`],
//! [`BridgeError`]. [`inspect()`] reads a bridge's outbox and JetStream's view of its stream and
//! consumer from outside the bridge (a [`BridgeReport`], for `plugbus bridge stats`).
//!
//! # Guarantees
//! - Per forwarding host, events reach the stream in the order they were written to its
//!   outbox; a resend after a failure may repeat some, which the stream drops (inside its
//!   duplicate window, 2 minutes by default) and the receiver drops too (by id).
//! - Delivery to a remote bus is at least once from the broker's side and once per
//!   subscription on the receiving host, across its restarts too: the ids it delivered are
//!   written to its outbox file before each ack and kept until the server confirms the ack,
//!   and a restarted host drops the redeliveries of those ids. What remains is the moment
//!   between a handler finishing and the next ack's write (at most `ack_batch` messages):
//!   a host killed inside it gets those messages again, as at-least-once promises.

mod ack;
mod bridge;
pub mod config;
mod counters;
mod dedup;
mod error;
mod headers;
pub mod inspect;
pub mod local_server;
pub mod outbox;
mod receive;
mod record;
mod relay;
mod staged;
pub mod subject;
mod tail;
mod writer;

pub use bridge::{BridgeBuilder, NatsBridge, StatsHandle, FORWARD_SUBSCRIPTION};
pub use config::{NatsConfig, Storage, TlsConfig};
pub use counters::BridgeStats;
pub use error::{BridgeError, ConfigError, OutboxError};
pub use headers::{CAUSATION_ID, CORRELATION_ID, HOST, MSG_ID, ORIGIN};
pub use inspect::{inspect, BridgeReport, InspectError};
pub use outbox::Outbox;
