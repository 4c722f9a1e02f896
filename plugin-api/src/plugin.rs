//! The plugin object: [`AbiPlugin`] (ABI trait object, host side) and [`Plugin`] (what authors
//! implement).
//!
//! # Call order
//!
//! The host guarantees, for one plugin instance, all calls from one thread at a time:
//!
//! 1. `new(host, config)` — construct; fail with [`PluginError::Config`] on bad config;
//! 2. `subscriptions()` — once, right after construction;
//! 3. `start()` — once, before any event;
//! 4. `handle(handler, event)` — any number of times, in order per subscription;
//! 5. `stop()` — once, when the plugin is unloaded or the host shuts down; then the object is
//!    dropped.
//!
//! A panic in any of them is caught by the export macro and reported as
//! [`PluginError::Panicked`]; the host decides whether to keep using the instance.
// The `#[sabi_trait]` expansion trips these lints on current compilers (DESIGN.md section 5).
#![allow(non_local_definitions, non_camel_case_types)]

use crate::{
    error::PluginError, facade::HostHandle, subscription::AbiSubscription,
    subscription::Subscription, view::Event, view::EventView,
};
use crate::{handlers::Handlers, schema::ConfigSchema};
use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RStr, RVec},
};

/// The ABI trait of a plugin instance. Hosts call it through [`PluginBox`]; plugin authors
/// implement [`Plugin`] instead and let [`export_plugin!`](crate::export_plugin) adapt it.
///
/// Methods may only be appended (after `stop`), with a default, in a minor ABI version.
#[sabi_trait]
pub trait AbiPlugin: Send {
    /// The plugin's subscriptions. Called once after construction.
    fn subscriptions(&self) -> RResult<RVec<AbiSubscription>, PluginError>;

    /// Called once before the first event.
    fn start(&mut self) -> RResult<(), PluginError>;

    /// Handles one event for the subscription whose `handler` index is given.
    fn handle(&mut self, handler: u32, event: &EventView<'_>) -> RResult<(), PluginError>;

    /// Called once when the plugin is unloaded or the host shuts down.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;

    /// Applies a new configuration (JSON text of an object) to the running instance: `true`
    /// if it did, `false` if the host should reload the plugin instead. Called between two
    /// `handle` calls, on the instance's thread. Since ABI 0.4; the default asks for a reload.
    fn reconfigure(&mut self, config_json: RStr<'_>) -> RResult<bool, PluginError> {
        let _ = config_json;
        RResult::ROk(false)
    }
}

/// An owned plugin instance as the host holds it (`Send`, not `Sync`: one thread at a time).
pub type PluginBox = AbiPlugin_TO<'static, RBox<()>>;

/// What a plugin author implements. See the crate docs for a complete plugin.
///
/// Only [`Plugin::new`] is required, with either [`Plugin::handlers`] (a function per
/// subscription) or [`Plugin::subscriptions`] and [`Plugin::handle`] (one function, a handler
/// index or [`Event::subscription`] to tell them apart).
///
/// # Call order
///
/// The host calls one instance from one thread at a time, in this order:
/// [`new`](Plugin::new), [`subscriptions`](Plugin::subscriptions) (once),
/// [`start`](Plugin::start) (once), [`handle`](Plugin::handle) (any number of times, in order per
/// subscription), [`stop`](Plugin::stop) (once), then drop. A panic in any of them (or in `drop`)
/// is caught by [`export_plugin!`](crate::export_plugin) and reported as
/// [`PluginError::Panicked`]; the host decides whether to keep using the instance.
pub trait Plugin: Sized + Send + 'static {
    /// The plugin's name, unique among the host's plugins (e.g. `audit-logger`).
    const NAME: &'static str;
    /// The plugin's version, usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// A one-line description.
    const DESCRIPTION: &'static str = "";

    /// Builds the plugin from its host handle and configuration (the plugin's table from the
    /// host config, `{}` if there is none; read it with [`parse_config`](crate::parse_config),
    /// see [`guide::configuration`](crate::guide::configuration)).
    ///
    /// # Errors
    /// [`PluginError::Config`] naming the offending key when the configuration is invalid.
    fn new(host: HostHandle, config: serde_json::Value) -> Result<Self, PluginError>;

