//! plugbus plugin `auth-enhancer`: session tracking and brute-force detection.
//!
//! It follows `user.login`, `user.login_failed` and `user.logout`, keeps the active sessions of
//! each user, and publishes a `security.alert` ([`SecurityAlert`]) when it sees:
//!
//! | `reason` | when | severity |
//! |---|---|---|
//! | `brute_force_user` | `max_failures` failed logins for one user within `failure_window_secs` | high |
//! | `brute_force_ip` | `max_failures` failed logins from one address within the window | high |
//! | `new_address` | a login from an address the user has not logged in from before (not for the user's first login) | medium |
//! | `concurrent_sessions` | a login that gives the user more than `max_sessions` active sessions | medium |
//!
//! Time is the events' timestamps, never the wall clock, so replays and tests behave the same.
//! Each alert names the triggering event in `trigger_event_id`; the host also makes it the
//! alert's `causation_id`.
//!
//! # No alert storms
//!
//! A brute-force alert fires once, when the threshold is reached; further failures for the same
//! user (or address) stay silent until the window has cleared, i.e. until a failure arrives
//! after all earlier failures of that key have left the window. A `concurrent_sessions` alert
//! fires once when the limit is exceeded and again only after the user's sessions dropped back
//! to the limit. A successful login does not clear failures.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_failures` | 5 | failures that make a brute-force attempt (≥ 1) |
//! | `failure_window_secs` | 300 | the sliding window (≥ 1) |
//! | `max_sessions` | 3 | active sessions allowed per user (≥ 1) |
//! | `alert_new_address` | `true` | whether to alert on logins from new addresses |
//!
//! # Delivery failures
//!
//! If the host refuses an alert, `handle` returns a retryable error; when the host retries the
//! same event, the plugin does not count it twice but only publishes the alerts still pending.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use plugbus_plugin_api::contract::payload::{
    SecurityAlert, Severity, UserLogin, UserLoginFailed, UserLogout,
};
use plugbus_plugin_api::contract::types;
use plugbus_plugin_api::{
    export_plugin, parse_config, Event, HostHandle, Plugin, PluginError, Subscription,
};
use serde::Deserialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

/// The plugin's name.
pub const NAME: &str = "auth-enhancer";

/// Addresses remembered per user; the oldest is forgotten beyond this.
pub const MAX_KNOWN_ADDRESSES: usize = 256;
/// Sessions tracked per user; the oldest is forgotten beyond this (a logout may have been lost).
pub const MAX_TRACKED_SESSIONS: usize = 1024;
/// Events between sweeps of expired failure counters.
const SWEEP_EVERY: u64 = 1024;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The plugin's configuration (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Failures that make a brute-force attempt.
    pub max_failures: u32,
    /// The sliding window for failures, in seconds.
    pub failure_window_secs: u64,
    /// Active sessions allowed per user.
    pub max_sessions: u32,
    /// Whether to alert on logins from a new address.
    pub alert_new_address: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_failures: 5,
            failure_window_secs: 300,
            max_sessions: 3,
            alert_new_address: true,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        let bad = |key: &str, why: &str| {
            Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{NAME}': key '{key}': {why}"
            )))
        };
        if self.max_failures == 0 {
            return bad("max_failures", "must be at least 1");
        }
        if self.failure_window_secs == 0 {
            return bad("failure_window_secs", "must be at least 1");
        }
        if i64::try_from(self.failure_window_secs)
            .ok()
            .and_then(|s| s.checked_mul(NANOS_PER_SEC))
            .is_none()
        {
            return bad("failure_window_secs", "is too large");
        }
        if self.max_sessions == 0 {
            return bad("max_sessions", "must be at least 1");
        }
        Ok(())
    }

    fn window_nanos(&self) -> i64 {
        i64::try_from(self.failure_window_secs)
            .unwrap_or(i64::MAX / NANOS_PER_SEC)
            .saturating_mul(NANOS_PER_SEC)
    }
}

