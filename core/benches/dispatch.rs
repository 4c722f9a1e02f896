//! Dispatch cost against in-run baselines. Each group puts plugbus beside the baseline it must be
//! compared with, so results read as ratios measured in the same process:
//!
//! - `sync_nN`: `publish` to N sync handlers (prebuilt event) vs a `Vec<Arc<dyn Fn(&Event)>>`
//!   loop (the floor).
//! - `full_nN`: `publish` with a new event each time (v7 id, 2 metadata entries).
//! - `async_n4`: `publish` to 4 async handlers that complete at once vs `join_all` of the same
//!   futures.
//! - `emit_n1`: `emit` to one subscription's mailbox and its task vs a raw tokio mpsc hop to one
//!   consumer task (per event, 10,000 events per iteration).
//! - `event_new`: creating an event.
//!
//! Throughput is set to deliveries, so criterion reports time per delivery and elements/s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use plugbus::{Bus, Event, EventType};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn event() -> Event {
    Event::builder(EventType::USER_LOGIN)
        .source("bench")
        .build()
        .unwrap()
}

type SyncHandler = Arc<dyn Fn(&Event) + Send + Sync>;

fn sync_dispatch(c: &mut Criterion) {
    let rt = rt();
    for n in [1usize, 4, 16] {
        let mut g = c.benchmark_group(format!("sync_n{n}"));
        g.throughput(Throughput::Elements(n as u64));
        let counter = Arc::new(AtomicU64::new(0));
        let handlers: Vec<SyncHandler> = (0..n)
            .map(|_| {
                let c = counter.clone();
                Arc::new(move |e: &Event| {
                    black_box(e);
                    c.fetch_add(1, Ordering::Relaxed);
                }) as SyncHandler
            })
            .collect();
        let ev = event();
        g.bench_function("floor", |b| {
            b.iter(|| {
                for h in &handlers {
                    h(black_box(&ev));
                }
            })
        });
        let bus = rt.block_on(async { Bus::builder().build().unwrap() });
        for _ in 0..n {
            let c = counter.clone();
            bus.subscribe(EventType::USER_LOGIN)
                .handle(move |e: &Event| {
                    black_box(e);
                    c.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
        }
        g.bench_function("publish", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(bus.publish(ev.clone()).await.unwrap()) })
        });
        g.bench_function("publish_poll", |b| {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            b.iter(|| {
                let mut f = bus.publish(ev.clone());
                black_box(std::pin::Pin::new(&mut f).poll(&mut cx))
            })
        });
        g.bench_function("publish_full", |b| {
            b.to_async(&rt).iter(|| async {
                let e = Event::builder(EventType::USER_LOGIN)
                    .source("bench")
                    .request_id("req-1")
                    .metadata("tenant", "acme")
                    .build()
                    .unwrap();
                black_box(bus.publish(e).await.unwrap())
            })
        });
        g.finish();
    }
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

fn async_dispatch(c: &mut Criterion) {
    let rt = rt();
    let n = 4;
    let mut g = c.benchmark_group("async_n4");
    g.throughput(Throughput::Elements(n as u64));
    let counter = Arc::new(AtomicU64::new(0));
    let handlers: Vec<Arc<dyn Fn(Event) -> BoxFut + Send + Sync>> = (0..n)
        .map(|_| {
            let c = counter.clone();
            Arc::new(move |e: Event| {
                let c = c.clone();
                Box::pin(async move {
                    black_box(&e);
                    c.fetch_add(1, Ordering::Relaxed);
                }) as BoxFut
            }) as Arc<dyn Fn(Event) -> BoxFut + Send + Sync>
        })
        .collect();
    let ev = event();
    g.bench_function("join_all", |b| {
        b.to_async(&rt).iter(|| async {
            futures_util::future::join_all(handlers.iter().map(|h| h(ev.clone()))).await
        })
    });
    let bus = rt.block_on(async { Bus::builder().build().unwrap() });
    for _ in 0..n {
        let c = counter.clone();
        bus.subscribe(EventType::USER_LOGIN)
            .handle_async(move |e: Event| {
                let c = c.clone();
                async move {
                    black_box(&e);
                    c.fetch_add(1, Ordering::Relaxed);
                }
            })
            .unwrap();
    }
    g.bench_function("publish", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bus.publish(ev.clone()).await.unwrap()) })
    });
    g.finish();
}

fn emit_dispatch(c: &mut Criterion) {
    const BATCH: u64 = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("emit_n1");
    g.throughput(Throughput::Elements(BATCH));
    let ev = event();
    g.bench_function("mpsc_hop", |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
            let done = tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(e) = rx.recv().await {
                    black_box(&e);
                    n += 1;
                }
                n
            });
            for _ in 0..BATCH {
                tx.send(ev.clone()).await.unwrap();
            }
            drop(tx);
            assert_eq!(done.await.unwrap(), BATCH);
        })
    });
    g.bench_function("emit", |b| {
        b.to_async(&rt).iter(|| async {
            let bus = Bus::builder().mailbox_capacity(1024).build().unwrap();
            bus.subscribe(EventType::USER_LOGIN)
                .handle(|e: &Event| {
                    black_box(e);
                })
                .unwrap();
            for _ in 0..BATCH {
                bus.emit(ev.clone()).await.unwrap();
            }
            let r = bus.shutdown(std::time::Duration::from_secs(10)).await;
            assert_eq!(r.totals.delivered, BATCH);
        })
    });
    g.finish();
}

fn event_new(c: &mut Criterion) {
    let mut g = c.benchmark_group("event_new");
    g.bench_with_input(BenchmarkId::new("v7_2_metadata", ""), &(), |b, _| {
        b.iter(|| {
            black_box(
                Event::builder(EventType::USER_LOGIN)
                    .source("bench")
                    .request_id("req-1")
                    .metadata("tenant", "acme")
                    .build()
                    .unwrap(),
            )
        })
    });
    g.bench_function("bare", |b| {
        b.iter(|| black_box(Event::builder(EventType::USER_LOGIN).build().unwrap()))
    });
    g.bench_function("source_only", |b| {
        b.iter(|| {
            black_box(
                Event::builder(EventType::USER_LOGIN)
                    .source("bench")
                    .build()
                    .unwrap(),
            )
        })
    });
    g.bench_function("event_id_only", |b| {
        b.iter(|| black_box(plugbus::EventId::new()))
    });
    g.bench_function("uuid_now_v7_crate", |b| {
        b.iter(|| black_box(uuid::Uuid::now_v7()))
    });
    g.finish();
}

criterion_group!(
    benches,
    sync_dispatch,
    async_dispatch,
    emit_dispatch,
    event_new
);
criterion_main!(benches);
