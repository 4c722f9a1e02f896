//! Loads the built `cdylib` the way the host does and drives it across the real boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use abi_stable::library::lib_header_from_path;
use abi_stable::std_types::{RResult, RSlice, RStr};
use plugbus_plugin_api::{
    abi_compatible, host_box, AbiHost, EventView, KeyValue, OwnedEvent, PluginMod_Ref, ABI_VERSION,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn library() -> PathBuf {
    let name = format!(
        "{}plugbus_audit_logger{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent();
    while let Some(d) = dir {
        if d.join(&name).exists() {
            return d.join(&name);
        }
        dir = d.parent();
    }
    panic!("{name} not found above {}", exe.display());
}

struct RecordingHost(Arc<Mutex<Vec<String>>>);

impl AbiHost for RecordingHost {
    fn publish(&self, _: OwnedEvent) -> RResult<(), plugbus_plugin_api::PublishRefusal> {
        RResult::RErr(plugbus_plugin_api::PublishRefusal::new(
            plugbus_plugin_api::RefusalKind::Closed,
            "not in this test",
        ))
    }
    fn log(&self, level: u8, _: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, KeyValue<'_>>) {
        let fields: Vec<String> = fields
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("{level} {message} {}", fields.join(" ")));
    }
}

#[test]
fn the_shared_library_loads_and_records() {
    let module = lib_header_from_path(&library())
        .unwrap()
        .init_root_module::<PluginMod_Ref>()
        .unwrap();
    let info = (module.info())();
    assert_eq!(info.name.as_str(), "audit-logger");
    abi_compatible(ABI_VERSION, (info.abi_major, info.abi_minor)).unwrap();

    let dir = std::env::temp_dir().join(format!("plugbus-audit-so-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("audit.jsonl");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let config = serde_json::json!({ "path": path }).to_string();
    let mut plugin = (module.new())(
        host_box(RecordingHost(Arc::clone(&logs))),
        config.as_str().into(),
    )
    .unwrap();
    let subs = plugin.subscriptions().unwrap();
    assert_eq!(subs.len(), 1);
    plugin.start().unwrap();

    let meta = [KeyValue::new("request_id", "r-9")];
    let view = EventView {
        id: [7; 16],
        event_type: "user.login".into(),
        category: 2,
        source: "app".into(),
        origin: "input:stdin:4".into(),
        timestamp_unix_nanos: 1_700_000_000_000_000_000,
        schema_version: 1,
        payload_json: br#"{"user_id":"alice","password":"pw"}"#.as_slice().into(),
        metadata: meta.as_slice().into(),
    };
    plugin.handle(0, &view).unwrap();
    plugin.stop().unwrap();
    drop(plugin);

    assert_eq!(plugbus_audit_logger::verify_chain(&path).unwrap(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""password":"[REDACTED]""#), "{text}");
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter().any(|l| l.starts_with("3 audit log open")),
        "{logs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
