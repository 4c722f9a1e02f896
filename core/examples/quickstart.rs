//! A tour of the bus in one file: typed and pattern subscriptions, publish with a report,
//! emit through mailboxes, a failing handler that is retried then dead-lettered, causation
//! across re-entrant publishing, stats, and a shutdown whose account balances.
//!
//! Run with `cargo run -p plugbus --example quickstart`.

use plugbus::payload::{SecurityAlert, Severity, UserLogin, UserLoginFailed};
use plugbus::{Bus, Event, EventType, HandlerError, RetryPolicy};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let bus = Bus::builder()
        .default_timeout(Duration::from_secs(1))
        .build()?;

    // A typed handler: receives &UserLogin, no JSON involved.
    bus.subscribe_typed(|login: &UserLogin| {
        tracing::info!(user = %login.user_id, ip = %login.ip, "handler saw a login");
    })?;

    // A pattern handler that publishes re-entrantly: the alert gets causation automatically.
    let alerts = bus.clone();
    bus.subscribe(EventType::USER_LOGIN_FAILED)
        .name("brute-force-detector")
        .handle(move |e: &Event| -> Result<(), HandlerError> {
            let failed = e
                .data::<UserLoginFailed>()
                .map_err(HandlerError::permanent)?;
            let alert = Event::new(SecurityAlert {
                reason: "login_failed".into(),
                severity: Severity::Low,
                user_id: failed.user_id.clone(),
                ip: failed.ip.clone(),
                message: format!("failed login for {}", failed.user_id),
                count: 1,
                window_secs: 0,
                trigger_event_id: e.id().to_string(),
            })
            .map_err(HandlerError::permanent)?;
            alerts.try_emit(alert).map_err(HandlerError::permanent)
        })?;

    bus.subscribe_pattern("security.*")
        .name("alert-printer")
        .handle(|e: &Event| {
            tracing::info!(
                alert = %String::from_utf8_lossy(e.data_json().unwrap_or_default()),
                causation_id = ?e.causation_id().map(|c| c.to_string()),
                "handler saw an alert"
            );
        })?;

    // A flaky handler: retried with backoff, then dead-lettered.
    bus.subscribe_pattern("data.*")
        .name("flaky-indexer")
        .retry(RetryPolicy::new(3).initial_backoff(Duration::from_millis(5)))
        .handle(|_: &Event| Err::<(), _>(HandlerError::retryable("index unavailable")))?;

    let login = Event::builder_typed(UserLogin {
        user_id: "alice".into(),
        ip: "10.0.0.7".into(),
        ..Default::default()
    })
    .source("example")
    .build()?;
    let report = bus.publish(login).await?;
    tracing::info!(delivered = report.delivered(), "publish(user.login) done");

    let failed = Event::new(UserLoginFailed {
        user_id: "mallory".into(),
        ip: "203.0.113.9".into(),
        reason: "bad_password".into(),
        ..Default::default()
    })?;
    bus.emit(failed).await?;

    let created = Event::builder(EventType::DATA_CREATED)
        .json(r#"{"entity":"invoice","entity_id":"42"}"#)
        .build()?;
    let report = bus.publish(created).await?;
    for d in &report.deliveries {
        tracing::info!(subscription = %d.subscription, outcome = %d.outcome, attempts = d.attempts, "data.created");
    }
    for letter in bus.dead_letters() {
        tracing::info!(subscriber = %letter.subscriber, reason = %letter.reason, "dead letter");
    }

    let account = bus.shutdown(Duration::from_secs(2)).await;
    tracing::info!(
        accepted = account.accepted,
        delivered = account.totals.delivered,
        dead_lettered = account.totals.dead_lettered,
        balanced = account.is_balanced(),
        "shut down"
    );
    Ok(())
}
