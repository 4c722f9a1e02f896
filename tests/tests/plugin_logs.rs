//! A plugin's `tracing` events through the real `plugbus` binary: the bundled auth-enhancer's
//! structured fields arrive in the host's log output as `key=value` fields of their own (typed
//! numbers and booleans, `%value` text unquoted), under the target
//! `plugbus::plugin::auth-enhancer` that `--log` filters select by prefix, with the plugin's
//! module path as `plugin.module`; the same in process and in a process of its own (the
//! records then cross the child protocol first).
//!
//! The binary has no JSON log format, so typed values are checked by the host's unit tests
//! (`plugbus_host::log_forward`), with a visitor that sees each value's type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use plugbus_tests::{crates, plugbus_binary, PluginDir};

/// A config loading the plugin directory, `extra` under `[plugins]`.
fn config(dir: &PluginDir, extra: &str) -> PathBuf {
    let path = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &path,
        format!(
            "[plugins]\ndirectories = [\"{}\"]\n{extra}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    path
}

/// Twelve failed logins of one user from one address: a brute-force alert by user and one by
/// address, each logged by the plugin with its fields.
fn events(dir: &PluginDir) -> PathBuf {
    let path = dir.scratch().join("events.jsonl");
    let lines: String = (0..12)
        .map(|n| {
            format!(
                "{{\"type\":\"user.login_failed\",\"data\":{{\"user_id\":\"mallory\",\"ip\":\"203.0.113.9\",\"reason\":\"bad password {n}\"}}}}\n"
            )
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// Runs the auth-enhancer over the failed logins with the log filter `log`; its stderr.
fn run(isolation: &str, log: &str) -> String {
    let dir = PluginDir::new();
    dir.add(crates::AUTH_ENHANCER);
    let out = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(config(&dir, isolation))
        .arg("--events")
        .arg(events(&dir))
        .args(["--log", log])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The one line of `stderr` containing `needle`.
fn line_with<'a>(stderr: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line with '{needle}' expected in:\n{stderr}"
    );
    lines[0]
}

const TARGET: &str = "plugbus::plugin::auth-enhancer: ";

fn assert_structured(stderr: &str) {
    // `%value` fields print unquoted, integers as numbers, each as a field of its own; the
    // module path follows the plugin's fields.
    let alert = line_with(stderr, "reason=brute_force_user");
    assert!(
        alert.contains(&format!(
            "WARN {TARGET}security alert reason=brute_force_user user_id=mallory \
             ip=203.0.113.9 count=5 plugin.module=plugbus_auth_enhancer"
        )),
        "{alert}"
    );
    let by_ip = line_with(stderr, "reason=brute_force_ip");
    assert!(
        by_ip.contains(&format!("WARN {TARGET}security alert")),
        "{by_ip}"
    );
    // Unsigned integers and booleans.
    let started = line_with(stderr, "auth enhancer started");
    assert!(
        started.contains(&format!("INFO {TARGET}auth enhancer started ")),
        "{started}"
    );
    for field in [
        " max_failures=5 ",
        " failure_window_secs=300 ",
        " alert_new_address=true ",
        " plugin.module=plugbus_auth_enhancer",
    ] {
        assert!(started.contains(field), "{field} in {started}");
    }
    let stopped = line_with(stderr, "auth enhancer stopped");
    assert!(stopped.contains(" handled=12 alerts=2 "), "{stopped}");
    // Nothing flattened into the message, nothing through the `log` fallback's fields.
    assert!(!stderr.contains("log.target"), "{stderr}");
}

#[test]
fn in_process_plugin_fields_arrive_as_fields_under_the_plugin_target() {
    let stderr = run("", "warn,plugbus::plugin=info");
    assert_structured(&stderr);
}

#[test]
fn a_plugin_in_its_own_process_logs_the_same_fields() {
    let stderr = run(
        "isolation = \"process\"",
        "warn,plugbus::plugin::auth-enhancer=debug",
    );
    assert_structured(&stderr);
}

#[test]
fn log_filters_select_plugin_lines_by_target_prefix() {
    // Only warnings: the alerts, not the info lines.
    let stderr = run("", "warn");
    line_with(&stderr, "reason=brute_force_user");
    assert!(!stderr.contains("auth enhancer started"), "{stderr}");
    // Info for another plugin's target only: still not this one's.
    let stderr = run("", "warn,plugbus::plugin::audit-logger=info");
    assert!(!stderr.contains("auth enhancer started"), "{stderr}");
    // The parent target selects every plugin.
    let stderr = run("", "error,plugbus::plugin=info");
    line_with(&stderr, "auth enhancer started");
    line_with(&stderr, "reason=brute_force_ip");
}
