//! FakeHost refuses what the real host refuses: the same plugin (`fixture-routed`, which
//! publishes whatever a `test.publish` event describes and reports what the host said) is
//! driven through the real host from its `.so` and through `FakeHost` from its rlib, over the
//! same cases; both must accept or refuse each one with the same kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use plugbus::{Bus, Category, Event, EventType, Payload};
use plugbus_host::PluginManager;
use plugbus_plugin_api::testing::{FakeHost, TestEvent};
use plugbus_tests::{crates, PluginDir, Recorder};
use serde_json::{json, Value};

/// (case, type, category, source, payload, metadata)
fn cases() -> Vec<Value> {
    let big = "x".repeat(plugbus::contract::audit::MAX_EVENT_BYTES + 1);
    let cases = [
        json!(["valid", "account.locked", 2, "", "{\"user\":\"a\"}", []]),
        json!(["space in name", "Account Locked", 2, "", "{}", []]),
        json!(["upper case", "Account.locked", 2, "", "{}", []]),
        json!(["empty name", "", 2, "", "{}", []]),
        json!(["host lifecycle", "plugin.loaded", 0, "", "{}", []]),
        json!(["system event", "system.shutdown", 1, "", "{}", []]),
        json!([
            "builtin, other category",
            "user.login",
            4,
            "",
            "{\"user_id\":\"a\"}",
            []
        ]),
        json!([
            "builtin, right category",
            "user.login",
            2,
            "",
            "{\"user_id\":\"a\"}",
            []
        ]),
        json!(["not json", "account.locked", 2, "", "not json", []]),
        json!(["two values", "account.locked", 2, "", "{}{}", []]),
        json!(["empty payload", "account.locked", 2, "", "", []]),
        json!([
            "bad correlation id",
            "account.locked",
            2,
            "",
            "{}",
            [["correlation_id", "nope"]]
        ]),
        json!([
            "good correlation id",
            "account.locked",
            2,
            "",
            "{}",
            [["correlation_id", "0191b5c0-7c1e-7d2a-9f00-0123456789ab"]]
        ]),
        json!(["too big", "account.locked", 2, "", format!("\"{big}\""), []]),
        json!(["own source", "account.locked", 2, "someone-else", "{}", []]),
    ];
    cases
        .into_iter()
        .map(|c| {
            json!({
                "case": c[0], "type": c[1], "category": c[2], "source": c[3],
                "payload": c[4], "metadata": c[5],
            })
        })
        .collect()
}

fn verdicts(results: impl Iterator<Item = Value>) -> BTreeMap<String, String> {
    results
        .map(|r| {
            (
                r["case"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn through_the_host() -> BTreeMap<String, String> {
    let dir = PluginDir::new();
    dir.add(crates::ROUTED);
    let bus = Bus::builder().build().unwrap();
    let recorder = Recorder::subscribe(
        &bus,
        EventType::new("routed.result", Category::Custom).unwrap(),
        "test-recorder",
    );
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    let cases = cases();
    for case in &cases {
        let event = Event::builder(EventType::new("test.publish", Category::Custom).unwrap())
            .payload(Payload::from_json(case.to_string().as_bytes()).unwrap())
            .build()
            .unwrap();
        bus.publish(event).await.unwrap();
    }
    assert!(
        recorder
            .wait_until(Duration::from_secs(30), |e| e.len() == cases.len())
            .await,
        "{:?}",
        recorder.events().len()
    );
    let results = recorder
        .events()
        .iter()
        .map(|e| serde_json::from_slice::<Value>(e.data_json().unwrap()).unwrap())
        .collect::<Vec<_>>();
    let _ = bus.shutdown(Duration::from_secs(5)).await;
    manager.shutdown().await;
    verdicts(results.into_iter())
}

fn through_the_fake_host() -> BTreeMap<String, String> {
    let fake = FakeHost::new();
    let mut plugin = fake
        .load::<plugbus_fixture_routed::Routed>(json!({}))
        .unwrap();
    plugin.start().unwrap();
    for case in cases() {
        let event = TestEvent::new("test.publish", Category::Custom, &case.to_string());
        for (_, result) in plugin.deliver(&event) {
            result.unwrap();
        }
    }
    verdicts(
        fake.published()
            .iter()
            .filter(|p| p.event_type == "routed.result")
            .map(|p| serde_json::from_str::<Value>(&p.payload_json).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_host_and_host_refuse_alike() {
    let host = through_the_host().await;
    let fake = through_the_fake_host();
    assert_eq!(host.len(), cases().len(), "{host:?}");
    assert_eq!(host, fake);
    // And the cases mean what they say: both refuse the bad ones.
    for (case, kind) in [
        ("valid", "ok"),
        ("space in name", "invalid"),
        ("host lifecycle", "forbidden"),
        ("not json", "invalid"),
        ("too big", "invalid"),
        ("bad correlation id", "invalid"),
    ] {
        assert_eq!(host[case], kind, "{case}: {host:?}");
    }
}
