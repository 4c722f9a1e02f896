//! Running a plugin in a child process of its own, supervised (`isolation = "process"`).
//!
//! The manager sees the same [`Worker`] as for a plugin in process: a queue of [`Job`]s fed
//! by the plugin's bus subscriptions and lifecycle calls. Behind it, instead of a thread, a
//! supervisor task owns one child process at a time (see [`crate::isolation`] for the child
//! and the protocol):
//!
//! - **deliveries** leave in batches (whatever is queued, up to
//!   [`BATCH_EVENTS`](crate::isolation::protocol::BATCH_EVENTS)), each numbered and kept
//!   until the child answers it; a reader thread finishes the delivery's [`Completion`] with
//!   the answer, so the bus accounts for it exactly as for a plugin in process;
//! - **publishes** from the child go through the same [`PluginHost`] as in process (checks,
//!   origin `plugin:<name>`, the outbound queue, typed refusals), in the causation context of
//!   the delivery the child was handling; **logs** reach the host's `tracing`;
//! - **supervision**: the child's exit (a signal or an exit status) or a missed heartbeat is
//!   noticed at once and published as `plugin.error` (stage `process`, "killed by SIGSEGV",
//!   "exit status 42", "no heartbeat for 5s: killed"). The child is restarted after an
//!   exponential backoff, at most `max_restarts` times in `restart_window`
//!   ([`RestartBudget`]); the deliveries it had not answered go to the new child first, in
//!   their order (a delivery it had answered is never repeated). The one it was handling
//!   when it died is blamed; a delivery two children died on is finished as failed, "plugin
//!   crashed: …", and dead-lettered by the bus, so a poison event cannot crash-loop a plugin.
//!   A spent budget fails the plugin: its subscriptions are removed and every delivery still
//!   held or queued is finished as failed, with the reason.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use plugbus::payload::PluginError as PluginErrorPayload;
use plugbus::{context, Completion, Event, HandlerError};
use plugbus_plugin_api::abi_stable::std_types::{RResult, RSlice, RString, RVec, Tuple2};
use plugbus_plugin_api::{
    AbiFilter, AbiHost, AbiSubscription, FilterCondition, FilterOp, LogField, LogRecord, LogValue,
    OwnedEvent, PluginError,
};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::in_process::{Ready, WorkerEnv};
use super::supervisor::RestartBudget;
use super::{host_event, Inner, Job, ReconfigureReply, Reply, Worker, MAX_SUBSCRIPTIONS};
use crate::bridge::PluginHost;
use crate::config::{Config, ProcessLimits};
use crate::error::{LoadError, LoadErrorKind};
use crate::isolation::protocol::{
    read_frame, write_frame, Delivery, FromChild, Hello, Refusal, ToChild, WireError, WireEvent,
    WireLogValue, WireSubscription, BATCH_BYTES, BATCH_EVENTS, PROTOCOL_VERSION,
};
use crate::isolation::{self, CHILD_ARG};
use crate::loader::Library;
use crate::log_forward;

/// How a child is supervised: from the config of one plugin.
#[derive(Debug, Clone)]
pub(super) struct Supervision {
    max_restarts: u32,
    restart_window: Duration,
    heartbeat_timeout: Duration,
    limits: ProcessLimits,
    /// How long the handshake and `stop` may take.
    lifecycle: Duration,
}

impl Supervision {
    pub(super) fn from_config(config: &Config, name: &str, lifecycle: Duration) -> Self {
        let (max_restarts, restart_window) = config.plugin_restarts(name);
        Self {
            max_restarts,
            restart_window,
            heartbeat_timeout: config.plugins.heartbeat_timeout,
            limits: config.plugin(name).limits,
            lifecycle,
        }
    }
}

/// A delivery handed to a child and not answered yet.
struct Pending {
    handler: u32,
    event: Event,
    payload: Arc<[u8]>,
    done: Completion,
    /// How many children crashed while handling it. The child handles deliveries in order,
    /// so the one it was handling at a crash is the oldest it had not answered.
    crashes: u8,
}

