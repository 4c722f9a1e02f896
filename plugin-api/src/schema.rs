//! A plugin's declared configuration: [`ConfigSchema`] (keys, types, defaults, a line of help
//! each), and the one check both the host and `FakeHost` run against it.
//!
//! A plugin declares its schema with [`Plugin::config_schema`](crate::Plugin::config_schema),
//! usually derived from its config struct (`#[derive(ConfigSchema)]`, feature `derive`, on by
//! default), whose doc comments become the help lines:
//!
//! ```
//! use plugbus_plugin_api::{ConfigSchema, DescribeConfig};
//!
//! #[derive(serde::Deserialize, serde::Serialize, ConfigSchema)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     /// Failed logins within the window that raise an alert.
//!     threshold: u32,
//!     /// Users never alerted on.
//!     ignore: Vec<String>,
//! }
//! impl Default for Config {
//!     fn default() -> Self { Config { threshold: 5, ignore: Vec::new() } }
//! }
//!
//! let schema = Config::config_schema();
//! assert_eq!(schema.keys[0].name, "threshold");
//! assert_eq!(schema.keys[0].default, Some(serde_json::json!(5)));
//! let err = schema.check(&serde_json::json!({"threshold": "many"})).unwrap_err();
//! assert_eq!(err[0].to_string(), "key 'threshold': expected an integer from 0 to 4294967295, got the string \"many\"");
//! ```
//!
//! The host reads the schema when it loads the library (before constructing anything), shows
//! it in `plugbus plugins inspect`, and checks the plugin's `[plugin.NAME].config` table
//! against it before calling the plugin's `new`: a bad table is refused with every offending
//! key named, and the plugin never sees it. The plugin's own
//! [`parse_config`](crate::parse_config) still runs after that, so a plugin without a schema
//! loses nothing.
//!
//! The schema crosses the ABI as JSON text (see [`PluginMod::config_schema`]), so it can grow
//! without a layout change.
//!
//! [`PluginMod::config_schema`]: crate::abi::PluginMod::config_schema

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

/// The keys of a plugin's configuration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConfigSchema {
    /// The keys, in declaration order.
    pub keys: Vec<ConfigKey>,
    /// Whether a key not listed here is an error (`#[serde(deny_unknown_fields)]`).
    #[serde(default)]
    pub deny_unknown: bool,
}

/// One key of a [`ConfigSchema`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigKey {
    /// The key as written in the table (after serde's renames).
    pub name: String,
    /// What values it takes.
    pub kind: ValueKind,
    /// Its default, when it has one (shown by `plugins inspect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// One line of help.
    #[serde(default)]
    pub help: String,
    /// True if the table must contain it (no default, not an `Option`).
    #[serde(default)]
    pub required: bool,
}

/// The type of a configuration value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ValueKind {
    /// Text.
    String,
    /// `true` or `false`.
    Boolean,
    /// A whole number within `min..=max`.
    Integer {
        /// The smallest value accepted.
        min: i64,
        /// The largest value accepted.
        max: u64,
    },
    /// Any number.
    Number,
    /// A list whose items are all of `items`.
    Array {
        /// The type of each item.
        items: Box<ValueKind>,
    },
    /// A table of string keys whose values are all of `values`.
    Table {
        /// The type of each value.
        values: Box<ValueKind>,
    },
    /// A nested table with keys of its own.
    Struct {
        /// Its schema.
        schema: Box<ConfigSchema>,
    },
    /// `inner`, or absent / null.
    Optional {
        /// The type when present.
        inner: Box<ValueKind>,
    },
    /// Any value (the plugin checks it).
    Any,
}

impl fmt::Display for ValueKind {
    /// The type as `plugins inspect` shows it: `integer (0..=4294967295)`, `list of string`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::String => f.write_str("string"),
            ValueKind::Boolean => f.write_str("boolean"),
            ValueKind::Integer { min, max } => write!(f, "integer ({min}..={max})"),
            ValueKind::Number => f.write_str("number"),
            ValueKind::Array { items } => write!(f, "list of {items}"),
            ValueKind::Table { values } => write!(f, "table of {values}"),
            ValueKind::Struct { schema } => {
                f.write_str("table {")?;
                for (i, key) in schema.keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", key.name, key.kind)?;
                }
                f.write_str("}")
            }
            ValueKind::Optional { inner } => write!(f, "{inner} (optional)"),
            ValueKind::Any => f.write_str("any"),
        }
    }
}

/// One thing wrong with a configuration table, as [`ConfigSchema::check`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, dotted for nested tables and with an index for lists (`hosts[2].port`).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key '{}': {}", self.key, self.reason)
    }
}

impl ConfigSchema {
    /// An empty schema (no keys; unknown keys allowed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    pub fn key(mut self, key: ConfigKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Refuses keys not in the schema.
    pub fn deny_unknown(mut self, deny: bool) -> Self {
        self.deny_unknown = deny;
        self
    }