/// Failed attempts of one key (a user or an address) within the window.
#[derive(Debug, Default)]
struct Failures {
    times: VecDeque<i64>,
    latest: i64,
    alerted: bool,
}

impl Failures {
    /// Records a failure at `t`; returns the count in the window if this one reaches the
    /// threshold for the first time since the window last cleared.
    fn record(&mut self, t: i64, window: i64, threshold: u32) -> Option<u32> {
        self.latest = self.latest.max(t);
        self.expire(window);
        if self.times.is_empty() {
            self.alerted = false;
        }
        self.times.push_back(t);
        let count = u32::try_from(self.times.len()).unwrap_or(u32::MAX);
        if count >= threshold && !self.alerted {
            self.alerted = true;
            Some(count)
        } else {
            None
        }
    }

    fn expire(&mut self, window: i64) {
        let cutoff = self.latest.saturating_sub(window);
        while self.times.front().is_some_and(|t| *t <= cutoff) {
            self.times.pop_front();
        }
    }
}

#[derive(Debug)]
struct Session {
    id: String,
}

#[derive(Debug, Default)]
struct UserState {
    sessions: VecDeque<Session>,
    over_limit: bool,
    addresses: VecDeque<String>,
    address_set: HashSet<String>,
}

/// The auth enhancer plugin.
pub struct AuthEnhancer {
    host: HostHandle,
    config: Config,
    window: i64,
    users: HashMap<String, UserState>,
    user_failures: HashMap<String, Failures>,
    ip_failures: HashMap<String, Failures>,
    pending: Vec<SecurityAlert>,
    last_event: Option<[u8; 16]>,
    handled: u64,
    alerts: u64,
}

impl fmt::Debug for AuthEnhancer {
    /// Counts only: user names and addresses stay out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEnhancer")
            .field("config", &self.config)
            .field("users", &self.users.len())
            .field("user_failure_keys", &self.user_failures.len())
            .field("ip_failure_keys", &self.ip_failures.len())
            .field("handled", &self.handled)
            .field("alerts", &self.alerts)
            .finish_non_exhaustive()
    }
}