type PendingMap = Arc<Mutex<BTreeMap<u64, Pending>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the supervisor of `library`'s child process; answers on [`Ready`] once the first
/// child has constructed the plugin (or failed to).
pub(super) fn spawn(
    library: &Library,
    host: PluginHost,
    config_json: String,
    supervision: Supervision,
    env: WorkerEnv,
) -> Result<(Worker, Ready), LoadError> {
    let name = library.meta.name.clone();
    let failed = |reason: String| {
        LoadError::new(
            &library.path,
            LoadErrorKind::ChildProcess {
                name: name.clone(),
                reason,
            },
        )
    };
    let exe = isolation::child_exe().cloned().ok_or_else(|| {
        failed(
            "process isolation is not enabled in this executable (see \
             plugbus_host::isolation::enable)"
                .to_owned(),
        )
    })?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| failed("no tokio runtime to supervise the child process on".to_owned()))?;
    let copy = PrivateCopy::new(&library.path, &library.sha256).map_err(failed)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let supervisor = Supervisor {
        name: Arc::from(name.as_str()),
        path: library.path.clone(),
        exe,
        copy,
        sha256: library.sha256.clone(),
        config_json,
        supervision,
        host: Arc::new(host),
        env: Arc::new(env),
        pending: Arc::new(Mutex::new(BTreeMap::new())),
        next_seq: 1,
        next_call: 1,
        started: false,
        start_owed: None,
    };
    runtime.spawn(supervisor.run(rx, ready_tx));
    Ok((Worker { tx, thread: None }, ready_rx))
}

/// The host's own copy of the plugin file, which the child maps: a `cp` over the original
/// while the plugin runs cannot reach it. Removed with the supervisor.
struct PrivateCopy {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PrivateCopy {
    fn new(original: &Path, sha256: &str) -> Result<Self, String> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let bytes = std::fs::read(original)
            .map_err(|e| format!("cannot read '{}' for the child: {e}", original.display()))?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(format!(
                "'{}' changed since it was checked; load it again",
                original.display()
            ));
        }
        let io = |e: std::io::Error| format!("cannot make the child's copy: {e}");
        let dir = tempfile::Builder::new()
            .prefix("plugbus-child-")
            .tempdir()
            .map_err(io)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let path = dir.path().join(format!("{sha256}.so"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o500)
            .open(&path)
            .map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        Ok(Self { _dir: dir, path })
    }
}

struct Supervisor {
    name: Arc<str>,
    path: PathBuf,
    exe: PathBuf,
    copy: PrivateCopy,
    sha256: String,
    config_json: String,
    supervision: Supervision,
    host: Arc<PluginHost>,
    env: Arc<WorkerEnv>,
    pending: PendingMap,
    next_seq: u64,
    next_call: u64,
    /// `start` succeeded: a restarted child is started too.
    started: bool,
    /// A `start` the crashed child never answered: the next child is started in its place,
    /// and its answer is this call's.
    start_owed: Option<Reply>,
}

/// One child process and the threads that talk to it.
struct Conn {
    child: tokio::process::Child,
    pid: u32,
    frames: std::sync::mpsc::Sender<Vec<u8>>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Milliseconds since `epoch` of the last heartbeat.
    last_beat: Arc<AtomicU64>,
    epoch: Instant,
}

/// What the reader thread tells the supervisor.
enum Control {
    Answer {
        id: u64,
        error: Option<WireError>,
    },
    /// The answer to a reconfiguration.
    Reconfigured {
        id: u64,
        applied: bool,
        error: Option<WireError>,
    },
    /// The channel closed (with the reason, if it broke rather than ended).
    Closed(Option<String>),
}

/// How a child's service ended.
enum End {
    /// Stopped as asked (or the manager went away): the supervisor ends.
    Stopped,
    /// It crashed, exited or hung: the reason, as people say it.
    Crashed(String),
}

fn frame(msg: &ToChild) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    match write_frame(&mut bytes, msg) {
        Ok(()) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a frame for a plugin's child process");
            None
        }
    }
}

impl Conn {
    fn send(&self, msg: &ToChild) -> bool {
        frame(msg).is_some_and(|bytes| self.frames.send(bytes).is_ok())
    }

    fn since_beat(&self) -> Duration {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_beat.load(Ordering::Acquire)))
    }

    /// Waits for the reader to see the end of the channel, so that every answer the child
    /// sent before it ended is counted before anything is delivered again.
    async fn drain_reader(&mut self) {
        let until = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(until);
        loop {
            tokio::select! {
                msg = self.control.recv() => match msg {
                    Some(Control::Closed(_)) | None => return,
                    Some(Control::Answer { .. } | Control::Reconfigured { .. }) => {}
                },
                () = &mut until => return,
            }
        }
    }

    /// SIGTERM, a grace period, then SIGKILL; returns how it ended.
    async fn kill(&mut self, grace: Duration) -> String {
        if let Some(pid) = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if let Ok(Ok(status)) = tokio::time::timeout(grace, self.child.wait()).await {
            return crate::probe::describe_status(status);
        }
        let _ = self.child.start_kill();
        match self.child.wait().await {
            Ok(status) => crate::probe::describe_status(status),
            Err(e) => format!("cannot wait for it: {e}"),
        }
    }
}

