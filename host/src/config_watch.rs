//! Hot-plug of the configuration file: plugins get their changed `config` tables while they
//! run.
//!
//! [`PluginManager::watch_config`] watches the file's folder (editors and deploy tools
//! replace a file by renaming a new one over it, which a watch on the file itself would
//! miss) and, once the file has been quiet for the debounce period, reads it again:
//!
//! - a file that does not parse or validate changes nothing; the error is logged and
//!   published as `config.changed` with `error` set;
//! - otherwise every plugin whose `[plugin.NAME].config` table changed is
//!   [reconfigured](PluginManager::reconfigure) (in place, or reloaded when it does not
//!   reconfigure in place), and one `config.changed` lists the changed keys, the plugins
//!   reconfigured, reloaded or refusing the table, and the keys that only take effect at the
//!   next start (everything outside plugins' `config` tables).
//!
//! `plugbus run` and `demo` start it with the plugin directory watcher when
//! `plugins.watch = true` and a config file is given.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

use crate::config::Config;
use crate::error::WatchError;
use crate::manager::PluginManager;
use crate::watch::DEFAULT_DEBOUNCE;

/// A running watch of the configuration file; dropping it stops watching.
pub struct ConfigWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.watcher = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ConfigWatcher {
    /// The file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PluginManager {
    /// Watches the configuration file at `path` (the one this manager's config was read
    /// from) with [`DEFAULT_DEBOUNCE`]. See the [module docs](crate::config_watch).
    ///
    /// # Errors
    /// The file's folder cannot be watched, or the file cannot be read now.
    pub fn watch_config(&self, path: &Path) -> Result<ConfigWatcher, WatchError> {
        self.watch_config_with(path, DEFAULT_DEBOUNCE)
    }

    /// [`watch_config`](Self::watch_config) with another quiet period.
    ///
    /// # Errors
    /// As [`watch_config`](Self::watch_config).
    pub fn watch_config_with(
        &self,
        path: &Path,
        debounce: Duration,
    ) -> Result<ConfigWatcher, WatchError> {
        let error = |reason: String| WatchError {
            path: path.to_path_buf(),
            reason,
        };
        let path = std::path::absolute(path).map_err(|e| error(e.to_string()))?;
        let folder = path
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| error("the file has no folder".to_owned()))?;
        let file_name = path
            .file_name()
            .map(ToOwned::to_owned)
            .ok_or_else(|| error("not a file name".to_owned()))?;
        let (_, baseline) = read_file(&path).map_err(error)?;
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| error(e.to_string()))?;
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .map_err(|e| error(e.to_string()))?;
        let manager = self.downgrade();
        let runtime = self.bus().runtime().clone();
        let watched = path.clone();
        let thread = std::thread::Builder::new()
            .name("plugbus-config-watch".to_owned())
            .spawn(move || {
                let mut last = baseline;
                // The quiet period counts from the last change of the file itself: events of
                // other files in the folder, and reads of any (ours included), never put it
                // off.
                let mut due: Option<Instant> = None;
                loop {
                    let next = match due {
                        Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok(Ok(event)) => {
                            let ours = !matches!(event.kind, notify::EventKind::Access(_))
                                && event
                                    .paths
                                    .iter()
                                    .any(|p| p.file_name() == Some(file_name.as_os_str()));
                            if ours {
                                due = Some(Instant::now() + debounce);
                            }
                        }
                        Ok(Err(err)) => tracing::warn!(error = %err, "config file watcher error"),
                        Err(RecvTimeoutError::Timeout) => {
                            due = None;
                            let Some(inner) = manager.upgrade() else {
                                return;
                            };
                            let manager = PluginManager::from_inner(inner);
                            runtime.block_on(apply_file(&manager, &watched, &mut last));
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|e| error(format!("cannot start the watch thread: {e}")))?;
        tracing::info!(path = %path.display(), ?debounce, "watching the configuration file");
        Ok(ConfigWatcher {
            watcher: Some(watcher),
            thread: Some(thread),
            path,
        })
    }
}

/// Reads the file again and applies what changed since `last`.
async fn apply_file(manager: &PluginManager, path: &Path, last: &mut toml::Table) {
    let source = path.display().to_string();
    // One read: the table the diff is made of is the configuration applied.
    let parsed = read_file(path);
    let (text, table) = match parsed {
        Ok(parsed) => parsed,
        Err(reason) => {
            tracing::error!(path = %source, error = %reason, "the changed configuration file is not applied");
            manager.config_refused(&source, reason).await;
            return;
        }
    };
    if &table == last {
        return;
    }
    let config = match Config::from_toml_str(&text, &source) {
        Ok(mut config) => {
            if let Some(folder) = path.parent() {
                config.resolve_relative_to(folder);
            }
            config
        }
        Err(err) => {
            tracing::error!(path = %source, error = %err, "the changed configuration file is not applied");
            manager.config_refused(&source, err.to_string()).await;
            return;
        }
    };
    let mut changed = Vec::new();
    diff_tables(last, &table, "", &mut changed);
    *last = table;
    let change = manager.apply_config(&source, &config, changed).await;
    tracing::info!(
        path = %source,
        changed = change.changed_keys.len(),
        reconfigured = ?change.reconfigured,
        reloaded = ?change.reloaded,
        refused = change.refused.len(),
        "configuration file applied"
    );
}

/// The file's text and its TOML table.
fn read_file(path: &Path) -> Result<(String, toml::Table), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| format!("'{}' is not valid TOML: {e}", path.display()))?;
    Ok((text, table))
}

/// The dotted keys whose values differ between two tables (a key only one has counts).
fn diff_tables(old: &toml::Table, new: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    for (k, old_value) in old {
        match (old_value, new.get(k)) {
            (toml::Value::Table(a), Some(toml::Value::Table(b))) => {
                diff_tables(a, b, &key(k), out);
            }
            (a, Some(b)) if a == b => {}
            _ => out.push(key(k)),
        }
    }
    for k in new.keys() {
        if !old.contains_key(k) {
            out.push(key(k));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_changed_added_and_removed_keys() {
        let old: toml::Table = r#"
            [bus]
            capacity = 10
            [plugin.auth-enhancer.config]
            threshold = 5
            window_secs = 60
        "#
        .parse()
        .unwrap();
        let new: toml::Table = r#"
            [bus]
            capacity = 10
            [plugin.auth-enhancer.config]
            threshold = 3
            [plugin.audit-logger]
            required = true
        "#
        .parse()
        .unwrap();
        let mut changed = Vec::new();
        diff_tables(&old, &new, "", &mut changed);
        assert_eq!(
            changed,
            [
                "plugin.auth-enhancer.config.threshold",
                "plugin.auth-enhancer.config.window_secs",
                "plugin.audit-logger",
            ]
        );
    }
}
