//! Running a plugin in the host's own process: a dedicated thread per instance that owns the
//! plugin object and serves its job queue (construct, `subscriptions`, `start`, each `handle`,
//! `stop`), in queue order.
//!
//! The fastest way to run a plugin, and the default. A plugin that crashes, aborts or exits
//! takes the host with it; for that, see [`super::process`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use plugbus::payload::PluginError as PluginErrorPayload;
use plugbus::{context, Completion};
use plugbus_plugin_api::abi_stable::std_types::RResult;
use plugbus_plugin_api::{AbiSubscription, PluginError};
use tokio::sync::{mpsc, oneshot};

use super::{host_event, Inner, Job, PluginShared, Worker, MAX_SUBSCRIPTIONS};
use crate::bridge;
use crate::error::{LoadError, LoadErrorKind};
use crate::loader::{self, Library};

/// What a plugin thread needs besides its queue: where to report its instance's first panic in
/// `handle`, and how long to spin when idle.
pub(super) struct WorkerEnv {
    pub(super) shared: Arc<PluginShared>,
    pub(super) manager: Weak<Inner>,
    /// [`ManagerOptions::spin_before_park`].
    pub(super) spin: Duration,
}

impl WorkerEnv {
    /// The first panic of an instance is published as `plugin.error` (stage `handle`).
    ///
    /// Every panic is logged at WARN, up to [`LOGGED_PANICS`] per instance and then every
    /// thousandth (with the count), so a plugin that panics on each event cannot flood the
    /// log, and an author still sees more than the first.
    /// Finishes a delivery with the plugin's answer, counting it (in process or from a child).
    pub(super) fn answer(&self, result: Result<(), PluginError>, done: Completion) {
        let counters = &self.shared.counters;
        // Counted before the answer goes out, so whoever sees the delivery finished also sees
        // it counted; taken back if the bus had given up meanwhile (it counts that as timed
        // out).
        let counter = match &result {
            Ok(()) => &counters.delivered,
            Err(error) if error.is_panic() => &counters.panicked,
            Err(_) => &counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = &result {
            if error.is_panic() {
                self.first_panic(error);
            }
        }
        let answer = result.as_ref().map_err(bridge::handler_error).copied();
        if !done.finish(answer) {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn first_panic(&self, error: &PluginError) {
        let n = self.shared.counters.panicked.load(Ordering::Relaxed);
        if n <= LOGGED_PANICS || n % 1000 == 0 {
            tracing::warn!(plugin = %self.shared.plugin_ref.name, error = %error, panics = n, "plugin panicked in handle");
        }
        if self.shared.reported_panic.swap(true, Ordering::AcqRel) {
            return;
        }
        let payload = PluginErrorPayload {
            plugin: self.shared.plugin_ref.clone(),
            stage: "handle".to_owned(),
            error: error.to_string(),
        };
        let Some(manager) = self.manager.upgrade() else {
            return;
        };
        match host_event(payload) {
            Ok(event) => {
                if let Err(err) = manager.bus.try_emit(event) {
                    tracing::debug!(error = %err, "plugin.error not fully delivered");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot build plugin.error event"),
        }
    }
}

/// Panics of one instance logged one by one before only every thousandth is.
pub(super) const LOGGED_PANICS: u64 = 10;

pub(super) type Ready = oneshot::Receiver<Result<Vec<AbiSubscription>, LoadError>>;

/// Starts the plugin's thread, which constructs the instance and reads its subscriptions,
/// answering on the returned channel, then serves jobs until `Stop` or until every sender is
/// gone.
pub(super) fn spawn_worker(
    library: Library,
    host: plugbus_plugin_api::HostBox,
    config_json: String,
    panics: WorkerEnv,
) -> Result<(Worker, Ready), LoadError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let name = library.meta.name.clone();
    let path = library.path.clone();
    let thread = std::thread::Builder::new()
        .name(format!("plugbus-plugin-{name}"))
        .spawn(move || run_worker(library, host, config_json, rx, ready_tx, panics))
        .map_err(|e| {
            LoadError::new(
                path,
                LoadErrorKind::ThreadFailed {
                    name,
                    reason: e.to_string(),
                },
            )
        })?;
    Ok((
        Worker {
            tx,
            thread: Some(thread),
        },
        ready_rx,
    ))
}

/// The next job for a plugin thread.
///
/// Under a stream of events the queue often runs dry for a moment between two jobs. Sleeping then
/// costs a futex wake-up on the sending side and a context switch here for every event, which
/// dominated plugin delivery (~17% of the time in the kernel's wake-up path). So the thread first
/// looks again for a short while (`spin`), yielding its core, and only then blocks.
fn next_job(rx: &mut mpsc::UnboundedReceiver<Job>, spin: Duration) -> Option<Job> {
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if started.elapsed() >= spin {
            return rx.blocking_recv();
        }
        std::thread::yield_now();
    }
}

fn run_worker(
    library: Library,
    host: plugbus_plugin_api::HostBox,
    config_json: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
    ready: oneshot::Sender<Result<Vec<AbiSubscription>, LoadError>>,
    panics: WorkerEnv,
) {
    let counters = Arc::clone(&panics.shared.counters);
    let span = tracing::info_span!("plugin", name = %library.meta.name);
    let _entered = span.enter();
    let mut plugin = match loader::construct(&library, host, &config_json) {
        Ok(plugin) => plugin,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let subscriptions = match plugin.subscriptions() {
        RResult::ROk(subs) if subs.len() > MAX_SUBSCRIPTIONS => {
            let _ = ready.send(Err(LoadError::new(
                &library.path,
                LoadErrorKind::Subscriptions {
                    name: library.meta.name.clone(),
                    error: format!(
                        "declares {} subscriptions, more than the limit of {MAX_SUBSCRIPTIONS}",
                        subs.len()
                    ),
                },
            )));
            let _ = plugin.stop();
            return;
        }
        RResult::ROk(subs) => subs.into_vec(),
        RResult::RErr(error) => {
            let _ = ready.send(Err(LoadError::new(
                &library.path,
                LoadErrorKind::Subscriptions {
                    name: library.meta.name.clone(),
                    error: error.to_string(),
                },
            )));
            let _ = plugin.stop();
            return;
        }
    };
    if ready.send(Ok(subscriptions)).is_err() {
        // The manager gave up waiting (construction took too long): nobody will use us.
        let _ = plugin.stop();
        return;
    }
    while let Some(job) = next_job(&mut rx, panics.spin) {
        match job {
            Job::Start(reply) => {
                let _ = reply.send(plugin.start().into_result());
            }
            Job::Handle {
                handler,
                event,
                payload,
                done,
            } => {
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                if done.is_abandoned() {
                    // The bus gave up (timed out): it has already accounted for the delivery.
                    counters.abandoned.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let result = context::enter(Some(event.causation()), || {
                    bridge::with_delivery_view(&library.meta.name, &event, &payload, |view| {
                        plugin.handle(handler, view).into_result()
                    })
                });
                panics.answer(result, done);
            }
            Job::Reconfigure { config_json, reply } => {
                let result = plugin
                    .reconfigure(config_json.as_str().into())
                    .into_result();
                let _ = reply.send(result);
            }
            Job::Stop(reply) => {
                let result = plugin.stop().into_result();
                drop(plugin);
                let _ = reply.send(result);
                return;
            }
        }
    }
    // Every sender is gone (the manager was dropped): stop and drop the instance.
    if let RResult::RErr(error) = plugin.stop() {
        tracing::warn!(error = %error, "plugin stop failed");
    }
}

/// The outcome of a lifecycle call on a plugin thread.
pub(super) enum CallResult<T = ()> {
    Done(Result<T, PluginError>),
    TimedOut,
    Gone,
}

/// Sends a lifecycle job and waits for its answer, at most `timeout` in all.
pub(super) async fn call<T>(
    tx: &mpsc::UnboundedSender<Job>,
    make: impl FnOnce(oneshot::Sender<Result<T, PluginError>>) -> Job,
    timeout: Duration,
) -> CallResult<T> {
    let (reply, answer) = oneshot::channel();
    let job = make(reply);
    let exchange = async {
        if tx.send(job).is_err() {
            return CallResult::Gone;
        }
        match answer.await {
            Ok(result) => CallResult::Done(result),
            Err(_) => CallResult::Gone,
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(CallResult::TimedOut)
}

/// Sends a new configuration to a plugin's thread (or child) and waits for its answer, at
/// most `timeout`: `true` if the instance applied it, `false` if it asks for a reload.
pub(super) async fn call_reconfigure(
    tx: &mpsc::UnboundedSender<Job>,
    config_json: String,
    timeout: Duration,
) -> CallResult<bool> {
    call(tx, |reply| Job::Reconfigure { config_json, reply }, timeout).await
}