impl Supervisor {
    async fn run(
        mut self,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        ready: oneshot::Sender<Result<Vec<AbiSubscription>, LoadError>>,
    ) {
        let mut ready = Some(ready);
        let mut budget = RestartBudget::new(
            self.supervision.max_restarts,
            self.supervision.restart_window,
        );
        loop {
            let mut conn = match self.connect().await {
                Ok((conn, subscriptions)) => {
                    if let Some(ready) = ready.take() {
                        if ready.send(Ok(subscriptions)).is_err() {
                            // The manager gave up waiting: nobody will use this plugin.
                            let mut conn = conn;
                            let _ = self.stop_child(&mut conn).await;
                            return;
                        }
                    }
                    conn
                }
                Err(reason) => {
                    if let Some(ready) = ready.take() {
                        let err = LoadError::new(
                            &self.path,
                            LoadErrorKind::ChildProcess {
                                name: self.name.to_string(),
                                reason,
                            },
                        );
                        let _ = ready.send(Err(err));
                        return;
                    }
                    if self.after_crash(&mut budget, &reason).await {
                        continue;
                    }
                    self.refuse_all(&mut jobs, &reason).await;
                    return;
                }
            };
            self.env.shared.pid.store(conn.pid, Ordering::Relaxed);
            let end = match self.resume(&mut conn).await {
                Err(reason) => End::Crashed(reason),
                Ok(()) => self.serve(&mut conn, &mut jobs).await,
            };
            self.env.shared.pid.store(0, Ordering::Relaxed);
            match end {
                End::Stopped => return,
                End::Crashed(reason) => {
                    if !self.after_crash(&mut budget, &reason).await {
                        self.refuse_all(&mut jobs, &reason).await;
                        return;
                    }
                }
            }
        }
    }

