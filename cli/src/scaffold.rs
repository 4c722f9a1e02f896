//! `plugbus plugins new`: a new plugin crate that builds, tests and loads as it is.
//!
//! The crate is a workspace of its own (so it can live anywhere, even inside another
//! workspace), builds a `cdylib` with `panic = "unwind"` (the host refuses abort builds),
//! depends on `plugbus-plugin-api` by path (this checkout's, by default) or by version, and has
//! a `Plugin` with a typed config, a test against the plugin-api's `FakeHost`, and a README
//! saying how to build, test and load it.

use crate::Finish;
use anyhow::Context as _;
use plugbus::contract::validate_type_name;
use std::path::{Path, PathBuf};

/// Where this binary's own plugin-api sources are, if they are still there.
fn own_plugin_api() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api");
    p.join("Cargo.toml")
        .is_file()
        .then(|| p.canonicalize().ok())
        .flatten()
}

/// The dependency line for `plugbus-plugin-api`.
fn dependency(path: Option<&Path>, version: Option<&str>, testing: bool) -> anyhow::Result<String> {
    let features = if testing {
        ", features = [\"testing\"]"
    } else {
        ""
    };
    Ok(match (path, version) {
        (_, Some(v)) => format!("{{ version = \"{v}\"{features} }}"),
        (Some(p), None) => format!("{{ path = \"{}\"{features} }}", p.display()),
        (None, None) => match own_plugin_api() {
            Some(p) => format!("{{ path = \"{}\"{features} }}", p.display()),
            None => anyhow::bail!(
                "this plugbus was not built from a checkout that still exists: give \
                 --plugin-api PATH (a plugbus checkout's plugin-api folder) or --version V"
            ),
        },
    })
}

/// Writes the crate for plugin `name` into `dir/<name>`; returns its folder.
pub(crate) fn new_plugin(
    name: &str,
    dir: &Path,
    plugin_api: Option<&Path>,
    version: Option<&str>,
) -> anyhow::Result<Finish> {
    plugbus_host::loader::check_name(name)
        .map_err(|why| anyhow::anyhow!("'{name}' is not a plugin name: {why}"))?;
    let milestone = format!("{name}.milestone");
    validate_type_name(&milestone)
        .map_err(|e| anyhow::anyhow!("'{name}' is not usable as a plugin name here: {e}"))?;
    let plugin_api = match plugin_api {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("--plugin-api '{}'", p.display()))?,
        ),
        None => None,
    };
    let root = dir.join(name);
    anyhow::ensure!(
        !root.exists(),
        "'{}' exists already: choose another name or --dir",
        root.display()
    );
    let crate_name = format!("plugbus-plugin-{}", name.replace(['.', '_'], "-"));
    let lib_name = crate_name.replace('-', "_");
    let dep = dependency(plugin_api.as_deref(), version, false)?;
    let dev_dep = dependency(plugin_api.as_deref(), version, true)?;
    let type_name = to_type_name(name);
    let files = [
        (
            "Cargo.toml",
            CARGO_TOML
                .replace("{crate}", &crate_name)
                .replace("{name}", name)
                .replace("{dep}", &dep)
                .replace("{dev_dep}", &dev_dep),
        ),
        (
            "src/lib.rs",
            LIB_RS.replace("{name}", name).replace("{Type}", &type_name),
        ),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace("{lib}", &lib_name)
                .replace("{crate}", &crate_name),
        ),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        let path = root.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating '{}'", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing '{}'", path.display()))?;
    }
    println!("created plugin '{name}' in {}", root.display());
    println!(
        "  cd {} && cargo test            # its FakeHost test",
        root.display()
    );
    println!(
        "  cargo build --release && mkdir -p plugins && cp target/release/lib{lib_name}.so plugins/"
    );
    println!("  plugbus run -p plugins < events.jsonl   # load it");
    Ok(Finish::Clean)
}

