//! plugbus plugin `audit-logger`: a tamper-evident JSON Lines audit log.
//!
//! It follows every lifecycle and business event and every `security.*` and `config.*` event (a
//! changed configuration file is part of the trail), and appends one
//! record per event to a file, each record carrying the SHA-256 of the previous one, so that
//! editing, removing, inserting or reordering records is detectable ([`verify_chain`]; the host
//! has `plugbus audit verify`).
//!
//! # Record format
//!
//! The body `B` of a record is a compact JSON object with, in this order:
//! `seq` (1, 2, ... across restarts and rotations), `ts` (the event's timestamp, RFC 3339 UTC
//! with nanoseconds), `event_id` (hyphenated UUID), `event_type`, `category`, `source` (what
//! the publisher says), `origin` (where the host says it came from: `host`, `input:stdin:17`,
//! `plugin:auth-enhancer`, `local`, ...; no publisher can set it), `correlation_id` and `causation_id` (only when present), `metadata` (the other metadata
//! entries, only when there are some), the payload (exactly one of the three fields below) and
//! `prev_hash` (the previous record's `hash`, or 64 `0`s for the first record ever). The line
//! written is `B` with its final `}` replaced by `,"hash":"<lowercase hex SHA-256 of B>"}`, then
//! `\n`.
//!
//! ## The payload, as it came
//!
//! - `data`: the payload's JSON text itself. Every token (each string with its escapes, each
//!   number with all its digits, `1.10` as `1.10`, keys in their order, duplicates included) is
//!   copied byte for byte; only whitespace between tokens is dropped, so the record is one
//!   compact line. Nothing is parsed into numbers or rebuilt, so nothing is rounded.
//! - `data_text`: the same compact text as a JSON *string*, when the payload is valid JSON that
//!   common readers refuse: nesting deeper than 64 levels, a number of magnitude 1e301 or more
//!   (beyond `f64`), or a `\u` escape that is half a surrogate pair. Inline, such a record would
//!   make `plugbus audit verify`, `jq` or a log shipper reject a genuine log; as a string it is
//!   still exact (decode the string to get the text back) and any reader can load it. Deep
//!   payloads are scanned without recursion, so no depth crashes the plugin.
//! - `data_invalid`: `{"bytes":N,"offset":K,"error":"..."}` when the payload is not JSON
//!   (RFC 8259) or not UTF-8: its size, where the first error is, and a fixed description of
//!   it. The bytes themselves are not recorded: keys cannot be found in them, so secrets in them
//!   could not be redacted.
//!
//! ## Redaction
//!
//! The value of every key matching one of the `redact` patterns is replaced by `"[REDACTED]"`
//! (whatever the value is: a string, a number, a whole object or array), at any depth of the
//! payload, inside arrays too, and for metadata entries (including `correlation_id` and
//! `causation_id`). A pattern is a key with optional `*` wildcards (`*` matches any run of
//! characters); matching ignores ASCII case and treats `-` and `_` alike, so `*api_key*`
//! matches `X-Api-Key`. Keys written with escapes (`"pass\u0077ord"`) are matched by what they
//! decode to. The defaults ([`DEFAULT_REDACT`]) are `*password*`, `*passwd*`, `pwd`,
//! `*secret*`, `*token*`, `*api_key*`, `*apikey*`, `*api-key*`, `authorization`, `cookie`,
//! `*private_key*` and `*privatekey*`.
//!
//! ## Size
//!
//! No line is longer than [`MAX_RECORD_BYTES`] (16 MiB, not counting the `\n`), the limit the
//! host's verifier enforces too. An event whose record would be longer is recorded, in its place
//! in the chain, by a short record with the header fields (`event_type` and `source` cut to
//! 1 KiB) and, instead of metadata and payload, `"too_large":{"payload_bytes":P,
//! "metadata_entries":N,"metadata_bytes":M,"limit":16777216}` (plus `"cut":true` if a header
//! field was cut). So the log stays verifiable and the loss is visible.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | `plugbus-audit.jsonl` | the log file |
//! | `include` | `[]` (all) | type patterns to record; empty = everything subscribed |
//! | `exclude` | `[]` | type patterns not to record; wins over `include` |
//! | `redact` | [`DEFAULT_REDACT`] | key patterns whose values are redacted; replaces the defaults |
//! | `redact_extra` | `[]` | key patterns redacted in addition to `redact` (to extend the defaults) |
//! | `fsync` | `never` | `always`, `every_n` (every `fsync_every` records) or `never`; the file is flushed after every record regardless |
//! | `fsync_every` | 100 | records between fsyncs with `every_n` |
//! | `max_bytes` | 0 (no rotation) | rotate when the file would grow past this size |
//! | `max_files` | 5 | rotated files kept (`path.1` newest ... `path.N` oldest) |
//! | `signing_key` | none | the Ed25519 secret key file (`plugbus audit keygen`) that signs seals; no seals without it |
//! | `seal_every` | 1000 | with a key: seal at least every this many records |
//! | `seal_interval` | `1s` | with a key: seal at least this often while records wait |
//!
//! # Seals
//!
//! With `signing_key`, seal records ([`Seal`],
//! `{"seq":N,"ts":..,"seal":{..},"prev_hash":..}`) are written into the chain: `begin` as the
//! first record of each file, `periodic` every `seal_every` records and every `seal_interval`
//! while records wait (a thread of the plugin's own), `rotate` as the last record of a file
//! (naming the next file's number), `resume` when the logger starts on an existing log, and
//! `final` at stop. Each is signed over the log's id, the file's number, the range of records
//! since the previous seal and the hash of the last one, and published as an `audit.sealed`
//! event (a witness off the file). `plugbus audit verify --pubkey` checks them; see the seal
//! module of the host for what that detects.
//!
//! On start an existing file is continued from its last record (a final line cut short by a
//! crash is cut off first). Rotation renames the file to `path.1` (shifting older ones) and
//! continues the chain in a new file.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod chain;
mod record;
mod redact;
mod scan;
mod seal;

