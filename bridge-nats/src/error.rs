//! The bridge's errors: one type per job (config, outbox, broker).

use std::path::PathBuf;

/// A `[bridge.nats]` table that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The table does not parse (an unknown key, a wrong type); the message names the key.
    #[error("bridge.nats: {message}")]
    Toml {
        /// The parser's report.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("bridge.nats: invalid value for '{key}': {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The outbox store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The SQLite file could not be opened or set up.
    #[error("outbox '{path}': {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("outbox: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The event could not be turned into its JSON envelope.
    #[error("outbox: the event does not serialize: {0}")]
    Encode(#[from] serde_json::Error),
    /// The outbox's writer has stopped (the bridge is shutting down).
    #[error("outbox: the writer has stopped")]
    Closed,
    /// A stored batch of events is not what the writer writes (a damaged file).
    #[error("outbox: the batch of events from number {first_seq} is damaged: {reason}")]
    Damaged {
        /// The first sequence number of the batch.
        first_seq: i64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Starting or running the bridge failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The credentials file could not be read.
    #[error("bridge.nats: credentials file '{path}': {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached.
    #[error("bridge.nats: cannot connect to '{url}': {message}")]
    Connect {
        /// The server.
        url: String,
        /// The client's report.
        message: String,
    },
    /// A JetStream request (stream or consumer set-up) failed.
    #[error("bridge.nats: {what}: {message}")]
    JetStream {
        /// What was asked.
        what: String,
        /// The server's or client's report.
        message: String,
    },
    /// The local bus refused a subscription.
    #[error("bridge.nats: subscribing on the local bus: {0}")]
    Subscribe(#[from] plugbus::SubscribeError),
}
