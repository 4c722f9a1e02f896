//! The plugin manager: loads plugin files, runs each plugin on its own thread, wires its
//! subscriptions to the bus, and reports its lifecycle.
//!
//! # One thread per plugin
//!
//! Each plugin instance lives on a dedicated OS thread named `plugbus-plugin-<name>`, which
//! owns the plugin object and is fed by a bounded queue (`plugins.queue_capacity`). Every call
//! into the plugin — `new`, `subscriptions`, `start`, each `handle`, `stop` — happens on that
//! thread, in queue order, so a plugin needs no locking and sees events in the order its bus
//! mailboxes deliver them. `handle` runs inside `plugbus::context::enter(event.causation())`,
//! so whatever the plugin publishes meanwhile gets `causation_id` / `correlation_id`.
//!
//! # How a delivery reaches a plugin
//!
//! For each [`AbiSubscription`] the plugin declares, the manager registers an async bus
//! subscription named `<plugin>/<handler>`, whose interest is the union of the declared
//! types, categories and patterns, with the declared timeout (else the plugin's
//! `[plugin.<name>] timeout`, else `plugins.default_timeout`) and a circuit breaker. Its
//! handler:
//!
//! 1. takes the payload's JSON from `event.payload().json_shared()` (serialized once per event,
//!    shared by every plugin);
//! 2. evaluates the plugin's declarative filter host-side; a non-match is a successful no-op;
//! 3. enqueues a job for the plugin thread with the delivery's [`Completion`], and returns.
//!    The subscription is a *deferred* one: the plugin thread finishes the completion with the
//!    plugin's answer, which records the outcome right there, so a delivery costs no boxed
//!    future, answer channel, timer or wake-up of the bus's task (see [`plugbus::deferred`]).
//!    The queue is bounded by the subscriptions' `max_in_flight` (`plugins.queue_capacity`,
//!    at most 256, per subscription): beyond it events wait in the bus mailbox, under its
//!    overflow policy, so a slow plugin slows only its own mailboxes;
//! 4. [`PluginError`] becomes a [`HandlerError`](plugbus::HandlerError): retryable stays retryable, the rest are
//!    permanent, a panic keeps its message (`panicked: ...`).
//!
//! A hung plugin blocks only its own thread: the bus's timeout fires, records `TimedOut`, the
//! breaker opens after a few timeouts, later deliveries fail fast as `CircuitOpen` and are
//! dead-lettered by the bus. Jobs the bus has given up on (timed out) are skipped by the
//! plugin thread when it gets to them, so a late plugin never handles an event the bus
//! already dead-lettered.
//!
//! # Lifecycle
//!
//! `Loaded` (constructed) → `Running` (started, subscribed) → `Stopping` → `Stopped`; or
//! `Failed(reason)`. Each transition publishes its lifecycle event (`plugin.loaded`,
//! `plugin.started`, `plugin.stopped`, `plugin.unloaded`, `plugin.error`) through
//! [`Bus::emit`], so a plugin handling lifecycle events never delays the manager, and
//! subscribers see them in order. A load that fails publishes `plugin.error` naming the file.
//! The first panic of an instance in `handle` publishes one `plugin.error` (stage `handle`);
//! later ones are only counted, so a plugin that panics on `plugin.error` cannot loop.
//!
//! Libraries are never unloaded (see [`loader`]): unloading a plugin stops it,
//! removes its subscriptions and drops its object. A file mapped once and loaded again (a
//! reload, or a file replaced at the same path) is loaded from a private copy.
//!
//! # Shutting down
//!
//! Call `bus.shutdown(..)` first (it drains mailboxes, plugins included), then
//! [`PluginManager::shutdown`], which stops every plugin (calling its `stop`) in reverse load
//! order. Dropping the last manager handle without that removes the subscriptions and lets
//! each plugin thread stop its plugin and end.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use plugbus::payload::{
    PluginError as PluginErrorPayload, PluginLoaded, PluginRef, PluginStarted, PluginStopped,
    PluginUnloaded, SystemStartup,
};
use plugbus::{BreakerConfig, Bus, Completion, Event, Origin, SubscriptionId, TypedEvent};
use plugbus_plugin_api::{host_box, AbiSubscription, PluginError};
use tokio::sync::{mpsc, oneshot};

use crate::bridge::PluginHost;
use crate::config::{Config, Isolation};
use crate::error::{LoadError, LoadErrorKind, ManagerError};
use crate::loader::{self, Library};

mod in_process;
mod process;
mod reconfigure;
mod route;
mod status;
mod supervisor;
use crate::outbound::Outbound;
use crate::trust::{TrustPolicy, TrustedFile};
use in_process::{call, spawn_worker, CallResult, WorkerEnv};
pub use reconfigure::Reconfigured;
use route::{given_up, interest_of, Route};
pub(crate) use status::Counters;
pub use status::{DeclaredSubscription, LoadReport, PluginCounters, PluginState, PluginStatus};

/// Most deliveries one plugin subscription keeps open at once (each is a job in the plugin's
/// queue).
const MAX_IN_FLIGHT: usize = 256;

/// Tuning of the manager that the config file does not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerOptions {
    /// The circuit breaker of every plugin subscription. The default is the config's
    /// `[bus.circuit_breaker]` when set, else 3 consecutive failures and a 5 s cool-down.
    pub breaker: BreakerConfig,
    /// How long construction, `start` and `stop` may take before the plugin is reported
    /// failed and its thread abandoned. The default is 10 s.
    pub lifecycle_timeout: Duration,
    /// How long an idle plugin thread keeps looking for its next job, yielding its core
    /// between looks, before it sleeps. Sleeping costs a futex wake-up on the sending side and
    /// a context switch for every event of a stream; spinning costs the core only when nothing
    /// else wants it. The default is 200 µs (measured here: 1.4x the throughput of 50 µs, 2x
    /// that of sleeping at once); zero sleeps at once.
    pub spin_before_park: Duration,
}

