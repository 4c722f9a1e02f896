//! `#[derive(ConfigSchema)]` (feature `derive`): the schema read off serde config structs,
//! key by key, and the host's check run against it.
#![cfg(feature = "derive")]
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use plugbus_plugin_api::serde_json::{self, json, Value};
use plugbus_plugin_api::{ConfigKey, ConfigSchema, ConfigType, DescribeConfig, ValueKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn int(min: i64, max: u64) -> ValueKind {
    ValueKind::Integer { min, max }
}

fn problems(schema: &ConfigSchema, config: &Value) -> Vec<String> {
    match schema.check(config) {
        Ok(()) => Vec::new(),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

/// A nested table.
#[derive(Debug, Deserialize, Serialize, ConfigSchema, PartialEq)]
#[serde(deny_unknown_fields)]
struct Endpoint {
    /// Host name or address.
    host: String,
    /// TCP port.
    #[serde(default = "default_port")]
    port: u16,
}

fn default_port() -> u16 {
    4222
}

#[derive(Debug, Deserialize, Serialize, ConfigSchema, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct Full {
    /// Failed logins within the window
    /// that raise an alert.
    ///
    /// Not part of the help: a second paragraph.
    max_failures: u32,
    /// Users never alerted on.
    ignore_users: Vec<String>,
    /// The window, in seconds.
    #[serde(rename = "window")]
    window_secs: u64,
    /// Internal state, never read from the table.
    #[serde(skip)]
    seen: u64,
    /// Set from code only.
    #[serde(skip_deserializing)]
    counter: u32,
    /// A ratio, absent by default.
    sample_ratio: Option<f64>,
    /// Where alerts go.
    upstream: Endpoint,
    #[config(help = "Overrides the doc comment.")]
    /// This doc comment is replaced.
    log_file: PathBuf,
    /// Anything the plugin checks itself.
    #[config(any)]
    mode: Mode,
    /// Per-user thresholds.
    per_user: BTreeMap<String, u8>,
    /// Raw JSON.
    extra: Value,
    /// The field's own default wins over the container's.
    #[serde(default = "ten")]
    own_default: i8,
}

fn ten() -> i8 {
    10
}

/// No ConfigType impl: needs `#[config(any)]`.
#[derive(Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Fast,
    Slow,
}

impl Default for Full {
    fn default() -> Self {
        Full {
            max_failures: 5,
            ignore_users: vec!["root".into()],
            window_secs: 60,
            seen: 0,
            counter: 0,
            sample_ratio: None,
            upstream: Endpoint {
                host: "localhost".into(),
                port: 4222,
            },
            log_file: PathBuf::from("/var/log/x.log"),
            mode: Mode::Fast,
            per_user: BTreeMap::new(),
            extra: Value::Null,
            own_default: 1,
        }
    }
}

fn endpoint_schema() -> ConfigSchema {
    ConfigSchema::new()
        .deny_unknown(true)
        .key(
            ConfigKey::new("host", ValueKind::String)
                .help("Host name or address.")
                .required(true),
        )
        .key(
            ConfigKey::new("port", int(0, 65535))
                .help("TCP port.")
                .default_value(json!(4222)),
        )
}

#[test]
fn the_full_schema_key_by_key() {
    let expected = ConfigSchema::new()
        .deny_unknown(true)
        .key(
            ConfigKey::new("max-failures", int(0, u64::from(u32::MAX)))
                .help("Failed logins within the window that raise an alert.")
                .default_value(json!(5)),
        )
        .key(
            ConfigKey::new(
                "ignore-users",
                ValueKind::Array {
                    items: Box::new(ValueKind::String),
                },
            )
            .help("Users never alerted on.")
            .default_value(json!(["root"])),
        )
        .key(
            ConfigKey::new("window", int(0, u64::MAX))
                .help("The window, in seconds.")
                .default_value(json!(60)),
        )
        .key(
            ConfigKey::new(
                "sample-ratio",
                ValueKind::Optional {
                    inner: Box::new(ValueKind::Number),
                },
            )
            .help("A ratio, absent by default.")
            .default_value(Value::Null),
        )
        .key(
            ConfigKey::new(
                "upstream",
                ValueKind::Struct {
                    schema: Box::new(endpoint_schema()),
                },
            )
            .help("Where alerts go.")
            .default_value(json!({"host": "localhost", "port": 4222})),
        )
        .key(
            ConfigKey::new("log-file", ValueKind::String)
                .help("Overrides the doc comment.")
                .default_value(json!("/var/log/x.log")),
        )
        .key(
            ConfigKey::new("mode", ValueKind::Any)
                .help("Anything the plugin checks itself.")
                .default_value(json!("fast")),
        )
        .key(
            ConfigKey::new(
                "per-user",
                ValueKind::Table {
                    values: Box::new(int(0, 255)),
                },
            )
            .help("Per-user thresholds.")
            .default_value(json!({})),
        )
        .key(
            ConfigKey::new("extra", ValueKind::Any)
                .help("Raw JSON.")
                .default_value(Value::Null),
        )
        .key(
            ConfigKey::new("own-default", int(-128, 127))
                .help("The field's own default wins over the container's.")
                .default_value(json!(10)),
        );
    let schema = Full::config_schema();
    let names: Vec<&str> = schema.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "max-failures",
            "ignore-users",
            "window",
            "sample-ratio",
            "upstream",
            "log-file",
            "mode",
            "per-user",
            "extra",
            "own-default"
        ]
    );
    for (got, want) in schema.keys.iter().zip(&expected.keys) {
        assert_eq!(got, want, "key {}", want.name);
    }
    assert_eq!(schema, expected);
    assert!(schema.keys.iter().all(|k| !k.required));
    assert_eq!(Endpoint::config_schema(), endpoint_schema());
}

