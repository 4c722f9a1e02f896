//! The baselines plugbus is measured against, written here so every ratio is measured in the
//! same process, on the same events, interleaved with the scenario it judges:
//!
//! - (a) [`Floor`]: a `Vec<Arc<dyn Fn(&Event)>>` loop over a prebuilt event, the least any
//!   dispatch can cost;
//! - (b) [`Seed`]: a port of the Go design this project replaces: a `RwLock<HashMap<type,
//!   Vec<handler>>>` read-locked for the whole dispatch, one `tokio::spawn` plus one
//!   `tokio::time::timeout` per handler per event, then waiting for all of them;
//! - (c) [`MpscHop`]: a raw `tokio::sync::mpsc` hop to one consumer task;
//! - [`JoinAll`]: `futures_util::future::join_all` over the async handlers' futures.
//!
//! None of them is tuned: each is the plain way to write that design.

use super::{wait_count, BoxFuture, Side};
use plugbus::{Event, EventType};
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A synchronous handler of the floor: what a bus handler does in the sync scenarios.
pub(super) type SyncHandler = Arc<dyn Fn(&Event) + Send + Sync>;

/// The handler body every in-process scenario uses, baselines and plugbus alike: look at the
/// event, count it in the handler's own counter.
///
/// The count is a relaxed load and store, not a locked read-modify-write: each handler's counter
/// has one writer at a time, and a locked increment (about 6 ns here) would dominate the floor
/// and make every ratio to it look better than the dispatch deserves.
pub(super) fn counting_handler() -> impl Fn(&Event) + Send + Sync + 'static {
    let count = AtomicU64::new(0);
    move |e: &Event| {
        black_box(e);
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// (a) The floor: N `Arc<dyn Fn(&Event)>` called in a loop on a prebuilt event.
pub(super) struct Floor {
    handlers: Vec<SyncHandler>,
    event: Event,
}

impl Floor {
    pub(super) fn new(n: usize, event: Event) -> Floor {
        let handlers = (0..n)
            .map(|_| Arc::new(counting_handler()) as SyncHandler)
            .collect();
        Floor { handlers, event }
    }
}

impl Side for Floor {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                for h in &self.handlers {
                    h(black_box(&self.event));
                }
            }
            Ok(start.elapsed())
        })
    }
}

/// A handler of the seed design: Go's `func(ctx, Event) error`.
pub(super) type SeedHandler = Arc<dyn Fn(&Event) -> Result<(), String> + Send + Sync>;

/// (b) The seed bus: the Go design ported as it was, handler map behind a read-write lock that
/// `publish` holds while it spawns one task per handler, each under its own timeout, and waits
/// for all of them (Go: `RLock`, `go` + `context.WithTimeout` per handler, `WaitGroup.Wait`,
/// `RUnlock`). The lock is tokio's, whose read guard may be held across the waits.
pub(super) struct SeedBus {
    handlers: tokio::sync::RwLock<HashMap<EventType, Vec<SeedHandler>>>,
    timeout: Duration,
}

impl SeedBus {
    pub(super) fn new(timeout: Duration) -> SeedBus {
        SeedBus {
            handlers: tokio::sync::RwLock::new(HashMap::new()),
            timeout,
        }
    }

    pub(super) async fn subscribe(&self, event_type: EventType, handler: SeedHandler) {
        self.handlers
            .write()
            .await
            .entry(event_type)
            .or_default()
            .push(handler);
    }

