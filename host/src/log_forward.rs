//! Plugin log lines into the host's `tracing` output.
//!
//! A plugin's `tracing` events reach the host through the ABI's `log_record` call (since ABI
//! 0.4: typed fields, module path, file and line; the plugin side is
//! `plugbus_plugin_api::log_bridge`), or, from a plugin built against an older ABI, through the
//! `log` call with string fields. Each becomes a real event of the host's `tracing` dispatcher:
//!
//! - its target is `plugbus::plugin::<name>`, so `RUST_LOG=plugbus::plugin::audit-logger=debug`
//!   selects one plugin and `plugbus::plugin=info` all of them (filters match target prefixes);
//! - its level is the plugin's (1 = error .. 5 = trace), its message the `message` field;
//! - every plugin field is a field of its own, with its type: signed and unsigned integers,
//!   floats and booleans are recorded as such (a JSON formatter gets numbers and booleans),
//!   strings with `record_str` (fmt quotes them, as it does the host's own string fields), and
//!   values the plugin recorded in their `Debug` or `Display` form (`?value`, `%value`) as that
//!   text, unquoted: fmt prints `user=alice count=3` as the plugin's own subscriber would. The
//!   string fields of the older `log` call have lost their types; they are recorded like
//!   `%value` (unquoted, as they were printed before);
//! - the plugin's module path, file and line are the event's `Metadata` (`module_path()`,
//!   `file()`, `line()`; the plugin's target stands in for an unknown module path). The module
//!   path is also the last field, [`MODULE_FIELD`] (`plugin.module`), because fmt does not print
//!   a module path and the target no longer names it. When the plugin's own target differs
//!   from its module path (`target: "..."` in its macro), it follows as [`TARGET_FIELD`]
//!   (`plugin.target`). A plugin field named `message`, `plugin.module` or `plugin.target` is
//!   renamed `plugin.field.<name>` so it cannot pass for the host's.
//!
//! `tracing` wants `'static` metadata with a `'static` field set and a call site, while plugin
//! names, module paths and field names are only known at run time. So call sites are made on
//! demand, one per (plugin, level, module path, file, line, ordered field names), leaked, and
//! registered with `tracing_core::callsite::register` as a macro's are: the subscribers' interest
//! in each is cached (and rebuilt when filters change), filters see the real metadata, and a
//! record nothing listens to costs a hash lookup and an atomic load: nothing is formatted
//! before the call site's interest or `enabled` says yes. Records above the global maximum
//! level are dropped before even that.
//!
//! What is leaked is bounded for the whole process: at most [`MAX_CALLSITES`] call sites and
//! [`MAX_INTERNED_BYTES`] of interned names, each name at most [`MAX_NAME_BYTES`] (a longer
//! module path or file is left out of the metadata; a longer plugin or field name takes the
//! fallback), and at most [`MAX_FIELDS`] fields a record. A record past a bound takes the older
//! path: its fields are flattened into the message as `key=value` (see [`render`]) and it goes
//! out as a `log::Record`, whose target may be any string, through `tracing_log::format_trace`
//! (the host's fmt output normalizes such records and prints the same target). So a plugin that
//! sends endless distinct keys cannot grow the host's memory, and its lines still arrive,
//! filtered by the same target. The first record that falls back is reported once, as a warning.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use parking_lot::RwLock;
use plugbus_plugin_api::facade::level;
use plugbus_plugin_api::{KeyValue, LogField, LogRecord, LogValue};
use tracing_core::callsite::{self, Callsite};
use tracing_core::field::{self, DisplayValue, FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Level, LevelFilter, Metadata};

/// What every plugin's target starts with; the plugin's name follows.
pub const TARGET_PREFIX: &str = "plugbus::plugin::";

/// The field carrying the plugin's module path.
pub const MODULE_FIELD: &str = "plugin.module";

/// The field carrying the plugin's own target, when it differs from its module path.
pub const TARGET_FIELD: &str = "plugin.target";

/// What a plugin field named like one of the host's (`message`, [`MODULE_FIELD`],
/// [`TARGET_FIELD`]) is renamed to, in front of its name.
pub const RENAMED_PREFIX: &str = "plugin.field.";

/// At most this many call sites are made (and leaked) for the whole process.
pub const MAX_CALLSITES: usize = 4096;

/// A record with more fields than this takes the flattened fallback.
pub const MAX_FIELDS: usize = 32;

/// At most this many bytes of names (plugin targets, module paths, files, field names) are
/// interned for the whole process.
pub const MAX_INTERNED_BYTES: usize = 1 << 20;

/// The longest name interned.
pub const MAX_NAME_BYTES: usize = 256;

/// The `name()` of every plugin log event's metadata.
const EVENT_NAME: &str = "plugin log";

/// The `tracing` target of a plugin's log lines: `plugbus::plugin::<name>`.
pub fn target_for(plugin: &str) -> String {
    format!("{TARGET_PREFIX}{plugin}")
}

