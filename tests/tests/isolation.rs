//! Process isolation: the crasher fixture, unchanged, in a supervised child process. A
//! segfault, abort, `exit(42)`, hang, unbounded allocation or stack overflow costs that
//! plugin a restart, never the host; every delivery is handled once more by the restarted
//! child or dead-lettered with the reason, and the bus's account balances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use plugbus::{Bus, Category, Event, EventType, Interest, Payload, ShutdownReport};
use plugbus_host::{Isolation, PluginManager, PluginState};
use plugbus_tests::{crates, plugbus_binary, wait_until, PluginDir, Recorder};

const WAIT: Duration = Duration::from_secs(30);
const NAME: &str = "fixture-crasher";

fn enable() {
    plugbus_host::isolation::enable(plugbus_binary());
}

fn crash(n: u64, how: &str, key: &str) -> Event {
    let json = serde_json::json!({"n": n, "how": how, "key": key}).to_string();
    Event::builder(EventType::new("test.crash", Category::Custom).unwrap())
        .payload(Payload::from_json(json.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// `n` of every `test.handled`, in arrival order, and the pids that handled them.
fn handled(events: &[Event]) -> (Vec<u64>, Vec<u64>) {
    let mut ns = Vec::new();
    let mut pids = Vec::new();
    for e in events {
        if e.event_type().name() != "test.handled" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(e.data_json().unwrap()).unwrap();
        ns.push(v["n"].as_u64().unwrap());
        pids.push(v["pid"].as_u64().unwrap());
    }
    (ns, pids)
}

/// The `error` of every `plugin.error` (stage `process`) recorded.
fn process_errors(recorder: &Recorder) -> Vec<String> {
    recorder
        .events()
        .iter()
        .filter(|e| e.event_type().name() == "plugin.error")
        .map(|e| serde_json::from_slice::<serde_json::Value>(e.data_json().unwrap()).unwrap())
        .filter(|v| v["stage"] == "process")
        .map(|v| v["error"].as_str().unwrap().to_owned())
        .collect()
}

struct Setup {
    dir: PluginDir,
    bus: Bus,
    manager: PluginManager,
    recorder: Recorder,
}

async fn setup(extra: &str) -> Setup {
    enable();
    let dir = PluginDir::new();
    dir.add(crates::CRASHER);
    let markers = dir.scratch().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let heartbeat = if extra.contains("heartbeat_timeout") {
        ""
    } else {
        "heartbeat_timeout = \"1s\"\n"
    };
    let config = format!(
        r#"
[plugins]
isolation = "process"
{heartbeat}{extra}

[plugin.{NAME}.config]
marker_dir = "{}"
"#,
        markers.display()
    );
    let bus = Bus::builder().build().unwrap();
    let recorder = Recorder::subscribe(
        &bus,
        Interest::pattern("test.handled")
            .unwrap()
            .or_category(Category::Lifecycle),
        "test-recorder",
    );
    let manager = PluginManager::new(bus.clone(), dir.config(&config));
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.started, [NAME]);
    Setup {
        dir,
        bus,
        manager,
        recorder,
    }
}

async fn finish(s: &Setup) -> ShutdownReport {
    let account = tokio::time::timeout(WAIT, s.bus.shutdown(Duration::from_secs(10)))
        .await
        .expect("bus shutdown hung");
    tokio::time::timeout(WAIT, s.manager.shutdown())
        .await
        .expect("manager shutdown hung");
    assert!(account.is_balanced(), "{account:#?}");
    account
}

/// Each way of dying, once, in the middle of a stream: the host lives, the plugin.error names
/// it, the child is restarted, and every event is handled exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_crash_costs_a_restart_and_no_event() {
    let cases = [
        ("segv", "killed by SIGSEGV"),
        ("abort", "killed by SIGABRT"),
        ("exit", "exit status 42"),
        ("hang", "no heartbeat for 1s: killed"),
        ("stack", "killed by SIG"),
    ];
    for (how, said) in cases {
        let s = setup("").await;
        let pid = s.manager.status(NAME).unwrap().pid.expect("a child pid");
        assert_ne!(pid, std::process::id());
        for n in 0..40u64 {
            let how = if n == 20 { how } else { "ok" };
            s.bus.emit(crash(n, how, how)).await.unwrap();
        }
        let done = s
            .recorder
            .wait_until(WAIT, |events| handled(events).0.len() >= 40)
            .await;
        let (ns, pids) = handled(&s.recorder.events());
        assert!(done, "{how}: handled {ns:?}");
        assert_eq!(
            ns,
            (0..40).collect::<Vec<_>>(),
            "{how}: once each, in order"
        );
        let errors = process_errors(&s.recorder);
        assert_eq!(errors.len(), 1, "{how}: {errors:?}");
        assert!(errors[0].contains(said), "{how}: {errors:?}");
        assert!(errors[0].contains("restarting"), "{how}: {errors:?}");
        let status = s.manager.status(NAME).unwrap();
        assert_eq!(status.restarts, 1, "{how}");
        assert_eq!(status.state, PluginState::Running, "{how}");
        assert_eq!(status.isolation, Isolation::Process);
        assert_ne!(status.pid, Some(pid), "{how}: a new child");
        // Before the crash the first child handled them, after it the second.
        assert!(pids[..20].iter().all(|p| *p == u64::from(pid)), "{how}");
        assert!(pids[20..].iter().all(|p| *p != u64::from(pid)), "{how}");
        let account = finish(&s).await;
        assert_eq!(account.totals.failed, 0, "{how}: {account:#?}");
        assert!(s.bus.dead_letters().is_empty(), "{how}");
        drop(s.dir);
    }
}

/// A poison event that crashes every child it reaches: delivered once more, then
/// dead-lettered with the reason; the plugin goes on with the events after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_after_one_redelivery() {
    let s = setup("").await;
    s.bus.emit(crash(0, "ok", "")).await.unwrap();
    // No key: no marker, so it crashes every time.
    s.bus.emit(crash(1, "segv", "")).await.unwrap();
    s.bus.emit(crash(2, "ok", "")).await.unwrap();
    assert!(
        s.recorder
            .wait_until(WAIT, |events| handled(events).0.len() >= 2)
            .await
    );
    assert_eq!(handled(&s.recorder.events()).0, [0, 2]);
    assert_eq!(process_errors(&s.recorder).len(), 2);
    assert_eq!(s.manager.status(NAME).unwrap().restarts, 2);
    let dead = s.bus.dead_letters();
    let poison: Vec<_> = dead
        .iter()
        .filter(|d| d.subscriber.starts_with(NAME))
        .collect();
    assert_eq!(poison.len(), 1, "{dead:#?}");
    let reason = format!("{:?}", poison[0].reason);
    assert!(
        reason.contains("plugin crashed: killed by SIGSEGV"),
        "{reason}"
    );
    let data: serde_json::Value =
        serde_json::from_slice(poison[0].event.data_json().unwrap()).unwrap();
    assert_eq!(data["n"], 1);
    let account = finish(&s).await;
    assert_eq!(account.totals.dead_lettered, 1, "{account:#?}");
}

