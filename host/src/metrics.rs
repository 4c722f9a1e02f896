//! The bus's and the plugins' figures through the [`metrics`] facade, so an application picks
//! its own exporter (Prometheus, StatsD, OpenTelemetry, ...).
//!
//! # Why snapshots, not instrumentation
//! The bus already counts everything it does, in per-subscription relaxed atomics (see
//! [`plugbus::BusStats`]). Calling the facade on every publish or delivery would add a
//! registry lookup and an atomic per call to the hot path for figures that exist anyway. So
//! nothing here runs while events flow: [`record`] reads the live snapshots
//! ([`Bus::stats`], [`PluginManager::plugins`]) and *sets* the facade's counters and gauges
//! to them. Call it when the figures are wanted — on each scrape (what `plugbus run --metrics`
//! does), or on an interval — and the publish path pays nothing, exporter or not.
//!
//! Call [`describe`] once after installing the recorder, so exporters that print help text
//! (Prometheus's does) have it.
//!
//! # The figures
//! Names follow Prometheus conventions: base units, `_total` for counters. Labels:
//! `subscription` (a bus subscription's name, `<plugin>/<handler>` for a plugin's), `plugin`.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `plugbus_events_accepted_total` | counter | | events accepted by publish/emit |
//! | `plugbus_events_filtered_total` | counter | | accepted events a bus-wide filter dropped |
//! | `plugbus_events_unrouted_total` | counter | | accepted events no subscription matched |
//! | `plugbus_events_routed_total` | counter | | accepted events routed to at least one subscription |
//! | `plugbus_deliveries_routed_total` | counter | | deliveries routed (one per event per matching subscription) |
//! | `plugbus_deliveries_in_flight` | gauge | | deliveries routed and not finished |
//! | `plugbus_dead_letter_queue_events` | gauge | | entries in the dead-letter queue |
//! | `plugbus_dead_letters_evicted_total` | counter | | dead letters evicted from a full queue |
//! | `plugbus_deliveries_total` | counter | `subscription`, `outcome` | finished deliveries: `delivered`, `skipped`, `failed`, `dead_lettered` (every finished delivery has exactly one) |
//! | `plugbus_delivery_failures_total` | counter | `subscription`, `reason` | why deliveries failed or were dead-lettered: `error`, `bad_event`, `timed_out`, `panicked`, `circuit_open`, `rejected`, `dropped`, `shutdown`, `cancelled` |
//! | `plugbus_delivery_retries_total` | counter | `subscription` | attempts retried |
//! | `plugbus_mailbox_depth` | gauge | `subscription` | events waiting in its mailbox |
//! | `plugbus_mailbox_capacity` | gauge | `subscription` | its mailbox's capacity |
//! | `plugbus_delivery_latency_p50_seconds` | gauge | `subscription` | median handler latency |
//! | `plugbus_delivery_latency_p99_seconds` | gauge | `subscription` | 99th percentile handler latency |
//! | `plugbus_delivery_latency_samples_total` | counter | `subscription` | latency samples behind the quantiles |
//! | `plugbus_circuit_open` | gauge | `subscription` | 1 while its circuit breaker is open or half-open |
//! | `plugbus_plugin_state` | gauge | `plugin`, `state` | 1 for the state it is in (`loaded`, `running`, `stopping`, `stopped`, `failed`), 0 for the others |
//! | `plugbus_plugin_restarts_total` | counter | `plugin` | restarts of its child process |
//! | `plugbus_plugin_deliveries_total` | counter | `plugin`, `outcome` | its handler calls: `delivered`, `failed`, `panicked`, `timed_out`, `skipped`, `abandoned` |
//! | `plugbus_plugin_queue_depth` | gauge | `plugin` | jobs waiting in its queue |
//! | `plugbus_plugin_published_total` | counter | `plugin` | events it published that the bus accepted |
//! | `plugbus_plugin_publish_refusals_total` | counter | `plugin`, `kind` | publishes refused: `full`, `closed`, `forbidden`, `invalid` |
//! | `plugbus_plugin_publish_pending` | gauge | `plugin` | its events still on their way to the bus |
//! | `plugbus_plugin_rejected_by_subscribers_total` | counter | `plugin` | of its published events, those some subscription's overflow policy rejected |
//!
//! The facade's histograms take samples (a call per delivery), so the bus's own latency
//! histogram cannot go through it: [`latency_histograms`] renders it as Prometheus text
//! (`plugbus_delivery_latency_seconds`, a histogram with `_bucket{le=...}`, `_sum`, `_count`
//! per `subscription`, bounds [`plugbus::LATENCY_BOUNDS`]) for an exporter to append, as
//! `plugbus run --metrics` does; the quantile gauges above are the same figures for other
//! exporters.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use plugbus::{BreakerState, Bus, BusStats};