impl ManagerOptions {
    /// The defaults for `config`.
    pub fn from_config(config: &Config) -> Self {
        let breaker = config
            .bus
            .circuit_breaker
            .as_ref()
            .map(|b| BreakerConfig::new(b.failure_threshold, b.cool_down))
            .unwrap_or_else(|| BreakerConfig::new(3, Duration::from_secs(5)));
        Self {
            breaker,
            lifecycle_timeout: Duration::from_secs(10),
            spin_before_park: Duration::from_micros(200),
        }
    }
}

/// Names declared by more than one of `libraries`, with the files declaring them, in order.
fn ambiguous_names(libraries: &[Library]) -> Vec<(String, Vec<PathBuf>)> {
    let mut out: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for library in libraries {
        let name = &library.meta.name;
        if libraries.iter().filter(|l| &l.meta.name == name).count() < 2 {
            continue;
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, files)) => files.push(library.path.clone()),
            None => out.push((name.clone(), vec![library.path.clone()])),
        }
    }
    out
}

/// Config tables (`[plugin.NAME]`) that name no plugin found by this load, as errors that list
/// the plugins found.
fn unmatched_tables(config: &Config, report: &LoadReport) -> Vec<ManagerError> {
    let mut found: Vec<String> = report
        .loaded
        .iter()
        .cloned()
        .chain(report.disabled.iter().map(|(name, _)| name.clone()))
        .chain(report.errors.iter().filter_map(|e| match e {
            ManagerError::Load(load) => load.kind.plugin_name().map(str::to_owned),
            _ => None,
        }))
        .collect();
    found.sort();
    found.dedup();
    config
        .plugin
        .keys()
        .filter(|name| !found.contains(name))
        .map(|name| ManagerError::UnmatchedConfig {
            name: name.clone(),
            found: found.clone(),
        })
        .collect()
}

/// The most subscriptions one plugin may declare: each is a subscription on the bus (a
/// routing-table rebuild, a mailbox and a task), so a plugin declaring a million would stall
/// the host while it registers them.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// State shared by a plugin's entry, its thread, its bus handlers and its host handle.
struct PluginShared {
    state: Mutex<PluginState>,
    counters: Arc<Counters>,
    reported_panic: AtomicBool,
    plugin_ref: PluginRef,
    isolation: Isolation,
    /// The child's process id while one runs; 0 otherwise.
    pid: AtomicU32,
    /// Restarts of the child process.
    restarts: AtomicU32,
}

impl PluginShared {
    fn state(&self) -> MutexGuard<'_, PluginState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: PluginState) {
        *self.state() = state;
    }
}

type Reply = oneshot::Sender<Result<(), PluginError>>;
/// The answer to a reconfiguration: applied (`true`) or the plugin asks for a reload.
type ReconfigureReply = oneshot::Sender<Result<bool, PluginError>>;

/// Work for a plugin thread.
enum Job {
    Start(Reply),
    Handle {
        handler: u32,
        event: Event,
        payload: Arc<[u8]>,
        done: Completion,
    },
    /// Apply a new configuration (JSON) between two deliveries.
    Reconfigure {
        config_json: String,
        reply: ReconfigureReply,
    },
    Stop(Reply),
}

/// The manager's side of a plugin thread.
struct Worker {
    tx: mpsc::UnboundedSender<Job>,
    thread: Option<JoinHandle<()>>,
}

/// One plugin the manager knows.
struct Entry {
    library: Library,
    instance: u64,
    shared: Arc<PluginShared>,
    worker: Option<Worker>,
    /// Declared subscriptions, as read at construction (subscribed at start).
    declared: Vec<AbiSubscription>,
    subscriptions: Vec<(SubscriptionId, String)>,
}

impl Entry {
    fn name(&self) -> &str {
        &self.library.meta.name
    }

    fn status(&self, bus: &Bus) -> PluginStatus {
        let meta = &self.library.meta;
        let mut counters = self.shared.counters.snapshot();
        counters.timed_out += given_up(bus, self.subscriptions.iter().map(|(id, _)| *id));
        PluginStatus {
            name: meta.name.clone(),
            version: meta.version.clone(),
            description: meta.description.clone(),
            path: self.library.path.clone(),
            mapped: self.library.mapped.clone(),
            sha256: self.library.sha256.clone(),
            abi: meta.abi,
            instance: self.instance,
            state: self.shared.state().clone(),
            counters,
            subscriptions: self.subscriptions.iter().map(|(_, n)| n.clone()).collect(),
            queue_depth: usize::try_from(self.shared.counters.queued.load(Ordering::Relaxed))
                .unwrap_or(usize::MAX),
            isolation: self.shared.isolation,
            pid: match self.shared.pid.load(Ordering::Relaxed) {
                0 => None,
                pid => Some(pid),
            },
            restarts: self.shared.restarts.load(Ordering::Relaxed),
            declared: self
                .declared
                .iter()
                .map(|s| status::DeclaredSubscription::from_abi(&meta.name, s))
                .collect(),
        }
    }

    fn is_active(&self) -> bool {
        matches!(
            *self.shared.state(),
            PluginState::Loaded | PluginState::Running | PluginState::Stopping
        )
    }
}

pub(crate) struct Inner {
    pub(crate) bus: Bus,
    config: Config,
    policy: TrustPolicy,
    options: ManagerOptions,
    entries: Mutex<Vec<Entry>>,
    /// Serializes lifecycle operations (load, start, stop, unload, reload).
    ops: tokio::sync::Mutex<()>,
    next_instance: AtomicU64,
    /// Plugin configurations applied since the manager was built (by
    /// [`PluginManager::reconfigure`]), overriding `config`'s tables; a reload uses them.
    plugin_configs: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl Inner {
    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration plugin `name` runs (or will run) with.
    fn plugin_config(&self, name: &str) -> serde_json::Value {
        let applied = self
            .plugin_configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        applied.unwrap_or_else(|| self.config.plugin(name).config_json())
    }

    fn set_plugin_config(&self, name: &str, config: serde_json::Value) {
        self.plugin_configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), config);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Remove the subscriptions (their handlers hold queue senders) and our own senders:
        // each plugin thread then sees its queue close, stops its plugin and ends.
        let entries = std::mem::take(&mut *self.entries());
        for mut entry in entries {
            for (id, _) in entry.subscriptions.drain(..) {
                self.bus.unsubscribe(id);
            }
            entry.worker = None;
        }
    }
}