/// Maps the ABI's level number (1 = error .. 5 = trace) to a `log` level; out-of-range
/// values are clamped.
pub fn level_of(level: u8) -> log::Level {
    match level {
        0 | level::ERROR => log::Level::Error,
        level::WARN => log::Level::Warn,
        level::INFO => log::Level::Info,
        level::DEBUG => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

/// Maps the ABI's level number (1 = error .. 5 = trace) to a `tracing` level; out-of-range
/// values are clamped.
pub fn tracing_level_of(level: u8) -> Level {
    match level {
        0 | level::ERROR => Level::ERROR,
        level::WARN => Level::WARN,
        level::INFO => Level::INFO,
        level::DEBUG => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// `message key=value key="a value"`, for the fields a plugin passed (the fallback's text).
pub fn render(message: &str, fields: &[KeyValue<'_>]) -> String {
    let mut text = String::with_capacity(message.len() + 16 * fields.len());
    text.push_str(message);
    for field in fields {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(field.key.as_str());
        text.push('=');
        let value = field.value.as_str();
        if value.is_empty() || value.contains([' ', '"', '=', '\n', '\t']) {
            text.push_str(&format!("{value:?}"));
        } else {
            text.push_str(value);
        }
    }
    text
}

/// Emits one plugin log line of the older `log` call (string fields, `module` the module path
/// inside the plugin) into the host's `tracing` dispatcher. The fields are recorded in their
/// text form, unquoted (their types did not cross the ABI).
pub fn forward(plugin: &str, level: u8, module: &str, message: &str, fields: &[KeyValue<'_>]) {
    interner().forward(&Line {
        plugin,
        level: tracing_level_of(level),
        module: non_empty(module),
        target: None,
        file: None,
        line: None,
        message,
        fields,
    });
}

/// Emits one plugin log record (ABI 0.4: typed fields, module path, file and line) into the
/// host's `tracing` dispatcher, as an event of its own call site (see the module docs).
pub fn forward_record(plugin: &str, record: &LogRecord<'_>) {
    interner().forward(&record_line(plugin, record));
}

fn record_line<'a>(plugin: &'a str, record: &'a LogRecord<'a>) -> Line<'a, [LogField<'a>]> {
    let target = non_empty(record.target.as_str());
    let module = non_empty(record.module_path.as_str()).or(target);
    Line {
        plugin,
        level: tracing_level_of(record.level),
        module,
        target: target.filter(|t| Some(*t) != module),
        file: non_empty(record.file.as_str()),
        line: (record.line != 0).then_some(record.line),
        message: record.message.as_str(),
        fields: record.fields.as_slice(),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// One plugin log line, whichever ABI call it came through.
struct Line<'a, F: ?Sized> {
    plugin: &'a str,
    level: Level,
    /// The module path (or, unknown, the plugin's target).
    module: Option<&'a str>,
    /// The plugin's target, when it is not the module path.
    target: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    message: &'a str,
    fields: &'a F,
}

/// A plugin field's value, borrowed from the record.
#[derive(Debug, Clone, Copy)]
enum Typed<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    /// A `Debug` or `Display` form: recorded so that it prints unquoted.
    Shown(&'a str),
}

impl<'a> Typed<'a> {
    /// The text the fallback flattens into the message.
    fn text(self) -> Cow<'a, str> {
        match self {
            Typed::Str(s) | Typed::Shown(s) => Cow::Borrowed(s),
            Typed::I64(v) => Cow::Owned(v.to_string()),
            Typed::U64(v) => Cow::Owned(v.to_string()),
            Typed::F64(v) => Cow::Owned(v.to_string()),
            Typed::Bool(v) => Cow::Owned(v.to_string()),
        }
    }
}

/// The fields of a plugin log line: the typed ones of a [`LogRecord`] or the strings of the
/// older call.
trait Fields {
    fn count(&self) -> usize;
    /// The key of field `i` (`i < count()`; "" past the end).
    fn key(&self, i: usize) -> &str;
    /// The value of field `i` (`i < count()`; an empty text past the end).
    fn typed(&self, i: usize) -> Typed<'_>;
}

impl Fields for [LogField<'_>] {
    fn count(&self) -> usize {
        self.len()
    }

    fn key(&self, i: usize) -> &str {
        self.get(i).map_or("", |f| f.key.as_str())
    }

    fn typed(&self, i: usize) -> Typed<'_> {
        match self.get(i).map(|f| &f.value) {
            Some(LogValue::Str(s)) => Typed::Str(s.as_str()),
            Some(LogValue::I64(v)) => Typed::I64(*v),
            Some(LogValue::U64(v)) => Typed::U64(*v),
            Some(LogValue::F64(v)) => Typed::F64(*v),
            Some(LogValue::Bool(v)) => Typed::Bool(*v),
            Some(LogValue::Debug(s)) => Typed::Shown(s.as_str()),
            None => Typed::Shown(""),
        }
    }
}

impl Fields for [KeyValue<'_>] {
    fn count(&self) -> usize {
        self.len()
    }

    fn key(&self, i: usize) -> &str {
        self.get(i).map_or("", |f| f.key.as_str())
    }

    fn typed(&self, i: usize) -> Typed<'_> {
        Typed::Shown(self.get(i).map_or("", |f| f.value.as_str()))
    }
}

/// A value held for the length of one dispatch, in a type `tracing` records as wanted.
enum Held<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Shown(DisplayValue<&'a str>),
}

impl<'a> Held<'a> {
    fn new(value: Typed<'a>) -> Self {
        match value {
            Typed::Str(s) => Held::Str(s),
            Typed::I64(v) => Held::I64(v),
            Typed::U64(v) => Held::U64(v),
            Typed::F64(v) => Held::F64(v),
            Typed::Bool(v) => Held::Bool(v),
            Typed::Shown(s) => Held::Shown(field::display(s)),
        }
    }

    fn as_value(&self) -> &dyn Value {
        match self {
            Held::Str(s) => s,
            Held::I64(v) => v,
            Held::U64(v) => v,
            Held::F64(v) => v,
            Held::Bool(v) => v,
            Held::Shown(v) => v,
        }
    }
}

// Interest as a call site caches it.
const INTEREST_NEVER: u8 = 0;
const INTEREST_SOMETIMES: u8 = 1;
const INTEREST_ALWAYS: u8 = 2;
const INTEREST_UNKNOWN: u8 = 0xFF;

/// A call site made at run time for one shape of plugin log record. Leaked: `tracing`
/// subscribers keep `&'static` references to call sites and their metadata.
#[derive(Debug)]
struct PluginCallsite {
    /// Set once, right after the call site is allocated (its field set names the call site
    /// itself) and before anyone else sees it.
    meta: OnceLock<Metadata<'static>>,
    interest: AtomicU8,
}

impl PluginCallsite {
    fn static_metadata(&'static self) -> &'static Metadata<'static> {
        self.meta.get().unwrap_or(&UNSET_METADATA)
    }

    fn interest(&self) -> Interest {
        match self.interest.load(Ordering::Acquire) {
            INTEREST_NEVER => Interest::never(),
            INTEREST_ALWAYS => Interest::always(),
            // Not registered yet (another thread is at it): ask `enabled` each time.
            _ => Interest::sometimes(),
        }
    }
}

impl Callsite for PluginCallsite {
    fn set_interest(&self, interest: Interest) {
        let value = if interest.is_never() {
            INTEREST_NEVER
        } else if interest.is_always() {
            INTEREST_ALWAYS
        } else {
            INTEREST_SOMETIMES
        };
        self.interest.store(value, Ordering::Release);
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.meta.get().unwrap_or(&UNSET_METADATA)
    }
}

/// The metadata of a [`PluginCallsite`] whose own is not set yet (never seen in practice: it
/// is set before the call site is shared).
#[derive(Debug)]
struct UnsetCallsite;

impl Callsite for UnsetCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        &UNSET_METADATA
    }
}

