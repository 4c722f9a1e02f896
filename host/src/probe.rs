//! The admission probe: a plugin file never seen before is first opened in a short-lived
//! child process, so that nothing it runs at load (ELF constructors, `ld.so` itself reading
//! damaged headers, the root module) can take the host down.
//!
//! Mapping a library runs code from it, and a damaged file can crash the dynamic loader:
//! no check made *after* `dlopen` in the host protects the host. The child is the host's own
//! binary re-executed with [`PROBE_ARG`]; it maps the private copy the host is about to map,
//! reads the plugin's info and interface checks, prints them as one line of JSON and exits. A
//! crash, a signal, an exit without an answer or a hang past the time limit becomes a
//! [`LoadErrorKind::ProbeFailed`](crate::LoadErrorKind::ProbeFailed) ("crashed while probing:
//! SIGSEGV"), and the host never maps that file: its SHA-256 is remembered as refused. Files
//! that passed are remembered by SHA-256 too, so only new bytes pay for a probe.
//!
//! The probe is off until the host enables it ([`enable`]), since it needs a binary that
//! answers [`PROBE_ARG`]: the `plugbus` binary does, and an embedding application gets the
//! same by calling [`main_if_probe`] first thing in its `main`:
//!
//! ```no_run
//! // First thing in the application's `main`:
//! if let Some(code) = plugbus_host::probe::main_if_probe() {
//!     std::process::exit(code);
//! }
//! plugbus_host::probe::enable_current_exe(std::time::Duration::from_secs(5));
//! // ... then build the bus and the PluginManager as usual ...
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The first argument that makes the host's binary serve one probe.
pub const PROBE_ARG: &str = "__plugbus-probe";

/// What the child reports about a file it mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The declared name.
    pub name: String,
    /// The declared version.
    pub version: String,
    /// The interface version, `(major, minor)`.
    pub abi: (u32, u32),
    /// Built with `panic = "unwind"`.
    pub unwind: bool,
    /// The load step that failed in the child, if one did: the file did not crash the child,
    /// but will not load, and the host does not map it either (a damaged file that failed
    /// cleanly in the child may still crash a process with another layout).
    pub error: Option<ProbeError>,
}

/// A load failure seen in the child, in a form the host turns back into its
/// [`LoadErrorKind`](crate::LoadErrorKind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeError {
    /// Which step: `open`, `symbol`, `layout`, `root_module` or `version`.
    pub step: String,
    /// What the dynamic loader or abi_stable said (its first 20 lines; a layout mismatch
    /// summarized to the type and field that differ).
    pub detail: String,
    /// abi_stable's whole report of a layout mismatch (logged by the host at debug level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

impl ProbeError {
    pub(crate) fn into_kind(self) -> crate::LoadErrorKind {
        use crate::LoadErrorKind as K;
        if let Some(report) = &self.report {
            tracing::debug!(%report, "abi_stable's report of the layout mismatch (from the probe)");
        }
        let detail = self.detail;
        match self.step.as_str() {
            "open" => K::Corrupt { detail },
            "symbol" => K::NoRootModule { detail },
            "layout" => K::AbiLayout { detail },
            "root_module" => K::RootModuleInit { detail },
            _ => K::AbiVersion { detail },
        }
    }

    fn from_library_error(err: abi_stable::library::LibraryError) -> ProbeError {
        let (kind, report) = crate::loader::classify_reported(err);
        let mut probe_error = ProbeError::from_kind(kind);
        // Within the 64 KiB the host reads of the answer (abi_stable's report of plugbus's
        // root module is about 40 KiB).
        probe_error.report = report.map(|r| {
            let mut end = r.len().min(32 * 1024);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r[..end].to_owned()
        });
        probe_error
    }

    fn from_kind(kind: crate::LoadErrorKind) -> ProbeError {
        use crate::LoadErrorKind as K;
        let (step, detail) = match kind {
            K::Corrupt { detail } => ("open", detail),
            K::NoRootModule { detail } => ("symbol", detail),
            K::AbiLayout { detail } => ("layout", detail),
            K::RootModuleInit { detail } => ("root_module", detail),
            K::AbiVersion { detail } => ("version", detail),
            other => ("version", other.to_string()),
        };
        let detail = detail.lines().take(20).collect::<Vec<_>>().join("\n");
        ProbeError {
            step: step.to_owned(),
            detail,
            report: None,
        }
    }
}

/// Why a probe did not vouch for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The child died of a signal or exited without an answer.
    Crashed(String),
    /// The child did not answer within the time limit and was killed.
    TimedOut(Duration),
    /// The child could not be started.
    Spawn(String),
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeFailure::Crashed(how) => write!(f, "crashed while probing: {how}"),
            ProbeFailure::TimedOut(after) => {
                write!(f, "probe did not answer within {after:?}: killed")
            }
            ProbeFailure::Spawn(why) => write!(f, "cannot start the probe process: {why}"),
        }
    }
}