impl AuthEnhancer {
    /// The number of active sessions tracked for `user`.
    pub fn active_sessions(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |u| u.sessions.len())
    }

    fn on_login(&mut self, event: &Event<'_>) -> Result<(), PluginError> {
        let login: UserLogin = event.data()?;
        let trigger = event.id_string();
        let state = self.users.entry(login.user_id.clone()).or_default();

        if !login.ip.is_empty() && !state.address_set.contains(&login.ip) {
            if self.config.alert_new_address && !state.address_set.is_empty() {
                self.pending.push(SecurityAlert {
                    reason: "new_address".into(),
                    severity: Severity::Medium,
                    user_id: login.user_id.clone(),
                    ip: login.ip.clone(),
                    message: format!(
                        "user '{}' logged in from an address not seen before for this user",
                        login.user_id
                    ),
                    count: u32::try_from(state.address_set.len() + 1).unwrap_or(u32::MAX),
                    window_secs: 0,
                    trigger_event_id: trigger.clone(),
                });
            }
            state.address_set.insert(login.ip.clone());
            state.addresses.push_back(login.ip.clone());
            if state.addresses.len() > MAX_KNOWN_ADDRESSES {
                if let Some(old) = state.addresses.pop_front() {
                    state.address_set.remove(&old);
                }
            }
        }

        let id = if login.session_id.is_empty() {
            // Without a session id, the login event itself names the session.
            trigger.clone()
        } else {
            login.session_id.clone()
        };
        if !state.sessions.iter().any(|s| s.id == id) {
            state.sessions.push_back(Session { id });
            if state.sessions.len() > MAX_TRACKED_SESSIONS {
                state.sessions.pop_front();
            }
        }
        let active = state.sessions.len();
        let limit = usize::try_from(self.config.max_sessions).unwrap_or(usize::MAX);
        if active > limit && !state.over_limit {
            state.over_limit = true;
            self.pending.push(SecurityAlert {
                reason: "concurrent_sessions".into(),
                severity: Severity::Medium,
                user_id: login.user_id.clone(),
                ip: login.ip.clone(),
                message: format!(
                    "user '{}' has {active} active sessions (limit {limit})",
                    login.user_id
                ),
                count: u32::try_from(active).unwrap_or(u32::MAX),
                window_secs: 0,
                trigger_event_id: trigger,
            });
        }
        Ok(())
    }

    fn on_logout(&mut self, event: &Event<'_>) -> Result<(), PluginError> {
        let logout: UserLogout = event.data()?;
        let Some(state) = self.users.get_mut(&logout.user_id) else {
            return Ok(());
        };
        if logout.session_id.is_empty() {
            // No session named: end the oldest one.
            state.sessions.pop_front();
        } else if let Some(pos) = state
            .sessions
            .iter()
            .position(|s| s.id == logout.session_id)
        {
            state.sessions.remove(pos);
        }
        let limit = usize::try_from(self.config.max_sessions).unwrap_or(usize::MAX);
        if state.sessions.len() <= limit {
            state.over_limit = false;
        }
        Ok(())
    }

    fn on_failure(&mut self, event: &Event<'_>) -> Result<(), PluginError> {
        let failed: UserLoginFailed = event.data()?;
        let t = event.timestamp_unix_nanos();
        let trigger = event.id_string();
        let threshold = self.config.max_failures;
        let window_secs = self.config.failure_window_secs;
        if !failed.user_id.is_empty() {
            let f = self
                .user_failures
                .entry(failed.user_id.clone())
                .or_default();
            if let Some(count) = f.record(t, self.window, threshold) {
                self.pending.push(SecurityAlert {
                    reason: "brute_force_user".into(),
                    severity: Severity::High,
                    user_id: failed.user_id.clone(),
                    ip: failed.ip.clone(),
                    message: format!(
                        "{count} failed logins for user '{}' within {window_secs} s",
                        failed.user_id
                    ),
                    count,
                    window_secs,
                    trigger_event_id: trigger.clone(),
                });
            }
        }
        if !failed.ip.is_empty() {
            let f = self.ip_failures.entry(failed.ip.clone()).or_default();
            if let Some(count) = f.record(t, self.window, threshold) {
                self.pending.push(SecurityAlert {
                    reason: "brute_force_ip".into(),
                    severity: Severity::High,
                    user_id: failed.user_id.clone(),
                    ip: failed.ip.clone(),
                    message: format!(
                        "{count} failed logins from address {} within {window_secs} s",
                        failed.ip
                    ),
                    count,
                    window_secs,
                    trigger_event_id: trigger,
                });
            }
        }
        Ok(())
    }

    /// Forgets failure counters whose window has passed (bounded memory).
    fn sweep(&mut self) {
        let window = self.window;
        for map in [&mut self.user_failures, &mut self.ip_failures] {
            map.retain(|_, f| {
                f.expire(window);
                !f.times.is_empty()
            });
        }
    }

    fn publish_pending(&mut self) -> Result<(), PluginError> {
        while let Some(alert) = self.pending.first() {
            if let Err(e) = self.host.publish(alert) {
                tracing::warn!(reason = %alert.reason, error = %e, "security alert refused by host");
                return Err(e);
            }
            tracing::warn!(
                reason = %alert.reason,
                user_id = %alert.user_id,
                ip = %alert.ip,
                count = alert.count,
                "security alert"
            );
            self.alerts += 1;
            self.pending.remove(0);
        }
        Ok(())
    }
}

impl Plugin for AuthEnhancer {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "session tracking, brute-force, new-address and concurrent-session alerts";

    fn new(host: HostHandle, config: serde_json::Value) -> Result<Self, PluginError> {
        let config: Config = parse_config(NAME, config)?;
        config.validate()?;
        Ok(AuthEnhancer {
            host,
            window: config.window_nanos(),
            config,
            users: HashMap::new(),
            user_failures: HashMap::new(),
            ip_failures: HashMap::new(),
            pending: Vec::new(),
            last_event: None,
            handled: 0,
            alerts: 0,
        })
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        vec![Subscription::to_types([
            types::USER_LOGIN,
            types::USER_LOGIN_FAILED,
            types::USER_LOGOUT,
        ])]
    }