/// `rate-limiter` -> `RateLimiter`.
fn to_type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_', '.']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            if out.is_empty() && first.is_ascii_digit() {
                out.push('P');
            }
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() {
        out.push_str("MyPlugin");
    }
    out
}

const CARGO_TOML: &str = r#"[package]
name = "{crate}"
version = "0.1.0"
edition = "2021"
description = "plugbus plugin '{name}'"
publish = false

[lib]
# cdylib: the .so the host loads; rlib: so `cargo test` can link the plugin into its tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
plugbus-plugin-api = {dep}
serde = { version = "1", features = ["derive"] }

[dev-dependencies]
plugbus-plugin-api = {dev_dep}

# The host refuses plugins built with panic = "abort": their first panic would abort the host.
[profile.release]
panic = "unwind"

# A workspace of its own, wherever this folder is.
[workspace]
"#;

const LIB_RS: &str = r##"//! plugbus plugin `{name}`: counts `user.login` events and publishes `{name}.milestone`
//! every `every` logins.
//!
//! The host calls the handler on the plugin's own thread, one event at a time, in order; a
//! panic anywhere is caught at the boundary and reported, never taking the host down. Events
//! published while handling one carry it as their cause.

use plugbus_plugin_api::contract::Category;
use plugbus_plugin_api::serde_json::{json, Value};
use plugbus_plugin_api::{
    export_plugin, parse_config, ConfigSchema, DescribeConfig, Event, EventDraft, Handlers,
    HostHandle, Plugin, PluginError, Reconfigure, Subscription,
};
use serde::{Deserialize, Serialize};

/// The plugin's configuration: the `config` table of `[plugin.{name}]` in `plugbus.toml`.
///
/// Every key has a default (`#[serde(default)]`) and a misspelled key is an error
/// (`deny_unknown_fields`). `ConfigSchema` derives the schema the host shows in
/// `plugbus plugins inspect` and checks the table against before `new`: each field's doc
/// comment is its line of help.
#[derive(Debug, Clone, Deserialize, Serialize, ConfigSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Publish a milestone every this many logins (at least 1).
    pub every: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { every: 100 }
    }
}

impl Config {
    /// Parses and checks what the schema cannot say.
    fn parse(config: Value) -> Result<Self, PluginError> {
        let config: Config = parse_config("{name}", config)?;
        if config.every == 0 {
            return Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{name}': key 'every': must be at least 1"
            )));
        }
        Ok(config)
    }
}

/// The plugin.
#[derive(Debug)]
pub struct {Type} {
    host: HostHandle,
    config: Config,
    logins: u64,
}

impl {Type} {
    fn on_login(&mut self, _event: &Event<'_>) -> Result<(), PluginError> {
        self.logins += 1;
        if self.logins % self.config.every == 0 {
            // A refused publish (the host's queue full, the host stopping) is an error of
            // this delivery: `?` reports it.
            self.host.publish_with(
                EventDraft::new("{name}.milestone", Category::Custom)
                    .json(json!({ "logins": self.logins }).to_string()),
            )?;
        }
        Ok(())
    }
}

impl Plugin for {Type} {
    const NAME: &'static str = "{name}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "counts logins and publishes a milestone every N of them";

    fn config_schema() -> Option<ConfigSchema> {
        Some(Config::config_schema())
    }

    fn new(host: HostHandle, config: Value) -> Result<Self, PluginError> {
        Ok({Type} {
            host,
            config: Config::parse(config)?,
            logins: 0,
        })
    }

    /// One subscription, named (the host's tables show `{name}/logins`), with its handler.
    fn handlers(&self) -> Handlers<Self> {
        Handlers::new().on(
            Subscription::to_types(["user.login"]).named("logins"),
            Self::on_login,
        )
    }

    /// A changed `every` applies in place when the config file changes (with hot-plug on):
    /// the count so far is kept.
    fn reconfigure(&mut self, config: Value) -> Result<Reconfigure, PluginError> {
        self.config = Config::parse(config)?;
        Ok(Reconfigure::Applied)
    }
}

