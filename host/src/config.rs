//! `plugbus.toml` -> a validated [`Config`].
//!
//! This module owns the host's configuration file format and nothing else: it
//! parses TOML into plain public structs, fills every missing field from a
//! documented default, and validates values after parsing. It knows nothing about
//! the bus or the plugin ABI; the host maps these plain values onto the bus builder
//! and the plugin manager.
//!
//! # Rules
//! - Every table rejects unknown keys. The error names the file, the full key path
//!   and, when a known key is close, suggests it:
//!   `plugbus.toml: unknown key 'bus.mailbox_capacty' (did you mean 'mailbox_capacity'?)`,
//!   followed by the TOML parser's own report (line, column and the offending text).
//! - Durations are human-readable strings: `"30s"`, `"250ms"`, `"1m 30s"`.
//! - Bad values (a zero capacity, a zero timeout, a backoff ceiling below its
//!   start, ...) are errors naming the key, e.g.
//!   `plugbus.toml: invalid value for 'bus.mailbox_capacity': must be greater than 0`.
//! - An empty file is a valid configuration: every field has a default, stated on
//!   the field.
//! - Relative plugin directories resolve against the folder holding the config file
//!   ([`Config::from_path`] does this; [`Config::from_toml_str`] leaves them as
//!   written, see [`Config::resolve_relative_to`]).
//!
//! # Example
//! ```toml
//! [bus]
//! default_timeout = "30s"
//! mailbox_capacity = 1024
//! overflow = "wait"            # wait | reject | drop_oldest | dead_letter
//!
//! [plugins]
//! directories = ["plugins"]
//!
//! [plugin.audit-logger]
//! timeout = "2s"
//! config = { path = "audit.jsonl", fsync = "never" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ConfigErrorKind, Location};

/// The largest accepted capacity (mailboxes, queues, dead-letter queue): 2^24 entries.
///
/// Capacities bound memory; a larger value is almost certainly a typo.
pub const MAX_CAPACITY: usize = 1 << 24;

/// The longest accepted duration for any timeout, backoff or cool-down: 7 days.
///
/// Longer values are almost certainly a typo, and unbounded ones would overflow
/// deadline arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The largest accepted `bus.retry.max_attempts`.
pub const MAX_RETRY_ATTEMPTS: u32 = 100;

/// The whole validated configuration, as read from `plugbus.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Bus-wide defaults (`[bus]`).
    pub bus: BusConfig,
    /// Where plugins come from and how they are driven (`[plugins]`).
    pub plugins: PluginsConfig,
    /// One entry per `[plugin.<name>]` table, keyed by the plugin's declared name.
    /// Default: empty; a plugin without an entry gets [`PluginSettings::default`].
    pub plugin: BTreeMap<String, PluginSettings>,
    /// Bridges to other processes (`[bridge]`). Default: none.
    pub bridge: BridgeConfig,
    /// OpenTelemetry export (`[otel]`). Default: none, nothing is exported.
    pub otel: Option<OtelConfig>,
    /// Prometheus metrics (`[metrics]`). Default: none, nothing is served.
    pub metrics: Option<MetricsConfig>,
}

/// The `[metrics]` table: where `plugbus run` and `demo` serve Prometheus text exposition at
/// `/metrics` (the figures of `plugbus_host::metrics`). `--metrics ADDR` overrides it.
///
/// ```toml
/// [metrics]
/// listen = "127.0.0.1:9464"   # an IP address and port; port 0 picks a free one
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The address to listen on, `IP:PORT`. Required.
    pub listen: std::net::SocketAddr,
}

/// The `[otel]` table: where the host sends its delivery spans over OTLP/HTTP (protobuf).
///
/// Read by every build, so one config file serves all; only a host built with the `otel`
/// feature exports (see `plugbus_host::otel`), and the `plugbus` binary refuses an `[otel]`
/// table when it was built without it.
///
/// ```toml
/// [otel]
/// endpoint = "http://127.0.0.1:4318"   # the collector; "/v1/traces" is appended
/// service_name = "checkout-events"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelConfig {
    /// The collector's OTLP/HTTP address, `http://host:port` (plain HTTP: the exporter is
    /// built without TLS, for a local collector or agent). `/v1/traces` is appended unless the
    /// path already ends with it. Required.
    pub endpoint: String,
    /// The `service.name` the spans are reported under. Default: `plugbus`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_service_name() -> String {
    "plugbus".to_owned()
}

impl OtelConfig {
    /// The URL spans are posted to: the endpoint with `/v1/traces` appended unless its path
    /// already ends with it.
    ///
    /// ```
    /// # use plugbus_host::config::OtelConfig;
    /// let c = OtelConfig { endpoint: "http://127.0.0.1:4318/".into(), service_name: "x".into() };
    /// assert_eq!(c.traces_url(), "http://127.0.0.1:4318/v1/traces");
    /// ```
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    }

    /// The first bad key and why.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let endpoint = self.endpoint.trim();
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
            let reason = if endpoint.starts_with("https://") {
                format!("'{endpoint}': the OTLP exporter speaks plain HTTP (no TLS is built in); point it at a local collector")
            } else {
                format!("'{endpoint}' is not an http:// URL")
            };
            ("otel.endpoint", reason)
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.chars().any(|c| c.is_whitespace()) {
            return Err(("otel.endpoint", format!("'{endpoint}' names no host")));
        }
        if self.service_name.trim().is_empty() {
            return Err(("otel.service_name", "must not be empty".to_owned()));
        }
        Ok(())
    }
}

