//! The auth enhancer, loaded from its `.so`, against the ways an attacker hides: malformed
//! events first (to open its circuit), one address in many spellings, and low-and-slow
//! spraying across users from one network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plugbus::payload::UserLoginFailed;
use plugbus::{Bus, DeadLetterReason, Event, EventType, Outcome};
use plugbus_host::PluginManager;
use plugbus_tests::{crates, PluginDir, Recorder};

const WAIT: Duration = Duration::from_secs(10);

async fn start(dir: &PluginDir) -> (Bus, PluginManager, Recorder) {
    dir.add(crates::AUTH_ENHANCER);
    let bus = Bus::builder().build().unwrap();
    let alerts = Recorder::subscribe(&bus, EventType::SECURITY_ALERT, "test-alerts");
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(
            r#"
[plugin.auth-enhancer]
config = { max_failures = 10, failure_window_secs = 300, max_prefix_failures = 20 }
"#,
        ),
    );
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    (bus, manager, alerts)
}

fn failed(user: &str, ip: &str) -> Event {
    Event::new(UserLoginFailed {
        user_id: user.into(),
        ip: ip.into(),
        ..Default::default()
    })
    .unwrap()
}

fn reasons(alerts: &Recorder) -> Vec<(String, String)> {
    alerts
        .events()
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(e.data_json().unwrap()).unwrap();
            (
                v["reason"].as_str().unwrap().to_owned(),
                v["ip"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_first_and_one_address_in_ten_spellings_still_raise_the_alert() {
    let dir = PluginDir::new();
    let (bus, manager, alerts) = start(&dir).await;
    // Poison first: each is a bad event (dead-lettered, never retried), none opens the circuit.
    for n in 0..12 {
        let junk = Event::builder(EventType::USER_LOGIN_FAILED)
            .json(&format!(r#"{{"uid":"x{n}"}}"#))
            .build()
            .unwrap();
        let report = bus.publish(junk).await.unwrap();
        assert!(
            matches!(&report.deliveries[0].outcome, Outcome::BadEvent(_)),
            "{report:?}"
        );
    }
    let spellings = [
        "203.0.113.9",
        " 203.0.113.9",
        "203.0.113.9 ",
        "203.000.113.009",
        "203.0.113.09",
        "::ffff:203.0.113.9",
        "::FFFF:203.0.113.9",
        "0203.0.113.9",
        "203.0.113.9\t",
        "203.0.0113.9",
    ];
    for (n, ip) in spellings.iter().enumerate() {
        bus.emit(failed(&format!("user{n}"), ip)).await.unwrap();
    }
    assert!(alerts.wait_until(WAIT, |e| !e.is_empty()).await, "no alert");
    assert!(manager.settle(WAIT).await);
    assert_eq!(
        reasons(&alerts),
        [("brute_force_ip".to_owned(), "203.0.113.9".to_owned())]
    );
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 12);
    assert!(letters.iter().all(
        |l| matches!(&l.reason, DeadLetterReason::BadEvent(m) if m.contains("invalid event"))
    ));
    let stats = bus.stats();
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.name.starts_with("auth-enhancer"))
        .unwrap();
    assert_eq!(
        (sub.totals.bad_event, sub.totals.circuit_open),
        (12, 0),
        "{sub:?}"
    );
    manager.shutdown().await;
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spraying_one_network_across_users_is_detected() {
    let dir = PluginDir::new();
    let (bus, manager, alerts) = start(&dir).await;
    // One failure per user and per address: below every per-user and per-address threshold.
    for n in 1..=25 {
        bus.emit(failed(&format!("victim{n}"), &format!("198.51.100.{n}")))
            .await
            .unwrap();
    }
    assert!(alerts.wait_until(WAIT, |e| !e.is_empty()).await, "no alert");
    assert!(manager.settle(WAIT).await);
    assert_eq!(
        reasons(&alerts),
        [("password_spraying".to_owned(), "198.51.100.0/24".to_owned())]
    );
    manager.shutdown().await;
    assert!(bus.shutdown(Duration::from_secs(5)).await.is_balanced());
}
