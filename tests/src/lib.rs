//! Integration tests of plugbus over real plugin `.so` files: helpers.
//!
//! The test crates depend on every plugin and fixture crate (all `cdylib`), so `cargo test`
//! builds their shared libraries first; [`built_library`] finds them on the library search
//! path cargo sets for tests, falling back to the test binary's folder. [`PluginDir`] makes a
//! private plugin directory per test with safe permissions, [`Recorder`] collects the events
//! a bus delivers, and [`capture_logs`] records what reaches the host's `tracing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use plugbus::{Bus, Event, Interest};
use plugbus_host::Config;

/// Crate names of the bundled plugins and fixtures, as built by this workspace.
pub mod crates {
    /// `plugins/audit-logger`.
    pub const AUDIT_LOGGER: &str = "plugbus-audit-logger";
    /// `plugins/auth-enhancer`.
    pub const AUTH_ENHANCER: &str = "plugbus-auth-enhancer";
    /// Panics where its config says (`panic_in`: `new`, `start`, `handle`, `stop`).
    pub const PANICKER: &str = "plugbus-fixture-panicker";
    /// Sleeps 60 s on `test.hang`.
    pub const HANGER: &str = "plugbus-fixture-hanger";
    /// Fails every `test.*` event.
    pub const FAILER: &str = "plugbus-fixture-failer";
    /// Publishes 100 `test.flood` per `test.trigger`.
    pub const FLOODER: &str = "plugbus-fixture-flooder";
    /// Declares interface version 0.0.
    pub const OLD_ABI: &str = "plugbus-fixture-old-abi";
    /// A root module under the plugbus names whose layout differs from the host's in one field
    /// (`PluginInfo::abi_major` a `u64`): abi_stable's layout check refuses it.
    pub const BAD_LAYOUT: &str = "plugbus-fixture-bad-layout";
    /// Its library constructor appends the pid of the process mapping it to the file named by
    /// `PLUGBUS_TEST_MARKER`.
    pub const MARKER: &str = "plugbus-fixture-marker";
    /// `user.login` -> `test.echo` -> `test.echo2`.
    pub const REENTRANT: &str = "plugbus-fixture-reentrant";
    /// A shared library without a plugin root module.
    pub const NO_ROOT: &str = "plugbus-fixture-no-root";
    /// A declarative filter on handler 3, handler 7 unfiltered; publishes `test.seen`.
    pub const FILTERED: &str = "plugbus-fixture-filtered";
    /// One event of type `publish` per event of the types in `on` (config).
    pub const ECHO: &str = "plugbus-fixture-echo";
    /// [`ECHO`] under a second name (`fixture-echo-2`), to feed the first.
    pub const ECHO_2: &str = "plugbus-fixture-echo-2";
    /// Does to its process what a `test.crash` event says (segv, abort, exit 42, hang,
    /// unbounded allocation or recursion), then publishes `test.handled`.
    pub const CRASHER: &str = "plugbus-fixture-crasher";
    /// Named handlers, a derived config schema and `reconfigure` (`fixture-routed`).
    pub const ROUTED: &str = "plugbus-fixture-routed";
}

/// `lib<name>.so` (platform prefix and suffix) for a crate name.
pub fn library_file_name(crate_name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The folders searched for built libraries: the library search path cargo sets for tests
/// (`LD_LIBRARY_PATH`, `DYLD_FALLBACK_LIBRARY_PATH`, `DYLD_LIBRARY_PATH`), then the test
/// binary's folder, its `deps/` and its parent.
pub fn library_search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in [
        "LD_LIBRARY_PATH",
        "DYLD_FALLBACK_LIBRARY_PATH",
        "DYLD_LIBRARY_PATH",
    ] {
        if let Some(value) = std::env::var_os(var) {
            dirs.extend(std::env::split_paths(&value));
        }
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("deps"));
        if let Some(parent) = exe_dir.parent() {
            dirs.push(parent.join("deps"));
        }
        dirs.push(exe_dir);
    }
    dirs
}

/// The built shared library of a workspace crate: the newest copy on the search path.
///
/// Cargo keeps one copy in `deps/` (rebuilt whenever the sources change) and may keep an older
/// one uplifted into the profile folder by an earlier `cargo build`; taking the first found
/// would test yesterday's plugin. Waits a few seconds for one to appear: another cargo process
/// sharing the target folder may be replacing it right now.
///
/// # Panics
/// When it cannot be found (the message lists where it looked).
pub fn built_library(crate_name: &str) -> PathBuf {
    let file = library_file_name(crate_name);
    let dirs = library_search_path();
    let start = Instant::now();
    loop {
        let newest = dirs
            .iter()
            .map(|d| d.join(&file))
            .filter_map(|p| {
                let modified = fs::metadata(&p).ok()?.modified().ok()?;
                p.is_file().then_some((modified, p))
            })
            .max_by_key(|(modified, _)| *modified);
        if let Some((_, found)) = newest {
            return found;
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("{file} not found in {dirs:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `plugbus` binary of this build (beside the test binary's folder), brought up to date
/// with `cargo build` once per test process (cargo does not hold the target folder's lock
/// while tests run, so this works from inside `cargo test`).
///
/// # Panics
/// When the build fails.
pub fn plugbus_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            // Always asked, so a binary older than the sources is rebuilt (a no-op when it is
            // up to date); `cargo test` itself builds libraries, not the host's binary.
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "plugbus-cli", "--bin", "plugbus"])
                .status()
                .unwrap();
            assert!(status.success());
            profile_dir.join("plugbus")
        })
        .clone()
}

