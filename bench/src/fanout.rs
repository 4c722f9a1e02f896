//! Fan-out to tasks: `emit` beside the channels a Rust user would pick instead, on the same
//! events with the same handler body, interleaved in one run.
//!
//! - `broadcast_nN`: one `tokio::sync::broadcast` channel (1,024 slots) and a receiver task per
//!   subscriber. Broadcast never waits for a slow receiver (it overwrites), so the publisher
//!   yields while the channel is full: the plain way to get the backpressure the others have.
//!   Anything a receiver still lost is counted (`lagged`) and reported.
//! - `flume_nN`: a bounded flume channel (1,024) and a task per subscriber; the publisher
//!   sends to each in turn (`send_async`).
//! - `emit_nN`: N subscriptions of one bus (mailboxes of 1,024) with sync handlers.
//!
//! Every handler reads a field of the event and bumps a counter of its own (one writer). Each
//! publisher holds its handle (the bus, the broadcast sender, the flume senders) for the whole
//! run, as an application's publisher would, and sends a clone of one prebuilt event. With
//! `publishers = 2`, two tasks share the events; the side waits until every handler has seen
//! every event. [`latency`] paces one publisher at a fixed rate and records publish-to-handler
//! latency for each delivery.

use super::{BoxFuture, Side};
use plugbus::{Bus, Event, EventType};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slots per queue, as a bus mailbox has by default.
pub(super) const CAPACITY: usize = 1024;

/// A handler's own counter: written by its one handler, read by the waiting publisher.
#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

