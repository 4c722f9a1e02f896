//! `--metrics ADDR` (or `[metrics] listen`) for `run` and `demo`: Prometheus text exposition
//! at `http://ADDR/metrics`.
//!
//! The figures are the host library's (`plugbus_host::metrics`), set through the `metrics`
//! facade from live snapshots on each scrape, and rendered by the Prometheus exporter's
//! recorder; the listener is a small hyper server of our own rather than the exporter's, so
//! that a scrape reads the bus as it is at that moment (nothing is recorded on the publish
//! path, and nothing on a timer).

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use plugbus::Bus;
use plugbus_host::PluginManager;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The address to serve on: the flag, else the config's `[metrics] listen`, else none.
pub(crate) fn address(
    flag: Option<SocketAddr>,
    config: &plugbus_host::Config,
) -> Option<SocketAddr> {
    flag.or_else(|| config.metrics.as_ref().map(|m| m.listen))
}

/// Starts a session, serving its metrics when the flag or the config asks: the address is
/// bound before the plugins start, so a taken port fails the run with nothing to undo.
pub(crate) async fn start_session(
    flag: Option<SocketAddr>,
    config: plugbus_host::Config,
    config_path: Option<&std::path::Path>,
) -> anyhow::Result<(crate::session::Session, Option<Server>)> {
    let listener = match address(flag, &config) {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let session = crate::session::Session::start(config, config_path).await?;
    let server = listener
        .map(|l| {
            l.serve(
                session.bus.clone(),
                session.manager.clone(),
                session.bridge_live(),
            )
        })
        .transpose()?;
    Ok((session, server))
}

/// A bound listener, not serving yet (bound before the plugins start, so a taken port fails
/// the run at once).
pub(crate) struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

/// Binds `addr` (port 0 picks a free port; the address taken is printed on stderr).
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<Listener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: cannot listen on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("metrics: the listener's address")?;
    Ok(Listener { listener, addr })
}

/// The one Prometheus recorder of the process (the facade takes one global recorder).
fn handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let h = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("metrics: cannot install the recorder: {e}"))?;
    plugbus_host::metrics::describe();
    let _ = HANDLE.set(h.clone());
    Ok(h)
}

/// Serving `/metrics` until dropped.
pub(crate) struct Server {
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Serves the figures of `bus` and `manager` until the returned [`Server`] is dropped.
    pub(crate) fn serve(
        self,
        bus: Bus,
        manager: PluginManager,
        bridge: Option<crate::bridge::Live>,
    ) -> anyhow::Result<Server> {
        let handle = handle()?;
        let Listener { listener, addr } = self;
        eprintln!("plugbus: serving metrics at http://{addr}/metrics");
        tracing::info!(%addr, "serving metrics");
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: wait a moment rather than spin.
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (bus, manager, handle) = (bus.clone(), manager.clone(), handle.clone());
                let bridge = bridge.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let reply = respond(&req, &bus, &manager, bridge.as_ref(), &handle);
                        async move { Ok::<_, std::convert::Infallible>(reply) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "metrics: connection ended with an error");
                    }
                });
            }
        });
        Ok(Server { task })
    }
}

fn respond<B>(
    req: &Request<B>,
    bus: &Bus,
    manager: &PluginManager,
    bridge: Option<&crate::bridge::Live>,
    handle: &PrometheusHandle,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    plugbus_host::metrics::record(bus, manager);
    if let Some(bridge) = bridge {
        record_bridge(&bridge.figures());
    }
    let mut body = handle.render();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    body.push_str(&plugbus_host::metrics::latency_histograms(bus));
    let mut r = reply(StatusCode::OK, body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The NATS bridge's counters, as `plugbus_bridge_*` (counters `_total`, the outbox depth a
/// gauge), set from its live figures at each scrape.
fn record_bridge(f: &crate::bridge::Figures) {
    for (name, help, value) in [
        (
            "plugbus_bridge_forwarded_total",
            "events forwarded to JetStream and acked",
            f.forwarded,
        ),
        (
            "plugbus_bridge_queued_total",
            "events written to the outbox",
            f.queued,
        ),
        (
            "plugbus_bridge_staged_total",
            "events staged in applications' transactions",
            f.staged,
        ),
        (
            "plugbus_bridge_publish_errors_total",
            "failed publishes to JetStream (retried)",
            f.publish_errors,
        ),
        (
            "plugbus_bridge_broker_duplicates_total",
            "forwards the stream's duplicate window dropped",
            f.broker_duplicates,
        ),
        (
            "plugbus_bridge_received_total",
            "messages received from JetStream",
            f.received,
        ),
        (
            "plugbus_bridge_acked_total",
            "received messages acked",
            f.acked,
        ),
        (
            "plugbus_bridge_nacked_total",
            "received messages nacked for redelivery",
            f.nacked,
        ),
        (
            "plugbus_bridge_redelivered_total",
            "received messages that were redeliveries",
            f.redelivered,
        ),
        (
            "plugbus_bridge_duplicates_total",
            "redelivered events dropped by id",
            f.duplicates,
        ),
        (
            "plugbus_bridge_own_total",
            "this host's own events not delivered back",
            f.own,
        ),
        (
            "plugbus_bridge_malformed_total",
            "received messages that were not events",
            f.malformed,
        ),
        (
            "plugbus_bridge_refused_total",
            "received events the local bus refused",
            f.refused,
        ),
    ] {
        metrics::describe_counter!(name, help);
        metrics::counter!(name).absolute(value);
    }
    metrics::describe_gauge!(
        "plugbus_bridge_outbox_depth",
        "events in the outbox not yet acked by JetStream"
    );
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("plugbus_bridge_outbox_depth").set(f.outbox_depth as f64);
}