#[test]
fn a_derived_struct_is_a_config_type_and_nests() {
    assert_eq!(
        <Endpoint as ConfigType>::kind(),
        ValueKind::Struct {
            schema: Box::new(endpoint_schema())
        }
    );
    assert_eq!(
        <Vec<Endpoint>>::kind().to_string(),
        "list of table {host: string, port: integer (0..=65535)}"
    );
}

#[test]
fn the_schema_and_serde_agree_on_a_valid_table() {
    let table = json!({
        "max-failures": 3,
        "ignore-users": ["admin", "backup"],
        "window": 300,
        "sample-ratio": 0.5,
        "upstream": {"host": "nats.local"},
        "log-file": "/tmp/a.log",
        "mode": "slow",
        "per-user": {"alice": 9},
        "extra": {"anything": [1, 2]},
        "own-default": -3,
    });
    Full::config_schema().check(&table).unwrap();
    let parsed: Full = serde_json::from_value(table).unwrap();
    assert_eq!(parsed.window_secs, 300);
    assert_eq!(parsed.upstream.port, 4222);
    // An empty table is fine too: everything has a default.
    Full::config_schema().check(&json!({})).unwrap();
    Full::config_schema().check(&Value::Null).unwrap();
    serde_json::from_value::<Full>(json!({})).unwrap();
}

#[test]
fn a_bad_table_names_each_bad_key() {
    let schema = Full::config_schema();
    let table = json!({
        "max-failures": "many",
        "ignore-users": ["ok", 7],
        "seen": 1,
        "window_secs": 10,
        "upstream": {"port": 70000, "tls": true},
        "per-user": {"bob": 300},
    });
    assert_eq!(
        problems(&schema, &table),
        [
            "key 'max-failures': expected an integer from 0 to 4294967295, got the string \"many\"",
            "key 'ignore-users[1]': expected a string, got the number 7",
            "key 'upstream.host': missing (required, string)",
            "key 'upstream.port': expected an integer from 0 to 65535, got the number 70000",
            "key 'upstream.tls': unknown key (known: host, port)",
            "key 'per-user.bob': expected an integer from 0 to 255, got the number 300",
            "key 'seen': unknown key (known: max-failures, ignore-users, window, sample-ratio, \
             upstream, log-file, mode, per-user, extra, own-default)",
            "key 'window_secs': unknown key (known: max-failures, ignore-users, window, \
             sample-ratio, upstream, log-file, mode, per-user, extra, own-default)",
        ]
    );
    // serde refuses the same table (the schema is not stricter or looser than the struct).
    assert!(serde_json::from_value::<Full>(table).is_err());
}

/// Without `#[serde(default)]` on the struct.
#[derive(Debug, Deserialize, ConfigSchema)]
struct Strict {
    /// Must be given.
    name: String,
    /// Also required.
    r#type: u8,
    /// Optional: serde fills in None.
    nickname: Option<String>,
    /// Has a default of its own.
    #[serde(default)]
    retries: u32,
    /// Required list.
    tags: Vec<String>,
}

#[test]
fn without_a_container_default_keys_are_required() {
    let schema = Strict::config_schema();
    let summary: Vec<(&str, bool, Option<&Value>)> = schema
        .keys
        .iter()
        .map(|k| (k.name.as_str(), k.required, k.default.as_ref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("name", true, None),
            ("type", true, None),
            ("nickname", false, None),
            ("retries", false, Some(&json!(0))),
            ("tags", true, None),
        ]
    );
    assert!(!schema.deny_unknown);
    assert_eq!(
        problems(&schema, &json!({})),
        [
            "key 'name': missing (required, string)",
            "key 'type': missing (required, integer (0..=255))",
            "key 'tags': missing (required, list of string)",
        ]
    );
    assert!(serde_json::from_value::<Strict>(json!({})).is_err());
    // Unknown keys pass: no deny_unknown_fields.
    let ok = json!({"name": "a", "type": 1, "tags": [], "other": true});
    schema.check(&ok).unwrap();
    let parsed: Strict = serde_json::from_value(ok).unwrap();
    assert_eq!((parsed.nickname, parsed.retries), (None, 0));
}