/// Loads, runs and supervises plugins on a [`Bus`]. Cheap to clone (clones share everything).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use plugbus_host::{Config, PluginManager};
/// let config = Config::from_path("plugbus.toml".as_ref())?;
/// let bus = plugbus_host::bus_builder(&config.bus).build()?;
/// let manager = PluginManager::new(bus.clone(), config);
/// let report = manager.load_all().await;
/// for error in &report.errors {
///     eprintln!("{error}");
/// }
/// // ... publish events ...
/// bus.shutdown(std::time::Duration::from_secs(5)).await;
/// manager.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PluginManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginManager")
            .field("plugins", &self.plugins().len())
            .field("directories", &self.inner.policy.directories)
            .finish_non_exhaustive()
    }
}

impl PluginManager {
    /// A manager for `bus`, with `config`'s plugin directories, pins and settings, and the
    /// default [`ManagerOptions`].
    pub fn new(bus: Bus, config: Config) -> Self {
        let options = ManagerOptions::from_config(&config);
        Self::with_options(bus, config, options)
    }

    /// A manager with explicit options.
    pub fn with_options(bus: Bus, config: Config, options: ManagerOptions) -> Self {
        let policy = TrustPolicy::from_config(&config);
        Self {
            inner: Arc::new(Inner {
                bus,
                config,
                policy,
                options,
                entries: Mutex::new(Vec::new()),
                ops: tokio::sync::Mutex::new(()),
                next_instance: AtomicU64::new(1),
                plugin_configs: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The bus the plugins are attached to.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The configuration the manager was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The trust policy derived from the configuration.
    pub fn trust_policy(&self) -> &TrustPolicy {
        &self.inner.policy
    }

    /// The status of every plugin, in load order.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        let bus = &self.inner.bus;
        self.inner.entries().iter().map(|e| e.status(bus)).collect()
    }

    /// The status of the plugin called `name`.
    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        self.inner
            .entries()
            .iter()
            .find(|e| e.name() == name)
            .map(|e| e.status(&self.inner.bus))
    }

    /// Discovers every `*.so` in the configured directories, loads each, and starts each
    /// enabled one; then publishes `system.startup`. A broken file never stops the others:
    /// every failure is in the report (and published as `plugin.error`).
    pub async fn load_all(&self) -> LoadReport {
        let _ops = self.inner.ops.lock().await;
        let mut report = LoadReport::default();
        let mut libraries: Vec<Library> = Vec::new();
        // Files that failed the pin of the name they declare: reported once every file was
        // seen, naming the genuine file if it is among them.
        let mut pin_failures: Vec<LoadError> = Vec::new();
        for found in self.inner.policy.discover() {
            let trusted = match found {
                Ok(trusted) => trusted,
                Err(err) => {
                    let err = LoadError::new(err.path, LoadErrorKind::Untrusted(err.kind));
                    self.report_load_error(&err).await;
                    report.errors.push(err.into());
                    continue;
                }
            };
            match self.open_trusted(&trusted) {
                Ok(library) => libraries.push(library),
                Err(LoadError {
                    path,
                    kind: LoadErrorKind::Disabled { name },
                    ..
                }) => {
                    tracing::info!(plugin = %name, path = %path.display(), "plugin disabled in the configuration: not mapped");
                    report.disabled.push((name, path));
                }
                Err(err) if is_name_pin_failure(&err) => pin_failures.push(err),
                Err(err) => {
                    self.report_load_error(&err).await;
                    report.errors.push(err.into());
                }
            }
        }
        for err in pin_failures {
            let err = name_the_genuine(err, &libraries);
            self.report_load_error(&err).await;
            report.errors.push(err.into());
        }
        // Names are settled before anything is constructed: unpinned files declaring one name
        // are all refused (a pinned name's impostors already failed their pin).
        for (name, files) in ambiguous_names(&libraries) {
            let err = LoadError::new(
                &files[0],
                LoadErrorKind::AmbiguousName {
                    name: name.clone(),
                    files: files.clone(),
                },
            );
            tracing::debug!("{err}");
            report.errors.push(err.into());
            libraries.retain(|l| l.meta.name != name);
        }
        for library in libraries {
            match self.install_locked(library).await {
                Ok(Loaded::Ready(name)) => report.loaded.push(name),
                Ok(Loaded::Disabled(name, path)) => report.disabled.push((name, path)),
                Err(err) => report.errors.push(err),
            }
        }
        for name in report.loaded.clone() {
            match self.start_locked(&name).await {
                Ok(()) => report.started.push(name),
                Err(err) => report.errors.push(err),
            }
        }
        let unmatched = unmatched_tables(&self.inner.config, &report);
        for err in unmatched {
            tracing::debug!("{err}");
            report.errors.push(err);
        }
        let startup = SystemStartup {
            host: "plugbus".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
        };
        self.emit(startup).await;
        tracing::info!(
            loaded = report.loaded.len(),
            started = report.started.len(),
            disabled = report.disabled.len(),
            errors = report.errors.len(),
            "plugins loaded"
        );
        report
    }

    /// Loads and constructs the plugin in `path` (state `Loaded`, not started). Returns its
    /// name.
    ///
    /// # Errors
    /// [`ManagerError::Load`] for a file that cannot be loaded (also published as
    /// `plugin.error`), a duplicate name, or a plugin disabled in the config
    /// ([`ManagerError::InvalidState`]).
    pub async fn load(&self, path: &Path) -> Result<String, ManagerError> {
        let _ops = self.inner.ops.lock().await;
        self.load_path_locked(path).await
    }

    /// [`load`](Self::load), then [`start`](Self::start).
    ///
    /// # Errors
    /// As both.
    pub async fn load_and_start(&self, path: &Path) -> Result<String, ManagerError> {
        let _ops = self.inner.ops.lock().await;
        let name = self.load_path_locked(path).await?;
        self.start_locked(&name).await?;
        Ok(name)
    }

    /// Starts a loaded plugin: calls its `start`, then subscribes its handlers.
    ///
    /// # Errors
    /// Unknown plugin, not in state `Loaded`, `start` failed or hung, or a subscription was
    /// refused by the bus; the plugin is then `Failed` and its instance dropped.
    pub async fn start(&self, name: &str) -> Result<(), ManagerError> {
        let _ops = self.inner.ops.lock().await;
        self.start_locked(name).await
    }

    /// Stops a plugin: removes its subscriptions, lets its queue drain, calls its `stop` and
    /// drops its instance. The plugin stays listed (state `Stopped`) until unloaded.
    ///
    /// # Errors
    /// Unknown plugin, or `stop` failed or hung (the plugin is then `Failed`).
    pub async fn stop(&self, name: &str) -> Result<(), ManagerError> {
        let _ops = self.inner.ops.lock().await;
        self.stop_locked(name).await
    }

    /// Stops the plugin if needed and forgets it (`plugin.unloaded`). Its library stays
    /// mapped.
    ///
    /// # Errors
    /// Unknown plugin. A failing `stop` is reported as `plugin.error` but does not prevent
    /// the unload.
    pub async fn unload(&self, name: &str) -> Result<(), ManagerError> {
        let _ops = self.inner.ops.lock().await;
        self.unload_locked(name).await
    }

    /// Loads the plugin's file again from a private copy and replaces the running instance
    /// with a new one (started if the old one was running or stopped).
    ///
    /// The new file is checked (trust, ABI, interface) before the old instance is touched: an
    /// update that fails those checks leaves the old one running. If the new instance then
    /// fails to construct or start, the failure is reported and the old one is gone.
    ///
    /// # Errors
    /// Unknown plugin; the new file cannot be loaded; the new instance fails to start.
    pub async fn reload(&self, name: &str) -> Result<String, ManagerError> {
        let _ops = self.inner.ops.lock().await;
        self.reload_locked(name).await
    }

    /// Stops and unloads every plugin, in reverse load order. Failures are logged and
    /// published, and do not stop the others.
    ///
    /// First the plugins are let settle while all still run: every plugin's outbound queue
    /// is flushed and the bus let go idle, until both stay so (a plugin's event can make
    /// another publish), bounded by the lifecycle timeout. So an alert one plugin raised at
    /// the end reaches a plugin that records it, whichever stops first.
    ///
    /// Returns each plugin's status once it is unloaded: its counters include what it
    /// published while stopping (an audit logger's final seal), and what of that was refused.
    pub async fn shutdown(&self) -> Vec<PluginStatus> {
        let _ops = self.inner.ops.lock().await;
        self.settle(self.inner.options.lifecycle_timeout).await;
        let before: Vec<(PluginStatus, Arc<PluginShared>)> = self
            .inner
            .entries()
            .iter()
            .map(|e| (e.status(&self.inner.bus), Arc::clone(&e.shared)))
            .collect();
        for (status, _) in before.iter().rev() {
            if let Err(err) = self.unload_locked(&status.name).await {
                tracing::warn!(plugin = %status.name, error = %err, "unloading plugin failed");
            }
        }
        // What the plugins published while stopping reaches the bus, then counts.
        let until = tokio::time::Instant::now() + self.inner.options.lifecycle_timeout;
        for (_, shared) in &before {
            let outbound = shared.counters.outbound.lock().clone();
            if let Some(o) = outbound {
                o.flush(until.saturating_duration_since(tokio::time::Instant::now()))
                    .await;
            }
        }
        before
            .into_iter()
            .map(|(mut status, shared)| {
                let mut counters = shared.counters.snapshot();
                counters.timed_out = counters.timed_out.max(status.counters.timed_out);
                status.counters = counters;
                status.state = shared.state().clone();
                status.pid = match shared.pid.load(Ordering::Relaxed) {
                    0 => None,
                    pid => Some(pid),
                };
                status.restarts = shared.restarts.load(Ordering::Relaxed);
                status
            })
            .collect()
    }

    /// Waits, at most `timeout`, until no plugin has events on their way to the bus and nothing
    /// is in flight on the bus; true if that happened.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let outbound: Vec<Arc<Outbound>> = self
                .inner
                .entries()
                .iter()
                .filter_map(|e| e.shared.counters.outbound.lock().clone())
                .collect();
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            for o in &outbound {
                o.flush(left).await;
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let idle = self.inner.bus.wait_idle(left).await;
            if idle && outbound.iter().all(|o| o.pending() == 0) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
        }
    }

    /// The plugin (by name) loaded from `path`, if any. Paths compare by their folder (with
    /// symlinks resolved) and file name, so a removed file still finds its plugin.
    pub fn plugin_at(&self, path: &Path) -> Option<String> {
        let key = path_key(path);
        self.inner
            .entries()
            .iter()
            .find(|e| e.library.path == path || (key.is_some() && path_key(&e.library.path) == key))
            .map(|e| e.name().to_owned())
    }

    // -----------------------------------------------------------------------------
    // operations, called with `ops` held
    // -----------------------------------------------------------------------------

    async fn load_path_locked(&self, path: &Path) -> Result<String, ManagerError> {
        let trusted = match loader::check_trust(&self.inner.policy, path) {
            Ok(trusted) => trusted,
            Err(err) => {
                self.report_load_error(&err).await;
                return Err(err.into());
            }
        };
        match self.load_trusted_locked(&trusted).await? {
            Loaded::Ready(name) => Ok(name),
            Loaded::Disabled(name, _) => Err(ManagerError::InvalidState {
                name,
                operation: "load",
                state: "disabled in the configuration".to_owned(),
            }),
        }
    }

    /// Phases 2-4 (from a private copy of the file's bytes), then construction.
    async fn load_trusted_locked(&self, trusted: &TrustedFile) -> Result<Loaded, ManagerError> {
        let library = match self.open_trusted(trusted) {
            Ok(library) => library,
            Err(LoadError {
                path,
                kind: LoadErrorKind::Disabled { name },
                ..
            }) => return Ok(Loaded::Disabled(name, path)),
            Err(err) => {
                self.report_load_error(&err).await;
                return Err(err.into());
            }
        };
        self.install_locked(library).await
    }

    /// Maps a trusted file from a private copy of its bytes.
    fn open_trusted(&self, trusted: &TrustedFile) -> Result<Library, LoadError> {
        let config = &self.inner.config;
        loader::load_trusted_unless(&self.inner.policy, trusted, &|name| {
            !config.is_enabled(name)
        })
    }

    /// Duplicate check, config check, construction on the plugin's new thread.
    async fn install_locked(&self, library: Library) -> Result<Loaded, ManagerError> {
        let name = library.meta.name.clone();
        if !self.inner.config.is_enabled(&name) {
            tracing::info!(plugin = %name, path = %library.path.display(), "plugin disabled in the configuration");
            return Ok(Loaded::Disabled(name, library.path));
        }
        let existing = {
            let mut entries = self.inner.entries();
            if let Some(active) = entries.iter().find(|e| e.name() == name && e.is_active()) {
                Some(active.library.path.clone())
            } else {
                // A stopped or failed plugin of that name is replaced.
                entries.retain(|e| e.name() != name);
                None
            }
        };
        if let Some(existing) = existing {
            let err = LoadError::new(
                &library.path,
                LoadErrorKind::DuplicateName {
                    name: name.clone(),
                    existing,
                },
            );
            self.report_load_error_named(&err, &library).await;
            return Err(err.into());
        }

        let counters = Arc::new(Counters::default());
        let isolation = self.inner.config.plugin_isolation(&name);
        let shared = Arc::new(PluginShared {
            state: Mutex::new(PluginState::Loaded),
            counters: Arc::clone(&counters),
            reported_panic: AtomicBool::new(false),
            plugin_ref: plugin_ref(&library),
            isolation,
            pid: AtomicU32::new(0),
            restarts: AtomicU32::new(0),
        });
        let host = PluginHost::new(
            &self.inner.bus,
            Arc::from(name.as_str()),
            &counters,
            self.inner.config.plugin_timeout(&name),
        );
        let config = self.inner.plugin_config(&name);
        // The table is checked against the schema the plugin declares before any of its
        // code sees it.
        if let Err(err) = loader::check_config(&library, &config) {
            self.report_load_error_named(&err, &library).await;
            return Err(err.into());
        }
        let config_json = config.to_string();
        let panics = WorkerEnv {
            shared: Arc::clone(&shared),
            manager: Arc::downgrade(&self.inner),
            spin: self.inner.options.spin_before_park,
        };
        let spawned = match isolation {
            Isolation::InProcess => {
                spawn_worker(library.clone(), host_box(host), config_json, panics)
            }
            Isolation::Process => process::spawn(
                &library,
                host,
                config_json,
                process::Supervision::from_config(
                    &self.inner.config,
                    &name,
                    self.inner.options.lifecycle_timeout,
                ),
                panics,
            ),
        };
        let (worker, ready) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => {
                self.report_load_error_named(&err, &library).await;
                return Err(err.into());
            }
        };
        let timeout = self.inner.options.lifecycle_timeout;
        let subscriptions = match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(Ok(subs))) => subs,
            Ok(Ok(Err(err))) => {
                self.report_load_error_named(&err, &library).await;
                return Err(err.into());
            }
            Ok(Err(_)) => {
                let err = LoadError::new(
                    &library.path,
                    LoadErrorKind::ThreadFailed {
                        name: name.clone(),
                        reason: "ended without answering".to_owned(),
                    },
                );
                self.report_load_error_named(&err, &library).await;
                return Err(err.into());
            }
            Err(_) => {
                let err = LoadError::new(
                    &library.path,
                    LoadErrorKind::ConstructorTimedOut {
                        name: name.clone(),
                        after: timeout,
                    },
                );
                self.report_load_error_named(&err, &library).await;
                return Err(err.into());
            }
        };
        let instance = self.inner.next_instance.fetch_add(1, Ordering::Relaxed);
        tracing::info!(plugin = %name, version = %library.meta.version, path = %library.path.display(), instance, "plugin loaded");
        let loaded = PluginLoaded {
            plugin: plugin_ref(&library),
        };
        self.inner.entries().push(Entry {
            library,
            instance,
            shared,
            worker: Some(worker),
            declared: subscriptions,
            subscriptions: Vec::new(),
        });
        self.emit(loaded).await;
        Ok(Loaded::Ready(name))
    }

    async fn start_locked(&self, name: &str) -> Result<(), ManagerError> {
        let (tx, shared, declared, plugin) = {
            let mut entries = self.inner.entries();
            let entry = entries
                .iter_mut()
                .find(|e| e.name() == name)
                .ok_or_else(|| ManagerError::UnknownPlugin(name.to_owned()))?;
            let state = entry.shared.state().clone();
            if state != PluginState::Loaded {
                return Err(ManagerError::InvalidState {
                    name: name.to_owned(),
                    operation: "start",
                    state: state.to_string(),
                });
            }
            let tx = entry.worker.as_ref().map(|w| w.tx.clone()).ok_or_else(|| {
                ManagerError::ThreadGone {
                    name: name.to_owned(),
                }
            })?;
            (
                tx,
                Arc::clone(&entry.shared),
                entry.take_declared(),
                entry.shared.plugin_ref.clone(),
            )
        };
        let timeout = self.inner.options.lifecycle_timeout;
        let started = call(&tx, Job::Start, timeout).await;
        let failure = match started {
            CallResult::Done(Ok(())) => None,
            CallResult::Done(Err(e)) => Some(ManagerError::Start {
                name: name.to_owned(),
                error: e.to_string(),
            }),
            CallResult::TimedOut => Some(ManagerError::TimedOut {
                name: name.to_owned(),
                stage: "start",
                after: timeout,
            }),
            CallResult::Gone => Some(ManagerError::ThreadGone {
                name: name.to_owned(),
            }),
        };
        if let Some(err) = failure {
            self.fail(name, &shared, &plugin, "start", &err).await;
            return Err(err);
        }

        let mut ids = Vec::new();
        for sub in &declared {
            match self.subscribe(name, sub, &tx, &shared) {
                Ok(Some(id)) => ids.push(id),
                Ok(None) => {}
                Err(err) => {
                    for (id, _) in ids {
                        self.inner.bus.unsubscribe(id);
                    }
                    self.fail(name, &shared, &plugin, "start", &err).await;
                    return Err(err);
                }
            }
        }
        {
            let mut entries = self.inner.entries();
            if let Some(entry) = entries.iter_mut().find(|e| e.name() == name) {
                entry.subscriptions = ids;
            }
        }
        shared.set_state(PluginState::Running);
        tracing::info!(plugin = %name, "plugin started");
        self.emit(PluginStarted { plugin }).await;
        Ok(())
    }

    /// Marks a plugin failed, stops its thread (best effort) and publishes `plugin.error`.
    async fn fail(
        &self,
        name: &str,
        shared: &PluginShared,
        plugin: &PluginRef,
        stage: &str,
        err: &ManagerError,
    ) {
        tracing::warn!(plugin = %name, stage, error = %err, "plugin failed");
        shared.set_state(PluginState::Failed(err.to_string()));
        let worker = {
            let mut entries = self.inner.entries();
            entries.iter_mut().find(|e| e.name() == name).and_then(|e| {
                let ids = e.subscriptions.iter().map(|(id, _)| *id);
                let carried = given_up(&self.inner.bus, ids);
                e.shared
                    .counters
                    .timed_out
                    .fetch_add(carried, Ordering::Relaxed);
                for (id, _) in e.subscriptions.drain(..) {
                    self.inner.bus.unsubscribe(id);
                }
                e.worker.take()
            })
        };
        if let Some(worker) = worker {
            // Let the thread drop the instance; do not wait for a hung one.
            let _ = worker.tx.send(Job::Stop(oneshot::channel().0));
        }
        self.emit(PluginErrorPayload {
            plugin: plugin.clone(),
            stage: stage.to_owned(),
            error: err.to_string(),
        })
        .await;
    }

    fn subscribe(
        &self,
        name: &str,
        sub: &AbiSubscription,
        tx: &mpsc::UnboundedSender<Job>,
        shared: &Arc<PluginShared>,
    ) -> Result<Option<(SubscriptionId, String)>, ManagerError> {
        let handler = sub.handler;
        let sub_err = |error: String| ManagerError::Subscribe {
            name: name.to_owned(),
            handler,
            error,
        };
        // The plugin side checks names, but what crosses the ABI is the plugin's to write:
        // a name becomes a table cell and a metrics label, so the host checks it again.
        if !sub.name.is_empty() {
            plugbus_plugin_api::validate_subscription_name(sub.name.as_str())
                .map_err(|e| sub_err(e.message().to_owned()))?;
        }
        let interest = interest_of(sub).map_err(sub_err)?;
        if interest.is_empty() {
            tracing::warn!(plugin = %name, handler, "subscription selects nothing; ignored");
            return Ok(None);
        }
        if let Some(filter) = sub.filter.as_ref().into_option() {
            filter
                .validate()
                .map_err(|e| sub_err(format!("invalid filter: {e}")))?;
        }
        let timeout = if sub.timeout_ms > 0 {
            Duration::from_millis(sub.timeout_ms)
        } else {
            self.inner.config.plugin_timeout(name)
        };
        let sub_name = if sub.name.is_empty() {
            format!("{name}/{handler}")
        } else {
            format!("{name}/{}", sub.name)
        };
        let route = Arc::new(Route {
            handler,
            filter: sub.filter.clone().into_option(),
            tx: tx.clone(),
            shared: Arc::clone(shared),
        });
        let id = self
            .inner
            .bus
            .subscribe(interest)
            .name(sub_name.clone())
            .timeout(timeout)
            .circuit_breaker(self.inner.options.breaker)
            // Deliveries hand their job to the plugin's FIFO queue in mailbox order; letting
            // several be open at once keeps that order while the plugin thread works through
            // its queue without a round trip per event.
            .max_in_flight(
                self.inner
                    .config
                    .plugins
                    .queue_capacity
                    .clamp(1, MAX_IN_FLIGHT),
            )
            .handle_deferred(move |event: &Event, done: Completion| route.deliver(event, done))
            .map_err(|e| sub_err(e.to_string()))?;
        tracing::debug!(plugin = %name, subscription = %sub_name, ?timeout, "plugin subscribed");
        Ok(Some((id, sub_name)))
    }

    async fn stop_locked(&self, name: &str) -> Result<(), ManagerError> {
        let (worker, shared, subscriptions) = {
            let mut entries = self.inner.entries();
            let entry = entries
                .iter_mut()
                .find(|e| e.name() == name)
                .ok_or_else(|| ManagerError::UnknownPlugin(name.to_owned()))?;
            if !matches!(
                *entry.shared.state(),
                PluginState::Loaded | PluginState::Running
            ) {
                return Ok(());
            }
            entry.shared.set_state(PluginState::Stopping);
            let subscriptions: Vec<_> = entry.subscriptions.drain(..).map(|(id, _)| id).collect();
            let carried = given_up(&self.inner.bus, subscriptions.iter().copied());
            entry
                .shared
                .counters
                .timed_out
                .fetch_add(carried, Ordering::Relaxed);
            (
                entry.worker.take(),
                Arc::clone(&entry.shared),
                subscriptions,
            )
        };
        // Deliver what is already queued for the plugin before it stops, so that nothing
        // routed to it fails because it stopped (the lifecycle timeout bounds the wait).
        for id in subscriptions {
            self.inner
                .bus
                .unsubscribe_drained(id, self.inner.options.lifecycle_timeout)
                .await;
        }
        let plugin = shared.plugin_ref.clone();
        let Some(mut worker) = worker else {
            shared.set_state(PluginState::Stopped);
            return Ok(());
        };
        let timeout = self.inner.options.lifecycle_timeout;
        let failure = match call(&worker.tx, Job::Stop, timeout).await {
            CallResult::Done(Ok(())) => None,
            CallResult::Done(Err(e)) => Some(ManagerError::Stop {
                name: name.to_owned(),
                error: e.to_string(),
            }),
            CallResult::TimedOut => Some(ManagerError::TimedOut {
                name: name.to_owned(),
                stage: "stop",
                after: timeout,
            }),
            CallResult::Gone => None,
        };
        match failure {
            None | Some(ManagerError::Stop { .. }) => {
                // The thread has dropped the instance and ends now.
                if let Some(thread) = worker.thread.take() {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
            Some(_) => {} // hung: abandoned
        }
        // What the plugin published up to its stop goes to the bus before anyone else stops.
        let outbound = shared.counters.outbound.lock().clone();
        if let Some(outbound) = outbound {
            // A thread the plugin started and did not stop may still hold its host handle:
            // from now on its publishes are refused (`Closed`), not put on the bus for an
            // instance that no longer exists.
            outbound.close();
            if !outbound.flush(timeout).await {
                tracing::warn!(plugin = %name, pending = outbound.pending(), "plugin's published events not all on the bus after {timeout:?}");
            }
        }
        drop(worker);
        match failure {
            None => {
                shared.set_state(PluginState::Stopped);
                tracing::info!(plugin = %name, "plugin stopped");
                self.emit(PluginStopped { plugin }).await;
                Ok(())
            }
            Some(err) => {
                if matches!(err, ManagerError::Stop { .. }) {
                    shared.set_state(PluginState::Stopped);
                    self.emit(PluginStopped {
                        plugin: plugin.clone(),
                    })
                    .await;
                } else {
                    shared.set_state(PluginState::Failed(err.to_string()));
                }
                tracing::warn!(plugin = %name, error = %err, "plugin stop failed");
                self.emit(PluginErrorPayload {
                    plugin,
                    stage: "stop".to_owned(),
                    error: err.to_string(),
                })
                .await;
                Err(err)
            }
        }
    }

    async fn unload_locked(&self, name: &str) -> Result<(), ManagerError> {
        // A failing stop is already reported; unloading goes on.
        match self.stop_locked(name).await {
            Ok(()) | Err(ManagerError::Stop { .. } | ManagerError::TimedOut { .. }) => {}
            Err(err) => return Err(err),
        }
        let removed = {
            let mut entries = self.inner.entries();
            let pos = entries
                .iter()
                .position(|e| e.name() == name)
                .ok_or_else(|| ManagerError::UnknownPlugin(name.to_owned()))?;
            entries.remove(pos)
        };
        let plugin = removed.shared.plugin_ref.clone();
        drop(removed);
        tracing::info!(plugin = %name, "plugin unloaded");
        self.emit(PluginUnloaded { plugin }).await;
        Ok(())
    }

    async fn reload_locked(&self, name: &str) -> Result<String, ManagerError> {
        let (path, was) = {
            let entries = self.inner.entries();
            let entry = entries
                .iter()
                .find(|e| e.name() == name)
                .ok_or_else(|| ManagerError::UnknownPlugin(name.to_owned()))?;
            let state = entry.shared.state().clone();
            (entry.library.path.clone(), state)
        };
        let library = match self.open_copy(&path) {
            Ok(library) => library,
            Err(err) => {
                self.report_load_error(&err).await;
                return Err(err.into());
            }
        };
        tracing::info!(plugin = %name, path = %path.display(), mapped = %library.mapped.display(), "reloading plugin");
        self.unload_locked(name).await?;
        let new_name = match self.install_locked(library).await? {
            Loaded::Ready(new_name) => new_name,
            Loaded::Disabled(new_name, _) => return Ok(new_name),
        };
        if was != PluginState::Loaded {
            self.start_locked(&new_name).await?;
        }
        Ok(new_name)
    }

    /// Every load maps a fresh private copy of the file's bytes (see
    /// [`loader::open_library`]), so a changed file is new code, never the old mapping.
    fn open_copy(&self, path: &Path) -> Result<Library, LoadError> {
        let trusted = loader::check_trust(&self.inner.policy, path)?;
        loader::load_trusted(&self.inner.policy, &trusted)
    }

    // -----------------------------------------------------------------------------
    // lifecycle events
    // -----------------------------------------------------------------------------

    /// Publishes a lifecycle event with `emit` (queued; never waits for plugin handlers).
    async fn emit<T: TypedEvent>(&self, payload: T) {
        let event = match host_event(payload) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "cannot build lifecycle event");
                return;
            }
        };
        let event_type = event.event_type();
        // A full mailbox waits (the bus's timeouts keep it moving), but never past the
        // lifecycle timeout: a lifecycle event must not wedge the manager.
        match tokio::time::timeout(
            self.inner.options.lifecycle_timeout,
            self.inner.bus.emit(event),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!(%event_type, error = %err, "lifecycle event not fully delivered");
            }
            Err(_) => {
                tracing::warn!(%event_type, "lifecycle event still waiting for mailbox space; gave up")
            }
        }
    }

    async fn report_load_error(&self, err: &LoadError) {
        // Reported by whoever asked (the report of load_all, the caller of load, the watcher):
        // logged here at debug level only, so each failure is printed once.
        tracing::debug!(path = %err.path.display(), error = %err, "plugin not loaded");
        self.emit(PluginErrorPayload {
            plugin: PluginRef {
                name: String::new(),
                version: String::new(),
                path: err.path.display().to_string(),
            },
            stage: err.stage().to_owned(),
            error: err.to_string(),
        })
        .await;
    }

    async fn report_load_error_named(&self, err: &LoadError, library: &Library) {
        tracing::debug!(plugin = %library.meta.name, path = %err.path.display(), error = %err, "plugin not loaded");
        self.emit(PluginErrorPayload {
            plugin: plugin_ref(library),
            stage: err.stage().to_owned(),
            error: err.to_string(),
        })
        .await;
    }
}

