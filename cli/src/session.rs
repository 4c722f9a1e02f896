//! What `run` and `demo` share: building the bus and the plugin manager from the config, watching
//! alerts and event types, and the orderly shutdown that ends with an account.

use anyhow::Context as _;
use parking_lot::Mutex;
use plugbus::payload::SecurityAlert;
use plugbus::{Bus, BusStats, Event, EventType, ShutdownReport};
use plugbus_host::{Config, LoadReport, PluginManager, PluginState, PluginStatus, Watcher};
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
    /// Plugins marked `required` (fail closed).
    required: Vec<String>,
    /// The NATS bridge, when the config has `[bridge.nats]`.
    bridge: Option<crate::bridge::Bridge>,
    _watcher: Option<Watcher>,
    /// With hot-plug on and a config file: its changed plugin tables reach the plugins.
    _config_watcher: Option<plugbus_host::ConfigWatcher>,
}

/// Everything the summary prints, gathered before and after shutdown.
pub(crate) struct Outcome {
    pub(crate) load: LoadReport,
    pub(crate) seen: BTreeMap<String, u64>,
    pub(crate) alerts: Vec<SecurityAlert>,
    pub(crate) stats: BusStats,
    pub(crate) plugins: Vec<PluginStatus>,
    pub(crate) account: ShutdownReport,
    /// Why a required plugin could not be relied on by the end, if one could not.
    pub(crate) required_failure: Option<String>,
    /// The bridge's counters, when there was one.
    pub(crate) bridge: Option<crate::bridge::Figures>,
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

    /// True only if the bus's account balances, no plugin's publish was refused or left
    /// behind, and no required plugin failed (its records, an audit trail, are incomplete):
    /// what a run may call "balanced".
    pub(crate) fn is_balanced(&self) -> bool {
        self.account.is_balanced()
            && self.publish_refusals() == 0
            && self.required_failure.is_none()
    }
}