static UNSET_CALLSITE: UnsetCallsite = UnsetCallsite;

static UNSET_METADATA: Metadata<'static> = Metadata::new(
    EVENT_NAME,
    "plugbus::plugin",
    Level::TRACE,
    None,
    None,
    None,
    FieldSet::new(&[], tracing_core::identify_callsite!(&UNSET_CALLSITE)),
    Kind::EVENT,
);

/// What identifies a call site, borrowed from one record.
#[derive(Debug, Hash)]
struct Key<'a> {
    plugin: &'a str,
    level: Level,
    module: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    keys: &'a [&'a str],
    with_target: bool,
}

impl Key<'_> {
    /// The field names: `message`, the plugin's (renamed where they clash), the module path,
    /// the plugin's target if any.
    fn names(&self) -> Vec<Cow<'_, str>> {
        let mut names = Vec::with_capacity(self.keys.len() + 3);
        names.push(Cow::Borrowed("message"));
        names.extend(self.keys.iter().map(|key| field_name(key)));
        names.push(Cow::Borrowed(MODULE_FIELD));
        if self.with_target {
            names.push(Cow::Borrowed(TARGET_FIELD));
        }
        names
    }

    fn matches(&self, meta: &Metadata<'_>) -> bool {
        let fields = meta.fields();
        *meta.level() == self.level
            && meta.target().strip_prefix(TARGET_PREFIX) == Some(self.plugin)
            && meta.module_path() == self.module
            && meta.file() == self.file
            && meta.line() == self.line
            && fields.len() == self.keys.len() + 2 + usize::from(self.with_target)
            && fields.field(TARGET_FIELD).is_some() == self.with_target
            && fields
                .iter()
                .skip(1)
                .zip(self.keys)
                .all(|(field, key)| is_name_of(field.name(), key))
    }
}

fn is_reserved(key: &str) -> bool {
    matches!(key, "message" | MODULE_FIELD | TARGET_FIELD)
}

/// The field name of a plugin's key.
fn field_name(key: &str) -> Cow<'_, str> {
    if is_reserved(key) {
        Cow::Owned(format!("{RENAMED_PREFIX}{key}"))
    } else {
        Cow::Borrowed(key)
    }
}

/// Whether `name` is the field name of the plugin's `key`.
fn is_name_of(name: &str, key: &str) -> bool {
    if is_reserved(key) {
        name.strip_prefix(RENAMED_PREFIX) == Some(key)
    } else {
        name == key
    }
}

/// How much may be interned.
#[derive(Debug, Clone, Copy)]
struct Limits {
    callsites: usize,
    /// At most [`MAX_FIELDS`].
    fields: usize,
    bytes: usize,
    name: usize,
}

impl Limits {
    const PROCESS: Limits = Limits {
        callsites: MAX_CALLSITES,
        fields: MAX_FIELDS,
        bytes: MAX_INTERNED_BYTES,
        name: MAX_NAME_BYTES,
    };
}

/// Why a record took the fallback.
#[derive(Debug, Clone, Copy)]
enum Past {
    Fields,
    Callsites,
    Bytes,
    Name,
}

