//! `plugbus plugins new` as a new plugin author uses it, outside the workspace: the crate it
//! writes passes its own `cargo test`, builds a `.so`, and that `.so` loads and works in
//! `plugbus run`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use plugbus_tests::{output_text as text, plugbus_binary, PluginDir};

/// The target folder this test was built into: the new crate builds there too, so the
/// plugin-api and its dependencies are not compiled again.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn a_new_plugin_tests_builds_and_loads_as_it_is() {
    let outside = tempfile::tempdir().unwrap();
    let out = Command::new(plugbus_binary())
        .args(["plugins", "new", "login-milestones", "--dir"])
        .arg(outside.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let root = outside.path().join("login-milestones");
    for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(root.join(file).is_file(), "{file} missing");
    }
    // The same dependency versions as this workspace, so its build is reused.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"),
        root.join("Cargo.lock"),
    )
    .unwrap();
    let cargo = |args: &[&str]| {
        Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", target_dir())
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap()
    };
    let test = cargo(&["test", "--quiet"]);
    assert!(test.status.success(), "{}", text(&test));
    assert!(text(&test).contains("3 passed"), "{}", text(&test));
    let build = cargo(&["build", "--quiet", "--lib"]);
    assert!(build.status.success(), "{}", text(&build));

    let so = target_dir().join("debug/libplugbus_plugin_login_milestones.so");
    let dir = PluginDir::new();
    dir.write(
        "libplugbus_plugin_login_milestones.so",
        &std::fs::read(&so).unwrap(),
        0o644,
    );
    let config = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndirectories = [\"{}\"]\n[plugin.login-milestones]\nconfig = {{ every = 2 }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut run = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = run.stdin.take().unwrap();
        for i in 0..5 {
            writeln!(
                stdin,
                "{{\"type\":\"user.login\",\"data\":{{\"user_id\":\"u{i}\"}}}}"
            )
            .unwrap();
        }
    }
    let out = run.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let row = all
        .lines()
        .find(|l| l.contains("login-milestones.milestone"))
        .unwrap_or_else(|| panic!("no milestone events: {all}"));
    assert!(row.contains(" 2 "), "two milestones for five logins: {row}");
    assert!(all.contains("-> balanced"), "{all}");
    // Its named subscription is labelled by name in the deliveries table.
    assert!(all.contains("login-milestones/logins"), "{all}");

    // The schema the derive made, as `plugins inspect` shows it.
    let inspect = Command::new(plugbus_binary())
        .args(["plugins", "inspect"])
        .arg(dir.path().join("libplugbus_plugin_login_milestones.so"))
        .output()
        .unwrap();
    let shown = text(&inspect);
    assert_eq!(inspect.status.code(), Some(0), "{shown}");
    let row = shown
        .lines()
        .find(|l| l.starts_with("│ every "))
        .unwrap_or_else(|| panic!("no 'every' key: {shown}"));
    assert!(
        row.contains("integer") && row.contains("100") && row.contains("Publish a milestone"),
        "{row}"
    );
}