/// True for a file refused because its bytes do not match the pin of the name it declares.
fn is_name_pin_failure(err: &LoadError) -> bool {
    use crate::TrustErrorKind;
    matches!(&err.kind, LoadErrorKind::Untrusted(TrustErrorKind::PinMismatch { pin, .. }) if !pin.ends_with(".so"))
}

/// A name-pin failure, restated as an impostor naming the genuine file when one of
/// `libraries` declares that name (its bytes matched the pin).
fn name_the_genuine(err: LoadError, libraries: &[Library]) -> LoadError {
    use crate::TrustErrorKind;
    let LoadError {
        path,
        kind:
            LoadErrorKind::Untrusted(TrustErrorKind::PinMismatch {
                pin,
                expected,
                actual,
            }),
        ..
    } = err
    else {
        return err;
    };
    match libraries.iter().find(|l| l.meta.name == pin) {
        Some(genuine) => LoadError::new(
            path,
            LoadErrorKind::Impostor {
                name: pin,
                genuine: genuine.path.clone(),
                expected,
                actual,
            },
        ),
        None => LoadError::new(
            path,
            LoadErrorKind::Untrusted(TrustErrorKind::PinMismatch {
                pin,
                expected,
                actual,
            }),
        ),
    }
}

/// Outcome of installing a library.
enum Loaded {
    Ready(String),
    Disabled(String, PathBuf),
}

