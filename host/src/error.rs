//! Error types of the host's config, trust and audit modules.
//!
//! Each error is a struct naming *what* it is about (a config file, a plugin path,
//! an audit log and line) plus a `#[non_exhaustive]` kind saying *why*, so new
//! reasons can be added without breaking callers. Messages are lowercase and quote
//! the path or key they are about:
//! - `plugbus.toml: unknown key 'bus.mailbox_capacty' (did you mean 'mailbox_capacity'?)`
//! - `refusing plugin '/p/libx.so': file is writable by group or others (mode 0664)`
//! - `audit log 'audit.jsonl' line 3 (seq 3): hash mismatch, record modified (...)`
//!
//! A message already includes the text of any underlying I/O error, so these
//! errors report no `source()` (a chain printer would repeat it); match on the
//! public `kind` to reach the `io::Error`.

use std::fmt;
use std::io;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------

/// A 1-based line and column in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

/// `plugbus.toml` could not be read, parsed or validated.
///
/// Displays as `<origin>: <reason>`, e.g.
/// `plugbus.toml: invalid value for 'bus.mailbox_capacity': must be greater than 0`.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {kind}")]
pub struct ConfigError {
    /// The file (or other origin) the text came from, as given by the caller.
    pub origin: String,
    /// What went wrong (boxed: the kinds carry the parser's report and are large).
    pub kind: Box<ConfigErrorKind>,
}

