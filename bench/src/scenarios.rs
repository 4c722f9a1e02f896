//! The plugbus side of each scenario.

use super::baselines::counting_handler;
use super::{rss, wait_count, BoxFuture, Side};
use anyhow::Context as _;
use plugbus::payload::UserLogin;
use plugbus::{Bus, Category, Event, EventType, Overflow, TypedEvent};
use plugbus_host::{Config, PluginManager};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The prebuilt event of the dispatch scenarios: `user.login`, no payload.
pub(super) fn prebuilt_event() -> anyhow::Result<Event> {
    Ok(Event::builder(EventType::USER_LOGIN)
        .source("bench")
        .build()?)
}

/// A new event as the "full path" builds it: v7 id, two metadata entries (`request_id`,
/// `tenant`).
#[inline]
pub(super) fn full_event() -> anyhow::Result<Event> {
    Ok(Event::builder(EventType::USER_LOGIN)
        .source("bench")
        .request_id("req-1")
        .metadata("tenant", "acme")
        .build()?)
}

/// `publish` to N subscriptions with sync handlers; a prebuilt event, or a new one each time.
pub(super) struct PublishSync {
    bus: Bus,
    event: Option<Event>,
}

impl PublishSync {
    /// `fresh`: build a new event per publish (the full path) instead of cloning one.
    pub(super) fn new(n: usize, fresh: bool) -> anyhow::Result<PublishSync> {
        let bus = Bus::builder().build()?;
        for _ in 0..n {
            bus.subscribe(EventType::USER_LOGIN)
                .handle(counting_handler())?;
        }
        let event = if fresh { None } else { Some(prebuilt_event()?) };
        Ok(PublishSync { bus, event })
    }
}

impl Side for PublishSync {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            match &self.event {
                Some(event) => {
                    for _ in 0..iters {
                        black_box(self.bus.publish(event).await?);
                    }
                }
                None => {
                    for _ in 0..iters {
                        black_box(self.bus.publish(full_event()?).await?);
                    }
                }
            }
            Ok(start.elapsed())
        })
    }
}

/// `publish` to N async handlers that complete at once.
pub(super) struct PublishAsync {
    bus: Bus,
    event: Event,
}

impl PublishAsync {
    pub(super) fn new(n: usize, event: Event) -> anyhow::Result<PublishAsync> {
        let bus = Bus::builder().build()?;
        for _ in 0..n {
            let c = Arc::new(AtomicU64::new(0));
            bus.subscribe(EventType::USER_LOGIN)
                .handle_async(move |e: Event| {
                    let c = Arc::clone(&c);
                    async move {
                        black_box(&e);
                        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    }
                })?;
        }
        Ok(PublishAsync { bus, event })
    }
}

impl Side for PublishAsync {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(self.bus.publish(self.event.clone()).await?);
            }
            Ok(start.elapsed())
        })
    }
}

/// `emit` from one publisher to one subscription with a sync handler, waiting at the end until
/// the handler has seen every event (as the mpsc baseline waits for its consumer).
pub(super) struct EmitOne {
    bus: Bus,
    event: Event,
    handled: Arc<AtomicU64>,
    sent: u64,
}

impl EmitOne {
    pub(super) fn new(event: Event) -> anyhow::Result<EmitOne> {
        let bus = Bus::builder().mailbox_capacity(1024).build()?;
        let handled = Arc::new(AtomicU64::new(0));
        let h = Arc::clone(&handled);
        bus.subscribe(EventType::USER_LOGIN)
            .handle(move |e: &Event| {
                black_box(e);
                h.fetch_add(1, Ordering::Release);
            })?;
        Ok(EmitOne {
            bus,
            event,
            handled,
            sent: 0,
        })
    }
}

impl Side for EmitOne {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                self.bus.emit(self.event.clone()).await?;
            }
            self.sent += iters;
            wait_count(&self.handled, self.sent).await?;
            Ok(start.elapsed())
        })
    }
}

/// Creating an event: v7 id, two metadata entries.
pub(super) struct EventNew;

impl Side for EventNew {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(full_event()?);
            }
            Ok(start.elapsed())
        })
    }
}

/// Many types: `types` exact subscriptions, one per type, plus `patterns` pattern
/// subscriptions, each covering an equal share of the types. Events go round-robin over every
/// type, so each `publish` reaches exactly two handlers (its type's and its group's pattern).
pub(super) struct Scale {
    bus: Bus,
    events: Vec<Event>,
    next: usize,
}

/// Deliveries per event in [`Scale`].
pub(super) const SCALE_DELIVERIES: u64 = 2;

