//! Forwarding throughput with the outbox on, and latency from host A's emit to host B's
//! handler, against a local `nats-server` (skipped, saying so, when none is found).
//!
//! `cargo run --release -p plugbus-bridge-nats --example throughput [EVENTS]`

use parking_lot::Mutex;
use plugbus::{Bus, Event, EventType};
use plugbus_bridge_nats::local_server::LocalServer;
use plugbus_bridge_nats::{NatsBridge, NatsConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let Some(server) = LocalServer::start()? else {
        println!("nats_forward: skipped (no nats-server found)");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mk = |durable: &str, fwd: &[&str], recv: &[&str]| {
        let mut c = NatsConfig::new(&server.url(), durable)
            .with_outbox(dir.path().join(format!("{durable}.sqlite")));
        c.forward = fwd.iter().map(|s| s.to_string()).collect();
        c.receive = recv.iter().map(|s| s.to_string()).collect();
        c
    };
    let a = Bus::builder().build()?;
    let b = Bus::builder().build()?;
    let bridge_a = NatsBridge::builder(mk("bench-a", &["user.*"], &[]))
        .start(&a)
        .await?;
    let got = Arc::new(AtomicU64::new(0));
    let lat: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (g, l) = (got.clone(), lat.clone());
    b.subscribe_pattern("user.*")
        .name("sink")
        .handle(move |e: &Event| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            l.lock()
                .push((now - e.timestamp_unix_nanos()).max(0) as u64);
            g.fetch_add(1, Ordering::Relaxed);
        })?;
    let body = r#"{"user_id":"alice","ip":"10.0.0.1","session_id":"s-1","user_agent":"bench"}"#;
    // Throughput: n events as fast as A takes them, until JetStream acked every one.
    let start = Instant::now();
    for _ in 0..n {
        a.emit(Event::builder(EventType::USER_LOGIN).json(body).build()?)
            .await?;
    }
    let emitted = start.elapsed();
    while bridge_a.stats().forwarded < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let forwarded = start.elapsed();
    // Host B starts once A is done, so each side is measured on the machine's two cores alone
    // (two real hosts do not share them); it drains the stream A filled.
    let receiving = Instant::now();
    let bridge_b = NatsBridge::builder(mk("bench-b", &[], &["user.*"]))
        .start(&b)
        .await?;
    while got.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let received = receiving.elapsed();
    println!(
        "nats_forward: {n} events; A took them in {:.2} s; JetStream acked all (outbox on) after {:.2} s = {:.0} events/s; B, started then, handled all in {:.2} s = {:.0} events/s",
        emitted.as_secs_f64(),
        forwarded.as_secs_f64(),
        n as f64 / forwarded.as_secs_f64(),
        received.as_secs_f64(),
        n as f64 / received.as_secs_f64()
    );
    // Latency: a paced stream (1 event per ms), A's emit -> B's handler.
    lat.lock().clear();
    let paced = 2_000u64;
    let base = got.load(Ordering::Relaxed);
    for _ in 0..paced {
        a.emit(Event::builder(EventType::USER_LOGIN).json(body).build()?)
            .await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while got.load(Ordering::Relaxed) < base + paced {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut l = lat.lock().clone();
    l.sort_unstable();
    let q = |p: f64| l[((l.len() as f64 - 1.0) * p) as usize] as f64 / 1e6;
    println!(
        "nats_latency: {} paced events, A emit -> B handler: p50 {:.2} ms, p99 {:.2} ms",
        l.len(),
        q(0.5),
        q(0.99)
    );
    bridge_a.shutdown(Duration::from_secs(5)).await;
    bridge_b.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
