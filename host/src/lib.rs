//! The plugbus host: plugin loader, manager, config and the plugbus binary.
//!
//! What lives here so far:
//! - [`config`]: `plugbus.toml` -> a validated [`Config`] of plain data.
//! - [`trust`]: may this `.so` be loaded? Directory allowlist, permission bits,
//!   symlinks, SHA-256 pins; checked before a library is opened.
//! - [`audit`]: verifies the hash chain of the audit-logger plugin's JSON Lines log.
//! - [`error`]: the typed errors of the modules above.
//!
//! None of these depend on the bus or the plugin ABI: they are the host's
//! gatekeeping and bookkeeping, usable on their own (and from the CLI).
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod audit;
pub mod config;
pub mod error;
pub mod trust;

pub use audit::{verify_file, verify_files, verify_reader, VerifyReport};
pub use config::{
    BusConfig, CircuitBreakerConfig, Config, Overflow, PluginSettings, PluginsConfig, RetryConfig,
};
pub use error::{
    ConfigError, ConfigErrorKind, Location, TrustError, TrustErrorKind, VerifyError,
    VerifyErrorKind,
};
pub use trust::{TrustPolicy, TrustedFile};
