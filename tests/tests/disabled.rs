//! `enabled = false` never maps the file in the host: the fixture-marker library's constructor
//! appends the pid of every process that maps it to a marker file. The admission probe's child
//! may map it (by design: it runs with a cleared environment, so it leaves no mark); the host's
//! pid must never appear, in `run` or in `plugins list`, and both say the plugin is disabled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use plugbus_tests::{crates, plugbus_binary, PluginDir};

/// Runs the binary with the marker variable set; its pid and what it printed.
fn plugbus(args: &[&str], config: &Path, marker: &Path) -> (u32, String) {
    let child = Command::new(plugbus_binary())
        .arg("-c")
        .arg(config)
        .args(args)
        .env("PLUGBUS_TEST_MARKER", marker)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.code().is_some(), "the host died: {text}");
    (pid, text)
}

fn pids(marker: &Path) -> Vec<u32> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn config(dir: &PluginDir, enabled: bool) -> std::path::PathBuf {
    let path = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &path,
        format!(
            "[plugins]\ndirectories = [\"{}\"]\n[plugin.fixture-marker]\nenabled = {enabled}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_disabled_plugin_is_never_mapped_in_the_host_and_is_reported_disabled() {
    let dir = PluginDir::new();
    dir.add(crates::MARKER);
    dir.add(crates::FAILER);
    let marker = dir.scratch().join("mapped-by");
    let disabled = config(&dir, false);

    let (pid, out) = plugbus(&["run", "--events", "/dev/null"], &disabled, &marker);
    assert!(
        !pids(&marker).contains(&pid),
        "the host mapped a disabled plugin: {out}"
    );
    assert!(
        out.contains("fixture-marker: disabled in the configuration, not loaded"),
        "{out}"
    );
    assert!(out.contains("Account:"), "{out}");

    let (pid, out) = plugbus(&["plugins", "list"], &disabled, &marker);
    assert!(
        !pids(&marker).contains(&pid),
        "plugins list mapped a disabled plugin: {out}"
    );
    assert!(
        out.contains("disabled (enabled = false in the config)"),
        "{out}"
    );

    // The control: enabled, the host maps it, and its pid is there.
    let (pid, out) = plugbus(
        &["run", "--events", "/dev/null"],
        &config(&dir, true),
        &marker,
    );
    assert!(
        pids(&marker).contains(&pid),
        "the marker does not record mappings, so the test proves nothing: {out}"
    );
}