pub use chain::{sha256_hex, verify_chain, ChainError, GENESIS_HASH};
pub use plugbus_plugin_api::contract::audit::MAX_RECORD_BYTES;
pub use record::REDACTED;
pub use redact::DEFAULT_REDACT;

use chain::{ChainWriter, FsyncPolicy, MAX_BODY_BYTES};
use plugbus_plugin_api::contract::audit::{Seal, SealKind};
use plugbus_plugin_api::contract::{Category, Pattern};
use plugbus_plugin_api::{
    export_plugin, parse_config, ConfigSchema, ConfigType, DescribeConfig, Event, HostHandle,
    Plugin, PluginError, Subscription, ValueKind,
};
use redact::Redactor;
use seal::Sealer;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The plugin's name.
pub const NAME: &str = "audit-logger";

/// `fsync` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every record.
    Always,
    /// After every `fsync_every` records.
    EveryN,
    /// Never (the OS decides); records are still flushed to the OS one by one.
    #[default]
    Never,
}

impl ConfigType for Fsync {
    /// Written `"always"`, `"every_n"` or `"never"`.
    fn kind() -> ValueKind {
        ValueKind::String
    }
}

/// The plugin's configuration (see the crate docs for the keys); its schema, derived here, is
/// what `plugbus plugins inspect` shows and the host checks the table against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ConfigSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The log file.
    pub path: PathBuf,
    /// Type patterns to record (empty = all subscribed events).
    pub include: Vec<String>,
    /// Type patterns not to record.
    pub exclude: Vec<String>,
    /// Key patterns whose values are redacted (the defaults unless set).
    pub redact: Vec<String>,
    /// Key patterns redacted in addition to [`Config::redact`].
    pub redact_extra: Vec<String>,
    /// When to fsync.
    pub fsync: Fsync,
    /// Records between fsyncs with [`Fsync::EveryN`].
    pub fsync_every: u64,
    /// Rotation size (0 = never rotate).
    pub max_bytes: u64,
    /// Rotated files kept.
    pub max_files: u32,
    /// The Ed25519 secret key file (`plugbus audit keygen`) that signs the seals; no seals
    /// without it.
    pub signing_key: Option<PathBuf>,
    /// Seal at least every this many records (with a key).
    pub seal_every: u64,
    /// Seal at least this often while records wait for a seal (with a key), e.g. `"1s"`.
    #[serde(with = "humantime_serde_compat")]
    #[config(like = String)]
    pub seal_interval: Duration,
}

