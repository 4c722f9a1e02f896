//! `[otel]` in `plugbus run`, through the real binary: a build without the `otel` feature
//! refuses the table by name (exit 2, before reading input); a build with it starts the
//! exporter, runs, and exits 0 even when the collector is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn run_with_otel(endpoint: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plugbus.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndirectories = []\n\n[otel]\nendpoint = \"{endpoint}\"\nservice_name = \"cli-test\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugbus"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = br#"{"type":"user.login","metadata":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}"#;
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(line);
    let _ = stdin.write_all(b"\n");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[cfg(not(feature = "otel"))]
#[test]
fn an_otel_table_is_refused_by_a_build_without_the_feature() {
    let (code, text) = run_with_otel("http://127.0.0.1:9");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("[otel]") && text.contains("`otel` feature"),
        "{text}"
    );
}

#[cfg(feature = "otel")]
#[test]
fn an_otel_table_starts_the_export_and_the_run_goes_on() {
    // Port 9 (discard) on loopback: nothing listens, so every export fails; the run must not.
    let (code, text) = run_with_otel("http://127.0.0.1:9");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 events published"), "{text}");
}
