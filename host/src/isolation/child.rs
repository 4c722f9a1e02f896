//! The child's side: a process that loads one plugin and serves it to the host over the
//! channel it was started with (its standard input, a stream socket).
//!
//! Three threads: the main one owns the plugin and makes every call into it, in the order the
//! host sent them (as the in-process plugin thread does); a reader turns frames into work for
//! it and answers to the plugin's publishes; a heartbeat beats while no call has run longer
//! than the hang limit. Whatever the plugin does to this process (a segfault, an abort,
//! `exit`, an allocation beyond its limit), the host sees the channel close and the exit
//! status.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use plugbus_plugin_api::abi_stable::std_types::{RResult, RSlice, RStr};
use plugbus_plugin_api::{
    host_box, AbiHost, EventView, KeyValue, LogRecord, LogValue, OwnedEvent, PluginBox,
    PluginError, PublishRefusal, RefusalKind,
};
use sha2::{Digest, Sha256};

use super::protocol::{
    read_frame, write_frame, Delivery, FromChild, Hello, Refusal, ToChild, WireError, WireLogValue,
    WireOwned, WireSubscription, PROTOCOL_VERSION,
};
use crate::loader::{self, Library};

/// Exit codes of a child that ends on its own.
const EXIT_OK: i32 = 0;
const EXIT_PROTOCOL: i32 = 70;
const EXIT_LOAD: i32 = 71;

/// The channel to the host, shared by every thread that writes to it.
type Out = Arc<Mutex<BufWriter<UnixStream>>>;

fn send(out: &Out, frame: &FromChild) -> bool {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    write_frame(&mut *out, frame)
        .and_then(|()| out.flush())
        .is_ok()
}

