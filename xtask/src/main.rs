//! Developer tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `demo [ARGS...]`: builds the `plugbus` binary and the two bundled plugins, copies the
//!   plugins' `.so` files into `target/plugbus-demo/plugins` (owner-writable only, as the host's
//!   trust checks require), and runs `plugbus demo` on them; extra arguments go to the demo.
//! - `plugins-dir`: the same build and copy, printing the folder (for `plugbus run -p DIR`).
//! - `bench [ARGS...]`: builds the `plugbus` binary and the two counter fixture plugins in
//!   release, copies the plugins into `target/plugbus-bench/plugins`, and runs
//!   `plugbus bench --plugins DIR`; extra arguments (`--quick`, `--json FILE`, `--filter S`) go
//!   to the bench.
//!
//! The `.so` paths come from cargo's own build messages, so this works with any target
//! directory and never guesses at `target/debug/deps`.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PLUGINS: [&str; 2] = ["plugbus-audit-logger", "plugbus-auth-enhancer"];
const BENCH_PLUGINS: [&str; 2] = ["plugbus-fixture-counter", "plugbus-fixture-counter-2"];

/// What to build and where to put the plugins.
struct Build<'a> {
    plugins: &'a [&'a str],
    release: bool,
    /// The folder under the target directory that receives `plugins/`.
    folder: &'a str,
}

const DEMO: Build<'static> = Build {
    plugins: &PLUGINS,
    release: false,
    folder: "plugbus-demo",
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("demo") => {
            let (bin, dir, target) = build(&DEMO)?;
            let audit = target.join("plugbus-demo").join("audit.jsonl");
            let status = Command::new(&bin)
                .arg("demo")
                .arg("--plugins")
                .arg(&dir)
                .arg("--audit-log")
                .arg(&audit)
                .args(args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(2));
        }
        Some("plugins-dir") => {
            let (_, dir, _) = build(&DEMO)?;
            println!("{}", dir.display());
            Ok(())
        }
        Some("bench") => {
            let (bin, dir, _) = build(&Build {
                plugins: &BENCH_PLUGINS,
                release: true,
                folder: "plugbus-bench",
            })?;
            let status = Command::new(&bin)
                .arg("bench")
                .arg("--plugins")
                .arg(&dir)
                .args(args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(2));
        }
        other => {
            bail!("unknown task {other:?}; tasks: demo [ARGS...], plugins-dir, bench [ARGS...]")
        }
    }
}

/// Builds the binary and the plugins; returns (binary, plugin folder, target directory).
fn build(what: &Build<'_>) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build");
    if what.release {
        cmd.arg("--release");
    }
    cmd.args([
        "--message-format=json-render-diagnostics",
        // `--lib` builds the plugins' libraries, `--bin` the binary (plugbus-cli has no lib).
        "--lib",
        "--bin",
        "plugbus",
        "-p",
        "plugbus-cli",
    ]);
    for p in what.plugins {
        cmd.args(["-p", p]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build failed");
    }
    let mut bin = None;
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            if msg["target"]["name"] == "plugbus" {
                bin = Some(PathBuf::from(exe));
            }
        }
        let name = msg["package_id"].as_str().unwrap_or_default();
        // Package ids look like `path+file:///…/plugins/audit-logger#plugbus-audit-logger@0.1.0`.
        if what
            .plugins
            .iter()
            .any(|p| name.contains(&format!("#{p}@")))
        {
            for f in msg["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str().filter(|f| f.ends_with(".so")) {
                    libs.push(PathBuf::from(f));
                }
            }
        }
    }
    let bin = bin.context("cargo did not report the plugbus binary")?;
    if libs.len() != what.plugins.len() {
        bail!(
            "expected {} plugin libraries from cargo, got {libs:?}",
            what.plugins.len()
        );
    }
    let target = target_dir(&bin)?;
    let dir = target.join(what.folder).join("plugins");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for lib in &libs {
        let name = lib.file_name().context("library without a file name")?;
        let dest = dir.join(name);
        // Copy to a temporary name and rename: a running host watching the folder never sees a
        // half-written library.
        let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        std::fs::copy(lib, &tmp).with_context(|| format!("copying {}", lib.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &dest)?;
    }
    Ok((bin, dir, target))
}

/// The target directory: the binary lives in `<target>/<profile>/plugbus`.
fn target_dir(bin: &Path) -> Result<PathBuf> {
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("cannot find the target directory from the binary path")
}
