//! Broken and refused plugin files: each gets its own error, and the rest load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use plugbus::Bus;
use plugbus_host::{
    inspect, LoadError, LoadErrorKind, ManagerError, PluginManager, PluginState, TrustErrorKind,
};
use plugbus_tests::{built_library, crates, library_file_name, PluginDir};

fn load_errors(report: &plugbus_host::LoadReport) -> Vec<&LoadError> {
    report
        .errors
        .iter()
        .map(|e| match e {
            ManagerError::Load(load) => load,
            other => panic!("not a load error: {other}"),
        })
        .collect()
}

fn error_for<'a>(errors: &[&'a LoadError], path: &PathBuf) -> &'a LoadError {
    errors
        .iter()
        .find(|e| &e.path == path)
        .unwrap_or_else(|| panic!("no error for {}: {errors:?}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_file_gets_its_own_error_and_the_rest_load() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    // Random bytes named like a library.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let random = dir.write("librandom.so", &junk, 0o644);
    // A real plugin cut in half.
    let whole = std::fs::read(built_library(crates::AUTH_ENHANCER)).unwrap();
    let truncated = dir.write("libtruncated.so", &whole[..whole.len() / 2], 0o644);
    // A real shared library that is not a plugin.
    let no_root = dir.add(crates::NO_ROOT);
    // A group-writable copy of a good plugin.
    let writable = dir.write(
        "libwritable.so",
        &std::fs::read(built_library(crates::FAILER)).unwrap(),
        0o664,
    );
    // Not a *.so: ignored.
    dir.write("README.txt", b"not a plugin", 0o644);

    let bus = Bus::builder().build().unwrap();
    let audit = dir.scratch().join("audit.jsonl");
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(&format!(
            "[plugin.audit-logger]\nconfig = {{ path = \"{}\" }}\n",
            audit.display()
        )),
    );
    let report = manager.load_all().await;
    assert_eq!(report.started, ["audit-logger", "auth-enhancer"]);
    let errors = load_errors(&report);
    assert_eq!(errors.len(), 4, "{errors:?}");

    let e = error_for(&errors, &random);
    assert!(matches!(e.kind, LoadErrorKind::NotALibrary), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "plugin '{}': not a shared library (no ELF or Mach-O header)",
            random.display()
        )
    );
    let e = error_for(&errors, &truncated);
    assert!(matches!(e.kind, LoadErrorKind::Corrupt { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "plugin '{}': truncated or corrupt shared library: ",
            truncated.display()
        )),
        "{e}"
    );
    let e = error_for(&errors, &no_root);
    assert!(matches!(e.kind, LoadErrorKind::NoRootModule { .. }), "{e}");
    assert!(e.to_string().contains("no plugin root module"), "{e}");
    let e = error_for(&errors, &writable);
    assert!(
        matches!(
            e.kind,
            LoadErrorKind::Untrusted(TrustErrorKind::FileWritable { mode: 0o664 })
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "plugin '{}': refused by trust policy: file is writable by group or others (mode 0664)",
            writable.display()
        )
    );
    assert!(manager
        .plugins()
        .iter()
        .all(|p| p.state == PluginState::Running));
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unpinned_files_declaring_one_name_are_both_refused_and_a_pin_decides() {
    let dir = PluginDir::new();
    let first = dir.add_as(crates::FAILER, "libfailer_a.so");
    let second = dir.add_as(crates::FAILER, "libfailer_b.so");
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = manager.load_all().await;
    // File order never decides: neither is loaded, and the error names both.
    assert!(report.started.is_empty(), "{:?}", report.started);
    let errors = load_errors(&report);
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0].kind {
        LoadErrorKind::AmbiguousName { name, files } => {
            assert_eq!(name, "fixture-failer");
            assert_eq!(files, &[first.clone(), second.clone()]);
        }
        other => panic!("{other:?}"),
    }
    let text = errors[0].to_string();
    assert!(
        text.contains("none of them is loaded") && text.contains("libfailer_b.so"),
        "{text}"
    );
    manager.shutdown().await;

    // Pinned by name: the impostor (other bytes, same name) fails its pin, the genuine loads.
    let mut impostor = std::fs::read(&first).unwrap();
    impostor.extend_from_slice(b"impostor");
    std::fs::write(&second, &impostor).unwrap();
    let pin = plugbus_host::inspect(&first).sha256.unwrap();
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(&format!("[plugin.fixture-failer]\nsha256 = \"{pin}\"\n")),
    );
    let report = manager.load_all().await;
    assert_eq!(report.started, ["fixture-failer"]);
    let errors = load_errors(&report);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, second);
    assert!(
        matches!(&errors[0].kind, LoadErrorKind::Impostor { name, genuine, .. }
            if name == "fixture-failer" && *genuine == first),
        "{}",
        errors[0]
    );
    // The message names both files: the refused one and the pinned one.
    let text = errors[0].to_string();
    assert!(
        text.contains("libfailer_b.so") && text.contains("libfailer_a.so"),
        "{text}"
    );
    assert!(
        text.starts_with(&format!(
            "plugin '{}': refused by trust policy",
            second.display()
        )),
        "{text}"
    );
    // Loading the genuine file again while it runs is a duplicate.
    let err = manager.load(&first).await.unwrap_err();
    assert!(
        matches!(&err, ManagerError::Load(e) if matches!(e.kind, LoadErrorKind::DuplicateName { .. })),
        "{err}"
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_plugin_directories_are_refused() {
    let dir = PluginDir::new();
    let outside = dir.scratch().join(library_file_name(crates::FAILER));
    std::fs::copy(built_library(crates::FAILER), &outside).unwrap();
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(bus, dir.config(""));
    let err = manager.load_and_start(&outside).await.unwrap_err();
    assert!(
        matches!(&err, ManagerError::Load(e)
            if matches!(e.kind, LoadErrorKind::Untrusted(TrustErrorKind::OutsideDirectories { .. }))),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_plugin_is_found_but_not_loaded() {
    let dir = PluginDir::new();
    dir.add(crates::FAILER);
    dir.add(crates::REENTRANT);
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(
        bus,
        dir.config("[plugin.fixture-failer]\nenabled = false\n"),
    );
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.started, ["fixture-reentrant"]);
    assert_eq!(report.disabled.len(), 1);
    assert_eq!(report.disabled[0].0, "fixture-failer");
    assert_eq!(manager.plugins().len(), 1);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_pin_is_enforced() {
    let dir = PluginDir::new();
    dir.add(crates::FAILER);
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(
        bus,
        dir.config(&format!(
            "[plugin.fixture-failer]\nsha256 = \"{}\"\n",
            "ab".repeat(32)
        )),
    );
    let report = manager.load_all().await;
    let errors = load_errors(&report);
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(
            &errors[0].kind,
            LoadErrorKind::Untrusted(TrustErrorKind::PinMismatch { pin, .. }) if pin == "fixture-failer"
        ),
        "{}",
        errors[0]
    );
    assert!(manager.plugins().is_empty());
}

#[test]
fn inspection_reports_each_plugin_without_constructing_it() {
    let dir = PluginDir::new();
    let good = dir.add(crates::AUTH_ENHANCER);
    let no_root = dir.add(crates::NO_ROOT);
    let inspection = inspect(&good);
    assert!(inspection.is_compatible(), "{:?}", inspection.result);
    let meta = inspection.meta.unwrap();
    assert_eq!(meta.name, "auth-enhancer");
    assert_eq!(meta.abi, plugbus_plugin_api::ABI_VERSION);
    assert!(meta.unwind, "built with panic = \"unwind\"");
    assert_eq!(inspection.sha256.unwrap().len(), 64);
    let inspection = inspect(&no_root);
    assert!(!inspection.is_compatible());
    assert!(matches!(
        inspection.result.unwrap_err().kind,
        LoadErrorKind::NoRootModule { .. }
    ));
}
