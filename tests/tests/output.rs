//! What the real `plugbus` binary prints about a plugin file that does not load: each error
//! once, worded by the phase that failed (never a generic "failed to load"), and an abi_stable
//! layout mismatch summarized to the type and field that differ (abi_stable's whole report only
//! at debug level).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use plugbus_tests::{crates, plugbus_binary, PluginDir};

fn plugbus(args: &[&str], config: Option<&Path>) -> Output {
    let mut cmd = Command::new(plugbus_binary());
    if let Some(config) = config {
        cmd.arg("-c").arg(config);
    }
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

use plugbus_tests::output_text as text;

fn run(dir: &PluginDir, config: Option<&Path>) -> String {
    let out = plugbus(
        &[
            "run",
            "-p",
            dir.path().to_str().unwrap(),
            "--events",
            "/dev/null",
        ],
        config,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("Account:"), "the run did not finish: {all}");
    all
}

fn list(dir: &PluginDir) -> String {
    text(&plugbus(
        &["plugins", "list", dir.path().to_str().unwrap()],
        None,
    ))
}

fn inspect(file: &Path) -> String {
    text(&plugbus(
        &["plugins", "inspect", file.to_str().unwrap()],
        None,
    ))
}

fn once(haystack: &str, needle: &str) {
    assert_eq!(
        haystack.matches(needle).count(),
        1,
        "expected '{needle}' exactly once in:\n{haystack}"
    );
}

#[test]
fn a_damaged_file_is_reported_once_as_damaged() {
    let dir = PluginDir::new();
    let bytes = std::fs::read(plugbus_tests::built_library(crates::FAILER)).unwrap();
    let file = dir.write("libcut.so", &bytes[..bytes.len() / 2], 0o644);
    for (what, out) in [
        ("run", run(&dir, None)),
        ("list", list(&dir)),
        ("inspect", inspect(&file)),
    ] {
        once(&out, "truncated or corrupt shared library: ");
        once(&out, "past the end of the file");
        assert!(!out.contains("failed to load"), "{what}: {out}");
    }
    let out = run(&dir, None);
    assert!(
        out.contains(&format!(
            "plugbus: plugin '{}': truncated or corrupt shared library: ",
            file.display()
        )),
        "{out}"
    );
    assert!(inspect(&file).contains("status:      refused\n"));
}

#[test]
fn a_failing_constructor_is_reported_once_as_such() {
    let dir = PluginDir::new();
    dir.add(crates::ECHO);
    // fixture-echo refuses to be constructed without its 'on' and 'publish' settings.
    let out = run(&dir, None);
    once(
        &out,
        "constructor of 'fixture-echo' failed: config: both 'on' and 'publish' are required",
    );
    assert!(!out.contains("failed to load"), "{out}");
    assert!(
        out.contains("1 plugin load error(s), reported above"),
        "{out}"
    );
}

#[test]
fn an_old_interface_is_reported_once_with_both_versions() {
    let dir = PluginDir::new();
    let file = dir.add(crates::OLD_ABI);
    for (what, out) in [
        ("run", run(&dir, None)),
        ("list", list(&dir)),
        ("inspect", inspect(&file)),
    ] {
        once(&out, "interface version 0.0 is too old");
        assert!(!out.contains("failed to load"), "{what}: {out}");
    }
}

#[test]
fn a_layout_mismatch_names_the_type_and_field_in_a_few_lines() {
    let dir = PluginDir::new();
    let file = dir.add(crates::BAD_LAYOUT);
    let summary =
        "ABI layout mismatch: PluginInfo.abi_major: mismatched type: expected u32, found u64";
    let run_out = run(&dir, None);
    for (what, out) in [
        ("run", run_out.as_str()),
        ("list", &list(&dir)),
        ("inspect", &inspect(&file)),
    ] {
        once(out, summary);
        // None of abi_stable's report beyond the summary.
        assert!(!out.contains("Layout of expected type"), "{what}: {out}");
        assert!(!out.contains("failed to load"), "{what}: {out}");
    }
    let inspected = inspect(&file);
    assert!(inspected.lines().count() < 20, "{inspected}");
    assert!(
        inspected.contains("status:      incompatible\n"),
        "{inspected}"
    );
    // The error itself is one line of the run's output.
    let line = run_out.lines().find(|l| l.contains(summary)).unwrap();
    assert!(
        line.starts_with(&format!("plugbus: plugin '{}': ", file.display())),
        "{line}"
    );

    // The whole report at debug level.
    let debug = text(&plugbus(
        &[
            "--log",
            "debug",
            "plugins",
            "inspect",
            file.to_str().unwrap(),
        ],
        None,
    ));
    assert!(debug.contains("Layout of expected type"), "{debug}");
}