/// A path's folder (canonical) and file name.
fn path_key(path: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some((
        std::fs::canonicalize(parent).ok()?,
        path.file_name()?.to_owned(),
    ))
}

fn plugin_ref(library: &Library) -> PluginRef {
    PluginRef {
        name: library.meta.name.clone(),
        version: library.meta.version.clone(),
        path: library.path.display().to_string(),
    }
}

impl Entry {
    fn take_declared(&mut self) -> Vec<AbiSubscription> {
        self.declared.clone()
    }
}

/// Marks the plugin whose state is `shared` failed with `reason` and removes its
/// subscriptions, from its own supervisor (which then answers whatever is still queued): what
/// [`PluginManager::fail`] does, without the lifecycle lock a supervisor must not wait for.
fn fail_in_place(inner: &Inner, shared: &Arc<PluginShared>, reason: &str) {
    shared.set_state(PluginState::Failed(reason.to_owned()));
    let mut entries = inner.entries();
    if let Some(e) = entries.iter_mut().find(|e| Arc::ptr_eq(&e.shared, shared)) {
        let carried = given_up(&inner.bus, e.subscriptions.iter().map(|(id, _)| *id));
        e.shared
            .counters
            .timed_out
            .fetch_add(carried, Ordering::Relaxed);
        for (id, _) in e.subscriptions.drain(..) {
            inner.bus.unsubscribe(id);
        }
        // The supervisor's queue closes once the bus has dropped the subscriptions' senders.
        e.worker = None;
    }
}