/// `seal_interval` as a human-readable duration (`"1s"`, `"250ms"`).
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("'{text}' is not a duration: {e}")))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from("plugbus-audit.jsonl"),
            include: Vec::new(),
            exclude: Vec::new(),
            redact: DEFAULT_REDACT.iter().map(|s| (*s).to_owned()).collect(),
            redact_extra: Vec::new(),
            fsync: Fsync::Never,
            fsync_every: 100,
            max_bytes: 0,
            max_files: 5,
            signing_key: None,
            seal_every: 1000,
            seal_interval: Duration::from_secs(1),
        }
    }
}

fn patterns(key: &str, list: &[String]) -> Result<Vec<Pattern>, PluginError> {
    list.iter()
        .map(|p| {
            Pattern::parse(p).map_err(|e| {
                PluginError::config(format_args!(
                    "invalid configuration for plugin '{NAME}': key '{key}': {e}"
                ))
            })
        })
        .collect()
}

/// Compiles the redaction patterns; an invalid one is a config error naming its key.
fn redactor(config: &Config) -> Result<Redactor, PluginError> {
    let mut redactor = Redactor::default();
    for (key, list) in [
        ("redact", &config.redact),
        ("redact_extra", &config.redact_extra),
    ] {
        redactor.add(list.iter().map(String::as_str)).map_err(|e| {
            PluginError::config(format_args!(
                "invalid configuration for plugin '{NAME}': key '{key}': {e}"
            ))
        })?;
    }
    Ok(redactor)
}

/// The audit logger plugin.
#[derive(Debug)]
pub struct AuditLogger {
    config: Config,
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    redact: Redactor,
    sync: FsyncPolicy,
    host: HostHandle,
    /// The signing key, read when the plugin is built (so a bad key is a config error).
    key: Option<ed25519_dalek::SigningKey>,
    log: Arc<Log>,
    /// Seals on time while records wait (with a key).
    ticker: Option<JoinHandle<()>>,
    recorded: u64,
    skipped: u64,
}

/// The open log, shared by the handler and the seal ticker.
#[derive(Debug, Default)]
struct Log {
    writer: Mutex<Option<ChainWriter>>,
    /// Set to stop the ticker; with `wake`.
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Log {
    fn writer(&self) -> std::sync::MutexGuard<'_, Option<ChainWriter>> {
        // A panic while holding the lock leaves the writer as consistent as any I/O error
        // would (append cuts off partial lines), so carry on with it.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes each seal as an `audit.sealed` event: a witness outside the file. A refusal is
/// logged, not fatal: the seal is in the log either way.
fn witness(host: &HostHandle, seals: &[Seal]) {
    for seal in seals {
        if let Err(e) = host.publish(seal) {
            tracing::warn!(seq = seal.seq, kind = seal.kind.as_str(), error = %e, "audit seal not published");
        }
    }
}

impl AuditLogger {
    /// True if events of `event_type` are recorded under the include/exclude patterns.
    pub fn records_type(&self, event_type: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(event_type)))
            && !self.exclude.iter().any(|p| p.matches(event_type))
    }

    /// Opens the log into `slot` if it is not open (writing this run's first seal with a
    /// key), and returns the seals written.
    fn open_into(&self, slot: &mut Option<ChainWriter>) -> Result<Vec<Seal>, PluginError> {
        if slot.is_some() {
            return Ok(Vec::new());
        }
        let sealer = self.key.clone().map(|key| {
            Sealer::new(
                key,
                self.config.seal_every,
                self.config.seal_interval,
                self.config.max_files,
            )
        });
        let (w, seals) = ChainWriter::open(
            &self.config.path,
            self.sync,
            self.config.max_bytes,
            self.config.max_files,
            sealer,
        )
        .map_err(|e| {
            PluginError::retryable(format_args!(
                "cannot open audit log '{}': {e}",
                self.config.path.display()
            ))
        })?;
        *slot = Some(w);
        Ok(seals)
    }