impl Past {
    fn describe(self, limits: &Limits) -> String {
        match self {
            Past::Fields => format!("a record has more than {} fields", limits.fields),
            Past::Callsites => format!("{} call sites are made already", limits.callsites),
            Past::Bytes => format!("{} bytes of names are interned already", limits.bytes),
            Past::Name => format!(
                "a plugin or field name is longer than {} bytes",
                limits.name
            ),
        }
    }
}

/// The call sites made so far.
#[derive(Debug)]
struct Interner {
    limits: Limits,
    hasher: RandomState,
    state: RwLock<State>,
    /// The fallback has been reported.
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// By the hash of their [`Key`]; the vector holds the (rare) collisions.
    sites: HashMap<u64, Vec<&'static PluginCallsite>>,
    count: usize,
    strings: HashSet<&'static str>,
    bytes: usize,
}

fn interner() -> &'static Interner {
    static INTERNER: OnceLock<Interner> = OnceLock::new();
    INTERNER.get_or_init(|| Interner::new(Limits::PROCESS))
}

impl Interner {
    fn new(limits: Limits) -> Self {
        Interner {
            limits: Limits {
                fields: limits.fields.min(MAX_FIELDS),
                ..limits
            },
            hasher: RandomState::new(),
            state: RwLock::new(State::default()),
            warned: AtomicBool::new(false),
        }
    }

    fn forward<F: Fields + ?Sized>(&self, line: &Line<'_, F>) {
        if line.level > LevelFilter::current() {
            return;
        }
        match self.callsite(line) {
            Ok(callsite) => emit(callsite, line),
            Err(past) => {
                self.warn_once(line.plugin, past);
                fallback(line);
            }
        }
    }

    /// The call site of `line`'s shape, made and registered if it is new.
    fn callsite<F: Fields + ?Sized>(
        &self,
        line: &Line<'_, F>,
    ) -> Result<&'static PluginCallsite, Past> {
        let count = line.fields.count();
        if count > self.limits.fields {
            return Err(Past::Fields);
        }
        let mut keys = [""; MAX_FIELDS];
        for (i, key) in keys.iter_mut().enumerate().take(count) {
            *key = line.fields.key(i);
        }
        let name_limit = self.limits.name;
        let key = Key {
            plugin: line.plugin,
            level: line.level,
            module: line.module.filter(|m| m.len() <= name_limit),
            file: line.file.filter(|f| f.len() <= name_limit),
            line: line.line,
            keys: keys.get(..count).unwrap_or(&[]),
            with_target: line.target.is_some(),
        };
        let hash = self.hasher.hash_one(&key);
        {
            let state = self.state.read();
            if let Some(found) = state.find(hash, &key) {
                return Ok(found);
            }
            // Full: no write lock for each record past the bound.
            if state.count >= self.limits.callsites {
                return Err(Past::Callsites);
            }
        }
        let made = {
            let mut state = self.state.write();
            if let Some(found) = state.find(hash, &key) {
                return Ok(found);
            }
            state.make(hash, &key, &self.limits)?
        };
        // Outside the lock: registering asks every dispatcher for its interest.
        callsite::register(made);
        Ok(made)
    }

    fn warn_once(&self, plugin: &str, past: Past) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                plugin,
                "plugin log records past the bound ({}): such records are logged with their \
                 fields flattened into the message text from now on",
                past.describe(&self.limits)
            );
        }
    }
}

impl State {
    fn find(&self, hash: u64, key: &Key<'_>) -> Option<&'static PluginCallsite> {
        self.sites
            .get(&hash)?
            .iter()
            .copied()
            .find(|site| key.matches(site.static_metadata()))
    }

    fn make(
        &mut self,
        hash: u64,
        key: &Key<'_>,
        limits: &Limits,
    ) -> Result<&'static PluginCallsite, Past> {
        if self.count >= limits.callsites {
            return Err(Past::Callsites);
        }
        let target = target_for(key.plugin);
        let names = key.names();
        let strings = || {
            [target.as_str()]
                .into_iter()
                .chain(key.module)
                .chain(key.file)
                .chain(names.iter().map(|n| n.as_ref()))
        };
        if strings().any(|s| s.len() > limits.name) {
            return Err(Past::Name);
        }
        let new_bytes: usize = strings()
            .filter(|s| !self.strings.contains(s))
            .map(str::len)
            .sum();
        if self.bytes.saturating_add(new_bytes) > limits.bytes {
            return Err(Past::Bytes);
        }
        let target = self.intern(&target);
        let module = key.module.map(|m| self.intern(m));
        let file = key.file.map(|f| self.intern(f));
        let names: Vec<&'static str> = names.iter().map(|n| self.intern(n)).collect();
        let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
        let site: &'static PluginCallsite = Box::leak(Box::new(PluginCallsite {
            meta: OnceLock::new(),
            interest: AtomicU8::new(INTEREST_UNKNOWN),
        }));
        let meta = Metadata::new(
            EVENT_NAME,
            target,
            key.level,
            file,
            key.line,
            module,
            FieldSet::new(names, tracing_core::identify_callsite!(site)),
            Kind::EVENT,
        );
        // A fresh cell: setting it cannot fail.
        let _ = site.meta.set(meta);
        self.sites.entry(hash).or_default().push(site);
        self.count += 1;
        Ok(site)
    }

    fn intern(&mut self, s: &str) -> &'static str {
        if let Some(found) = self.strings.get(s) {
            return found;
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        self.strings.insert(leaked);
        self.bytes += leaked.len();
        leaked
    }
}

