//! FakeHost refuses what the real host refuses, with the same kind, in the same order; and
//! refuses on demand (full, closed) for testing a plugin's backpressure handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus_plugin_api::contract::audit::MAX_EVENT_BYTES;
use plugbus_plugin_api::contract::payload::{SecurityAlert, Severity, UserLoginFailed};
use plugbus_plugin_api::contract::Category;
use plugbus_plugin_api::testing::{FakeHost, TestEvent};
use plugbus_plugin_api::{
    export_plugin, Event, EventDraft, HostHandle, OwnedEvent, Plugin, PluginError, PublishError,
    RefusalKind, Subscription,
};

fn publish(fake: &FakeHost, draft: EventDraft) -> Result<(), PublishError> {
    fake.host_handle().publish_with(draft)
}

fn kind_of(fake: &FakeHost, draft: EventDraft) -> RefusalKind {
    match publish(fake, draft) {
        Ok(()) => panic!("accepted, but the host refuses it"),
        Err(e) => e.kind(),
    }
}

fn business(name: &str) -> EventDraft {
    EventDraft::new(name, Category::Business)
}

#[test]
fn a_valid_event_is_recorded_and_nothing_refused() {
    let fake = FakeHost::new();
    publish(
        &fake,
        business("account.locked")
            .json(r#"{"user_id":"bob"}"#)
            .source("lockout")
            .metadata("request_id", "r-1"),
    )
    .unwrap();
    let published = fake.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event_type, "account.locked");
    assert_eq!(published[0].source, "lockout");
    assert_eq!(published[0].caused_by, None);
    assert!(fake.refused().is_empty());
}

#[test]
fn type_names_outside_the_grammar_are_invalid() {
    let fake = FakeHost::new();
    let long = "a".repeat(129);
    for name in [
        "Account Locked",
        "account locked",
        "User.Login",
        "user..login",
        ".login",
        "user.",
        "",
        "user/login",
        long.as_str(),
    ] {
        let err = publish(&fake, business(name)).unwrap_err();
        assert_eq!(err.kind(), RefusalKind::Invalid, "{name:?}");
        assert!(!err.is_transient());
        assert_eq!(err.event_type(), name);
    }
    let err = publish(&fake, business("Account Locked")).unwrap_err();
    assert!(
        err.message().contains("'Account Locked'") && err.message().contains("invalid character"),
        "{err}"
    );
    assert!(fake.published().is_empty());
    assert_eq!(fake.refused().len(), 10);
    // The longest name the grammar allows is fine.
    publish(&fake, business(&"a".repeat(128))).unwrap();
}

#[test]
fn the_hosts_own_types_are_forbidden() {
    let fake = FakeHost::new();
    for (name, category) in [
        ("plugin.loaded", Category::Lifecycle),
        ("plugin.error", Category::Lifecycle),
        ("plugin.anything_new", Category::Custom),
        ("system.startup", Category::System),
        ("system.shutdown", Category::System),
        ("config.changed", Category::System),
        ("config.reloaded", Category::Business),
    ] {
        let err = publish(&fake, EventDraft::new(name, category)).unwrap_err();
        assert_eq!(err.kind(), RefusalKind::Forbidden, "{name}");
        assert!(err.message().contains("the host's own"), "{err}");
    }
    // Only the prefixes are reserved.
    publish(&fake, business("plugins.loaded")).unwrap();
    publish(&fake, business("my.plugin.loaded")).unwrap();
}

#[test]
fn the_hosts_own_sources_are_forbidden_whatever_their_case_and_spaces() {
    let fake = FakeHost::new();
    for source in ["plugbus", "plugbus-host", "PlugBus-Host", " plugbus "] {
        let err = publish(&fake, business("account.locked").source(source)).unwrap_err();
        assert_eq!(err.kind(), RefusalKind::Forbidden, "{source:?}");
        assert!(err.message().contains("source"), "{err}");
    }
    publish(&fake, business("account.locked").source("plugbus-lockout")).unwrap();
}

