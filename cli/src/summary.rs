//! The end-of-run summary: events per type, per-handler outcomes, plugins, alerts, the account.

use crate::session::Outcome;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use std::time::Duration;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    t
}

fn right(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn micros(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e6))
}

/// Where a plugin ran: "in process", or "process, pid 4242, 1 restart".
pub(crate) fn runs(p: &plugbus_host::PluginStatus) -> String {
    match p.isolation {
        plugbus_host::Isolation::InProcess => "in process".to_owned(),
        plugbus_host::Isolation::Process => {
            let pid = p.pid.map(|pid| format!(", pid {pid}")).unwrap_or_default();
            let s = if p.restarts == 1 { "" } else { "s" };
            format!("process{pid}, {} restart{s}", p.restarts)
        }
    }
}

pub(crate) fn print(o: &Outcome) {
    println!("\nEvents on the bus, by type");
    let mut t = table(&["type", "count"]);
    for (ty, n) in &o.seen {
        t.add_row(vec![ty.clone(), n.to_string()]);
    }
    right(&mut t, 1);
    println!("{t}");

    println!("\nDeliveries, by handler");
    let mut t = table(&[
        "handler",
        "delivered",
        "skipped",
        "failed",
        "timed out¹",
        "panicked¹",
        "dead-lettered",
        "p50 µs",
        "p99 µs",
    ]);
    for s in &o.stats.subscriptions {
        let x = s.totals;
        t.add_row(vec![
            s.name.clone(),
            x.delivered.to_string(),
            x.skipped.to_string(),
            (x.failed).to_string(),
            x.timed_out.to_string(),
            x.panicked.to_string(),
            x.dead_lettered.to_string(),
            micros(s.p50),
            micros(s.p99),
        ]);
    }
    right(&mut t, 1);
    println!("{t}");
    println!(
        "¹ why deliveries failed or were dead-lettered (each delivery is counted once, in one of delivered, skipped, failed, dead-lettered)"
    );

    println!("\nPlugins");
    let mut t = table(&[
        "plugin",
        "version",
        "state",
        "runs",
        "handled²",
        "errors²",
        "panics²",
        "timed out",
        "published",
        "refused",
        "file",
    ]);
    for p in &o.plugins {
        let c = p.counters;
        t.add_row(vec![
            p.name.clone(),
            p.version.clone(),
            p.state.to_string(),
            runs(p),
            c.delivered.to_string(),
            c.failed.to_string(),
            c.panicked.to_string(),
            c.timed_out.to_string(),
            c.published.to_string(),
            (c.refused() + c.publish_pending).to_string(),
            p.path.display().to_string(),
        ]);
    }
    println!("{t}");
    println!(
        "² calls into the plugin that returned Ok, an error (retryable, permanent, invalid event) or panicked; a retried delivery is called again"
    );
    for p in &o.plugins {
        let c = p.counters;
        if c.refused() + c.publish_pending + c.rejected_by_subscribers > 0 {
            println!(
                "  {}: publishes refused: {} full, {} closed, {} forbidden, {} invalid; {} never reached the bus; {} rejected by subscribers' overflow policy",
                p.name,
                c.refused_full,
                c.refused_closed,
                c.refused_forbidden,
                c.refused_invalid,
                c.publish_pending,
                c.rejected_by_subscribers
            );
        }
    }
    for (name, path) in &o.load.disabled {
        println!(
            "  {name}: disabled in the configuration, not loaded ({})",
            path.display()
        );
    }
    // Each load error was printed when it happened; the account only counts them.
    if !o.load.errors.is_empty() {
        println!(
            "  {} plugin load error(s), reported above",
            o.load.errors.len()
        );
    }

    println!("\nSecurity alerts raised: {}", o.alerts.len());
    for a in &o.alerts {
        println!(
            "  [{:?}] {} (user '{}', ip '{}', count {})",
            a.severity, a.message, a.user_id, a.ip, a.count
        );
    }

    if let Some(b) = &o.bridge {
        print_bridge(b);
    }

    let a = &o.account;
    let x = a.totals;
    println!(
        "\nAccount: {} accepted = {} filtered + {} unrouted + {} routed; {} deliveries = {} delivered + {} skipped + {} failed + {} dead-lettered; {} in flight -> {}",
        a.accepted,
        a.filtered,
        a.unrouted,
        a.routed,
        a.deliveries,
        x.delivered,
        x.skipped,
        x.failed,
        x.dead_lettered,
        a.in_flight,
        if o.is_balanced() { "balanced" } else { "NOT balanced" }
    );
    if let Some(why) = &o.required_failure {
        println!("  {why}: what it should have recorded is incomplete");
    }
    let lost = o.publish_refusals();
    if lost > 0 {
        println!("  {lost} event(s) published by plugins were refused or never reached the bus (see Plugins above)");
    }
}

fn print_bridge(b: &crate::bridge::Figures) {
    println!("\nBridge (NATS JetStream)");
    let mut t = table(&[
        "forwarded",
        "received",
        "acked",
        "redelivered",
        "outbox depth",
        "consumer lag",
    ]);
    t.add_row(vec![
        b.forwarded.to_string(),
        b.received.to_string(),
        b.acked.to_string(),
        b.redelivered.to_string(),
        b.outbox_depth.to_string(),
        b.consumer_lag.map_or_else(|| "-".into(), |l| l.to_string()),
    ]);
    right(&mut t, 0);
    println!("{t}");
    println!(
        "  out: {} written to the outbox, {} staged by the application, {} publish errors (resent), {} duplicates dropped by the stream",
        b.queued, b.staged, b.publish_errors, b.broker_duplicates
    );
    println!(
        "  in: {} nacked, {} duplicates dropped, {} own events dropped, {} malformed, {} refused",
        b.nacked, b.duplicates, b.own, b.malformed, b.refused
    );
    if b.outbox_depth > 0 {
        println!(
            "  {} event(s) still in the outbox: they are sent at the next start",
            b.outbox_depth
        );
    }
}