/// Every `rename_all` rule, and the halves of `rename(...)`.
#[derive(Deserialize, Serialize, ConfigSchema)]
#[serde(rename_all = "camelCase")]
struct Camel {
    max_batch_size: u8,
    #[serde(rename(deserialize = "In", serialize = "out"))]
    two_names: u8,
}

#[derive(Deserialize, ConfigSchema)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
struct ScreamingKebab {
    max_batch_size: u8,
}

#[derive(Deserialize, ConfigSchema)]
#[serde(rename_all = "PascalCase")]
struct Pascal {
    max_batch_size: u8,
}

#[derive(Deserialize, ConfigSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
struct ScreamingSnake {
    max_batch_size: u8,
}

#[derive(Deserialize, ConfigSchema)]
#[serde(rename_all = "UPPERCASE")]
struct Upper {
    max_batch_size: u8,
}

#[derive(Deserialize, ConfigSchema)]
#[serde(rename_all = "lowercase")]
struct Lower {
    max_batch_size: u8,
}

#[derive(Deserialize, ConfigSchema)]
#[serde(rename_all = "snake_case")]
struct Snake {
    max_batch_size: u8,
}

#[test]
fn rename_all_rules_name_the_keys_as_serde_reads_them() {
    let first = |schema: ConfigSchema| schema.keys[0].name.clone();
    assert_eq!(first(Camel::config_schema()), "maxBatchSize");
    assert_eq!(first(ScreamingKebab::config_schema()), "MAX-BATCH-SIZE");
    assert_eq!(first(Pascal::config_schema()), "MaxBatchSize");
    assert_eq!(first(ScreamingSnake::config_schema()), "MAX_BATCH_SIZE");
    assert_eq!(first(Upper::config_schema()), "MAX_BATCH_SIZE");
    assert_eq!(first(Lower::config_schema()), "max_batch_size");
    assert_eq!(first(Snake::config_schema()), "max_batch_size");
    // The deserialize name is the key; serde agrees.
    assert_eq!(Camel::config_schema().keys[1].name, "In");
    let table = json!({"maxBatchSize": 1, "In": 2});
    Camel::config_schema().check(&table).unwrap();
    assert_eq!(serde_json::from_value::<Camel>(table).unwrap().two_names, 2);
}

/// A container default from a function, with a serialize name differing from the key.
#[derive(Deserialize, Serialize, ConfigSchema)]
#[serde(default = "Tuned::preset")]
struct Tuned {
    level: u8,
    #[serde(rename(serialize = "out_name"))]
    renamed: u8,
    #[serde(skip_serializing)]
    hidden: u8,
}

impl Tuned {
    fn preset() -> Self {
        Tuned {
            level: 7,
            renamed: 3,
            hidden: 1,
        }
    }
}

#[test]
fn a_container_default_function_supplies_the_defaults() {
    let schema = Tuned::config_schema();
    let summary: Vec<(&str, bool, Option<&Value>)> = schema
        .keys
        .iter()
        .map(|k| (k.name.as_str(), k.required, k.default.as_ref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("level", false, Some(&json!(7))),
            ("renamed", false, Some(&json!(3))),
            ("hidden", false, None),
        ]
    );
}

/// Generic config structs get bounds on the fields that use the parameter.
#[derive(Deserialize, Serialize, ConfigSchema, Default)]
#[serde(default)]
struct Generic<T> {
    /// Items.
    items: Vec<T>,
    /// A count.
    count: u32,
}

#[test]
fn generic_structs_derive() {
    let schema = Generic::<u16>::config_schema();
    assert_eq!(
        schema.keys[0].kind,
        ValueKind::Array {
            items: Box::new(int(0, 65535))
        }
    );
    assert_eq!(schema.keys[0].default, Some(json!([])));
    assert_eq!(schema.keys[1].default, Some(json!(0)));
    assert_eq!(
        <Generic<String>>::kind().to_string(),
        "table {items: list of string, count: integer (0..=4294967295)}"
    );
}

/// The facade under another name: `#[config(crate = "...")]`.
mod renamed {
    pub(crate) use plugbus_plugin_api as api;
}

#[derive(Deserialize, ConfigSchema)]
#[config(crate = "renamed::api")]
struct ElsewhereConfig {
    flag: bool,
}

#[derive(Deserialize, ConfigSchema)]
struct Empty {}

#[test]
fn a_crate_path_and_an_empty_struct() {
    assert_eq!(
        ElsewhereConfig::config_schema().keys,
        [ConfigKey::new("flag", ValueKind::Boolean).required(true)]
    );
    let empty = Empty::config_schema();
    assert!(empty.keys.is_empty());
    empty.check(&json!({"x": 1})).unwrap();
}