/// Serves the plugin; returns the exit code.
pub(super) fn serve() -> i32 {
    let stream = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixStream::from)
    {
        Ok(stream) => stream,
        Err(_) => return EXIT_PROTOCOL,
    };
    let (Ok(mut input), Ok(output)) = (stream.try_clone(), stream.try_clone()) else {
        return EXIT_PROTOCOL;
    };
    let out: Out = Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, output)));
    let mut buf = Vec::new();
    let hello = match read_frame::<ToChild>(&mut input, &mut buf) {
        Ok(Some(ToChild::Hello(hello))) if hello.version == PROTOCOL_VERSION => hello,
        Ok(Some(ToChild::Hello(hello))) => {
            let error = format!(
                "protocol version {} asked, this child speaks {PROTOCOL_VERSION}",
                hello.version
            );
            send(&out, &FromChild::LoadFailed { error });
            return EXIT_PROTOCOL;
        }
        _ => return EXIT_PROTOCOL,
    };
    let library = match open(&hello) {
        Ok(library) => library,
        Err(error) => {
            send(&out, &FromChild::LoadFailed { error });
            return EXIT_LOAD;
        }
    };
    // After the mapping (which the limits would count, the executable's own mappings too)
    // and before any code of the plugin's instance runs.
    if let Err(error) = apply_limits(&hello) {
        send(&out, &FromChild::LoadFailed { error });
        return EXIT_LOAD;
    }
    let replies: Replies = Arc::new(Mutex::new(HashMap::new()));
    let host = ChildHost {
        out: Arc::clone(&out),
        replies: Arc::clone(&replies),
        next: AtomicU64::new(1),
    };
    let mut plugin = match loader::construct(&library, host_box(host), &hello.config_json) {
        Ok(plugin) => plugin,
        Err(error) => {
            send(
                &out,
                &FromChild::LoadFailed {
                    error: error.kind.to_string(),
                },
            );
            return EXIT_LOAD;
        }
    };
    let subscriptions = match plugin.subscriptions() {
        RResult::ROk(subs) => subs.iter().map(wire_subscription).collect(),
        RResult::RErr(error) => {
            send(
                &out,
                &FromChild::LoadFailed {
                    error: format!("subscriptions failed: {error}"),
                },
            );
            return EXIT_LOAD;
        }
    };
    let ready = FromChild::Ready {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        subscriptions,
    };
    if !send(&out, &ready) {
        return EXIT_PROTOCOL;
    }

    let (jobs_tx, jobs) = mpsc::channel();
    let reader_out = Arc::clone(&out);
    let reader = std::thread::Builder::new()
        .name("plugbus-child-reader".into())
        .spawn(move || read_loop(input, jobs_tx, &replies, &reader_out));
    if reader.is_err() {
        return EXIT_PROTOCOL;
    }
    let started = Instant::now();
    let busy_since = Arc::new(AtomicU64::new(0));
    {
        let out = Arc::clone(&out);
        let busy_since = Arc::clone(&busy_since);
        let every = Duration::from_millis(hello.heartbeat_ms.max(10));
        let hang = hello.hang_ms.max(10);
        let beat = std::thread::Builder::new()
            .name("plugbus-child-heartbeat".into())
            .spawn(move || loop {
                let since = busy_since.load(Ordering::Acquire);
                let now = millis(started);
                if (since == 0 || now.saturating_sub(since) < hang) && !send(&out, &FromChild::Beat)
                {
                    return;
                }
                std::thread::sleep(every);
            });
        if beat.is_err() {
            return EXIT_PROTOCOL;
        }
    }
    let busy = |on: bool| {
        let value = if on { millis(started).max(1) } else { 0 };
        busy_since.store(value, Ordering::Release);
    };
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Start(id) => {
                busy(true);
                let error = plugin.start().into_result().err().map(|e| wire_error(&e));
                busy(false);
                send(&out, &FromChild::Answer { id, error });
            }
            Job::Deliver(batch) => {
                for delivery in batch {
                    busy(true);
                    let result = handle(&mut plugin, &delivery);
                    busy(false);
                    // Answered at once, not at the end of the batch: a delivery the host has
                    // an answer for is never handled again after a crash.
                    let done = FromChild::Done {
                        results: vec![(delivery.seq, result.err().map(|e| wire_error(&e)))],
                    };
                    if !send(&out, &done) {
                        return EXIT_PROTOCOL;
                    }
                }
            }
            Job::Reconfigure(id, config_json) => {
                busy(true);
                let result = plugin
                    .reconfigure(config_json.as_str().into())
                    .into_result();
                busy(false);
                let (applied, error) = match result {
                    Ok(applied) => (applied, None),
                    Err(e) => (false, Some(wire_error(&e))),
                };
                send(&out, &FromChild::Reconfigured { id, applied, error });
            }
            Job::Stop(id) => {
                busy(true);
                let error = plugin.stop().into_result().err().map(|e| wire_error(&e));
                drop(plugin);
                send(&out, &FromChild::Answer { id, error });
                return EXIT_OK;
            }
        }
    }
    // The host went away: stop the plugin as the in-process thread would, then end.
    let _ = plugin.stop();
    EXIT_OK
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

thread_local! {
    /// The delivery the plugin is handling on this thread: the cause of what it publishes.
    static CURRENT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn handle(plugin: &mut PluginBox, delivery: &Delivery) -> Result<(), PluginError> {
    let event = &delivery.event;
    let metadata: Vec<KeyValue<'_>> = event
        .metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    let view = EventView {
        id: event.id,
        event_type: event.event_type.as_str().into(),
        category: event.category,
        source: event.source.as_str().into(),
        origin: event.origin.as_str().into(),
        timestamp_unix_nanos: event.timestamp_unix_nanos,
        schema_version: event.schema_version,
        payload_json: RSlice::from_slice(event.payload.get().as_bytes()),
        metadata: RSlice::from_slice(&metadata),
    };
    CURRENT.with(|c| c.set(Some(delivery.seq)));
    let result = plugin.handle(delivery.handler, &view).into_result();
    CURRENT.with(|c| c.set(None));
    result
}

enum Job {
    Start(u64),
    Stop(u64),
    Deliver(Vec<Delivery>),
    Reconfigure(u64, String),
}

/// Publishes waiting for the host's answer, by id.
type Replies = Arc<Mutex<HashMap<u64, mpsc::SyncSender<Option<Refusal>>>>>;

fn read_loop(mut input: UnixStream, jobs: mpsc::Sender<Job>, replies: &Replies, out: &Out) {
    let mut buf = Vec::new();
    // Any error or the end of the stream: dropping `jobs` ends the main loop, which stops
    // the plugin. An error is said to the host first (its logs are the child's).
    loop {
        let frame = match read_frame::<ToChild>(&mut input, &mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                let said = FromChild::Log {
                    level: plugbus_plugin_api::facade::level::ERROR,
                    target: "plugbus::child".to_owned(),
                    module_path: module_path!().to_owned(),
                    file: String::new(),
                    line: 0,
                    message: format!("the channel from the host broke: {e}"),
                    fields: Vec::new(),
                };
                send(out, &said);
                break;
            }
        };
        let job = match frame {
            ToChild::Start { id } => Job::Start(id),
            ToChild::Stop { id } => Job::Stop(id),
            ToChild::Deliver { batch } => Job::Deliver(batch),
            ToChild::Reconfigure { id, config_json } => Job::Reconfigure(id, config_json),
            ToChild::Published { id, refusal } => {
                let waiter = replies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(refusal);
                }
                continue;
            }
            ToChild::Hello(_) => return,
        };
        if jobs.send(job).is_err() {
            return;
        }
    }
    // Wake every publisher still waiting: the host is gone.
    replies.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The host handle the plugin gets in the child: publishes and logs cross the channel.
