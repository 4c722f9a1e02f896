//! The mixed-load scenario over the real plugins: nothing a plugin publishes is lost under
//! ordinary load. Every `security.alert` the auth enhancer raises reaches the audit log
//! exactly once, no delivery is dead-lettered and no publish refused. Counts, never time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use plugbus::payload::{DataChange, DataCreated, UserLogin, UserLoginFailed, UserLogout};
use plugbus::{Bus, Category, Event, EventType};
use plugbus_host::PluginManager;
use plugbus_tests::{crates, PluginDir, Recorder};

const EVENTS: u64 = 200_000;

fn config_text(audit_path: &Path) -> String {
    format!(
        r#"
[plugin.audit-logger]
config = {{ path = "{}", fsync = "never" }}
"#,
        audit_path.display()
    )
}

/// Event `i` of the mix: 40% data.*, 30% user.login, 10% user.logout, 10%
/// user.login_failed over 5,000 users and 250 addresses, 10% a custom type.
fn mixed(i: u64, custom: EventType) -> Event {
    let user = format!("user{}", (i * 7919) % 5_000);
    let ip = format!("10.0.{}.{}", (i / 250) % 250, (i * 31) % 250);
    match i % 10 {
        0..=3 => Event::new(DataCreated(DataChange {
            entity: "doc".into(),
            entity_id: i.to_string(),
            ..Default::default()
        }))
        .unwrap(),
        4..=6 => Event::new(UserLogin {
            user_id: user,
            ip,
            session_id: format!("s{i}"),
            ..Default::default()
        })
        .unwrap(),
        7 => Event::new(UserLogout {
            user_id: user,
            session_id: format!("s{}", i.saturating_sub(3)),
            ..Default::default()
        })
        .unwrap(),
        8 => Event::new(UserLoginFailed {
            user_id: user,
            ip,
            ..Default::default()
        })
        .unwrap(),
        _ => Event::builder(custom)
            .json(&format!(r#"{{"n":{i}}}"#))
            .build()
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mixed_load_every_alert_is_audited_exactly_once_and_nothing_is_refused() {
    let dir = PluginDir::new();
    dir.add(crates::AUDIT_LOGGER);
    dir.add(crates::AUTH_ENHANCER);
    let audit_path = dir.scratch().join("audit.jsonl");
    let bus = Bus::builder().build().unwrap();
    let alerts = Recorder::subscribe(&bus, EventType::SECURITY_ALERT, "test-alerts");
    let manager = PluginManager::new(bus.clone(), dir.config(&config_text(&audit_path)));
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);

    let custom = EventType::new("load.custom", Category::Custom).unwrap();
    for i in 0..EVENTS {
        bus.emit(mixed(i, custom)).await.unwrap();
    }
    assert!(
        manager.settle(Duration::from_secs(120)).await,
        "did not settle"
    );
    let plugins = manager.plugins();
    let stats = bus.stats();
    manager.shutdown().await;
    let account = bus.shutdown(Duration::from_secs(30)).await;

    assert!(account.is_balanced(), "{account:#?}");
    assert_eq!(stats.totals.dead_lettered, 0, "{:#?}", stats.totals);
    assert_eq!(bus.dead_letters().len(), 0);
    for p in &plugins {
        assert_eq!(p.counters.refused(), 0, "{}: {:?}", p.name, p.counters);
        assert_eq!(
            p.counters.publish_pending, 0,
            "{}: {:?}",
            p.name, p.counters
        );
    }
    let enhancer = plugins.iter().find(|p| p.name == "auth-enhancer").unwrap();
    let raised: Vec<String> = alerts.events().iter().map(|e| e.id().to_string()).collect();
    assert!(!raised.is_empty(), "the mix must raise alerts");
    assert_eq!(enhancer.counters.published, raised.len() as u64);

    let text = std::fs::read_to_string(&audit_path).unwrap();
    let mut audited: HashMap<String, u32> = HashMap::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        if record["event_type"] == "security.alert" {
            *audited
                .entry(record["event_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    for id in &raised {
        assert_eq!(
            audited.get(id),
            Some(&1),
            "alert {id} audited {:?} times",
            audited.get(id)
        );
    }
    assert_eq!(
        audited.len(),
        raised.len(),
        "no alert audited that was not raised"
    );
}
