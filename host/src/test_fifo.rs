//! Test support: a named pipe on disk, the file that hangs any reader that blocks on it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// Creates a FIFO at `path` (mode 0644).
pub(crate) fn make_fifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}