/// Dispatches `line` as an event of `site`, if anything listens.
fn emit<F: Fields + ?Sized>(site: &'static PluginCallsite, line: &Line<'_, F>) {
    let meta = site.static_metadata();
    let interest = site.interest();
    if interest.is_never() {
        return;
    }
    if !interest.is_always() && !tracing_core::dispatcher::get_default(|d| d.enabled(meta)) {
        return;
    }
    note_formatted();
    let count = line.fields.count().min(MAX_FIELDS);
    let held: [Held<'_>; MAX_FIELDS] = std::array::from_fn(|i| {
        Held::new(if i < count {
            line.fields.typed(i)
        } else {
            Typed::Bool(false)
        })
    });
    let message = field::display(line.message);
    let module = line.module.map(field::display);
    let target = line.target.map(field::display);
    let mut values: [Option<&dyn Value>; MAX_FIELDS + 3] = [None; MAX_FIELDS + 3];
    let all = std::iter::once(Some(&message as &dyn Value))
        .chain(held.iter().take(count).map(|h| Some(h.as_value())))
        .chain([
            module.as_ref().map(|m| m as &dyn Value),
            target.as_ref().map(|t| t as &dyn Value),
        ]);
    for (slot, value) in values.iter_mut().zip(all) {
        *slot = value;
    }
    // The call site's names are exactly message, the fields, module (and target).
    let fields = meta.fields();
    let Some(values) = values.get(..fields.len()) else {
        return;
    };
    Event::dispatch(meta, &fields.value_set_all(values));
}

/// The older path, past a bound: the fields flattened into the message, out as a `log`
/// record with the plugin's target.
fn fallback<F: Fields + ?Sized>(line: &Line<'_, F>) {
    use tracing_log::AsLog;
    let target = target_for(line.plugin);
    let level = line.level.as_log();
    // Cheap exit when nothing listens at that level for that target.
    if !log_enabled(&target, level) {
        return;
    }
    note_formatted();
    let count = line.fields.count();
    let texts: Vec<Cow<'_, str>> = (0..count).map(|i| line.fields.typed(i).text()).collect();
    let kvs: Vec<KeyValue<'_>> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| KeyValue::new(line.fields.key(i), text))
        .collect();
    let text = render(line.message, &kvs);
    // `format_trace` cannot fail (it always returns Ok); nothing to report if it did.
    let _ = tracing_log::format_trace(
        &log::Record::builder()
            .args(format_args!("{text}"))
            .level(level)
            .target(&target)
            .module_path(line.module)
            .file(line.file)
            .line(line.line)
            .build(),
    );
}

fn log_enabled(target: &str, level: log::Level) -> bool {
    use tracing_log::AsTrace;
    let metadata = log::Metadata::builder().level(level).target(target).build();
    let trace = metadata.as_trace();
    tracing_core::dispatcher::get_default(|dispatch| dispatch.enabled(&trace))
}