    /// Starts the thread that seals on time while records wait.
    fn start_ticker(&mut self) {
        if self.key.is_none() || self.ticker.is_some() {
            return;
        }
        let log = Arc::clone(&self.log);
        let host = self.host.clone();
        let interval = self.config.seal_interval;
        // Check a few times per interval, so a seal is at most ~1.25 intervals late.
        let tick = (interval / 4).max(Duration::from_millis(1));
        let spawned = std::thread::Builder::new()
            .name("audit-seal".to_owned())
            .spawn(move || loop {
                {
                    let stopping = log.stopping.lock().unwrap_or_else(PoisonError::into_inner);
                    let (stopping, _) = log
                        .wake
                        .wait_timeout_while(stopping, tick, |s| !*s)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *stopping {
                        return;
                    }
                }
                let sealed = {
                    let mut guard = log.writer();
                    match guard.as_mut() {
                        Some(w) if w.seal_due_by_time() => w.seal_now(SealKind::Periodic),
                        _ => Ok(None),
                    }
                };
                match sealed {
                    Ok(Some(seal)) => witness(&host, std::slice::from_ref(&seal)),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "cannot write audit seal"),
                }
            });
        match spawned {
            Ok(handle) => self.ticker = Some(handle),
            // Seals still come every `seal_every` records and at stop.
            Err(e) => tracing::error!(error = %e, "cannot start the audit seal thread"),
        }
    }

    fn stop_ticker(&mut self) {
        if let Some(handle) = self.ticker.take() {
            *self
                .log
                .stopping
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = true;
            self.log.wake.notify_all();
            let _ = handle.join();
        }
    }
}

impl Drop for AuditLogger {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

impl Plugin for AuditLogger {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "tamper-evident JSON Lines audit log with a SHA-256 hash chain";

    fn config_schema() -> Option<ConfigSchema> {
        Some(Config::config_schema())
    }