    /// Delivers `event` to every handler of its type concurrently and waits for all; the errors
    /// of those that failed or timed out.
    pub(super) async fn publish(&self, event: Event) -> Result<(), Vec<String>> {
        let subs = self.handlers.read().await;
        let Some(list) = subs.get(&event.event_type()) else {
            return Ok(());
        };
        let mut tasks = Vec::with_capacity(list.len());
        for h in list {
            let h = Arc::clone(h);
            let e = event.clone();
            let timeout = self.timeout;
            tasks.push(tokio::spawn(async move {
                match tokio::time::timeout(timeout, async move { h(&e) }).await {
                    Ok(result) => result,
                    Err(_) => Err("handler timed out".to_owned()),
                }
            }));
        }
        let mut errors = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("handler panicked: {e}")),
            }
        }
        drop(subs);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The seed bus with N counting handlers on `user.login`, publishing a new event each time (as
/// `publish_full` does).
pub(super) struct Seed {
    bus: SeedBus,
}

impl Seed {
    pub(super) async fn new(n: usize) -> Seed {
        let bus = SeedBus::new(Duration::from_secs(30));
        for _ in 0..n {
            let count = counting_handler();
            bus.subscribe(
                EventType::USER_LOGIN,
                Arc::new(move |e: &Event| {
                    count(e);
                    Ok(())
                }),
            )
            .await;
        }
        Seed { bus }
    }
}

impl Side for Seed {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                let event = super::scenarios::full_event()?;
                if let Err(errors) = self.bus.publish(event).await {
                    anyhow::bail!("seed bus: {errors:?}");
                }
            }
            Ok(start.elapsed())
        })
    }
}

/// (c) A raw tokio mpsc hop to one consumer task, which counts what it receives.
pub(super) struct MpscHop {
    tx: tokio::sync::mpsc::Sender<Event>,
    received: Arc<AtomicU64>,
    sent: u64,
    event: Event,
}

impl MpscHop {
    /// Spawns the consumer on the current runtime. The channel holds 1024 events, as a bus
    /// mailbox does by default.
    pub(super) fn new(event: Event) -> MpscHop {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
        let received = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&received);
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                black_box(&e);
                r.fetch_add(1, Ordering::Release);
            }
        });
        MpscHop {
            tx,
            received,
            sent: 0,
            event,
        }
    }
}

impl Side for MpscHop {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                self.tx
                    .send(self.event.clone())
                    .await
                    .map_err(|_| anyhow::anyhow!("mpsc consumer ended"))?;
            }
            self.sent += iters;
            wait_count(&self.received, self.sent).await?;
            Ok(start.elapsed())
        })
    }
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;
type AsyncHandler = Arc<dyn Fn(Event) -> BoxFut + Send + Sync>;

/// `join_all` of N async handlers' futures that complete at once.
pub(super) struct JoinAll {
    handlers: Vec<AsyncHandler>,
    event: Event,
}

impl JoinAll {
    pub(super) fn new(n: usize, event: Event) -> JoinAll {
        let handlers = (0..n)
            .map(|_| {
                let c = Arc::new(AtomicU64::new(0));
                Arc::new(move |e: Event| {
                    let c = Arc::clone(&c);
                    Box::pin(async move {
                        black_box(&e);
                        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    }) as BoxFut
                }) as AsyncHandler
            })
            .collect();
        JoinAll { handlers, event }
    }
}

impl Side for JoinAll {
    fn run(&mut self, iters: u64) -> BoxFuture<'_, anyhow::Result<Duration>> {
        Box::pin(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(
                    futures_util::future::join_all(
                        self.handlers.iter().map(|h| h(self.event.clone())),
                    )
                    .await,
                );
            }
            Ok(start.elapsed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seed_bus_reaches_every_handler_and_reports_errors() {
        let bus = SeedBus::new(Duration::from_secs(1));
        let counter = Arc::new(AtomicU64::new(0));
        for _ in 0..3 {
            let c = Arc::clone(&counter);
            bus.subscribe(
                EventType::USER_LOGIN,
                Arc::new(move |_: &Event| {
                    c.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }),
            )
            .await;
        }
        bus.subscribe(
            EventType::USER_LOGIN,
            Arc::new(|_: &Event| Err("no".to_owned())),
        )
        .await;
        let event = Event::builder(EventType::USER_LOGIN).build();
        let Ok(event) = event else { panic!("event") };
        let result = bus.publish(event).await;
        assert_eq!(counter.load(Ordering::Relaxed), 3);
        assert_eq!(result, Err(vec!["no".to_owned()]));
    }
}