    fn start(&mut self) -> Result<(), PluginError> {
        tracing::info!(
            max_failures = self.config.max_failures,
            failure_window_secs = self.config.failure_window_secs,
            max_sessions = self.config.max_sessions,
            alert_new_address = self.config.alert_new_address,
            "auth enhancer started"
        );
        Ok(())
    }

    fn handle(&mut self, _handler: u32, event: &Event<'_>) -> Result<(), PluginError> {
        let id = event.id();
        if self.last_event != Some(id) {
            if !self.pending.is_empty() {
                tracing::warn!(
                    dropped = self.pending.len(),
                    "dropping alerts the host refused for an earlier event"
                );
                self.pending.clear();
            }
            self.last_event = Some(id);
            self.handled += 1;
            match event.event_type() {
                types::USER_LOGIN => self.on_login(event)?,
                types::USER_LOGIN_FAILED => self.on_failure(event)?,
                types::USER_LOGOUT => self.on_logout(event)?,
                other => {
                    tracing::debug!(event_type = other, "ignoring unexpected event type");
                }
            }
            if self.handled % SWEEP_EVERY == 0 {
                self.sweep();
            }
        }
        self.publish_pending()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        tracing::info!(
            handled = self.handled,
            alerts = self.alerts,
            users = self.users.len(),
            "auth enhancer stopped"
        );
        Ok(())
    }
}

