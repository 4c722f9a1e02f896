//! `required = true` through the real `plugbus` binary and the real audit logger: a required
//! plugin that cannot write, times out or is missing stops the run from taking input, and the
//! run drains and exits 1. Losing the audit trail never ends in exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

use plugbus_tests::{crates, plugbus_binary, PluginDir};

fn run(dir: &PluginDir, config: &str, events: usize) -> Output {
    let config_path = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config_path,
        format!(
            "[plugins]\ndirectories = [\"{}\"]\n{config}",
            dir.path().display()
        ),
    )
    .unwrap();
    let input = dir.scratch().join("events.jsonl");
    let lines: String = (0..events)
        .map(|n| format!("{{\"type\":\"user.login\",\"data\":{{\"user_id\":\"u{n}\",\"ip\":\"10.0.0.1\"}}}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(&config_path)
        .arg("--events")
        .arg(&input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

use plugbus_tests::output_text as text;

#[test]
fn a_required_audit_logger_that_cannot_write_stops_the_run_with_exit_1() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    let out = run(
        &dir,
        "[plugin.audit-logger]\nrequired = true\nconfig = { path = \"/dev/full\", fsync = \"never\" }\n",
        5_000,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("required plugin 'audit-logger'"), "{all}");
    assert!(
        all.contains("Account:"),
        "the run drained and printed its account: {all}"
    );
}

#[test]
fn a_required_plugin_that_times_out_stops_the_run_with_exit_1() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    let log = dir.scratch().join("audit.jsonl");
    let out = run(
        &dir,
        &format!(
            "default_timeout = \"1ns\"\n[plugin.audit-logger]\nrequired = true\nconfig = {{ path = \"{}\" }}\n",
            log.display()
        ),
        2_000,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("required plugin 'audit-logger'"), "{all}");
}

#[test]
fn a_required_plugin_that_is_missing_stops_the_run_before_any_input() {
    let dir = PluginDir::new();
    dir.add(crates::AUTH_ENHANCER);
    let out = run(&dir, "[plugin.audit-logger]\nrequired = true\n", 10);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("required plugin 'audit-logger' is not loaded"),
        "{all}"
    );
    assert!(all.contains("0 events published"), "{all}");
}

#[test]
fn a_pin_by_name_that_does_not_match_refuses_the_file_through_the_binary() {
    let dir = PluginDir::new();
    dir.add(crates::AUTH_ENHANCER);
    let out = run(
        &dir,
        &format!("[plugin.auth-enhancer]\nsha256 = \"{}\"\n", "00".repeat(32)),
        3,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("sha-256 mismatch for pin 'auth-enhancer'"),
        "{all}"
    );
}

#[test]
fn a_required_plugin_deleted_while_watching_stops_slow_input_at_once_with_exit_1() {
    use std::io::Write as _;
    let dir = PluginDir::new();
    let so = dir.add(crates::AUDIT_LOGGER);
    let log = dir.scratch().join("audit.jsonl");
    let config_path = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config_path,
        format!(
            "[plugins]\ndirectories = [\"{}\"]\nwatch = true\n[plugin.audit-logger]\nrequired = true\nconfig = {{ path = \"{}\" }}\n",
            dir.path().display(),
            log.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(&config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let line = b"{\"type\":\"user.login\",\"data\":{\"user_id\":\"u\",\"ip\":\"10.0.0.1\"}}\n";
    // A slow input: 3 events, the plugin file deleted, then more events, slowly.
    let mut written = 0;
    for _ in 0..3 {
        stdin.write_all(line).unwrap();
        written += 1;
    }
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::remove_file(&so).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if stdin.write_all(line).and_then(|()| stdin.flush()).is_err() {
            break; // the host stopped reading and closed its end
        }
        written += 1;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    // Seen while it is being unloaded or once it is gone: either way, no more input.
    assert!(
        all.contains("required plugin 'audit-logger' is not loaded: no more input is taken")
            || all.contains("required plugin 'audit-logger' is stopping: no more input is taken"),
        "{all}"
    );
    assert!(all.contains("NOT balanced"), "{all}");
    assert!(
        std::time::Instant::now() < deadline,
        "the host stopped taking input on its own ({written} lines written): {all}"
    );
}