/// The `[bridge]` table: one raw table per bridge kind.
///
/// The host library does not parse a bridge's settings: the crate that implements the bridge
/// does (`plugbus-bridge-nats` for `[bridge.nats]`, with its own unknown-key errors), so an
/// application that embeds the host without a bridge never compiles a broker client. The
/// `plugbus` binary starts the NATS bridge when `[bridge.nats]` is present.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// `[bridge.nats]`, as written. Default: absent (no NATS bridge).
    pub nats: Option<toml::Table>,
}

/// Bus-wide defaults: the `[bus]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Per-handler timeout for subscriptions that do not set one. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub default_timeout: Duration,
    /// Capacity of each subscription's bounded mailbox. Default: `1024`.
    pub mailbox_capacity: usize,
    /// What a full mailbox does. Default: [`Overflow::Wait`].
    pub overflow: Overflow,
    /// Capacity of the bounded dead-letter queue. Default: `10000`.
    pub dead_letter_capacity: usize,
    /// How long shutdown drains mailboxes before dead-lettering the rest. Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// Retry policy for handler errors marked retryable (`[bus.retry]`).
    /// Default: `None`, no retries.
    pub retry: Option<RetryConfig>,
    /// Circuit breaker per subscription (`[bus.circuit_breaker]`).
    /// Default: `None`, no breaker.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30),
            mailbox_capacity: 1024,
            overflow: Overflow::Wait,
            dead_letter_capacity: 10_000,
            shutdown_timeout: Duration::from_secs(10),
            retry: None,
            circuit_breaker: None,
        }
    }
}

/// What a subscription does when its mailbox is full (`bus.overflow`): the bus's own
/// [`plugbus::Overflow`], written `"wait"`, `"reject"`, `"drop_oldest"` or `"dead_letter"`.
pub use plugbus::Overflow;

/// Retry with exponential backoff: the `[bus.retry]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts including the first one (`1` = no retry). Default: `3`.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time. Default: `10ms`.
    #[serde(deserialize_with = "de_duration")]
    pub initial_backoff: Duration,
    /// Ceiling for the backoff. Default: `1s`.
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Circuit breaker: the `[bus.circuit_breaker]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures or timeouts that open the circuit. Default: `5`.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a trial call. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub cool_down: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Plugin discovery and dispatch: the `[plugins]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folders searched for `*.so` plugins, in order. Relative paths resolve against
    /// the config file's folder. Default: `["plugins"]`.
    pub directories: Vec<PathBuf>,
    /// Watch the directories and hot-plug added or changed plugins. Default: `false`.
    pub watch: bool,
    /// How many deliveries each plugin subscription keeps queued for its plugin's thread at
    /// once (capped at 256); further events wait in the bus mailbox. Default: `1024`.
    pub queue_capacity: usize,
    /// Per-call timeout of a plugin handler, unless the plugin's own table overrides
    /// it. Default: `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub default_timeout: Duration,
    /// How plugins run unless their own table says otherwise. Default: `in_process`.
    pub isolation: Isolation,
    /// A child process is restarted at most this many times within `restart_window`; after
    /// that the plugin is failed. Default: `5`.
    pub max_restarts: u32,
    /// See `max_restarts`. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub restart_window: Duration,
    /// A child process that sends no heartbeat for this long (it is stopped, deadlocked, or
    /// one call into the plugin has run this long) is killed and restarted. Default: `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub heartbeat_timeout: Duration,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            directories: vec![PathBuf::from("plugins")],
            watch: false,
            queue_capacity: 1024,
            default_timeout: Duration::from_secs(5),
            isolation: Isolation::InProcess,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(5),
        }
    }
}

/// Where a plugin's code runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// On a thread of the host's own process: the fastest; a crash or abort of the plugin
    /// ends the host.
    #[default]
    InProcess,
    /// In a child process of its own, supervised: a crash, abort, `exit` or hang costs a
    /// restart of that plugin only (see `plugbus_host::isolation`).
    Process,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::InProcess => "in_process",
            Isolation::Process => "process",
        })
    }
}