use crate::manager::{PluginManager, PluginState, PluginStatus};

/// Every subscription's handler latencies as one Prometheus histogram family,
/// `plugbus_delivery_latency_seconds{subscription=...}`, in the text exposition format
/// (`# HELP`, `# TYPE`, then `_bucket` lines with `le`, `_sum` and `_count` per subscription).
/// Reads one [`Bus::stats`]; nothing on the publish path.
///
/// ```
/// # fn f(bus: &plugbus::Bus) {
/// let text = plugbus_host::metrics::latency_histograms(bus);
/// assert!(text.starts_with("# HELP plugbus_delivery_latency_seconds"));
/// # }
/// ```
pub fn latency_histograms(bus: &Bus) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# HELP plugbus_delivery_latency_seconds Handler latency per subscription (sampled: \
         every slow-path delivery, 1 in 64 inline ones).\n\
         # TYPE plugbus_delivery_latency_seconds histogram\n",
    );
    for s in bus.stats().subscriptions {
        let name = escape_label(&s.name);
        for (bound, count) in &s.latency.buckets {
            let _ = writeln!(
                out,
                "plugbus_delivery_latency_seconds_bucket{{subscription=\"{name}\",le=\"{}\"}} {count}",
                bound.as_secs_f64()
            );
        }
        let _ = writeln!(
            out,
            "plugbus_delivery_latency_seconds_bucket{{subscription=\"{name}\",le=\"+Inf\"}} {}",
            s.latency.count
        );
        let _ = writeln!(
            out,
            "plugbus_delivery_latency_seconds_sum{{subscription=\"{name}\"}} {}",
            s.latency.sum.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "plugbus_delivery_latency_seconds_count{{subscription=\"{name}\"}} {}",
            s.latency.count
        );
    }
    out
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Sets every figure of `bus` and of `manager`'s plugins (see the module docs) from their
/// live snapshots. Costs one [`Bus::stats`] and one [`PluginManager::plugins`]; nothing on
/// the publish path.
pub fn record(bus: &Bus, manager: &PluginManager) {
    record_bus(&bus.stats());
    record_plugins(&manager.plugins());
}

/// Sets the bus figures from a snapshot.
pub fn record_bus(stats: &BusStats) {
    counter!("plugbus_events_accepted_total").absolute(stats.accepted);
    counter!("plugbus_events_filtered_total").absolute(stats.filtered);
    counter!("plugbus_events_unrouted_total").absolute(stats.unrouted);
    counter!("plugbus_events_routed_total").absolute(stats.routed);
    counter!("plugbus_deliveries_routed_total").absolute(stats.deliveries);
    gauge!("plugbus_deliveries_in_flight").set(stats.in_flight as f64);
    gauge!("plugbus_dead_letter_queue_events").set(stats.dead_letter_len as f64);
    counter!("plugbus_dead_letters_evicted_total").absolute(stats.dead_letter_evicted);
    for s in &stats.subscriptions {
        let t = &s.totals;
        let name = s.name.clone();
        for (outcome, n) in [
            ("delivered", t.delivered),
            ("skipped", t.skipped),
            ("failed", t.failed),
            ("dead_lettered", t.dead_lettered),
        ] {
            counter!("plugbus_deliveries_total", "subscription" => name.clone(), "outcome" => outcome)
                .absolute(n);
        }
        for (reason, n) in [
            ("error", t.errors),
            ("bad_event", t.bad_event),
            ("timed_out", t.timed_out),
            ("panicked", t.panicked),
            ("circuit_open", t.circuit_open),
            ("rejected", t.rejected),
            ("dropped", t.dropped),
            ("shutdown", t.shutdown),
            ("cancelled", t.cancelled),
        ] {
            counter!("plugbus_delivery_failures_total", "subscription" => name.clone(), "reason" => reason)
                .absolute(n);
        }
        counter!("plugbus_delivery_retries_total", "subscription" => name.clone())
            .absolute(t.retried);
        gauge!("plugbus_mailbox_depth", "subscription" => name.clone()).set(s.mailbox_depth as f64);
        gauge!("plugbus_mailbox_capacity", "subscription" => name.clone())
            .set(s.mailbox_capacity as f64);
        if let Some(d) = s.p50 {
            gauge!("plugbus_delivery_latency_p50_seconds", "subscription" => name.clone())
                .set(d.as_secs_f64());
        }
        if let Some(d) = s.p99 {
            gauge!("plugbus_delivery_latency_p99_seconds", "subscription" => name.clone())
                .set(d.as_secs_f64());
        }
        counter!("plugbus_delivery_latency_samples_total", "subscription" => name.clone())
            .absolute(s.latency_samples);
        if let Some(state) = s.breaker {
            let open = matches!(state, BreakerState::Open | BreakerState::HalfOpen);
            gauge!("plugbus_circuit_open", "subscription" => name).set(f64::from(u8::from(open)));
        }
    }
}

