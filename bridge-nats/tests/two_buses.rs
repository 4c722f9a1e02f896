//! Two buses in one process, each with its bridge, against a real `nats-server` (started here
//! on a free loopback port; the test is skipped, saying so, when no binary is found).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use plugbus::{Bus, Category, Event, EventId, EventType, OriginKind};
use plugbus_bridge_nats::local_server::LocalServer;
use plugbus_bridge_nats::{NatsBridge, NatsConfig, Outbox};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn server() -> Option<LocalServer> {
    let s = LocalServer::start().expect("starting nats-server");
    if s.is_none() {
        eprintln!(
            "SKIPPED: no nats-server found (install Debian's nats-server, or set NATS_SERVER)"
        );
    }
    s
}

fn config(url: &str, durable: &str, dir: &Path, forward: &[&str], receive: &[&str]) -> NatsConfig {
    let mut c = NatsConfig::new(url, durable).with_outbox(dir.join(format!("{durable}.sqlite")));
    c.forward = forward.iter().map(|s| s.to_string()).collect();
    c.receive = receive.iter().map(|s| s.to_string()).collect();
    c
}

/// Starts a bridge for `bus` with [`config`]'s settings.
async fn start(
    bus: &Bus,
    url: &str,
    durable: &str,
    dir: &Path,
    forward: &[&str],
    receive: &[&str],
) -> NatsBridge {
    NatsBridge::builder(config(url, durable, dir, forward, receive))
        .start(bus)
        .await
        .unwrap()
}

/// Host A's bus forwarding `user.*`, host B's bridge receiving it, and what B's bus gets.
async fn user_events_a_to_b(url: &str, dir: &Path) -> (Bus, NatsBridge, NatsBridge, Seen) {
    let (a, b) = (
        Bus::builder().build().unwrap(),
        Bus::builder().build().unwrap(),
    );
    let bridge_a = start(&a, url, "host-a", dir, &["user.*"], &[]).await;
    let bridge_b = start(&b, url, "host-b", dir, &[], &["user.*"]).await;
    let at_b = Seen::on(&b, "user.*", "count");
    (a, bridge_a, bridge_b, at_b)
}

