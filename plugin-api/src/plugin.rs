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
use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RVec},
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
}

/// An owned plugin instance as the host holds it (`Send`, not `Sync`: one thread at a time).
pub type PluginBox = AbiPlugin_TO<'static, RBox<()>>;

/// What a plugin author implements. See the crate docs for a complete plugin.
///
/// Only [`Plugin::new`], [`Plugin::subscriptions`] and [`Plugin::handle`] are required.
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

    /// The events to deliver, and to which handler index.
    fn subscriptions(&self) -> Vec<Subscription>;

    /// Called once before the first event.
    ///
    /// # Errors
    /// Any [`PluginError`]; the host then does not deliver events to this instance.
    fn start(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Handles one event delivered through subscription `handler`.
    ///
    /// # Errors
    /// [`PluginError::Retryable`] to ask for a retry, any other variant to fail the delivery.
    fn handle(&mut self, handler: u32, event: &Event<'_>) -> Result<(), PluginError>;

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
