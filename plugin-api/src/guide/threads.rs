//! # Threads
//!
//! ## One thread per instance
//!
//! The host makes every call into one plugin instance on one thread, one call at a time, in
//! the order of its queue: [`Plugin::new`](crate::Plugin::new), then
//! [`subscriptions`](crate::Plugin::subscriptions) (once), [`start`](crate::Plugin::start)
//! (once), [`handle`](crate::Plugin::handle) for each delivery, [`stop`](crate::Plugin::stop)
//! (once), and dropping the instance. In process that thread is the plugin's own, named
//! `plugbus-plugin-<name>`; in a child process it is the child's main thread
//! ([`isolation`](super::isolation)). Hence `&mut self`: the plugin's state needs no lock of
//! its own, and each subscription's events arrive in order.
//!
//! That thread is the plugin's alone. A `handle` that takes long delays only this plugin's
//! deliveries (the next ones wait in its bounded queue and the bus mailboxes, under their
//! overflow policies). One that runs past its timeout is given up on (`TimedOut`; see
//! [`errors`](super::errors)) but cannot be interrupted: the thread stays busy until `handle`
//! returns, and after a few timeouts in a row the subscription's circuit breaker stops
//! feeding it for a while.
//!
//! Handlers are synchronous, and **no tokio runtime is there to find**: each library has its
//! own copy of tokio's globals, so `tokio::spawn` or `Handle::current()` inside a plugin
//! panics, whatever the host runs on. A plugin that needs async I/O builds a runtime of its
//! own in [`start`](crate::Plugin::start) and shuts it down in [`stop`](crate::Plugin::stop).
//!
//! ## Threads of the plugin's own
//!
//! A plugin may spawn threads (a flusher, a timer, a network client), and **publish from
//! them**: [`HostHandle`](crate::HostHandle) is `Clone + Send + Sync`, and
//! [`AbiHost`](crate::AbiHost), the host side of it, must be callable from any thread,
//! "plugin threads of their own, too". A publish from such a thread is checked and refused
//! exactly as one from `handle` ([`RefusalKind`](crate::RefusalKind)), and may wait as long
//! as the plugin's handler timeout when the bus is busy; but nothing is being handled on that
//! thread, so the event gets no `causation_id` or `correlation_id` from a delivery (set them
//! as metadata if it has a cause). `tracing` events from such a thread go to the host of the
//! library's most recently constructed live instance (see [`log_bridge`](crate::log_bridge)).
//!
//! The host calls `handle` while those threads run: what they share with the instance needs
//! `Arc<Mutex<_>>`, atomics or channels, as between any threads.
//!
//! ## At `stop`, and on a reload
//!
//! **The host does not join, stop or even know about a plugin's threads.** It calls `stop`,
//! then drops the instance. A thread still running goes on running: its library is never
//! unloaded, so its code stays mapped and it does not crash, but it keeps what it holds
//! (files, sockets, a `HostHandle`), its publishes are no longer tied to a live instance (the
//! host promises nothing about them), and after a [reload](super::reloads) it runs beside the
//! new instance (two flushers appending to one file). So a plugin **stops its threads in
//! `stop`**: it signals them and joins them there, quickly (the host waits for `stop` for a
//! bounded time, 10 s by default, and then abandons the plugin's thread). A child process
//! ([`isolation`](super::isolation)) ends after `stop`, and its threads with it; a plugin is
//! written so that it does not matter where it runs.
//!
//! ```
//! use plugbus_plugin_api::contract::Category;
//! use plugbus_plugin_api::{
//!     export_plugin, Event, EventDraft, HostHandle, Plugin, PluginError, Subscription,
//! };
//! use std::sync::mpsc::{self, RecvTimeoutError, Sender};
//! use std::thread::JoinHandle;
//! use std::time::Duration;
//!
//! /// Publishes `ticker.tick` every second from a thread of its own.
//! struct Ticker {
//!     host: HostHandle,
//!     thread: Option<(Sender<()>, JoinHandle<()>)>,
//! }
//!
//! impl Plugin for Ticker {
//!     const NAME: &'static str = "ticker";
//!     const VERSION: &'static str = "0.1.0";
//!
//!     fn new(host: HostHandle, _config: serde_json::Value) -> Result<Self, PluginError> {
//!         Ok(Ticker { host, thread: None })
//!     }
//!
//!     fn subscriptions(&self) -> Vec<Subscription> {
//!         Vec::new()
//!     }
//!
//!     fn start(&mut self) -> Result<(), PluginError> {
//!         let (stop_tx, stop_rx) = mpsc::channel::<()>();
//!         let host = self.host.clone();
//!         let thread = std::thread::Builder::new()
//!             .name("ticker".into())
//!             .spawn(move || loop {
//!                 match stop_rx.recv_timeout(Duration::from_secs(1)) {
//!                     Err(RecvTimeoutError::Timeout) => {
//!                         let tick = EventDraft::new("ticker.tick", Category::Custom);
//!                         if let Err(e) = host.publish_with(tick) {
//!                             tracing::debug!(error = %e, "tick refused");
//!                         }
//!                     }
//!                     // Told to stop, or the instance is gone.
//!                     Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
//!                 }
//!             })
//!             .map_err(|e| PluginError::permanent(format_args!("cannot start the ticker: {e}")))?;
//!         self.thread = Some((stop_tx, thread));
//!         Ok(())
//!     }
//!
//!     fn handle(&mut self, _handler: u32, _event: &Event<'_>) -> Result<(), PluginError> {
//!         Ok(())
//!     }
//!
//!     fn stop(&mut self) -> Result<(), PluginError> {
//!         if let Some((stop_tx, thread)) = self.thread.take() {
//!             let _ = stop_tx.send(());
//!             thread
//!                 .join()
//!                 .map_err(|_| PluginError::permanent("the ticker thread panicked"))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Ticker);
//! # fn main() {}
//! ```
