//! Admission of plugin files, attacked: files and folders owned by someone else, writable
//! parents, FIFOs and huge sparse files named `*.so`, and a loaded plugin overwritten in place.
//! A C library whose constructor writes a marker file proves whether any code of a refused file
//! ran. Tests that need a second user or a C compiler say so and skip where the machine has
//! neither.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use plugbus::payload::UserLoginFailed;
use plugbus::{Bus, Event, EventType};
use plugbus_host::{LoadErrorKind, ManagerError, PluginManager, TrustErrorKind};
use plugbus_tests::{crates, library_file_name, PluginDir, Recorder};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Builds a shared library whose constructor creates `marker`: if it is ever mapped, the file
/// appears. `None` when there is no C compiler.
fn constructor_library(dir: &Path, marker: &Path) -> Option<PathBuf> {
    let src = dir.join("ctor.c");
    fs::write(
        &src,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {{ \
             FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = dir.join("libctor.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    status.success().then_some(out)
}

fn untrusted(err: &ManagerError) -> &TrustErrorKind {
    match err {
        ManagerError::Load(e) => match &e.kind {
            LoadErrorKind::Untrusted(kind) => kind,
            other => panic!("expected a trust refusal, got {other:?}"),
        },
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_owned_by_another_user_is_refused_before_any_of_its_code_runs() {
    if !is_root() {
        eprintln!("skipped: needs root to give a file to another user");
        return;
    }
    let dir = PluginDir::new();
    let marker = dir.scratch().join("constructor-ran");
    let Some(lib) = constructor_library(dir.scratch(), &marker) else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let path = dir.path().join("libctor.so");
    fs::copy(&lib, &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    rustix::fs::chown(&path, Some(rustix::process::Uid::from_raw(NOBODY)), None).unwrap();

    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = manager.load_all().await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        matches!(
            untrusted(&report.errors[0]),
            TrustErrorKind::ForeignOwner { owner: NOBODY, .. }
        ),
        "{:?}",
        report.errors[0]
    );
    assert!(!marker.exists(), "the refused library's constructor ran");

    // A hardlink to it, under a name of our own, is the same inode: refused the same way.
    fs::remove_file(&path).unwrap();
    let foreign = dir.scratch().join("foreign.so");
    fs::copy(&lib, &foreign).unwrap();
    rustix::fs::chown(&foreign, Some(rustix::process::Uid::from_raw(NOBODY)), None).unwrap();
    fs::hard_link(&foreign, dir.path().join("liblinked.so")).unwrap();
    let report = manager.load_all().await;
    assert!(
        matches!(
            untrusted(&report.errors[0]),
            TrustErrorKind::ForeignOwner { .. }
        ),
        "{:?}",
        report.errors
    );
    assert!(!marker.exists());
    manager.shutdown().await;
    bus.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_folder_owned_by_another_user_or_under_a_writable_parent_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to give a folder to another user");
        return;
    }
    let dir = PluginDir::new();
    dir.add(crates::FAILER);
    let bus = Bus::builder().build().unwrap();

    rustix::fs::chown(
        dir.path(),
        Some(rustix::process::Uid::from_raw(NOBODY)),
        None,
    )
    .unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = manager.load_all().await;
    assert!(
        matches!(
            untrusted(&report.errors[0]),
            TrustErrorKind::ForeignOwner { owner: NOBODY, .. }
        ),
        "{:?}",
        report.errors
    );
    rustix::fs::chown(dir.path(), Some(rustix::process::Uid::from_raw(0)), None).unwrap();

    // A parent writable by everyone, and not sticky: anyone could swap the plugin folder.
    fs::set_permissions(dir.scratch(), fs::Permissions::from_mode(0o777)).unwrap();
    let report = manager.load_all().await;
    assert!(
        matches!(
            untrusted(&report.errors[0]),
            TrustErrorKind::DirectoryWritable { .. }
        ),
        "{:?}",
        report.errors
    );
    // Sticky, like /tmp, with the folder below it ours: accepted.
    fs::set_permissions(dir.scratch(), fs::Permissions::from_mode(0o1777)).unwrap();
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    fs::set_permissions(dir.scratch(), fs::Permissions::from_mode(0o700)).unwrap();
    manager.shutdown().await;
    bus.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_and_huge_sparse_files_named_so_are_refused_at_once_and_the_rest_load() {
    let dir = PluginDir::new();
    dir.add(crates::FAILER);
    let fifo = dir.path().join("libfifo.so");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let sparse = dir.path().join("libsparse.so");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(64 * 1024 * 1024 * 1024).unwrap();
    fs::set_permissions(&sparse, fs::Permissions::from_mode(0o644)).unwrap();

    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = tokio::time::timeout(Duration::from_secs(30), manager.load_all())
        .await
        .expect("a FIFO or a sparse file hung the loader");
    assert_eq!(report.started, ["fixture-failer"]);
    let kinds: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(
        kinds
            .iter()
            .any(|k| k.contains("libfifo.so") && k.contains("not a regular file")),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| k.contains("libsparse.so") && k.contains("more than the limit")),
        "{kinds:?}"
    );
    manager.shutdown().await;
    bus.shutdown(Duration::from_secs(1)).await;
}

/// `cp` over a loaded plugin rewrites the file in place (same inode): the host maps a private
/// copy, so the running code never sees it.
async fn overwrite_in_place_keeps_the_host_alive(watch: bool) {
    let dir = PluginDir::new();
    let path = dir.add(crates::AUTH_ENHANCER);
    let bus = Bus::builder().build().unwrap();
    let alerts = Recorder::subscribe(&bus, EventType::SECURITY_ALERT, "alerts");
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(&format!(
            "[plugins]\nwatch = {watch}\n[plugin.auth-enhancer]\nconfig = {{ max_failures = 3 }}\n"
        )),
    );
    assert!(manager.load_all().await.is_ok());
    let _watcher = watch.then(|| manager.watch().unwrap());
    let fail = |user: &str| {
        Event::new(UserLoginFailed {
            user_id: user.into(),
            ip: "192.0.2.1".into(),
            ..Default::default()
        })
        .unwrap()
    };
    bus.emit(fail("a")).await.unwrap();
    // In place, as cp does: truncate and write other bytes into the same inode.
    let other = fs::read(plugbus_tests::built_library(crates::FAILER)).unwrap();
    let before = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    fs::write(&path, &other).unwrap();
    let after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    assert_eq!(before, after, "the overwrite must be in place");
    // The plugin that was loaded keeps running its own code, undisturbed.
    for user in ["b", "c", "d"] {
        bus.emit(fail(user)).await.unwrap();
    }
    assert!(
        alerts
            .wait_until(Duration::from_secs(10), |e| !e.is_empty())
            .await
    );
    assert!(manager.settle(Duration::from_secs(10)).await);
    let _ = library_file_name(crates::FAILER);
    manager.shutdown().await;
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_over_a_loaded_plugin_does_not_crash_the_host() {
    overwrite_in_place_keeps_the_host_alive(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_over_a_loaded_plugin_with_hot_plug_does_not_crash_the_host() {
    overwrite_in_place_keeps_the_host_alive(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_plugin_table_is_an_error_that_lists_the_plugins_found() {
    let dir = PluginDir::new();
    dir.add(crates::FAILER);
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(
            "[plugin.fixture-falier]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
        ),
    );
    let report = manager.load_all().await;
    assert_eq!(report.started, ["fixture-failer"]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let text = report.errors[0].to_string();
    assert!(
        text.contains("[plugin.fixture-falier]") && text.contains("found: fixture-failer"),
        "{text}"
    );
    manager.shutdown().await;
    bus.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_declaring_too_many_subscriptions_is_refused_and_the_host_goes_on() {
    let dir = PluginDir::new();
    dir.add(crates::ECHO);
    dir.add(crates::FAILER);
    let types: Vec<String> = (0..5_000).map(|n| format!("\"test.t{n}\"")).collect();
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(&format!(
            "[plugin.fixture-echo]\nconfig = {{ each = true, publish = \"test.x\", on = [{}] }}\n",
            types.join(",")
        )),
    );
    let report = tokio::time::timeout(Duration::from_secs(60), manager.load_all())
        .await
        .expect("registration hung the host");
    assert_eq!(report.started, ["fixture-failer"]);
    let text = report
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("declares 5000 subscriptions, more than the limit of 1024"),
        "{text}"
    );
    manager.shutdown().await;
    bus.shutdown(Duration::from_secs(1)).await;
}
