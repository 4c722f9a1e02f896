//! # Testing
//!
//! The [`testing`](crate::testing) module gives a plugin's unit tests a host:
//!
//! - [`FakeHost`](crate::testing::FakeHost) loads the plugin through the same root module
//!   and ABI calls a real host makes ([`FakeHost::load`](crate::testing::FakeHost::load)),
//!   records what it publishes and logs, and **refuses what the real host refuses**, with the
//!   same [`RefusalKind`](crate::RefusalKind) (a bad type name such as `Account Locked`, the
//!   host's own types and sources, a payload that is not one JSON value, an event over the
//!   size limit, ...). It refuses on demand too, as a busy or closing bus would
//!   ([`refuse_publishes_as`](crate::testing::FakeHost::refuse_publishes_as),
//!   [`refuse_next`](crate::testing::FakeHost::refuse_next)), to test how the plugin copes.
//! - [`TestEvent`](crate::testing::TestEvent) is an event to deliver: typed
//!   ([`TestEvent::typed`](crate::testing::TestEvent::typed)) or raw JSON, with builders for
//!   id, source, origin, time and metadata.
//! - [`LoadedPlugin`](crate::testing::LoadedPlugin) is the loaded instance:
//!   [`deliver`](crate::testing::LoadedPlugin::deliver) routes an event to every subscription
//!   that matches it (types, categories, patterns and filter, as the host decides) and returns
//!   each handler's result; [`handle`](crate::testing::LoadedPlugin::handle) calls one handler.
//!
//! ## Turning it on
//!
//! It needs this crate's feature `testing`, for the plugin's tests only: a second entry
//! under `[dev-dependencies]`. The plugin's library also needs `rlib` beside `cdylib`, so
//! that its tests can name the plugin type:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! plugbus-plugin-api = "0.1"
//!
//! [dev-dependencies]
//! plugbus-plugin-api = { version = "0.1", features = ["testing"] }
//! # or, against a checkout: { path = "../plugbus/plugin-api", features = ["testing"] }
//! ```
//!
//! The feature adds no dependency, and with Cargo's resolver 2 (the default since edition
//! 2021) it stays out of the `cdylib` that `cargo build` makes. `cargo doc` shows the module
//! whatever the features.
//!
//! ## A test
//!
//! The test of a plugin that publishes under a name the host refuses, caught before the
//! plugin ever meets a host:
//!
// Shown as plain Rust in every build of the docs; run as a doctest with the feature, and
// marked `ignore` only when doctests are collected without it (the example needs FakeHost).
#![cfg_attr(any(feature = "testing", not(doctest)), doc = "```rust")]
#![cfg_attr(all(not(feature = "testing"), doctest), doc = "```rust,ignore")]
//! use plugbus_plugin_api::contract::{payload::UserLoginFailed, Category};
//! use plugbus_plugin_api::testing::{FakeHost, TestEvent};
//! use plugbus_plugin_api::{
//!     export_plugin, Event, EventDraft, HostHandle, Plugin, PluginError, RefusalKind,
//!     Subscription,
//! };
//!
//! struct Lockout {
//!     host: HostHandle,
//! }
//!
//! impl Plugin for Lockout {
//!     const NAME: &'static str = "lockout";
//!     const VERSION: &'static str = "0.1.0";
//!
//!     fn new(host: HostHandle, _config: serde_json::Value) -> Result<Self, PluginError> {
//!         Ok(Lockout { host })
//!     }
//!
//!     fn subscriptions(&self) -> Vec<Subscription> {
//!         vec![Subscription::to_types(["user.login_failed"])]
//!     }
//!
//!     fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
//!         let failed: UserLoginFailed = event.data()?;
//!         tracing::info!(user = %failed.user_id, "locking");
//!         // A mistake: type names are dotted lowercase (`account.locked`).
//!         self.host.publish_with(EventDraft::new("Account Locked", Category::Business))?;
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Lockout);
//!
//! # fn main() -> Result<(), PluginError> {
//! // In the plugin crate this is a `#[test]` function.
//! let host = FakeHost::new();
//! let mut plugin = host.load::<Lockout>(serde_json::json!({}))?;
//! plugin.start()?;
//! let failed = TestEvent::typed(&UserLoginFailed {
//!     user_id: "bob".into(),
//!     ..Default::default()
//! });
//! let results = plugin.deliver(&failed);
//! assert_eq!(results.len(), 1); // one subscription matched
//! let error = results[0].1.clone().unwrap_err();
//! assert!(error.message().contains("'Account Locked'"), "{error}");
//! assert_eq!(host.refused()[0].kind, RefusalKind::Invalid);
//! assert!(host.published().is_empty());
//! assert_eq!(host.logs()[0].message, "locking");
//! plugin.stop()?;
//! # Ok(()) }
//! ```
//!
//! The [`testing`](crate::testing) module's own example shows a plugin publishing what the
//! host accepts, causation included, and one coping with a closed bus.
//!
//! ## What a fake host does not do
//!
//! Calls run on the test's thread, at once: no handler timeouts, retries, circuit breaker,
//! bus mailboxes or child processes. Test those through the host with the built library:
//! `plugbus plugins check` (construct, start and stop with the configuration), then
//! `plugbus run` over a few JSON Lines events.