/// Publishes `body` straight onto the stream as host A's bridge would, with message id
/// `msg_id`, until JetStream acknowledges it (the stream may still be being made).
async fn publish_as_host_a(js: &async_nats::jetstream::Context, msg_id: &str, body: &bytes::Bytes) {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", msg_id);
    h.insert("Plugbus-Host", "host-a");
    loop {
        if let Ok(ack) = js
            .publish_with_headers("plugbus.user.login", h.clone(), body.clone())
            .await
        {
            if ack.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn login_failed() -> EventType {
    EventType::new(plugbus::types::USER_LOGIN_FAILED, Category::Business).unwrap()
}

fn event(t: EventType, n: usize) -> Event {
    Event::builder(t)
        .json(&format!(r#"{{"n":{n}}}"#))
        .build()
        .unwrap()
}

/// Counts ids seen by a subscription, with the origin of each.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<EventId, (u32, String)>>>);

impl Seen {
    /// A subscription of `bus` to `pattern`, named `name`, recording what it gets.
    fn on(bus: &Bus, pattern: &str, name: &str) -> Seen {
        let seen = Seen::default();
        let s = seen.clone();
        bus.subscribe_pattern(pattern)
            .name(name)
            .handle(move |e: &Event| s.record(e))
            .unwrap();
        seen
    }

    fn record(&self, e: &Event) {
        let mut m = self.0.lock();
        let entry = m
            .entry(e.id())
            .or_insert((0, e.origin().as_str().to_owned()));
        entry.0 += 1;
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
    fn max_count(&self) -> u32 {
        self.0.lock().values().map(|v| v.0).max().unwrap_or(0)
    }
    fn origins(&self) -> Vec<String> {
        let mut o: Vec<String> = self.0.lock().values().map(|v| v.1.clone()).collect();
        o.sort();
        o.dedup();
        o
    }
    fn ids(&self) -> Vec<EventId> {
        self.0.lock().keys().copied().collect()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_crosses_and_its_alerts_come_back_each_once() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        Bus::builder().build().unwrap(),
        Bus::builder().build().unwrap(),
    );
    // A receives everything (its own events must be dropped by host id); B forwards
    // everything (the remote events it received must not go back out).
    let bridge_a = start(&a, &server.url(), "host-a", dir.path(), &["user.*"], &["*"]).await;
    let bridge_b = start(&b, &server.url(), "host-b", dir.path(), &["*"], &["user.*"]).await;

    // B: an enhancer answering each failed login with an alert caused by it.
    let at_b = Seen::default();
    let (seen, bus) = (at_b.clone(), b.clone());
    b.subscribe(login_failed())
        .name("enhancer")
        .handle_async(move |e: Event| {
            seen.record(&e);
            let bus = bus.clone();
            async move {
                let alert = Event::builder(EventType::SECURITY_ALERT)
                    .json(r#"{"reason":"brute force"}"#)
                    .causation_id(e.id())
                    .build()
                    .unwrap();
                bus.emit(alert).await.unwrap();
            }
        })
        .unwrap();
    // A: an auditor of alerts, and a watch on user events coming back.
    let alerts_at_a = Seen::default();
    let s = alerts_at_a.clone();
    a.subscribe(EventType::SECURITY_ALERT)
        .name("audit")
        .handle(move |e: &Event| s.record(e))
        .unwrap();
    let users_at_a = Seen::default();
    let users_remote = users_at_a.clone();
    a.subscribe_pattern("user.*")
        .name("user-watch")
        .handle(move |e: &Event| {
            if e.origin().kind() == OriginKind::Remote {
                users_remote.record(e);
            }
        })
        .unwrap();

    const N: usize = 300;
    let mut sent = Vec::new();
    for n in 0..N {
        let e = event(login_failed(), n);
        sent.push(e.id());
        a.emit(e).await.unwrap();
    }
    wait_for(
        "B's enhancer to see the burst",
        Duration::from_secs(30),
        || at_b.len() == N,
    )
    .await;
    wait_for(
        "A's audit to see every alert",
        Duration::from_secs(30),
        || alerts_at_a.len() == N,
    )
    .await;
    // Let any stray copy arrive before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(at_b.len(), N);
    assert_eq!(at_b.max_count(), 1, "a login reached B's enhancer twice");
    assert_eq!(at_b.origins(), vec!["remote:host-a".to_owned()]);
    let mut got = at_b.ids();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "B got exactly the events A sent");
    assert_eq!(alerts_at_a.len(), N);
    assert_eq!(
        alerts_at_a.max_count(),
        1,
        "an alert reached A's audit twice"
    );
    assert_eq!(alerts_at_a.origins(), vec!["remote:host-b".to_owned()]);
    assert_eq!(
        users_at_a.len(),
        0,
        "A received user events back: the loop guard failed"
    );

    // Idle, neither host owes the broker an ack: a batch of acks is settled as soon as no
    // further message waits, and one "all up to here" ack covers the batch.
    for (host, receive) in [("host-a", &["*"][..]), ("host-b", &["user.*"][..])] {
        let forward: &[&str] = &["*"];
        let report = plugbus_bridge_nats::inspect(&config(
            &server.url(),
            host,
            dir.path(),
            forward,
            receive,
        ))
        .await;
        let consumer = report.jetstream.unwrap().consumer.unwrap();
        assert_eq!(consumer.num_ack_pending, 0, "{host}: {consumer:?}");
        assert_eq!(consumer.num_pending, 0, "{host}: {consumer:?}");
        assert_eq!(consumer.num_redelivered, 0, "{host}: {consumer:?}");
    }

    let sa = bridge_a.shutdown(Duration::from_secs(5)).await;
    let sb = bridge_b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sa.forwarded, N as u64, "{sa:?}");
    // Every message handled was acked, in batches.
    assert_eq!(sa.acked, sa.received + sa.own, "{sa:?}");
    assert_eq!(sb.acked, sb.received + sb.own, "{sb:?}");
    assert_eq!(sa.outbox_depth, 0, "{sa:?}");
    assert_eq!(
        sa.own, N as u64,
        "A's own events dropped on receipt: {sa:?}"
    );
    assert_eq!(sa.received, N as u64, "{sa:?}");
    assert_eq!(sb.received, N as u64, "{sb:?}");
    assert_eq!(
        sb.forwarded, N as u64,
        "B forwarded its alerts only: {sb:?}"
    );
    assert_eq!(sb.consumer_lag, Some(0), "{sb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_reaches_each_subscription_once() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let b = Bus::builder().build().unwrap();
    let bridge = start(&b, &server.url(), "host-b", dir.path(), &[], &["user.*"]).await;
    let seen = Seen::on(&b, "user.*", "one");
    // The same envelope twice under different message ids (as a resend after the stream's
    // duplicate window would be), straight onto the stream.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    wait_for("the stream", Duration::from_secs(10), || {
        bridge.stats().outbox_depth == 0
    })
    .await;
    let e = event(EventType::USER_LOGIN, 1);
    let body = bytes::Bytes::from(e.to_json().unwrap());
    for msg_id in ["first", "second"] {
        publish_as_host_a(&js, msg_id, &body).await;
    }
    wait_for("the event", Duration::from_secs(10), || seen.len() == 1).await;
    wait_for("the copy to be dropped", Duration::from_secs(10), || {
        bridge.stats().duplicates == 1
    })
    .await;
    assert_eq!(seen.max_count(), 1);
    let stats = bridge.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats.received, stats.duplicates, stats.acked),
        (1, 1, 2),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_and_restarted_mid_stream_loses_and_repeats_nothing() {
    let Some(mut server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, bridge_a, bridge_b, at_b) = user_events_a_to_b(&server.url(), dir.path()).await;
    const N: usize = 3000;
    let mut sent = Vec::new();
    // While the server is down, what A forwards waits in its outbox (a row leaves it only
    // when JetStream acks it): seeing it there is seeing the outage noticed, whatever the
    // timing of the relay's retries.
    let mut waited_in_outbox = 0u64;
    for n in 0..N {
        let e = event(EventType::USER_LOGIN, n);
        sent.push(e.id());
        a.emit(e).await.unwrap();
        if n == N / 3 {
            server.kill();
        }
        if n == 2 * N / 3 {
            wait_for("A's outbox to hold events", Duration::from_secs(20), || {
                bridge_a.stats().outbox_depth > 0
            })
            .await;
            waited_in_outbox = bridge_a.stats().outbox_depth;
            server.restart().unwrap();
        }
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_for("B to get every event", Duration::from_secs(60), || {
        at_b.len() == N
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(at_b.max_count(), 1, "an event reached B twice");
    let mut got = at_b.ids();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    let sa = bridge_a.shutdown(Duration::from_secs(5)).await;
    let _ = bridge_b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sa.outbox_depth, 0, "{sa:?}");
    assert!(
        waited_in_outbox > 0,
        "nothing waited in the outbox during the outage: {sa:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_event_is_published_only_if_its_transaction_commits() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        Bus::builder().build().unwrap(),
        Bus::builder().build().unwrap(),
    );
    let ca = config(&server.url(), "host-a", dir.path(), &[], &[]);
    let outbox = ca.outbox_path();
    let bridge_a = NatsBridge::builder(ca).start(&a).await.unwrap();
    let bridge_b = start(&b, &server.url(), "host-b", dir.path(), &[], &["data.*"]).await;
    let (local, remote) = (Seen::default(), Seen::default());
    let s = local.clone();
    a.subscribe_pattern("data.*")
        .name("local")
        .handle(move |e: &Event| s.record(e))
        .unwrap();
    let s = remote.clone();
    b.subscribe_pattern("data.*")
        .name("remote")
        .handle(move |e: &Event| s.record(e))
        .unwrap();

    let mut conn = Outbox::connect(&outbox).unwrap();
    conn.execute_batch("CREATE TABLE accounts (name TEXT)")
        .unwrap();
    let rolled_back = event(EventType::DATA_CREATED, 1);
    let committed = event(EventType::DATA_CREATED, 2);
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO accounts VALUES ('mallory')", [])
        .unwrap();
    Outbox::stage(&tx, &rolled_back).unwrap();
    tx.rollback().unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO accounts VALUES ('alice')", [])
        .unwrap();
    Outbox::stage(&tx, &committed).unwrap();
    tx.commit().unwrap();

    wait_for("the committed event on B", Duration::from_secs(20), || {
        remote.len() == 1
    })
    .await;
    wait_for("the committed event on A", Duration::from_secs(5), || {
        local.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(remote.ids(), vec![committed.id()]);
    assert_eq!(local.ids(), vec![committed.id()]);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(Outbox::staged_count(&conn).unwrap(), 0);
    let sa = bridge_a.shutdown(Duration::from_secs(5)).await;
    let _ = bridge_b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (sa.staged, sa.forwarded, sa.outbox_depth),
        (1, 1, 0),
        "{sa:?}"
    );
}

/// A host whose input ends at once stops receiving right after the bridge starts, perhaps
/// before the stream was ever set up: forwarding must still drain the outbox at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_receiving_at_once_still_drains_the_outbox() {
    let Some(server) = server() else { return };
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::builder().build().unwrap();
        let mut bridge = start(
            &bus,
            &server.url(),
            &format!("host-quick-{round}"),
            dir.path(),
            &["user.*"],
            &["data.*"],
        )
        .await;
        for n in 0..50 {
            bus.emit(event(EventType::USER_LOGIN, n)).await.unwrap();
        }
        bridge.stop_receiving().await;
        let stats = bridge.shutdown(Duration::from_secs(10)).await;
        assert_eq!(stats.outbox_depth, 0, "round {round}: {stats:?}");
        assert_eq!(stats.forwarded, 50, "round {round}: {stats:?}");
    }
}

/// A receiving host killed after delivering events and before JetStream confirmed its ack
/// leaves their ids in its outbox file (`plugbus_inbox_seen`, written before every ack). Here
/// that file is made by hand, as such a host leaves it; the same envelopes then come again
/// from the stream, as the redelivery after the restart does. Only the one never delivered
/// reaches the bus, and the ids are forgotten once the new acks are confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_delivered_before_a_kill_are_not_delivered_again_after_the_restart() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..3).map(|n| event(EventType::USER_LOGIN, n)).collect();
    let outbox = dir.path().join("host-b.sqlite");
    {
        let conn = Outbox::connect(&outbox).unwrap();
        for (n, e) in events[..2].iter().enumerate() {
            conn.execute(
                "INSERT INTO plugbus_inbox_seen (n, event_id) VALUES (?1, ?2)",
                (n as i64 + 1, e.id().to_string()),
            )
            .unwrap();
        }
    }
    let b = Bus::builder().build().unwrap();
    let seen = Seen::on(&b, "user.*", "one");
    let bridge = start(&b, &server.url(), "host-b", dir.path(), &[], &["user.*"]).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for e in &events {
        let body = bytes::Bytes::from(e.to_json().unwrap());
        publish_as_host_a(&js, &e.id().to_string(), &body).await;
    }
    wait_for("the new event", Duration::from_secs(10), || seen.len() == 1).await;
    wait_for(
        "the two redeliveries to be dropped",
        Duration::from_secs(10),
        || bridge.stats().duplicates == 2,
    )
    .await;
    assert_eq!(seen.ids(), vec![events[2].id()]);
    wait_for("every ack to be confirmed", Duration::from_secs(10), || {
        bridge.stats().acked == 3
    })
    .await;
    let stats = bridge.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats.received, stats.duplicates), (1, 2), "{stats:?}");
    let conn = Outbox::connect(&outbox).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM plugbus_inbox_seen", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        left, 0,
        "ids stay remembered after their acks were confirmed"
    );
}

/// While a host receives, the ids it delivered are written before each ack and removed after
/// the server confirms it: after a burst, nothing is left, and every message was acked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_ids_are_forgotten_once_their_acks_are_confirmed() {
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, bridge_a, bridge_b, seen) = user_events_a_to_b(&server.url(), dir.path()).await;
    const N: usize = 2_000;
    for n in 0..N {
        a.emit(event(EventType::USER_LOGIN, n)).await.unwrap();
    }
    wait_for("host B", Duration::from_secs(30), || seen.len() == N).await;
    wait_for("every ack to be confirmed", Duration::from_secs(10), || {
        bridge_b.stats().acked == N as u64
    })
    .await;
    assert_eq!(seen.max_count(), 1);
    bridge_a.shutdown(Duration::from_secs(5)).await;
    bridge_b.shutdown(Duration::from_secs(5)).await;
    let conn = Outbox::connect(dir.path().join("host-b.sqlite")).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM plugbus_inbox_seen", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_stream_refuses_wait_in_the_outbox_until_it_takes_them() {
    use async_nats::jetstream::stream::DiscardPolicy;
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = Bus::builder().build().unwrap();
    let bridge_a = start(&a, &server.url(), "host-a", dir.path(), &["user.*"], &[]).await;
    a.emit(event(EventType::USER_LOGIN, 0)).await.unwrap();
    wait_for(
        "the first event to be forwarded",
        Duration::from_secs(20),
        || bridge_a.stats().forwarded == 1,
    )
    .await;
    // The stream takes 5 more, then refuses ("maximum messages exceeded").
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut stream = js.get_stream("PLUGBUS").await.unwrap();
    let mut limited = stream.info().await.unwrap().config.clone();
    limited.max_messages = 6;
    limited.discard = DiscardPolicy::New;
    js.update_stream(&limited).await.unwrap();
    let mut sent = Vec::new();
    for n in 1..=20 {
        let e = event(EventType::USER_LOGIN, n);
        sent.push(e.id());
        a.emit(e).await.unwrap();
    }
    wait_for("the refusals", Duration::from_secs(20), || {
        let s = bridge_a.stats();
        s.publish_errors > 0 && s.forwarded == 6 && s.outbox_depth == 15
    })
    .await;
    let pending = Outbox::pending_ids(&Outbox::connect(bridge_a.outbox_path()).unwrap()).unwrap();
    assert_eq!(pending, sent[5..], "the refused events wait in order");
    // Room again: every waiting event goes, once, in order.
    limited.max_messages = -1;
    js.update_stream(&limited).await.unwrap();
    assert!(
        bridge_a.flush(Duration::from_secs(20)).await,
        "{:?}",
        bridge_a.stats()
    );
    let s = bridge_a.stats();
    assert_eq!((s.forwarded, s.outbox_depth), (21, 0), "{s:?}");
    assert_eq!(stream.info().await.unwrap().state.messages, 21);
    let last = stream
        .get_last_raw_message_by_subject("plugbus.user.login")
        .await
        .unwrap();
    let last = Event::from_json(&last.payload).unwrap();
    assert_eq!(last.id(), sent[19]);
    bridge_a.shutdown(Duration::from_secs(5)).await;
}