    /// Checks a configuration table (`null` counts as an empty table) against the schema.
    ///
    /// # Errors
    /// Every problem found, in key order: a value of the wrong type or out of range, a missing
    /// required key, an unknown key when [`deny_unknown`](Self::deny_unknown) is set, or a
    /// value that is not a table at all.
    pub fn check(&self, config: &Value) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        match config {
            Value::Null => self.check_table(&serde_json::Map::new(), "", &mut problems),
            Value::Object(map) => self.check_table(map, "", &mut problems),
            other => problems.push(ConfigProblem {
                key: "(config)".to_owned(),
                reason: format!("expected a table, got {}", describe(other)),
            }),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn check_table(
        &self,
        map: &serde_json::Map<String, Value>,
        prefix: &str,
        problems: &mut Vec<ConfigProblem>,
    ) {
        let path = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        for key in &self.keys {
            match map.get(&key.name) {
                Some(value) => check_value(&key.kind, value, &path(&key.name), problems),
                None if key.required => problems.push(ConfigProblem {
                    key: path(&key.name),
                    reason: format!("missing (required, {})", key.kind),
                }),
                None => {}
            }
        }
        if self.deny_unknown {
            for name in map.keys() {
                if !self.keys.iter().any(|k| &k.name == name) {
                    let known: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
                    problems.push(ConfigProblem {
                        key: path(name),
                        reason: if known.is_empty() {
                            "unknown key (the plugin takes no configuration)".to_owned()
                        } else {
                            format!("unknown key (known: {})", known.join(", "))
                        },
                    });
                }
            }
        }
    }
}

fn check_value(kind: &ValueKind, value: &Value, key: &str, problems: &mut Vec<ConfigProblem>) {
    let wrong = |problems: &mut Vec<ConfigProblem>, expected: String| {
        problems.push(ConfigProblem {
            key: key.to_owned(),
            reason: format!("expected {expected}, got {}", describe(value)),
        })
    };
    match (kind, value) {
        (ValueKind::Any, _) => {}
        (ValueKind::Optional { .. }, Value::Null) => {}
        (ValueKind::Optional { inner }, _) => check_value(inner, value, key, problems),
        (ValueKind::String, Value::String(_)) | (ValueKind::Boolean, Value::Bool(_)) => {}
        (ValueKind::Number, Value::Number(_)) => {}
        (ValueKind::Integer { min, max }, Value::Number(n)) => {
            let fits = if let Some(u) = n.as_u64() {
                u <= *max && (*min <= 0 || u >= min.unsigned_abs())
            } else if let Some(i) = n.as_i64() {
                i >= *min
            } else {
                false
            };
            if !fits {
                wrong(problems, format!("an integer from {min} to {max}"));
            }
        }
        (ValueKind::Array { items }, Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                check_value(items, item, &format!("{key}[{i}]"), problems);
            }
        }
        (ValueKind::Table { values }, Value::Object(map)) => {
            for (name, item) in map {
                check_value(values, item, &format!("{key}.{name}"), problems);
            }
        }
        (ValueKind::Struct { schema }, Value::Object(map)) => {
            schema.check_table(map, key, problems);
        }
        (ValueKind::Integer { min, max }, _) => {
            wrong(problems, format!("an integer from {min} to {max}"))
        }
        (ValueKind::String, _) => wrong(problems, "a string".to_owned()),
        (ValueKind::Boolean, _) => wrong(problems, "true or false".to_owned()),
        (ValueKind::Number, _) => wrong(problems, "a number".to_owned()),
        (ValueKind::Array { items }, _) => wrong(problems, format!("a list of {items}")),
        (ValueKind::Table { values }, _) => wrong(problems, format!("a table of {values}")),
        (ValueKind::Struct { .. }, _) => wrong(problems, "a table".to_owned()),
    }
}

/// A value as an error message names it: `the string "many"`, `the number -3`, `a list`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let short: String = s.chars().take(40).collect();
            format!("the string {short:?}...")
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a table".to_owned(),
    }
}

impl ConfigKey {
    /// A key of the given type, optional, without a default or help.
    pub fn new(name: impl Into<String>, kind: ValueKind) -> Self {
        ConfigKey {
            name: name.into(),
            kind,
            default: None,
            help: String::new(),
            required: false,
        }
    }

    /// Sets the line of help.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// Sets the default value shown by `plugins inspect`.
    pub fn default_value(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }

    /// Marks the key required.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }
}

/// A type that describes the configuration table it deserializes from. Derive it with
/// `#[derive(ConfigSchema)]` (feature `derive`) or implement it by hand.
pub trait DescribeConfig {
    /// The schema.
    fn config_schema() -> ConfigSchema;
}

/// A Rust type as a configuration value: what [`ValueKind`] it deserializes from.
///
/// Implemented for the primitive types, `String`, `PathBuf`, `Vec`, `Option`, string-keyed
/// maps, `serde_json::Value` ([`ValueKind::Any`]), and by `#[derive(ConfigSchema)]` for
/// nested config structs ([`ValueKind::Struct`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no configuration kind (`ConfigType`)",
    note = "mark the field `#[config(like = String)]` (a type read from text), \
            `#[config(any)]`, or implement `plugbus_plugin_api::ConfigType` for it"
)]
pub trait ConfigType {
    /// The kind of value.
    fn kind() -> ValueKind;
}