impl Count {
    #[inline]
    fn bump(&self) {
        let c = &self.0;
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The handler body of every side: read a field, count.
#[inline]
fn handle(e: &Event, count: &Count) {
    black_box(e.event_type());
    count.bump();
}

/// Waits (yielding) until every counter reaches `target` (or `target - lost` for a lagging
/// broadcast receiver).
async fn wait_all(counts: &[Count], lost: &[Count], target: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, c) in counts.iter().enumerate() {
        let mut spins = 0u32;
        loop {
            let lagged = lost.get(i).map_or(0, Count::get);
            if c.get() + lagged >= target {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "consumer {i} stuck at {} of {target}",
                    c.get()
                );
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// One publisher of a side: the handle it sends through (held for the whole run, as an
/// application's publisher holds its bus or sender, so no send pays for cloning it) and the
/// event it sends.
trait Publisher: Clone + Send + 'static {
    /// Sends one event.
    fn send(&mut self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + '_;
}

/// Runs `iters` sends split over `publishers` tasks (1: inline), each with its own clone of
/// `publisher`.
async fn publish_with<P: Publisher>(
    publishers: usize,
    iters: u64,
    mut publisher: P,
) -> anyhow::Result<()> {
    if publishers <= 1 {
        for _ in 0..iters {
            publisher.send().await?;
        }
        return Ok(());
    }
    let per = iters / publishers as u64;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let n = if p == 0 {
            iters - per * (publishers as u64 - 1)
        } else {
            per
        };
        let mut publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                publisher.send().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[derive(Clone)]
struct EmitPublisher {
    bus: Bus,
    event: Event,
}

impl Publisher for EmitPublisher {
    async fn send(&mut self) -> anyhow::Result<()> {
        Ok(self.bus.emit(self.event.clone()).await?)
    }
}

#[derive(Clone)]
struct BroadcastPublisher {
    tx: tokio::sync::broadcast::Sender<Event>,
    event: Event,
}

impl Publisher for BroadcastPublisher {
    async fn send(&mut self) -> anyhow::Result<()> {
        // Backpressure by hand: broadcast itself would overwrite the oldest.
        while self.tx.len() >= CAPACITY {
            tokio::task::yield_now().await;
        }
        self.tx
            .send(self.event.clone())
            .map_err(|_| anyhow::anyhow!("broadcast receivers ended"))?;
        Ok(())
    }
}

#[derive(Clone)]
struct FlumePublisher {
    txs: Arc<Vec<flume::Sender<Event>>>,
    event: Event,
}

impl Publisher for FlumePublisher {
    async fn send(&mut self) -> anyhow::Result<()> {
        for tx in self.txs.iter() {
            tx.send_async(self.event.clone())
                .await
                .map_err(|_| anyhow::anyhow!("flume receiver ended"))?;
        }
        Ok(())
    }
}

/// `emit` to N subscriptions.
pub(super) struct EmitFanout {
    bus: Bus,
    event: Event,
    counts: Vec<Count>,
    publishers: usize,
    sent: u64,
}

impl EmitFanout {
    pub(super) fn new(n: usize, publishers: usize, event: Event) -> anyhow::Result<EmitFanout> {
        let bus = Bus::builder().mailbox_capacity(CAPACITY).build()?;
        let counts: Vec<Count> = (0..n).map(|_| Count::default()).collect();
        for c in &counts {
            let c = c.clone();
            bus.subscribe(EventType::USER_LOGIN)
                .handle(move |e: &Event| handle(e, &c))?;
        }
        Ok(EmitFanout {
            bus,
            event,
            counts,
            publishers,
            sent: 0,
        })
    }
}

impl Side for EmitFanout {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            let publisher = EmitPublisher {
                bus: self.bus.clone(),
                event: self.event.clone(),
            };
            publish_with(self.publishers, iters, publisher).await?;
            self.sent += iters;
            wait_all(&self.counts, &[], self.sent).await?;
            Ok(start.elapsed())
        })
    }
}

/// tokio broadcast with a receiver task per subscriber.
pub(super) struct BroadcastFanout {
    tx: tokio::sync::broadcast::Sender<Event>,
    event: Event,
    counts: Vec<Count>,
    lagged: Vec<Count>,
    publishers: usize,
    sent: u64,
}

impl BroadcastFanout {
    pub(super) fn new(n: usize, publishers: usize, event: Event) -> BroadcastFanout {
        let (tx, _) = tokio::sync::broadcast::channel::<Event>(CAPACITY);
        let counts: Vec<Count> = (0..n).map(|_| Count::default()).collect();
        let lagged: Vec<Count> = (0..n).map(|_| Count::default()).collect();
        for (c, l) in counts.iter().zip(&lagged) {
            let (c, l) = (c.clone(), l.clone());
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match rx.recv().await {
                        Ok(e) => handle(&e, &c),
                        Err(RecvError::Lagged(k)) => {
                            l.0.fetch_add(k, Ordering::Release);
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            });
        }
        BroadcastFanout {
            tx,
            event,
            counts,
            lagged,
            publishers,
            sent: 0,
        }
    }

    /// Events the receivers lost to lag so far (0 means the comparison is exact).
    pub(super) fn lagged(&self) -> u64 {
        self.lagged.iter().map(Count::get).sum()
    }
}

impl Side for BroadcastFanout {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            let publisher = BroadcastPublisher {
                tx: self.tx.clone(),
                event: self.event.clone(),
            };
            publish_with(self.publishers, iters, publisher).await?;
            self.sent += iters;
            wait_all(&self.counts, &self.lagged, self.sent).await?;
            Ok(start.elapsed())
        })
    }
}

/// A flume channel and a task per subscriber.
pub(super) struct FlumeFanout {
    txs: Arc<Vec<flume::Sender<Event>>>,
    event: Event,
    counts: Vec<Count>,
    publishers: usize,
    sent: u64,
}

impl FlumeFanout {
    pub(super) fn new(n: usize, publishers: usize, event: Event) -> FlumeFanout {
        let counts: Vec<Count> = (0..n).map(|_| Count::default()).collect();
        let mut txs = Vec::new();
        for c in &counts {
            let (tx, rx) = flume::bounded::<Event>(CAPACITY);
            let c = c.clone();
            tokio::spawn(async move {
                while let Ok(e) = rx.recv_async().await {
                    handle(&e, &c);
                }
            });
            txs.push(tx);
        }
        FlumeFanout {
            txs: Arc::new(txs),
            event,
            counts,
            publishers,
            sent: 0,
        }
    }
}

impl Side for FlumeFanout {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            let publisher = FlumePublisher {
                txs: Arc::clone(&self.txs),
                event: self.event.clone(),
            };
            publish_with(self.publishers, iters, publisher).await?;
            self.sent += iters;
            wait_all(&self.counts, &[], self.sent).await?;
            Ok(start.elapsed())
        })
    }
}