struct ChildHost {
    out: Out,
    replies: Replies,
    next: AtomicU64,
}

impl AbiHost for ChildHost {
    /// A round trip to the host, which checks, stamps and queues the event exactly as for a
    /// plugin in process, and answers with its refusal, if any.
    fn publish(&self, event: OwnedEvent) -> RResult<(), PublishRefusal> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        self.replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let frame = FromChild::Publish {
            id,
            cause: CURRENT.with(Cell::get),
            event: WireOwned {
                event_type: event.event_type.into_string(),
                category: event.category,
                source: event.source.into_string(),
                schema_version: event.schema_version,
                payload_json: event.payload_json.into_string(),
                metadata: event
                    .metadata
                    .into_iter()
                    .map(|pair| (pair.0.into_string(), pair.1.into_string()))
                    .collect(),
            },
        };
        let closed = || {
            RResult::RErr(PublishRefusal::new(
                RefusalKind::Closed,
                "the host's channel to this plugin process is closed",
            ))
        };
        if !send(&self.out, &frame) {
            return closed();
        }
        match rx.recv() {
            Ok(None) => RResult::ROk(()),
            Ok(Some(refusal)) => RResult::RErr(PublishRefusal::new(
                refusal_kind(refusal.kind),
                refusal.message,
            )),
            Err(_) => closed(),
        }
    }

    fn log(
        &self,
        level: u8,
        target: RStr<'_>,
        message: RStr<'_>,
        fields: RSlice<'_, KeyValue<'_>>,
    ) {
        let frame = FromChild::Log {
            level,
            target: target.as_str().to_owned(),
            module_path: String::new(),
            file: String::new(),
            line: 0,
            message: message.as_str().to_owned(),
            fields: fields
                .iter()
                .map(|kv| {
                    (
                        kv.key.as_str().to_owned(),
                        WireLogValue::Str(kv.value.as_str().to_owned()),
                    )
                })
                .collect(),
        };
        send(&self.out, &frame);
    }

    fn log_record(&self, record: &LogRecord<'_>) {
        let frame = FromChild::Log {
            level: record.level,
            target: record.target.as_str().to_owned(),
            module_path: record.module_path.as_str().to_owned(),
            file: record.file.as_str().to_owned(),
            line: record.line,
            message: record.message.as_str().to_owned(),
            fields: record
                .fields
                .iter()
                .map(|f| (f.key.as_str().to_owned(), wire_log_value(&f.value)))
                .collect(),
        };
        send(&self.out, &frame);
    }
}

fn wire_log_value(value: &LogValue<'_>) -> WireLogValue {
    match value {
        LogValue::Str(s) => WireLogValue::Str(s.as_str().to_owned()),
        LogValue::Debug(s) => WireLogValue::Debug(s.as_str().to_owned()),
        LogValue::I64(v) => WireLogValue::I64(*v),
        LogValue::U64(v) => WireLogValue::U64(*v),
        LogValue::F64(v) => WireLogValue::F64(*v),
        LogValue::Bool(v) => WireLogValue::Bool(*v),
    }
}