/// Limits on one plugin's child process (`isolation = "process"` only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessLimits {
    /// Address space the plugin may add to its child process, in MiB: `RLIMIT_AS` is set to
    /// what the child has mapped once the plugin is loaded (the executable, the library, the
    /// allocator's up-front reservations) plus this. An allocation beyond it fails in the
    /// child, which then aborts and is restarted. Default: none.
    pub memory_mib: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`). Default: none (the host's limit).
    pub open_files: Option<u64>,
    /// CPU time in seconds (`RLIMIT_CPU`; the child is killed by `SIGXCPU`). Default: none.
    pub cpu_seconds: Option<u64>,
}

/// One plugin's settings: a `[plugin.<name>]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Load and start this plugin. Default: `true`.
    pub enabled: bool,
    /// Handler timeout for this plugin; `None` uses `plugins.default_timeout`.
    /// Default: `None`.
    #[serde(deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Fail closed on this plugin: if it does not load, does not start, fails, times out,
    /// panics on or dead-letters a delivery, or goes away, `plugbus run` and `demo` stop taking
    /// input, drain, and exit 1 (an audit trail that silently stops is worse than a stopped
    /// run). Default: `false`.
    pub required: bool,
    /// Required SHA-256 of the plugin's file, written as 64 hex digits.
    /// Default: `None`, not pinned.
    #[serde(deserialize_with = "de_opt_sha256")]
    pub sha256: Option<[u8; 32]>,
    /// The plugin's own configuration, any table; handed to the plugin as JSON by
    /// [`PluginSettings::config_json`]. Default: empty.
    pub config: toml::Table,
    /// Where this plugin runs; `None` uses `plugins.isolation`. Default: `None`.
    pub isolation: Option<Isolation>,
    /// This plugin's `max_restarts`; `None` uses `plugins.max_restarts`.
    pub max_restarts: Option<u32>,
    /// This plugin's `restart_window`; `None` uses `plugins.restart_window`.
    #[serde(deserialize_with = "de_opt_duration")]
    pub restart_window: Option<Duration>,
    /// Limits on this plugin's child process: `[plugin.<name>.limits]`.
    pub limits: ProcessLimits,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            timeout: None,
            sha256: None,
            config: toml::Table::new(),
            isolation: None,
            max_restarts: None,
            restart_window: None,
            limits: ProcessLimits::default(),
        }
    }
}

impl PluginSettings {
    /// The plugin's `config` table as a JSON object (`{}` when there is none).
    ///
    /// TOML date-times become strings in TOML's own format (RFC 3339 when complete).
    /// Non-finite floats, which JSON cannot carry, are refused when the config is
    /// loaded, so this conversion is lossless for every validated config.
    pub fn config_json(&self) -> serde_json::Value {
        table_to_json(&self.config)
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// Relative `plugins.directories` resolve against the file's folder. Errors name
    /// the file as given.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = read_config_text(path)
            .map_err(|source| ConfigError::new(&origin, ConfigErrorKind::Read { source }))?;
        let mut config = Config::from_toml_str(&text, &origin)?;
        let base = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        config.resolve_relative_to(&base);
        Ok(config)
    }

    /// Parses and validates config text. `origin` names the text in errors (usually
    /// the file name). Relative directories are left as written.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config = parse(text, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Makes every relative `plugins.directories` entry relative to `base`.
    pub fn resolve_relative_to(&mut self, base: &Path) {
        for dir in &mut self.plugins.directories {
            if dir.is_relative() {
                // Without `.` components: paths in messages read `/x/plugins`, not `/x/./plugins`.
                *dir = base
                    .join(&*dir)
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
            }
        }
    }

    /// The settings for the plugin called `name`; defaults when it has no table.
    pub fn plugin(&self, name: &str) -> PluginSettings {
        self.plugin.get(name).cloned().unwrap_or_default()
    }

