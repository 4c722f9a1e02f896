//! A plugin's configuration changed while it runs: [`PluginManager::reconfigure`] and
//! [`PluginManager::apply_config`].
//!
//! A new `config` table is first checked against the schema the plugin declares (the plugin
//! never sees a table that fails it), then handed to the running instance's
//! `reconfigure`, on its own thread, between two deliveries. The plugin either applies it
//! (its state kept, nothing redelivered) or asks for a reload, which builds a new instance
//! from the new table exactly as a changed file would. A plugin that refuses the table keeps
//! the old one. Every outcome is published once per change as `config.changed`.

use std::collections::BTreeSet;

use plugbus::payload::ConfigChanged;

use super::in_process::{call_reconfigure, CallResult};
use super::{PluginManager, PluginState};
use crate::config::Config;
use crate::error::ManagerError;
use crate::loader;

/// What became of a plugin's new configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconfigured {
    /// The table is the one the plugin runs with already.
    Unchanged,
    /// The running instance applied it.
    Applied,
    /// The plugin was reloaded with it (it does not reconfigure in place).
    Reloaded,
    /// The plugin is not running; it gets the table when it is next loaded.
    Stored,
}

impl PluginManager {
    /// Gives plugin `name` a new configuration table (the JSON of its `config`).
    ///
    /// The table is checked against the plugin's schema, then passed to the running
    /// instance's `reconfigure`; a plugin that does not reconfigure in place is reloaded with
    /// it. Later reloads use it too.
    ///
    /// # Errors
    /// [`ManagerError::Load`] with [`LoadErrorKind::InvalidConfig`] when the table fails the
    /// schema, [`ManagerError::Reconfigure`] when the plugin refuses it (both: the plugin
    /// keeps its old table), [`ManagerError::TimedOut`], or the errors of
    /// [`reload`](Self::reload).
    ///
    /// [`LoadErrorKind::InvalidConfig`]: crate::LoadErrorKind::InvalidConfig
    pub async fn reconfigure(
        &self,
        name: &str,
        config: serde_json::Value,
    ) -> Result<Reconfigured, ManagerError> {
        let _ops = self.inner.ops.lock().await;
        self.reconfigure_locked(name, config).await
    }

    async fn reconfigure_locked(
        &self,
        name: &str,
        config: serde_json::Value,
    ) -> Result<Reconfigured, ManagerError> {
        let config = match config {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            other => other,
        };
        if self.inner.plugin_config(name) == config {
            return Ok(Reconfigured::Unchanged);
        }
        let found = {
            let entries = self.inner.entries();
            entries.iter().find(|e| e.name() == name).map(|e| {
                (
                    e.library.clone(),
                    e.shared.state().clone(),
                    e.worker.as_ref().map(|w| w.tx.clone()),
                )
            })
        };
        let Some((library, state, tx)) = found else {
            self.inner.set_plugin_config(name, config);
            return Ok(Reconfigured::Stored);
        };
        loader::check_config(&library, &config)?;
        let tx = match (state, tx) {
            (PluginState::Loaded | PluginState::Running, Some(tx)) => tx,
            _ => {
                self.inner.set_plugin_config(name, config);
                return Ok(Reconfigured::Stored);
            }
        };
        let timeout = self.inner.options.lifecycle_timeout;
        let config_json = config.to_string();
        let answer = call_reconfigure(&tx, config_json, timeout).await;
        match answer {
            CallResult::Done(Ok(true)) => {
                self.inner.set_plugin_config(name, config);
                tracing::info!(plugin = %name, "plugin reconfigured in place");
                Ok(Reconfigured::Applied)
            }
            CallResult::Done(Ok(false)) => {
                let old = self.inner.plugin_config(name);
                self.inner.set_plugin_config(name, config);
                tracing::info!(plugin = %name, "plugin does not reconfigure in place: reloading it");
                match self.reload_locked(name).await {
                    Ok(_) => Ok(Reconfigured::Reloaded),
                    Err(err) => {
                        // The new table did not make a working instance: back to the old one.
                        self.inner.set_plugin_config(name, old);
                        if self.status(name).is_none() {
                            let _ = self.load_path_locked(&library.path).await;
                            if let Some(status) = self.status(name) {
                                if status.state == PluginState::Loaded {
                                    let _ = self.start_locked(name).await;
                                }
                            }
                        }
                        Err(err)
                    }
                }
            }
            CallResult::Done(Err(error)) => Err(ManagerError::Reconfigure {
                name: name.to_owned(),
                error: error.to_string(),
            }),
            CallResult::TimedOut => Err(ManagerError::TimedOut {
                name: name.to_owned(),
                stage: "reconfigure",
                after: timeout,
            }),
            CallResult::Gone => Err(ManagerError::ThreadGone {
                name: name.to_owned(),
            }),
        }
    }

