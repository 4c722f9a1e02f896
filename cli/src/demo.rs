//! `plugbus demo`: a built-in scenario through the real bus and the plugins loaded from `.so`
//! files: users log in, change data and log out; one user logs in from a new address; an attacker
//! tries one password after another. The audit logger records it all, the auth enhancer raises
//! alerts, and the summary shows what happened and where the audit log is.

use crate::session;
use crate::{summary, Finish};
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plugbus::payload::{
    DataChange, DataCreated, DataDeleted, DataUpdated, UserLogin, UserLoginFailed, UserLogout,
};
use plugbus::{Event, TypedEvent};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Plugin directories (replace the config's `plugins.directories`).
    #[arg(long = "plugins", short = 'p', value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Where the audit logger writes (replaces its configured `path`). The demo starts it fresh.
    #[arg(long, value_name = "FILE", default_value = "plugbus-demo-audit.jsonl")]
    audit_log: PathBuf,
    /// How many times to play the scenario (each round with its own users).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rounds: u32,
    /// Users per round.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    users: u32,
    /// Serve Prometheus metrics at `http://ADDR/metrics` while running (e.g.
    /// `127.0.0.1:9464`; port 0 picks a free one, printed on stderr). Overrides the config's
    /// `[metrics] listen`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// The scenario's events, in order, with event-time timestamps one second apart.
fn scenario(rounds: u32, users: u32) -> anyhow::Result<Vec<Event>> {
    let mut t = plugbus::Event::builder(plugbus::EventType::SYSTEM_STARTUP)
        .build()?
        .timestamp_unix_nanos();
    let mut out = Vec::new();
    let mut push = |out: &mut Vec<Event>, e: plugbus::EventBuilder| -> anyhow::Result<()> {
        t += 1_000_000_000;
        out.push(e.source("demo-app").timestamp_unix_nanos(t).build()?);
        Ok(())
    };
    fn typed<T: TypedEvent>(v: T) -> plugbus::EventBuilder {
        Event::builder_typed(v)
    }
    for r in 0..rounds {
        let user = |i: u32| format!("user-{r}-{i:03}");
        let ip = |i: u32| format!("10.{}.{}.{}", r % 250, i / 250, i % 250 + 1);
        for i in 0..users {
            push(
                &mut out,
                typed(UserLogin {
                    user_id: user(i),
                    ip: ip(i),
                    user_agent: "demo-browser/1.0".into(),
                    session_id: format!("s-{r}-{i}"),
                    method: "password".into(),
                })
                .request_id(&format!("req-{r}-{i}-login")),
            )?;
        }
        for i in 0..users {
            let change = |n: u32| DataChange {
                entity: "invoice".into(),
                entity_id: format!("inv-{r}-{i}-{n}"),
                actor: user(i),
                fields: serde_json::json!({ "amount_cents": 1000 + n * 250, "currency": "EUR" }),
            };
            push(&mut out, typed(DataCreated(change(1))))?;
            push(&mut out, typed(DataCreated(change(2))))?;
            push(&mut out, typed(DataUpdated(change(1))))?;
            if i % 3 == 0 {
                let mut gone = change(2);
                gone.fields = serde_json::Value::Null;
                push(&mut out, typed(DataDeleted(gone)))?;
            }
        }
        // A known user from an address never seen for them.
        push(
            &mut out,
            typed(UserLogin {
                user_id: user(2 % users),
                ip: "198.51.100.23".into(),
                user_agent: "unknown-client/0.1".into(),
                session_id: format!("s-{r}-new-address"),
                method: "password".into(),
            }),
        )?;
        // A brute-force attempt: twelve wrong passwords for one account from one address.
        for attempt in 0..12 {
            push(
                &mut out,
                typed(UserLoginFailed {
                    user_id: format!("admin-{r}"),
                    ip: format!("203.0.113.{}", 60 + r % 190),
                    user_agent: "curl/8.0".into(),
                    reason: if attempt % 2 == 0 {
                        "bad_password"
                    } else {
                        "bad_otp"
                    }
                    .into(),
                }),
            )?;
        }
        for i in 0..users {
            push(
                &mut out,
                typed(UserLogout {
                    user_id: user(i),
                    session_id: format!("s-{r}-{i}"),
                    reason: "user".into(),
                }),
            )?;
        }
    }
    Ok(out)
}

pub(crate) async fn demo(config: Option<&Path>, args: DemoArgs) -> anyhow::Result<Finish> {
    let config_path = config;
    let mut config = session::load_config(config_path)?;
    session::override_dirs(&mut config, &args.plugin_dirs)?;
    let audit_log = std::path::absolute(&args.audit_log)
        .with_context(|| format!("audit log path '{}'", args.audit_log.display()))?;
    if let Some(dir) = audit_log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating '{}'", dir.display()))?;
    }
    remove_log_set(&audit_log)?;
    config
        .plugin
        .entry("audit-logger".into())
        .or_default()
        .config
        .insert(
            "path".into(),
            toml::Value::String(audit_log.display().to_string()),
        );

    let events = scenario(args.rounds, args.users)?;
    let (session, _metrics) =
        crate::metrics::start_session(args.metrics, config, config_path).await?;
    if session.manager.plugins().is_empty() {
        anyhow::bail!(
            "no plugins loaded from {:?}: build them first (the README's first command does)",
            session.manager.config().plugins.directories
        );
    }
    let progress = ProgressBar::new(events.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let stop = session::stop_requested();
    tokio::pin!(stop);
    let mut refused = 0u64;
    let mut required_failed = session.required_failure();
    for (n, event) in events.into_iter().enumerate() {
        if required_failed.is_some() {
            break;
        }
        if n % 64 == 63 {
            required_failed = session.required_failure();
        }
        tokio::select! {
            _ = &mut stop => {
                progress.suspend(|| eprintln!("stop requested: shutting down"));
                break;
            }
            sent = session.bus.emit(event) => {
                if let Err(e) = sent {
                    refused += 1;
                    progress.suspend(|| eprintln!("refused: {e}"));
                }
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let load_failed = !session.load.is_ok();
    let mut outcome = session.finish().await;
    if outcome.required_failure.is_none() {
        outcome.required_failure = required_failed.clone();
    }
    summary::print(&outcome);
    let required_failed = required_failed.or_else(|| outcome.required_failure.clone());
    if let Some(why) = &required_failed {
        eprintln!("plugbus: {why}: the demo stopped taking events");
    }
    let chain_ok = match plugbus_host::verify_file(&audit_log) {
        Ok(r) => {
            println!(
                "\nAudit log: {} ({} records, seq {}..{}, hash chain verified)",
                audit_log.display(),
                r.records,
                r.first_seq.unwrap_or(0),
                r.last_seq.unwrap_or(0)
            );
            true
        }
        Err(e) => {
            println!("\nAudit log: {}: {e}", audit_log.display());
            false
        }
    };
    println!(
        "Verify it yourself: plugbus audit verify {}",
        audit_log.display()
    );
    Ok(
        if load_failed
            || refused > 0
            || !chain_ok
            || required_failed.is_some()
            || !outcome.is_balanced()
        {
            Finish::WithErrors
        } else {
            Finish::Clean
        },
    )
}

/// Removes the log and its rotated siblings (`.1`, `.2`, ...), so the demo's chain starts fresh.
fn remove_log_set(path: &Path) -> anyhow::Result<()> {
    let mut candidates = vec![path.to_path_buf()];
    for n in 1..=64 {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        candidates.push(PathBuf::from(p));
    }
    for p in candidates {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing old audit log '{}'", p.display()))
            }
        }
    }
    Ok(())
}
