//! The `[bridge.nats]` table of `plugbus.toml` -> a validated [`NatsConfig`].
//!
//! The host keeps the table as raw TOML and hands it here, so an application that embeds the
//! host without the bridge never compiles a NATS client. Unknown keys are errors that name the
//! key; durations are human-readable (`"30s"`, `"250ms"`).
//!
//! ```
//! use plugbus_bridge_nats::NatsConfig;
//! let config = NatsConfig::from_toml_str(r#"
//!     url = "nats://127.0.0.1:4222"
//!     durable = "host-a"
//!     forward = ["user.*"]
//!     receive = ["security.*"]
//! "#, "/etc/plugbus/host-a.toml".as_ref())?;
//! assert_eq!(config.stream, "PLUGBUS");
//! assert_eq!(config.host_id(), "host-a");
//! assert_eq!(config.outbox_path(), std::path::Path::new("/etc/plugbus/host-a.outbox.sqlite"));
//! # Ok::<(), plugbus_bridge_nats::ConfigError>(())
//! ```

use crate::error::ConfigError;
use crate::subject;
use plugbus::Pattern;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bridge's settings: the `[bridge.nats]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// The server to connect to. The default is `nats://127.0.0.1:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The JetStream stream that carries the events; created (over `<subject_prefix>.>`) if
    /// missing. The default is `PLUGBUS`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Events of type `t` travel on subject `<subject_prefix>.t`. The default is `plugbus`.
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// Patterns of the local events sent to the broker (`user.*`, `security.alert`, `*`).
    /// The default is none.
    #[serde(default)]
    pub forward: Vec<String>,
    /// Patterns of the remote events fed to the local bus. The default is none (no consumer).
    #[serde(default)]
    pub receive: Vec<String>,
    /// The name of this host's durable pull consumer. Required: two hosts must not share it.
    pub durable: String,
    /// This host's id, sent with every event it forwards so it never receives them back.
    /// The default is `durable`.
    #[serde(default)]
    pub host_id: Option<String>,
    /// A NATS credentials file (`.creds`). The default is none.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// TLS settings. The default is plain TCP unless the server asks for TLS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The outbox file. The default is `<config file stem>.outbox.sqlite` beside the config
    /// file.
    #[serde(default)]
    pub outbox: Option<PathBuf>,
    /// How the stream stores messages when the bridge creates it: `file` or `memory`. The
    /// default is `file`.
    #[serde(default)]
    pub storage: Storage,
    /// The stream's duplicate window (a re-sent event id inside it is dropped) when the bridge
    /// creates the stream. The default is 2 minutes.
    #[serde(default = "default_duplicate_window", deserialize_with = "duration")]
    pub duplicate_window: Duration,
    /// How long the server waits for this host's ack before redelivering. The default is 30 s.
    #[serde(default = "default_ack_wait", deserialize_with = "duration")]
    pub ack_wait: Duration,
    /// How many events may be sent to the broker and not yet acknowledged, at most
    /// [`MAX_IN_FLIGHT`]. The default is 4096.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How many ids of received events are remembered to drop redeliveries. The default is
    /// 100 000.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    /// Received messages acknowledged at once, at most: the consumer acknowledges "all up to
    /// here" after this many handled messages, or as soon as no further message is waiting,
    /// so the broker handles one ack instead of one per message. `1` acknowledges each message
    /// on its own. A host that dies between handling and acknowledging is sent at most this
    /// many handled messages again when it comes back. The default is 256. A consumer created
    /// before with another ack policy keeps its own.
    #[serde(default = "default_ack_batch")]
    pub ack_batch: usize,
    /// The directory relative paths resolve against (the config file's); not a key.
    #[serde(skip)]
    base: PathBuf,
    /// The config file's stem, for the default outbox name; not a key.
    #[serde(skip)]
    stem: String,
}

/// TLS settings: the `[bridge.nats.tls]` table.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Require TLS. The default is `true` once the table is present.
    #[serde(default = "yes")]
    pub required: bool,
    /// A PEM file of root certificates to trust. The default is the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A PEM client certificate; needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's PEM private key; needs `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// Where the stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// On disk (survives a server restart).
    #[default]
    File,
    /// In memory.
    Memory,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}
fn default_stream() -> String {
    "PLUGBUS".to_owned()
}
fn default_prefix() -> String {
    "plugbus".to_owned()
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}
/// The largest `max_in_flight`: half of what the NATS client buffers for one subscription
/// (64 Ki messages), so the acks of a full window are never dropped as a slow consumer's.
pub const MAX_IN_FLIGHT: usize = 32 * 1024;

fn default_max_in_flight() -> usize {
    4096
}
fn default_ack_batch() -> usize {
    256
}
fn default_dedup_window() -> usize {
    100_000
}
fn yes() -> bool {
    true
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("'{text}' is not a duration: {e}")))
}

