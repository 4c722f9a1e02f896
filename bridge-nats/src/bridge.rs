//! [`NatsBridge`]: starts the outbox writer, the relay, the staging relay and the receiver,
//! and stops them in order.

use crate::ack::Acker;
use crate::config::{NatsConfig, Storage};
use crate::counters::{BridgeStats, Counters};
use crate::dedup::SeenIds;
use crate::error::BridgeError;
use crate::outbox::{Reader, Store};
use crate::receive::{Admission, Receiver};
use crate::relay::Relay;
use crate::staged::StagedRelay;
use crate::subject;
use crate::tail::Tail;
use crate::writer::{self, Cmd, WriterShared};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream, Context};
use parking_lot::Mutex;
use plugbus::{
    Bus, Completion, Event, EventId, HandlerError, Interest, OriginKind, SubscriptionId,
};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// The name of the bridge's forward subscription on the local bus.
pub const FORWARD_SUBSCRIPTION: &str = "bridge-nats/forward";

/// How long a JetStream request (stream, consumer, publish ack) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Backoff for setting up the stream and consumer while the broker is away: up to this.
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The most committed outbox rows kept in memory for the relay (about 100k bench events):
/// a backlog beyond that is read back from the file.
const TAIL_BYTES: usize = 64 << 20;

/// Reads a bridge's counters; cheap to clone, outlives the bridge (then it reads its last
/// figures).
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Counters>);

impl StatsHandle {
    /// The counters now (no consumer lag: that needs a request to the server).
    pub fn stats(&self) -> BridgeStats {
        self.0.snapshot()
    }
}

/// A running bridge between a local [`Bus`] and NATS JetStream.
///
/// ```no_run
/// # async fn f(bus: plugbus::Bus) -> Result<(), Box<dyn std::error::Error>> {
/// use plugbus_bridge_nats::{NatsBridge, NatsConfig};
/// let config = NatsConfig::from_toml_str(
///     "durable = \"host-a\"\nforward = [\"user.*\"]\nreceive = [\"security.*\"]",
///     "host-a.toml".as_ref(),
/// )?;
/// let bridge = NatsBridge::builder(config).start(&bus).await?;
/// // ... the application runs; user.* events go out, security.* events come in ...
/// let stats = bridge.shutdown(std::time::Duration::from_secs(10)).await;
/// println!("{} forwarded, {} received", stats.forwarded, stats.received);
/// # Ok(()) }
/// ```
pub struct NatsBridge {
    config: NatsConfig,
    bus: Bus,
    counters: Arc<Counters>,
    writer: Sender<Cmd>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    forward_sub: Option<SubscriptionId>,
    stop_receive: watch::Sender<bool>,
    stop_all: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    receiver_task: Option<JoinHandle<()>>,
    consumer: Arc<Mutex<Option<PullConsumer>>>,
    outbox_path: PathBuf,
}

impl std::fmt::Debug for NatsBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBridge")
            .field("url", &self.config.url)
            .field("host_id", &self.config.host_id())
            .field("outbox", &self.outbox_path)
            .finish_non_exhaustive()
    }
}

/// Configures a [`NatsBridge`]; get one from [`NatsBridge::builder`].
#[must_use = "call start() to run the bridge"]
pub struct BridgeBuilder {
    config: NatsConfig,
    admission: Option<Admission>,
}

impl std::fmt::Debug for BridgeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("config", &self.config)
            .field("admission", &self.admission.is_some())
            .finish()
    }
}

impl BridgeBuilder {
    /// A check every remote event passes before it enters the local bus: `Some(reason)`
    /// refuses it (the message is terminated and counted). The default admits everything.
    /// A host passes its rule for events from outside (no host-only types or sources).
    pub fn admission(
        mut self,
        check: impl Fn(&Event) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.admission = Some(Arc::new(check));
        self
    }

    /// Opens the outbox, subscribes the forward patterns on `bus`, connects, and starts the
    /// relay and the receiver. A broker that is not reachable yet is not an error: events
    /// wait in the outbox, and the bridge keeps trying (logging a warning).
    ///
    /// # Errors
    /// The outbox cannot be opened, a pattern is refused by the bus, the credentials file
    /// cannot be read.
    pub async fn start(self, bus: &Bus) -> Result<NatsBridge, BridgeError> {
        NatsBridge::start_with(self, bus).await
    }
}

fn interest_of(patterns: &[String]) -> Result<Interest, BridgeError> {
    let mut interest = Interest::none();
    for p in patterns {
        interest = interest.or_pattern(p)?;
    }
    Ok(interest)
}