impl ConfigError {
    /// An error about `origin` (usually the file name).
    pub fn new(origin: impl Into<String>, kind: ConfigErrorKind) -> Self {
        Self {
            origin: origin.into(),
            kind: Box::new(kind),
        }
    }
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    #[error("cannot read config file: {source}")]
    Read {
        /// The I/O error.
        source: io::Error,
    },
    /// The text is not valid TOML.
    #[error("{detail}")]
    Syntax {
        /// Where the parser stopped, when known.
        location: Option<Location>,
        /// The TOML parser's report, with line, column and the offending text.
        detail: String,
    },
    /// A key that no table of the format knows.
    #[error("unknown key '{key}'{}\n{detail}", suggestion_text(suggestion))]
    UnknownKey {
        /// Full dotted key path, e.g. `bus.mailbox_capacty`.
        key: String,
        /// The closest known key in the same table, if one is close.
        suggestion: Option<String>,
        /// Where the key is, when known.
        location: Option<Location>,
        /// The TOML parser's report, including the list of keys it expected.
        detail: String,
    },
    /// A value of the wrong type, or outside its allowed range.
    #[error("invalid value for '{key}': {reason}{}", detail_text(detail))]
    InvalidValue {
        /// Full dotted key path, e.g. `bus.retry.max_backoff`.
        key: String,
        /// Why the value is refused.
        reason: String,
        /// Where the value is, when known (type errors; not post-parse checks).
        location: Option<Location>,
        /// The TOML parser's snippet pointing at the value, when known.
        detail: Option<String>,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

fn detail_text(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!("\n{d}"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// trust
// ---------------------------------------------------------------------------------

/// A plugin file (or plugin directory) failed the trust checks.
///
/// Displays as `refusing plugin '<path>': <reason>`, or
/// `cannot scan plugin directory '<path>': <reason>` for a directory that could not
/// be listed.
#[derive(Debug)]
pub struct TrustError {
    /// The path as given (for a symlink, the link; its target is in the kind).
    pub path: PathBuf,
    /// Why it was refused.
    pub kind: TrustErrorKind,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TrustErrorKind::DirectoryUnreadable { .. } => write!(
                f,
                "cannot scan plugin directory '{}': {}",
                self.path.display(),
                self.kind
            ),
            kind => write!(f, "refusing plugin '{}': {}", self.path.display(), kind),
        }
    }
}

impl std::error::Error for TrustError {}

/// Why a plugin file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustErrorKind {
    /// The file could not be inspected or read (missing, unreadable, ...).
    #[error("cannot inspect file: {source}")]
    Io {
        /// The I/O error.
        source: io::Error,
    },
    /// A plugin directory could not be listed.
    #[error("{source}")]
    DirectoryUnreadable {
        /// The I/O error.
        source: io::Error,
    },
    /// The path is a symbolic link whose target lies outside every plugin directory.
    #[error("symbolic link leads outside the plugin directories, to '{}'", target.display())]
    SymlinkOutside {
        /// The fully resolved target.
        target: PathBuf,
    },
    /// The path resolves outside every plugin directory.
    #[error("file resolves to '{}', outside every plugin directory", canonical.display())]
    OutsideDirectories {
        /// The fully resolved path.
        canonical: PathBuf,
    },
    /// Not a regular file (a directory, a device, a socket, ...).
    #[error("not a regular file ({file_type})")]
    NotRegularFile {
        /// What it is instead.
        file_type: &'static str,
    },
    /// The file itself is writable by group or others.
    #[error("file is writable by group or others (mode {mode:04o})")]
    FileWritable {
        /// The permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// A directory holding the file is writable by group or others.
    #[error("directory '{}' is writable by group or others (mode {mode:04o})", dir.display())]
    DirectoryWritable {
        /// The offending directory.
        dir: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The file, or a directory on its path, belongs to someone other than root or the host's
    /// user: they could replace what the host loads.
    #[error("'{}' is owned by uid {owner}, neither root nor the host's user (uid {host})", path.display())]
    ForeignOwner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The host's effective uid.
        host: u32,
    },
    /// The file is larger than the loader reads.
    #[error("file is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file was replaced or changed between its checks and the read of its bytes.
    #[error("file changed while it was being checked (replaced, or written to): not loaded")]
    Changed,
    /// The file's SHA-256 differs from the pin in the config.
    #[error("sha-256 mismatch for pin '{pin}': expected {expected}, found {actual}")]
    PinMismatch {
        /// The pin's key (plugin name or file name).
        pin: String,
        /// The pinned digest, lowercase hex.
        expected: String,
        /// The file's digest, lowercase hex.
        actual: String,
    },
}

// ---------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------

/// An audit log failed verification: the first broken record, or an I/O error.
///
/// Displays as `audit log '<path>' line <n> (seq <s>): <reason>`.
#[derive(Debug)]
pub struct VerifyError {
    /// The log file.
    pub path: PathBuf,
    /// 1-based line number of the broken record; `None` for errors about the whole
    /// file (it could not be opened).
    pub line: Option<u64>,
    /// The record's `seq`, when it could be read.
    pub seq: Option<u64>,
    /// Why the record is broken.
    pub kind: VerifyErrorKind,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit log '{}'", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for VerifyError {}

/// Why an audit record is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read: {source}")]
    Io {
        /// The I/O error.
        source: io::Error,
    },
    /// The line does not end with `,"hash":"<64 lowercase hex>"}`.
    #[error("missing hash: the line does not end with ,\"hash\":\"<64 hex digits>\"}}")]
    MissingHash,
    /// The last line has no newline and no valid hash: the write was cut short.
    #[error("truncated record: the last line is incomplete")]
    Truncated,
    /// An empty line where a record belongs.
    #[error("empty line")]
    EmptyLine,
    /// A line longer than the verifier accepts.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The record's bytes do not hash to its `hash`: the record was modified.
    #[error("hash mismatch, record modified (recorded {recorded}, computed {computed})")]
    HashMismatch {
        /// The `hash` written on the line.
        recorded: String,
        /// The SHA-256 of the record body.
        computed: String,
    },
    /// The record body is not a JSON object.
    #[error("not a JSON object: {reason}")]
    NotJson {
        /// The parser's message.
        reason: String,
    },
    /// A required field is missing or has the wrong type.
    #[error("field '{field}' {reason}")]
    BadField {
        /// The field name (`seq`, `prev_hash`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `seq` does not follow the previous record's `seq` by exactly 1.
    #[error("seq gap, records missing or reordered (expected seq {expected}, found {found})")]
    SeqGap {
        /// The previous `seq` + 1.
        expected: u64,
        /// The record's `seq`.
        found: u64,
    },
    /// `prev_hash` is not the previous record's `hash`.
    #[error(
        "prev_hash mismatch, record removed or reordered (expected {expected}, found {found})"
    )]
    PrevHashMismatch {
        /// The previous record's `hash` (64 zeros for `seq` 1).
        expected: String,
        /// The record's `prev_hash`.
        found: String,
    },
    /// A seal does not verify, or the log's seals say records or files are missing (see
    /// [`audit::seals`](crate::audit::seals)).
    #[error("seal check failed: {reason}")]
    Seal {
        /// What is wrong.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------
// loading plugins
// ---------------------------------------------------------------------------------

/// A plugin file could not be loaded: the file and why.
///
/// Displays as `plugin '<path>': <reason>`, the reason worded by the phase that failed:
/// `plugin '/p/libx.so': not a shared library (no ELF or Mach-O header)`,
/// `plugin '/p/libx.so': refused by trust policy: ...`, `plugin '/p/libx.so': constructor of 'x'
/// failed: ...`, `plugin '/p/libx.so': crashed while probing: killed by SIGSEGV; ...`.
#[derive(Debug)]
pub struct LoadError {
    /// The plugin file, as it was given or discovered.
    pub path: PathBuf,
    /// Why it could not be loaded.
    pub kind: LoadErrorKind,
}

impl LoadError {
    /// An error about `path`.
    pub fn new(path: impl Into<PathBuf>, kind: LoadErrorKind) -> Self {
        Self {
            path: path.into(),
            kind,
        }
    }

    /// The lifecycle stage the failure belongs to, as published in `plugin.error`:
    /// `construct` for failures of the constructor or its thread, `load` for the rest.
    pub fn stage(&self) -> &'static str {
        match self.kind {
            LoadErrorKind::Constructor { .. }
            | LoadErrorKind::ConstructorPanicked { .. }
            | LoadErrorKind::Subscriptions { .. }
            | LoadErrorKind::ThreadFailed { .. }
            | LoadErrorKind::ChildProcess { .. } => "construct",
            LoadErrorKind::InvalidConfig { .. } => "config",
            _ => "load",
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin '{}': {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for LoadError {}

/// Why a plugin file could not be loaded, one variant per loader phase and failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The trust checks refused the file (permissions, location, symlink, pin).
    #[error("refused by trust policy: {0}")]
    Untrusted(TrustErrorKind),
    /// The file declares a name that the config pins to other bytes, and the file with those
    /// bytes was found too: this one is an impostor (or a stale copy) and is refused.
    #[error(
        "refused by trust policy: it declares the plugin name '{name}', which [plugin.{name}] \
         pins to sha-256 {expected}, but its sha-256 is {actual}; the pinned '{name}' is \
         '{}', which is the one loaded",
        genuine.display()
    )]
    Impostor {
        /// The pinned name both files declare.
        name: String,
        /// The file whose bytes match the pin.
        genuine: PathBuf,
        /// The pinned digest.
        expected: String,
        /// This file's digest.
        actual: String,
    },
    /// The file could not be read or copied.
    #[error("cannot read file: {source}")]
    Io {
        /// The I/O error.
        source: io::Error,
    },
    /// The file does not start like a shared library at all.
    #[error("not a shared library (no ELF or Mach-O header)")]
    NotALibrary,
    /// The file looks like a shared library but the dynamic loader refused it: truncated,
    /// corrupt, built for another platform, or missing a dependency.
    #[error("truncated or corrupt shared library: {detail}")]
    Corrupt {
        /// The dynamic loader's message.
        detail: String,
    },
    /// A well-formed ELF file this host cannot load: built for another machine, class or byte
    /// order, or not a shared object (an executable, an object file).
    #[error("not a shared library this host can load: {detail}")]
    NotLoadable {
        /// What it is instead, e.g. "built for aarch64, this host is x86_64".
        detail: String,
    },
    /// The library loaded but exports no plugbus root module (not built with
    /// `export_plugin!`).
    #[error("no plugin root module: {detail}")]
    NoRootModule {
        /// The loader's message about the missing symbol.
        detail: String,
    },
    /// abi_stable refused the library: its own ABI, or the `plugbus-plugin-api` version the
    /// plugin was built with, is incompatible with the host's.
    #[error("abi_stable version mismatch: {detail}")]
    AbiVersion {
        /// abi_stable's report.
        detail: String,
    },
    /// The layout of a type crossing the boundary differs from the host's.
    #[error("ABI layout mismatch: {detail}")]
    AbiLayout {
        /// abi_stable's report of the first differing type.
        detail: String,
    },
    /// The library's root-module initializer failed.
    #[error("root module initialization failed: {detail}")]
    RootModuleInit {
        /// abi_stable's report.
        detail: String,
    },
    /// The plugin was built against an incompatible plugbus plugin interface version.
    #[error(
        "interface version {}.{} is too {}: {detail}",
        plugin.0,
        plugin.1,
        if plugin < host { "old" } else { "new" }
    )]
    InterfaceVersion {
        /// The plugin's declared interface version.
        plugin: (u32, u32),
        /// The host's interface version.
        host: (u32, u32),
        /// Why they are incompatible.
        detail: String,
    },
    /// The plugin is disabled in the configuration (`enabled = false`): the probe learnt its
    /// name, and the host never mapped it. Not a failure: reported as disabled.
    #[error("plugin '{name}' is disabled in the configuration: not loaded")]
    Disabled {
        /// The declared name.
        name: String,
    },
    /// The admission probe (the file mapped first in a child process) did not vouch for the
    /// file: mapping it crashed, hung or could not be tried. The host never maps it.
    #[error("{reason}; the file was not loaded into the host")]
    ProbeFailed {
        /// What happened, e.g. "crashed while probing: killed by SIGSEGV".
        reason: String,
    },
    /// The plugin declares a name the host does not accept.
    #[error("the plugin declares the name '{name}', which is not accepted: {reason}")]
    InvalidName {
        /// The name (its first 64 characters).
        name: String,
        /// Why not.
        reason: String,
    },
    /// The plugin was built with `panic = "abort"`: its first panic would abort the host.
    #[error(
        "plugin '{name}' was built with panic = \"abort\": its first panic would abort the host, \
         so it cannot run in process; build it with panic = \"unwind\" (the default; check \
         [profile.release] in the workspace's Cargo.toml)"
    )]
    PanicAbort {
        /// The plugin's declared name.
        name: String,
    },
    /// The plugin's constructor returned an error (bad configuration, ...).
    #[error("constructor of '{name}' failed: {error}")]
    Constructor {
        /// The plugin's declared name.
        name: String,
        /// The plugin's error, `<kind>: <message>`.
        error: String,
    },
    /// The plugin's constructor panicked (caught at the boundary).
    #[error("constructor of '{name}' panicked: {message}")]
    ConstructorPanicked {
        /// The plugin's declared name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// The plugin's declared subscriptions could not be read or are invalid.
    #[error("invalid subscriptions of '{name}': {error}")]
    Subscriptions {
        /// The plugin's declared name.
        name: String,
        /// What is wrong.
        error: String,
    },
    /// A plugin with the same declared name is already loaded.
    #[error("duplicate plugin name '{name}': already loaded from '{}'", existing.display())]
    DuplicateName {
        /// The name both plugins declare.
        name: String,
        /// The file the loaded one came from.
        existing: PathBuf,
    },
    /// Several files found in one load declare the same unpinned name: none is loaded, since
    /// which one is genuine cannot be told (file order must never decide: a plugin sorted first
    /// could otherwise displace the real one and take its configuration). Pin the genuine one
    /// with `sha256` in its `[plugin.NAME]` table.
    #[error(
        "duplicate plugin name '{name}', declared by {}: none of them is loaded; pin the \
         genuine one with sha256 in [plugin.{name}]",
        files.iter().map(|f| format!("'{}'", f.display())).collect::<Vec<_>>().join(" and ")
    )]
    AmbiguousName {
        /// The name they all declare.
        name: String,
        /// Every file that declares it.
        files: Vec<PathBuf>,
    },
    /// The plugin's dispatch thread could not be started, or ended before answering.
    #[error("plugin thread of '{name}' failed: {reason}")]
    ThreadFailed {
        /// The plugin's declared name.
        name: String,
        /// What happened.
        reason: String,
    },
    /// The plugin is configured to run in a process of its own, and that process could not
    /// be started, or refused or failed to load the plugin.
    #[error("plugin '{name}' in its own process: {reason}")]
    ChildProcess {
        /// The plugin's declared name.
        name: String,
        /// What happened (the child's own words when it answered).
        reason: String,
    },
    /// Construction did not finish in time (the constructor hangs).
    #[error("constructor of '{name}' did not return within {}", humantime::format_duration(*after))]
    ConstructorTimedOut {
        /// The plugin's declared name.
        name: String,
        /// How long the host waited.
        after: std::time::Duration,
    },
    /// The plugin's `[plugin.<name>].config` table does not match the schema the plugin
    /// declares; the plugin was not constructed.
    #[error("configuration of '{name}' does not match its schema: {}", problems.join("; "))]
    InvalidConfig {
        /// The plugin's declared name.
        name: String,
        /// Each problem: `key 'threshold': expected an integer from 0 to 4294967295, got the
        /// string "many"`.
        problems: Vec<String>,
    },
    /// The plugin's declared configuration schema cannot be read (not the JSON of a
    /// schema, or its function panicked).
    #[error("the configuration schema of '{name}' cannot be read: {detail}")]
    BadSchema {
        /// The plugin's declared name.
        name: String,
        /// Why.
        detail: String,
    },
}

