//! Process isolation: a plugin's `.so`, unchanged, served by a child process of its own.
//!
//! A plugin with `isolation = "process"` (in its `[plugin.<name>]` table, or for every
//! plugin in `[plugins]`) does not run in the host. The host checks and maps its file as for
//! any plugin (trust policy, ELF structure, the loading probe, abi_stable's layouts, the
//! interface version: the only plugin code that runs in the host is the library's
//! initializers and its `info`, both survived by the probe first), keeps a private copy, and
//! starts a child: this process's executable re-executed with [`CHILD_ARG`]. The child
//! verifies the copy's SHA-256, maps it after the same checks, constructs the plugin and
//! serves it over a stream socket (its standard input; it inherits no other descriptor but
//! stderr) with the framed protocol of [`protocol`]. See the manager's `process` module for
//! the host's side: deliveries in batches, answers, publishes and logs, heartbeats, and the
//! supervision (restart with backoff, at most `max_restarts` in `restart_window`; deliveries
//! in the child's hands delivered once more or dead-lettered with "plugin crashed").
//!
//! # In an application of your own
//!
//! The `plugbus` binary answers [`CHILD_ARG`]. An application embedding the host makes its
//! own executable answer it by calling [`main_if_child`] first thing in `main`, and turns
//! isolation on with [`enable_current_exe`]:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     if let Some(code) = plugbus_host::isolation::main_if_child() {
//!         return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
//!     }
//!     plugbus_host::isolation::enable_current_exe();
//!     // ... build the bus and the PluginManager as usual ...
//!     std::process::ExitCode::SUCCESS
//! }
//! ```
//!
//! Without [`enable`], a plugin configured for a process of its own fails to load with an
//! error saying so (it never silently runs in process).

mod child;
pub mod protocol;

use std::path::PathBuf;
use std::sync::OnceLock;

/// `argv[1]` of a child process serving a plugin.
pub const CHILD_ARG: &str = "__plugbus-plugin-child";

static EXE: OnceLock<PathBuf> = OnceLock::new();

/// Turns process isolation on for this process: a plugin configured with `isolation =
/// "process"` is served by `exe CHILD_ARG`. `exe` must call [`main_if_child`] first thing in
/// its `main`. Returns false if it was already enabled (the first call wins).
pub fn enable(exe: PathBuf) -> bool {
    EXE.set(exe).is_ok()
}

/// [`enable`] with this process's own executable.
pub fn enable_current_exe() -> bool {
    match std::env::current_exe() {
        Ok(exe) => enable(exe),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this executable: plugins cannot run in a process of their own");
            false
        }
    }
}

/// The executable that serves isolated plugins, once [`enable`] was called.
pub fn child_exe() -> Option<&'static PathBuf> {
    EXE.get()
}

/// If this process was started as a plugin's child (`argv[1] == CHILD_ARG`), serves the
/// plugin until the host says stop or goes away, and returns the exit code to end the
/// process with; otherwise `None`. Call it first thing in `main`, before starting runtimes or
/// threads: the child needs neither.
pub fn main_if_child() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(CHILD_ARG)) {
        return None;
    }
    Some(child::serve())
}