#[cfg(test)]
thread_local! {
    /// How many records this thread formatted (got past the enabled checks).
    static FORMATTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
fn note_formatted() {
    #[cfg(test)]
    FORMATTED.with(|n| n.set(n.get() + 1));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use abi_stable::std_types::RSlice;
    use std::sync::{Arc, Mutex};
    use tracing_log::NormalizeEvent as _;
    use tracing_subscriber::layer::{Context, SubscriberExt as _};
    use tracing_subscriber::Layer;

    /// A field value as a subscriber's visitor received it.
    #[derive(Debug, Clone, PartialEq)]
    enum Got {
        Str(String),
        I64(i64),
        U64(u64),
        F64(f64),
        Bool(bool),
        Debug(String),
    }

    #[derive(Debug, Clone)]
    struct Seen {
        target: String,
        level: Level,
        module_path: Option<String>,
        file: Option<String>,
        line: Option<u32>,
        callsite: callsite::Identifier,
        is_log: bool,
        fields: Vec<(String, Got)>,
    }

    impl Seen {
        fn get(&self, name: &str) -> Option<&Got> {
            self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
        }

        fn names(&self) -> Vec<&str> {
            self.fields.iter().map(|(n, _)| n.as_str()).collect()
        }
    }

    struct Visitor<'a>(&'a mut Vec<(String, Got)>);

    impl field::Visit for Visitor<'_> {
        fn record_str(&mut self, f: &field::Field, v: &str) {
            self.0.push((f.name().into(), Got::Str(v.into())));
        }
        fn record_i64(&mut self, f: &field::Field, v: i64) {
            self.0.push((f.name().into(), Got::I64(v)));
        }
        fn record_u64(&mut self, f: &field::Field, v: u64) {
            self.0.push((f.name().into(), Got::U64(v)));
        }
        fn record_f64(&mut self, f: &field::Field, v: f64) {
            self.0.push((f.name().into(), Got::F64(v)));
        }
        fn record_bool(&mut self, f: &field::Field, v: bool) {
            self.0.push((f.name().into(), Got::Bool(v)));
        }
        fn record_debug(&mut self, f: &field::Field, v: &dyn std::fmt::Debug) {
            self.0.push((f.name().into(), Got::Debug(format!("{v:?}"))));
        }
    }

    /// A layer that keeps every event it sees.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Seen>>>);

    impl Capture {
        fn seen(&self) -> Vec<Seen> {
            self.0.lock().unwrap().clone()
        }

        /// The events of one plugin (tests run in parallel and share call sites).
        fn of(&self, plugin: &str) -> Vec<Seen> {
            let target = target_for(plugin);
            self.seen()
                .into_iter()
                .filter(|s| s.target == target)
                .collect()
        }
    }

    impl<S: tracing_core::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let normalized = event.normalized_metadata();
            let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
            let mut fields = Vec::new();
            event.record(&mut Visitor(&mut fields));
            self.0.lock().unwrap().push(Seen {
                target: meta.target().to_owned(),
                level: *meta.level(),
                module_path: meta.module_path().map(str::to_owned),
                file: meta.file().map(str::to_owned),
                line: meta.line(),
                callsite: event.metadata().callsite(),
                is_log: event.is_log(),
                fields,
            });
        }
    }

    /// Runs `f` with a capturing subscriber filtered by `filter` (`RUST_LOG` syntax) as the
    /// default.
    fn capture(filter: &str, f: impl FnOnce()) -> Capture {
        let capture = Capture::default();
        // A global filter, as the binary's: per-layer filters make the registry's `enabled`
        // say yes to everything (they filter again per event), which hides the cheap exit.
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(filter))
            .with(capture.clone());
        tracing::subscriber::with_default(subscriber, f);
        capture
    }

    fn field<'a>(key: &'a str, value: LogValue<'a>) -> LogField<'a> {
        LogField {
            key: key.into(),
            value,
        }
    }

    fn record<'a>(level: u8, message: &'a str, fields: &'a [LogField<'a>]) -> LogRecord<'a> {
        LogRecord {
            level,
            target: "my_plugin::alerts".into(),
            module_path: "my_plugin::alerts".into(),
            file: "src/alerts.rs".into(),
            line: 42,
            message: message.into(),
            fields: RSlice::from_slice(fields),
        }
    }

    fn typed_fields() -> Vec<LogField<'static>> {
        vec![
            field("user", LogValue::Debug("alice".into())),
            field("count", LogValue::U64(3)),
            field("delta", LogValue::I64(-7)),
            field("ratio", LogValue::F64(0.5)),
            field("ok", LogValue::Bool(true)),
            field("note", LogValue::Str("two words".into())),
        ]
    }

    #[test]
    fn levels_and_rendering() {
        assert_eq!(level_of(1), log::Level::Error);
        assert_eq!(level_of(2), log::Level::Warn);
        assert_eq!(level_of(3), log::Level::Info);
        assert_eq!(level_of(4), log::Level::Debug);
        assert_eq!(level_of(5), log::Level::Trace);
        assert_eq!(level_of(77), log::Level::Trace);
        assert_eq!(tracing_level_of(0), Level::ERROR);
        assert_eq!(tracing_level_of(1), Level::ERROR);
        assert_eq!(tracing_level_of(2), Level::WARN);
        assert_eq!(tracing_level_of(3), Level::INFO);
        assert_eq!(tracing_level_of(4), Level::DEBUG);
        assert_eq!(tracing_level_of(5), Level::TRACE);
        assert_eq!(tracing_level_of(77), Level::TRACE);
        let fields = [
            KeyValue::new("user", "alice"),
            KeyValue::new("note", "two words"),
            KeyValue::new("empty", ""),
        ];
        assert_eq!(
            render("hello", &fields),
            r#"hello user=alice note="two words" empty="""#
        );
        assert_eq!(render("", &fields[..1]), "user=alice");
        assert_eq!(target_for("audit-logger"), "plugbus::plugin::audit-logger");
    }

    #[test]
    fn fields_keep_their_types_and_the_metadata_names_the_plugin_code() {
        let fields = typed_fields();
        let capture = capture("trace", || {
            forward_record(
                "unit-typed",
                &record(level::WARN, "security alert", &fields),
            );
        });
        let seen = capture.of("unit-typed");
        assert_eq!(seen.len(), 1, "{seen:?}");
        let e = &seen[0];
        assert!(
            !e.is_log,
            "a tracing event of its own, not a log record: {e:?}"
        );
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.target, "plugbus::plugin::unit-typed");
        assert_eq!(e.module_path.as_deref(), Some("my_plugin::alerts"));
        assert_eq!(e.file.as_deref(), Some("src/alerts.rs"));
        assert_eq!(e.line, Some(42));
        assert_eq!(
            e.names(),
            [
                "message",
                "user",
                "count",
                "delta",
                "ratio",
                "ok",
                "note",
                "plugin.module"
            ]
        );
        assert_eq!(e.get("message"), Some(&Got::Debug("security alert".into())));
        assert_eq!(e.get("user"), Some(&Got::Debug("alice".into())));
        assert_eq!(e.get("count"), Some(&Got::U64(3)));
        assert_eq!(e.get("delta"), Some(&Got::I64(-7)));
        assert_eq!(e.get("ratio"), Some(&Got::F64(0.5)));
        assert_eq!(e.get("ok"), Some(&Got::Bool(true)));
        assert_eq!(e.get("note"), Some(&Got::Str("two words".into())));
        assert_eq!(
            e.get("plugin.module"),
            Some(&Got::Debug("my_plugin::alerts".into()))
        );
    }

    #[test]
    fn one_call_site_per_shape() {
        let a = [field("user", LogValue::Debug("alice".into()))];
        let b = [field("user", LogValue::Debug("bob".into()))];
        let other = [field("account", LogValue::Debug("bob".into()))];
        let capture = capture("trace", || {
            forward_record("unit-shape", &record(level::INFO, "one", &a));
            forward_record("unit-shape", &record(level::INFO, "two", &b));
            forward_record("unit-shape", &record(level::INFO, "three", &other));
            forward_record("unit-shape", &record(level::DEBUG, "four", &b));
        });
        let seen = capture.of("unit-shape");
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(
            seen[0].callsite, seen[1].callsite,
            "same shape, same call site"
        );
        assert_ne!(seen[1].callsite, seen[2].callsite, "other field names");
        assert_ne!(seen[1].callsite, seen[3].callsite, "other level");
        assert_eq!(seen[1].get("user"), Some(&Got::Debug("bob".into())));
    }

    #[test]
    fn fmt_prints_key_value_under_the_plugin_target() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("warn,plugbus::plugin=info")
            .with_ansi(false)
            .with_target(true)
            .with_writer(move || writer.clone())
            .finish();
        let fields = typed_fields();
        tracing::subscriber::with_default(subscriber, || {
            forward_record("unit-fmt", &record(level::WARN, "security alert", &fields));
            forward_record("unit-fmt", &record(level::DEBUG, "not shown", &fields));
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line = out
            .lines()
            .find(|l| l.contains("plugbus::plugin::unit-fmt"))
            .unwrap_or_else(|| panic!("no line of the plugin: {out}"));
        assert!(
            line.contains(
                r#"WARN plugbus::plugin::unit-fmt: security alert user=alice count=3 delta=-7 ratio=0.5 ok=true note="two words" plugin.module=my_plugin::alerts"#
            ),
            "{line}"
        );
        assert!(!out.contains("not shown"), "{out}");
    }

    #[test]
    fn filters_select_plugins_by_target_prefix() {
        let fields = [field("n", LogValue::U64(1))];
        let first = capture("warn,plugbus::plugin::unit-one=debug", || {
            forward_record("unit-one", &record(level::DEBUG, "one debug", &fields));
            forward_record("unit-one", &record(level::TRACE, "one trace", &fields));
            forward_record("unit-two", &record(level::DEBUG, "two debug", &fields));
            forward_record("unit-two", &record(level::WARN, "two warn", &fields));
        });
        assert_eq!(messages_of(&first, "unit-one"), ["one debug"]);
        assert_eq!(messages_of(&first, "unit-two"), ["two warn"]);

        let all = capture("plugbus::plugin=info", || {
            forward_record("unit-three", &record(level::INFO, "three info", &fields));
            forward_record("unit-three", &record(level::DEBUG, "three debug", &fields));
        });
        assert_eq!(messages_of(&all, "unit-three"), ["three info"]);
    }

    fn messages_of(capture: &Capture, plugin: &str) -> Vec<String> {
        capture
            .of(plugin)
            .iter()
            .filter_map(|s| match s.get("message") {
                Some(Got::Debug(m) | Got::Str(m)) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_disabled_level_is_not_formatted() {
        let fields = typed_fields();
        let formatted = || FORMATTED.with(|n| n.get());
        let quiet = capture("info", || {
            let before = formatted();
            for _ in 0..3 {
                forward_record("unit-quiet", &record(level::DEBUG, "hidden", &fields));
            }
            forward("unit-quiet", level::TRACE, "m", "hidden", &[]);
            assert_eq!(
                formatted(),
                before,
                "nothing formatted for a disabled level"
            );
            forward_record("unit-quiet", &record(level::INFO, "shown", &fields));
            assert_eq!(formatted(), before + 1);
        });
        assert_eq!(messages_of(&quiet, "unit-quiet"), ["shown"]);

        // The fallback's cheap exit, too.
        let none = Interner::new(Limits {
            callsites: 0,
            ..Limits::PROCESS
        });
        let capture = capture("info", || {
            let before = formatted();
            let rec = record(level::DEBUG, "hidden", &fields);
            none.forward(&record_line("unit-quiet-flat", &rec));
            assert_eq!(formatted(), before);
            let rec = record(level::INFO, "shown", &fields);
            none.forward(&record_line("unit-quiet-flat", &rec));
            assert_eq!(formatted(), before + 1);
        });
        let seen = capture.of("unit-quiet-flat");
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].is_log);
    }

    #[test]
    fn the_older_call_records_its_strings_unquoted_with_the_module_path() {
        let fields = [KeyValue::new("user", "alice"), KeyValue::new("count", "3")];
        let capture = capture("trace", || {
            forward(
                "unit-old",
                level::INFO,
                "old_plugin::login",
                "logged in",
                &fields,
            );
            forward("unit-old", level::INFO, "", "no module", &[]);
        });
        let seen = capture.of("unit-old");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].module_path.as_deref(), Some("old_plugin::login"));
        assert_eq!(seen[0].file, None);
        assert_eq!(seen[0].line, None);
        assert_eq!(seen[0].get("user"), Some(&Got::Debug("alice".into())));
        assert_eq!(seen[0].get("count"), Some(&Got::Debug("3".into())));
        assert_eq!(
            seen[0].get("plugin.module"),
            Some(&Got::Debug("old_plugin::login".into()))
        );
        assert_eq!(seen[1].module_path, None);
        assert_eq!(
            seen[1].names(),
            ["message"],
            "an unknown module is not recorded"
        );
    }

    #[test]
    fn a_custom_target_and_clashing_names_are_kept_apart() {
        let fields = [
            field("message", LogValue::Str("spoof".into())),
            field("plugin.module", LogValue::Str("spoof".into())),
            field("user", LogValue::Debug("alice".into())),
        ];
        let mut custom = record(level::INFO, "real", &fields);
        custom.target = "audit".into();
        let mut no_module = record(level::INFO, "by target", &[]);
        no_module.module_path = "".into();
        no_module.target = "my_plugin::jobs".into();
        let capture = capture("trace", || {
            forward_record("unit-names", &custom);
            forward_record("unit-names", &no_module);
        });
        let seen = capture.of("unit-names");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            seen[0].names(),
            [
                "message",
                "plugin.field.message",
                "plugin.field.plugin.module",
                "user",
                "plugin.module",
                "plugin.target"
            ]
        );
        assert_eq!(seen[0].get("message"), Some(&Got::Debug("real".into())));
        assert_eq!(
            seen[0].get("plugin.module"),
            Some(&Got::Debug("my_plugin::alerts".into()))
        );
        assert_eq!(
            seen[0].get("plugin.target"),
            Some(&Got::Debug("audit".into()))
        );
        assert_eq!(seen[1].module_path.as_deref(), Some("my_plugin::jobs"));
        assert_eq!(seen[1].names(), ["message", "plugin.module"]);
    }

    #[test]
    fn a_long_module_path_stays_out_of_the_metadata_only() {
        let module = format!("my_plugin::{}", "deep::".repeat(60));
        let mut long = record(level::INFO, "deep", &[]);
        long.module_path = module.as_str().into();
        let capture = capture("trace", || forward_record("unit-long", &long));
        let seen = capture.of("unit-long");
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(!seen[0].is_log);
        assert_eq!(seen[0].module_path, None);
        assert_eq!(
            seen[0].get("plugin.module"),
            Some(&Got::Debug(module.clone()))
        );
    }

    #[test]
    fn past_the_bounds_records_still_arrive_flattened() {
        let interner = Interner::new(Limits {
            callsites: 2,
            fields: 4,
            bytes: MAX_INTERNED_BYTES,
            name: MAX_NAME_BYTES,
        });
        let keys: Vec<String> = (0..6).map(|i| format!("key{i}")).collect();
        let values: Vec<LogField<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| field(k, LogValue::U64(i as u64)))
            .collect();
        let capture = capture("trace", || {
            for (i, message) in ["first", "second", "third", "fourth"].iter().enumerate() {
                let fields = &values[i..=i];
                let rec = record(level::WARN, message, fields);
                interner.forward(&record_line("unit-bound", &rec));
            }
            // The first shape again: still its call site.
            let rec = record(level::WARN, "again", &values[..1]);
            interner.forward(&record_line("unit-bound", &rec));
            // Too many fields for one record.
            let rec = record(level::WARN, "wide", &values[..5]);
            interner.forward(&record_line("unit-bound", &rec));
        });
        let seen = capture.of("unit-bound");
        let summary: Vec<(bool, String)> = seen
            .iter()
            .map(|s| {
                let message = match s.get("message") {
                    Some(Got::Debug(m) | Got::Str(m)) => m.clone(),
                    other => format!("{other:?}"),
                };
                (s.is_log, message)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (false, "first".to_owned()),
                (false, "second".to_owned()),
                (true, "third key2=2".to_owned()),
                (true, "fourth key3=3".to_owned()),
                (false, "again".to_owned()),
                (true, "wide key0=0 key1=1 key2=2 key3=3 key4=4".to_owned()),
            ]
        );
        assert_eq!(seen[0].get("key0"), Some(&Got::U64(0)));
        let flat = &seen[2];
        assert_eq!(flat.level, Level::WARN);
        assert_eq!(flat.module_path.as_deref(), Some("my_plugin::alerts"));
        assert_eq!(flat.file.as_deref(), Some("src/alerts.rs"));
        assert_eq!(flat.line, Some(42));
        assert_eq!(interner.state.read().count, 2);
        // The fallback is reported once.
        let warnings: Vec<Seen> = capture
            .seen()
            .into_iter()
            .filter(|s| {
                s.target == "plugbus_host::log_forward"
                    && s.get("plugin") == Some(&Got::Str("unit-bound".into()))
            })
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn the_byte_bound_holds() {
        let interner = Interner::new(Limits {
            callsites: 100,
            fields: MAX_FIELDS,
            bytes: 200,
            name: MAX_NAME_BYTES,
        });
        let keys: Vec<String> = (0..20).map(|i| format!("a-rather-long-key-{i}")).collect();
        let capture = capture("trace", || {
            for key in &keys {
                let fields = [field(key, LogValue::Bool(true))];
                interner.forward(&record_line(
                    "unit-bytes",
                    &record(level::INFO, "m", &fields),
                ));
            }
        });
        let state = interner.state.read();
        assert!(state.bytes <= 200, "{}", state.bytes);
        assert!(
            state.count >= 1 && state.count < keys.len(),
            "{}",
            state.count
        );
        let seen = capture.of("unit-bytes");
        assert_eq!(seen.len(), keys.len());
        assert!(!seen[0].is_log);
        assert!(seen[keys.len() - 1].is_log);
        assert_eq!(
            messages_of(&capture, "unit-bytes")
                .last()
                .map(String::as_str),
            Some("m a-rather-long-key-19=true")
        );
    }
}