/// Past `max_restarts` in the window the plugin is failed: everything it held or had queued
/// is accounted for as failed with the reason, and the host goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_restart_budget_fails_the_plugin_and_loses_nothing() {
    let s = setup("max_restarts = 2\nrestart_window = \"60s\"").await;
    for n in 0..10u64 {
        s.bus.emit(crash(n, "exit", "")).await.unwrap();
    }
    assert!(
        wait_until(WAIT, || matches!(
            s.manager.status(NAME).unwrap().state,
            PluginState::Failed(_)
        ))
        .await,
        "{:?}",
        s.manager.status(NAME)
    );
    let status = s.manager.status(NAME).unwrap();
    let PluginState::Failed(reason) = &status.state else {
        unreachable!()
    };
    assert!(reason.contains("exit status 42"), "{reason}");
    assert!(reason.contains("2 restarts"), "{reason}");
    assert_eq!(status.restarts, 2);
    assert_eq!(status.pid, None);
    let errors = process_errors(&s.recorder);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[2].contains("the plugin is failed"), "{errors:?}");
    // Later events no longer reach it; the host is fine.
    s.bus.emit(crash(99, "ok", "")).await.unwrap();
    let account = finish(&s).await;
    assert!(handled(&s.recorder.events()).0.is_empty());
    // Each of the ten: failed with the reason and dead-lettered (two of them after crashing
    // a child, the rest when the plugin was failed), never lost.
    assert_eq!(account.totals.dead_lettered, 10, "{account:#?}");
    let dead = s.bus.dead_letters();
    assert_eq!(dead.len(), 10);
    assert!(
        dead.iter()
            .all(|d| format!("{:?}", d.reason).contains("plugin crashed: exit status 42")),
        "{dead:#?}"
    );
}