    /// Applies a changed configuration file: every plugin whose `config` table differs from
    /// the one it runs with is [reconfigured](Self::reconfigure); `changed_keys` are the
    /// dotted keys that changed, and those outside plugins' `config` tables are reported as
    /// needing a restart. Publishes one `config.changed` saying what happened, and returns
    /// it.
    pub async fn apply_config(
        &self,
        source: &str,
        new: &Config,
        changed_keys: Vec<String>,
    ) -> ConfigChanged {
        let mut names: BTreeSet<String> = self.plugins().into_iter().map(|s| s.name).collect();
        names.extend(new.plugin.keys().cloned());
        let mut change = ConfigChanged {
            source: source.to_owned(),
            restart_needed: changed_keys
                .iter()
                .filter(|k| !is_plugin_config_key(k, &names))
                .cloned()
                .collect(),
            changed_keys,
            ..ConfigChanged::default()
        };
        for name in names {
            let config = new.plugin(&name).config_json();
            match self.reconfigure(&name, config).await {
                Ok(Reconfigured::Unchanged) => {}
                Ok(Reconfigured::Applied) => change.reconfigured.push(name),
                Ok(Reconfigured::Reloaded) => change.reloaded.push(name),
                Ok(Reconfigured::Stored) => {}
                Err(err) => {
                    tracing::warn!(plugin = %name, error = %err, "new plugin configuration refused");
                    change.refused.push(format!("{name}: {err}"));
                }
            }
        }
        if !change.restart_needed.is_empty() {
            tracing::warn!(keys = ?change.restart_needed, "configuration changes that take effect at the next start");
        }
        self.emit(change.clone()).await;
        change
    }

    /// Publishes `config.changed` for a file that could not be applied at all.
    pub(crate) async fn config_refused(&self, source: &str, error: String) {
        self.emit(ConfigChanged {
            source: source.to_owned(),
            error,
            ..ConfigChanged::default()
        })
        .await;
    }
}

/// `plugin.<name>.config` or below, for one of `names`.
fn is_plugin_config_key(key: &str, names: &BTreeSet<String>) -> bool {
    names.iter().any(|name| {
        key.strip_prefix("plugin.")
            .and_then(|rest| rest.strip_prefix(name.as_str()))
            .and_then(|rest| rest.strip_prefix(".config"))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_keys_are_told_from_the_rest() {
        let names: BTreeSet<String> = ["auth-enhancer".to_owned(), "a.b".to_owned()].into();
        assert!(is_plugin_config_key("plugin.auth-enhancer.config", &names));
        assert!(is_plugin_config_key(
            "plugin.auth-enhancer.config.threshold",
            &names
        ));
        assert!(is_plugin_config_key("plugin.a.b.config.x", &names));
        assert!(!is_plugin_config_key(
            "plugin.auth-enhancer.timeout",
            &names
        ));
        assert!(!is_plugin_config_key(
            "plugin.auth-enhancer.configx",
            &names
        ));
        assert!(!is_plugin_config_key("bus.capacity", &names));
    }
}
