//! The plugbus host library: plugin loader, manager, config, hot-plug. The `plugbus` binary
//! (crate `plugbus-cli`) and `plugbus bench` (crate `plugbus-bench`) are built on it, so an
//! application embedding the host compiles neither clap nor the bench.
//!
//! - [`manager`]: [`PluginManager`] loads every plugin of the configured directories
//!   ([`PluginManager::load_all`] → [`LoadReport`]), runs each on its own thread, wires its
//!   subscriptions to the bus, reports [`PluginStatus`] and lifecycle events; `load`, `start`,
//!   `stop`, `unload`, `reload`, `shutdown`.
//! - [`loader`]: one function per loading phase (trust → library → abi_stable checks →
//!   interface version → construct), typed [`LoadError`]s, and [`inspect`] for
//!   `plugbus plugins inspect` (handshake without constructing).
//! - [`bridge`]: core events ⇄ ABI views, the host handle plugins call, error mapping.
//! - [`log_forward`]: plugin log lines into the host's `tracing`.
//! - [`isolation`]: a plugin in a supervised child process of its own (`isolation =
//!   "process"`), and the child's entry point.
//! - [`watch`]: hot-plug of added, removed and changed plugin files.
//! - [`bus_builder`]: the `[bus]` table onto a [`plugbus::BusBuilder`].
//!
//! Gatekeeping and bookkeeping:
//! - [`config`]: `plugbus.toml` -> a validated [`Config`] of plain data.
//! - [`elf`]: the ELF structure of a plugin file, checked before the dynamic loader sees it.
//! - [`trust`]: may this `.so` be loaded? Directory allowlist, permission bits,
//!   symlinks, SHA-256 pins; checked before a library is opened.
//! - [`audit`]: verifies the hash chain and seals of the audit-logger plugin's JSON Lines log.
//! - [`trace`]: causation trees and correlations read from that log (`plugbus trace`).
//! - [`flows`]: the map of who publishes and who receives what (`plugbus flows`).
//! - [`metrics`]: the bus's and the plugins' figures through the `metrics` facade, set from
//!   live snapshots when asked (nothing on the publish path).
//! - [`error`]: the typed errors of the modules above.
//!
//! None of these load a library or start a bus, so they are usable on their own (the CLI's
//! `plugins list` and `audit verify` use them that way).
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod audit;
pub mod bridge;
mod bus_setup;
pub mod config;
pub mod config_watch;
pub mod elf;
pub mod error;
pub mod flows;
pub mod isolation;
mod layout;
pub mod loader;
pub mod log_forward;
pub mod manager;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod outbound;
pub mod probe;
#[cfg(test)]
mod test_fifo;
pub mod trace;
pub mod trust;
pub mod watch;

pub use audit::{verify_file, verify_files, verify_reader, VerifyReport};
pub use bus_setup::bus_builder;
pub use config::{
    BusConfig, CircuitBreakerConfig, Config, Isolation, MetricsConfig, Overflow, PluginSettings,
    PluginsConfig, ProcessLimits, RetryConfig,
};
pub use config_watch::ConfigWatcher;
pub use error::{
    ConfigError, ConfigErrorKind, LoadError, LoadErrorKind, Location, ManagerError, TrustError,
    TrustErrorKind, VerifyError, VerifyErrorKind, WatchError,
};
pub use loader::{inspect, inspect_with_policy, Inspection, PluginMeta};
pub use manager::{
    DeclaredSubscription, LoadReport, ManagerOptions, PluginCounters, PluginManager, PluginState,
    PluginStatus, Reconfigured,
};
pub use trust::{TrustPolicy, TrustedFile};
pub use watch::Watcher;