/// Publish-to-handler latency percentiles of one paced run, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Latency {
    pub(super) p50: f64,
    pub(super) p99: f64,
}

/// Receive times, in nanoseconds since the run's start: one vector per handler (one writer
/// each). Every design delivers in order to each handler, so a handler's `k`-th receive is
/// the `k`-th send. Send and receive times come from one monotonic clock ([`Instant`]); the
/// events' own timestamps are wall-clock readings of another, calibrated clock, and the two
/// drift apart by more than a delivery takes (a run once measured a p99 of 0).
type Samples = Arc<Vec<parking_lot::Mutex<Vec<u64>>>>;

fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn record(samples: &Samples, i: usize, base: Instant) {
    let now = nanos_since(base);
    if let Some(v) = samples.get(i) {
        v.lock().push(now);
    }
}

fn percentiles(sent: &[u64], samples: &Samples) -> Latency {
    let mut all: Vec<u64> = Vec::with_capacity(sent.len() * samples.len());
    for v in samples.iter() {
        let received = v.lock();
        all.extend(received.iter().zip(sent).map(|(r, s)| r.saturating_sub(*s)));
    }
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Which design a latency run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Design {
    /// `Bus::emit` to N subscriptions.
    Emit,
    /// tokio broadcast, a receiver task per subscriber.
    Broadcast,
}

/// Publishes `events` events at `rate` per second (paced by a spinning, yielding publisher)
/// to `n` subscribers, each event built at its publish time, and returns the latency from
/// just before each send to each handler's start, percentiles over every delivery.
pub(super) async fn latency(
    design: Design,
    n: usize,
    rate: u64,
    events: u64,
) -> anyhow::Result<Latency> {
    let samples: Samples = Arc::new(
        (0..n)
            .map(|_| parking_lot::Mutex::new(Vec::with_capacity(events as usize)))
            .collect(),
    );
    let counts: Vec<Count> = (0..n).map(|_| Count::default()).collect();
    let mut sent: Vec<u64> = Vec::with_capacity(events as usize);
    let base = Instant::now();
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let fresh = || {
        Event::builder(EventType::USER_LOGIN)
            .source("bench")
            .build()
            .map_err(anyhow::Error::from)
    };
    match design {
        Design::Emit => {
            let bus = Bus::builder().mailbox_capacity(CAPACITY).build()?;
            for (i, c) in counts.iter().enumerate() {
                let (c, s) = (c.clone(), Arc::clone(&samples));
                bus.subscribe(EventType::USER_LOGIN)
                    .handle(move |e: &Event| {
                        record(&s, i, base);
                        black_box(e.event_type());
                        c.bump();
                    })?;
            }
            let start = Instant::now();
            for k in 0..events {
                pace(start, interval, k).await;
                let event = fresh()?;
                sent.push(nanos_since(base));
                bus.emit(event).await?;
            }
            wait_all(&counts, &[], events).await?;
            bus.shutdown(Duration::from_secs(5)).await;
        }
        Design::Broadcast => {
            let (tx, _) = tokio::sync::broadcast::channel::<Event>(CAPACITY);
            let mut tasks = Vec::new();
            for (i, c) in counts.iter().enumerate() {
                let (c, s) = (c.clone(), Arc::clone(&samples));
                let mut rx = tx.subscribe();
                tasks.push(tokio::spawn(async move {
                    while let Ok(e) = rx.recv().await {
                        record(&s, i, base);
                        black_box(e.event_type());
                        c.bump();
                    }
                }));
            }
            let start = Instant::now();
            for k in 0..events {
                pace(start, interval, k).await;
                while tx.len() >= CAPACITY {
                    tokio::task::yield_now().await;
                }
                let event = fresh()?;
                sent.push(nanos_since(base));
                tx.send(event)
                    .map_err(|_| anyhow::anyhow!("broadcast receivers ended"))?;
            }
            wait_all(&counts, &[], events).await?;
            drop(tx);
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    Ok(percentiles(&sent, &samples))
}

/// Waits (yielding, so the consumers run) until the `k`-th send time.
async fn pace(start: Instant, interval: Duration, k: u64) {
    let due = start + interval * u32::try_from(k).unwrap_or(u32::MAX);
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}