    /// Whether plugin `name` should be loaded: its `enabled`, or `true` when it has
    /// no table.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.plugin
            .get(name)
            .is_none_or(|settings| settings.enabled)
    }

    /// The effective handler timeout of plugin `name`: its own `timeout`, or
    /// `plugins.default_timeout`.
    pub fn plugin_timeout(&self, name: &str) -> Duration {
        self.plugin
            .get(name)
            .and_then(|settings| settings.timeout)
            .unwrap_or(self.plugins.default_timeout)
    }

    /// Where plugin `name` runs: its own `isolation`, or `plugins.isolation`.
    pub fn plugin_isolation(&self, name: &str) -> Isolation {
        self.plugin
            .get(name)
            .and_then(|settings| settings.isolation)
            .unwrap_or(self.plugins.isolation)
    }

    /// Plugin `name`'s restart budget: (`max_restarts`, `restart_window`), its own or the
    /// `[plugins]` defaults.
    pub fn plugin_restarts(&self, name: &str) -> (u32, Duration) {
        let own = self.plugin.get(name);
        (
            own.and_then(|s| s.max_restarts)
                .unwrap_or(self.plugins.max_restarts),
            own.and_then(|s| s.restart_window)
                .unwrap_or(self.plugins.restart_window),
        )
    }

    /// Checks every value that parsing alone cannot, naming the first bad key.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            ConfigError::new(
                origin,
                ConfigErrorKind::InvalidValue {
                    key: key.to_owned(),
                    reason,
                    location: None,
                    detail: None,
                },
            )
        };
        if let Some(otel) = &self.otel {
            otel.check().map_err(|(key, reason)| invalid(key, reason))?;
        }
        if self.plugins.heartbeat_timeout < Duration::from_millis(100) {
            return Err(invalid(
                "plugins.heartbeat_timeout",
                format!(
                    "must be at least 100ms (a child beats every tenth of it), found {}",
                    humantime::format_duration(self.plugins.heartbeat_timeout)
                ),
            ));
        }
        for (name, settings) in &self.plugin {
            let limits = &settings.limits;
            for (key, value, least) in [
                ("memory_mib", limits.memory_mib, 1),
                ("open_files", limits.open_files, 16),
                ("cpu_seconds", limits.cpu_seconds, 1),
            ] {
                if value.is_some_and(|v| v < least) {
                    return Err(invalid(
                        &format!("plugin.{name}.limits.{key}"),
                        format!("must be at least {least}, found {}", value.unwrap_or(0)),
                    ));
                }
            }
        }
        let bus = &self.bus;
        check_duration(bus.default_timeout).map_err(|r| invalid("bus.default_timeout", r))?;
        check_capacity(bus.mailbox_capacity).map_err(|r| invalid("bus.mailbox_capacity", r))?;
        check_capacity(bus.dead_letter_capacity)
            .map_err(|r| invalid("bus.dead_letter_capacity", r))?;
        check_duration(bus.shutdown_timeout).map_err(|r| invalid("bus.shutdown_timeout", r))?;
        if let Some(retry) = &bus.retry {
            if retry.max_attempts == 0 || retry.max_attempts > MAX_RETRY_ATTEMPTS {
                return Err(invalid(
                    "bus.retry.max_attempts",
                    format!(
                        "must be between 1 and {MAX_RETRY_ATTEMPTS} (1 = no retry), found {}",
                        retry.max_attempts
                    ),
                ));
            }
            check_duration(retry.initial_backoff)
                .map_err(|r| invalid("bus.retry.initial_backoff", r))?;
            check_duration(retry.max_backoff).map_err(|r| invalid("bus.retry.max_backoff", r))?;
            if retry.max_backoff < retry.initial_backoff {
                return Err(invalid(
                    "bus.retry.max_backoff",
                    format!(
                        "must not be less than 'bus.retry.initial_backoff' ({} < {})",
                        humantime::format_duration(retry.max_backoff),
                        humantime::format_duration(retry.initial_backoff)
                    ),
                ));
            }
        }
        if let Some(breaker) = &bus.circuit_breaker {
            if breaker.failure_threshold == 0 {
                return Err(invalid(
                    "bus.circuit_breaker.failure_threshold",
                    "must be greater than 0".to_owned(),
                ));
            }
            check_duration(breaker.cool_down)
                .map_err(|r| invalid("bus.circuit_breaker.cool_down", r))?;
        }
        let plugins = &self.plugins;
        check_capacity(plugins.queue_capacity).map_err(|r| invalid("plugins.queue_capacity", r))?;
        check_duration(plugins.default_timeout)
            .map_err(|r| invalid("plugins.default_timeout", r))?;
        for (index, dir) in plugins.directories.iter().enumerate() {
            if dir.as_os_str().is_empty() {
                return Err(invalid(
                    &format!("plugins.directories[{index}]"),
                    "must not be empty".to_owned(),
                ));
            }
        }
        for (name, settings) in &self.plugin {
            if name.trim().is_empty() {
                return Err(invalid(
                    &format!("plugin.{name:?}"),
                    "a plugin name must not be empty".to_owned(),
                ));
            }
            if let Some(timeout) = settings.timeout {
                check_duration(timeout)
                    .map_err(|r| invalid(&format!("plugin.{name}.timeout"), r))?;
            }
            check_json_compatible(&settings.config, &format!("plugin.{name}.config"))
                .map_err(|(key, reason)| invalid(&key, reason))?;
        }
        Ok(())
    }
}

/// Parses without validating, turning serde/toml errors into [`ConfigError`]s.
fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|err| {
        ConfigError::new(
            origin,
            ConfigErrorKind::Syntax {
                location: location_of(text, err.span()),
                detail: err.to_string().trim_end().to_owned(),
            },
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let location = location_of(text, inner.span());
        let detail = inner.to_string().trim_end().to_owned();
        let message = inner.message();
        // The parser's report ends with the message itself; keep only the snippet
        // for values, whose reason is printed already.
        let snippet = detail
            .strip_suffix(message)
            .map(|s| s.trim_end().to_owned())
            .filter(|s| !s.is_empty());
        let kind = if let Some((unknown, candidates)) = parse_unknown(message, "unknown field `") {
            ConfigErrorKind::UnknownKey {
                suggestion: closest(&unknown, &candidates),
                key,
                location,
                detail,
            }
        } else {
            let mut reason = message.to_owned();
            if let Some((unknown, candidates)) = parse_unknown(message, "unknown variant `") {
                if let Some(best) = closest(&unknown, &candidates) {
                    reason.push_str(&format!(" (did you mean '{best}'?)"));
                }
            }
            ConfigErrorKind::InvalidValue {
                key,
                reason,
                location,
                detail: snippet,
            }
        };
        ConfigError::new(origin, kind)
    })
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (unknown, rest) = rest.split_once('`')?;
    let candidates = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((unknown.to_owned(), candidates))
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a
/// plausible typo (at most a third of the word's length, and at least 1 edit).
fn closest(word: &str, candidates: &[String]) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.clone())
}

