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
//! ## Declaring it: the schema
//!
//! Derive [`ConfigSchema`](crate::schema) on the struct (feature `derive`, on by default) and
//! return it from [`Plugin::config_schema`](crate::Plugin::config_schema). The derive reads
//! the field types, serde's renames, `default` and `deny_unknown_fields`, and each field's doc
//! comment as its line of help; the defaults come from the struct's `Default` serialized, so
//! the struct also derives `Serialize`:
//!
//! ```
//! use plugbus_plugin_api::{ConfigSchema, DescribeConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Deserialize, Serialize, ConfigSchema)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     /// Failed logins before an account is locked.
//!     limit: u32,
//!     /// Users never locked.
//!     exempt: Vec<String>,
//! }
//! impl Default for Config {
//!     fn default() -> Self {
//!         Config { limit: 3, exempt: Vec::new() }
//!     }
//! }
//! // In `impl Plugin`: fn config_schema() -> Option<ConfigSchema> { Some(Config::config_schema()) }
//! let schema = Config::config_schema();
//! assert_eq!(schema.keys[0].help, "Failed logins before an account is locked.");
//! let problems = schema.check(&serde_json::json!({"limit": -1, "limt": 5})).unwrap_err();
//! assert_eq!(problems[0].to_string(), "key 'limit': expected an integer from 0 to 4294967295, got the number -1");
//! assert_eq!(problems[1].to_string(), "key 'limt': unknown key (known: limit, exempt)");
//! ```
//!
//! With a schema, `plugbus plugins inspect` lists the keys (type, default, help), and the
//! host checks the table against it **before** constructing the plugin: every key at fault
//! is named at once, and the plugin's code never sees a table of the wrong shape.
//! `FakeHost::load` makes the same check. The plugin's own `parse_config` and checks (ranges,
//! relations between keys) still run in `new`. A type without a schema of its own takes
//! `#[config(any)]` on its field; [`ConfigType`](crate::ConfigType) gives one to a type of
//! yours.
//!
//! ## When it changes
//!
//! With hot-plug on (`[plugins] watch = true`), `plugbus run` watches its config file too.
//! When a plugin's table changes, the host checks it against the schema and calls
//! [`Plugin::reconfigure`](crate::Plugin::reconfigure) on the running instance, between two
//! deliveries. Return [`Reconfigure::Applied`](crate::Reconfigure::Applied) once it runs with
//! the new table (its state kept), or [`Reconfigure::Reload`](crate::Reconfigure::Reload) (the
//! default) to be rebuilt from it by `new`, as a changed file would be. An error keeps the old
//! table. Each change is published as `config.changed` (which the audit logger records),
//! naming the plugins reconfigured, reloaded and refusing. Changes outside plugins' `config`
//! tables take effect at the next start, and `config.changed` lists them as such.
//!
//! ## When it is wrong
//!
//! A table that fails the schema, or an error from `new`
//! ([`PluginError::Config`](crate::PluginError::Config)): the plugin does not load, the host
//! publishes `plugin.error` with the message (stage `config` for the schema), and
//! `plugbus run` exits 1 (see [`errors`](super::errors)). `plugbus plugins check
//! [--config FILE]` checks, constructs, starts and stops every configured plugin without
//! reading events, so a bad table shows before a run.
