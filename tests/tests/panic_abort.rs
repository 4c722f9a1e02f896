//! A real `panic = "abort"` plugin build: an existing fixture compiled with `-C panic=abort`
//! (in a target folder of its own: `cargo test` holds the lock of the main one) is refused for
//! in-process loading, by `plugins inspect`, `plugins list` and `run`, with the reason and what
//! to change, and the host goes on with the other plugins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use plugbus_tests::{crates, library_file_name, plugbus_binary, PluginDir};

/// Builds `fixture-hanger` with `panic = "abort"` into `<target>/panic-abort` (a cold build
/// takes about 40 s here, a warm one a fraction of a second). `None` when cargo cannot build it
/// (offline without the sources, say).
fn abort_build() -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    let target = exe.parent()?.parent()?.parent()?.to_path_buf();
    let target_dir = target.join("panic-abort");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("Cargo.toml");
    let started = Instant::now();
    let out = Command::new(env!("CARGO"))
        .args([
            "rustc",
            "-q",
            "-p",
            crates::HANGER,
            "--lib",
            "--manifest-path",
        ])
        .arg(&workspace)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--", "-C", "panic=abort"])
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    eprintln!(
        "panic = \"abort\" build of {}: {:?}",
        crates::HANGER,
        started.elapsed()
    );
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let lib = target_dir
        .join("debug")
        .join(library_file_name(crates::HANGER));
    lib.is_file().then_some(lib)
}

fn plugbus(args: &[&str]) -> Output {
    Command::new(plugbus_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

use plugbus_tests::output_text as text;

#[test]
fn a_panic_abort_build_is_refused_with_the_reason_and_the_host_goes_on() {
    let Some(lib) = abort_build() else {
        panic!("could not build the panic = \"abort\" fixture (see above)");
    };
    let dir = PluginDir::new();
    let file = dir.write("libabort.so", &std::fs::read(&lib).unwrap(), 0o644);
    dir.add(crates::FAILER);
    let why = "plugin 'fixture-hanger' was built with panic = \"abort\": its first panic would \
               abort the host, so it cannot run in process; build it with panic = \"unwind\"";

    let inspected = plugbus(&["plugins", "inspect", file.to_str().unwrap()]);
    let out = text(&inspected);
    assert_eq!(inspected.status.code(), Some(1), "{out}");
    assert!(out.contains("status:      refused\n"), "{out}");
    assert!(out.contains(why), "{out}");
    assert!(!out.contains("compatible"), "{out}");

    let listed = text(&plugbus(&["plugins", "list", dir.path().to_str().unwrap()]));
    assert!(
        listed.contains("refused: plugin 'fixture-hanger' was built with panic = \"abort\""),
        "{listed}"
    );

    let run = plugbus(&[
        "run",
        "-p",
        dir.path().to_str().unwrap(),
        "--events",
        "/dev/null",
    ]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert_eq!(out.matches(why).count(), 1, "{out}");
    assert!(
        out.contains(&format!("plugbus: plugin '{}': {why}", file.display())),
        "{out}"
    );
    // The host went on: the other plugin ran and the run ended with its account.
    assert!(out.contains("fixture-failer"), "{out}");
    assert!(out.contains("Account:"), "{out}");
}