impl LoadErrorKind {
    /// The plugin's declared name, when the load got far enough to learn it.
    pub fn plugin_name(&self) -> Option<&str> {
        match self {
            LoadErrorKind::PanicAbort { name }
            | LoadErrorKind::Constructor { name, .. }
            | LoadErrorKind::ConstructorPanicked { name, .. }
            | LoadErrorKind::Subscriptions { name, .. }
            | LoadErrorKind::DuplicateName { name, .. }
            | LoadErrorKind::ThreadFailed { name, .. }
            | LoadErrorKind::ChildProcess { name, .. }
            | LoadErrorKind::ConstructorTimedOut { name, .. }
            | LoadErrorKind::InvalidConfig { name, .. }
            | LoadErrorKind::BadSchema { name, .. }
            | LoadErrorKind::AmbiguousName { name, .. }
            | LoadErrorKind::Impostor { name, .. } => Some(name),
            // A pin by plugin name is checked once the name is known: the table was matched.
            LoadErrorKind::Untrusted(TrustErrorKind::PinMismatch { pin, .. }) => Some(pin),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------
// managing plugins
// ---------------------------------------------------------------------------------

/// A plugin manager operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The plugin file could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// No plugin of that name is known to the manager.
    #[error("no plugin named '{0}'")]
    UnknownPlugin(String),
    /// A `[plugin.NAME]` table of the config names no plugin that was found: a misspelled
    /// name would otherwise leave its settings (a `sha256` pin included) silently unused.
    #[error(
        "the config's [plugin.{name}] table names no plugin that was found (found: {}): \
         check the name; its settings, a sha256 pin included, apply to nothing",
        if found.is_empty() { "none".to_owned() } else { found.join(", ") }
    )]
    UnmatchedConfig {
        /// The table's name.
        name: String,
        /// The names of the plugins found.
        found: Vec<String>,
    },
    /// The plugin is in a state that does not allow the operation.
    #[error("plugin '{name}' cannot {operation} while {state}")]
    InvalidState {
        /// The plugin.
        name: String,
        /// What was asked (`start`, `stop`, ...).
        operation: &'static str,
        /// Its current state, as text.
        state: String,
    },
    /// The plugin's `start` failed.
    #[error("plugin '{name}' failed to start: {error}")]
    Start {
        /// The plugin.
        name: String,
        /// The plugin's error, `<kind>: <message>`.
        error: String,
    },
    /// The plugin refused a new configuration; it keeps running with the old one.
    #[error("plugin '{name}' refused its new configuration (it keeps the old one): {error}")]
    Reconfigure {
        /// The plugin.
        name: String,
        /// The plugin's error, `<kind>: <message>`.
        error: String,
    },
    /// The plugin's `stop` failed (the instance is dropped anyway).
    #[error("plugin '{name}' failed to stop: {error}")]
    Stop {
        /// The plugin.
        name: String,
        /// The plugin's error, `<kind>: <message>`.
        error: String,
    },
    /// A lifecycle call did not return in time; the plugin's thread is abandoned.
    #[error("plugin '{name}' did not finish {stage} within {}", humantime::format_duration(*after))]
    TimedOut {
        /// The plugin.
        name: String,
        /// `start` or `stop`.
        stage: &'static str,
        /// How long the host waited.
        after: std::time::Duration,
    },
    /// A subscription of the plugin could not be registered on the bus.
    #[error("plugin '{name}': cannot subscribe handler {handler}: {error}")]
    Subscribe {
        /// The plugin.
        name: String,
        /// The handler index.
        handler: u32,
        /// The bus's reason.
        error: String,
    },
    /// The plugin's thread ended without answering (it was abandoned or died).
    #[error("plugin '{name}': its thread is gone")]
    ThreadGone {
        /// The plugin.
        name: String,
    },
}

/// Watching the plugin directories failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch plugin directory '{}': {reason}", path.display())]
pub struct WatchError {
    /// The directory.
    pub path: PathBuf,
    /// The watcher's reason.
    pub reason: String,
}