impl NatsConfig {
    /// A configuration with the defaults, for code that builds one without a file.
    pub fn new(url: &str, durable: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            stream: default_stream(),
            subject_prefix: default_prefix(),
            forward: Vec::new(),
            receive: Vec::new(),
            durable: durable.to_owned(),
            host_id: None,
            credentials: None,
            tls: None,
            outbox: None,
            storage: Storage::File,
            duplicate_window: default_duplicate_window(),
            ack_wait: default_ack_wait(),
            max_in_flight: default_max_in_flight(),
            dedup_window: default_dedup_window(),
            ack_batch: default_ack_batch(),
            base: PathBuf::from("."),
            stem: "plugbus".to_owned(),
        }
    }

    /// Parses and validates the table. `config_path` is the file it came from: relative
    /// paths resolve against its folder, and the default outbox is named after it.
    ///
    /// # Errors
    /// An unknown key, a missing `durable`, a bad value; the message names the key.
    pub fn from_table(table: toml::Table, config_path: &Path) -> Result<NatsConfig, ConfigError> {
        let mut config: NatsConfig = serde_path_to_error(table)?;
        config.locate(config_path);
        config.validate()?;
        Ok(config)
    }

    /// [`from_table`](Self::from_table) over TOML text (the table's body).
    ///
    /// # Errors
    /// As `from_table`, and malformed TOML.
    pub fn from_toml_str(text: &str, config_path: &Path) -> Result<NatsConfig, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                message: e.to_string(),
            })?;
        NatsConfig::from_table(table, config_path)
    }

    fn locate(&mut self, config_path: &Path) {
        self.base = match config_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.stem = config_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugbus")
            .to_owned();
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.durable.is_empty() || !subject::is_token(&self.durable) {
            return bad(
                "durable",
                format!(
                    "'{}' must be a non-empty name without spaces, '.', '*' or '>'",
                    self.durable
                ),
            );
        }
        if let Some(h) = &self.host_id {
            if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad(
                    "host_id",
                    format!("'{h}' must be a non-empty name without spaces"),
                );
            }
        }
        if self.stream.is_empty() || !subject::is_token(&self.stream) {
            return bad(
                "stream",
                format!(
                    "'{}' must be a non-empty name without spaces, '.', '*' or '>'",
                    self.stream
                ),
            );
        }
        if !subject::is_prefix(&self.subject_prefix) {
            return bad(
                "subject_prefix",
                format!(
                    "'{}' is not a NATS subject prefix (dotted tokens, no wildcards)",
                    self.subject_prefix
                ),
            );
        }
        for (key, list) in [("forward", &self.forward), ("receive", &self.receive)] {
            for p in list {
                if let Err(e) = Pattern::parse(p) {
                    return bad(key, e.to_string());
                }
            }
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT {
            return bad(
                "max_in_flight",
                format!(
                    "must be from 1 to {MAX_IN_FLIGHT} (the acks of a full window wait in the \
                     client's buffer for one subscription)"
                ),
            );
        }
        if self.dedup_window == 0 {
            return bad("dedup_window", "must be greater than 0".to_owned());
        }
        if self.ack_batch == 0 {
            return bad("ack_batch", "must be greater than 0".to_owned());
        }
        if self.ack_wait.is_zero() {
            return bad("ack_wait", "must be greater than 0".to_owned());
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                return bad("tls", "'cert' and 'key' go together".to_owned());
            }
        }
        Ok(())
    }

    /// This host's id: `host_id`, or `durable`.
    pub fn host_id(&self) -> &str {
        self.host_id.as_deref().unwrap_or(&self.durable)
    }

    /// The outbox file: `outbox` (relative to the config file's folder) or the default.
    pub fn outbox_path(&self) -> PathBuf {
        match &self.outbox {
            Some(p) => self.resolve(p),
            None => self.base.join(format!("{}.outbox.sqlite", self.stem)),
        }
    }

    /// `path` relative to the config file's folder unless absolute.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// Sets the outbox file (for code that builds a config without a file).
    pub fn with_outbox(mut self, path: impl Into<PathBuf>) -> NatsConfig {
        self.outbox = Some(path.into());
        self
    }
}

/// Deserializes the table, naming the full key of an error.
fn serde_path_to_error(table: toml::Table) -> Result<NatsConfig, ConfigError> {
    let value = toml::Value::Table(table);
    NatsConfig::deserialize(value).map_err(|e| ConfigError::Toml {
        message: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NatsConfig, ConfigError> {
        NatsConfig::from_toml_str(text, Path::new("/x/conf/host.toml"))
    }

    #[test]
    fn defaults_and_paths() -> Result<(), ConfigError> {
        let c = parse("durable = \"b\"")?;
        assert_eq!(c.url, "nats://127.0.0.1:4222");
        assert_eq!(c.subject_prefix, "plugbus");
        assert_eq!(c.host_id(), "b");
        assert_eq!(c.outbox_path(), Path::new("/x/conf/host.outbox.sqlite"));
        let c = parse("durable = \"b\"\noutbox = \"data/o.db\"\nhost_id = \"h1\"")?;
        assert_eq!(c.outbox_path(), Path::new("/x/conf/data/o.db"));
        assert_eq!(c.host_id(), "h1");
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse("durable = \"b\"\nurll = \"x\"")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
        let e = parse("url = \"x\"").map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("durable"), "{e}");
        let e = parse("durable = \"a.b\"").map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("durable"), "{e}");
        let e = parse("durable = \"b\"\nforward = [\"user.\"]")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("forward"), "{e}");
        let e = parse("durable = \"b\"\nack_wait = \"soon\"")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
        let e = parse("durable = \"b\"\n[tls]\ncert = \"c.pem\"")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("tls"), "{e}");
        let e = parse("durable = \"b\"\n[tls]\nkey_file = \"c.pem\"")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
        for n in [0, MAX_IN_FLIGHT + 1] {
            let e = parse(&format!("durable = \"b\"\nmax_in_flight = {n}"))
                .map(|_| ())
                .unwrap_err();
            assert!(e.to_string().contains("max_in_flight"), "{e}");
        }
        assert!(parse(&format!("durable = \"b\"\nmax_in_flight = {MAX_IN_FLIGHT}")).is_ok());
    }
}