impl NatsBridge {
    /// A builder for a bridge with `config`.
    pub fn builder(config: NatsConfig) -> BridgeBuilder {
        BridgeBuilder {
            config,
            admission: None,
        }
    }

    async fn start_with(b: BridgeBuilder, bus: &Bus) -> Result<NatsBridge, BridgeError> {
        let BridgeBuilder { config, admission } = b;
        let counters = Arc::new(Counters::default());
        let outbox_path = config.outbox_path();
        let path = outbox_path.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .map_err(|_| crate::error::OutboxError::Closed)??;
        counters.outbox_depth.store(store.depth()?, Relaxed);
        let remembered = store.seen()?;
        let reader = Arc::new(Mutex::new(Reader::open(&outbox_path)?));
        let appended = Arc::new(Notify::new());
        let tail = Arc::new(Tail::new(TAIL_BYTES, store.next_seq() - 1));
        let (writer_tx, writer_thread) = writer::spawn(
            store,
            WriterShared {
                counters: counters.clone(),
                appended: appended.clone(),
                tail: tail.clone(),
            },
        )
        .map_err(|e| BridgeError::JetStream {
            what: "starting the outbox writer".to_owned(),
            message: e.to_string(),
        })?;
        let forward = interest_of(&config.forward)?;
        let receive = interest_of(&config.receive)?;
        let relaying: Arc<Mutex<HashSet<EventId>>> = Arc::default();
        let forward_sub = if config.forward.is_empty() {
            None
        } else {
            Some(subscribe_forward(
                bus,
                forward.clone(),
                writer_tx.clone(),
                relaying.clone(),
                config.max_in_flight,
            )?)
        };

        let client = connect(&config).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .max_ack_inflight(config.max_in_flight.saturating_mul(2).max(16))
            .build(client);
        let (stop_receive, _) = watch::channel(false);
        let (stop_all, _) = watch::channel(false);
        let (ready_tx, ready_rx) = watch::channel(false);
        let consumer = Arc::new(Mutex::new(None));
        let tasks = vec![
            tokio::spawn(
                Relay {
                    client: js.client(),
                    reader,
                    tail,
                    writer: writer_tx.clone(),
                    appended,
                    counters: counters.clone(),
                    host: config.host_id().to_owned(),
                    prefix: config.subject_prefix.clone(),
                    window: config.max_in_flight,
                    ack_timeout: REQUEST_TIMEOUT,
                    ready: ready_rx,
                }
                .run(stop_all.subscribe()),
            ),
            tokio::spawn(
                StagedRelay {
                    path: outbox_path.clone(),
                    bus: bus.clone(),
                    writer: writer_tx.clone(),
                    relaying,
                    forward,
                }
                .run(stop_all.subscribe()),
            ),
        ];
        let receiver_task = tokio::spawn(setup_and_receive(
            js,
            config.clone(),
            bus.clone(),
            receive,
            admission,
            counters.clone(),
            ready_tx,
            consumer.clone(),
            Memory::load(remembered, config.dedup_window, writer_tx.clone()),
            stop_receive.subscribe(),
            stop_all.subscribe(),
        ));
        Ok(NatsBridge {
            config,
            bus: bus.clone(),
            counters,
            writer: writer_tx,
            writer_thread: Some(writer_thread),
            forward_sub,
            stop_receive,
            stop_all,
            tasks,
            receiver_task: Some(receiver_task),
            consumer,
            outbox_path,
        })
    }

    /// This host's id (sent with its events; its own events are never received back).
    pub fn host_id(&self) -> &str {
        self.config.host_id()
    }

    /// The outbox file.
    pub fn outbox_path(&self) -> &std::path::Path {
        &self.outbox_path
    }

    /// The counters now.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }

