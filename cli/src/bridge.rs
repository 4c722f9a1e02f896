//! The NATS bridge for `run` and `demo`: started when the config has `[bridge.nats]`, stopped
//! in the session's orderly shutdown, its counters in the summary.
//!
//! The host library keeps `[bridge.nats]` as a raw table; `plugbus-bridge-nats` parses it
//! (unknown keys are errors there). Built without the `nats` feature, a config with the table
//! is refused rather than silently not bridged.

#[cfg(feature = "nats")]
use anyhow::Context as _;
use plugbus::Bus;
use plugbus_host::Config;
use std::path::Path;
use std::time::Duration;

/// The bridge's counters, as the summary prints them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) forwarded: u64,
    pub(crate) queued: u64,
    pub(crate) staged: u64,
    pub(crate) publish_errors: u64,
    pub(crate) broker_duplicates: u64,
    pub(crate) outbox_depth: u64,
    pub(crate) received: u64,
    pub(crate) acked: u64,
    pub(crate) nacked: u64,
    pub(crate) redelivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) own: u64,
    pub(crate) malformed: u64,
    pub(crate) refused: u64,
    pub(crate) consumer_lag: Option<u64>,
}

/// A running bridge.
pub(crate) struct Bridge {
    #[cfg(feature = "nats")]
    inner: plugbus_bridge_nats::NatsBridge,
}

/// Starts the bridge if the config asks for one. `config_path` names the file (relative
/// paths and the default outbox are beside it).
pub(crate) async fn start(
    bus: &Bus,
    config: &Config,
    config_path: Option<&Path>,
) -> anyhow::Result<Option<Bridge>> {
    let Some(table) = config.bridge.nats.clone() else {
        return Ok(None);
    };
    let path = config_path.unwrap_or(Path::new("plugbus.toml"));
    start_nats(bus, table, path).await.map(Some)
}

#[cfg(feature = "nats")]
async fn start_nats(bus: &Bus, table: toml::Table, path: &Path) -> anyhow::Result<Bridge> {
    use plugbus_bridge_nats::{NatsBridge, NatsConfig};
    let nats = NatsConfig::from_table(table, path)
        .with_context(|| format!("reading '{}'", path.display()))?;
    let inner = NatsBridge::builder(nats)
        // A remote host is not this host: the same rule as for plugins and input lines.
        .admission(|e| {
            plugbus_host::bridge::forbidden_for_plugins(e.event_type().name(), e.source())
        })
        .start(bus)
        .await
        .context("starting the NATS bridge")?;
    tracing::info!(host = inner.host_id(), outbox = %inner.outbox_path().display(), "NATS bridge started");
    Ok(Bridge { inner })
}

#[cfg(not(feature = "nats"))]
async fn start_nats(_bus: &Bus, _table: toml::Table, path: &Path) -> anyhow::Result<Bridge> {
    anyhow::bail!(
        "'{}' has [bridge.nats], but this plugbus was built without the `nats` feature",
        path.display()
    )
}

impl Bridge {
    /// Stops taking remote events (before the plugins settle).
    pub(crate) async fn stop_receiving(&mut self) {
        #[cfg(feature = "nats")]
        self.inner.stop_receiving().await;
    }

    /// A handle on the bridge's live counters, for the metrics endpoint.
    pub(crate) fn live(&self) -> Live {
        Live {
            #[cfg(feature = "nats")]
            inner: self.inner.stats_handle(),
        }
    }

    /// Drains the outbox to the broker for at most `timeout` and stops.
    pub(crate) async fn shutdown(self, timeout: Duration) -> Figures {
        #[cfg(feature = "nats")]
        {
            figures(self.inner.shutdown(timeout).await)
        }
        #[cfg(not(feature = "nats"))]
        {
            let _ = timeout;
            Figures::default()
        }
    }
}

/// Reads a running bridge's counters (cheap to clone).
#[derive(Clone)]
pub(crate) struct Live {
    #[cfg(feature = "nats")]
    inner: plugbus_bridge_nats::StatsHandle,
}

impl Live {
    /// The counters now (the consumer lag is only in the final summary: it is a request to
    /// the server).
    pub(crate) fn figures(&self) -> Figures {
        #[cfg(feature = "nats")]
        {
            figures(self.inner.stats())
        }
        #[cfg(not(feature = "nats"))]
        {
            Figures::default()
        }
    }
}

#[cfg(feature = "nats")]
fn figures(s: plugbus_bridge_nats::BridgeStats) -> Figures {
    Figures {
        forwarded: s.forwarded,
        queued: s.queued,
        staged: s.staged,
        publish_errors: s.publish_errors,
        broker_duplicates: s.broker_duplicates,
        outbox_depth: s.outbox_depth,
        received: s.received,
        acked: s.acked,
        nacked: s.nacked,
        redelivered: s.redelivered,
        duplicates: s.duplicates,
        own: s.own,
        malformed: s.malformed,
        refused: s.refused,
        consumer_lag: s.consumer_lag,
    }
}
