//! OpenTelemetry export (feature `otel`): a span per plugin delivery, parented on the event's
//! W3C `traceparent`, sent over OTLP/HTTP (protobuf) to the `[otel]` endpoint.
//!
//! The pieces, each usable alone:
//! - [`Otel::new`] builds the exporter and tracer provider from an [`OtelConfig`]: a batch
//!   processor on a thread of its own posting to `<endpoint>/v1/traces` with a blocking HTTP
//!   client, so it needs no async runtime and never runs on the bus's.
//! - [`Otel::layer`] is the `tracing` layer to add to the application's subscriber. It sees
//!   only the host's delivery spans (target [`DELIVERY_TARGET`]) and warnings and errors logged
//!   inside them (plugin logs included), whatever the application's own filter says.
//! - [`delivery_span`] makes the span of one delivery, and
//!   [`bridge::with_delivery_view`](crate::bridge::with_delivery_view) runs a plugin's `handle`
//!   inside it.
//! - [`current_trace`]: the trace context of the span current on this thread. The events a
//!   plugin publishes while it handles a delivery take it as their traceparent (see
//!   [`bridge::owned_to_event`](crate::bridge::owned_to_event)), so in a backend they hang
//!   under the delivery that published them, and that delivery under the span of the event's
//!   own publisher.
//!
//! An event without a traceparent gets a delivery span that starts a new trace, and what the
//! plugin publishes meanwhile continues that one.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! # fn main() -> Result<(), plugbus_host::otel::OtelError> {
//! let config = plugbus_host::config::OtelConfig {
//!     endpoint: "http://127.0.0.1:4318".into(),
//!     service_name: "shop".into(),
//! };
//! let otel = plugbus_host::otel::Otel::new(&config)?;
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(otel.layer());
//! let _ = tracing::subscriber::set_global_default(subscriber);
//! // ... run the host ...
//! otel.shutdown()?; // exports what is still buffered
//! # Ok(()) }
//! ```

use std::fmt;

use opentelemetry::trace::{
    SpanContext, TraceContextExt as _, TraceFlags as OtelFlags, TraceState as OtelState,
    TracerProvider as _,
};
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use plugbus::trace_context::{SpanId, TraceFlags, TraceId};
use plugbus::{Event, TraceContext, TraceState};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::OtelConfig;

/// The `tracing` target of the delivery spans.
pub const DELIVERY_TARGET: &str = "plugbus::delivery";

/// Why OpenTelemetry export could not be set up, or a flush failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The exporter could not be built (a bad endpoint, no HTTP client).
    #[error("cannot export OpenTelemetry spans to '{url}': {message}")]
    Build {
        /// Where spans would have gone.
        url: String,
        /// The exporter's reason.
        message: String,
    },
    /// Flushing or shutting down did not complete (the collector is unreachable, say).
    #[error("OpenTelemetry export to '{url}' failed: {message}")]
    Export {
        /// Where spans go.
        url: String,
        /// The SDK's reason.
        message: String,
    },
}

/// The tracer provider exporting the host's spans; see the module docs. Dropping the last
/// handle shuts it down; [`Otel::shutdown`] does it explicitly and reports the outcome.
#[derive(Clone)]
pub struct Otel {
    provider: SdkTracerProvider,
    url: String,
}

impl fmt::Debug for Otel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otel").field("url", &self.url).finish()
    }
}

impl Otel {
    /// An OTLP/HTTP (protobuf) exporter posting to [`OtelConfig::traces_url`], behind a batch
    /// processor, with `service.name` set from the config.
    ///
    /// # Errors
    /// [`OtelError::Build`] if the exporter cannot be built (the endpoint is not a URL).
    pub fn new(config: &OtelConfig) -> Result<Otel, OtelError> {
        let url = config.traces_url();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .build()
            .map_err(|e| OtelError::Build {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Otel { provider, url })
    }

    /// Where spans are posted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `tracing` layer that turns delivery spans into OpenTelemetry spans (with the
    /// warnings and errors logged inside them as span events). It carries its own filter, so
    /// the application's log filter does not decide what is exported.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let filter = Targets::new()
            .with_target(DELIVERY_TARGET, tracing::Level::TRACE)
            .with_default(tracing::Level::WARN);
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("plugbus-host"))
            .with_filter(filter)
    }

    /// Exports every finished span now.
    ///
    /// # Errors
    /// [`OtelError::Export`] if the export did not succeed.
    pub fn flush(&self) -> Result<(), OtelError> {
        self.provider
            .force_flush()
            .map_err(|e| self.export_error(e))
    }

    /// Exports what is buffered and stops the exporter; spans ended afterwards are dropped.
    ///
    /// # Errors
    /// [`OtelError::Export`] if the last export did not succeed.
    pub fn shutdown(&self) -> Result<(), OtelError> {
        self.provider.shutdown().map_err(|e| self.export_error(e))
    }

    fn export_error(&self, e: impl fmt::Display) -> OtelError {
        OtelError::Export {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }
}