    fn new(host: HostHandle, config: serde_json::Value) -> Result<Self, PluginError> {
        let config: Config = parse_config(NAME, config)?;
        if config.path.as_os_str().is_empty() {
            return Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{NAME}': key 'path': must not be empty"
            )));
        }
        let sync = match config.fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Never => FsyncPolicy::Never,
            Fsync::EveryN if config.fsync_every == 0 => {
                return Err(PluginError::config(format_args!(
                    "invalid configuration for plugin '{NAME}': key 'fsync_every': must be at least 1"
                )))
            }
            Fsync::EveryN => FsyncPolicy::EveryN(config.fsync_every),
        };
        let include = patterns("include", &config.include)?;
        let exclude = patterns("exclude", &config.exclude)?;
        let redact = redactor(&config)?;
        if config.seal_every == 0 {
            return Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{NAME}': key 'seal_every': must be at least 1"
            )));
        }
        if config.seal_interval.is_zero() {
            return Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{NAME}': key 'seal_interval': must be more than 0"
            )));
        }
        let key = match &config.signing_key {
            None => None,
            Some(path) => Some(seal::read_signing_key(path).map_err(|e| {
                PluginError::config(format_args!(
                    "invalid configuration for plugin '{NAME}': key 'signing_key': {e}"
                ))
            })?),
        };
        Ok(AuditLogger {
            config,
            include,
            exclude,
            redact,
            sync,
            host,
            key,
            log: Arc::default(),
            ticker: None,
            recorded: 0,
            skipped: 0,
        })
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        vec![
            Subscription::to_categories([Category::Lifecycle, Category::Business])
                .pattern("security.*")
                .pattern("config.*"),
        ]
    }

    fn start(&mut self) -> Result<(), PluginError> {
        let (seq, seals, key_id) = {
            let mut guard = self.log.writer();
            let seals = self
                .open_into(&mut guard)
                .map_err(|e| PluginError::permanent(e.message()))?;
            let w = guard
                .as_ref()
                .ok_or_else(|| PluginError::permanent("audit log is not open"))?;
            (w.seq(), seals, w.sealing().map(|s| s.key_id().to_owned()))
        };
        witness(&self.host, &seals);
        self.start_ticker();
        tracing::info!(
            path = %self.config.path.display(),
            last_seq = seq,
            fsync = ?self.config.fsync,
            max_bytes = self.config.max_bytes,
            max_files = self.config.max_files,
            include = ?self.config.include,
            exclude = ?self.config.exclude,
            redact = ?self.config.redact,
            redact_extra = ?self.config.redact_extra,
            signed_by = key_id.as_deref().unwrap_or("none"),
            seal_every = self.config.seal_every,
            seal_interval = ?self.config.seal_interval,
            "audit log open"
        );
        Ok(())
    }

    fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
        if !self.records_type(event.event_type()) {
            self.skipped += 1;
            return Ok(());
        }
        let mut too_large = false;
        let (result, opened) = {
            let mut guard = self.log.writer();
            let opened = self.open_into(&mut guard)?;
            let redact = &self.redact;
            let result = match guard.as_mut() {
                Some(w) => w
                    .append(|seq, prev| {
                        record::record_body(seq, event, redact, prev, MAX_BODY_BYTES)
                            .unwrap_or_else(|record::TooLarge| {
                                too_large = true;
                                record::too_large_body(seq, event, prev)
                            })
                    })
                    .map_err(|e| {
                        PluginError::retryable(format_args!("cannot append audit record: {e}"))
                    }),
                None => Err(PluginError::permanent("audit log is not open")),
            };
            (result, opened)
        };
        witness(&self.host, &opened);
        let (seq, seals) = result?;
        witness(&self.host, &seals);
        self.recorded += 1;
        if too_large {
            // Recorded, but only as a marker: say so where operators look.
            tracing::warn!(
                seq,
                event_id = %event.id_string(),
                event_type = event.event_type(),
                payload_bytes = event.data_json().len(),
                limit = MAX_RECORD_BYTES,
                "event too large for the audit log; recorded as a too_large marker"
            );
        } else {
            tracing::trace!(seq, event_type = event.event_type(), "recorded");
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop_ticker();
        let Some(mut w) = self.log.writer().take() else {
            return Ok(());
        };
        // The final seal says the log was closed here: a verifier calls a log that does not
        // end with one truncated (or not closed).
        let last = w.seal_now(SealKind::Final).map_err(|e| {
            PluginError::retryable(format_args!("cannot write final audit seal: {e}"))
        })?;
        w.sync_now()
            .map_err(|e| PluginError::retryable(format_args!("cannot sync audit log: {e}")))?;
        if let Some(seal) = &last {
            witness(&self.host, std::slice::from_ref(seal));
        }
        tracing::info!(
            path = %self.config.path.display(),
            last_seq = w.seq(),
            recorded = self.recorded,
            skipped = self.skipped,
            sealed = last.is_some(),
            "audit log closed"
        );
        Ok(())
    }
}