export_plugin!(AuthEnhancer);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use plugbus_plugin_api::contract::Category;
    use plugbus_plugin_api::testing::{FakeHost, LoadedPlugin, PublishedEvent, TestEvent};
    use serde_json::json;

    const T0: i64 = 1_700_000_000;

    fn load(host: &FakeHost, config: serde_json::Value) -> LoadedPlugin {
        let mut p = host.load::<AuthEnhancer>(config).unwrap();
        p.start().unwrap();
        p
    }

    fn failed(user: &str, ip: &str, secs: i64) -> TestEvent {
        TestEvent::typed(&UserLoginFailed {
            user_id: user.into(),
            ip: ip.into(),
            reason: "bad_password".into(),
            ..Default::default()
        })
        .at_unix_secs(secs)
    }

    fn login(user: &str, ip: &str, session: &str) -> TestEvent {
        TestEvent::typed(&UserLogin {
            user_id: user.into(),
            ip: ip.into(),
            session_id: session.into(),
            ..Default::default()
        })
        .at_unix_secs(T0)
    }

    fn logout(user: &str, session: &str) -> TestEvent {
        TestEvent::typed(&UserLogout {
            user_id: user.into(),
            session_id: session.into(),
            ..Default::default()
        })
    }

    fn send(p: &mut LoadedPlugin, ev: &TestEvent) {
        let results = p.deliver(ev);
        assert_eq!(results.len(), 1, "{ev:?}");
        for (_, r) in results {
            r.unwrap();
        }
    }

    fn alerts(host: &FakeHost) -> Vec<(SecurityAlert, PublishedEvent)> {
        host.take_published()
            .into_iter()
            .map(|e| (e.data::<SecurityAlert>().unwrap(), e))
            .collect()
    }

    #[test]
    fn brute_force_per_user_alerts_once_then_again_after_the_window() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({}));
        let mut fifth = None;
        for i in 0..7 {
            // A different address each time: only the per-user counter reaches 5.
            let ev = failed("alice", &format!("10.0.0.{i}"), T0 + i);
            send(&mut p, &ev);
            if i == 4 {
                fifth = Some(ev);
            }
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        let (alert, published) = &got[0];
        let fifth = fifth.unwrap();
        assert_eq!(alert.reason, "brute_force_user");
        assert_eq!(alert.severity, Severity::High);
        assert_eq!(alert.user_id, "alice");
        assert_eq!((alert.count, alert.window_secs), (5, 300));
        assert_eq!(alert.trigger_event_id, fifth.id_string());
        assert_eq!(published.caused_by, Some(fifth.id));
        assert_eq!(published.event_type, "security.alert");

        // Still within the window of the last failure: silent.
        send(&mut p, &failed("alice", "10.0.1.1", T0 + 200));
        assert!(alerts(&host).is_empty());
        // The window clears (no failure in the last 300 s), then 5 new failures alert again.
        for i in 0..5 {
            send(
                &mut p,
                &failed("alice", &format!("10.0.2.{i}"), T0 + 600 + i),
            );
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.reason, "brute_force_user");
    }

    #[test]
    fn the_window_slides_on_event_time() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": 3, "failure_window_secs": 60}));
        send(&mut p, &failed("bob", "", T0));
        send(&mut p, &failed("bob", "", T0 + 30));
        // The first failure has left the window: 2 in the window, no alert.
        send(&mut p, &failed("bob", "", T0 + 61));
        assert!(alerts(&host).is_empty());
        send(&mut p, &failed("bob", "", T0 + 62));
        let got = alerts(&host);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.count, got[0].0.window_secs), (3, 60));
    }

    #[test]
    fn brute_force_per_address() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": 3}));
        for (i, user) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
            send(
                &mut p,
                &failed(user, "203.0.113.9", T0 + i64::try_from(i).unwrap()),
            );
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.reason, "brute_force_ip");
        assert_eq!(got[0].0.ip, "203.0.113.9");
        assert_eq!(got[0].0.count, 3);
    }

    #[test]
    fn new_address_after_the_first_login() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({}));
        send(&mut p, &login("carol", "10.0.0.1", "s1"));
        send(&mut p, &login("carol", "10.0.0.1", "s2"));
        assert!(alerts(&host).is_empty());
        let ev = login("carol", "198.51.100.7", "s3");
        send(&mut p, &ev);
        let got = alerts(&host);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.reason, "new_address");
        assert_eq!(got[0].0.ip, "198.51.100.7");
        assert_eq!(got[0].0.trigger_event_id, ev.id_string());
        // Known now.
        send(&mut p, &logout("carol", "s3"));
        send(&mut p, &login("carol", "198.51.100.7", "s4"));
        assert!(alerts(&host).is_empty());

        let host = FakeHost::new();
        let mut p = load(&host, json!({"alert_new_address": false}));
        send(&mut p, &login("carol", "10.0.0.1", "s1"));
        send(&mut p, &login("carol", "10.0.0.2", "s2"));
        assert!(alerts(&host).is_empty());
    }

    #[test]
    fn concurrent_sessions_alert_once_until_back_under_the_limit() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_sessions": 2}));
        send(&mut p, &login("dave", "10.0.0.1", "s1"));
        send(&mut p, &login("dave", "10.0.0.1", "s2"));
        // The same session again is not a new session.
        send(&mut p, &login("dave", "10.0.0.1", "s2"));
        assert!(alerts(&host).is_empty());
        send(&mut p, &login("dave", "10.0.0.1", "s3"));
        let got = alerts(&host);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.reason, "concurrent_sessions");
        assert_eq!(got[0].0.count, 3);
        send(&mut p, &login("dave", "10.0.0.1", "s4"));
        assert!(alerts(&host).is_empty());
        send(&mut p, &logout("dave", "s4"));
        send(&mut p, &logout("dave", "s3"));
        send(&mut p, &login("dave", "10.0.0.1", "s5"));
        assert_eq!(alerts(&host)[0].0.reason, "concurrent_sessions");
        // Logouts without a session id end the oldest session; unknown users are ignored.
        send(&mut p, &logout("dave", ""));
        send(&mut p, &logout("nobody", "x"));
    }

    #[test]
    fn a_refused_alert_is_retried_without_counting_twice() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": 2}));
        send(&mut p, &failed("erin", "", T0));
        host.refuse_publishes(Some("bus is shutting down"));
        let second = failed("erin", "", T0 + 1);
        let err = p.deliver(&second).remove(0).1.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        host.refuse_publishes(None);
        // The host retries the same event: the alert goes out, once.
        send(&mut p, &second);
        let got = alerts(&host);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.count, 2);
        // Had the retry counted again, this would be the 4th failure; either way, no new alert.
        send(&mut p, &failed("erin", "", T0 + 2));
        assert!(alerts(&host).is_empty());
        assert!(host
            .logs()
            .iter()
            .any(|l| l.message == "security alert refused by host"));
    }

    #[test]
    fn secrets_in_payloads_never_reach_alerts_or_logs() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": 1}));
        let ev = TestEvent::new(
            "user.login_failed",
            Category::Business,
            r#"{"user_id":"frank","ip":"10.9.9.9","password":"hunter2-secret"}"#,
        );
        send(&mut p, &ev);
        let published = host.published();
        assert_eq!(published.len(), 2);
        for e in &published {
            assert!(!e.payload_json.contains("hunter2"), "{}", e.payload_json);
        }
        for l in host.logs() {
            assert!(!format!("{l:?}").contains("hunter2"), "{l:?}");
        }
        let start = host.logs();
        assert!(start
            .iter()
            .any(|l| l.message == "auth enhancer started" && l.field("max_failures") == Some("1")));
        // Wrong payloads are invalid events, not panics.
        let bad = TestEvent::new("user.login", Category::Business, r#"{"ip":3}"#);
        let err = p.deliver(&bad).remove(0).1.unwrap_err();
        assert!(matches!(err, PluginError::InvalidEvent(_)), "{err}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let host = FakeHost::new();
        for (config, key) in [
            (json!({"max_failure": 3}), "max_failure"),
            (json!({"max_failures": 0}), "max_failures"),
            (json!({"max_failures": -1}), "max_failures"),
            (json!({"failure_window_secs": 0}), "failure_window_secs"),
            (
                json!({"failure_window_secs": u64::MAX}),
                "failure_window_secs",
            ),
            (json!({"max_sessions": 0}), "max_sessions"),
            (json!({"alert_new_address": "yes"}), "alert_new_address"),
        ] {
            let err = host.load::<AuthEnhancer>(config.clone()).unwrap_err();
            assert!(matches!(err, PluginError::Config(_)), "{config}: {err}");
            assert!(
                err.message().contains(&format!("'{key}'")),
                "{config}: {err}"
            );
        }
        let p = host.load::<AuthEnhancer>(json!({})).unwrap();
        assert_eq!(p.info().name.as_str(), NAME);
        let sub = &p.subscriptions()[0];
        assert_eq!(sub.event_types.len(), 3);
    }

    #[test]
    fn debug_output_has_no_user_data() {
        struct NullHost;
        impl plugbus_plugin_api::AbiHost for NullHost {
            fn publish(
                &self,
                _: plugbus_plugin_api::OwnedEvent,
            ) -> plugbus_plugin_api::abi_stable::std_types::RResult<
                (),
                plugbus_plugin_api::abi_stable::std_types::RString,
            > {
                plugbus_plugin_api::abi_stable::std_types::RResult::ROk(())
            }
            fn log(
                &self,
                _: u8,
                _: plugbus_plugin_api::abi_stable::std_types::RStr<'_>,
                _: plugbus_plugin_api::abi_stable::std_types::RStr<'_>,
                _: plugbus_plugin_api::abi_stable::std_types::RSlice<
                    '_,
                    plugbus_plugin_api::KeyValue<'_>,
                >,
            ) {
            }
        }
        let host = HostHandle::new(plugbus_plugin_api::host_box(NullHost));
        let mut plugin = AuthEnhancer::new(host, json!({})).unwrap();
        let ev = login("grace", "192.0.2.44", "sess-secret-1");
        ev.with_view(|v| plugin.handle(0, &Event::new(v))).unwrap();
        assert_eq!(plugin.active_sessions("grace"), 1);
        let dbg = format!("{plugin:?}");
        for leaked in ["grace", "192.0.2.44", "sess-secret-1"] {
            assert!(!dbg.contains(leaked), "{dbg}");
        }
    }
}