/// The label values of [`PluginState`], in `plugbus_plugin_state`.
const STATES: [&str; 5] = ["loaded", "running", "stopping", "stopped", "failed"];

fn state_label(state: &PluginState) -> &'static str {
    match state {
        PluginState::Loaded => "loaded",
        PluginState::Running => "running",
        PluginState::Stopping => "stopping",
        PluginState::Stopped => "stopped",
        PluginState::Failed(_) => "failed",
    }
}

/// Sets the per-plugin figures from [`PluginManager::plugins`].
pub fn record_plugins(plugins: &[PluginStatus]) {
    for p in plugins {
        let plugin = p.name.clone();
        let now = state_label(&p.state);
        for state in STATES {
            gauge!("plugbus_plugin_state", "plugin" => plugin.clone(), "state" => state)
                .set(f64::from(u8::from(state == now)));
        }
        counter!("plugbus_plugin_restarts_total", "plugin" => plugin.clone())
            .absolute(u64::from(p.restarts));
        let c = &p.counters;
        for (outcome, n) in [
            ("delivered", c.delivered),
            ("failed", c.failed),
            ("panicked", c.panicked),
            ("timed_out", c.timed_out),
            ("skipped", c.skipped),
            ("abandoned", c.abandoned),
        ] {
            counter!("plugbus_plugin_deliveries_total", "plugin" => plugin.clone(), "outcome" => outcome)
                .absolute(n);
        }
        gauge!("plugbus_plugin_queue_depth", "plugin" => plugin.clone()).set(p.queue_depth as f64);
        counter!("plugbus_plugin_published_total", "plugin" => plugin.clone())
            .absolute(c.published);
        for (kind, n) in [
            ("full", c.refused_full),
            ("closed", c.refused_closed),
            ("forbidden", c.refused_forbidden),
            ("invalid", c.refused_invalid),
        ] {
            counter!("plugbus_plugin_publish_refusals_total", "plugin" => plugin.clone(), "kind" => kind)
                .absolute(n);
        }
        gauge!("plugbus_plugin_publish_pending", "plugin" => plugin.clone())
            .set(c.publish_pending as f64);
        counter!("plugbus_plugin_rejected_by_subscribers_total", "plugin" => plugin)
            .absolute(c.rejected_by_subscribers);
    }
}