    /// The plugin's configuration schema: keys, types, defaults and help, which
    /// `plugbus plugins inspect` shows and the host checks the `config` table against before
    /// calling [`new`](Plugin::new). Usually derived: `Some(MyConfig::config_schema())` with
    /// `#[derive(ConfigSchema)]` on the config struct (see [`schema`](crate::schema)). The
    /// default declares none, and the plugin's own parsing is the only check.
    fn config_schema() -> Option<ConfigSchema> {
        None
    }

    /// A function per subscription: when this returns any, they are the plugin's whole set of
    /// subscriptions, and [`subscriptions`](Plugin::subscriptions) and
    /// [`handle`](Plugin::handle) are not called. Called once, right after `new`.
    ///
    /// ```
    /// use plugbus_plugin_api::{Event, Handlers, HostHandle, Plugin, PluginError, Subscription};
    /// struct Counter { logins: u64, logouts: u64 }
    /// impl Counter {
    ///     fn login(&mut self, _event: &Event<'_>) -> Result<(), PluginError> {
    ///         self.logins += 1;
    ///         Ok(())
    ///     }
    /// }
    /// impl Plugin for Counter {
    ///     const NAME: &'static str = "counter";
    ///     const VERSION: &'static str = "0.1.0";
    ///     fn new(_: HostHandle, _: serde_json::Value) -> Result<Self, PluginError> {
    ///         Ok(Counter { logins: 0, logouts: 0 })
    ///     }
    ///     fn handlers(&self) -> Handlers<Self> {
    ///         Handlers::new()
    ///             .on(Subscription::to_types(["user.login"]).named("logins"), Self::login)
    ///             .on(Subscription::to_types(["user.logout"]).named("logouts"), |me, _event| {
    ///                 me.logouts += 1;
    ///                 Ok(())
    ///             })
    ///     }
    /// }
    /// ```
    fn handlers(&self) -> Handlers<Self> {
        Handlers::new()
    }

    /// The events to deliver, and to which handler index (unless
    /// [`handlers`](Plugin::handlers) returns any). The default subscribes to nothing.
    fn subscriptions(&self) -> Vec<Subscription> {
        Vec::new()
    }

    /// Called once before the first event.
    ///
    /// # Errors
    /// Any [`PluginError`]; the host then does not deliver events to this instance.
    fn start(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Handles one event delivered through subscription `handler` (whose name, if it has one,
    /// is [`event.subscription()`](Event::subscription)). Not called when
    /// [`handlers`](Plugin::handlers) returns any.
    ///
    /// # Errors
    /// [`PluginError::Retryable`] to ask for a retry, any other variant to fail the delivery.
    /// The default fails every delivery as permanent (a plugin that subscribes must handle).
    fn handle(&mut self, handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
        Err(PluginError::permanent(format_args!(
            "plugin '{}' has no handler for subscription {handler} ('{}' event)",
            Self::NAME,
            event.event_type()
        )))
    }

    /// Applies a changed configuration without a reload, when the host's config file changes
    /// with hot-plug on. The table has passed the [schema](Plugin::config_schema) already.
    ///
    /// Return [`Reconfigure::Applied`] once the instance runs with `config` (its state kept),
    /// [`Reconfigure::Reload`] to have the host reload the plugin instead (the default: a new
    /// instance built by [`new`](Plugin::new) from the new table). Subscriptions are not read
    /// again after `Applied`: return `Reload` when they depend on the changed keys.
    ///
    /// # Errors
    /// [`PluginError::Config`] naming the offending key: the instance keeps its old
    /// configuration and the host reports the refusal.
    fn reconfigure(&mut self, config: serde_json::Value) -> Result<Reconfigure, PluginError> {
        let _ = config;
        Ok(Reconfigure::Reload)
    }

    /// Called once when the plugin is unloaded, reloaded or the host shuts down, before the
    /// instance is dropped (on a reload, before the new instance's [`new`](Plugin::new)).
    ///
    /// Stop here every thread the plugin spawned: the host does not join them (see
    /// [`guide::threads`](crate::guide::threads)). Write here what must outlive the instance:
    /// the next one starts with nothing of its memory
    /// ([`guide::reloads`](crate::guide::reloads)).
    ///
    /// # Errors
    /// Any [`PluginError`]; the host reports it and drops the instance anyway.
    fn stop(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

/// What [`Plugin::reconfigure`] did with a new configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconfigure {
    /// The instance now runs with the new configuration.
    Applied,
    /// The host should reload the plugin (a new instance from the new configuration).
    Reload,
}
