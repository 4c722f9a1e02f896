//! What `run` and `demo` share: building the bus and the plugin manager from the config, watching
//! alerts and event types, and the orderly shutdown that ends with an account.

use anyhow::Context as _;
use parking_lot::Mutex;
use plugbus::payload::SecurityAlert;
use plugbus::{Bus, BusStats, Event, EventType, ShutdownReport};
use plugbus_host::{Config, LoadReport, PluginManager, PluginStatus, Watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A running bus with its plugins.
pub(crate) struct Session {
    pub(crate) bus: Bus,
    pub(crate) manager: PluginManager,
    pub(crate) load: LoadReport,
    pub(crate) seen: Arc<Mutex<BTreeMap<String, u64>>>,
    pub(crate) alerts: Arc<Mutex<Vec<SecurityAlert>>>,
    pub(crate) shutdown_timeout: Duration,
    _watcher: Option<Watcher>,
}

/// Everything the summary prints, gathered before and after shutdown.
pub(crate) struct Outcome {
    pub(crate) load: LoadReport,
    pub(crate) seen: BTreeMap<String, u64>,
    pub(crate) alerts: Vec<SecurityAlert>,
    pub(crate) stats: BusStats,
    pub(crate) plugins: Vec<PluginStatus>,
    pub(crate) account: ShutdownReport,
}

impl Outcome {
    /// Events plugins published that never reached the bus: refused (for any reason), or
    /// still in a plugin's outbound queue when the plugins were stopped.
    pub(crate) fn publish_refusals(&self) -> u64 {
        self.plugins
            .iter()
            .map(|p| p.counters.refused() + p.counters.publish_pending)
            .sum()
    }

    /// True only if the bus's account balances and no plugin's publish was refused or left
    /// behind: what a run may call "balanced".
    pub(crate) fn is_balanced(&self) -> bool {
        self.account.is_balanced() && self.publish_refusals() == 0
    }
}

pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::from_path(p).map_err(anyhow::Error::new),
        None => Ok(Config::default()),
    }
}

/// Replaces the plugin directories with `dirs` when any are given.
pub(crate) fn override_dirs(config: &mut Config, dirs: &[PathBuf]) -> anyhow::Result<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    config.plugins.directories = dirs
        .iter()
        .map(|d| {
            std::fs::canonicalize(d).with_context(|| format!("plugin directory '{}'", d.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(())
}

impl Session {
    pub(crate) async fn start(config: Config) -> anyhow::Result<Session> {
        let bus = plugbus_host::bus_builder(&config.bus)
            .build()
            .context("building the bus")?;
        let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let s = seen.clone();
        bus.subscribe_pattern("*")
            .name("plugbus-cli/event-counter")
            .handle(move |e: &Event| {
                *s.lock()
                    .entry(e.event_type().name().to_owned())
                    .or_default() += 1;
            })
            .context("subscribing the event counter")?;
        let alerts: Arc<Mutex<Vec<SecurityAlert>>> = Arc::default();
        let a = alerts.clone();
        bus.subscribe(EventType::SECURITY_ALERT)
            .name("plugbus-cli/alerts")
            .handle(move |e: &Event| match e.data::<SecurityAlert>() {
                Ok(alert) => a.lock().push(alert.into_owned()),
                Err(err) => tracing::warn!(error = %err, "malformed security.alert"),
            })
            .context("subscribing the alert watcher")?;
        let shutdown_timeout = config.bus.shutdown_timeout;
        let watch = config.plugins.watch;
        let manager = PluginManager::new(bus.clone(), config);
        let load = manager.load_all().await;
        for err in &load.errors {
            tracing::error!("{err}");
            eprintln!("plugbus: {err}");
        }
        let watcher = if watch {
            Some(manager.watch().context("watching the plugin directories")?)
        } else {
            None
        };
        Ok(Session {
            bus,
            manager,
            load,
            seen,
            alerts,
            shutdown_timeout,
            _watcher: watcher,
        })
    }

    /// Lets deliveries finish, stops the plugins, shuts the bus down, and gathers the figures.
    pub(crate) async fn finish(self) -> Outcome {
        // Plugins' outbound queues flushed and the bus idle, so the figures below include every
        // event published up to now.
        if !self.manager.settle(self.shutdown_timeout).await {
            tracing::warn!(timeout = ?self.shutdown_timeout, "plugins and bus did not settle before shutdown");
        }
        let stats = self.bus.stats();
        let plugins = self.manager.plugins();
        drop(self._watcher);
        self.manager.shutdown().await;
        let account = self.bus.shutdown(self.shutdown_timeout).await;
        let seen = self.seen.lock().clone();
        let alerts = self.alerts.lock().clone();
        Outcome {
            load: self.load,
            seen,
            alerts,
            stats,
            plugins,
            account,
        }
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub(crate) async fn stop_requested() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
