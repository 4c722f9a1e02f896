//! Hot-plug: watch the plugin directories and apply what changes.
//!
//! [`PluginManager::watch`] starts a filesystem watcher (the `notify` crate) on every
//! configured plugin directory and a thread that debounces its events: once the directories
//! have been quiet for the debounce period, each `*.so` path that changed is applied through
//! the manager handle:
//!
//! - a new file is loaded and started;
//! - a removed file's plugin is stopped and unloaded;
//! - a changed file (its SHA-256 differs from the loaded one) is reloaded from a private copy
//!   (see [`loader`](crate::loader): libraries are never unloaded, and the dynamic loader
//!   would hand back the old code for the same path).
//!
//! Failures are logged and published as `plugin.error` by the manager; the watcher goes on.
//! Replace plugin files atomically (write a new file, then rename it over the old one):
//! writing into a mapped library in place can crash the process.
//!
//! The watcher holds the manager weakly: dropping every [`PluginManager`] handle ends it, and
//! dropping the [`Watcher`] stops watching.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use crate::error::WatchError;
use crate::manager::{Inner, PluginManager};

/// The default quiet period before changes are applied.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// A running directory watcher; dropping it stops watching.
pub struct Watcher {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
    directories: Vec<PathBuf>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("directories", &self.directories)
            .finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropping the notify watcher drops its event sender, which ends the thread.
        self.watcher = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Watcher {
    /// The directories being watched.
    pub fn directories(&self) -> &[PathBuf] {
        &self.directories
    }
}

impl PluginManager {
    /// Watches the configured plugin directories with [`DEFAULT_DEBOUNCE`]. See the
    /// [module docs](crate::watch).
    ///
    /// # Errors
    /// A directory cannot be watched (e.g. it does not exist).
    pub fn watch(&self) -> Result<Watcher, WatchError> {
        self.watch_with(DEFAULT_DEBOUNCE)
    }

    /// Starts watching when the config says `plugins.watch = true`; `None` otherwise.
    ///
    /// # Errors
    /// As [`watch`](Self::watch).
    pub fn watch_if_configured(&self) -> Result<Option<Watcher>, WatchError> {
        if self.config().plugins.watch {
            self.watch().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Watches the configured plugin directories, applying changes after `debounce` of quiet.
    ///
    /// # Errors
    /// A directory cannot be watched (e.g. it does not exist).
    pub fn watch_with(&self, debounce: Duration) -> Result<Watcher, WatchError> {
        let (tx, rx) = mpsc::channel();
        let directories = self.trust_policy().directories.clone();
        let first = directories.first().cloned().unwrap_or_default();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| WatchError {
            path: first,
            reason: e.to_string(),
        })?;
        for dir in &directories {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| WatchError {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
        }
        let manager = self.downgrade();
        let runtime = self.bus().runtime().clone();
        let thread = std::thread::Builder::new()
            .name("plugbus-watch".to_owned())
            .spawn(move || debounce_loop(rx, debounce, manager, runtime))
            .map_err(|e| WatchError {
                path: directories.first().cloned().unwrap_or_default(),
                reason: format!("cannot start the watch thread: {e}"),
            })?;
        tracing::info!(directories = ?directories, ?debounce, "watching plugin directories");
        Ok(Watcher {
            watcher: Some(watcher),
            thread: Some(thread),
            directories,
        })
    }

    /// Applies a change of one plugin file: load and start a new file, unload a removed
    /// one, reload a changed one (by content). Errors are logged (and published by the
    /// manager).
    pub async fn apply_change(&self, path: &Path) {
        let loaded = self.plugin_at(path);
        let exists = path.exists();
        let result = match (loaded, exists) {
            (None, true) => self.load_and_start(path).await.map(|_| ()),
            (Some(name), false) => self.unload(&name).await,
            (Some(name), true) => {
                let current = self.status(&name).map(|s| s.sha256);
                let now = self
                    .trust_policy()
                    .check_file(path)
                    .ok()
                    .and_then(|f| f.sha256_hex().ok());
                if now.is_some() && now != current {
                    self.reload(&name).await.map(|_| ())
                } else {
                    Ok(())
                }
            }
            (None, false) => Ok(()),
        };
        if let Err(err) = result {
            tracing::warn!(path = %path.display(), error = %err, "hot-plug change failed");
        }
    }
}

fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "so")
}

fn debounce_loop(
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    debounce: Duration,
    manager: Weak<Inner>,
    runtime: tokio::runtime::Handle,
) {
    let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let next = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(debounce)
        };
        match next {
            // Reads (the host's own hashing of a file among them) change nothing: counting them
            // would re-check a file for ever, each check a read.
            Ok(Ok(event)) if matches!(event.kind, notify::EventKind::Access(_)) => {}
            Ok(Ok(event)) => {
                pending.extend(event.paths.into_iter().filter(|p| is_plugin_file(p)));
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "plugin directory watcher error"),
            Err(RecvTimeoutError::Timeout) => {
                let Some(inner) = manager.upgrade() else {
                    return;
                };
                let manager = PluginManager::from_inner(inner);
                for path in std::mem::take(&mut pending) {
                    tracing::debug!(path = %path.display(), "applying plugin file change");
                    runtime.block_on(manager.apply_change(&path));
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
