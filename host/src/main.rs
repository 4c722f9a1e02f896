//! The `plugbus` binary: runs the bus with plugins loaded from `.so` files.
//!
//! `anyhow` lives only here, at the edge; the library returns typed errors. Exit status: 0 when
//! everything worked, 1 when the run finished but something failed along the way (a plugin that
//! did not load, a malformed input line, a broken audit chain), 2 on a fatal error.

mod cli;

/// mimalloc rather than the system allocator: an event bus allocates small, short-lived blocks
/// (events, payload bytes, jobs) on one thread and frees them on another (a plugin's), which
/// glibc's allocator handles poorly (a quarter of plugin delivery time went to it). Plugins keep
/// their own allocator: every value that crosses the ABI is freed by the side that made it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A child started to probe a plugin file maps it and answers, nothing else.
    if let Some(code) = plugbus_host::probe::main_if_probe() {
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(3));
    }
    // Every plugin file this process has not seen is first mapped in such a child.
    plugbus_host::probe::enable_current_exe(std::time::Duration::from_secs(5));
    cli::main()
}
