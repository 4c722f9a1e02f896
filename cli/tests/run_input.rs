//! `plugbus run`'s input, through the real binary: lines that are not UTF-8 or too long are
//! reported with their numbers and skipped, line endings, and a read error that ends the input
//! early still gets the drain, the shutdown and the account. No plugins are loaded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `program args…` (the `plugbus` binary, or a wrapper of it) with `stdin` written from a
/// thread, so a large input cannot deadlock against the child's output.
fn spawn(program: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut child = Command::new(program)
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
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            // The child may stop reading early (that is for the test to judge), so a broken pipe
            // is not a failure here.
            let _ = pipe.write_all(&input);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        w.join().unwrap();
    }
    out
}

fn plugbus(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    spawn(env!("CARGO_BIN_EXE_plugbus"), args, stdin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn empty_plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The count in the summary's "Events on the bus, by type" row for `ty`.
fn on_bus(stdout: &str, ty: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        let mut cells = l.trim_matches(|c| c == '│' || c == ' ').split('┆');
        (cells.next()?.trim() == ty)
            .then(|| cells.next()?.trim().parse().ok())
            .flatten()
    })
}

/// Whether the summary printed a balanced account.
fn balanced(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with("Account:") && l.ends_with("-> balanced"))
}

fn event(i: usize) -> Vec<u8> {
    format!(r#"{{"type":"user.login","data":{{"user_id":"u{i}"}}}}"#).into_bytes()
}

/// `plugbus run -p <empty dir> --events <file> extra…` on `input` written to a file.
fn run_file(input: &[u8], extra: &[&str]) -> (Output, String, String) {
    let plugins = empty_plugin_dir();
    let events = plugins.path().join("events.jsonl");
    std::fs::write(&events, input).unwrap();
    let mut args = vec![
        "run",
        "-p",
        plugins.path().to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = plugbus(&args, None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    (out, stdout, stderr)
}

#[test]
fn invalid_utf8_in_the_middle_is_one_malformed_line_and_all_ten_events_are_published() {
    let mut input = Vec::new();
    for i in 1..=5 {
        input.extend(event(i));
        input.push(b'\n');
    }
    input.extend(b"{\"type\":\"user.login\",\"data\":{\"user_id\":\"\xff\xfe\"}}\n");
    for i in 6..=10 {
        input.extend(event(i));
        input.push(b'\n');
    }
    let (out, stdout, stderr) = run_file(&input, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a malformed line is not fatal but shows in the exit status\n{stderr}"
    );
    assert!(
        stderr.contains("line 6: skipped: not valid UTF-8"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("skipped").count(), 1, "{stderr}");
    assert!(
        stdout.contains("Input: 11 lines, 10 events published, 1 malformed (skipped), 0 refused"),
        "{stdout}"
    );
    assert_eq!(on_bus(&stdout, "user.login"), Some(10), "{stdout}");
    assert!(balanced(&stdout), "{stdout}");
}

#[test]
fn a_line_over_max_line_bytes_is_skipped_and_the_events_after_it_are_published() {
    const LONG: usize = 20 * 1024 * 1024;
    let mut input = Vec::new();
    for i in 1..=2 {
        input.extend(event(i));
        input.push(b'\n');
    }
    // Valid JSON if it were read: only its length gets it skipped.
    let head = br#"{"type":"user.login","data":{"pad":""#;
    let tail = br#""}}"#;
    input.extend_from_slice(head);
    input.resize(input.len() + LONG - head.len() - tail.len(), b'x');
    input.extend_from_slice(tail);
    input.push(b'\n');
    for i in 3..=5 {
        input.extend(event(i));
        input.push(b'\n');
    }
    let (out, stdout, stderr) = run_file(&input, &["--max-line-bytes", "1048576"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "line 3: skipped: {LONG} bytes, longer than the limit of 1048576 bytes"
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains("Input: 6 lines, 5 events published, 1 malformed (skipped), 0 refused"),
        "{stdout}"
    );
    assert_eq!(on_bus(&stdout, "user.login"), Some(5), "{stdout}");
    assert!(balanced(&stdout), "{stdout}");
}

#[test]
fn crlf_endings_blank_lines_and_a_last_line_without_newline() {
    let mut input = Vec::new();
    input.extend(event(1));
    input.extend(b"\r\n\r\n   \n\n");
    input.extend(event(2));
    input.extend(b"\r\n");
    input.extend(event(3));
    let (out, stdout, stderr) = run_file(&input, &[]);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("line "), "{stderr}");
    assert!(
        stdout.contains("Input: 6 lines, 3 events published, 0 malformed (skipped), 0 refused"),
        "{stdout}"
    );
}

#[test]
fn a_read_error_still_drains_shuts_down_and_prints_the_account_then_exits_1() {
    // A directory opens like a file but every read of it fails (EISDIR).
    let plugins = empty_plugin_dir();
    let dir = plugins.path().join("not-a-file");
    std::fs::create_dir(&dir).unwrap();
    let out = plugbus(
        &[
            "run",
            "-p",
            plugins.path().to_str().unwrap(),
            "--events",
            dir.to_str().unwrap(),
        ],
        None,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("Input: 0 lines, 0 events published"),
        "{stdout}"
    );
    assert_eq!(on_bus(&stdout, "user.login"), None, "{stdout}");
    assert!(
        balanced(&stdout),
        "the account is printed after the drain\n{stdout}"
    );
    assert!(
        stderr.contains("the input ended early")
            && stderr.contains("line 1: reading failed")
            && stderr.contains(dir.to_str().unwrap()),
        "{stderr}"
    );
}

#[test]
fn a_missing_events_file_is_fatal_and_named() {
    let plugins = empty_plugin_dir();
    let missing = plugins.path().join("missing.jsonl");
    let out = plugbus(
        &[
            "run",
            "-p",
            plugins.path().to_str().unwrap(),
            "--events",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing.jsonl"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn max_line_bytes_must_be_positive() {
    let out = plugbus(&["run", "--max-line-bytes", "0"], Some(Vec::new()));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--max-line-bytes"),
        "{}",
        text(&out.stderr)
    );
}

/// The peak resident set size of a finished `/usr/bin/time -v` run, in KiB.
fn max_rss_kib(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn a_huge_line_on_stdin_does_not_grow_memory_to_its_size() {
    const TIME: &str = "/usr/bin/time";
    if !Path::new(TIME).exists() {
        eprintln!("skipped: no {TIME} to measure the peak memory");
        return;
    }
    const HUGE: usize = 96 * 1024 * 1024;
    let mut input = vec![b'x'; HUGE];
    input.push(b'\n');
    input.extend(event(1));
    input.push(b'\n');
    let plugins = empty_plugin_dir();
    let out = spawn(
        TIME,
        &[
            "-v",
            env!("CARGO_BIN_EXE_plugbus"),
            "run",
            "-p",
            plugins.path().to_str().unwrap(),
            "--max-line-bytes",
            "1048576",
        ],
        Some(input),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("Input: 2 lines, 1 events published, 1 malformed (skipped), 0 refused"),
        "{stdout}\n{stderr}"
    );
    let Some(peak) = max_rss_kib(&stderr) else {
        eprintln!("skipped: {TIME} printed no peak memory\n{stderr}");
        return;
    };
    // Holding the line would take at least its 96 MiB; the bounded reader needs ~1 MiB over the
    // host's own footprint.
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB for a {HUGE}-byte line\n{stderr}"
    );
}

#[test]
fn input_lines_speaking_as_the_host_are_refused_counted_and_fail_the_run() {
    let mut input = Vec::new();
    for line in [
        r#"{"type":"user.login","data":{"user_id":"a"}}"#,
        r#"{"type":"plugin.stopped","source":"local","data":{}}"#,
        r#"{"type":"system.shutdown","data":{"reason":"x"}}"#,
        r#"{"type":"user.login","source":"plugbus-host","data":{"user_id":"b"}}"#,
        r#"{"type":"user.logout","data":{"user_id":"a"}}"#,
    ] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    let (out, stdout, stderr) = run_file(&input, &[]);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("2 events published"), "{stdout}");
    assert!(stdout.contains("3 forbidden"), "{stdout}");
    for line in [2, 3, 4] {
        assert!(
            stderr.contains(&format!("line {line}: refused (forbidden)")),
            "{stderr}"
        );
    }
    assert_eq!(on_bus(&stdout, "plugin.stopped"), None, "{stdout}");
}
