//! Plugins that feed themselves or each other: the host keeps the storm bounded (backpressure
//! through the plugins' outbound queues and the bus's `Wait` mailboxes), never deadlocks, stops
//! within its timeouts, and accounts for every publish: handed to the bus or refused by reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plugbus::{Bus, Category, Event, EventType, ShutdownReport};
use plugbus_host::{PluginManager, PluginStatus};
use plugbus_tests::{crates, PluginDir};

/// A hang guard, not a timing assertion: shutdown must come back at all.
const GUARD: Duration = Duration::from_secs(60);

fn custom(name: &str) -> Event {
    Event::builder(EventType::new(name, Category::Custom).unwrap())
        .build()
        .unwrap()
}

/// Every handled event tried exactly one publish: published or refused.
fn assert_accounted(p: &PluginStatus) {
    let c = p.counters;
    assert_eq!(
        c.published + c.refused(),
        c.delivered + c.failed,
        "{}: every handle published once: {c:?}",
        p.name
    );
    assert_eq!(c.panicked, 0, "{}: {c:?}", p.name);
}

/// Lets the storm run, then stops each plugin (its outbound queue flushed on the way) and checks
/// its final figures, then shuts everything down.
async fn storm(bus: &Bus, manager: &PluginManager, names: &[&str]) -> ShutdownReport {
    // Progress proves there is no deadlock.
    let mut last = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = bus.stats().accepted;
        assert!(now > last, "the storm stalled at {now} events");
        last = now;
    }
    let stop = async {
        let mut finals = Vec::new();
        for name in names {
            manager.stop(name).await.unwrap();
            finals.push(manager.status(name).unwrap());
        }
        manager.shutdown().await;
        (finals, bus.shutdown(Duration::from_secs(5)).await)
    };
    let (finals, account) = tokio::time::timeout(GUARD, stop)
        .await
        .expect("shutdown hung");
    for p in &finals {
        assert!(p.counters.published > 10, "{}: {:?}", p.name, p.counters);
        assert_eq!(
            p.counters.publish_pending, 0,
            "{}: {:?}",
            p.name, p.counters
        );
        assert_accounted(p);
    }
    account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_feeding_itself_is_held_back_and_stops_cleanly() {
    let dir = PluginDir::new();
    dir.add(crates::ECHO);
    let bus = Bus::builder().mailbox_capacity(64).build().unwrap();
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(
            r#"
[plugin.fixture-echo]
timeout = "200ms"
config = { on = ["test.ping"], publish = "test.ping" }
"#,
        ),
    );
    assert!(manager.load_all().await.is_ok());
    bus.emit(custom("test.ping")).await.unwrap();
    let account = storm(&bus, &manager, &["fixture-echo"]).await;
    assert!(account.is_balanced(), "{account:#?}");
    assert!(account.accepted > 100, "it did storm: {account:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plugins_feeding_each_other_never_deadlock_and_account_for_every_publish() {
    let dir = PluginDir::new();
    dir.add(crates::ECHO);
    dir.add(crates::ECHO_2);
    let bus = Bus::builder().mailbox_capacity(16).build().unwrap();
    let manager = PluginManager::new(
        bus.clone(),
        dir.config(
            r#"
[plugin.fixture-echo]
timeout = "200ms"
config = { on = ["test.a"], publish = "test.b" }

[plugin.fixture-echo-2]
timeout = "200ms"
config = { on = ["test.b"], publish = "test.a" }
"#,
        ),
    );
    assert!(manager.load_all().await.is_ok());
    // Two balls in play, so both ends are busy at once.
    bus.emit(custom("test.a")).await.unwrap();
    bus.emit(custom("test.b")).await.unwrap();
    let account = storm(&bus, &manager, &["fixture-echo", "fixture-echo-2"]).await;
    assert!(account.is_balanced(), "{account:#?}");
}