/// An event of the host's own: its source is the host's name and its origin
/// [`Origin::HOST`], which no plugin or input can claim.
fn host_event<T: TypedEvent>(payload: T) -> Result<Event, plugbus::EventError> {
    Event::builder_typed(payload)
        .source(HOST_SOURCE)
        .origin(Origin::HOST)
        .build()
}

/// The source of the host's own events (one of
/// [`HOST_SOURCES`](plugbus::contract::reserved::HOST_SOURCES)).
pub const HOST_SOURCE: &str = "plugbus-host";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use plugbus::{Category, EventType};
    use plugbus_plugin_api::abi_stable::std_types::{ROption, RString, RVec};

    fn sub(types: &[&str], categories: &[u8], patterns: &[&str]) -> AbiSubscription {
        AbiSubscription {
            handler: 0,
            event_types: types.iter().map(|t| RString::from(*t)).collect::<RVec<_>>(),
            categories: categories.iter().copied().collect::<RVec<_>>(),
            patterns: patterns
                .iter()
                .map(|p| RString::from(*p))
                .collect::<RVec<_>>(),
            filter: ROption::RNone,
            timeout_ms: 0,
            name: RString::new(),
        }
    }

    #[test]
    fn interest_is_the_union_of_types_categories_and_patterns() {
        let i = interest_of(&sub(
            &["user.login"],
            &[Category::System as u8],
            &["data.*"],
        ))
        .unwrap();
        assert!(i.matches(EventType::USER_LOGIN));
        assert!(!i.matches(EventType::USER_LOGOUT));
        assert!(i.matches(EventType::SYSTEM_STARTUP));
        assert!(i.matches(EventType::DATA_DELETED));
        assert!(!i.matches(EventType::PLUGIN_LOADED));
    }

    #[test]
    fn a_type_not_interned_yet_matches_whatever_its_category() {
        let i = interest_of(&sub(&["manager.test_late_type"], &[], &[])).unwrap();
        let late = EventType::new("manager.test_late_type", Category::Business).unwrap();
        assert!(i.matches(late));
    }

    #[test]
    fn unknown_categories_match_nothing_and_bad_names_are_errors() {
        assert!(interest_of(&sub(&[], &[200], &[])).unwrap().is_empty());
        assert!(interest_of(&sub(&["user.*"], &[], &[])).is_err());
        assert!(interest_of(&sub(&[], &[], &["us*"])).is_err());
    }

    #[test]
    fn options_follow_the_config_breaker() {
        let config = Config::from_toml_str(
            "[bus.circuit_breaker]\nfailure_threshold = 9\ncool_down = \"2s\"\n",
            "t",
        )
        .unwrap();
        let options = ManagerOptions::from_config(&config);
        assert_eq!(
            options.breaker,
            BreakerConfig::new(9, Duration::from_secs(2))
        );
        let options = ManagerOptions::from_config(&Config::default());
        assert_eq!(
            options.breaker,
            BreakerConfig::new(3, Duration::from_secs(5))
        );
    }

    #[test]
    fn states_display() {
        assert_eq!(PluginState::Running.to_string(), "running");
        assert_eq!(
            PluginState::Failed("boom".into()).to_string(),
            "failed: boom"
        );
    }
}