#[test]
fn forbidden_is_decided_before_anything_invalid() {
    let fake = FakeHost::new();
    // The host checks the names as given first: a forged lifecycle event is forbidden
    // whatever its category, payload or size.
    let forged = OwnedEvent {
        category: 200,
        payload_json: "not json".into(),
        ..business("plugin.loaded").into_owned_event()
    };
    let refusal = fake
        .host_handle()
        .as_abi()
        .publish(forged)
        .into_result()
        .unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Forbidden);
    let huge = business("user.login")
        .source("plugbus")
        .json(format!("\"{}\"", "x".repeat(MAX_EVENT_BYTES)));
    assert_eq!(kind_of(&fake, huge), RefusalKind::Forbidden);
}

#[test]
fn an_unknown_category_byte_is_invalid() {
    let fake = FakeHost::new();
    let host = fake.host_handle();
    for byte in [4_u8, 9, 255] {
        let event = OwnedEvent {
            category: byte,
            ..business("account.locked").into_owned_event()
        };
        let refusal = host.as_abi().publish(event).into_result().unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::Invalid, "{byte}");
        assert!(
            refusal
                .message
                .contains(&format!("unknown category {byte}")),
            "{}",
            refusal.message
        );
    }
    for category in Category::ALL {
        let name = format!("account.locked_{}", category.as_str());
        publish(&fake, EventDraft::new(name, category)).unwrap();
    }
}

#[test]
fn a_type_keeps_its_category() {
    let fake = FakeHost::new();
    // Built-in and standard types have theirs.
    for (name, wrong) in [
        ("user.login", Category::Custom),
        ("data.deleted", Category::Lifecycle),
        ("security.alert", Category::Custom),
    ] {
        let err = publish(&fake, EventDraft::new(name, wrong)).unwrap_err();
        assert_eq!(err.kind(), RefusalKind::Invalid, "{name}");
        assert!(err.message().contains("already registered"), "{err}");
    }
    publish(&fake, business("user.login")).unwrap();
    // A custom type takes the category it is first met with, as the host's type table does.
    publish(&fake, business("account.locked")).unwrap();
    let err = publish(&fake, EventDraft::new("account.locked", Category::Custom)).unwrap_err();
    assert_eq!(err.kind(), RefusalKind::Invalid);
    assert!(
        err.message()
            .contains("'account.locked' is already registered with category business"),
        "{err}"
    );
    // Clones share the table; another fake host starts afresh.
    assert_eq!(
        kind_of(
            &fake.clone(),
            EventDraft::new("account.locked", Category::Custom)
        ),
        RefusalKind::Invalid
    );
    publish(
        &FakeHost::new(),
        EventDraft::new("account.locked", Category::Custom),
    )
    .unwrap();
}

#[test]
fn a_payload_must_be_exactly_one_json_value() {
    let fake = FakeHost::new();
    for payload in [
        "", "   ", "{}{}", "not json", "{\"a\":", "[1,]", "1 2", "'single'",
    ] {
        let err = publish(&fake, business("account.locked").json(payload)).unwrap_err();
        assert_eq!(err.kind(), RefusalKind::Invalid, "{payload:?}");
        assert!(err.message().contains("not valid JSON"), "{err}");
    }
    for payload in ["{}", "null", "42", "\"text\"", "[1,2]", " {\"a\":1}\n"] {
        publish(&fake, business("account.locked").json(payload)).unwrap();
    }
}

#[test]
fn an_event_over_the_size_limit_is_invalid_counting_every_part() {
    let fake = FakeHost::new();
    let name = "account.locked";
    // Exactly at the limit: accepted. The host counts payload + source + type + metadata.
    let source = "lockout";
    let (key, value) = ("request_id", "r-1");
    let room = MAX_EVENT_BYTES - name.len() - source.len() - key.len() - value.len();
    let payload = format!("\"{}\"", "x".repeat(room - 2));
    let at_limit = business(name)
        .json(payload.clone())
        .source(source)
        .metadata(key, value);
    assert_eq!(
        at_limit.clone().into_owned_event().size_bytes(),
        MAX_EVENT_BYTES
    );
    publish(&fake, at_limit).unwrap();
    // One byte more anywhere, in the payload, the source or the metadata: refused.
    for over in [
        business(name)
            .json(format!("\"{}\"", "x".repeat(room - 1)))
            .source(source)
            .metadata(key, value),
        business(name)
            .json(payload.clone())
            .source("lockout2")
            .metadata(key, value),
        business(name)
            .json(payload.clone())
            .source(source)
            .metadata(key, "r-12"),
    ] {
        let err = publish(&fake, over).unwrap_err();
        assert_eq!(err.kind(), RefusalKind::Invalid);
        assert!(
            err.message().contains(&MAX_EVENT_BYTES.to_string())
                && err.message().contains(&(MAX_EVENT_BYTES + 1).to_string()),
            "{err}"
        );
    }
    assert_eq!(fake.published().len(), 1);
}

