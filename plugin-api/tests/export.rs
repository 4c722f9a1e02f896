//! Drives a plugin exported with `export_plugin!` through the ABI, as a plugin crate would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus_plugin_api::abi::{PluginMod_Ref, ABI_VERSION};
use plugbus_plugin_api::contract::payload::{UserLogin, UserLogout};
use plugbus_plugin_api::contract::Category;
use plugbus_plugin_api::testing::{FakeHost, TestEvent};
use plugbus_plugin_api::{
    export_plugin, host_box, AbiHost, Event, EventDraft, Filter, HostHandle, KeyValue, OwnedEvent,
    Plugin, PluginError, Subscription,
};
use serde_json::json;

/// A plugin whose misbehaviour is chosen by its config.
struct Probe {
    host: HostHandle,
    panic_in: String,
    handled: u32,
}

impl Probe {
    fn maybe_panic(&self, stage: &str) {
        if self.panic_in == stage {
            panic!("probe panics in {stage}");
        }
    }
}

impl Plugin for Probe {
    const NAME: &'static str = "probe";
    const VERSION: &'static str = "1.2.3";
    const DESCRIPTION: &'static str = "test plugin";

    fn new(host: HostHandle, config: serde_json::Value) -> Result<Self, PluginError> {
        let panic_in = config["panic_in"].as_str().unwrap_or("").to_owned();
        if panic_in == "new" {
            panic!("probe panics in new");
        }
        if config.get("bogus").is_some() {
            return Err(PluginError::config("unknown key 'bogus'"));
        }
        Ok(Probe {
            host,
            panic_in,
            handled: 0,
        })
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        self.maybe_panic("subscriptions");
        vec![
            Subscription::to_types(["user.login"]),
            Subscription::to_categories([Category::Lifecycle]).pattern("security.*"),
            Subscription::to_pattern("user.*")
                .filter(Filter::new().eq("data.user_id", "bob"))
                .handler(9),
        ]
    }

    fn start(&mut self) -> Result<(), PluginError> {
        self.maybe_panic("start");
        tracing::info!(plugin = "probe", answer = 42, "probe started");
        Ok(())
    }

    fn handle(&mut self, handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
        self.maybe_panic("handle");
        self.handled += 1;
        match handler {
            0 => {
                let login: UserLogin = event.data()?;
                self.host.publish(&UserLogout {
                    user_id: login.user_id,
                    session_id: String::new(),
                    reason: "probe".into(),
                })?;
                self.host.publish_with(
                    EventDraft::new("probe.raw", Category::Custom)
                        .json(r#"{"n":1}"#)
                        .source("probe-src")
                        .metadata("k", "v"),
                )?;
                tracing::warn!(user = %event.data::<UserLogin>()?.user_id, "login seen");
                Ok(())
            }
            9 => Err(PluginError::retryable("bob is busy")),
            _ => {
                // Asking for the wrong type surfaces as InvalidEvent.
                event.data::<UserLogin>().map(|_| ())
            }
        }
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.maybe_panic("stop");
        Err(PluginError::permanent(format!("handled {}", self.handled)))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.panic_in == "drop" {
            panic!("probe panics in drop");
        }
    }
}

export_plugin!(Probe);

fn login(user: &str) -> TestEvent {
    TestEvent::typed(&UserLogin {
        user_id: user.into(),
        ip: "10.0.0.1".into(),
        ..Default::default()
    })
}

#[test]
fn info_and_subscriptions_cross_the_abi() {
    let host = FakeHost::new();
    let plugin = host.load::<Probe>(json!({})).unwrap();
    let info = plugin.info();
    assert_eq!(info.name.as_str(), "probe");
    assert_eq!(info.version.as_str(), "1.2.3");
    assert_eq!(info.description.as_str(), "test plugin");
    assert_eq!((info.abi_major, info.abi_minor), ABI_VERSION);
    let subs = plugin.subscriptions();
    assert_eq!(subs.len(), 3);
    assert_eq!(subs[0].handler, 0);
    assert_eq!(subs[1].handler, 1);
    assert_eq!(subs[1].categories.as_slice(), &[Category::Lifecycle as u8]);
    assert_eq!(subs[2].handler, 9);
}

#[test]
fn handle_publishes_with_causation_and_logs_reach_the_host() {
    let host = FakeHost::new();
    let mut plugin = host.load::<Probe>(json!({})).unwrap();
    plugin.start().unwrap();
    let start_log = host
        .logs()
        .into_iter()
        .find(|l| l.message == "probe started")
        .expect("start log forwarded");
    assert_eq!(start_log.level, 3);
    assert_eq!(start_log.target, "export");
    assert_eq!(start_log.field("plugin"), Some("probe"));
    assert_eq!(start_log.field("answer"), Some("42"));

    let ev = login("alice");
    let results = plugin.deliver(&ev);
    // handler 0 (type) and handler 9's filter does not match alice.
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, 0);
    results[0].1.clone().unwrap();

