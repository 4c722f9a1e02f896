//! # Configuration
//!
//! A plugin's configuration is the `config` table of its `[plugin.NAME]` section in the
//! host's config file (`plugbus.toml`):
//!
//! ```toml
//! [plugin.lockout]
//! timeout = "2s"          # the host's own keys for this plugin
//!
//! [plugin.lockout.config] # the plugin's: handed to it as they are
//! limit = 5
//! users = ["root", "admin"]
//! ```
//!
//! It reaches [`Plugin::new`](crate::Plugin::new) as JSON, a [`serde_json::Value`] object:
//! `{"limit": 5, "users": ["root", "admin"]}`, or `{}` when the table is missing. TOML's
//! integers and floats become numbers (the host refuses non-finite floats when it reads its
//! config), date-times become strings in TOML's format, tables become objects.
//!
//! ## Reading it into a struct
//!
//! [`parse_config`](crate::parse_config) deserializes it into a serde struct and, on error,
//! names the key at fault (`invalid configuration for plugin 'lockout': key 'limit': invalid
//! type: string "many", expected u32`), which serde alone does not. The struct wants:
//!
//! - **`#[serde(default)]`** on the struct, with a [`Default`] impl, so that every key is
//!   optional and a missing key takes its default. `parse_config` finds the key at fault by
//!   reading each key on its own, which only works when every other key may be missing; for a
//!   key that must be given, use an `Option` and check it in `new`. A default other than the
//!   type's is a field attribute, `#[serde(default = "path::to_fn")]`.
//! - **`#[serde(deny_unknown_fields)]`**, so that a misspelt key (`limt`) is an error naming
//!   it instead of a setting silently ignored.
//! - A **`serde` dependency with `derive`** in the plugin's own `Cargo.toml` (this crate
//!   re-exports [`serde_json`], but the derive macros need `serde` itself):
//!   `serde = { version = "1", features = ["derive"] }`.
//!
//! ```
//! use plugbus_plugin_api::{parse_config, PluginError};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     /// Failed logins before an account is locked.
//!     limit: u32,
//!     /// Users never locked.
//!     exempt: Vec<String>,
//! }
//!
//! impl Default for Config {
//!     fn default() -> Self {
//!         Config { limit: 3, exempt: Vec::new() }
//!     }
//! }
//!
//! /// What `Plugin::new` would do with its `config` argument.
//! fn read(config: serde_json::Value) -> Result<Config, PluginError> {
//!     let config: Config = parse_config("lockout", config)?;
//!     // A check of your own names the key too.
//!     if config.limit == 0 {
//!         return Err(PluginError::config("invalid configuration for plugin 'lockout': \
//!                                          key 'limit': must be at least 1"));
//!     }
//!     Ok(config)
//! }
//!
//! assert_eq!(read(serde_json::json!({}))?.limit, 3); // no table: every default
//! assert_eq!(read(serde_json::json!({"limit": 5}))?.limit, 5);
//!
//! let typo = read(serde_json::json!({"limt": 5})).unwrap_err();
//! assert!(typo.message().contains("key 'limt': unknown field"), "{typo}");
//! let bad = read(serde_json::json!({"exempt": ["root"], "limit": "many"})).unwrap_err();
//! assert!(bad.message().contains("key 'limit': invalid type: string \"many\""), "{bad}");
//! assert!(matches!(read(serde_json::json!({"limit": 0})), Err(PluginError::Config(_))));
//! # Ok::<(), PluginError>(())
//! ```
//!
//! ## When it is wrong
//!
//! `new` returns the error ([`PluginError::Config`](crate::PluginError::Config)): the plugin
//! does not load, the host publishes `plugin.error` with the message, and `plugbus run`
//! exits 1 (see [`errors`](super::errors)). `plugbus plugins check` constructs, starts and
//! stops every configured plugin without reading events, so a bad table shows before a run.
//! The configuration is handed over once, to `new`: keep what the plugin needs of it in its
//! own struct.
