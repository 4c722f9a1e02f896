//! The `plugbus` binary: runs the bus with plugins loaded from `.so` files.
//!
//! `anyhow` lives only here, at the edge; the library returns typed errors. Exit status: 0 when
//! everything worked, 1 when the run finished but something failed along the way (a plugin that
//! did not load, a malformed input line, a broken audit chain), 2 on a fatal error.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
