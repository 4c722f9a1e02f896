//! Interface 0.4 for plugin authors, through the real host and real `.so` files: named
//! subscriptions with a handler each, a declared config schema checked before `new`, and
//! reconfiguration without a reload, in process and in a child process; and through the real
//! binary: `plugins inspect` shows the schema, `plugins check` refuses a table that fails it,
//! and a changed config file reaches the running plugin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plugbus::{Bus, Category, Event, EventType, Interest, Payload};
use plugbus_host::{LoadErrorKind, ManagerError, PluginManager, PluginState, Reconfigured};
use plugbus_tests::{crates, output_text, plugbus_binary, PluginDir, Recorder};
use serde_json::{json, Value};

const NAME: &str = "fixture-routed";
const WAIT: Duration = Duration::from_secs(20);

fn login(user: &str) -> Event {
    let json = json!({ "user_id": user }).to_string();
    Event::builder(EventType::USER_LOGIN)
        .payload(Payload::from_json(json.as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn logout(user: &str) -> Event {
    let json = json!({ "user_id": user }).to_string();
    Event::builder(EventType::USER_LOGOUT)
        .payload(Payload::from_json(json.as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn seen(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event_type().name() == "routed.seen")
        .map(|e| serde_json::from_slice(e.data_json().unwrap()).unwrap())
        .collect()
}

struct Setup {
    _dir: PluginDir,
    bus: Bus,
    manager: PluginManager,
    recorder: Recorder,
}

async fn setup(isolation: &str) -> Setup {
    plugbus_host::isolation::enable(plugbus_binary());
    let dir = PluginDir::new();
    dir.add(crates::ROUTED);
    let bus = Bus::builder().build().unwrap();
    let recorder = Recorder::subscribe(
        &bus,
        Interest::pattern("routed.*")
            .unwrap()
            .or_category(Category::Lifecycle),
        "test-recorder",
    );
    let config = format!(
        "[plugins]\nisolation = \"{isolation}\"\n\n[plugin.{NAME}.config]\ntag = \"first\"\n"
    );
    let manager = PluginManager::new(bus.clone(), dir.config(&config));
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.started, [NAME]);
    Setup {
        _dir: dir,
        bus,
        manager,
        recorder,
    }
}

/// Publishes a login and waits for the plugin's answer to it: the `routed.seen` it caused.
async fn answer_to(s: &Setup, event: Event) -> Value {
    let before = seen(&s.recorder.events()).len();
    s.bus.publish(event).await.unwrap();
    assert!(
        s.recorder
            .wait_until(WAIT, |e| seen(e).len() > before)
            .await,
        "no routed.seen"
    );
    seen(&s.recorder.events())[before].clone()
}

async fn named_handlers_and_reconfigure(isolation: &str) {
    let s = setup(isolation).await;

    // Each subscription's own handler ran, and the plugin saw the subscription's name.
    let first = answer_to(&s, login("alice")).await;
    assert_eq!(first["subscription"], "logins", "{isolation}: {first}");
    assert_eq!(first["handler"], "login");
    assert_eq!(first["tag"], "first");
    let out = answer_to(&s, logout("alice")).await;
    assert_eq!(out["subscription"], "logouts", "{isolation}: {out}");
    assert_eq!(out["handler"], "logout");
    let instance = first["instance"].clone();

    // The host labels the subscriptions by name.
    let names: Vec<String> = s
        .bus
        .stats()
        .subscriptions
        .iter()
        .map(|sub| sub.name.clone())
        .collect();
    assert!(
        names.iter().any(|n| n == "fixture-routed/logins")
            && names.iter().any(|n| n == "fixture-routed/logouts"),
        "{isolation}: {names:?}"
    );
    let status = s.manager.status(NAME).unwrap();
    assert!(
        status
            .subscriptions
            .iter()
            .any(|sub| sub.contains("logins")),
        "{status:?}"
    );

    // In place: same instance, its count kept, the new tag.
    let r = s
        .manager
        .reconfigure(NAME, json!({"tag": "second"}))
        .await
        .unwrap();
    assert_eq!(r, Reconfigured::Applied, "{isolation}");
    let after = answer_to(&s, login("bob")).await;
    assert_eq!(after["tag"], "second", "{isolation}: {after}");
    assert_eq!(
        after["instance"], instance,
        "{isolation}: not the same instance"
    );
    assert_eq!(after["seen"], 3, "{isolation}: {after}");
    // The same table again changes nothing.
    let r = s
        .manager
        .reconfigure(NAME, json!({"tag": "second"}))
        .await
        .unwrap();
    assert_eq!(r, Reconfigured::Unchanged);

    // Tables that fail the schema never reach the plugin, and every bad key is named.
    let err = s
        .manager
        .reconfigure(NAME, json!({"weight": 300, "colour": "red", "tag": 7}))
        .await
        .unwrap_err();
    let ManagerError::Load(load) = &err else {
        panic!("{err}")
    };
    let LoadErrorKind::InvalidConfig { problems, .. } = &load.kind else {
        panic!("{err}")
    };
    assert_eq!(
        problems,
        &[
            "key 'tag': expected a string, got the number 7".to_owned(),
            "key 'weight': expected an integer from 0 to 255, got the number 300".to_owned(),
            "key 'colour': unknown key (known: tag, weight, reload, refuse)".to_owned(),
        ],
        "{isolation}"
    );
    // The plugin's own check, past the schema, refuses it in its words; it keeps the old one.
    let err = s
        .manager
        .reconfigure(NAME, json!({"tag": "x", "weight": 0}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ManagerError::Reconfigure { .. })
            && err.to_string().contains("must be 1 to 100"),
        "{isolation}: {err}"
    );
    let kept = answer_to(&s, login("carol")).await;
    assert_eq!(kept["tag"], "second", "{isolation}: {kept}");
    assert_eq!(s.manager.status(NAME).unwrap().state, PluginState::Running);

    // A plugin that asks for a reload gets a new instance built from the new table.
    let r = s
        .manager
        .reconfigure(NAME, json!({"tag": "third", "reload": true}))
        .await
        .unwrap();
    assert_eq!(r, Reconfigured::Reloaded, "{isolation}");
    let reloaded = answer_to(&s, login("dave")).await;
    assert_eq!(reloaded["tag"], "third", "{isolation}: {reloaded}");
    assert_ne!(
        reloaded["instance"], instance,
        "{isolation}: same instance after reload"
    );
    assert_eq!(reloaded["seen"], 1, "{isolation}: {reloaded}");

    // Deliveries racing a reconfiguration are all handled, none lost.
    for n in 0..200 {
        s.bus.publish(login(&format!("u{n}"))).await.unwrap();
        if n == 100 {
            s.manager
                .reconfigure(NAME, json!({"tag": "fourth", "reload": true, "weight": 2}))
                .await
                .unwrap();
        }
    }
    let account = tokio::time::timeout(WAIT, s.bus.shutdown(Duration::from_secs(10)))
        .await
        .unwrap();
    s.manager.shutdown().await;
    assert!(account.is_balanced(), "{isolation}: {account:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_handlers_schema_and_reconfigure_in_process() {
    named_handlers_and_reconfigure("in_process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_handlers_schema_and_reconfigure_in_a_child_process() {
    named_handlers_and_reconfigure("process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_fails_the_schema_is_refused_before_new() {
    let dir = PluginDir::new();
    dir.add(crates::ROUTED);
    let bus = Bus::builder().build().unwrap();
    let recorder = Recorder::subscribe(&bus, Category::Lifecycle, "test-recorder");
    let config = format!("[plugin.{NAME}.config]\nweight = \"heavy\"\n");
    let manager = PluginManager::new(bus.clone(), dir.config(&config));
    let report = manager.load_all().await;
    assert!(report.started.is_empty());
    let text = report.errors[0].to_string();
    assert!(
        text.contains("configuration of 'fixture-routed' does not match its schema: key 'weight': expected an integer from 0 to 255, got the string \"heavy\""),
        "{text}"
    );
    // Refused before any code of the plugin ran: it never logged its construction.
    assert!(
        recorder
            .wait_until(WAIT, |e| e
                .iter()
                .any(|e| e.event_type().name() == "plugin.error"))
            .await
    );
    let error = recorder
        .events()
        .iter()
        .find(|e| e.event_type().name() == "plugin.error")
        .map(|e| serde_json::from_slice::<Value>(e.data_json().unwrap()).unwrap())
        .unwrap();
    assert_eq!(error["stage"], "config", "{error}");
}

// -----------------------------------------------------------------------------------------
// through the binary
// -----------------------------------------------------------------------------------------

#[test]
fn plugins_inspect_shows_the_schema_and_check_refuses_a_bad_table() {
    let dir = PluginDir::new();
    let so = dir.add(crates::ROUTED);
    let out = Command::new(plugbus_binary())
        .args(["plugins", "inspect"])
        .arg(&so)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("4 keys; unknown keys refused"), "{text}");
    for line in [
        [
            "tag",
            "string",
            "\"first\"",
            "A label copied into every `routed.seen` event.",
        ],
        [
            "weight",
            "integer (0..=255)",
            "1",
            "How many times each delivery is counted (1 to 100).",
        ],
        [
            "reload",
            "boolean",
            "false",
            "Ask for a reload instead of reconfiguring in place.",
        ],
    ] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("│ {} ", line[0])))
            .unwrap_or_else(|| panic!("no row for {}: {text}", line[0]));
        for cell in line {
            assert!(row.contains(cell), "{cell:?} not in {row:?}");
        }
    }

    let config = |table: &str| {
        let path = dir.scratch().join("plugbus.toml");
        std::fs::write(
            &path,
            format!(
                "[plugins]\ndirectories = [\"{}\"]\n\n[plugin.{NAME}.config]\n{table}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        path
    };
    let check = |path: &std::path::Path| {
        Command::new(plugbus_binary())
            .args(["plugins", "check", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let bad = check(&config("weight = 500\ncolour = \"red\""));
    let text = output_text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(
        text.contains("key 'weight': expected an integer from 0 to 255, got the number 500")
            && text.contains("key 'colour': unknown key (known: tag, weight, reload, refuse)"),
        "{text}"
    );
    assert!(text.contains("FAILED"), "{text}");
    let good = check(&config("tag = \"x\"\nweight = 3"));
    let text = output_text(&good);
    assert_eq!(good.status.code(), Some(0), "{text}");
    assert!(text.contains("ok: constructed, started, stopped"), "{text}");
}

/// Waits until the audit log at `path` holds a line for which `done` holds.
fn wait_for_line(path: &std::path::Path, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if done(&v) {
                        return v;
                    }
                }
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "not in {}: {}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_changed_config_file_reaches_the_running_plugin() {
    let dir = PluginDir::new();
    dir.add(crates::ROUTED);
    dir.add(crates::AUDIT_LOGGER);
    let audit = dir.scratch().join("audit.jsonl");
    let path = dir.scratch().join("plugbus.toml");
    let write_config = |tag: &str, threshold_extra: &str| {
        // Written beside, then renamed over, as deploy tools do.
        let next = dir.scratch().join("plugbus.toml.new");
        std::fs::write(
            &next,
            format!(
                r#"[plugins]
directories = ["{}"]
watch = true

[plugin.audit-logger]
config = {{ path = "{}", fsync = "never" }}

[plugin.{NAME}.config]
tag = "{tag}"
{threshold_extra}
"#,
                dir.path().display(),
                audit.display()
            ),
        )
        .unwrap();
        std::fs::rename(&next, &path).unwrap();
    };
    write_config("first", "");
    let mut host = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = host.stdin.take().unwrap();
    let login =
        |user: &str| format!("{{\"type\":\"user.login\",\"data\":{{\"user_id\":\"{user}\"}}}}\n");
    stdin.write_all(login("alice").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let is_seen =
        |v: &Value, tag: &str| v["event_type"] == "routed.seen" && v["data"]["tag"] == tag;
    let first = wait_for_line(&audit, |v| is_seen(v, "first"));

    write_config("second", "weight = 2");
    let changed = wait_for_line(&audit, |v| v["event_type"] == "config.changed");
    assert_eq!(changed["data"]["reconfigured"], json!([NAME]), "{changed}");
    let keys = changed["data"]["changed_keys"].to_string();
    assert!(
        keys.contains("plugin.fixture-routed.config.tag"),
        "{changed}"
    );
    assert!(
        keys.contains("plugin.fixture-routed.config.weight"),
        "{changed}"
    );

    stdin.write_all(login("bob").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let second = wait_for_line(&audit, |v| is_seen(v, "second"));
    assert_eq!(second["data"]["instance"], first["data"]["instance"]);
    assert_eq!(second["data"]["seen"], 3, "{second}");

    // A table that fails the schema changes nothing, and says why.
    write_config("third", "weight = -1");
    let refused = wait_for_line(&audit, |v| {
        v["event_type"] == "config.changed" && v["data"]["refused"].is_array()
    });
    assert!(
        refused["data"]["refused"][0]
            .as_str()
            .unwrap()
            .contains("key 'weight': expected an integer from 0 to 255, got the number -1"),
        "{refused}"
    );
    // A file that is not TOML at all changes nothing either, and says so.
    let next = dir.scratch().join("plugbus.toml.new");
    std::fs::write(&next, "[plugins\nwatch = ").unwrap();
    std::fs::rename(&next, &path).unwrap();
    let broken = wait_for_line(&audit, |v| {
        v["event_type"] == "config.changed" && v["data"]["error"].is_string()
    });
    assert!(
        broken["data"]["error"]
            .as_str()
            .unwrap()
            .contains("is not valid TOML"),
        "{broken}"
    );
    stdin.write_all(login("carol").as_bytes()).unwrap();
    drop(stdin);
    let out = host.wait_with_output().unwrap();
    let text = output_text(&out);
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("routed.seen"))
            .all(|l| !l.contains("\"third\"")),
        "{log}"
    );
    assert_eq!(log.matches("\"routed.seen\"").count(), 3, "{log}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("-> balanced"), "{text}");
}
