//! Misbehaving fixture plugins: the host survives each, and reports it precisely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use plugbus::{Bus, Category, DeadLetterReason, Event, EventType, Outcome};
use plugbus_host::{LoadErrorKind, ManagerError, ManagerOptions, PluginManager, PluginState};
use plugbus_tests::{crates, wait_until, PluginDir, Recorder};

const WAIT: Duration = Duration::from_secs(10);

/// A `test.*` event in the Business category, so the audit logger follows it too.
fn business(name: &str) -> Event {
    let t = EventType::new(name, Category::Business).unwrap();
    Event::builder(t).json(r#"{"n":1}"#).build().unwrap()
}

fn custom(name: &str) -> Event {
    let t = EventType::new(name, Category::Custom).unwrap();
    Event::builder(t).build().unwrap()
}

fn audit_config(dir: &PluginDir) -> String {
    format!(
        "[plugin.audit-logger]\nconfig = {{ path = \"{}\" }}\n",
        dir.scratch().join("audit.jsonl").display()
    )
}

fn options(config: &plugbus_host::Config, threshold: u32, lifecycle: Duration) -> ManagerOptions {
    let mut options = ManagerOptions::from_config(config);
    options.breaker = plugbus::BreakerConfig::new(threshold, Duration::from_secs(60));
    options.lifecycle_timeout = lifecycle;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plugin_is_reported_and_others_get_every_event() {
    let dir = PluginDir::new();
    dir.add(crates::PANICKER);
    dir.add(crates::AUDIT_LOGGER);
    let bus = Bus::builder().build().unwrap();
    let errors = Recorder::subscribe(&bus, EventType::PLUGIN_ERROR, "test-errors");
    let config = dir.config(&audit_config(&dir));
    let manager = PluginManager::with_options(
        bus.clone(),
        config.clone(),
        options(&config, 100, Duration::from_secs(5)),
    );
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);

    let n = 20;
    for _ in 0..n {
        let report = bus.publish(business("test.ping")).await.unwrap();
        let outcomes: Vec<&Outcome> = report.deliveries.iter().map(|d| &d.outcome).collect();
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert!(outcomes.contains(&&Outcome::Delivered), "{outcomes:?}");
        assert!(
            outcomes.iter().any(|o| matches!(o, Outcome::Panicked(m)
                if &**m == "panicked: fixture-panicker panics on test.ping")),
            "{outcomes:?}"
        );
    }
    let panicker = manager.status("fixture-panicker").unwrap();
    assert_eq!(panicker.state, PluginState::Running);
    assert_eq!(panicker.counters.panicked, n);
    assert_eq!(panicker.counters.delivered, 0);
    let audit = manager.status("audit-logger").unwrap();
    // plugin.started of both (the logger starts first), every ping, and the one plugin.error.
    assert_eq!(audit.counters.delivered, 2 + n + 1);
    assert_eq!(audit.counters.failed + audit.counters.panicked, 0);

    // One plugin.error for the first panic only, naming the plugin and the stage.
    assert!(errors.wait_until(WAIT, |e| !e.is_empty()).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let errors = errors.events();
    assert_eq!(errors.len(), 1);
    let payload: plugbus::payload::PluginError = errors[0]
        .data::<plugbus::payload::PluginError>()
        .unwrap()
        .into_owned();
    assert_eq!(payload.plugin.name, "fixture-panicker");
    assert_eq!(payload.stage, "handle");
    assert_eq!(
        payload.error,
        "panicked: fixture-panicker panics on test.ping"
    );

    let stats = bus.stats();
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.name == "fixture-panicker/0")
        .unwrap();
    assert_eq!(sub.totals.panicked, n);
    assert_eq!(sub.totals.errors, 0);
    assert_eq!(sub.totals.dead_lettered, n);

    // The host keeps working.
    let report = bus.publish(business("test.after")).await.unwrap();
    assert_eq!(report.delivered(), 1);
    bus.shutdown(Duration::from_secs(5)).await;
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_in_new_start_and_stop_are_errors() {
    for (stage, expect) in [
        (
            "new",
            "constructor of 'fixture-panicker' panicked: fixture-panicker panics in new",
        ),
        (
            "start",
            "plugin 'fixture-panicker' failed to start: panicked: fixture-panicker panics in start",
        ),
        (
            "stop",
            "plugin 'fixture-panicker' failed to stop: panicked: fixture-panicker panics in stop",
        ),
    ] {
        let dir = PluginDir::new();
        let path = dir.add(crates::PANICKER);
        let bus = Bus::builder().build().unwrap();
        let config = dir.config(&format!(
            "[plugin.fixture-panicker]\nconfig = {{ panic_in = \"{stage}\" }}\n"
        ));
        let manager = PluginManager::new(bus.clone(), config);
        let result = manager.load_and_start(&path).await;
        match stage {
            "new" => {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, ManagerError::Load(e)
                        if matches!(e.kind, LoadErrorKind::ConstructorPanicked { .. })),
                    "{err}"
                );
                assert!(err.to_string().ends_with(expect), "{err}");
                assert!(manager.plugins().is_empty());
            }
            "start" => {
                let err = result.unwrap_err();
                assert_eq!(err.to_string(), expect);
                let status = manager.status("fixture-panicker").unwrap();
                assert!(matches!(status.state, PluginState::Failed(_)), "{status:?}");
                assert!(status.subscriptions.is_empty());
            }
            _ => {
                result.unwrap();
                let err = manager.stop("fixture-panicker").await.unwrap_err();
                assert_eq!(err.to_string(), expect);
                assert_eq!(
                    manager.status("fixture-panicker").unwrap().state,
                    PluginState::Stopped
                );
            }
        }
        manager.shutdown().await;
        assert!(manager.plugins().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plugin_times_out_opens_its_circuit_and_blocks_only_itself() {
    let dir = PluginDir::new();
    dir.add(crates::HANGER);
    dir.add(crates::AUDIT_LOGGER);
    let bus = Bus::builder().build().unwrap();
    let text = format!(
        "{}[plugin.fixture-hanger]\ntimeout = \"200ms\"\n",
        audit_config(&dir)
    );
    let config = dir.config(&text);
    let manager = PluginManager::with_options(
        bus.clone(),
        config.clone(),
        options(&config, 3, Duration::from_millis(300)),
    );
    let report = manager.load_all().await;
    assert!(report.is_ok(), "{:?}", report.errors);
    let started = Instant::now();

    bus.emit(business("test.hang")).await.unwrap();
    for _ in 0..5 {
        bus.emit(business("test.ping")).await.unwrap();
    }
    // The other plugin gets all six at once, whatever the hanger does.
    assert!(
        wait_until(Duration::from_millis(1500), || manager
            .status("audit-logger")
            .is_some_and(|s| s.counters.delivered == 2 + 6))
        .await,
        "{:?}",
        manager.status("audit-logger")
    );
    // The hanger's six are all in flight at once (its mailbox pipelines into its queue), so all
    // six time out together after 200 ms and are dead-lettered; the circuit is then open.
    let hanger = "fixture-hanger/0";
    let hanger_letters = || -> Vec<plugbus::DeadLetter> {
        bus.dead_letters()
            .into_iter()
            .filter(|l| &*l.subscriber == hanger)
            .collect()
    };
    assert!(wait_until(WAIT, || hanger_letters().len() == 6).await);
    let letters = hanger_letters();
    assert!(
        letters.iter().all(|l| matches!(l.reason,
            DeadLetterReason::TimedOut(d) if d == Duration::from_millis(200))),
        "{:?}",
        letters.iter().map(|l| &l.reason).collect::<Vec<_>>()
    );
    assert_eq!(letters[0].event.event_type().name(), "test.hang");
    let stats = bus.stats();
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.name == hanger)
        .unwrap();
    assert_eq!(sub.breaker, Some(plugbus::BreakerState::Open));
    assert_eq!(sub.totals.timed_out, 6);
    let status = manager.status("fixture-hanger").unwrap();
    assert_eq!(status.counters.timed_out, 6);
    assert_eq!(status.counters.delivered, 0);
    // Further events for it fail fast on the open circuit.
    bus.emit(business("test.ping")).await.unwrap();
    assert!(
        wait_until(WAIT, || hanger_letters()
            .last()
            .is_some_and(|l| l.reason == DeadLetterReason::CircuitOpen))
        .await
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The bus and the other plugin keep working.
    let report = bus.publish(business("test.after")).await.unwrap();
    assert_eq!(report.delivered(), 1);

    // Stopping a hung plugin gives up after the lifecycle timeout and abandons its thread.
    let err = manager.stop("fixture-hanger").await.unwrap_err();
    assert!(
        matches!(err, ManagerError::TimedOut { stage: "stop", .. }),
        "{err}"
    );
    assert!(matches!(
        manager.status("fixture-hanger").unwrap().state,
        PluginState::Failed(_)
    ));
    bus.shutdown(Duration::from_secs(2)).await;
    manager.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_fails_its_deliveries_only() {
    let dir = PluginDir::new();
    let path = dir.add(crates::FAILER);
    let bus = Bus::builder().build().unwrap();
    let others = Recorder::subscribe(
        &bus,
        plugbus::Interest::pattern("test.*").unwrap(),
        "others",
    );
    let config = dir.config("");
    let manager = PluginManager::with_options(
        bus.clone(),
        config.clone(),
        options(&config, 3, Duration::from_secs(5)),
    );
    manager.load_and_start(&path).await.unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let report = bus.publish(custom("test.fail")).await.unwrap();
        outcomes.push(
            report
                .deliveries
                .iter()
                .map(|d| d.outcome.clone())
                .collect::<Vec<_>>(),
        );
    }
    for (i, delivery) in outcomes.iter().enumerate() {
        assert_eq!(delivery.len(), 2);
        assert!(delivery.contains(&Outcome::Delivered));
        let failer = delivery.iter().find(|o| !o.is_delivered()).unwrap();
        if i < 3 {
            assert!(
                matches!(failer, Outcome::Failed(e) if !e.is_retryable()
                    && e.message() == "permanent: fixture-failer refuses test.fail"),
                "{failer:?}"
            );
        } else {
            assert_eq!(failer, &Outcome::CircuitOpen);
        }
    }
    assert_eq!(others.events().len(), 5);
    let status = manager.status("fixture-failer").unwrap();
    assert_eq!(status.counters.failed, 3);
    assert_eq!(status.state, PluginState::Running);
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 5);
    assert!(matches!(&letters[0].reason, DeadLetterReason::Error(m)
        if m == "permanent: fixture-failer refuses test.fail"));
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_into_a_slow_subscriber_is_held_back_not_refused() {
    use std::sync::Arc;
    let dir = PluginDir::new();
    let path = dir.add(crates::FLOODER);
    // Small mailboxes and a slow subscriber: the flood overflows the mailbox, and the plugin's
    // publishes wait (the `Wait` policy), as any publisher's would; none is refused.
    let bus = Bus::builder().mailbox_capacity(8).build().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counter = Arc::clone(&seen);
    bus.subscribe(EventType::new("test.flood", Category::Custom).unwrap())
        .name("slow-flood")
        .handle_async(move |e: Event| {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let n = serde_json::from_slice::<serde_json::Value>(e.data_json().unwrap())
                    .unwrap()["n"]
                    .as_u64()
                    .unwrap();
                counter.lock().unwrap().push(n);
            }
        })
        .unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    manager.load_and_start(&path).await.unwrap();

    let report = bus.publish(custom("test.trigger")).await.unwrap();
    assert!(
        report.all_delivered(),
        "the plugin's delivery succeeded: {report:?}"
    );
    assert!(wait_until(WAIT, || seen.lock().unwrap().len() == 100).await);
    assert_eq!(
        *seen.lock().unwrap(),
        (0..100).collect::<Vec<u64>>(),
        "in publish order"
    );
    assert!(
        wait_until(WAIT, || manager
            .status("fixture-flooder")
            .is_some_and(|s| s.counters.published == 100))
        .await
    );
    let status = manager.status("fixture-flooder").unwrap();
    assert_eq!(status.counters.refused(), 0, "{:?}", status.counters);
    assert_eq!(status.counters.delivered, 1);
    let stats = bus.stats();
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.name == "slow-flood")
        .unwrap();
    assert_eq!((sub.totals.delivered, sub.totals.rejected), (100, 0));
    manager.shutdown().await;
    let account = bus.shutdown(Duration::from_secs(5)).await;
    assert!(account.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flood_is_published_when_there_is_room() {
    let dir = PluginDir::new();
    let path = dir.add(crates::FLOODER);
    let bus = Bus::builder().mailbox_capacity(1024).build().unwrap();
    let flood = Recorder::subscribe(
        &bus,
        EventType::new("test.flood", Category::Custom).unwrap(),
        "flood",
    );
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    manager.load_and_start(&path).await.unwrap();
    for _ in 0..3 {
        bus.emit(custom("test.trigger")).await.unwrap();
    }
    assert!(flood.wait_until(WAIT, |e| e.len() == 300).await);
    // Subscribers can see an event a moment before the plugin's counters move (the plugin thread
    // counts a publish after the bus took it, a delivery after it answered): wait for them.
    assert!(
        wait_until(WAIT, || manager.status("fixture-flooder").is_some_and(
            |s| s.counters.published == 300 && s.counters.delivered == 3
        ))
        .await,
        "{:?}",
        manager.status("fixture-flooder").map(|s| s.counters)
    );
    let status = manager.status("fixture-flooder").unwrap();
    assert_eq!(status.counters.published, 300);
    assert_eq!(status.counters.refused(), 0);
    assert_eq!(status.counters.delivered, 3);
    // Every flood event names its trigger as cause.
    let triggers: std::collections::HashSet<_> = flood
        .events()
        .iter()
        .map(|e| e.causation_id().unwrap())
        .collect();
    assert_eq!(triggers.len(), 3);
    let account = bus.shutdown(Duration::from_secs(5)).await;
    assert!(account.is_balanced());
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_interface_version_is_rejected_and_the_rest_load() {
    let dir = PluginDir::new();
    let old = dir.add(crates::OLD_ABI);
    dir.add(crates::FAILER);
    let bus = Bus::builder().build().unwrap();
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    let report = manager.load_all().await;
    assert_eq!(report.started, ["fixture-failer"]);
    assert_eq!(report.errors.len(), 1);
    let ManagerError::Load(err) = &report.errors[0] else {
        panic!("{:?}", report.errors[0]);
    };
    assert_eq!(err.path, old);
    assert!(
        matches!(
            err.kind,
            LoadErrorKind::InterfaceVersion {
                plugin: (0, 0),
                host: plugbus_plugin_api::ABI_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "plugin '{}': interface version 0.0 is too old",
            old.display()
        )),
        "{err}"
    );
    let inspection = plugbus_host::inspect(&old);
    assert!(!inspection.is_compatible());
    assert_eq!(inspection.meta.unwrap().name, "fixture-old-abi");
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentrant_publishing_carries_causation_over_two_levels() {
    let dir = PluginDir::new();
    let path = dir.add(crates::REENTRANT);
    let bus = Bus::builder().build().unwrap();
    let echoes = Recorder::subscribe(
        &bus,
        plugbus::Interest::pattern("test.*").unwrap(),
        "echoes",
    );
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    manager.load_and_start(&path).await.unwrap();
    let login = Event::new(plugbus::payload::UserLogin {
        user_id: "alice".into(),
        ..Default::default()
    })
    .unwrap();
    let login_id = login.id();
    bus.emit(login).await.unwrap();
    assert!(echoes.wait_until(WAIT, |e| e.len() == 2).await);
    let events = echoes.events();
    assert_eq!(echoes.types(), ["test.echo", "test.echo2"]);
    let (echo, echo2) = (&events[0], &events[1]);
    assert_eq!(echo.source(), "fixture-reentrant");
    assert_eq!(echo.causation_id(), Some(login_id));
    assert_eq!(echo.correlation_id(), Some(login_id));
    assert_eq!(echo2.causation_id(), Some(echo.id()));
    assert_eq!(echo2.correlation_id(), Some(login_id));
    // The plugin thread counts a publish after the bus took it, so a subscriber may see the
    // event a moment before the counter moves: wait for both counts.
    assert!(
        wait_until(WAIT, || manager.status("fixture-reentrant").is_some_and(
            |s| s.counters.published == 2 && s.counters.delivered == 2
        ))
        .await,
        "{:?}",
        manager.status("fixture-reentrant").map(|s| s.counters)
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_filters_and_handler_indices_are_honoured() {
    let dir = PluginDir::new();
    let path = dir.add(crates::FILTERED);
    let bus = Bus::builder().build().unwrap();
    let seen = Recorder::subscribe(
        &bus,
        EventType::new("test.seen", Category::Custom).unwrap(),
        "seen",
    );
    let manager = PluginManager::new(bus.clone(), dir.config(""));
    manager.load_and_start(&path).await.unwrap();
    let status = manager.status("fixture-filtered").unwrap();
    assert_eq!(
        status.subscriptions,
        ["fixture-filtered/3", "fixture-filtered/7"]
    );

    let filtered = EventType::new("test.filtered", Category::Custom).unwrap();
    for keep in ["yes", "no", "yes"] {
        let event = Event::builder(filtered)
            .json(&format!(r#"{{"keep":"{keep}"}}"#))
            .build()
            .unwrap();
        let report = bus.publish(event).await.unwrap();
        // A filtered-out event is a successful no-op for the bus.
        assert!(report.all_delivered(), "{report:?}");
    }
    bus.publish(custom("test.other")).await.unwrap();
    bus.publish(custom("test.unrelated")).await.unwrap();

    assert!(seen.wait_until(WAIT, |e| e.len() == 3).await);
    let handled: Vec<(u64, String)> = seen
        .events()
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(e.data_json().unwrap()).unwrap();
            (
                v["handler"].as_u64().unwrap(),
                v["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        handled,
        [
            (3, "test.filtered".to_owned()),
            (3, "test.filtered".to_owned()),
            (7, "test.other".to_owned())
        ]
    );
    let counters = manager.status("fixture-filtered").unwrap().counters;
    assert_eq!(counters.delivered, 3);
    assert_eq!(counters.skipped, 1);
    assert_eq!(counters.published, 3);
    manager.shutdown().await;
}