/// The span of one delivery of `event` to `plugin`, parented on the event's traceparent (a new
/// trace when it has none, never a child of whatever span is current). Named
/// `deliver <event type>`, of kind consumer, with the plugin, the event's type, id and source.
///
/// It costs one disabled-callsite check when no subscriber wants it.
pub fn delivery_span(plugin: &str, event: &Event) -> tracing::Span {
    let event_type = event.event_type().name();
    let span = tracing::info_span!(
        target: DELIVERY_TARGET,
        "plugbus.deliver",
        otel.name = %format_args!("deliver {event_type}"),
        otel.kind = "consumer",
        plugin = plugin,
        messaging.system = "plugbus",
        messaging.destination.name = event_type,
        messaging.message.id = %event.id(),
        event.source = event.source(),
    );
    if !span.is_disabled() {
        let parent = match event.trace_context() {
            Some(trace) => Context::new().with_remote_span_context(to_otel(trace)),
            None => Context::new(),
        };
        if let Err(error) = span.set_parent(parent) {
            tracing::debug!(%error, "delivery span kept its own parent");
        }
    }
    span
}

/// The trace context of the OpenTelemetry span current on this thread (trace id, that span's
/// id, flags, tracestate), if there is one: what an event published now should carry.
pub fn current_trace() -> Option<TraceContext> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let sc = context.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    from_otel(&sc)
}

/// A plugbus trace context as an OpenTelemetry remote span context.
pub fn to_otel(trace: &TraceContext) -> SpanContext {
    let state = trace
        .tracestate()
        .and_then(|s| s.parse::<OtelState>().ok())
        .unwrap_or_default();
    SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(trace.trace_id.to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(trace.span_id.to_bytes()),
        OtelFlags::new(trace.flags.bits()),
        true,
        state,
    )
}

