//! Logs from threads a plugin spawns itself reach the host of the newest live instance.
//! (One test in its own binary: the fallback is per library, so parallel tests would race.)
#![allow(clippy::unwrap_used)]

use plugbus_plugin_api::contract::Category;
use plugbus_plugin_api::testing::{FakeHost, TestEvent};
use plugbus_plugin_api::{export_plugin, Event, HostHandle, Plugin, PluginError, Subscription};

struct Spawner;

impl Plugin for Spawner {
    const NAME: &'static str = "spawner";
    const VERSION: &'static str = "0.0.1";

    fn new(_host: HostHandle, _config: serde_json::Value) -> Result<Self, PluginError> {
        Ok(Spawner)
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        vec![Subscription::to_pattern("*")]
    }

    fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
        let kind = event.event_type().to_owned();
        std::thread::spawn(move || tracing::info!(kind = %kind, "from a plugin thread"))
            .join()
            .map_err(|_| PluginError::permanent("log thread panicked"))
    }
}

export_plugin!(Spawner);

#[test]
fn spawned_threads_log_to_the_newest_live_instance_then_nowhere() {
    let first = FakeHost::new();
    let second = FakeHost::new();
    let mut a = first.load::<Spawner>(serde_json::json!({})).unwrap();
    let b = second.load::<Spawner>(serde_json::json!({})).unwrap();
    let ev = TestEvent::new("t.one", Category::Custom, "{}");
    a.handle(0, &ev).unwrap();
    // The spawned thread has no current instance: the newest live one (b) gets the line.
    assert!(first.logs().is_empty());
    let logs = second.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].field("kind"), Some("t.one"));

    drop(b);
    a.handle(0, &ev).unwrap();
    assert_eq!(
        first.logs().len(),
        1,
        "falls back to the remaining instance"
    );
    drop(a);
    // No instance left: nothing is recorded anywhere, nothing fails.
    std::thread::spawn(|| tracing::info!("orphan"))
        .join()
        .unwrap();
    assert_eq!(first.logs().len() + second.logs().len(), 2);
}