#[test]
fn correlation_and_causation_ids_must_be_uuids() {
    let fake = FakeHost::new();
    for key in ["correlation_id", "causation_id"] {
        for bad in [
            "",
            "42",
            "not-a-uuid",
            "0190a0b0-0000-7000-8000-00000000000",
            "{x}",
        ] {
            let err = publish(&fake, business("account.locked").metadata(key, bad)).unwrap_err();
            assert_eq!(err.kind(), RefusalKind::Invalid, "{key}={bad:?}");
            assert!(err.message().contains(key), "{err}");
        }
        for good in [
            "0190a0b0-0000-7000-8000-000000000001",
            "0190A0B0-0000-7000-8000-00000000000F",
            "0190a0b0000070008000000000000001",
            "{0190a0b0-0000-7000-8000-000000000001}",
            "urn:uuid:0190a0b0-0000-7000-8000-000000000001",
        ] {
            publish(&fake, business("account.locked").metadata(key, good)).unwrap();
        }
    }
    // Other keys are free text; a bad traceparent is dropped by the host, not refused.
    publish(
        &fake,
        business("account.locked")
            .metadata("request_id", "anything at all")
            .metadata("traceparent", "garbage"),
    )
    .unwrap();
}

#[test]
fn full_and_closed_on_demand_only_for_events_that_pass_the_checks() {
    let fake = FakeHost::new();
    fake.refuse_publishes(Some("bus busy"));
    let err = publish(&fake, business("account.locked")).unwrap_err();
    assert_eq!(err.kind(), RefusalKind::Full);
    assert!(err.is_transient());
    assert_eq!(err.message(), "bus busy");
    // The host checks an event before its queue can refuse it.
    assert_eq!(
        kind_of(&fake, business("Account Locked")),
        RefusalKind::Invalid
    );
    assert_eq!(
        kind_of(&fake, business("plugin.loaded")),
        RefusalKind::Forbidden
    );

    fake.refuse_publishes_as(Some((RefusalKind::Closed, "the bus is shutting down")));
    let err = publish(&fake, business("account.locked")).unwrap_err();
    assert_eq!(err.kind(), RefusalKind::Closed);
    assert!(!err.is_transient());

    fake.refuse_publishes(None);
    publish(&fake, business("account.locked")).unwrap();
    assert_eq!(fake.published().len(), 1);
    let kinds: Vec<RefusalKind> = fake.refused().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RefusalKind::Full,
            RefusalKind::Invalid,
            RefusalKind::Forbidden,
            RefusalKind::Closed
        ]
    );
}

#[test]
fn refuse_next_counts_only_events_that_pass_the_checks() {
    let fake = FakeHost::new();
    fake.refuse_next(2, RefusalKind::Full, "busy");
    assert_eq!(kind_of(&fake, business("Bad Name")), RefusalKind::Invalid);
    assert_eq!(
        kind_of(&fake, business("account.locked")),
        RefusalKind::Full
    );
    assert_eq!(
        kind_of(&fake, business("account.locked")),
        RefusalKind::Full
    );
    publish(&fake, business("account.locked")).unwrap();
    publish(&fake, business("account.locked")).unwrap();
    // Zero clears any refusal asked for.
    fake.refuse_publishes(Some("busy"));
    fake.refuse_next(0, RefusalKind::Full, "busy");
    publish(&fake, business("account.locked")).unwrap();
    assert_eq!(fake.published().len(), 3);
}

