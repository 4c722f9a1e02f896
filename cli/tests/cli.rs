//! The `plugbus` binary, run as a user would: real processes, real files, real exit codes.
//! (The full demo with both plugin `.so` files runs in CI as `cargo xtask demo`, and the plugin
//! paths are covered by the `plugbus-tests` crate.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn plugbus(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugbus"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn empty_plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Writes an audit chain the way the audit-logger plugin's format specifies.
fn write_chain(path: &Path, records: usize) {
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for seq in 1..=records {
        let body = format!(
            r#"{{"seq":{seq},"ts":"2026-11-22T05:00:0{}Z","event_id":"0192d0c0-0000-7000-8000-00000000000{seq}","event_type":"user.login","category":"business","source":"cli-test","data":{{"user_id":"u{seq}"}},"prev_hash":"{prev}"}}"#,
            seq % 10
        );
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        out.push_str(&body[..body.len() - 1]);
        out.push_str(&format!(",\"hash\":\"{hash}\"}}\n"));
        prev = hash;
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn audit_verify_accepts_a_good_chain_and_names_the_first_broken_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    write_chain(&log, 5);
    let ok = plugbus(&["audit", "verify", log.to_str().unwrap()], None);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("ok: 5 records, seq 1..5"),
        "{}",
        text(&ok.stdout)
    );

    let tampered = std::fs::read_to_string(&log)
        .unwrap()
        .replace("\"u3\"", "\"u9\"");
    std::fs::write(&log, tampered).unwrap();
    let bad = plugbus(&["audit", "verify", log.to_str().unwrap()], None);
    assert_eq!(bad.status.code(), Some(1));
    let out = text(&bad.stdout);
    assert!(
        out.contains("line 3") && out.contains("hash mismatch"),
        "{out}"
    );
}

#[test]
fn run_reports_malformed_lines_with_their_numbers_and_keeps_going() {
    let plugins = empty_plugin_dir();
    let input = concat!(
        r#"{"type":"user.login","data":{"user_id":"alice"}}"#,
        "\n",
        "this is not json\n",
        "\n",
        r#"{"type":"Bad Type"}"#,
        "\n",
        r#"{"type":"data.created","dta":{}}"#,
        "\n",
        r#"{"type":"user.logout","data":{"user_id":"alice"}}"#,
        "\n",
    );
    let out = plugbus(
        &["run", "-p", plugins.path().to_str().unwrap()],
        Some(input),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "malformed input is not fatal but shows in the exit status\n{stderr}"
    );
    assert!(stderr.contains("line 2: skipped"), "{stderr}");
    assert!(
        stderr.contains("line 4: skipped") && stderr.contains("invalid character"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5: skipped") && stderr.contains("dta"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("line 1:") && !stderr.contains("line 6:"),
        "{stderr}"
    );
    assert!(
        stdout.contains("Input: 6 lines, 2 events published, 3 malformed (skipped), 0 refused"),
        "{stdout}"
    );
    assert!(stdout.contains("balanced"), "{stdout}");
    assert!(
        stdout.contains("user.login") && stdout.contains("user.logout"),
        "{stdout}"
    );
}

#[test]
fn run_with_only_good_input_exits_zero() {
    let plugins = empty_plugin_dir();
    let out = plugbus(
        &["run", "-p", plugins.path().to_str().unwrap()],
        Some("{\"type\":\"data.created\",\"data\":{\"entity\":\"doc\",\"entity_id\":\"1\"}}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn plugins_list_says_why_a_file_is_not_a_plugin() {
    let plugins = empty_plugin_dir();
    let junk = plugins.path().join("libjunk.so");
    std::fs::write(&junk, b"definitely not an ELF file, just some bytes").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = plugbus(&["plugins", "list", plugins.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("libjunk.so") && stdout.contains("not a shared library"),
        "{stdout}"
    );

    let inspect = plugbus(&["plugins", "inspect", junk.to_str().unwrap()], None);
    assert_eq!(inspect.status.code(), Some(1));
    let inspected = text(&inspect.stdout);
    assert!(
        inspected.contains("status:      refused\n")
            && inspected.contains("reason:      not a shared library"),
        "{inspected}"
    );
}

#[test]
fn a_bad_config_is_fatal_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("plugbus.toml");
    std::fs::write(&cfg, "[bus]\nmailbox_capacty = 10\n").unwrap();
    let out = plugbus(&["--config", cfg.to_str().unwrap(), "run"], Some(""));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mailbox_capacty") && stderr.contains("mailbox_capacity"),
        "{stderr}"
    );
}

#[test]
fn demo_without_plugins_says_how_to_get_them() {
    let plugins = empty_plugin_dir();
    let audit = plugins.path().join("audit.jsonl");
    let out = plugbus(
        &[
            "demo",
            "-p",
            plugins.path().to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no plugins loaded"),
        "{}",
        text(&out.stderr)
    );
}