    /// A handle that reads the counters later (a metrics exporter's), without the bridge.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.counters))
    }

    /// The counters, with the consumer's lag asked of the server (`None` when there is no
    /// consumer or the server does not answer).
    pub async fn stats_with_lag(&self) -> BridgeStats {
        let mut stats = self.stats();
        let consumer = self.consumer.lock().clone();
        if let Some(c) = consumer {
            if let Ok(Ok(info)) = tokio::time::timeout(REQUEST_TIMEOUT, c.get_info()).await {
                stats.consumer_lag = Some(info.num_pending);
            }
        }
        stats
    }

    /// Waits until every event written to the outbox so far is acknowledged by JetStream,
    /// at most `timeout`; true if the outbox is empty.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writer.send(Cmd::Flush(tx)).is_err() {
            return false;
        }
        if tokio::time::timeout(timeout, rx).await.is_err() {
            return false;
        }
        while self.counters.outbox_depth.load(Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops taking remote events (the consumer's unacked messages are redelivered to this
    /// host's next start). Forwarding goes on.
    pub async fn stop_receiving(&mut self) {
        let _ = self.stop_receive.send(true);
        if let Some(task) = self.receiver_task.take() {
            if tokio::time::timeout(REQUEST_TIMEOUT, task).await.is_err() {
                tracing::warn!("the bridge's receiver did not stop in time");
            }
        }
    }

    /// Stops receiving, lets the outbox drain to the broker for at most `timeout` (what is left
    /// stays in the outbox for the next start), stops every task, and returns the counters.
    pub async fn shutdown(mut self, timeout: Duration) -> BridgeStats {
        self.stop_receiving().await;
        if let Some(id) = self.forward_sub.take() {
            // Deliveries already handed over are committed before the writer stops.
            self.bus.unsubscribe_drained(id, timeout).await;
        }
        if !self.flush(timeout).await {
            tracing::warn!(
                left = self.counters.outbox_depth.load(Relaxed),
                outbox = %self.outbox_path.display(),
                "the outbox did not drain before the deadline; the rest is sent at the next start"
            );
        }
        let mut stats = self.stats_with_lag().await;
        let _ = self.stop_all.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        let _ = self.writer.send(Cmd::Stop);
        if let Some(thread) = self.writer_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        stats.outbox_depth = self.counters.outbox_depth.load(Relaxed);
        stats
    }
}

impl Drop for NatsBridge {
    fn drop(&mut self) {
        let _ = self.stop_receive.send(true);
        let _ = self.stop_all.send(true);
        let _ = self.writer.send(Cmd::Stop);
        if let Some(id) = self.forward_sub.take() {
            self.bus.unsubscribe(id);
        }
    }
}

fn subscribe_forward(
    bus: &Bus,
    interest: Interest,
    writer: Sender<Cmd>,
    relaying: Arc<Mutex<HashSet<EventId>>>,
    max_in_flight: usize,
) -> Result<SubscriptionId, BridgeError> {
    let writer = Mutex::new(writer);
    let id = bus
        .subscribe(interest)
        .name(FORWARD_SUBSCRIPTION)
        .max_in_flight(max_in_flight)
        .handle_deferred(move |event: &Event, done: Completion| {
            // A remote event is never sent back out (with more than two hosts, it would
            // circle); a staged event the relay publishes is already on its way.
            if event.origin().kind() == OriginKind::Remote || relaying.lock().remove(&event.id()) {
                done.finish(Ok::<(), HandlerError>(()));
                return;
            }
            let sent = writer.lock().send(Cmd::Forward(event.clone(), done));
            if let Err(std::sync::mpsc::SendError(Cmd::Forward(_, done))) = sent {
                done.finish(Err::<(), _>(HandlerError::retryable(
                    "the bridge's outbox has stopped",
                )));
            }
        })?;
    Ok(id)
}

async fn connect(config: &NatsConfig) -> Result<async_nats::Client, BridgeError> {
    connect_options(config)
        .await?
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(config.url.as_str())
        .await
        .map_err(|e| BridgeError::Connect {
            url: config.url.clone(),
            message: e.to_string(),
        })
}

/// The client options of `config`: this host's name, its credentials and TLS settings (the
/// bridge's connection, and [`inspect`](crate::inspect())'s).
pub(crate) async fn connect_options(
    config: &NatsConfig,
) -> Result<async_nats::ConnectOptions, BridgeError> {
    let mut options =
        async_nats::ConnectOptions::new().name(format!("plugbus:{}", config.host_id()));
    if let Some(creds) = &config.credentials {
        let path = config.resolve(creds);
        options = options
            .credentials_file(&path)
            .await
            .map_err(|source| BridgeError::Credentials { path, source })?;
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(tls.required);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(config.resolve(ca));
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.add_client_certificate(config.resolve(cert), config.resolve(key));
        }
    }
    Ok(options)
}

/// What the receiver remembers between its message streams, and from the last run.
struct Memory {
    seen: SeenIds,
    next_n: i64,
    writer: std::sync::mpsc::Sender<Cmd>,
    /// Sends the acks (made once the server was first reached).
    acker: Option<Acker>,
}

impl Memory {
    /// The ids the outbox file holds (delivered, ack not confirmed) seed the window.
    fn load(
        rows: Vec<(i64, String)>,
        window: usize,
        writer: std::sync::mpsc::Sender<Cmd>,
    ) -> Memory {
        let mut seen = SeenIds::new(window);
        let next_n = rows.last().map_or(1, |(n, _)| n + 1);
        for (_, id) in rows {
            if let Ok(id) = id.parse::<EventId>() {
                seen.insert(id);
            }
        }
        Memory {
            seen,
            next_n,
            writer,
            acker: None,
        }
    }
}