/// Publishes an alert for every failed login, keeping the ones the host refused as transient
/// to send again with the next event: a plugin that handles backpressure.
struct Alerter {
    host: HostHandle,
    pending: Vec<SecurityAlert>,
    event_type: &'static str,
}

impl Plugin for Alerter {
    const NAME: &'static str = "alerter";
    const VERSION: &'static str = "0.1.0";

    fn new(host: HostHandle, config: serde_json::Value) -> Result<Self, PluginError> {
        let event_type = match config.get("mistake").and_then(|v| v.as_bool()) {
            Some(true) => "Security Alert",
            _ => "security.alert",
        };
        Ok(Alerter {
            host,
            pending: Vec::new(),
            event_type,
        })
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        vec![Subscription::to_types(["user.login_failed"])]
    }

    fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
        let failed: UserLoginFailed = event.data()?;
        self.pending.push(SecurityAlert {
            reason: "login_failed".into(),
            severity: Severity::Low,
            user_id: failed.user_id,
            ip: failed.ip,
            message: "a failed login".into(),
            count: 1,
            window_secs: 0,
            trigger_event_id: event.id_string(),
        });
        while let Some(alert) = self.pending.first() {
            let draft = EventDraft::typed(alert)?;
            let draft = if self.event_type == "security.alert" {
                draft
            } else {
                EventDraft::new(self.event_type, Category::Business)
                    .json(serde_json::to_string(alert).map_err(PluginError::permanent)?)
            };
            match self.host.publish_with(draft) {
                Ok(()) => {
                    self.pending.remove(0);
                }
                Err(e) if e.is_transient() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

export_plugin!(Alerter);

fn failed_login(user: &str) -> TestEvent {
    TestEvent::typed(&UserLoginFailed {
        user_id: user.into(),
        ..Default::default()
    })
}

#[test]
fn a_plugin_sees_the_refusal_the_host_would_give() {
    let fake = FakeHost::new();
    let mut plugin = fake
        .load::<Alerter>(serde_json::json!({"mistake": true}))
        .unwrap();
    plugin.start().unwrap();
    let results = plugin.deliver(&failed_login("bob"));
    assert_eq!(results.len(), 1);
    let err = results[0].1.clone().unwrap_err();
    assert!(matches!(err, PluginError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("(invalid)"), "{err}");
    assert!(fake.published().is_empty());
    let refused = fake.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].kind, RefusalKind::Invalid);
    assert_eq!(refused[0].event.event_type, "Security Alert");
    // The refusal is recorded with the event the plugin was handling.
    assert!(refused[0].event.caused_by.is_some());
}

#[test]
fn a_plugin_that_keeps_what_a_busy_bus_refused_sends_it_later() {
    let fake = FakeHost::new();
    let mut plugin = fake.load::<Alerter>(serde_json::json!({})).unwrap();
    plugin.start().unwrap();
    fake.refuse_next(1, RefusalKind::Full, "busy");
    for (_, result) in plugin.deliver(&failed_login("ann")) {
        result.unwrap();
    }
    assert!(fake.published().is_empty());
    assert_eq!(fake.refused()[0].kind, RefusalKind::Full);
    for (_, result) in plugin.deliver(&failed_login("bob")) {
        result.unwrap();
    }
    let users: Vec<String> = fake
        .published()
        .iter()
        .map(|p| p.data::<SecurityAlert>().unwrap().user_id)
        .collect();
    assert_eq!(users, ["ann", "bob"]);
}

#[test]
fn a_delivered_events_type_keeps_its_category_too() {
    let fake = FakeHost::new();
    let mut plugin = fake.load::<Alerter>(serde_json::json!({})).unwrap();
    // The host interns the type of every event it delivers.
    let _ = plugin.handle(0, &TestEvent::new("billing.paid", Category::Custom, "{}"));
    let err = publish(&fake, business("billing.paid")).unwrap_err();
    assert_eq!(err.kind(), RefusalKind::Invalid);
    publish(&fake, EventDraft::new("billing.paid", Category::Custom)).unwrap();
}
