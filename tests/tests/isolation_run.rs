//! Process isolation through the real `plugbus` binary with the bundled plugins: `plugbus run`
//! with both in processes of their own balances, raises and audits the brute-force alert; a
//! child killed with SIGKILL in the middle of a run is restarted and nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plugbus_tests::{crates, output_text, plugbus_binary, PluginDir};

fn config(dir: &PluginDir) -> std::path::PathBuf {
    let log = dir.scratch().join("audit.jsonl");
    let path = dir.scratch().join("plugbus.toml");
    std::fs::write(
        &path,
        format!(
            r#"[plugins]
directories = ["{}"]
isolation = "process"

[plugin.audit-logger]
required = true
config = {{ path = "{}", fsync = "never" }}
"#,
            dir.path().display(),
            log.display()
        ),
    )
    .unwrap();
    path
}

fn failed_login(n: usize) -> String {
    format!(
        "{{\"type\":\"user.login_failed\",\"data\":{{\"user_id\":\"mallory\",\"ip\":\"203.0.113.9\",\"reason\":\"bad password {n}\"}}}}\n"
    )
}

/// The children of `pid` serving a plugin, with the plugin's name (their command line is
/// `plugbus __plugbus-plugin-child NAME`).
fn plugin_children(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The parent pid is the 4th field, after the parenthesized command.
        let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let ppid: u32 = after.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if ppid == pid && args.get(1).is_some_and(|a| a == "__plugbus-plugin-child") {
            found.push((child, args.get(2).cloned().unwrap_or_default()));
        }
    }
    found
}

#[test]
fn bundled_plugins_in_their_own_processes_balance_and_audit_the_alert() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let input = dir.scratch().join("events.jsonl");
    std::fs::write(&input, (0..12).map(failed_login).collect::<String>()).unwrap();
    let out = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(config(&dir))
        .arg("--events")
        .arg(&input)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("-> balanced"), "{all}");
    assert!(all.contains("process, 0 restarts"), "{all}");
    // The plugins' logs reach the host's tracing, under their targets, as in process.
    assert!(
        all.contains("plugbus::plugin::audit-logger") && all.contains("audit log open"),
        "{all}"
    );
    let audit = std::fs::read_to_string(dir.scratch().join("audit.jsonl")).unwrap();
    assert!(audit.contains("security.alert"), "{audit}");
    assert_eq!(audit.matches("\"user.login_failed\"").count(), 12);
}

/// Kills the child serving `victim` with SIGKILL in the middle of 1,000 failed logins.
fn kill_mid_run(victim: &str) {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let mut host = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(config(&dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = host.stdin.take().unwrap();
    let started = Instant::now();
    // Both children past their handshake: a child starts its reader and heartbeat threads
    // once it has answered (killing one before that is a load failure, another test's case).
    let threads = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
            })
            .unwrap_or(0)
    };
    let children = loop {
        let children = plugin_children(host.id());
        if children.len() == 2 && children.iter().all(|(pid, _)| threads(*pid) >= 3) {
            break children;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "children: {children:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (pid, _) = children
        .iter()
        .find(|(_, name)| name == victim)
        .unwrap_or_else(|| panic!("no child for {victim}: {children:?}"));
    for n in 0..500 {
        stdin.write_all(failed_login(n).as_bytes()).unwrap();
    }
    stdin.flush().unwrap();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    // A host that stopped reading (it must not) is reported with its own account of why.
    let mut refused_at = None;
    for n in 500..1000 {
        if stdin.write_all(failed_login(n).as_bytes()).is_err() {
            refused_at = Some(n);
            break;
        }
    }
    drop(stdin);
    let out = host.wait_with_output().unwrap();
    let all = output_text(&out);
    assert_eq!(
        refused_at, None,
        "{victim}: the host stopped reading input: {all}"
    );
    assert_eq!(out.status.code(), Some(0), "{victim}: {all}");
    assert!(all.contains("killed by SIGKILL"), "{victim}: {all}");
    assert!(all.contains("process, 1 restart"), "{victim}: {all}");
    assert!(all.contains("-> balanced"), "{victim}: {all}");
    let log = dir.scratch().join("audit.jsonl");
    let audit = std::fs::read_to_string(&log).unwrap();
    // Every failed login audited (one written just before the kill and not yet answered is
    // written again by the restarted child: at least once).
    for n in 0..1000 {
        assert!(
            audit.contains(&format!("bad password {n}\"")),
            "{victim}: login {n} not audited"
        );
    }
    assert!(audit.contains("security.alert"), "{victim}");
    // The chain the restarted audit logger continued still verifies.
    let verify = Command::new(plugbus_binary())
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{victim}: {}",
        output_text(&verify)
    );
}

#[test]
fn the_audit_logger_killed_mid_run_is_restarted_and_nothing_is_lost() {
    kill_mid_run("audit-logger");
}

#[test]
fn the_auth_enhancer_killed_mid_run_is_restarted_and_nothing_is_lost() {
    kill_mid_run("auth-enhancer");
}
