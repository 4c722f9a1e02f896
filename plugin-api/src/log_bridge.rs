//! Forwards `tracing` events emitted inside a plugin to the host's [`AbiHost::log`].
//!
//! Every plugin library has its own copy of tracing's global state, so without this a plugin's
//! `tracing::info!` would go nowhere. [`install`] (called by the export macro when a plugin is
//! constructed) sets, once per library, a global subscriber that sends each event to a host:
//!
//! - the host of the plugin instance the current thread is running a call of (the export macro
//!   wraps every call in [`with_host`]), so two instances in one library log to their own hosts;
//! - otherwise (a thread the plugin spawned itself) the host of the most recently constructed
//!   instance still alive; with none alive, events are dropped.
//!
//! Each event becomes one [`log_record`](crate::facade::AbiHost::log_record) call: the level
//! maps error..trace to 1..5, `target` is the event's target, `module_path`, `file` and `line`
//! its call site, `message` its `message` field, and every other field keeps its type (string,
//! signed, unsigned, float, boolean; anything else in its `Debug` form), so the host can
//! record them as fields of its own.
//! Spans are not forwarded. An event the host emits while handling `log` (possible only when
//! host and plugin share a process and tracing globals) is dropped instead of looping.
//!
//! [`AbiHost::log`]: crate::facade::AbiHost::log

use crate::facade::{level, HostHandle, LogField, LogRecord, LogValue};
use abi_stable::std_types::RSlice;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use tracing_core::{
    field::{Field, Visit},
    span, Dispatch, Event, Interest, Level, LevelFilter, Metadata, Subscriber,
};

thread_local! {
    static CURRENT: RefCell<Option<HostHandle>> = const { RefCell::new(None) };
    static FORWARDING: Cell<bool> = const { Cell::new(false) };
}

/// The hosts of the live instances, oldest first, with their tokens.
static FALLBACK: Mutex<Vec<(u64, HostHandle)>> = Mutex::new(Vec::new());
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
static INSTALL: Once = Once::new();

/// Installs the forwarding subscriber as this library's global default (once; later calls only
/// update the fallback host). If something else already set a global default, that one stays.
///
/// Returns a token for [`release`], which the instance calls when it is dropped so the library
/// does not keep its host alive.
pub fn install(host: &HostHandle) -> u64 {
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    {
        let mut live = FALLBACK.lock().unwrap_or_else(|p| p.into_inner());
        live.push((token, host.clone()));
    }
    INSTALL.call_once(|| {
        // An error only means a global default exists already (e.g. in a test binary that
        // installed its own); keeping it is the right thing.
        let _ = tracing_core::dispatcher::set_global_default(Dispatch::new(Bridge {
            next_span: AtomicU64::new(1),
        }));
    });
    token
}

/// Forgets the host [`install`] returned `token` for (the instance is gone).
pub fn release(token: u64) {
    let mut live = FALLBACK.lock().unwrap_or_else(|p| p.into_inner());
    live.retain(|(t, _)| *t != token);
}

/// Runs `f` with `host` as the current thread's log destination, restoring the previous one
/// afterwards (also if `f` unwinds).
pub fn with_host<R>(host: &HostHandle, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<HostHandle>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(host.clone()));
    let _restore = Restore(prev);
    f()
}

fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        _ => level::TRACE,
    }
}

fn has_destination() -> bool {
    if FORWARDING.try_with(Cell::get).unwrap_or(true) {
        return false;
    }
    if CURRENT
        .try_with(|c| c.try_borrow().map(|h| h.is_some()).unwrap_or(false))
        .unwrap_or(false)
    {
        return true;
    }
    FALLBACK.lock().map(|h| !h.is_empty()).unwrap_or(false)
}

fn destination() -> Option<HostHandle> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|h| h.clone()))
        .ok()
        .flatten()
        .or_else(|| {
            FALLBACK
                .lock()
                .ok()
                .and_then(|h| h.last().map(|(_, h)| h.clone()))
        })
}

/// A field value owned until the record is sent.
enum Owned {
    Str(String),
    Debug(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Owned {
    fn as_value(&self) -> LogValue<'_> {
        match self {
            Owned::Str(s) => LogValue::Str(s.as_str().into()),
            Owned::Debug(s) => LogValue::Debug(s.as_str().into()),
            Owned::I64(v) => LogValue::I64(*v),
            Owned::U64(v) => LogValue::U64(*v),
            Owned::F64(v) => LogValue::F64(*v),
            Owned::Bool(v) => LogValue::Bool(*v),
        }
    }
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(&'static str, Owned)>,
}

impl Collect {
    fn push(&mut self, field: &Field, value: Owned) {
        if field.name() == "message" {
            self.message = match value {
                Owned::Str(s) | Owned::Debug(s) => s,
                Owned::I64(v) => v.to_string(),
                Owned::U64(v) => v.to_string(),
                Owned::F64(v) => v.to_string(),
                Owned::Bool(v) => v.to_string(),
            };
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Owned::Str(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Owned::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Owned::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Owned::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Owned::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` arrives here as a `Display` wrapper whose Debug form is its Display form:
        // the message and display fields read as text, not as quoted strings.
        self.push(field, Owned::Debug(format!("{value:?}")));
    }
}

struct Bridge {
    next_span: AtomicU64,
}

impl Subscriber for Bridge {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Whether there is a host to forward to depends on the calling thread: ask every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && has_destination()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        // Ids must be non-zero; spans are not forwarded, so uniqueness is all that matters.
        let n = self.next_span.fetch_add(1, Ordering::Relaxed).max(1);
        span::Id::from_u64(n)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(host) = destination() else {
            return;
        };
        let mut collect = Collect::default();
        event.record(&mut collect);
        let meta = event.metadata();
        let fields: Vec<LogField<'_>> = collect
            .fields
            .iter()
            .map(|(k, v)| LogField {
                key: (*k).into(),
                value: v.as_value(),
            })
            .collect();
        let record = LogRecord {
            level: level_number(meta.level()),
            target: meta.target().into(),
            module_path: meta.module_path().unwrap_or_default().into(),
            file: meta.file().unwrap_or_default().into(),
            line: meta.line().unwrap_or(0),
            message: collect.message.as_str().into(),
            fields: RSlice::from_slice(&fields),
        };
        let _ = FORWARDING.try_with(|f| f.set(true));
        host.as_abi().log_record(&record);
        let _ = FORWARDING.try_with(|f| f.set(false));
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
