//! The admission probe through the real binary: plugin files whose loading crashes, exits or
//! hangs are mapped first in a child process, so the host names the file and the reason and
//! goes on. A C library with a misbehaving constructor stands in for a damaged or hostile
//! file; the test skips where there is no C compiler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

fn plugbus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugbus"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A plugin folder holding one C library whose constructor runs `body`; `None` without `cc`.
fn folder_with(body: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = root.path().join("bad.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdlib.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void bad(void) {{ {body} }}\n"
        ),
    )
    .unwrap();
    let lib = dir.join("libbad.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .ok()?;
    if !built.success() {
        return None;
    }
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
    Some((root, lib))
}

fn dir_of(lib: &Path) -> String {
    lib.parent().unwrap().display().to_string()
}

#[test]
fn a_library_that_segfaults_while_loading_is_named_and_the_host_goes_on() {
    let Some((_root, lib)) = folder_with("volatile int *p = 0; *p = 1;") else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let listed = plugbus(&["plugins", "list", &dir_of(&lib)]);
    let out = text(&listed);
    assert!(
        listed.status.code().is_some(),
        "the host itself died: {out}"
    );
    assert!(
        out.contains("crashed while probing: killed by SIGSEGV"),
        "{out}"
    );
    assert!(out.contains("libbad.so"), "{out}");

    let inspected = plugbus(&["plugins", "inspect", lib.to_str().unwrap()]);
    let out = text(&inspected);
    assert!(
        inspected.status.code().is_some(),
        "the host itself died: {out}"
    );
    assert!(
        out.contains("crashed while probing: killed by SIGSEGV"),
        "{out}"
    );

    // A whole run: the file is refused, the run completes with its account, exit 1.
    let run = plugbus(&["run", "-p", &dir_of(&lib), "--events", "/dev/null"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(out.contains("crashed while probing"), "{out}");
    assert!(out.contains("Account:"), "{out}");
}

#[test]
fn a_library_that_exits_or_aborts_while_loading_is_named() {
    for (body, how) in [
        ("_exit(42);", "exit status 42"),
        ("abort();", "killed by SIGABRT"),
    ] {
        let Some((_root, lib)) = folder_with(body) else {
            eprintln!("skipped: no C compiler");
            return;
        };
        let listed = plugbus(&["plugins", "list", &dir_of(&lib)]);
        let out = text(&listed);
        assert!(listed.status.code().is_some(), "{out}");
        assert!(
            out.contains(&format!("crashed while probing: {how}")),
            "{out}"
        );
    }
}

#[test]
fn a_library_that_hangs_while_loading_is_killed_after_the_time_limit() {
    let Some((_root, lib)) = folder_with("sleep(600);") else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let started = Instant::now();
    let listed = plugbus(&["plugins", "list", &dir_of(&lib)]);
    let out = text(&listed);
    assert!(
        out.contains("probe did not answer within 5s: killed"),
        "{out}"
    );
    // A hang guard, not a timing assertion: the host did not wait for the 600 s sleep.
    assert!(started.elapsed().as_secs() < 120, "{out}");
}

#[test]
fn inspect_applies_the_trust_checks_and_words_a_permissions_problem_as_a_refusal() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join("libopen.so");
    std::fs::write(&file, b"\x7fELF not really").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = plugbus(&["plugins", "inspect", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("status:      refused by trust policy"),
        "{stdout}"
    );
    assert!(stdout.contains("writable by group or others"), "{stdout}");
    assert!(!stdout.contains("incompatible"), "{stdout}");
}

#[test]
fn a_sweep_of_truncated_and_bit_flipped_libraries_never_takes_the_host_down() {
    let Some((root, lib)) = folder_with("") else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let bytes = std::fs::read(&lib).unwrap();
    std::fs::remove_file(&lib).unwrap();
    let dir = lib.parent().unwrap().to_path_buf();
    let mut n = 0usize;
    let mut write = |mutant: &[u8]| {
        n += 1;
        let path = dir.join(format!("libm{n:04}.so"));
        std::fs::write(&path, mutant).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    // Truncated at every 4 KiB.
    for cut in (0..bytes.len()).step_by(4096).skip(1) {
        write(&bytes[..cut]);
    }
    // One bit flipped in every byte of the ELF header and of the program header table.
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let phsize = usize::from(u16::from_le_bytes([bytes[0x36], bytes[0x37]]))
        * usize::from(u16::from_le_bytes([bytes[0x38], bytes[0x39]]));
    for at in (0..64).chain(phoff..(phoff + phsize).min(bytes.len())) {
        for bit in [0u8, 3, 7] {
            let mut mutant = bytes.clone();
            mutant[at] ^= 1 << bit;
            write(&mutant);
        }
    }
    let listed = plugbus(&["plugins", "list", dir.to_str().unwrap()]);
    let out = text(&listed);
    assert!(
        listed.status.code().is_some(),
        "the host died of a signal after {n} mutants: {out}"
    );
    // Every mutant got a verdict of its own.
    let rows = out.lines().filter(|l| l.contains("libm")).count();
    assert_eq!(rows, n, "{out}");
    drop(root);
}
