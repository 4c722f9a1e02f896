//! `plugbus plugins check`: a dry run through the real binary and the bundled `.so` files:
//! every configured plugin constructed, started and stopped, a bad config named by its key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use plugbus_tests::{crates, output_text as text, plugbus_binary, PluginDir};

fn check(dir: &PluginDir, plugin_tables: &str) -> (Option<i32>, String) {
    let config = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndirectories = [\"{}\"]\n{plugin_tables}",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(plugbus_binary())
        .args(["plugins", "check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn a_good_config_checks_ok_and_a_bad_one_names_its_key() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let log = dir.scratch().join("audit.jsonl");
    let (code, out) = check(
        &dir,
        &format!(
            "[plugin.audit-logger]\nrequired = true\nconfig = {{ path = \"{}\" }}\n\
             [plugin.auth-enhancer]\nconfig = {{ max_failures = 3 }}\n",
            log.display()
        ),
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.matches("ok: constructed, started, stopped").count(),
        2,
        "{out}"
    );
    assert!(out.contains("ok: 2 started"), "{out}");

    let (code, out) = check(
        &dir,
        &format!(
            "[plugin.audit-logger]\nconfig = {{ path = \"{}\" }}\n\
             [plugin.auth-enhancer]\nrequired = true\nconfig = {{ max_failures = \"many\" }}\n",
            log.display()
        ),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("max_failures"), "the key is named: {out}");
    assert!(
        out.contains("required plugin 'auth-enhancer' did not start"),
        "{out}"
    );
    assert!(out.contains("FAILED"), "{out}");
}
