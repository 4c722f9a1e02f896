//! What the manager reports about a plugin: its state, counters and status, and what a
//! `load_all` found.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plugbus::Category;
use plugbus_plugin_api::AbiSubscription;

use crate::config::Isolation;
use crate::error::ManagerError;
use crate::outbound::{Outbound, PublishCounters};

/// Where a plugin is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    /// Constructed, subscriptions read, not started.
    Loaded,
    /// Started and subscribed: receiving events.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped; its object is dropped. [`PluginManager::reload`](super::PluginManager::reload) brings it back.
    Stopped,
    /// Start or stop failed, or a lifecycle call hung; the reason.
    Failed(String),
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginState::Loaded => f.write_str("loaded"),
            PluginState::Running => f.write_str("running"),
            PluginState::Stopping => f.write_str("stopping"),
            PluginState::Stopped => f.write_str("stopped"),
            PluginState::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

/// Live counters of one plugin instance (see [`PluginCounters`] for a snapshot).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    /// What the instance published, counted by its outbound queue.
    pub(crate) publish: Arc<PublishCounters>,
    /// The instance's outbound queue, once its host handle exists.
    pub(crate) outbound: parking_lot::Mutex<Option<Arc<Outbound>>>,
    /// Jobs sent to the plugin thread and not yet taken.
    pub(crate) queued: AtomicU64,
}

/// A snapshot of one plugin instance's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginCounters {
    /// `handle` calls that returned `Ok`.
    pub delivered: u64,
    /// `handle` calls that returned an error (panics excluded).
    pub failed: u64,
    /// `handle` calls that panicked.
    pub panicked: u64,
    /// Deliveries the bus stopped waiting for (timeout or shutdown) before the plugin answered,
    /// as the bus counts them on the instance's subscriptions.
    pub timed_out: u64,
    /// Deliveries the plugin's declarative filter skipped (never sent to the plugin).
    pub skipped: u64,
    /// Jobs the plugin thread dropped because their delivery had already given up.
    pub abandoned: u64,
    /// Events the plugin published that the bus accepted.
    pub published: u64,
    /// Publishes refused because the plugin's outbound queue stayed full for its whole handler
    /// timeout (transient).
    pub refused_full: u64,
    /// Publishes refused because the plugin was stopping or the bus shutting down.
    pub refused_closed: u64,
    /// Publishes refused because the type or source is the host's own.
    pub refused_forbidden: u64,
    /// Publishes refused because the event was malformed.
    pub refused_invalid: u64,
    /// Of `published`: events some subscriptions' `Reject` policy refused (those deliveries are
    /// in the bus's account as rejected).
    pub rejected_by_subscribers: u64,
    /// Events still on their way from the plugin to the bus (in its outbound queue).
    pub publish_pending: u64,
}

impl PluginCounters {
    /// Every refused publish, whatever the reason.
    pub fn refused(&self) -> u64 {
        self.refused_full + self.refused_closed + self.refused_forbidden + self.refused_invalid
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> PluginCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PluginCounters {
            delivered: get(&self.delivered),
            failed: get(&self.failed),
            panicked: get(&self.panicked),
            timed_out: get(&self.timed_out),
            skipped: get(&self.skipped),
            abandoned: get(&self.abandoned),
            published: get(&self.publish.published),
            refused_full: get(&self.publish.refused_full),
            refused_closed: get(&self.publish.refused_closed),
            refused_forbidden: get(&self.publish.refused_forbidden),
            refused_invalid: get(&self.publish.refused_invalid),
            rejected_by_subscribers: get(&self.publish.rejected_by_subscribers),
            publish_pending: self
                .outbound
                .lock()
                .as_ref()
                .map_or(0, |o| o.pending() as u64),
        }
    }
}

/// What [`PluginManager::plugins`](super::PluginManager::plugins) reports for each plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStatus {
    /// The declared name.
    pub name: String,
    /// The declared version.
    pub version: String,
    /// The declared description.
    pub description: String,
    /// The plugin file, as discovered or given.
    pub path: PathBuf,
    /// The private copy of the file's bytes that was mapped (a fresh one per load, unlinked
    /// once mapped), never `path` itself.
    pub mapped: PathBuf,
    /// SHA-256 of the mapped file, lowercase hex.
    pub sha256: String,
    /// The interface version the plugin was built against.
    pub abi: (u32, u32),
    /// Increases with every instance the manager creates (a reload makes a new one).
    pub instance: u64,
    /// Where it is in its life.
    pub state: PluginState,
    /// Its counters.
    pub counters: PluginCounters,
    /// Its bus subscriptions, `<plugin>/<handler>`, while running.
    pub subscriptions: Vec<String>,
    /// Jobs waiting in its queue.
    pub queue_depth: usize,
    /// Where it runs.
    pub isolation: Isolation,
    /// The process id of its child process, while one runs (`isolation = "process"`).
    pub pid: Option<u32>,
    /// How many times its child process was restarted after a crash or hang.
    pub restarts: u32,
    /// What it declared it wants to receive, one entry per declared subscription, as read at
    /// construction (kept while it runs, so `plugbus flows` can draw who receives what).
    pub declared: Vec<DeclaredSubscription>,
}

/// One subscription a plugin declared: the types, categories and patterns it selects.
///
/// An event is delivered when its type matches any of them (and the plugin's declarative
/// filter, if it has one, lets it through). A selector the host does not know (a category
/// value from a newer plugin) is left out, as it never matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredSubscription {
    /// The bus subscription's name, `<plugin>/<handler>`.
    pub name: String,
    /// The handler index passed back to the plugin.
    pub handler: u32,
    /// Exact type names.
    pub event_types: Vec<String>,
    /// Whole categories.
    pub categories: Vec<Category>,
    /// Type patterns such as `user.*` or `*`.
    pub patterns: Vec<String>,
    /// Whether a declarative filter may skip some of the matching events.
    pub filtered: bool,
}

impl DeclaredSubscription {
    pub(crate) fn from_abi(plugin: &str, sub: &AbiSubscription) -> Self {
        DeclaredSubscription {
            name: format!("{plugin}/{}", sub.handler),
            handler: sub.handler,
            event_types: sub.event_types.iter().map(|t| t.to_string()).collect(),
            categories: sub
                .categories
                .iter()
                .filter_map(|c| Category::from_u8(*c))
                .collect(),
            patterns: sub.patterns.iter().map(|p| p.to_string()).collect(),
            filtered: sub.filter.is_some(),
        }
    }
}

/// What [`PluginManager::load_all`](super::PluginManager::load_all) did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Plugins loaded, by name, in load order.
    pub loaded: Vec<String>,
    /// Plugins started, by name.
    pub started: Vec<String>,
    /// Plugins found but disabled in the config: name and file.
    pub disabled: Vec<(String, PathBuf)>,
    /// Every failure: files that could not be loaded, plugins that could not start.
    pub errors: Vec<ManagerError>,
}

impl LoadReport {
    /// True if nothing failed.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
