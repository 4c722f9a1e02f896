//! Plugin log lines into the host's `tracing` output.
//!
//! A plugin's `tracing` events reach the host through the ABI's `log(level, target, message,
//! fields)` call (the plugin side is `plugbus_plugin_api::log_bridge`). Here they become
//! events of the host's `tracing` dispatcher, under the target `plugbus::plugin::<name>`, so
//! `RUST_LOG=plugbus::plugin::audit-logger=debug` selects one plugin.
//!
//! `tracing`'s macros need `'static` targets, and plugin names are only known at run time.
//! So each line is built as a `log::Record` (whose target may be any string) and handed to
//! `tracing_log::format_trace`, the same path `tracing-log` uses for the `log` crate: the
//! host's subscriber sees a normal event, filters it by the dynamic target, and formatters that
//! normalize `log` records (tracing-subscriber's `fmt` does) print that target. The plugin's
//! own module path is the record's module path; structured fields are appended to the message
//! as `key=value` (values with spaces or quotes are quoted).

use plugbus_plugin_api::facade::level;
use plugbus_plugin_api::{KeyValue, LogRecord};

/// The `tracing` target of a plugin's log lines: `plugbus::plugin::<name>`.
pub fn target_for(plugin: &str) -> String {
    format!("plugbus::plugin::{plugin}")
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

/// `message key=value key="a value"`, for the fields a plugin passed.
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

/// Emits one plugin log line into the host's `tracing` dispatcher.
pub fn forward(plugin: &str, level: u8, module: &str, message: &str, fields: &[KeyValue<'_>]) {
    let target = target_for(plugin);
    let level = level_of(level);
    // Cheap exit when nothing listens at that level for that target.
    if !log_enabled(&target, level) {
        return;
    }
    let text = render(message, fields);
    let module = (!module.is_empty()).then_some(module);
    // `format_trace` cannot fail (it always returns Ok); nothing to report if it did.
    let _ = tracing_log::format_trace(
        &log::Record::builder()
            .args(format_args!("{text}"))
            .level(level)
            .target(&target)
            .module_path(module)
            .build(),
    );
}

/// Emits one plugin log record (ABI 0.4: typed fields, module path, file and line) into the
/// host's `tracing` dispatcher.
pub fn forward_record(plugin: &str, record: &LogRecord<'_>) {
    let texts: Vec<String> = record.fields.iter().map(|f| f.value.to_string()).collect();
    let kvs: Vec<KeyValue<'_>> = record
        .fields
        .iter()
        .zip(&texts)
        .map(|(f, text)| KeyValue::new(f.key.as_str(), text))
        .collect();
    let module = if record.module_path.is_empty() {
        record.target.as_str()
    } else {
        record.module_path.as_str()
    };
    forward(plugin, record.level, module, record.message.as_str(), &kvs);
}

fn log_enabled(target: &str, level: log::Level) -> bool {
    use tracing_log::AsTrace;
    let metadata = log::Metadata::builder().level(level).target(target).build();
    let trace = metadata.as_trace();
    tracing::dispatcher::get_default(|dispatch| dispatch.enabled(&trace))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_rendering() {
        assert_eq!(level_of(1), log::Level::Error);
        assert_eq!(level_of(2), log::Level::Warn);
        assert_eq!(level_of(3), log::Level::Info);
        assert_eq!(level_of(4), log::Level::Debug);
        assert_eq!(level_of(5), log::Level::Trace);
        assert_eq!(level_of(77), log::Level::Trace);
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
}