export_plugin!(AuditLogger);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use plugbus_plugin_api::contract::payload::{UserLogin, UserLogout};
    use plugbus_plugin_api::testing::{FakeHost, LoadedPlugin, TestEvent};
    use serde_json::json;
    use std::fs;
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "plugbus-audit-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn load(host: &FakeHost, config: serde_json::Value) -> LoadedPlugin {
        let mut p = host.load::<AuditLogger>(config).unwrap();
        p.start().unwrap();
        p
    }

    fn login(user: &str) -> TestEvent {
        TestEvent::typed(&UserLogin {
            user_id: user.into(),
            ip: "10.0.0.1".into(),
            ..Default::default()
        })
    }

    fn deliver_ok(p: &mut LoadedPlugin, ev: &TestEvent) -> usize {
        let results = p.deliver(ev);
        for (_, r) in &results {
            r.clone().unwrap();
        }
        results.len()
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn field(line: &str, key: &str) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(line).unwrap()[key].clone()
    }

    #[test]
    fn record_format_is_exact() {
        let dir = TempDir::new("format");
        let path = dir.file("audit.jsonl");
        let host = FakeHost::new();
        let mut p = load(&host, json!({ "path": path }));
        let id = [
            0x01, 0x8f, 0x3a, 0x2b, 0x4c, 0x5d, 0x7e, 0x6f, 0x80, 0x91, 0xa2, 0xb3, 0xc4, 0xd5,
            0xe6, 0xf7,
        ];
        let ev = TestEvent::new(
            "user.login",
            Category::Business,
            r#"{"user_id":"alice","Password":"hunter2","nested":{"token":"t","keep":[1,{"secret":2}]},"z":1.5,"a":null}"#,
        )
        .with_id(id)
        .with_source("web")
        .with_origin("input:stdin:3")
        .at_unix_nanos(1_700_000_000_000_000_007)
        .with_metadata("request_id", "r-1")
        .with_metadata("correlation_id", "c-1")
        .with_metadata("causation_id", "e-0")
        .with_metadata("tenant", "acme");
        assert_eq!(deliver_ok(&mut p, &ev), 1);

        let body = concat!(
            r#"{"seq":1,"ts":"2023-11-14T22:13:20.000000007Z","#,
            r#""event_id":"018f3a2b-4c5d-7e6f-8091-a2b3c4d5e6f7","event_type":"user.login","#,
            r#""category":"business","source":"web","origin":"input:stdin:3","#,
            r#""correlation_id":"c-1","causation_id":"e-0","#,
            r#""metadata":{"request_id":"r-1","tenant":"acme"},"#,
            r#""data":{"user_id":"alice","Password":"[REDACTED]","nested":{"token":"[REDACTED]","keep":[1,{"secret":"[REDACTED]"}]},"z":1.5,"a":null},"#,
            r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        );
        let hash = sha256_hex(body.as_bytes());
        let expected = format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        assert_eq!(verify_chain(&path).unwrap(), 1);

        // The second record links to the first and omits absent optional fields.
        let ev2 = TestEvent::new("user.logout", Category::Business, r#"{"user_id":"alice"}"#);
        deliver_ok(&mut p, &ev2);
        let all = lines(&path);
        assert_eq!(field(&all[1], "seq"), 2);
        assert_eq!(field(&all[1], "prev_hash"), hash.as_str());
        for absent in ["correlation_id", "causation_id", "metadata"] {
            assert!(!all[1].contains(&format!("\"{absent}\"")), "{}", all[1]);
        }
        assert_eq!(verify_chain(&path).unwrap(), 2);
    }

    #[test]
    fn chain_continues_across_restarts_and_detects_tampering() {
        let dir = TempDir::new("restart");
        let path = dir.file("sub/audit.jsonl");
        let host = FakeHost::new();
        {
            let mut p = load(&host, json!({ "path": path, "fsync": "always" }));
            for u in ["a", "b", "c"] {
                deliver_ok(&mut p, &login(u));
            }
            p.stop().unwrap();
        }
        {
            let mut p = load(
                &host,
                json!({ "path": path, "fsync": "every_n", "fsync_every": 2 }),
            );
            deliver_ok(&mut p, &login("d"));
            deliver_ok(&mut p, &login("e"));
            p.stop().unwrap();
        }
        assert_eq!(verify_chain(&path).unwrap(), 5);
        let all = lines(&path);
        let seqs: Vec<u64> = all
            .iter()
            .map(|l| field(l, "seq").as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);

        // Edit a record: its own hash no longer matches.
        let tampered = fs::read_to_string(&path)
            .unwrap()
            .replacen("\"b\"", "\"x\"", 1);
        fs::write(&path, &tampered).unwrap();
        let err = verify_chain(&path).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.reason.contains("hash mismatch"), "{err}");

        // Remove a record: the chain breaks at the line after it.
        let mut kept = all.clone();
        kept.remove(2);
        fs::write(&path, kept.join("\n") + "\n").unwrap();
        let err = verify_chain(&path).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("seq 4 does not follow 2"), "{err}");
    }

    #[test]
    fn torn_last_line_is_cut_off_on_restart() {
        let dir = TempDir::new("torn");
        let path = dir.file("audit.jsonl");
        let host = FakeHost::new();
        {
            let mut p = load(&host, json!({ "path": path }));
            deliver_ok(&mut p, &login("a"));
            deliver_ok(&mut p, &login("b"));
        }
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"seq":3,"ts":"2023"#);
        fs::write(&path, &text).unwrap();
        {
            let mut p = load(&host, json!({ "path": path }));
            deliver_ok(&mut p, &login("c"));
        }
        assert_eq!(verify_chain(&path).unwrap(), 3);

        // A complete but corrupt last line refuses to start rather than fork the chain.
        fs::write(&path, "{\"not\":\"a record\"}\n").unwrap();
        let mut p = host.load::<AuditLogger>(json!({ "path": path })).unwrap();
        let err = p.start().unwrap_err();
        assert!(matches!(err, PluginError::Permanent(_)), "{err}");
        assert!(err.message().contains("audit.jsonl"), "{err}");
    }

    #[test]
    fn rotation_keeps_the_chain_and_drops_the_oldest() {
        let dir = TempDir::new("rotate");
        let path = dir.file("audit.jsonl");
        let host = FakeHost::new();
        let mut p = load(
            &host,
            json!({ "path": path, "max_bytes": 700, "max_files": 2 }),
        );
        for i in 0..12 {
            deliver_ok(&mut p, &login(&format!("user{i}")));
        }
        p.stop().unwrap();
        let r1 = chain::rotated(&path, 1);
        let r2 = chain::rotated(&path, 2);
        assert!(r1.exists() && r2.exists());
        assert!(!chain::rotated(&path, 3).exists());
        for f in [&r2, &r1, &path] {
            assert!(fs::metadata(f).unwrap().len() <= 700, "{}", f.display());
            verify_chain(f).unwrap();
        }
        // Files chain into each other, oldest first, and seq ends at 12.
        let (l2, l1, l0) = (lines(&r2), lines(&r1), lines(&path));
        assert_eq!(
            field(&l1[0], "prev_hash"),
            field(l2.last().unwrap(), "hash")
        );
        assert_eq!(
            field(&l0[0], "prev_hash"),
            field(l1.last().unwrap(), "hash")
        );
        assert_eq!(field(l0.last().unwrap(), "seq"), 12);
        let first_kept = field(&l2[0], "seq").as_u64().unwrap();
        assert!(first_kept > 1, "the oldest file was dropped");
        assert_eq!(
            u64::try_from(l2.len() + l1.len() + l0.len()).unwrap(),
            13 - first_kept
        );

        // Restart right after a rotation (empty current file) continues from `.1`.
        fs::write(&path, "").unwrap();
        let mut p = load(
            &host,
            json!({ "path": path, "max_bytes": 700, "max_files": 2 }),
        );
        deliver_ok(&mut p, &login("after"));
        let l0 = lines(&path);
        assert_eq!(
            field(&l0[0], "seq"),
            field(lines(&r1).last().unwrap(), "seq").as_u64().unwrap() + 1
        );
        assert_eq!(
            field(&l0[0], "prev_hash"),
            field(lines(&r1).last().unwrap(), "hash")
        );
    }

    #[test]
    fn include_exclude_and_custom_redaction() {
        let dir = TempDir::new("filter");
        let path = dir.file("audit.jsonl");
        let host = FakeHost::new();
        let mut p = load(
            &host,
            json!({
                "path": path,
                "include": ["user.*", "security.*"],
                "exclude": ["user.logout"],
                "redact": ["ip", "API_KEY"],
            }),
        );
        deliver_ok(&mut p, &login("a"));
        deliver_ok(
            &mut p,
            &TestEvent::typed(&UserLogout {
                user_id: "a".into(),
                ..Default::default()
            }),
        );
        deliver_ok(
            &mut p,
            &TestEvent::new("data.created", Category::Business, "{}"),
        );
        deliver_ok(
            &mut p,
            &TestEvent::new(
                "security.alert",
                Category::Custom,
                r#"{"api_key":"k","password":"visible-now"}"#,
            )
            .with_metadata("Ip", "1.2.3.4"),
        );
        let all = lines(&path);
        assert_eq!(all.len(), 2);
        assert_eq!(field(&all[0], "data")["ip"], REDACTED);
        assert_eq!(field(&all[1], "event_type"), "security.alert");
        assert_eq!(field(&all[1], "data")["api_key"], REDACTED);
        assert_eq!(field(&all[1], "data")["password"], "visible-now");
        assert_eq!(field(&all[1], "metadata")["Ip"], REDACTED);
        assert_eq!(verify_chain(&path).unwrap(), 2);
    }

    #[test]
    fn subscribes_to_lifecycle_business_and_security_only() {
        let dir = TempDir::new("subs");
        let path = dir.file("audit.jsonl");
        let host = FakeHost::new();
        let mut p = load(&host, json!({ "path": path }));
        assert_eq!(
            deliver_ok(
                &mut p,
                &TestEvent::new("plugin.loaded", Category::Lifecycle, "{}")
            ),
            1
        );
        assert_eq!(
            deliver_ok(
                &mut p,
                &TestEvent::new("security.alert", Category::Custom, "{}")
            ),
            1
        );
        assert_eq!(
            deliver_ok(
                &mut p,
                &TestEvent::new("system.startup", Category::System, "{}")
            ),
            0
        );
        assert_eq!(
            deliver_ok(
                &mut p,
                &TestEvent::new("app.custom", Category::Custom, "{}")
            ),
            0
        );
        // Not JSON: recorded without its bytes, under its own field (not `data`).
        deliver_ok(
            &mut p,
            &TestEvent::new("data.created", Category::Business, "password=x"),
        );
        let all = lines(&path);
        assert_eq!(all.len(), 3);
        assert_eq!(
            field(&all[2], "data_invalid"),
            json!({"bytes": 10, "offset": 0, "error": "expected a value"})
        );
        assert_eq!(field(&all[2], "data"), serde_json::Value::Null);
        assert!(!all[2].contains("password"));
    }

    #[test]
    fn a_bad_signing_key_is_a_config_error_naming_the_file() {
        let dir = TempDir::new("badkey");
        let host = FakeHost::new();
        let missing = dir.file("nope.key");
        let err = host
            .load::<AuditLogger>(json!({ "path": dir.file("a.jsonl"), "signing_key": missing }))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("signing_key") && err.contains("nope.key"),
            "{err}"
        );
        let public = dir.file("audit.pub");
        fs::write(
            &public,
            format!(
                "{}\n{}\n",
                plugbus_plugin_api::contract::audit::PUBLIC_KEY_HEADER,
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let err = host
            .load::<AuditLogger>(json!({ "path": dir.file("a.jsonl"), "signing_key": public }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a plugbus audit secret key"), "{err}");
        assert!(
            !err.contains(&"ab".repeat(32)),
            "no key material in errors: {err}"
        );
        for (key, value) in [("seal_every", json!(0)), ("seal_interval", json!("0s"))] {
            let err = host
                .load::<AuditLogger>(json!({ "path": dir.file("a.jsonl"), key: value }))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let host = FakeHost::new();
        let cases = [
            (json!({"pathh": "x"}), "pathh"),
            (json!({"max_bytes": "big"}), "max_bytes"),
            (json!({"fsync": "sometimes"}), "fsync"),
            (json!({"fsync": "every_n", "fsync_every": 0}), "fsync_every"),
            (json!({"include": ["bad*pattern"]}), "include"),
            (json!({"exclude": "user.*"}), "exclude"),
            (json!({"path": ""}), "path"),
            (json!({"redact": ["*token*", "pass?"]}), "redact"),
            (json!({"redact": "password"}), "redact"),
            (json!({"redact_extra": ["a**b"]}), "redact_extra"),
            (json!({"redact_extra": [""]}), "redact_extra"),
            (json!({"redact_extras": ["x"]}), "redact_extras"),
        ];
        for (config, key) in cases {
            let err = host.load::<AuditLogger>(config.clone()).unwrap_err();
            assert!(matches!(err, PluginError::Config(_)), "{config}: {err}");
            assert!(
                err.message().contains(&format!("'{key}'")),
                "{config}: {err}"
            );
        }
        let cfg: Config = parse_config(NAME, json!({})).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.redact.len(), DEFAULT_REDACT.len());
        assert!(cfg.redact_extra.is_empty());
    }

    #[test]
    fn start_logs_the_path_through_tracing() {
        let dir = TempDir::new("log");
        let path = dir.file("audit.jsonl");
        let host = FakeHost::new();
        let mut p = load(&host, json!({ "path": path }));
        p.stop().unwrap();
        let logs = host.logs();
        let open = logs.iter().find(|l| l.message == "audit log open").unwrap();
        assert_eq!(open.level, 3);
        assert_eq!(
            open.field("path"),
            Some(path.display().to_string().as_str())
        );
        assert!(logs.iter().any(|l| l.message == "audit log closed"));
    }
}
