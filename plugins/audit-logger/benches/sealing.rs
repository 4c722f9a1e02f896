//! What sealing costs the audit logger: records per second with and without a signing key, in
//! the same run, through the plugin's real ABI entry points (the plugin-api test host) and a
//! real file. Both write the same records; the signed one also writes a seal record every
//! `seal_every` (the default, 1,000) records, signed with Ed25519, and publishes each as an
//! event. The target is `signed` within 10% of `unsigned`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plugbus_audit_logger::AuditLogger;
use plugbus_plugin_api::contract::audit::{hex, SECRET_KEY_HEADER};
use plugbus_plugin_api::contract::Category;
use plugbus_plugin_api::testing::{FakeHost, TestEvent};
use serde_json::json;
use std::time::{Duration, Instant};

/// Records per iteration: enough to include a seal at the default interval.
const RECORDS: u64 = 2_000;

fn sealing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    std::fs::write(&key, format!("{SECRET_KEY_HEADER}\n{}\n", hex(&[7u8; 32]))).unwrap();
    let event = TestEvent::new(
        "user.login",
        Category::Business,
        r#"{"user_id":"alice","ip":"10.0.0.1","user_agent":"bench/1.0","password":"pw","session_id":"s-1"}"#,
    )
    .with_source("web")
    .with_origin("input:stdin:1")
    .with_metadata("request_id", "r-1");
    let host = FakeHost::new();
    let load = |name: &str, signed: bool| {
        // Rotation keeps the files small, so neither runs into the page cache's writeback of
        // hundreds of megabytes.
        let mut config = json!({
            "path": dir.path().join(format!("{name}.jsonl")),
            "seal_interval": "1h",
            "max_bytes": 16 * 1024 * 1024,
            "max_files": 1,
        });
        if signed {
            config["signing_key"] = json!(key);
        }
        let mut plugin = host.load::<AuditLogger>(config).unwrap();
        plugin.start().unwrap();
        plugin
    };
    let mut plugins = [load("unsigned", false), load("signed", true)];
    let mut batch = |which: usize| {
        let start = Instant::now();
        for _ in 0..RECORDS {
            plugins[which].handle(0, &event).unwrap();
        }
        let took = start.elapsed();
        // The witness events pile up in the test host: let them go.
        host.take_published();
        took
    };
    let mut g = c.benchmark_group("audit_record");
    g.throughput(Throughput::Elements(RECORDS));
    g.sample_size(30);
    // Each measured batch of one is followed by an unmeasured batch of the other, so both see
    // the same machine (disk writeback, the other core's load) whatever the order.
    for (name, which) in [("unsigned", 0usize), ("signed", 1)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += batch(which);
                    batch(1 - which);
                }
                total
            })
        });
    }
    g.finish();
    for mut p in plugins {
        p.stop().unwrap();
    }
}

criterion_group!(benches, sealing);
criterion_main!(benches);