/// The plugins the config marks `required` (and enabled): their failure fails the run.
pub(crate) fn required_plugins(config: &Config) -> Vec<String> {
    config
        .plugin
        .iter()
        .filter(|(_, s)| s.required && s.enabled)
        .map(|(name, _)| name.clone())
        .collect()
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

/// The session's own subscriptions (name, what it selects), for `plugbus flows`.
const EVENT_COUNTER: (&str, &str) = ("plugbus-cli/event-counter", "*");
const ALERTS: (&str, &str) = ("plugbus-cli/alerts", plugbus::types::SECURITY_ALERT);

/// The in-process subscriptions a session makes, as `plugbus flows` draws them.
pub(crate) fn in_process_receivers() -> Vec<plugbus_host::flows::Receiver> {
    [EVENT_COUNTER, ALERTS]
        .into_iter()
        .map(|(name, selects)| plugbus_host::flows::Receiver::in_process(name, [selects]))
        .collect()
}

impl Session {
    /// The NATS bridge's live counters, when a bridge runs (for `/metrics`).
    pub(crate) fn bridge_live(&self) -> Option<crate::bridge::Live> {
        self.bridge.as_ref().map(crate::bridge::Bridge::live)
    }

    pub(crate) async fn start(
        config: Config,
        config_path: Option<&Path>,
    ) -> anyhow::Result<Session> {
        let bus = plugbus_host::bus_builder(&config.bus)
            .build()
            .context("building the bus")?;
        let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let s = seen.clone();
        bus.subscribe_pattern(EVENT_COUNTER.1)
            .name(EVENT_COUNTER.0)
            .handle(move |e: &Event| {
                *s.lock()
                    .entry(e.event_type().name().to_owned())
                    .or_default() += 1;
            })
            .context("subscribing the event counter")?;
        let alerts: Arc<Mutex<Vec<SecurityAlert>>> = Arc::default();
        let a = alerts.clone();
        bus.subscribe(EventType::SECURITY_ALERT)
            .name(ALERTS.0)
            .handle(move |e: &Event| match e.data::<SecurityAlert>() {
                Ok(alert) => a.lock().push(alert.into_owned()),
                Err(err) => tracing::warn!(error = %err, "malformed security.alert"),
            })
            .context("subscribing the alert watcher")?;
        let shutdown_timeout = config.bus.shutdown_timeout;
        let watch = config.plugins.watch;
        let required = required_plugins(&config);
        let bridge_config = config.clone();
        let manager = PluginManager::new(bus.clone(), config);
        let load = manager.load_all().await;
        // After the plugins: a remote event taken now reaches them (it is acked once they
        // had it, so none may be missing yet).
        let bridge = crate::bridge::start(&bus, &bridge_config, config_path).await?;
        // Each failure once, as it happens (the library logs them at debug level only).
        for err in &load.errors {
            eprintln!("plugbus: {err}");
        }
        let watcher = if watch {
            Some(manager.watch().context("watching the plugin directories")?)
        } else {
            None
        };
        let config_watcher = match config_path {
            Some(path) if watch => Some(
                manager
                    .watch_config(path)
                    .context("watching the configuration file")?,
            ),
            _ => None,
        };
        Ok(Session {
            bus,
            manager,
            load,
            seen,
            alerts,
            shutdown_timeout,
            required,
            bridge,
            _watcher: watcher,
            _config_watcher: config_watcher,
        })
    }

    /// Why a plugin marked `required` can no longer be relied on, if one cannot: it is not
    /// running, or one of its deliveries failed, timed out, panicked or was dead-lettered.
    pub(crate) fn required_failure(&self) -> Option<String> {
        for name in &self.required {
            let Some(status) = self.manager.status(name) else {
                return Some(format!("required plugin '{name}' is not loaded"));
            };
            if status.state != PluginState::Running {
                return Some(format!("required plugin '{name}' is {}", status.state));
            }
            let c = status.counters;
            if c.failed + c.panicked + c.timed_out > 0 {
                return Some(format!(
                    "required plugin '{name}' did not handle every delivery: {} failed, {} panicked, {} timed out",
                    c.failed, c.panicked, c.timed_out
                ));
            }
        }
        let stats = self.bus.stats();
        for sub in &stats.subscriptions {
            let owner = sub.name.split('/').next().unwrap_or_default();
            if self.required.iter().any(|r| r == owner)
                && sub.totals.dead_lettered + sub.totals.failed > 0
            {
                return Some(format!(
                    "required plugin '{owner}' lost deliveries: {} dead-lettered, {} failed ({})",
                    sub.totals.dead_lettered, sub.totals.failed, sub.name
                ));
            }
        }
        None
    }

    /// Lets deliveries finish, stops the plugins, shuts the bus down, and gathers the figures.
    pub(crate) async fn finish(mut self) -> Outcome {
        // Remote events stop first, so the figures below are final; the outbox drains after
        // the plugins settled, so what they published on the way goes out too.
        if let Some(bridge) = self.bridge.as_mut() {
            bridge.stop_receiving().await;
        }
        // Plugins' outbound queues flushed and the bus idle, so the figures below include every
        // event published up to now.
        if !self.manager.settle(self.shutdown_timeout).await {
            tracing::warn!(timeout = ?self.shutdown_timeout, "plugins and bus did not settle before shutdown");
        }
        let bridge = match self.bridge.take() {
            Some(b) => Some(b.shutdown(self.shutdown_timeout).await),
            None => None,
        };
        let required_failure = self.required_failure();
        let stats = self.bus.stats();
        let running = self.manager.plugins();
        drop(self._watcher);
        let stopped = self.manager.shutdown().await;
        let account = self.bus.shutdown(self.shutdown_timeout).await;
        // Figures after shutdown: what plugins published while stopping (an audit logger's
        // final seal) and whatever was refused then are counted too.
        let plugins = running
            .into_iter()
            .map(|p| {
                stopped
                    .iter()
                    .find(|s| s.name == p.name)
                    .cloned()
                    .unwrap_or(PluginStatus {
                        state: PluginState::Stopped,
                        ..p
                    })
            })
            .collect();
        let seen = self.seen.lock().clone();
        let alerts = self.alerts.lock().clone();
        Outcome {
            load: self.load,
            seen,
            alerts,
            stats,
            plugins,
            account,
            required_failure,
            bridge,
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