/// Levenshtein distance over chars, two rows.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// 1-based line and column of a byte offset.
fn location_of(text: &str, span: Option<std::ops::Range<usize>>) -> Option<Location> {
    let start = span?.start.min(text.len());
    let before = text.get(..start)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..)?.chars().count() + 1;
    Some(Location { line, column })
}

fn check_capacity(value: usize) -> Result<(), String> {
    if value == 0 {
        Err("must be greater than 0".to_owned())
    } else if value > MAX_CAPACITY {
        Err(format!("must be at most {MAX_CAPACITY}, found {value}"))
    } else {
        Ok(())
    }
}

fn check_duration(value: Duration) -> Result<(), String> {
    if value.is_zero() {
        Err("must be greater than 0".to_owned())
    } else if value > MAX_DURATION {
        Err(format!(
            "must be at most {}, found {}",
            humantime::format_duration(MAX_DURATION),
            humantime::format_duration(value)
        ))
    } else {
        Ok(())
    }
}

/// Refuses values JSON cannot carry (NaN and infinite floats), naming the key.
fn check_json_compatible(table: &toml::Table, prefix: &str) -> Result<(), (String, String)> {
    fn walk(value: &toml::Value, key: &str) -> Result<(), (String, String)> {
        match value {
            toml::Value::Float(f) if !f.is_finite() => Err((
                key.to_owned(),
                format!("{f} cannot be passed to a plugin as JSON"),
            )),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| walk(item, &format!("{key}[{i}]"))),
            toml::Value::Table(table) => table
                .iter()
                .try_for_each(|(k, v)| walk(v, &format!("{key}.{k}"))),
            _ => Ok(()),
        }
    }
    table
        .iter()
        .try_for_each(|(k, v)| walk(v, &format!("{prefix}.{k}")))
}

fn table_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        // Non-finite floats are refused by validation; map them to null defensively.
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(dt) => J::String(dt.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(value_to_json).collect()),
        toml::Value::Table(table) => table_to_json(table),
    }
}

/// Deserializes a humantime string (`"30s"`, `"250ms"`) into a [`Duration`].
fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(deserializer).map(Some)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"30s\" or \"250ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        humantime::parse_duration(v)
            .map_err(|err| E::custom(format!("invalid duration \"{v}\": {err}")))
    }
}

fn de_opt_sha256<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<[u8; 32]>, D::Error> {
    deserializer.deserialize_str(Sha256Visitor).map(Some)
}

struct Sha256Visitor;

impl Visitor<'_> for Sha256Visitor {
    type Value = [u8; 32];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SHA-256 digest as 64 hex digits")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<[u8; 32], E> {
        let mut digest = [0u8; 32];
        if v.len() != 64 {
            return Err(E::custom(format!(
                "expected a SHA-256 digest as 64 hex digits, found {} characters",
                v.chars().count()
            )));
        }
        hex::decode_to_slice(v, &mut digest).map_err(|err| {
            E::custom(format!("expected a SHA-256 digest as 64 hex digits: {err}"))
        })?;
        Ok(digest)
    }
}