/// An OpenTelemetry span context as a plugbus trace context (`None` for an invalid one).
pub fn from_otel(sc: &SpanContext) -> Option<TraceContext> {
    let trace_id = TraceId::from_bytes(sc.trace_id().to_bytes())?;
    let span_id = SpanId::from_bytes(sc.span_id().to_bytes())?;
    let header = sc.trace_state().header();
    let state = TraceState::parse(&header).ok();
    Some(
        TraceContext::new(trace_id, span_id, TraceFlags::new(sc.trace_flags().to_u8()))
            .with_state(state),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::bridge::{with_delivery_view, PluginHost};
    use crate::manager::Counters;
    use abi_stable::std_types::{RString, RVec};
    use plugbus::{context, Bus, Category, EventType};
    use plugbus_plugin_api::{AbiHost as _, OwnedEvent};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use tracing_subscriber::layer::SubscriberExt as _;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// What the collector received: (request line, body) per request.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A tiny OTLP/HTTP collector on a loopback port: reads each request whole (by
    /// Content-Length), keeps it, answers 200. Stops by itself after 30 s or 100 requests.
    fn collector() -> (String, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let received: Received = Arc::default();
        let r = Arc::clone(&received);
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while Instant::now() < until && served < 100 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        if let Some(request) = read_request(stream) {
                            r.lock().unwrap().push(request);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        (format!("http://{addr}"), received)
    }

    fn read_request(mut stream: TcpStream) -> Option<(String, Vec<u8>)> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        let header_end = loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&buf[..n]);
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&data[..header_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while data.len() < header_end + length {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        Some((request_line, data[header_end..].to_vec()))
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn ping() -> OwnedEvent {
        OwnedEvent {
            event_type: "fixture.ping".into(),
            category: Category::Custom as u8,
            source: RString::new(),
            schema_version: 1,
            payload_json: "{}".into(),
            metadata: RVec::new(),
        }
    }

    /// A delivery to a plugin as the in-process runner makes it: in the event's causation
    /// context and its delivery span; the plugin publishes one event meanwhile. Returns the
    /// delivery span's context as seen inside, and the event published.
    fn deliver_and_publish(
        host: &PluginHost,
        rx: &std::sync::mpsc::Receiver<Event>,
        event: &Event,
    ) -> (TraceContext, Event) {
        let inside = context::enter(Some(event.causation()), || {
            with_delivery_view("echo", event, b"{}", |_view| {
                assert!(host.publish(ping()).is_ok());
                current_trace().expect("a delivery span")
            })
        });
        let published = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        (inside, published)
    }

    #[test]
    fn delivery_spans_reach_an_otlp_endpoint_and_parent_what_plugins_publish() {
        let (endpoint, received) = collector();
        let otel = Otel::new(&OtelConfig {
            endpoint: endpoint.clone(),
            service_name: "plugbus-otel-test".into(),
        })
        .unwrap();
        assert_eq!(otel.url(), format!("{endpoint}/v1/traces"));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let bus = Bus::builder().build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        bus.subscribe(EventType::new("fixture.ping", Category::Custom).unwrap())
            .handle(move |e: &Event| {
                let _ = tx.lock().unwrap().send(e.clone());
            })
            .unwrap();
        let counters = Counters::default();
        let host = PluginHost::new(&bus, "echo".into(), &counters, Duration::from_secs(1));

        let traced = Event::builder(EventType::USER_LOGIN)
            .metadata("traceparent", TRACEPARENT)
            .metadata("tracestate", "congo=t61rcWkgMzE")
            .build()
            .unwrap();
        let untraced = Event::builder(EventType::USER_LOGOUT).build().unwrap();
        let subscriber = tracing_subscriber::registry().with(otel.layer());
        let (traced_run, untraced_run) = tracing::subscriber::with_default(subscriber, || {
            (
                deliver_and_publish(&host, &rx, &traced),
                deliver_and_publish(&host, &rx, &untraced),
            )
        });

        // The delivery span continues the event's trace; the plugin's event hangs under it.
        let cause = traced.trace_context().unwrap();
        let (span, published) = traced_run;
        assert_eq!(span.trace_id, cause.trace_id);
        assert_ne!(span.span_id, cause.span_id);
        assert_eq!(span.tracestate(), Some("congo=t61rcWkgMzE"));
        assert_eq!(published.trace_context(), Some(&span));
        assert_eq!(published.causation_id(), Some(traced.id()));

        // An untraced event's delivery starts a trace, continued by what is published in it.
        let (root, published_in_root) = untraced_run;
        assert_ne!(root.trace_id, cause.trace_id);
        assert_eq!(published_in_root.trace_context(), Some(&root));

        otel.flush().unwrap();
        let requests = received.lock().unwrap().clone();
        assert!(!requests.is_empty(), "nothing reached the collector");
        assert!(requests
            .iter()
            .all(|(line, _)| line.starts_with("POST /v1/traces ")));
        let body: Vec<u8> = requests.into_iter().flat_map(|(_, b)| b).collect();
        // Protobuf keeps ids as raw bytes and strings as they are.
        assert!(contains(&body, &cause.trace_id.to_bytes()), "trace id");
        assert!(
            contains(&body, &span.span_id.to_bytes()),
            "delivery span id"
        );
        assert!(contains(&body, &cause.span_id.to_bytes()), "its parent");
        assert!(contains(&body, &root.trace_id.to_bytes()), "the new trace");
        assert!(contains(&body, b"deliver user.login"));
        assert!(contains(&body, b"plugbus-otel-test"));
        drop(host);
        otel.shutdown().unwrap();
    }

    #[test]
    fn contexts_convert_both_ways_and_a_bad_endpoint_is_an_error() {
        let tc = TraceContext::parse(TRACEPARENT)
            .unwrap()
            .with_state(Some("a=1,b=2".parse().unwrap()));
        let sc = to_otel(&tc);
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(from_otel(&sc), Some(tc));
        assert_eq!(from_otel(&SpanContext::empty_context()), None);
        let err = Otel::new(&OtelConfig {
            endpoint: "http://bad host:1".into(),
            service_name: "x".into(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("bad host"), "{err}");
        // Without a subscriber that wants it, a delivery span is disabled and free.
        let e = Event::builder(EventType::USER_LOGIN).build().unwrap();
        assert!(delivery_span("p", &e).is_disabled());
        assert_eq!(current_trace(), None);
    }
}