macro_rules! integer_kind {
    ($($t:ty),*) => {$(
        impl ConfigType for $t {
            fn kind() -> ValueKind {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_lossless)]
                ValueKind::Integer {
                    min: (<$t>::MIN as i128).max(i64::MIN as i128) as i64,
                    max: (<$t>::MAX as i128).min(u64::MAX as i128) as u64,
                }
            }
        }
    )*};
}
integer_kind!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl ConfigType for bool {
    fn kind() -> ValueKind {
        ValueKind::Boolean
    }
}
impl ConfigType for f32 {
    fn kind() -> ValueKind {
        ValueKind::Number
    }
}
impl ConfigType for f64 {
    fn kind() -> ValueKind {
        ValueKind::Number
    }
}
impl ConfigType for String {
    fn kind() -> ValueKind {
        ValueKind::String
    }
}
impl ConfigType for char {
    fn kind() -> ValueKind {
        ValueKind::String
    }
}
impl ConfigType for PathBuf {
    fn kind() -> ValueKind {
        ValueKind::String
    }
}
impl ConfigType for Value {
    fn kind() -> ValueKind {
        ValueKind::Any
    }
}
impl<T: ConfigType> ConfigType for Vec<T> {
    fn kind() -> ValueKind {
        ValueKind::Array {
            items: Box::new(T::kind()),
        }
    }
}
impl<T: ConfigType> ConfigType for Option<T> {
    fn kind() -> ValueKind {
        ValueKind::Optional {
            inner: Box::new(T::kind()),
        }
    }
}
impl<T: ConfigType, S> ConfigType for HashMap<String, T, S> {
    fn kind() -> ValueKind {
        ValueKind::Table {
            values: Box::new(T::kind()),
        }
    }
}
impl<T: ConfigType> ConfigType for BTreeMap<String, T> {
    fn kind() -> ValueKind {
        ValueKind::Table {
            values: Box::new(T::kind()),
        }
    }
}

/// The fields of `T::default()` as serde writes them, for the derive's defaults. `None` if it
/// does not serialize to a table.
#[doc(hidden)]
pub fn defaults_of<T: Default + Serialize>() -> Option<serde_json::Map<String, Value>> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// One value as serde writes it, for the derive's per-field defaults.
#[doc(hidden)]
pub fn default_value_of<T: Serialize>(value: T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ConfigSchema {
        ConfigSchema::new()
            .deny_unknown(true)
            .key(ConfigKey::new("threshold", u32::kind()).default_value(json!(5)))
            .key(ConfigKey::new("name", String::kind()).required(true))
            .key(ConfigKey::new("ratio", <Option<f64>>::kind()))
            .key(ConfigKey::new("users", <Vec<String>>::kind()))
            .key(ConfigKey::new("delta", i8::kind()))
            .key(ConfigKey::new(
                "nested",
                ValueKind::Struct {
                    schema: Box::new(
                        ConfigSchema::new()
                            .deny_unknown(true)
                            .key(ConfigKey::new("port", u16::kind())),
                    ),
                },
            ))
    }

    #[test]
    fn accepts_a_good_table() {
        let s = schema();
        s.check(&json!({"name": "x", "threshold": 3, "ratio": null, "users": ["a"], "delta": -5, "nested": {"port": 80}}))
            .unwrap();
        s.check(&json!({"name": "x"})).unwrap();
    }

    #[test]
    fn names_every_problem() {
        let s = schema();
        let problems = s
            .check(&json!({"threshold": -1, "ratio": "x", "users": ["a", 2], "delta": 200, "nested": {"port": 70000, "host": "h"}, "extra": 1}))
            .unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "key 'threshold': expected an integer from 0 to 4294967295, got the number -1",
                "key 'name': missing (required, string)",
                "key 'ratio': expected a number, got the string \"x\"",
                "key 'users[1]': expected a string, got the number 2",
                "key 'delta': expected an integer from -128 to 127, got the number 200",
                "key 'nested.port': expected an integer from 0 to 65535, got the number 70000",
                "key 'nested.host': unknown key (known: port)",
                "key 'extra': unknown key (known: threshold, name, ratio, users, delta, nested)",
            ]
        );
        assert!(s.check(&json!([1])).unwrap_err()[0]
            .to_string()
            .contains("expected a table, got a list"));
    }

    #[test]
    fn round_trips_as_json_and_displays() {
        let s = schema();
        let text = serde_json::to_string(&s).unwrap();
        let back: ConfigSchema = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            <Vec<Option<u8>>>::kind().to_string(),
            "list of integer (0..=255) (optional)"
        );
        assert_eq!(
            s.keys[5].kind.to_string(),
            "table {port: integer (0..=65535)}"
        );
    }
}