export_plugin!({Type});

#[cfg(test)]
mod tests {
    use super::*;
    use plugbus_plugin_api::testing::{FakeHost, TestEvent};

    fn login() -> TestEvent {
        TestEvent::new("user.login", Category::Business, r#"{"user_id":"alice"}"#)
    }

    #[test]
    fn publishes_a_milestone_every_n_logins() {
        let host = FakeHost::new();
        let mut plugin = host.load::<{Type}>(json!({ "every": 2 })).expect("loads");
        plugin.start().expect("starts");
        for _ in 0..5 {
            for (_, result) in plugin.deliver(&login()) {
                result.expect("handled");
            }
        }
        let published = host.published();
        assert_eq!(published.len(), 2, "{published:?}");
        assert_eq!(published[0].event_type, "{name}.milestone");
        assert_eq!(published[1].payload_json, r#"{"logins":4}"#);
        plugin.stop().expect("stops");
    }

    #[test]
    fn a_bad_config_names_the_key() {
        let host = FakeHost::new();
        // Refused by the schema, as the host refuses it, before `new` runs.
        let err = host.load::<{Type}>(json!({ "every": "often" })).unwrap_err();
        assert!(err.to_string().contains("key 'every': expected an integer"), "{err}");
        let err = host.load::<{Type}>(json!({ "evry": 3 })).unwrap_err();
        assert!(err.to_string().contains("key 'evry': unknown key"), "{err}");
        // Refused by the plugin's own check.
        let err = host.load::<{Type}>(json!({ "every": 0 })).unwrap_err();
        assert!(err.to_string().contains("must be at least 1"), "{err}");
    }

    #[test]
    fn reconfigures_in_place() {
        let host = FakeHost::new();
        let mut plugin = host.load::<{Type}>(json!({ "every": 10 })).expect("loads");
        for _ in 0..3 {
            plugin.deliver(&login());
        }
        let applied = plugin.reconfigure(json!({ "every": 4 })).expect("reconfigured");
        assert_eq!(applied, Reconfigure::Applied);
        plugin.deliver(&login());
        assert_eq!(host.published().len(), 1, "the count was kept");
        assert!(plugin.reconfigure(json!({ "every": 0 })).is_err());
    }
}
"##;

const README: &str = r#"# plugbus plugin `{name}`

Made by `plugbus plugins new {name}`. It counts `user.login` events and publishes
`{name}.milestone` every `every` logins.

```sh
cargo test                      # the FakeHost tests in src/lib.rs
cargo build --release           # target/release/lib{lib}.so
mkdir -p plugins && cp target/release/lib{lib}.so plugins/
echo '{"type":"user.login","data":{"user_id":"alice"}}' | plugbus run -p plugins
```

Configure it in `plugbus.toml` (`plugbus plugins inspect` lists the keys, from the schema
`#[derive(ConfigSchema)]` makes of `Config`):

```toml
[plugin.{name}]
config = { every = 10 }
```

With `[plugins] watch = true`, a change of that table reaches the running plugin through
`reconfigure`, its count kept.

Things to know:
- Build with `panic = "unwind"` (set in Cargo.toml): the host refuses abort builds.
- Do not assume a tokio runtime: each `.so` has its own copy of tokio's globals and finds none.
- `handle` runs on the plugin's own thread, one event at a time; keep state bounded.
- Publishing from a thread the plugin spawned is allowed (the `HostHandle` is `Send + Sync`).
- A reload (hot-plug) stops the old instance before the new one is built: state is lost.
- `plugbus plugins inspect lib{lib}.so` shows what the host sees of the file.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(to_type_name("rate-limiter"), "RateLimiter");
        assert_eq!(to_type_name("a.b_c"), "ABC");
        assert_eq!(to_type_name("9lives"), "P9lives");
    }
}