    let published = host.take_published();
    assert_eq!(published.len(), 2);
    let logout: UserLogout = published[0].data().unwrap();
    assert_eq!(logout.user_id, "alice");
    assert_eq!(published[0].caused_by, Some(ev.id));
    assert_eq!(published[0].category, Category::Business as u8);
    assert_eq!(published[1].event_type, "probe.raw");
    assert_eq!(published[1].source, "probe-src");
    assert_eq!(published[1].metadata, vec![("k".into(), "v".into())]);
    assert_eq!(published[1].payload_json, r#"{"n":1}"#);

    let warn = host
        .logs()
        .into_iter()
        .find(|l| l.message == "login seen")
        .unwrap();
    assert_eq!((warn.level, warn.field("user")), (2, Some("alice")));
}

#[test]
fn filters_and_categories_select_handlers_and_errors_cross_intact() {
    let host = FakeHost::new();
    let mut plugin = host.load::<Probe>(json!({})).unwrap();
    let results = plugin.deliver(&login("bob"));
    let handlers: Vec<u32> = results.iter().map(|(h, _)| *h).collect();
    assert_eq!(handlers, vec![0, 9]);
    assert_eq!(
        results[1].1.clone().unwrap_err(),
        PluginError::retryable("bob is busy")
    );

    let lifecycle = TestEvent::new("plugin.loaded", Category::Lifecycle, r#"{"name":"x"}"#);
    let results = plugin.deliver(&lifecycle);
    assert_eq!(results.len(), 1);
    assert!(matches!(results[0].1, Err(PluginError::InvalidEvent(_))));
    let alert = TestEvent::new("security.alert", Category::Business, "{}");
    assert_eq!(plugin.deliver(&alert).len(), 1);
    let other = TestEvent::new("system.startup", Category::System, "{}");
    assert!(plugin.deliver(&other).is_empty());

    assert_eq!(
        plugin.stop().unwrap_err(),
        PluginError::permanent("handled 4")
    );
}

#[test]
fn a_refused_publish_never_asks_for_a_redelivery() {
    use plugbus_plugin_api::RefusalKind;
    let host = FakeHost::new();
    let mut plugin = host.load::<Probe>(json!({})).unwrap();
    // `?` on a refused publish fails the delivery once: permanent, whatever the refusal, so
    // the host never hands the same event to the plugin twice because of it.
    for kind in [
        RefusalKind::Full,
        RefusalKind::Closed,
        RefusalKind::Forbidden,
        RefusalKind::Invalid,
    ] {
        host.refuse_publishes_as(Some((kind, "bus closed")));
        let err = plugin.handle(0, &login("carol")).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.message().contains("bus closed"), "{err}");
        assert!(err.message().contains(&format!("({kind})")), "{err}");
    }
    host.refuse_publishes(None);
    plugin.handle(0, &login("carol")).unwrap();
}

#[test]
fn refusals_say_whether_they_are_transient() {
    use plugbus_plugin_api::{PublishError, RefusalKind};
    let full = PublishError::new(RefusalKind::Full, "security.alert", "queue full");
    assert!(full.is_transient());
    for kind in [
        RefusalKind::Closed,
        RefusalKind::Forbidden,
        RefusalKind::Invalid,
    ] {
        assert!(
            !PublishError::new(kind, "x.y", "no").is_transient(),
            "{kind}"
        );
    }
    assert_eq!(
        full.to_string(),
        "host refused 'security.alert' event (full): queue full"
    );
}

#[test]
fn panics_in_every_stage_become_errors() {
    let host = FakeHost::new();
    for stage in ["new", "subscriptions"] {
        let err = host
            .load::<Probe>(json!({ "panic_in": stage }))
            .unwrap_err();
        assert_eq!(
            err,
            PluginError::panicked(format!("probe panics in {stage}"))
        );
    }
    let mut p = host.load::<Probe>(json!({"panic_in": "start"})).unwrap();
    assert!(p.start().unwrap_err().is_panic());
    let mut p = host.load::<Probe>(json!({"panic_in": "handle"})).unwrap();
    let err = p.handle(0, &login("dave")).unwrap_err();
    assert_eq!(err, PluginError::panicked("probe panics in handle"));
    // The instance stays callable after a caught panic.
    assert!(p.handle(0, &login("dave")).unwrap_err().is_panic());
    let mut p = host.load::<Probe>(json!({"panic_in": "stop"})).unwrap();
    assert!(p.stop().unwrap_err().is_panic());
    // A panicking destructor does not abort the process.
    let p = host.load::<Probe>(json!({"panic_in": "drop"})).unwrap();
    drop(p);
}

#[test]
fn config_errors_and_bad_json_config() {
    let host = FakeHost::new();
    let err = host.load::<Probe>(json!({"bogus": 1})).unwrap_err();
    assert!(matches!(err, PluginError::Config(_)));
    assert!(err.message().contains("bogus"));

    struct NullHost;
    impl AbiHost for NullHost {
        fn publish(
            &self,
            _: OwnedEvent,
        ) -> abi_stable::std_types::RResult<(), plugbus_plugin_api::PublishRefusal> {
            abi_stable::std_types::RResult::ROk(())
        }
        fn log(
            &self,
            _: u8,
            _: abi_stable::std_types::RStr<'_>,
            _: abi_stable::std_types::RStr<'_>,
            _: abi_stable::std_types::RSlice<'_, KeyValue<'_>>,
        ) {
        }
    }
    let module = <Probe as plugbus_plugin_api::__private::ExportedPlugin>::root_module();
    let err = (module.new())(host_box(NullHost), "{not json".into())
        .into_result()
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::Config(_)), "{err}");
    assert!(err.message().contains("probe"), "{err}");
    // An empty config string means `{}`.
    assert!((module.new())(host_box(NullHost), "".into()).is_ok());
}