/// Describes every figure [`record`] sets (help text and unit) to the installed recorder.
/// Call it once, after installing the recorder.
pub fn describe() {
    let counters: [(&'static str, &'static str); 15] = [
        ("plugbus_events_accepted_total", "Events accepted by publish/emit."),
        ("plugbus_events_filtered_total", "Accepted events dropped by bus-wide filters."),
        ("plugbus_events_unrouted_total", "Accepted events no subscription matched."),
        ("plugbus_events_routed_total", "Accepted events routed to at least one subscription."),
        ("plugbus_deliveries_routed_total", "Deliveries routed: one per event per matching subscription."),
        ("plugbus_dead_letters_evicted_total", "Dead letters evicted because the queue was full."),
        ("plugbus_deliveries_total", "Finished deliveries per subscription, by outcome (delivered, skipped, failed, dead_lettered)."),
        ("plugbus_delivery_failures_total", "Why deliveries failed or were dead-lettered, per subscription."),
        ("plugbus_delivery_retries_total", "Delivery attempts retried, per subscription."),
        ("plugbus_delivery_latency_samples_total", "Handler latency samples taken, per subscription."),
        ("plugbus_plugin_restarts_total", "Restarts of a plugin's child process after a crash or hang."),
        ("plugbus_plugin_deliveries_total", "A plugin's handler calls, by outcome."),
        ("plugbus_plugin_published_total", "Events a plugin published that the bus accepted."),
        ("plugbus_plugin_publish_refusals_total", "Events a plugin published that were refused, by kind (full, closed, forbidden, invalid)."),
        ("plugbus_plugin_rejected_by_subscribers_total", "Of a plugin's published events, those some subscription's overflow policy rejected."),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    describe_gauge!(
        "plugbus_deliveries_in_flight",
        Unit::Count,
        "Deliveries routed and not finished yet."
    );
    describe_gauge!(
        "plugbus_dead_letter_queue_events",
        Unit::Count,
        "Entries now in the dead-letter queue."
    );
    describe_gauge!(
        "plugbus_mailbox_depth",
        Unit::Count,
        "Events waiting in a subscription's mailbox."
    );
    describe_gauge!(
        "plugbus_mailbox_capacity",
        Unit::Count,
        "A subscription's mailbox capacity."
    );
    describe_gauge!(
        "plugbus_delivery_latency_p50_seconds",
        Unit::Seconds,
        "Median handler latency per subscription."
    );
    describe_gauge!(
        "plugbus_delivery_latency_p99_seconds",
        Unit::Seconds,
        "99th percentile handler latency per subscription."
    );
    describe_gauge!(
        "plugbus_circuit_open",
        Unit::Count,
        "1 while a subscription's circuit breaker is open or half-open."
    );
    describe_gauge!(
        "plugbus_plugin_state",
        Unit::Count,
        "1 for the state a plugin is in, 0 for the others."
    );
    describe_gauge!(
        "plugbus_plugin_queue_depth",
        Unit::Count,
        "Jobs waiting in a plugin's queue."
    );
    describe_gauge!(
        "plugbus_plugin_publish_pending",
        Unit::Count,
        "A plugin's events still on their way to the bus."
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn value(
        snapshot: &[(
            metrics_util::CompositeKey,
            Option<Unit>,
            Option<metrics::SharedString>,
            DebugValue,
        )],
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        snapshot.iter().find_map(|(k, _, _, v)| {
            let key = k.key();
            let same = key.name() == name
                && labels.iter().all(|(l, want)| {
                    key.labels()
                        .any(|label| label.key() == *l && label.value() == *want)
                });
            let v = match v {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            };
            same.then_some(v)
        })
    }

    #[test]
    fn bus_figures_are_the_snapshot() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let bus = Bus::builder().build().unwrap();
            bus.subscribe_pattern("*")
                .name("app/all")
                .handle(|_: &plugbus::Event| {})
                .unwrap();
            bus.subscribe(plugbus::EventType::USER_LOGIN)
                .name("app/fails")
                .no_retry()
                .handle(|_: &plugbus::Event| -> Result<(), plugbus::HandlerError> {
                    Err(plugbus::HandlerError::permanent("no"))
                })
                .unwrap();
            for _ in 0..3 {
                let e = plugbus::Event::builder(plugbus::EventType::USER_LOGIN)
                    .build()
                    .unwrap();
                let _ = bus.publish(e).await;
            }
            let stats = bus.stats();
            metrics::with_local_recorder(&recorder, || {
                describe();
                record_bus(&stats);
            });
        });
        let snap = snapshotter.snapshot().into_vec();
        assert_eq!(
            value(&snap, "plugbus_events_accepted_total", &[]),
            Some(3.0)
        );
        assert_eq!(
            value(
                &snap,
                "plugbus_deliveries_total",
                &[("subscription", "app/all"), ("outcome", "delivered")]
            ),
            Some(3.0)
        );
        let failed = value(
            &snap,
            "plugbus_deliveries_total",
            &[("subscription", "app/fails"), ("outcome", "failed")],
        );
        let dead = value(
            &snap,
            "plugbus_deliveries_total",
            &[("subscription", "app/fails"), ("outcome", "dead_lettered")],
        );
        assert_eq!(failed.unwrap_or(0.0) + dead.unwrap_or(0.0), 3.0);
        assert_eq!(
            value(
                &snap,
                "plugbus_delivery_failures_total",
                &[("subscription", "app/fails"), ("reason", "error")]
            ),
            Some(3.0)
        );
        assert!(value(
            &snap,
            "plugbus_mailbox_depth",
            &[("subscription", "app/all")]
        )
        .is_some());
        // Help text for what was described.
        assert!(snap
            .iter()
            .any(|(k, _, help, _)| k.key().name() == "plugbus_deliveries_total" && help.is_some()));
    }

    #[test]
    fn plugin_state_is_one_hot() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let status = PluginStatus {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            path: "/x.so".into(),
            mapped: "/y.so".into(),
            sha256: String::new(),
            abi: (0, 1),
            instance: 1,
            state: PluginState::Failed("boom".into()),
            counters: crate::PluginCounters {
                refused_full: 2,
                published: 5,
                ..Default::default()
            },
            subscriptions: Vec::new(),
            queue_depth: 0,
            isolation: crate::Isolation::Process,
            pid: None,
            restarts: 4,
            declared: Vec::new(),
        };
        metrics::with_local_recorder(&recorder, || record_plugins(&[status]));
        let snap = snapshotter.snapshot().into_vec();
        let state = |s| {
            value(
                &snap,
                "plugbus_plugin_state",
                &[("plugin", "p"), ("state", s)],
            )
        };
        assert_eq!(state("failed"), Some(1.0));
        assert_eq!(state("running"), Some(0.0));
        assert_eq!(
            value(&snap, "plugbus_plugin_restarts_total", &[("plugin", "p")]),
            Some(4.0)
        );
        assert_eq!(
            value(
                &snap,
                "plugbus_plugin_publish_refusals_total",
                &[("plugin", "p"), ("kind", "full")]
            ),
            Some(2.0)
        );
    }
}