/// A finished command's standard output, then its standard error, as text: what a user of
/// the binary sees.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A private plugin directory (`0755`) inside a private temp dir, removed on drop.
#[derive(Debug)]
pub struct PluginDir {
    root: tempfile::TempDir,
    dir: PathBuf,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    /// Creates the directory.
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("plugins");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Self { root, dir }
    }

    /// The plugin directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A private scratch folder beside the plugin directory (for audit logs etc.).
    pub fn scratch(&self) -> &Path {
        self.root.path()
    }

    /// Copies a built crate's library in under its own file name (mode `0644`).
    pub fn add(&self, crate_name: &str) -> PathBuf {
        self.add_as(crate_name, &library_file_name(crate_name))
    }

    /// Copies a built crate's library in under `file_name` (mode `0644`).
    pub fn add_as(&self, crate_name: &str, file_name: &str) -> PathBuf {
        let bytes = fs::read(built_library(crate_name)).unwrap();
        self.write(file_name, &bytes, 0o644)
    }

    /// Writes a file into the directory with the given mode.
    pub fn write(&self, file_name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = self.dir.join(file_name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A config whose only plugin directory is this one, with `extra` TOML (plugin tables,
    /// `[plugins]` keys other than `directories`, `[bus]`).
    pub fn config(&self, extra: &str) -> Config {
        let mut config = Config::from_toml_str(extra, "test.toml").unwrap();
        config.plugins.directories = vec![self.dir.clone()];
        config
    }
}

/// Collects every event a bus delivers to one subscription.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// Subscribes a recorder to `interest` (named `name`).
    pub fn subscribe(bus: &Bus, interest: impl Into<Interest>, name: &str) -> Self {
        let recorder = Recorder::default();
        let events = Arc::clone(&recorder.events);
        bus.subscribe(interest)
            .name(name)
            .handle(move |e: &Event| events.lock().unwrap().push(e.clone()))
            .unwrap();
        recorder
    }

    /// A copy of what was recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The recorded events' type names.
    pub fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e.event_type().name().to_owned())
            .collect()
    }

    /// Waits until `done` holds for the recorded events, at most `timeout`.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> bool {
        wait_until(timeout, || done(&self.events.lock().unwrap())).await
    }
}

/// Polls `done` every 5 ms until it holds, at most `timeout`; returns whether it held.
pub async fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One event the host's `tracing` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Its target (for plugin lines, `plugbus::plugin::<name>`).
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// Its message.
    pub message: String,
    /// Its other fields, each as `Debug` would print it (strings unquoted).
    pub fields: Vec<(String, String)>,
}

impl Captured {
    /// The value of field `name`, if it has one.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything the host's `tracing` has seen since [`capture_logs`] was first called.
#[derive(Debug, Clone)]
pub struct LogCapture {
    lines: Arc<Mutex<Vec<Captured>>>,
}

impl LogCapture {
    /// The lines captured so far whose target starts with `prefix`.
    pub fn lines_for(&self, prefix: &str) -> Vec<Captured> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.target.starts_with(prefix))
            .cloned()
            .collect()
    }
}

struct CaptureLayer {
    lines: Arc<Mutex<Vec<Captured>>>,
}

#[derive(Default)]
struct MessageVisitor(String, Vec<(String, String)>);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else if !field.name().starts_with("log.") {
            self.1.push((field.name().to_owned(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        } else if !field.name().starts_with("log.") {
            self.1.push((field.name().to_owned(), value.to_owned()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        self.lines.lock().unwrap().push(Captured {
            target: metadata.target().to_owned(),
            level: *metadata.level(),
            message: visitor.0,
            fields: visitor.1,
        });
    }
}

/// Installs (once per test binary) a global `tracing` subscriber that records every event,
/// and returns the capture. Plugin threads log through it.
pub fn capture_logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let lines = Arc::new(Mutex::new(Vec::new()));
            let subscriber = tracing_subscriber::registry().with(CaptureLayer {
                lines: Arc::clone(&lines),
            });
            tracing::subscriber::set_global_default(subscriber).unwrap();
            LogCapture { lines }
        })
        .clone()
}