impl Scale {
    pub(super) fn new(types: usize, patterns: usize) -> anyhow::Result<Scale> {
        let patterns = patterns.max(1);
        let bus = Bus::builder().build()?;
        let root = format!("bench{types}");
        let per_group = types.div_ceil(patterns);
        let mut events = Vec::with_capacity(types);
        for i in 0..types {
            let name = format!("{root}.g{}.t{}", i / per_group, i % per_group);
            let t = EventType::new(&name, Category::Custom)
                .with_context(|| format!("event type {name}"))?;
            bus.subscribe(t).handle(counting_handler())?;
            events.push(Event::builder(t).source("bench").build()?);
        }
        for g in 0..patterns {
            bus.subscribe_pattern(&format!("{root}.g{g}.*"))
                .handle(counting_handler())?;
        }
        Ok(Scale {
            bus,
            events,
            next: 0,
        })
    }
}

impl Side for Scale {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                let event = &self.events[self.next];
                self.next = (self.next + 1) % self.events.len();
                let report = self.bus.publish(event.clone()).await?;
                debug_assert_eq!(report.deliveries.len() as u64, SCALE_DELIVERIES);
                black_box(report);
            }
            Ok(start.elapsed())
        })
    }
}

// -------------------------------------------------------------------------------------------
// plugins
// -------------------------------------------------------------------------------------------

/// The counter plugin's file name, and its second build's (another plugin name).
pub(super) const COUNTER_LIB: &str = "libplugbus_fixture_counter.so";
pub(super) const COUNTER_2_LIB: &str = "libplugbus_fixture_counter_2.so";

/// Times a login payload was serialized to JSON, counted by [`CountedLogin`].
static SERIALIZED: AtomicU64 = AtomicU64::new(0);

/// A `user.login` payload that counts its own serializations, so the bench can check that
/// the JSON is made once per event however many plugins receive it.
#[derive(Debug, Clone)]
struct CountedLogin(UserLogin);

impl Serialize for CountedLogin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SERIALIZED.fetch_add(1, Ordering::Relaxed);
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CountedLogin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UserLogin::deserialize(d).map(CountedLogin)
    }
}

impl TypedEvent for CountedLogin {
    const EVENT_TYPE: &'static str = UserLogin::EVENT_TYPE;
    const CATEGORY: Category = UserLogin::CATEGORY;
}

/// The login payload whose JSON is `LOGIN_JSON_BYTES` long.
pub(super) const LOGIN_JSON_BYTES: usize = 257;

fn login_payload() -> anyhow::Result<UserLogin> {
    let mut login = UserLogin {
        user_id: "user-000042@example.com".into(),
        ip: "203.0.113.42".into(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) bench/1.0 ".into(),
        session_id: "s-7f3a9c2e-5b1d-4e8f-a6c0-5d2b8e1f9a07".into(),
        method: "password".into(),
    };
    let len = serde_json::to_vec(&login)?.len();
    let fill = LOGIN_JSON_BYTES
        .checked_sub(len)
        .context("login payload already longer than 257 bytes")?;
    login.user_agent.push_str(&"x".repeat(fill));
    let got = serde_json::to_vec(&login)?.len();
    anyhow::ensure!(
        got == LOGIN_JSON_BYTES,
        "login payload is {got} bytes, not 257"
    );
    Ok(login)
}

/// `emit` of a new 257-byte login event per iteration through the real plugin path: a bus,
/// a [`PluginManager`], and one or two counter plugins loaded from `.so` files. Each round
/// waits until every plugin has answered for every event.
pub(super) struct PluginEmit {
    bus: Bus,
    manager: PluginManager,
    names: Vec<String>,
    login: UserLogin,
    expected: u64,
    /// Events emitted and serializations seen, over every run.
    pub(super) events: u64,
    pub(super) serialized: u64,
}

impl PluginEmit {
    pub(super) async fn new(dir: &Path, libs: &[&str]) -> anyhow::Result<PluginEmit> {
        Self::with_isolation(dir, libs, plugbus_host::Isolation::InProcess).await
    }

    /// As [`PluginEmit::new`], the plugins running as `isolation` says (in a child process
    /// each with [`Isolation::Process`](plugbus_host::Isolation::Process)).
    pub(super) async fn with_isolation(
        dir: &Path,
        libs: &[&str],
        isolation: plugbus_host::Isolation,
    ) -> anyhow::Result<PluginEmit> {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("plugin directory '{}'", dir.display()))?;
        let mut config = Config::default();
        config.plugins.directories = vec![dir.clone()];
        config.plugins.isolation = isolation;
        let bus = plugbus_host::bus_builder(&config.bus)
            .build()
            .context("building the bus")?;
        let manager = PluginManager::new(bus.clone(), config);
        let mut names = Vec::new();
        for lib in libs {
            let path: PathBuf = dir.join(lib);
            let name = manager
                .load_and_start(&path)
                .await
                .with_context(|| format!("loading '{}'", path.display()))?;
            names.push(name);
        }
        Ok(PluginEmit {
            bus,
            manager,
            names,
            login: login_payload()?,
            expected: 0,
            events: 0,
            serialized: 0,
        })
    }

    /// `handle` calls the plugins answered `Ok`, summed.
    fn delivered(&self) -> u64 {
        self.names
            .iter()
            .filter_map(|n| self.manager.status(n))
            .map(|s| s.counters.delivered)
            .sum()
    }

    pub(super) async fn close(self) {
        self.bus.wait_idle(Duration::from_secs(10)).await;
        let _ = self.bus.shutdown(Duration::from_secs(10)).await;
        self.manager.shutdown().await;
    }
}