#[test]
fn the_exported_header_passes_abi_stable_checks() {
    // The static `export_plugin!` placed in this binary is what `lib_header_from_path` finds in
    // a library; checking it here runs abi_stable's version and layout checks and constructor.
    let module = __PLUGBUS_PLUGIN_LIB_HEADER
        .init_root_module::<PluginMod_Ref>()
        .expect("root module loads");
    let info = (module.info())();
    assert_eq!(info.name.as_str(), "probe");
}

#[test]
fn a_dropped_instance_releases_its_host() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    struct DropFlag(Arc<AtomicBool>);
    impl AbiHost for DropFlag {
        fn publish(
            &self,
            _: OwnedEvent,
        ) -> abi_stable::std_types::RResult<(), plugbus_plugin_api::PublishRefusal> {
            abi_stable::std_types::RResult::ROk(())
        }
        fn log(
            &self,
            _: u8,
            _: abi_stable::std_types::RStr<'_>,
            _: abi_stable::std_types::RStr<'_>,
            _: abi_stable::std_types::RSlice<'_, KeyValue<'_>>,
        ) {
        }
    }
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let module = <Probe as plugbus_plugin_api::__private::ExportedPlugin>::root_module();
    let instance = (module.new())(host_box(DropFlag(Arc::clone(&dropped))), "{}".into())
        .into_result()
        .unwrap();
    assert!(!dropped.load(Ordering::SeqCst));
    drop(instance);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the library kept the host alive"
    );
    // A failed construction releases it too.
    let dropped = Arc::new(AtomicBool::new(false));
    assert!((module.new())(
        host_box(DropFlag(Arc::clone(&dropped))),
        r#"{"bogus":1}"#.into()
    )
    .is_err());
    assert!(dropped.load(Ordering::SeqCst));
}