/// The largest configuration file read: 4 MiB, far more than any real one.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a configuration file without blocking and within [`MAX_CONFIG_BYTES`]: a FIFO
/// (nobody may ever write to it), a device such as `/dev/zero` (it never ends) or a
/// directory is refused at once, with what it is.
fn read_config_text(path: &Path) -> std::io::Result<String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read as _;
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, device or socket)"
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, what));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes, more than the limit of {MAX_CONFIG_BYTES}",
                meta.len()
            ),
        ));
    }
    let mut text = String::new();
    (&file)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_plugin_directories_resolve_without_dot_components() {
        let mut config = Config::from_toml_str(
            "[plugins]\ndirectories = [\"./plugins\", \"more/./x\"]\n",
            "t.toml",
        )
        .unwrap();
        config.resolve_relative_to(Path::new("/srv/app/."));
        assert_eq!(
            config.plugins.directories,
            [
                PathBuf::from("/srv/app/plugins"),
                PathBuf::from("/srv/app/more/x")
            ]
        );
    }

    #[test]
    fn a_fifo_a_device_or_a_directory_as_config_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("plugbus.toml");
        crate::test_fifo::make_fifo(&fifo);
        for (path, what) in [
            (fifo.as_path(), "not a regular file"),
            (Path::new("/dev/zero"), "not a regular file"),
            (dir.path(), "a directory"),
        ] {
            let err = Config::from_path(path).unwrap_err();
            assert!(err.to_string().contains(what), "{}: {err}", path.display());
        }
    }

    #[test]
    fn isolation_is_per_plugin_over_the_default_and_bad_values_name_their_key() {
        let config = Config::from_toml_str(
            "[plugins]\nisolation = \"process\"\nmax_restarts = 2\n\
             [plugin.a]\nisolation = \"in_process\"\n\
             [plugin.b]\nrestart_window = \"5s\"\nlimits = { memory_mib = 64 }\n",
            "plugbus.toml",
        )
        .unwrap();
        assert_eq!(config.plugin_isolation("a"), Isolation::InProcess);
        assert_eq!(config.plugin_isolation("b"), Isolation::Process);
        assert_eq!(config.plugin_isolation("other"), Isolation::Process);
        assert_eq!(config.plugin_restarts("b"), (2, Duration::from_secs(5)));
        assert_eq!(config.plugin("b").limits.memory_mib, Some(64));
        let err = parse_err("[plugins]\nisolation = \"thread\"\n").to_string();
        assert!(err.contains("isolation"), "{err}");
        let err = parse_err("[plugin.a.limits]\nmemory = 5\n").to_string();
        assert!(err.contains("memory"), "{err}");
        let err = parse_err("[plugin.a.limits]\nopen_files = 3\n").to_string();
        assert!(err.contains("plugin.a.limits.open_files"), "{err}");
        let err = parse_err("[plugins]\nheartbeat_timeout = \"1ms\"\n").to_string();
        assert!(err.contains("plugins.heartbeat_timeout"), "{err}");
    }

    fn parse_err(text: &str) -> ConfigError {
        Config::from_toml_str(text, "plugbus.toml").unwrap_err()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let config = Config::from_toml_str("", "plugbus.toml").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.bus.default_timeout, Duration::from_secs(30));
        assert_eq!(config.bus.mailbox_capacity, 1024);
        assert_eq!(config.bus.overflow, Overflow::Wait);
        assert_eq!(config.bus.dead_letter_capacity, 10_000);
        assert_eq!(config.bus.shutdown_timeout, Duration::from_secs(10));
        assert!(config.bus.retry.is_none());
        assert!(config.bus.circuit_breaker.is_none());
        assert_eq!(config.plugins.directories, vec![PathBuf::from("plugins")]);
        assert!(!config.plugins.watch);
        assert_eq!(config.plugins.queue_capacity, 1024);
        assert_eq!(config.plugins.default_timeout, Duration::from_secs(5));
        assert!(config.plugin.is_empty());
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
[bus]
default_timeout = "250ms"
mailbox_capacity = 16
overflow = "drop_oldest"
dead_letter_capacity = 5
shutdown_timeout = "1m 30s"
[bus.retry]
max_attempts = 4
initial_backoff = "20ms"
max_backoff = "2s"
[bus.circuit_breaker]
failure_threshold = 7
cool_down = "1m"

[plugins]
directories = ["a", "/abs/b"]
watch = true
queue_capacity = 8
default_timeout = "3s"

