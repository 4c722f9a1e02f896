//! Lifecycle events, plugin logs in the host's tracing, reload and hot-plug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plugbus::payload::{PluginRef, UserLogin};
use plugbus::{Bus, Category, Event, Interest};
use plugbus_host::{PluginManager, PluginState};
use plugbus_tests::{
    built_library, capture_logs, crates, library_file_name, wait_until, PluginDir, Recorder,
};

const WAIT: Duration = Duration::from_secs(10);

/// `(type, plugin name)` of each lifecycle or system event recorded.
fn lifecycle(recorder: &Recorder) -> Vec<(String, String)> {
    recorder
        .events()
        .iter()
        .map(|e| {
            let data: serde_json::Value = serde_json::from_slice(e.data_json().unwrap()).unwrap();
            let name = data
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_owned();
            (e.event_type().name().to_owned(), name)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_arrive_in_order() {
    let dir = PluginDir::new();
    dir.write("libbroken.so", b"garbage", 0o644);
    dir.add(crates::FAILER);
    dir.add(crates::REENTRANT);
    let bus = Bus::builder().build().unwrap();
    let recorder = Recorder::subscribe(
        &bus,
        Interest::category(Category::Lifecycle).or_category(Category::System),
        "test-lifecycle",
    );
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = manager.load_all().await;
    assert_eq!(report.started, ["fixture-failer", "fixture-reentrant"]);
    manager.stop("fixture-failer").await.unwrap();
    assert_eq!(
        manager.status("fixture-failer").unwrap().state,
        PluginState::Stopped
    );
    manager.unload("fixture-failer").await.unwrap();
    let new_name = manager.reload("fixture-reentrant").await.unwrap();
    assert_eq!(new_name, "fixture-reentrant");
    manager.shutdown().await;

    let expected = pairs(&[
        ("plugin.error", ""),
        ("plugin.loaded", "fixture-failer"),
        ("plugin.loaded", "fixture-reentrant"),
        ("plugin.started", "fixture-failer"),
        ("plugin.started", "fixture-reentrant"),
        ("system.startup", ""),
        ("plugin.stopped", "fixture-failer"),
        ("plugin.unloaded", "fixture-failer"),
        ("plugin.stopped", "fixture-reentrant"),
        ("plugin.unloaded", "fixture-reentrant"),
        ("plugin.loaded", "fixture-reentrant"),
        ("plugin.started", "fixture-reentrant"),
        ("plugin.stopped", "fixture-reentrant"),
        ("plugin.unloaded", "fixture-reentrant"),
    ]);
    assert!(
        recorder
            .wait_until(WAIT, |e| e.len() == expected.len())
            .await
    );
    assert_eq!(lifecycle(&recorder), expected);

    let events = recorder.events();
    let error: plugbus::payload::PluginError = events[0]
        .data::<plugbus::payload::PluginError>()
        .unwrap()
        .into_owned();
    assert_eq!(
        error.plugin.path,
        dir.path().join("libbroken.so").display().to_string()
    );
    assert_eq!(error.stage, "load");
    assert!(
        error.error.contains("not a shared library"),
        "{}",
        error.error
    );
    let loaded: PluginRef = events[1]
        .data::<plugbus::payload::PluginLoaded>()
        .unwrap()
        .into_owned()
        .plugin;
    assert_eq!(loaded.version, "0.1.0");
    assert_eq!(
        loaded.path,
        dir.path()
            .join(library_file_name(crates::FAILER))
            .display()
            .to_string()
    );
    let startup = events[5]
        .data::<plugbus::payload::SystemStartup>()
        .unwrap()
        .into_owned();
    assert_eq!(startup.pid, std::process::id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_tracing_reaches_the_host_subscriber() {
    let logs = capture_logs();
    let dir = PluginDir::new();
    dir.add(crates::AUTH_ENHANCER);
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(
        bus.clone(),
        dir.config("[plugin.auth-enhancer]\nconfig = { max_failures = 7 }\n"),
    );
    assert!(manager.load_all().await.is_ok());
    let target = "plugbus::plugin::auth-enhancer";
    assert!(
        wait_until(WAIT, || !logs.lines_for(target).is_empty()).await,
        "nothing logged under {target}"
    );
    let lines = logs.lines_for(target);
    let started = lines
        .iter()
        .find(|l| l.message.starts_with("auth enhancer started"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(started.level, tracing::Level::INFO);
    // The plugin's fields arrive as fields, its module path with them.
    assert_eq!(started.field("max_failures"), Some("7"), "{started:?}");
    assert_eq!(
        started.field("plugin.module"),
        Some("plugbus_auth_enhancer"),
        "{started:?}"
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_makes_a_new_instance_from_a_private_copy() {
    let dir = PluginDir::new();
    let path = dir.add(crates::REENTRANT);
    let bus = Bus::builder().build().unwrap();
    let echoes = Recorder::subscribe(&bus, Interest::pattern("test.echo").unwrap(), "echoes");
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    manager.load_all().await;
    let before = manager.status("fixture-reentrant").unwrap();
    // Mapped from a private copy, never from the plugin folder.
    assert_ne!(before.mapped, std::fs::canonicalize(&path).unwrap());
    assert!(before.mapped.to_string_lossy().contains("plugbus-plugin-"));

    manager.reload("fixture-reentrant").await.unwrap();
    let after = manager.status("fixture-reentrant").unwrap();
    assert_eq!(after.state, PluginState::Running);
    assert_eq!(after.path, path);
    assert_ne!(after.mapped, before.mapped);
    assert!(after.mapped.starts_with(std::env::temp_dir()));
    assert!(after.mapped.to_string_lossy().contains("plugbus-plugin-"));
    assert!(after.instance > before.instance);
    assert_eq!(after.counters.published, 0);

    // The new instance works.
    bus.emit(
        Event::new(UserLogin {
            user_id: "a".into(),
            ..Default::default()
        })
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(echoes.wait_until(WAIT, |e| e.len() == 1).await);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_plug_loads_reloads_and_unloads() {
    let dir = PluginDir::new();
    dir.add(crates::FAILER);
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config("[plugins]\nwatch = true\n"));
    assert!(manager.load_all().await.is_ok());
    let watcher = manager.watch_if_configured().unwrap().unwrap();
    assert_eq!(watcher.directories(), [dir.path().to_path_buf()]);

    // Added: written beside, then renamed in (atomically, as plugin files should be).
    let file = library_file_name(crates::REENTRANT);
    let staging = dir.scratch().join(&file);
    std::fs::copy(built_library(crates::REENTRANT), &staging).unwrap();
    let target = dir.path().join(&file);
    std::fs::rename(&staging, &target).unwrap();
    assert!(
        wait_until(WAIT, || manager
            .status("fixture-reentrant")
            .is_some_and(|s| s.state == PluginState::Running))
        .await,
        "{:?}",
        manager.plugins()
    );
    let first = manager.status("fixture-reentrant").unwrap();

    // Changed: new content (trailing bytes do not matter to the loader).
    let mut bytes = std::fs::read(built_library(crates::REENTRANT)).unwrap();
    bytes.extend_from_slice(b"changed");
    std::fs::write(&staging, &bytes).unwrap();
    std::fs::rename(&staging, &target).unwrap();
    assert!(
        wait_until(WAIT, || manager.status("fixture-reentrant").is_some_and(
            |s| s.instance != first.instance && s.state == PluginState::Running
        ))
        .await,
        "{:?}",
        manager.plugins()
    );
    let second = manager.status("fixture-reentrant").unwrap();
    assert_ne!(second.sha256, first.sha256);
    assert_ne!(second.mapped, first.mapped);

    // Removed.
    std::fs::remove_file(&target).unwrap();
    assert!(
        wait_until(WAIT, || manager.status("fixture-reentrant").is_none()).await,
        "{:?}",
        manager.plugins()
    );
    assert!(manager.status("fixture-failer").is_some());
    drop(watcher);
    manager.shutdown().await;
}