#[derive(Debug)]
struct Prober {
    exe: PathBuf,
    timeout: Duration,
    /// Outcomes by SHA-256: a file is probed once per host process.
    seen: Mutex<HashMap<String, Result<ProbeReport, ProbeFailure>>>,
}

static PROBER: OnceLock<Prober> = OnceLock::new();

/// Turns the probe on for this process: new plugin files are first mapped by `exe
/// __plugbus-probe FILE`, killed after `timeout`. `exe` must answer [`PROBE_ARG`] (see
/// [`main_if_probe`]). Returns false if the probe was already enabled (the first call wins).
pub fn enable(exe: PathBuf, timeout: Duration) -> bool {
    PROBER
        .set(Prober {
            exe,
            timeout,
            seen: Mutex::new(HashMap::new()),
        })
        .is_ok()
}

/// [`enable`] with this process's own executable.
pub fn enable_current_exe(timeout: Duration) -> bool {
    match std::env::current_exe() {
        Ok(exe) => enable(exe, timeout),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this executable: plugin files are not probed");
            false
        }
    }
}

/// True once [`enable`] was called.
pub fn is_enabled() -> bool {
    PROBER.get().is_some()
}

/// Probes the private copy `copy` of a file whose bytes hash to `sha256`, if the probe is
/// enabled. `Ok(None)`: not enabled.
///
/// # Errors
/// The child crashed, hung or could not start; the outcome is remembered for these bytes.
pub(crate) fn probe(copy: &Path, sha256: &str) -> Result<Option<ProbeReport>, ProbeFailure> {
    let Some(prober) = PROBER.get() else {
        return Ok(None);
    };
    let known = prober
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(sha256)
        .cloned();
    if let Some(outcome) = known {
        return outcome.map(Some);
    }
    let started = Instant::now();
    let outcome = run_child(prober, copy);
    tracing::debug!(file = %copy.display(), elapsed = ?started.elapsed(), ok = outcome.is_ok(), "plugin file probed");
    prober
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(sha256.to_owned(), outcome.clone());
    outcome.map(Some)
}

fn run_child(prober: &Prober, copy: &Path) -> Result<ProbeReport, ProbeFailure> {
    // Nothing but the channel: no stdin, our stdout as its answer, no inherited descriptors
    // (std sets close-on-exec on everything it opens), a clean environment but PATH.
    let mut child = Command::new(&prober.exe)
        .arg(PROBE_ARG)
        .arg(copy)
        .env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| ProbeFailure::Spawn(format!("{}: {e}", prober.exe.display())))?;
    let until = Instant::now() + prober.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeFailure::TimedOut(prober.timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(ProbeFailure::Crashed(format!("cannot wait for it: {e}"))),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.by_ref().take(64 * 1024).read_to_string(&mut out);
    }
    if !status.success() {
        return Err(ProbeFailure::Crashed(describe_status(status)));
    }
    serde_json::from_str(out.trim())
        .map_err(|e| ProbeFailure::Crashed(format!("answered nothing readable ({e})")))
}

/// "killed by SIGSEGV", "exit status 42": how a child process ended, as people say it.
pub fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            4 => "SIGILL",
            5 => "SIGTRAP",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            13 => "SIGPIPE",
            15 => "SIGTERM",
            24 => "SIGXCPU",
            25 => "SIGXFSZ",
            31 => "SIGSYS",
            _ => return format!("killed by signal {signal}"),
        };
        format!("killed by {name}")
    } else {
        match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "ended without a status".to_owned(),
        }
    }
}

/// If this process was started as a probe (`argv[1] == PROBE_ARG`), serves it and returns the
/// exit code to end the process with; otherwise `None`. Call it first thing in `main`, before
/// anything else runs (threads, runtimes, allocators' warm-up): the child only maps the file.
pub fn main_if_probe() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(PROBE_ARG)) {
        return None;
    }
    let Some(path) = args.next() else {
        return Some(2);
    };
    let report = serve(Path::new(&path));
    match serde_json::to_string(&report) {
        Ok(line) => {
            println!("{line}");
            Some(0)
        }
        Err(_) => Some(3),
    }
}

/// In the child: map the file and read what the host would check. The answer only says that
/// mapping it did not crash and what it declares; the host, which then maps the same bytes,
/// makes every check itself and words every error.
fn serve(path: &Path) -> ProbeReport {
    let mut report = ProbeReport {
        name: String::new(),
        version: String::new(),
        abi: (0, 0),
        unwind: false,
        error: None,
    };
    let header = match abi_stable::library::lib_header_from_path(path) {
        Ok(header) => header,
        Err(e) => {
            report.error = Some(ProbeError::from_library_error(e));
            return report;
        }
    };
    let module = match header.init_root_module::<plugbus_plugin_api::PluginMod_Ref>() {
        Ok(module) => module,
        Err(e) => {
            report.error = Some(ProbeError::from_library_error(e));
            return report;
        }
    };
    let info = (module.info())();
    report.name = info.name.as_str().to_owned();
    report.version = info.version.as_str().to_owned();
    report.abi = (info.abi_major, info.abi_minor);
    report.unwind = info.unwind;
    report
}