/// `[plugin.NAME.limits] memory_mib`: an allocation without bound ends in the child, which
/// is restarted; the host's memory is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_contains_an_unbounded_allocation() {
    let s = setup(&format!(
        "\n[plugin.{NAME}.limits]\nmemory_mib = 512\nopen_files = 64\n"
    ))
    .await;
    s.bus.emit(crash(0, "alloc", "alloc")).await.unwrap();
    s.bus.emit(crash(1, "ok", "")).await.unwrap();
    assert!(
        s.recorder
            .wait_until(WAIT, |events| handled(events).0.len() >= 2)
            .await,
        "{:?}",
        process_errors(&s.recorder)
    );
    // Redelivered to the new child, which finds the marker and handles it.
    assert_eq!(handled(&s.recorder.events()).0, [0, 1]);
    let errors = process_errors(&s.recorder);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("killed by SIG"), "{errors:?}");
    finish(&s).await;
}

/// `cpu_seconds`: a plugin that burns CPU is killed by the kernel (SIGXCPU) and restarted,
/// before its heartbeat would have been missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_ends_a_spinning_plugin() {
    let s = setup(&format!(
        "heartbeat_timeout = \"30s\"\n[plugin.{NAME}]\nmax_restarts = 3\n[plugin.{NAME}.limits]\ncpu_seconds = 1\n"
    ))
    .await;
    s.bus.emit(crash(0, "spin", "spin")).await.unwrap();
    assert!(
        s.recorder
            .wait_until(WAIT, |events| handled(events).0 == [0])
            .await,
        "{:?}",
        process_errors(&s.recorder)
    );
    let errors = process_errors(&s.recorder);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("killed by SIGXCPU"), "{errors:?}");
    finish(&s).await;
}

/// The child holds nothing of the host's: only its channel (stdin), /dev/null (stdout),
/// stderr, and what it opened itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_inherits_no_descriptor_but_its_channel_and_stderr() {
    let s = setup("").await;
    let canary = s.dir.scratch().join("canary");
    let _open = std::fs::File::create(&canary).unwrap();
    // A restart makes a child after the canary was opened.
    s.bus.emit(crash(0, "exit", "once")).await.unwrap();
    assert!(
        s.recorder
            .wait_until(WAIT, |events| !handled(events).0.is_empty())
            .await
    );
    let pid = s.manager.status(NAME).unwrap().pid.unwrap();
    let mut targets = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let fd: u32 = entry.file_name().to_str().unwrap().parse().unwrap();
        if let Ok(target) = std::fs::read_link(entry.path()) {
            targets.insert(fd, target.display().to_string());
        }
    }
    assert!(targets[&0].starts_with("socket:"), "{targets:?}");
    assert_eq!(targets[&1], "/dev/null", "{targets:?}");
    for (fd, target) in &targets {
        assert!(
            !target.contains("canary") && !target.contains(".so"),
            "fd {fd} -> {target}: {targets:?}"
        );
    }
    finish(&s).await;
}

/// Stop, start again, reload and unload work on an isolated plugin as on any other, and a
/// stopped plugin's child is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_calls_reach_the_child() {
    let s = setup("").await;
    let pid = s.manager.status(NAME).unwrap().pid.unwrap();
    s.manager.stop(NAME).await.unwrap();
    let status = s.manager.status(NAME).unwrap();
    assert_eq!(status.state, PluginState::Stopped);
    assert!(
        wait_until(WAIT, || !std::path::Path::new(&format!("/proc/{pid}"))
            .exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .await,
        "the stopped child {pid} is still there"
    );
    let name = s.manager.reload(NAME).await.unwrap();
    assert_eq!(name, NAME);
    let status = s.manager.status(NAME).unwrap();
    assert_eq!(status.state, PluginState::Running);
    assert_ne!(status.pid, Some(pid));
    s.bus.emit(crash(7, "ok", "")).await.unwrap();
    assert!(
        s.recorder
            .wait_until(WAIT, |events| handled(events).0 == [7])
            .await
    );
    s.manager.unload(NAME).await.unwrap();
    finish(&s).await;
}