impl Side for PluginEmit {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let serialized_before = SERIALIZED.load(Ordering::Relaxed);
            let start = Instant::now();
            for _ in 0..iters {
                let event = Event::new(CountedLogin(self.login.clone()))?;
                self.bus.emit(event).await?;
            }
            self.expected += iters * self.names.len() as u64;
            let deadline = Instant::now() + Duration::from_secs(120);
            while self.delivered() < self.expected {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "plugins answered {} of {} deliveries",
                    self.delivered(),
                    self.expected
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let elapsed = start.elapsed();
            self.events += iters;
            self.serialized += SERIALIZED.load(Ordering::Relaxed) - serialized_before;
            Ok(elapsed)
        })
    }
}

// -------------------------------------------------------------------------------------------
// stalled subscriber
// -------------------------------------------------------------------------------------------

/// What the stalled-subscriber scenario measured.
#[derive(Debug)]
pub(super) struct Stalled {
    pub(super) emits: u64,
    pub(super) elapsed: Duration,
    pub(super) rss_mib: Option<f64>,
    pub(super) rss_before_mib: Option<f64>,
    pub(super) peak_reset: bool,
    pub(super) capacity: usize,
    /// While stalled: dropped, waiting in the mailbox, held by the handler, delivered.
    pub(super) dropped: u64,
    pub(super) in_mailbox: u64,
    pub(super) in_hand: u64,
    pub(super) delivered: u64,
    /// After releasing the handler: delivered and dropped in all.
    pub(super) delivered_after: u64,
    pub(super) dropped_after: u64,
    pub(super) refused: u64,
}

impl Stalled {
    /// Drops counted exactly: while stalled, `dropped = emits - delivered - in mailbox - in
    /// hand`; once released, every emit ended delivered or dropped, and no drop was added.
    pub(super) fn exact(&self) -> bool {
        self.refused == 0
            && self.dropped + self.delivered + self.in_mailbox + self.in_hand == self.emits
            && self.delivered_after + self.dropped_after == self.emits
            && self.dropped_after == self.dropped
    }
}

/// One subscription whose handler waits until released (it never finishes on its own),
/// drop-oldest, a mailbox of `capacity`; `emits` new events through `try_emit`.
pub(super) async fn stalled(emits: u64, capacity: usize) -> anyhow::Result<Stalled> {
    let peak_reset = rss::reset_peak();
    let rss_before_mib = rss::current_mib();
    let bus = Bus::builder().build()?;
    let (release, gate) = tokio::sync::watch::channel(false);
    let started = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&started);
    let id = bus
        .subscribe(EventType::USER_LOGIN)
        .name("stalled")
        .overflow(Overflow::DropOldest)
        .mailbox_capacity(capacity)
        .timeout(Duration::from_secs(3600))
        .handle_async(move |e: Event| {
            let mut gate = gate.clone();
            s.fetch_add(1, Ordering::AcqRel);
            async move {
                let _ = gate.wait_for(|open| *open).await;
                black_box(&e);
            }
        })?;
    let mut refused = 0u64;
    let start = Instant::now();
    for _ in 0..emits {
        let event = Event::builder(EventType::USER_LOGIN)
            .source("bench")
            .build()?;
        if bus.try_emit(event).is_err() {
            refused += 1;
        }
    }
    let elapsed = start.elapsed();
    let rss_mib = rss::peak_mib();
    // The handler holds one event once its task has run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::Acquire) == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stalled handler never started"
        );
        tokio::task::yield_now().await;
    }
    let stats = bus
        .subscription_stats(id)
        .context("the stalled subscription is gone")?;
    let delivered = stats.totals.delivered;
    let in_hand = started.load(Ordering::Acquire) - delivered;
    let dropped = stats.totals.dropped;
    let in_mailbox = stats.mailbox_depth as u64;
    release.send_replace(true);
    bus.wait_idle(Duration::from_secs(30)).await;
    let after = bus
        .subscription_stats(id)
        .context("the stalled subscription is gone")?;
    let _ = bus.shutdown(Duration::from_secs(5)).await;
    Ok(Stalled {
        emits,
        elapsed,
        rss_mib,
        rss_before_mib,
        peak_reset,
        capacity,
        dropped,
        in_mailbox,
        in_hand,
        delivered,
        delivered_after: after.totals.delivered,
        dropped_after: after.totals.dropped,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_payload_is_257_bytes() {
        let login = login_payload();
        let Ok(login) = login else {
            panic!("{login:?}")
        };
        let json = serde_json::to_vec(&CountedLogin(login));
        assert_eq!(json.map(|j| j.len()).ok(), Some(LOGIN_JSON_BYTES));
    }
}
