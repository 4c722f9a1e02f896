//! `plugbus plugins list|inspect`: load and handshake plugin files without starting them.

use crate::{session, Finish};
use anyhow::Context as _;
use clap::Subcommand;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use plugbus_host::{Inspection, LoadErrorKind, TrustPolicy};
use plugbus_plugin_api::abi::ABI_VERSION;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Every `.so` in the plugin directories (the config's, or those given), checked and
    /// handshaken: name, version, interface version, compatible or not and why.
    List {
        /// Directories to list instead of the config's.
        #[arg(value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// One plugin file in detail.
    Inspect {
        /// The `.so` file.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Skip the trust checks (owner and permissions up to `/`, pins of the config), which
        /// are made by default, with the file's own folder as its plugin directory.
        #[arg(long)]
        no_trust: bool,
        /// Accepted for compatibility: the trust checks are made by default.
        #[arg(long, hide = true)]
        trust: bool,
    },
    /// Dry run: load, construct and start every plugin the config finds, stop them, and report
    /// (the configuration of each checked by the plugin itself); reads no events. Exit 1 if
    /// any failed.
    Check {
        /// Plugin directories (replace the config's).
        #[arg(long = "plugins", short = 'p', value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Create a new plugin crate (a Plugin with a typed config, a FakeHost test, a README)
    /// that builds, tests and loads as it is.
    New {
        /// The plugin's name (1 to 64 of a-z 0-9 - _ ., starting with a letter or digit).
        name: String,
        /// Where to create its folder.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Depend on this plugin-api folder by path (default: the one this plugbus was built
        /// from).
        #[arg(long, value_name = "PATH", conflicts_with = "version")]
        plugin_api: Option<PathBuf>,
        /// Depend on this published version of plugbus-plugin-api instead of a path.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
}

/// One word for what happened to a file, then why: a permissions problem is a refusal by the
/// trust policy; a file that crashed the probe, is damaged, is not a library or would abort the
/// host on a panic is refused; only an interface, layout or platform problem is
/// "incompatible".
fn verdict(i: &Inspection) -> String {
    match &i.result {
        Ok(()) => "compatible".into(),
        Err(e) if matches!(e.kind, LoadErrorKind::Disabled { .. }) => {
            "disabled (enabled = false in the config): not loaded".into()
        }
        Err(e) => format!("{}: {}", status_word(&e.kind), e.kind),
    }
}

fn status_word(kind: &LoadErrorKind) -> &'static str {
    match kind {
        LoadErrorKind::Untrusted(_) => "refused by trust policy",
        LoadErrorKind::ProbeFailed { .. }
        | LoadErrorKind::Corrupt { .. }
        | LoadErrorKind::NotALibrary
        | LoadErrorKind::NoRootModule { .. }
        | LoadErrorKind::PanicAbort { .. }
        | LoadErrorKind::InvalidName { .. } => "refused",
        LoadErrorKind::Disabled { .. } => "disabled",
        _ => "incompatible",
    }
}

pub(crate) async fn plugins(config: Option<&Path>, cmd: PluginsCommand) -> anyhow::Result<Finish> {
    let mut config = session::load_config(config)?;
    match cmd {
        PluginsCommand::Check { dirs } => {
            session::override_dirs(&mut config, &dirs)?;
            check(config).await
        }
        PluginsCommand::New {
            name,
            dir,
            plugin_api,
            version,
        } => crate::scaffold::new_plugin(&name, &dir, plugin_api.as_deref(), version.as_deref()),
        PluginsCommand::List { dirs } => {
            session::override_dirs(&mut config, &dirs)?;
            let policy = TrustPolicy::from_config(&config);
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(vec![
                "file",
                "name",
                "version",
                "interface",
                "isolation",
                "status",
            ]);
            let mut any_bad = false;
            let mut files: Vec<PathBuf> = Vec::new();
            for dir in &policy.directories {
                let entries = std::fs::read_dir(dir).map_err(|e| {
                    anyhow::anyhow!("cannot read plugin directory '{}': {e}", dir.display())
                })?;
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.extension().is_some_and(|x| x == "so") {
                        files.push(p);
                    }
                }
            }
            files.sort();
            for path in files {
                // A plugin disabled in the config is never mapped in the host.
                let i = plugbus_host::loader::inspect_with_policy_unless(&policy, &path, &|name| {
                    !config.is_enabled(name)
                });
                let disabled = matches!(
                    &i.result,
                    Err(e) if matches!(e.kind, LoadErrorKind::Disabled { .. })
                );
                any_bad |= !i.is_compatible() && !disabled;
                let (name, version, abi) = match &i.meta {
                    Some(m) => (
                        m.name.clone(),
                        m.version.clone(),
                        format!("{}.{}", m.abi.0, m.abi.1),
                    ),
                    None => match &i.result {
                        Err(e) => match &e.kind {
                            LoadErrorKind::Disabled { name }
                            | LoadErrorKind::PanicAbort { name } => {
                                (name.clone(), "-".into(), "-".into())
                            }
                            _ => ("-".into(), "-".into(), "-".into()),
                        },
                        Ok(()) => ("-".into(), "-".into(), "-".into()),
                    },
                };
                let isolation = if name == "-" {
                    "-".to_owned()
                } else {
                    config.plugin_isolation(&name).to_string()
                };
                t.add_row(vec![
                    path.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    name,
                    version,
                    abi,
                    isolation,
                    verdict(&i),
                ]);
            }
            println!("{t}");
            println!("host interface version {}.{}", ABI_VERSION.0, ABI_VERSION.1);
            Ok(if any_bad {
                Finish::WithErrors
            } else {
                Finish::Clean
            })
        }
        PluginsCommand::Inspect { path, no_trust, .. } => {
            let i = if no_trust {
                plugbus_host::inspect(&path)
            } else {
                let mut policy = TrustPolicy::from_config(&config);
                if let Some(dir) = path.parent().and_then(|d| std::fs::canonicalize(d).ok()) {
                    policy.directories.push(dir);
                }
                plugbus_host::inspect_with_policy(&policy, &path)
            };
            println!("file:        {}", i.path.display());
            println!("sha256:      {}", i.sha256.as_deref().unwrap_or("-"));
            if let Some(m) = &i.meta {
                println!("name:        {}", m.name);
                println!("version:     {}", m.version);
                println!("description: {}", m.description);
                println!(
                    "interface:   {}.{} (host {}.{})",
                    m.abi.0, m.abi.1, ABI_VERSION.0, ABI_VERSION.1
                );
            }
            match &i.result {
                Ok(()) => {
                    println!("status:      compatible");
                    print_schema(i.schema.as_ref());
                    Ok(Finish::Clean)
                }
                Err(e) => {
                    println!("status:      {}", status_word(&e.kind));
                    // The file is named above: the reason alone, indented under its label.
                    let reason = e.kind.to_string().replace('\n', "\n             ");
                    println!("reason:      {reason}");
                    Ok(Finish::WithErrors)
                }
            }
        }
    }
}

/// The `config` keys a plugin declares, as a table under the inspection.
fn print_schema(schema: Option<&plugbus_plugin_api::ConfigSchema>) {
    let Some(schema) = schema else {
        println!("config:      no schema declared (the plugin checks its own table)");
        return;
    };
    if schema.keys.is_empty() {
        println!("config:      none (the plugin takes no configuration)");
        return;
    }
    println!(
        "config:      {} keys{}, in [plugin.<name>.config]",
        schema.keys.len(),
        if schema.deny_unknown {
            "; unknown keys refused"
        } else {
            ""
        }
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["key", "type", "default", "help"]);
    for key in &schema.keys {
        let default = match (&key.default, key.required) {
            (_, true) => "(required)".to_owned(),
            (Some(value), false) => value.to_string(),
            (None, false) => "-".to_owned(),
        };
        t.add_row(vec![
            key.name.clone(),
            key.kind.to_string(),
            default,
            key.help.clone(),
        ]);
    }
    println!("{t}");
}

/// `plugins check`: every configured plugin loaded, constructed, started and stopped, with
/// nothing published to it but the host's own lifecycle events.
async fn check(config: plugbus_host::Config) -> anyhow::Result<Finish> {
    let bus = plugbus_host::bus_builder(&config.bus)
        .build()
        .context("building the bus")?;
    let required = session::required_plugins(&config);
    let manager = plugbus_host::PluginManager::new(bus.clone(), config);
    let report = manager.load_all().await;
    let stopped = manager.shutdown().await;
    let _ = bus.shutdown(std::time::Duration::from_secs(5)).await;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["plugin", "version", "result", "file"]);
    for s in &stopped {
        let started = report.started.contains(&s.name);
        t.add_row(vec![
            s.name.clone(),
            s.version.clone(),
            if started {
                "ok: constructed, started, stopped".to_owned()
            } else {
                format!("not started ({})", s.state)
            },
            s.path.display().to_string(),
        ]);
    }
    for (name, path) in &report.disabled {
        t.add_row(vec![
            name.clone(),
            String::new(),
            "disabled in the config".to_owned(),
            path.display().to_string(),
        ]);
    }
    println!("{t}");
    for err in &report.errors {
        println!("error: {err}");
    }
    let missing: Vec<&String> = required
        .iter()
        .filter(|r| !report.started.contains(r))
        .collect();
    for name in &missing {
        println!("error: required plugin '{name}' did not start");
    }
    let ok = report.errors.is_empty() && missing.is_empty();
    println!(
        "{}: {} started, {} disabled, {} errors",
        if ok { "ok" } else { "FAILED" },
        report.started.len(),
        report.disabled.len(),
        report.errors.len() + missing.len()
    );
    Ok(if ok {
        Finish::Clean
    } else {
        Finish::WithErrors
    })
}
