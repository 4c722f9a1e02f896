//! The stable plugin ABI of plugbus, and the facade plugin authors build on.
//!
//! **Plugin authors** build on this crate: implement [`Plugin`], call [`export_plugin!`], build
//! a `cdylib`. **Hosts** embed `plugbus` and load plugins with `plugbus-host`, which uses the ABI
//! types here ([`abi`]). This crate changes very rarely: a breaking change to anything that
//! crosses the boundary comes only with a major bump of [`ABI_VERSION`], and abi_stable refuses
//! at load time any library whose types' layout differs. It depends on abi_stable, serde,
//! tracing and the event contract only — never on tokio or the bus.
//!
//! # A complete plugin
//!
//! ```
//! use plugbus_plugin_api::contract::payload::{SecurityAlert, Severity, UserLoginFailed};
//! use plugbus_plugin_api::{export_plugin, Event, HostHandle, Plugin, PluginError, Subscription};
//!
//! /// Raises an alert on every failed login of `root`.
//! struct RootWatch {
//!     host: HostHandle,
//! }
//!
//! impl Plugin for RootWatch {
//!     const NAME: &'static str = "root-watch";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "alerts on failed root logins";
//!
//!     fn new(host: HostHandle, _config: serde_json::Value) -> Result<Self, PluginError> {
//!         Ok(RootWatch { host })
//!     }
//!
//!     fn subscriptions(&self) -> Vec<Subscription> {
//!         vec![Subscription::to_types(["user.login_failed"])]
//!     }
//!
//!     fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
//!         let failed: UserLoginFailed = event.data()?;
//!         if failed.user_id == "root" {
//!             tracing::warn!(ip = %failed.ip, "failed root login");
//!             self.host.publish(&SecurityAlert {
//!                 reason: "root_login_failed".into(),
//!                 severity: Severity::High,
//!                 user_id: failed.user_id,
//!                 ip: failed.ip,
//!                 message: "someone tried to log in as root".into(),
//!                 count: 1,
//!                 window_secs: 0,
//!                 trigger_event_id: event.id_string(),
//!             })?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(RootWatch);
//! # fn main() {}
//! ```
//!
//! Its `Cargo.toml` says `crate-type = ["cdylib", "rlib"]` (the `rlib` lets unit tests use it
//! with the fake host of the [`testing`] module) and depends on this crate and `tracing`
//! (`serde_json` is re-exported here; `serde` with `derive` is needed for a typed
//! configuration). `tracing` events inside the plugin reach the host's log (see
//! [`log_bridge`]). `plugbus plugins new NAME` writes such a crate, ready to build.
//!
//! # The guide
//!
//! What the host does with a plugin, beyond these types, is in [`guide`]:
//! [threads](guide::threads) (one per instance; threads of the plugin's own, and stopping
//! them), [reloads](guide::reloads) (state lost, `stop` before the new `new`, old code kept
//! mapped), [configuration](guide::configuration) (the `config` table with serde),
//! [testing](guide::testing), [isolation](guide::isolation) (in process or in a child process
//! of its own), [errors and exit status](guide::errors), and a
//! [checklist](guide::checklist) before publishing a plugin.
//!
//! # Testing a plugin
//!
//! The [`testing`] module has [`FakeHost`](testing::FakeHost): it loads a plugin as a host
//! would, records what it publishes and logs, and refuses what the real host refuses, with
//! the same [`RefusalKind`]; [`TestEvent`](testing::TestEvent) is an event to deliver and
//! [`LoadedPlugin`](testing::LoadedPlugin) the loaded instance. It needs the feature
//! `testing`, which a plugin turns on for its tests only, with a second entry under
//! `[dev-dependencies]`:
//!
//! ```toml
//! [dependencies]
//! plugbus-plugin-api = "0.1"
//!
//! [dev-dependencies]
//! plugbus-plugin-api = { version = "0.1", features = ["testing"] }
//! # or, against a checkout: { path = "../plugbus/plugin-api", features = ["testing"] }
//! ```
//!
//! The feature adds no dependency and stays out of the plugin's `cdylib`. `cargo doc`
//! documents the module whatever the features (here and on docs.rs, marked with the feature
//! it needs); its examples run as doctests with
//! `cargo test -p plugbus-plugin-api --features testing --doc`.
//!
//! # Types
//!
//! - [`Plugin`]: what an author implements; [`export_plugin!`] exports it.
//! - [`Subscription`] and [`Filter`]: what the plugin wants delivered; [`Handlers`]: a
//!   function per (named) subscription.
//! - [`ConfigSchema`](struct@ConfigSchema) (`#[derive(ConfigSchema)]`, [`schema`]): the configuration a plugin
//!   declares, checked by the host before `new`; [`Reconfigure`]: what
//!   [`Plugin::reconfigure`] did with a changed one.
//! - [`Event`]: the event being handled (over the ABI's [`EventView`]).
//! - [`HostHandle`] and [`EventDraft`]: publishing and logging.
//! - [`parse_config`]: configuration parsing whose errors name the key.
//! - [`PluginError`]: retryable, permanent, config, invalid event, panicked.
//! - [`abi`]: the root module [`PluginMod`], [`PluginInfo`], [`ABI_VERSION`], [`abi_compatible`];
//!   with [`AbiPlugin`]/[`PluginBox`], [`AbiHost`]/[`HostBox`], [`OwnedEvent`],
//!   [`AbiSubscription`], [`AbiFilter`] and [`filter_matches`] they are the whole ABI.
//! - [`contract`]: the event contract (type names, categories, payload structs), re-exported.
//!
//! # Threading
//!
//! The host calls one plugin instance from one thread at a time (hence `&mut self`), so a
//! plugin needs no locking of its own state; it may publish from threads of its own, and
//! must stop them in [`Plugin::stop`] (see [`guide::threads`]). Plugins must
//! not rely on tokio: each library has its own copy of tokio's globals and finds no runtime.
//! Handlers are synchronous.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod abi;
mod config;
mod error;
mod export;
pub mod facade;
mod filter;
pub mod guide;
mod handlers;
pub mod log_bridge;
mod plugin;
mod refusal;
pub mod schema;
mod subscription;
// Documented whatever the features, so a plain `cargo doc` shows it (it depends on nothing and
// compiles as is); compiled for use only with the feature, so a plugin's cdylib never carries it.
#[cfg(any(feature = "testing", doc))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod view;