/// The refusal kind a `u8` stands for (`Closed` for a value this side does not know).
pub(crate) fn refusal_kind(kind: u8) -> RefusalKind {
    match kind {
        k if k == RefusalKind::Full as u8 => RefusalKind::Full,
        k if k == RefusalKind::Forbidden as u8 => RefusalKind::Forbidden,
        k if k == RefusalKind::Invalid as u8 => RefusalKind::Invalid,
        _ => RefusalKind::Closed,
    }
}

pub(crate) fn wire_error(error: &PluginError) -> WireError {
    match error {
        PluginError::Retryable(m) => WireError::Retryable(m.to_string()),
        PluginError::Permanent(m) => WireError::Permanent(m.to_string()),
        PluginError::Config(m) => WireError::Config(m.to_string()),
        PluginError::InvalidEvent(m) => WireError::InvalidEvent(m.to_string()),
        PluginError::Panicked(m) => WireError::Panicked(m.to_string()),
    }
}

fn wire_subscription(sub: &plugbus_plugin_api::AbiSubscription) -> WireSubscription {
    WireSubscription {
        handler: sub.handler,
        event_types: sub.event_types.iter().map(|s| s.to_string()).collect(),
        categories: sub.categories.to_vec(),
        patterns: sub.patterns.iter().map(|s| s.to_string()).collect(),
        filter: sub.filter.as_ref().into_option().map(|f| {
            f.conditions
                .iter()
                .map(|c| (c.field.to_string(), c.op as u8, c.value.to_string()))
                .collect()
        }),
        timeout_ms: sub.timeout_ms,
        name: sub.name.to_string(),
    }
}

/// Sets this process's limits, once the plugin is mapped and before it is constructed.
fn apply_limits(hello: &Hello) -> Result<(), String> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let limit = |resource: Resource, value: Option<u64>, what: &str| match value {
        None => Ok(()),
        Some(value) => setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|e| format!("cannot limit the child's {what} to {value}: {e}")),
    };
    // The budget is on top of what the child has mapped already (its executable, the
    // plugin, and whatever its allocator reserved up front, which can be a GiB of address
    // space and little memory): `memory_mib` is what the plugin may add.
    let base = mapped_bytes().unwrap_or(0);
    limit(
        Resource::As,
        hello
            .limits
            .memory_mib
            .map(|m| base.saturating_add(m.saturating_mul(1024 * 1024))),
        "address space",
    )?;
    limit(Resource::Nofile, hello.limits.open_files, "open files")?;
    // The soft limit sends SIGXCPU (which ends the process: nothing handles it); a hard limit
    // a second later is the kernel's SIGKILL should anything catch that.
    match hello.limits.cpu_seconds {
        None => Ok(()),
        Some(seconds) => setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(seconds),
                maximum: Some(seconds.saturating_add(1)),
            },
        )
        .map_err(|e| format!("cannot limit the child's CPU time to {seconds} s: {e}")),
    }
}

/// The address space this process has mapped, from `/proc/self/status`.
fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Maps the host's private copy after the checks the host made: the same bytes (by SHA-256),
/// the ELF structure, abi_stable's layouts, the interface version, the same name.
fn open(hello: &Hello) -> Result<Library, String> {
    let path = Path::new(&hello.path);
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if sha256 != hello.sha256 {
        return Err(format!(
            "'{}' is not the file the host checked (SHA-256 {sha256}, expected {})",
            path.display(),
            hello.sha256
        ));
    }
    let (header, mapped) =
        loader::open_library(path, &bytes, &sha256).map_err(|e| e.kind.to_string())?;
    drop(bytes);
    let module = loader::init_root_module(path, header).map_err(|e| e.kind.to_string())?;
    let meta = loader::check_interface(path, &module, None).map_err(|e| e.kind.to_string())?;
    if meta.name != hello.name {
        return Err(format!(
            "the file declares plugin '{}', the host loaded '{}'",
            meta.name, hello.name
        ));
    }
    Ok(Library {
        path: path.to_path_buf(),
        mapped,
        module,
        meta,
        sha256,
        // The host checked the configuration against the schema before starting the child.
        schema: None,
    })
}