[plugin.audit-logger]
enabled = false
timeout = "2s"
sha256 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
config = { path = "audit.jsonl", fsync = "never", rotate = { max_bytes = 1048576, keep = 3 }, ratio = 0.5, on = 2026-01-02T03:04:05Z, list = [1, 2] }
"#;
        let config = Config::from_toml_str(text, "plugbus.toml").unwrap();
        assert_eq!(config.bus.default_timeout, Duration::from_millis(250));
        assert_eq!(config.bus.overflow, Overflow::DropOldest);
        assert_eq!(config.bus.shutdown_timeout, Duration::from_secs(90));
        let retry = config.bus.retry.clone().unwrap();
        assert_eq!(retry.max_attempts, 4);
        assert_eq!(retry.max_backoff, Duration::from_secs(2));
        assert_eq!(
            config
                .bus
                .circuit_breaker
                .clone()
                .unwrap()
                .failure_threshold,
            7
        );
        assert!(config.plugins.watch);
        let settings = config.plugin("audit-logger");
        assert!(!settings.enabled);
        assert_eq!(settings.timeout, Some(Duration::from_secs(2)));
        let pin = settings.sha256.unwrap();
        assert_eq!(pin[0], 0x00);
        assert_eq!(pin[31], 0xff);
        assert_eq!(
            settings.config_json(),
            serde_json::json!({
                "path": "audit.jsonl",
                "fsync": "never",
                "rotate": { "max_bytes": 1048576, "keep": 3 },
                "ratio": 0.5,
                "on": "2026-01-02T03:04:05Z",
                "list": [1, 2],
            })
        );
        assert_eq!(
            config.plugin_timeout("audit-logger"),
            Duration::from_secs(2)
        );
        assert_eq!(config.plugin_timeout("other"), Duration::from_secs(3));
        assert!(!config.is_enabled("audit-logger"));
        assert!(config.is_enabled("other"));
    }

    #[test]
    fn unknown_plugin_gets_defaults_and_empty_json() {
        let config = Config::from_toml_str("[plugin.x]\nenabled = true\n", "t").unwrap();
        let settings = config.plugin("nope");
        assert_eq!(settings, PluginSettings::default());
        assert!(settings.enabled);
        assert_eq!(settings.config_json(), serde_json::json!({}));
        assert_eq!(config.plugin("x").config_json(), serde_json::json!({}));
    }

    #[test]
    fn retry_table_without_keys_gets_defaults() {
        let config = Config::from_toml_str("[bus.retry]\n", "t").unwrap();
        assert_eq!(config.bus.retry, Some(RetryConfig::default()));
    }

    #[test]
    fn unknown_key_names_file_path_and_suggestion() {
        let err = parse_err("[bus]\nmailbox_capacty = 12\n");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "plugbus.toml: unknown key 'bus.mailbox_capacty' (did you mean 'mailbox_capacity'?)"
            ),
            "{text}"
        );
        assert!(text.contains("line 2, column 1"), "{text}");
        match &*err.kind {
            ConfigErrorKind::UnknownKey {
                key,
                suggestion,
                location,
                ..
            } => {
                assert_eq!(key, "bus.mailbox_capacty");
                assert_eq!(suggestion.as_deref(), Some("mailbox_capacity"));
                assert_eq!(*location, Some(Location { line: 2, column: 1 }));
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }

    #[test]
    fn unknown_key_far_from_any_has_no_suggestion() {
        let err = parse_err("[plugins]\nzzzzzzzz = 1\n");
        let text = err.to_string();
        assert!(
            text.starts_with("plugbus.toml: unknown key 'plugins.zzzzzzzz'\n"),
            "{text}"
        );
        let err = parse_err("[plugin.a]\nenabld = true\n");
        assert!(err
            .to_string()
            .starts_with("plugbus.toml: unknown key 'plugin.a.enabld' (did you mean 'enabled'?)"));
        let err = parse_err("[buss]\n");
        assert!(err
            .to_string()
            .starts_with("plugbus.toml: unknown key 'buss' (did you mean 'bus'?)"));
    }

    #[test]
    fn bad_types_and_values_name_the_key() {
        let err = parse_err("[bus]\nmailbox_capacity = \"big\"\n");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "plugbus.toml: invalid value for 'bus.mailbox_capacity': invalid type"
            ),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");

        let err = parse_err("[bus]\ndefault_timeout = \"30 parsecs\"\n");
        assert!(err
            .to_string()
            .starts_with("plugbus.toml: invalid value for 'bus.default_timeout': invalid duration \"30 parsecs\""));

        let err = parse_err("[bus]\ndefault_timeout = 30\n");
        assert!(err.to_string().contains("'bus.default_timeout'"), "{err}");

        let err = parse_err("[bus]\noverflow = \"dead_leter\"\n");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "plugbus.toml: invalid value for 'bus.overflow': unknown variant `dead_leter`"
            ),
            "{text}"
        );
        assert!(text.contains("(did you mean 'dead_letter'?)"), "{text}");

        let err = parse_err("[plugin.p]\nsha256 = \"abc\"\n");
        assert!(err.to_string().starts_with(
            "plugbus.toml: invalid value for 'plugin.p.sha256': expected a SHA-256 digest as 64 hex digits, found 3 characters"
        ), "{err}");
        let err = parse_err(&format!("[plugin.p]\nsha256 = \"{}\"\n", "g".repeat(64)));
        assert!(err.to_string().contains("'plugin.p.sha256'"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            (
                "[bus]\nmailbox_capacity = 0",
                "bus.mailbox_capacity",
                "must be greater than 0",
            ),
            (
                "[bus]\ndead_letter_capacity = 0",
                "bus.dead_letter_capacity",
                "must be greater than 0",
            ),
            (
                "[bus]\ndefault_timeout = \"0s\"",
                "bus.default_timeout",
                "must be greater than 0",
            ),
            (
                "[bus]\nshutdown_timeout = \"0ms\"",
                "bus.shutdown_timeout",
                "must be greater than 0",
            ),
            (
                "[bus]\nmailbox_capacity = 99999999999",
                "bus.mailbox_capacity",
                "must be at most",
            ),
            (
                "[bus]\ndefault_timeout = \"30days\"",
                "bus.default_timeout",
                "must be at most",
            ),
            (
                "[bus.retry]\nmax_attempts = 0",
                "bus.retry.max_attempts",
                "must be between 1 and",
            ),
            (
                "[bus.retry]\ninitial_backoff = \"2s\"\nmax_backoff = \"1s\"",
                "bus.retry.max_backoff",
                "must not be less than",
            ),
            (
                "[bus.circuit_breaker]\nfailure_threshold = 0",
                "bus.circuit_breaker.failure_threshold",
                "greater than 0",
            ),
            (
                "[bus.circuit_breaker]\ncool_down = \"0s\"",
                "bus.circuit_breaker.cool_down",
                "greater than 0",
            ),
            (
                "[plugins]\nqueue_capacity = 0",
                "plugins.queue_capacity",
                "greater than 0",
            ),
            (
                "[plugins]\ndefault_timeout = \"0s\"",
                "plugins.default_timeout",
                "greater than 0",
            ),
            (
                "[plugins]\ndirectories = [\"\"]",
                "plugins.directories[0]",
                "must not be empty",
            ),
            (
                "[plugin.a]\ntimeout = \"0s\"",
                "plugin.a.timeout",
                "greater than 0",
            ),
            (
                "[plugin.a]\nconfig = { x = { y = nan } }",
                "plugin.a.config.x.y",
                "cannot be passed",
            ),
        ];
        for (text, key, reason) in cases {
            let err = parse_err(text);
            let expected = format!("plugbus.toml: invalid value for '{key}': ");
            let shown = err.to_string();
            assert!(shown.starts_with(&expected), "{text:?}: got {err}");
            assert!(shown.contains(reason), "{text:?}: got {err}");
            assert!(matches!(*err.kind, ConfigErrorKind::InvalidValue { .. }));
        }
    }

    #[test]
    fn negative_capacity_is_a_type_error_naming_key() {
        let err = parse_err("[plugins]\nqueue_capacity = -1\n");
        assert!(
            err.to_string()
                .starts_with("plugbus.toml: invalid value for 'plugins.queue_capacity'"),
            "{err}"
        );
    }

    #[test]
    fn metrics_table_takes_an_address_and_rejects_unknown_keys() {
        let c = Config::from_toml_str("[metrics]\nlisten = \"127.0.0.1:9464\"\n", "plugbus.toml")
            .unwrap();
        assert_eq!(
            c.metrics.unwrap().listen,
            "127.0.0.1:9464".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(Config::default().metrics, None);
        for (text, needle) in [
            (
                "[metrics]\nlisten = \"127.0.0.1:9464\"\npath = \"/m\"\n",
                "unknown key 'metrics.path'",
            ),
            ("[metrics]\n", "listen"),
            ("[metrics]\nlisten = \"localhost\"\n", "'metrics.listen'"),
        ] {
            let err = parse_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn otel_table_is_checked_and_rejects_unknown_keys() {
        let c = Config::from_toml_str(
            "[otel]\nendpoint = \"http://127.0.0.1:4318\"\n",
            "plugbus.toml",
        )
        .unwrap();
        let otel = c.otel.unwrap();
        assert_eq!(otel.service_name, "plugbus");
        assert_eq!(otel.traces_url(), "http://127.0.0.1:4318/v1/traces");
        let c = Config::from_toml_str(
            "[otel]\nendpoint = \"http://c:4318/v1/traces\"\nservice_name = \"shop\"\n",
            "plugbus.toml",
        )
        .unwrap();
        assert_eq!(c.otel.unwrap().traces_url(), "http://c:4318/v1/traces");
        assert_eq!(Config::default().otel, None);
        for (text, needle) in [
            (
                "[otel]\nendpoint = \"http://c:4318\"\nservice = \"x\"\n",
                "unknown key 'otel.service'",
            ),
            ("[otel]\nservice_name = \"x\"\n", "endpoint"),
            ("[otel]\nendpoint = \"c:4318\"\n", "'otel.endpoint'"),
            ("[otel]\nendpoint = \"https://c:4318\"\n", "plain HTTP"),
            (
                "[otel]\nendpoint = \"http:///v1/traces\"\n",
                "names no host",
            ),
            (
                "[otel]\nendpoint = \"http://c\"\nservice_name = \" \"\n",
                "'otel.service_name'",
            ),
        ] {
            let err = parse_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn syntax_error_keeps_toml_text() {
        let err = parse_err("[bus\nx = 1\n");
        let text = err.to_string();
        assert!(text.starts_with("plugbus.toml: "), "{text}");
        assert!(text.contains("TOML parse error at line 1"), "{text}");
        assert!(matches!(
            *err.kind,
            ConfigErrorKind::Syntax {
                location: Some(Location { line: 1, .. }),
                ..
            }
        ));
    }

    #[test]
    fn from_path_resolves_relative_directories_and_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugbus.toml");
        std::fs::write(
            &path,
            "[plugins]\ndirectories = [\"plugins\", \"/opt/p\"]\n",
        )
        .unwrap();
        let config = Config::from_path(&path).unwrap();
        assert_eq!(
            config.plugins.directories,
            vec![dir.path().join("plugins"), PathBuf::from("/opt/p")]
        );

        // The default directory resolves too.
        std::fs::write(&path, "").unwrap();
        let config = Config::from_path(&path).unwrap();
        assert_eq!(config.plugins.directories, vec![dir.path().join("plugins")]);

        std::fs::write(&path, "[bus]\noverflow = 3\n").unwrap();
        let err = Config::from_path(&path).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}: invalid value for 'bus.overflow'",
                path.display()
            )),
            "{err}"
        );

        let missing = dir.path().join("missing.toml");
        let err = Config::from_path(&missing).unwrap_err();
        assert!(matches!(*err.kind, ConfigErrorKind::Read { .. }));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn repo_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugbus.toml");
        let config = Config::from_path(&path).unwrap();
        assert!(config.plugin.contains_key("audit-logger"));
        assert!(config.plugin.contains_key("auth-enhancer"));
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("mailbox_capacty", "mailbox_capacity"), 1);
    }
}