/// Creates the stream (if missing) and, with `receive` patterns, this host's consumer, then
/// feeds the local bus; does it again whenever the consumer's message stream ends.
#[allow(clippy::too_many_arguments)]
async fn setup_and_receive(
    js: Context,
    config: NatsConfig,
    bus: Bus,
    interest: Interest,
    admission: Option<Admission>,
    counters: Arc<Counters>,
    ready: watch::Sender<bool>,
    consumer_slot: Arc<Mutex<Option<PullConsumer>>>,
    mut memory: Memory,
    mut stop: watch::Receiver<bool>,
    mut stop_all: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        if *stop_all.borrow() {
            return;
        }
        // Receiving may be stopped before the stream was ever set up (a run whose input ended
        // at once): the relay still needs the stream to drain the outbox, so the setup goes
        // on until it succeeds or the whole bridge stops; only the receiving is skipped.
        let stopping = *stop.borrow();
        if stopping && *ready.borrow() {
            return;
        }
        match setup(&js, &config).await {
            Ok(_) if stopping => {
                let _ = ready.send(true);
                return;
            }
            Ok(consumer) => {
                let _ = ready.send(true);
                if warned {
                    tracing::info!(url = %config.url, "JetStream is reachable again");
                    warned = false;
                }
                backoff = Duration::from_millis(100);
                let Some(consumer) = consumer else {
                    // Forward only: nothing to receive.
                    let _ = stop.changed().await;
                    return;
                };
                *consumer_slot.lock() = Some(consumer.clone());
                // A durable created before keeps its ack policy: batches only under "all".
                let ack_batch = if consumer.cached_info().config.ack_policy == AckPolicy::All {
                    config.ack_batch
                } else {
                    1
                };
                if memory.acker.is_none() {
                    match Acker::start(js.client(), memory.writer.clone(), counters.clone()).await {
                        Ok(a) => memory.acker = Some(a),
                        Err(e) => {
                            tracing::debug!(error = %e, "subscribing to ack confirmations failed")
                        }
                    }
                }
                let Some(acker) = memory.acker.clone() else {
                    tokio::time::sleep(backoff).await;
                    continue;
                };
                match consumer.messages().await {
                    Ok(messages) => {
                        let mut receiver = Receiver {
                            consumer: messages,
                            ack_batch,
                            bus: bus.clone(),
                            host: config.host_id().to_owned(),
                            interest: interest.clone(),
                            seen: std::mem::replace(&mut memory.seen, SeenIds::new(0)),
                            next_n: memory.next_n,
                            unsaved: Vec::new(),
                            writer: memory.writer.clone(),
                            acker: acker.clone(),
                            admission: admission.clone(),
                            counters: counters.clone(),
                        };
                        let stopped = receiver.run(&mut stop).await;
                        memory.seen = receiver.seen;
                        memory.next_n = receiver.next_n;
                        if stopped {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "starting the consumer's message stream failed")
                    }
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(url = %config.url, error = %e, "JetStream is not reachable; events wait in the outbox");
                    warned = true;
                }
            }
        }
        if stopping {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop_all.changed() => return,
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                // Stopped receiving: loop once more, to make sure the stream is set up.
                _ = stop.changed() => {}
            }
        }
        backoff = (backoff * 2).min(SETUP_BACKOFF_MAX);
    }
}

async fn setup(js: &Context, config: &NatsConfig) -> Result<Option<PullConsumer>, BridgeError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| BridgeError::JetStream {
        what: what.to_owned(),
        message: e.to_string(),
    };
    let stream = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            storage: match config.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            duplicate_window: config.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| fail(&format!("creating stream '{}'", config.stream), &e))?;
    if config.receive.is_empty() {
        return Ok(None);
    }
    let consumer = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject: subject::covering_filter(&config.subject_prefix, &config.receive),
                // "All up to here" lets the receiver acknowledge a batch with one message.
                ack_policy: if config.ack_batch > 1 {
                    AckPolicy::All
                } else {
                    AckPolicy::Explicit
                },
                deliver_policy: DeliverPolicy::All,
                ack_wait: config.ack_wait,
                max_ack_pending: i64::try_from(config.max_in_flight)
                    .unwrap_or(i64::MAX)
                    .max(1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fail(&format!("creating consumer '{}'", config.durable), &e))?;
    Ok(Some(consumer))
}