    /// Starts a child, says hello, and reads its answer.
    async fn connect(&mut self) -> Result<(Conn, Vec<AbiSubscription>), String> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot make its channel: {e}"))?;
        let mut child = {
            // The channel is the child's standard input; it inherits no other descriptor
            // but stderr (std opens everything close-on-exec).
            let mut command = tokio::process::Command::new(&self.exe);
            command
                .arg(CHILD_ARG)
                // For `ps`; the child learns everything from the handshake.
                .arg(&*self.name)
                .stdin(Stdio::from(OwnedFd::from(theirs)))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            command
                .spawn()
                .map_err(|e| format!("cannot start '{}': {e}", self.exe.display()))?
        };
        let pid = child.id().unwrap_or(0);
        let heartbeat = self.supervision.heartbeat_timeout;
        let hello = ToChild::Hello(Hello {
            version: PROTOCOL_VERSION,
            name: self.name.to_string(),
            path: self.copy.path.clone(),
            sha256: self.sha256.clone(),
            config_json: self.config_json.clone(),
            limits: self.supervision.limits,
            heartbeat_ms: u64::try_from((heartbeat / 5).as_millis())
                .unwrap_or(1000)
                .max(10),
            hang_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
        });
        let lifecycle = self.supervision.lifecycle;
        let name = self.name.clone();
        let handshake = tokio::task::spawn_blocking(move || {
            let mut stream = ours;
            let answer = (|| -> std::io::Result<Option<FromChild>> {
                stream.set_read_timeout(Some(lifecycle))?;
                write_frame(&mut stream, &hello)?;
                stream.flush()?;
                let deadline = Instant::now() + lifecycle;
                let mut buf = Vec::new();
                // The plugin may log while it is constructed: those lines are its, not an
                // answer; anything else before Ready is out of turn.
                let answer = loop {
                    match read_frame::<FromChild>(&mut stream, &mut buf)? {
                        Some(log @ FromChild::Log { .. }) if Instant::now() < deadline => {
                            forward_log(&name, log);
                        }
                        other => break other,
                    }
                };
                stream.set_read_timeout(None)?;
                Ok(answer)
            })();
            (stream, answer)
        })
        .await;
        let (stream, answer) = match handshake {
            Ok(done) => done,
            Err(e) => return Err(format!("the handshake task failed: {e}")),
        };
        let subscriptions = match answer {
            Ok(Some(FromChild::Ready {
                version: PROTOCOL_VERSION,
                subscriptions,
                ..
            })) => subscriptions,
            Ok(Some(FromChild::Ready { version, .. })) => {
                let _ = child.start_kill();
                return Err(format!(
                    "its child speaks protocol version {version}, the host {PROTOCOL_VERSION}"
                ));
            }
            Ok(Some(FromChild::LoadFailed { error })) => {
                let _ = child.wait().await;
                return Err(error);
            }
            Ok(Some(_)) => {
                let _ = child.start_kill();
                return Err("its child answered out of turn".to_owned());
            }
            Ok(None) => {
                let status = match child.wait().await {
                    Ok(status) => crate::probe::describe_status(status),
                    Err(e) => e.to_string(),
                };
                return Err(format!(
                    "its child process ended before answering ({status})"
                ));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!(
                    "its child process did not answer within {lifecycle:?}"
                ));
            }
            Err(e) => {
                let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await
                {
                    Ok(Ok(status)) => crate::probe::describe_status(status),
                    _ => {
                        let _ = child.start_kill();
                        "killed".to_owned()
                    }
                };
                return Err(format!(
                    "its child process broke the handshake: {e} ({status})"
                ));
            }
        };
        if subscriptions.len() > MAX_SUBSCRIPTIONS {
            let _ = child.start_kill();
            return Err(format!(
                "declares {} subscriptions, more than the limit of {MAX_SUBSCRIPTIONS}",
                subscriptions.len()
            ));
        }
        let subscriptions = subscriptions
            .into_iter()
            .map(abi_subscription)
            .collect::<Result<Vec<_>, _>>()
            .inspect_err(|_| {
                let _ = child.start_kill();
            })?;
        let conn = self.wire(child, pid, stream)?;
        tracing::info!(plugin = %self.name, pid, "plugin child process ready");
        Ok((conn, subscriptions))
    }

    /// Starts the reader and writer threads of a child that answered the handshake.
    fn wire(
        &self,
        mut child: tokio::process::Child,
        pid: u32,
        stream: UnixStream,
    ) -> Result<Conn, String> {
        let (frames, outgoing) = std::sync::mpsc::channel::<Vec<u8>>();
        let (control_tx, control) = mpsc::unbounded_channel();
        let epoch = Instant::now();
        let last_beat = Arc::new(AtomicU64::new(0));
        let threads = (|| {
            let writer = stream.try_clone()?;
            std::thread::Builder::new()
                .name(format!("plugbus-child-out-{}", self.name))
                .spawn(move || write_loop(writer, &outgoing))?;
            let reader = Reader {
                name: Arc::clone(&self.name),
                host: Arc::clone(&self.host),
                env: Arc::clone(&self.env),
                pending: Arc::clone(&self.pending),
                frames: frames.clone(),
                control: control_tx,
                last_beat: Arc::clone(&last_beat),
                epoch,
            };
            std::thread::Builder::new()
                .name(format!("plugbus-child-in-{}", self.name))
                .spawn(move || reader.run(stream))?;
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = threads {
            let _ = child.start_kill();
            return Err(format!("cannot start the threads that talk to it: {e}"));
        }
        Ok(Conn {
            child,
            pid,
            frames,
            control,
            last_beat,
            epoch,
        })
    }

    /// A restarted child: started again if the plugin was running, then given back what the
    /// crashed one had not answered, in order.
    async fn resume(&mut self, conn: &mut Conn) -> Result<(), String> {
        let owed = self.start_owed.take();
        if self.started || owed.is_some() {
            let id = self.call_id();
            if !conn.send(&ToChild::Start { id }) {
                return Err("its channel closed".to_owned());
            }
            let answer = tokio::time::timeout(self.supervision.lifecycle, async {
                loop {
                    match conn.control.recv().await {
                        Some(Control::Answer { id: got, error }) if got == id => return Ok(error),
                        Some(Control::Answer { .. } | Control::Reconfigured { .. }) => {}
                        Some(Control::Closed(_)) | None => return Err(()),
                    }
                }
            })
            .await;
            let failed =
                |why: &str| PluginError::permanent(format!("plugin process restarted: {why}"));
            match answer {
                Ok(Ok(None)) => {
                    self.started = true;
                    if let Some(reply) = owed {
                        let _ = reply.send(Ok(()));
                    }
                }
                Ok(Ok(Some(error))) => {
                    let error = plugin_error(error);
                    let why = format!("start after a restart failed: {error}");
                    if let Some(reply) = owed {
                        let _ = reply.send(Err(error));
                    }
                    return Err(why);
                }
                Ok(Err(())) => {
                    let status = conn.kill(Duration::ZERO).await;
                    // Owed still: the child after this one answers it.
                    self.start_owed = owed;
                    return Err(status);
                }
                Err(_) => {
                    let status = conn.kill(Duration::from_secs(1)).await;
                    let why = format!("start after a restart did not answer ({status})");
                    if let Some(reply) = owed {
                        let _ = reply.send(Err(failed(&why)));
                    }
                    return Err(why);
                }
            }
        }
        let batch = {
            let counters = &self.env.shared.counters;
            let mut pending = lock(&self.pending);
            let abandoned: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.done.is_abandoned())
                .map(|(seq, _)| *seq)
                .collect();
            for seq in abandoned {
                pending.remove(&seq);
                counters.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            pending
                .iter_mut()
                .filter_map(|(seq, p)| {
                    // It crossed once already, so it converts again.
                    delivery(*seq, p.handler, &p.event, &p.payload).ok()
                })
                .collect::<Vec<_>>()
        };
        if !batch.is_empty() {
            tracing::info!(plugin = %self.name, deliveries = batch.len(), "delivering again what the crashed child had not answered");
            self.send_batches(conn, batch);
        }
        Ok(())
    }

    fn call_id(&mut self) -> u64 {
        let id = self.next_call;
        self.next_call += 1;
        id
    }

    fn send_batches(&self, conn: &Conn, batch: Vec<Delivery>) {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for d in batch {
            bytes += d.event.payload.get().len() + 256;
            chunk.push(d);
            if chunk.len() >= BATCH_EVENTS || bytes >= BATCH_BYTES {
                conn.send(&ToChild::Deliver {
                    batch: std::mem::take(&mut chunk),
                });
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            conn.send(&ToChild::Deliver { batch: chunk });
        }
    }

    /// Takes one job off the queue into the batch, or returns it if it is a lifecycle call.
    fn take(&mut self, job: Job, batch: &mut Vec<Delivery>) -> Option<Job> {
        match job {
            Job::Handle {
                handler,
                event,
                payload,
                done,
            } => {
                let counters = &self.env.shared.counters;
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                if done.is_abandoned() {
                    counters.abandoned.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                match delivery(seq, handler, &event, &payload) {
                    Ok(d) => batch.push(d),
                    Err(reason) => {
                        done.finish(Err(HandlerError::bad_event(reason)));
                        return None;
                    }
                }
                lock(&self.pending).insert(
                    seq,
                    Pending {
                        handler,
                        event,
                        payload,
                        done,
                        crashes: 0,
                    },
                );
                None
            }
            other => Some(other),
        }
    }

    async fn serve(&mut self, conn: &mut Conn, jobs: &mut mpsc::UnboundedReceiver<Job>) -> End {
        let timeout = self.supervision.heartbeat_timeout;
        let mut tick = tokio::time::interval((timeout / 10).max(Duration::from_millis(20)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut calls: HashMap<u64, (Reply, bool)> = HashMap::new();
        let mut reconfigs: HashMap<u64, (ReconfigureReply, String)> = HashMap::new();
        let crashed = |calls: &mut HashMap<u64, (Reply, bool)>,
                       reconfigs: &mut HashMap<u64, (ReconfigureReply, String)>,
                       start_owed: &mut Option<Reply>,
                       reason: &str| {
            for (_, (reply, is_start)) in calls.drain() {
                if is_start {
                    // A crash during `start` is a crash like any other: the restarted child
                    // is started, and answers for this one.
                    *start_owed = Some(reply);
                    continue;
                }
                let _ = reply.send(Err(PluginError::permanent(format!(
                    "plugin process ended: {reason}"
                ))));
            }
            for (_, (reply, _)) in reconfigs.drain() {
                let _ = reply.send(Err(PluginError::permanent(format!(
                    "plugin process ended: {reason}"
                ))));
            }
        };
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else {
                        // Every sender is gone (the manager was dropped): stop the child.
                        let _ = self.stop_child(conn).await;
                        return End::Stopped;
                    };
                    let mut batch = Vec::new();
                    let mut call = self.take(job, &mut batch);
                    while call.is_none() && batch.len() < BATCH_EVENTS {
                        match jobs.try_recv() {
                            Ok(job) => call = self.take(job, &mut batch),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        self.send_batches(conn, batch);
                    }
                    match call {
                        None => {}
                        Some(Job::Start(reply)) => {
                            let id = self.call_id();
                            conn.send(&ToChild::Start { id });
                            calls.insert(id, (reply, true));
                        }
                        Some(Job::Stop(reply)) => {
                            let result = self.stop_child(conn).await;
                            let _ = reply.send(result);
                            return End::Stopped;
                        }
                        Some(Job::Reconfigure { config_json, reply }) => {
                            let id = self.call_id();
                            conn.send(&ToChild::Reconfigure { id, config_json: config_json.clone() });
                            reconfigs.insert(id, (reply, config_json));
                        }
                        Some(Job::Handle { .. }) => {}
                    }
                }
                msg = conn.control.recv() => match msg {
                    Some(Control::Reconfigured { id, applied, error }) => {
                        if let Some((reply, config_json)) = reconfigs.remove(&id) {
                            if applied && error.is_none() {
                                // A child started after a crash gets the configuration the
                                // plugin runs with now.
                                self.config_json = config_json;
                            }
                            let _ = reply.send(match error {
                                None => Ok(applied),
                                Some(e) => Err(plugin_error(e)),
                            });
                        }
                    }
                    Some(Control::Answer { id, error }) => {
                        if let Some((reply, is_start)) = calls.remove(&id) {
                            if is_start && error.is_none() {
                                self.started = true;
                            }
                            let _ = reply.send(match error {
                                None => Ok(()),
                                Some(e) => Err(plugin_error(e)),
                            });
                        }
                    }
                    other => {
                        let broken = match other {
                            Some(Control::Closed(broken)) => broken,
                            _ => None,
                        };
                        let status = match tokio::time::timeout(Duration::from_secs(2), conn.child.wait()).await {
                            Ok(Ok(status)) => crate::probe::describe_status(status),
                            _ => conn.kill(Duration::ZERO).await,
                        };
                        let reason = match broken {
                            Some(why) => format!("{status} (its channel broke: {why})"),
                            None => status,
                        };
                        crashed(&mut calls, &mut reconfigs, &mut self.start_owed, &reason);
                        return End::Crashed(reason);
                    }
                },
                status = conn.child.wait() => {
                    let reason = match status {
                        Ok(status) => crate::probe::describe_status(status),
                        Err(e) => format!("cannot wait for it: {e}"),
                    };
                    conn.drain_reader().await;
                    crashed(&mut calls, &mut reconfigs, &mut self.start_owed, &reason);
                    return End::Crashed(reason);
                }
                _ = tick.tick() => {
                    if conn.since_beat() > timeout {
                        let status = conn.kill(Duration::from_secs(1)).await;
                        conn.drain_reader().await;
                        let reason = format!("no heartbeat for {}: killed ({status})", humantime::format_duration(timeout));
                        crashed(&mut calls, &mut reconfigs, &mut self.start_owed, &reason);
                        return End::Crashed(reason);
                    }
                }
            }
        }
    }

    /// Asks the child to stop its plugin and exit; kills it if it does not within the
    /// lifecycle timeout. Deliveries it never answered are finished as failed.
    async fn stop_child(&mut self, conn: &mut Conn) -> Result<(), PluginError> {
        let id = self.call_id();
        let deadline = self.supervision.lifecycle;
        let answer = if conn.send(&ToChild::Stop { id }) {
            tokio::time::timeout(deadline, async {
                loop {
                    match conn.control.recv().await {
                        Some(Control::Answer { id: got, error }) if got == id => {
                            return Some(error)
                        }
                        Some(Control::Answer { .. } | Control::Reconfigured { .. }) => {}
                        Some(Control::Closed(_)) | None => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten()
        } else {
            None
        };
        let ended = tokio::time::timeout(Duration::from_secs(2), conn.child.wait()).await;
        if !matches!(ended, Ok(Ok(_))) {
            let status = conn.kill(Duration::from_secs(1)).await;
            tracing::warn!(plugin = %self.name, %status, "plugin child process did not exit after stop: killed");
        }
        conn.drain_reader().await;
        self.env.shared.pid.store(0, Ordering::Relaxed);
        self.finish_all("the plugin stopped before answering");
        match answer {
            Some(None) => Ok(()),
            Some(Some(error)) => Err(plugin_error(error)),
            None => Err(PluginError::permanent(
                "its child process did not answer stop; killed",
            )),
        }
    }

    /// Finishes every delivery still held as failed, with `reason`.
    fn finish_all(&self, reason: &str) {
        let held = std::mem::take(&mut *lock(&self.pending));
        let counters = &self.env.shared.counters;
        for (_, p) in held {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            if !p
                .done
                .finish(Err(HandlerError::permanent(reason.to_owned())))
            {
                counters.failed.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// After a crash: publish what happened; then either wait out the backoff and return
    /// true (restart), or fail the plugin and return false.
    async fn after_crash(&mut self, budget: &mut RestartBudget, reason: &str) -> bool {
        // The delivery the child was handling when it crashed is blamed; one that two
        // children crashed on is not offered to a third: it fails, and the bus dead-letters
        // it. The others go to the next child as they were.
        {
            let counters = &self.env.shared.counters;
            let mut pending = lock(&self.pending);
            let poison = pending.iter_mut().next().and_then(|(seq, p)| {
                p.crashes = p.crashes.saturating_add(1);
                (p.crashes >= 2).then_some(*seq)
            });
            if let Some(p) = poison.and_then(|seq| pending.remove(&seq)) {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                let error = HandlerError::permanent(format!(
                    "plugin crashed: {reason} (its process crashed twice handling this event)"
                ));
                if !p.done.finish(Err(error)) {
                    counters.failed.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let (max, window) = (
            self.supervision.max_restarts,
            self.supervision.restart_window,
        );
        match budget.next(Instant::now()) {
            Some(backoff) => {
                let n = self.env.shared.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                let error = format!(
                    "{reason}; restarting in {} (restart {n}, at most {max} in {})",
                    humantime::format_duration(backoff),
                    humantime::format_duration(window)
                );
                tracing::warn!(plugin = %self.name, %error, "plugin process ended");
                self.publish_error(error);
                tokio::time::sleep(backoff).await;
                true
            }
            None => {
                let error = format!(
                    "{reason}; {max} restarts in {} spent: the plugin is failed",
                    humantime::format_duration(window)
                );
                tracing::error!(plugin = %self.name, %error, "plugin process ended");
                self.publish_error(error.clone());
                self.finish_all(&format!("plugin crashed: {reason}"));
                if let Some(inner) = self.env.manager.upgrade() {
                    super::fail_in_place(&inner, &self.env.shared, &error);
                }
                false
            }
        }
    }

    fn publish_error(&self, error: String) {
        let payload = PluginErrorPayload {
            plugin: self.env.shared.plugin_ref.clone(),
            stage: "process".to_owned(),
            error,
        };
        let Some(manager) = self.env.manager.upgrade() else {
            return;
        };
        emit_now(&manager, payload);
    }

    /// The plugin is failed: everything still queued for it is finished as failed, every
    /// lifecycle call answered, until the queue closes.
    async fn refuse_all(&mut self, jobs: &mut mpsc::UnboundedReceiver<Job>, reason: &str) {
        let message = format!("plugin '{}' failed: {reason}", self.name);
        if let Some(reply) = self.start_owed.take() {
            let _ = reply.send(Err(PluginError::permanent(message.clone())));
        }
        let counters = Arc::clone(&self.env.shared.counters);
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Handle { done, .. } => {
                    counters.queued.fetch_sub(1, Ordering::Relaxed);
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    if !done.finish(Err(HandlerError::permanent(message.clone()))) {
                        counters.failed.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Job::Start(reply) => {
                    let _ = reply.send(Err(PluginError::permanent(message.clone())));
                }
                Job::Reconfigure { reply, .. } => {
                    let _ = reply.send(Err(PluginError::permanent(message.clone())));
                }
                Job::Stop(reply) => {
                    let _ = reply.send(Ok(()));
                    return;
                }
            }
        }
    }
}

fn emit_now(manager: &Inner, payload: PluginErrorPayload) {
    match host_event(payload) {
        Ok(event) => {
            if let Err(err) = manager.bus.try_emit(event) {
                tracing::debug!(error = %err, "plugin.error not fully delivered");
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot build plugin.error event"),
    }
}

/// A delivery as it crosses. The bus's payload bytes are one JSON value (it serialized them);
/// should they not be, the delivery is a bad event rather than the host's panic.
fn delivery(seq: u64, handler: u32, event: &Event, payload: &[u8]) -> Result<Delivery, String> {
    let payload = std::str::from_utf8(payload)
        .map_err(|e| e.to_string())
        .and_then(|text| RawValue::from_string(text.to_owned()).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!(
                "the payload of '{}' is not JSON: {e}",
                event.event_type().name()
            )
        })?;
    Ok(Delivery {
        seq,
        handler,
        event: WireEvent {
            id: event.id().to_bytes(),
            event_type: event.event_type().name().to_owned(),
            category: event.category() as u8,
            source: event.source().to_owned(),
            origin: event.origin().as_str().to_owned(),
            timestamp_unix_nanos: event.timestamp_unix_nanos(),
            schema_version: event.schema_version(),
            metadata: event
                .metadata_pairs()
                .map(|(k, v)| (k.to_owned(), v.into_owned()))
                .collect(),
            payload,
        },
    })
}

/// A child's log line into the host's `tracing`, as the plugin's.
fn forward_log(plugin: &str, frame: FromChild) {
    let FromChild::Log {
        level,
        target,
        module_path,
        file,
        line,
        message,
        fields,
    } = frame
    else {
        return;
    };
    let fields: Vec<LogField<'_>> = fields
        .iter()
        .map(|(k, v)| LogField {
            key: k.as_str().into(),
            value: log_value(v),
        })
        .collect();
    let record = LogRecord {
        level,
        target: target.as_str().into(),
        module_path: module_path.as_str().into(),
        file: file.as_str().into(),
        line,
        message: message.as_str().into(),
        fields: RSlice::from_slice(&fields),
    };
    log_forward::forward_record(plugin, &record);
}

fn log_value(value: &WireLogValue) -> LogValue<'_> {
    match value {
        WireLogValue::Str(s) => LogValue::Str(s.as_str().into()),
        WireLogValue::Debug(s) => LogValue::Debug(s.as_str().into()),
        WireLogValue::I64(v) => LogValue::I64(*v),
        WireLogValue::U64(v) => LogValue::U64(*v),
        WireLogValue::F64(v) => LogValue::F64(*v),
        WireLogValue::Bool(v) => LogValue::Bool(*v),
    }
}

fn plugin_error(error: WireError) -> PluginError {
    match error {
        WireError::Retryable(m) => PluginError::Retryable(m.into()),
        WireError::Permanent(m) => PluginError::Permanent(m.into()),
        WireError::Config(m) => PluginError::Config(m.into()),
        WireError::InvalidEvent(m) => PluginError::InvalidEvent(m.into()),
        WireError::Panicked(m) => PluginError::Panicked(m.into()),
    }
}

fn abi_subscription(sub: WireSubscription) -> Result<AbiSubscription, String> {
    let filter = match sub.filter {
        None => None,
        Some(conditions) => {
            let conditions = conditions
                .into_iter()
                .map(|(field, op, value)| {
                    let op = match op {
                        0 => FilterOp::Eq,
                        1 => FilterOp::Ne,
                        2 => FilterOp::Exists,
                        3 => FilterOp::Prefix,
                        other => return Err(format!("a filter with unknown operator {other}")),
                    };
                    Ok(FilterCondition {
                        field: field.into(),
                        op,
                        value: value.into(),
                    })
                })
                .collect::<Result<RVec<_>, String>>()?;
            Some(AbiFilter { conditions })
        }
    };
    Ok(AbiSubscription {
        handler: sub.handler,
        event_types: sub.event_types.into_iter().map(RString::from).collect(),
        categories: sub.categories.into_iter().collect(),
        patterns: sub.patterns.into_iter().map(RString::from).collect(),
        filter: filter.into(),
        timeout_ms: sub.timeout_ms,
        name: sub.name.into(),
    })
}

fn write_loop(stream: UnixStream, frames: &std::sync::mpsc::Receiver<Vec<u8>>) {
    let mut out = BufWriter::with_capacity(256 * 1024, stream);
    while let Ok(bytes) = frames.recv() {
        if out.write_all(&bytes).is_err() {
            return;
        }
        // Whatever else is queued goes in the same write.
        while let Ok(bytes) = frames.try_recv() {
            if out.write_all(&bytes).is_err() {
                return;
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

/// The thread that reads a child's frames: answers finish deliveries right here; publishes
/// go through the plugin's host handle; the rest goes to the supervisor.
struct Reader {
    name: Arc<str>,
    host: Arc<PluginHost>,
    env: Arc<WorkerEnv>,
    pending: PendingMap,
    frames: std::sync::mpsc::Sender<Vec<u8>>,
    control: mpsc::UnboundedSender<Control>,
    last_beat: Arc<AtomicU64>,
    epoch: Instant,
}

impl Reader {
    fn run(self, mut stream: UnixStream) {
        let mut buf = Vec::new();
        let end = loop {
            match read_frame::<FromChild>(&mut stream, &mut buf) {
                Ok(Some(msg)) => self.on(msg),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        let _ = self.control.send(Control::Closed(end));
    }

    fn on(&self, msg: FromChild) {
        match msg {
            FromChild::Done { results } => {
                for (seq, error) in results {
                    let held = lock(&self.pending).remove(&seq);
                    if let Some(p) = held {
                        self.finish(p, error);
                    }
                }
            }
            FromChild::Publish { id, cause, event } => {
                let cause = cause
                    .and_then(|seq| lock(&self.pending).get(&seq).map(|p| p.event.causation()));
                let owned = OwnedEvent {
                    event_type: event.event_type.into(),
                    category: event.category,
                    source: event.source.into(),
                    schema_version: event.schema_version,
                    payload_json: event.payload_json.into(),
                    metadata: event
                        .metadata
                        .into_iter()
                        .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                        .collect(),
                };
                let refusal = match context::enter(cause, || self.host.publish(owned)) {
                    RResult::ROk(()) => None,
                    RResult::RErr(refusal) => Some(Refusal {
                        kind: refusal.kind as u8,
                        message: refusal.message.into_string(),
                    }),
                };
                if let Some(bytes) = frame(&ToChild::Published { id, refusal }) {
                    let _ = self.frames.send(bytes);
                }
            }
            log @ FromChild::Log { .. } => forward_log(&self.name, log),
            FromChild::Beat => {
                let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.last_beat.store(now, Ordering::Release);
            }
            FromChild::Answer { id, error } => {
                let _ = self.control.send(Control::Answer { id, error });
            }
            FromChild::Reconfigured { id, applied, error } => {
                let _ = self
                    .control
                    .send(Control::Reconfigured { id, applied, error });
            }
            FromChild::Ready { .. } | FromChild::LoadFailed { .. } => {
                tracing::debug!(plugin = %self.name, "a handshake frame after the handshake; ignored");
            }
        }
    }

    /// As the in-process plugin thread does (see [`WorkerEnv::answer`]).
    fn finish(&self, p: Pending, error: Option<WireError>) {
        let result = error.map_or(Ok(()), |e| Err(plugin_error(e)));
        self.env.answer(result, p.done);
    }
}