// Re-exports are part of the author-facing API: change them with semver care.
pub use abi::{abi_compatible, PluginInfo, PluginMod, PluginMod_Ref, ABI_VERSION};
pub use config::parse_config;
pub use error::PluginError;
pub use facade::{
    clone_host_box, host_box, AbiHost, EventDraft, HostBox, HostHandle, LogField, LogRecord,
    LogValue, OwnedEvent,
};
pub use filter::{filter_matches, AbiFilter, Filter, FilterCondition, FilterOp};
pub use handlers::{HandlerFn, Handlers};
/// `#[derive(ConfigSchema)]`: [`DescribeConfig`] and [`ConfigType`] for a serde config struct
/// (feature `derive`, on by default; see [`schema`]).
#[cfg(feature = "derive")]
pub use plugbus_plugin_api_derive::ConfigSchema;
pub use plugin::{AbiPlugin, Plugin, PluginBox, Reconfigure};
pub use refusal::{PublishError, PublishRefusal, RefusalKind};
pub use schema::{ConfigKey, ConfigProblem, ConfigSchema, ConfigType, DescribeConfig, ValueKind};
pub use subscription::{validate_subscription_name, AbiSubscription, Subscription};
pub use view::{format_uuid, Event, EventView, KeyValue};

/// The `#[sabi_trait]` generated items, for hosts that implement [`AbiHost`] or hold plugins.
pub mod sabi {
    pub use crate::facade::{AbiHost_TO, AbiHost_trait};
    pub use crate::plugin::{AbiPlugin_TO, AbiPlugin_trait};
}

/// The event contract (`plugbus-contract`): categories, type names, patterns, payload structs.
pub use plugbus_contract as contract;

/// The abi_stable crate this ABI is built with (hosts name `RResult`, `RStr`, ... through it, so
/// both sides agree on the version).
pub use abi_stable;

/// `serde_json`, whose `Value` carries plugin configuration.
pub use serde_json;

/// `tracing`, as the log bridge sees it; plugins may use it instead of depending on it.
pub use tracing;

/// Items the export macro expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{
        config_schema, info, lib_header, new_plugin, root_module, root_module_loader,
        ExportedPlugin, LIB_HEADER_SYMBOL,
    };
    pub use abi_stable::library::LibHeader;
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            crate::__private::LIB_HEADER_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
