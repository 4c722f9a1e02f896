//! plugbus plugin `auth-enhancer`: session tracking, brute-force and spraying detection that
//! an attacker cannot blind by respelling, flooding or malformed events.
//!
//! It follows `user.login`, `user.login_failed` and `user.logout`, keeps the active sessions of
//! each user, and publishes a `security.alert` ([`SecurityAlert`]) when it sees:
//!
//! | `reason` | when | severity |
//! |---|---|---|
//! | `brute_force_user` | `max_failures` failed logins for one user within `failure_window_secs` | high |
//! | `brute_force_ip` | `max_failures` failed logins from one address within the window | high |
//! | `password_spraying` | `max_prefix_failures` failed logins from one network (a /24 for IPv4, a /64 for IPv6), whatever the users, within `prefix_window_secs` | high |
//! | `new_address` | a login from an address the user has not logged in from before (not for the user's first login) | medium |
//! | `concurrent_sessions` | a login that gives the user more than `max_sessions` active sessions | medium |
//!
//! Time is the events' timestamps, never the wall clock, so replays and tests behave the same.
//! Each alert names the triggering event in `trigger_event_id`; the host also makes it the
//! alert's `causation_id`. A `password_spraying` alert carries the network in CIDR form in
//! `ip` (`10.0.0.0/24`), the failures in `count`, and says how many different users they were
//! for in `message`; the contract's alert has no structured field for that.
//!
//! # One thing, one counter
//!
//! Counters are keyed by canonical forms, so respelling does not reset them:
//!
//! - **addresses** are parsed as IP addresses: whitespace around them, upper- or lower-case
//!   IPv6, zero-padded groups, IPv4-mapped IPv6 (`::ffff:10.0.0.9` is `10.0.0.9`), a port or
//!   brackets, and zero-padded IPv4 octets (`010.0.0.9`, read as decimal: see the `address`
//!   module for why) all name the same address. Alerts show the canonical spelling. Text that
//!   is not an address counts as its own address (trimmed); the plugin warns about the first
//!   16 different such values, then only counts them (`unparsable_addresses` in the stop log
//!   line), so a flood of junk cannot flood the log;
//! - **user ids** are trimmed and, with `case_insensitive_users` (the default), compared by
//!   their Unicode lowercase form: ` Alice ` and `alice` are one user. Alerts show the user id
//!   of the triggering event, trimmed;
//! - **session ids** are compared exactly.
//!
//! Nothing is stored as text: each user, address, network and session is remembered as a
//! 64-bit keyed hash of its canonical form (see the `keys` module), so a 100 KB session id costs
//! 8 bytes and no session token is kept in memory.
//!
//! # Bounded state
//!
//! Every key comes from the events, so every table has a ceiling: at most `max_tracked` users,
//! `max_tracked` addresses and `max_tracked` networks. When a table is full, the entry seen
//! least recently is forgotten to make room; evictions are counted (`evicted_users`,
//! `evicted_addresses`, `evicted_prefixes` in the stop log line and in
//! [`AuthEnhancer::stats`]), and the first one in each table is logged as a warning, because a
//! full table under attack means an idle counter can be pushed out by a flood of fresh keys.
//! Failure records that have left their window are dropped as event time moves on.
//!
//! Per user, at most `max_failures` failure times, `max(4 × max_sessions, 64)` sessions (the
//! oldest is forgotten: its logout was probably lost) and [`MAX_KNOWN_ADDRESSES`] addresses are
//! kept, 8 bytes each, in one allocation beside a 40-byte table slot and about 10 bytes of
//! index; an address keeps `max_failures` failure times, a network `max_prefix_failures`
//! (time, user) pairs of 16 bytes. A user with a session, an address and a failure takes about
//! 80 bytes. Measured (the ignored tests at the end of this file, release build): a million
//! users, each with a login and a failure from an address of its own, grow the process by
//! about 18 MiB with the defaults (100,000 of each kept), and by about 160 MiB with
//! `max_tracked = 1000000` (nothing evicted). The defaults' worst case, every tracked user at
//! every cap, is near 150 MB; failed logins alone, whatever their number or content, stay
//! under about 60 MB.
//!
//! # Malformed events
//!
//! A payload that does not decode, lacks `user_id`, has a blank `user_id` (logins, logouts),
//! or a failure with neither a user nor an address, is answered with
//! [`PluginError::InvalidEvent`]: the host dead-letters it, does not retry it and does not count
//! it against the plugin. The event changes no state, so malformed events in between real ones
//! hide nothing. Events of a type the plugin did not subscribe to are invalid too.
//!
//! # No alert storms
//!
//! A brute-force or spraying alert fires once, when the threshold is reached; further failures
//! for the same user (or address, or network) stay silent until the window has cleared, i.e.
//! until a failure arrives after all earlier failures of that key have left the window. A
//! `concurrent_sessions` alert fires once when the limit is exceeded and again only after the
//! user's sessions dropped back to the limit. A successful login does not clear failures.
//!
//! # Configuration
//!
//! Unknown keys are errors; every error names its key.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_failures` | 5 | failures per user or address that make a brute-force attempt (1 to 10,000) |
//! | `failure_window_secs` | 300 | the sliding window for `max_failures` (≥ 1) |
//! | `max_sessions` | 3 | active sessions allowed per user (1 to 10,000) |
//! | `alert_new_address` | `true` | whether to alert on logins from new addresses |
//! | `case_insensitive_users` | `true` | whether user ids differing only in case are one user |
//! | `max_prefix_failures` | 20 | failures from one network, across users, that make a spraying attempt (1 to 10,000) |
//! | `prefix_window_secs` | 3600 | the sliding window for `max_prefix_failures` (≥ 1); long, because spraying is slow on purpose |
//! | `max_tracked` | 100000 | users, addresses and networks each kept at most (1 to 100,000,000) |
//!
//! # Delivery failures
//!
//! If the host refuses an alert because the bus stayed full (a transient refusal), `handle`
//! returns a retryable error; when the host retries the same event, the plugin does not count
//! it twice but only publishes the alerts still pending. Any other refusal (closed, forbidden,
//! invalid) fails the delivery for good; the alerts still pending are dropped, with a warning,
//! when the next event arrives.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod address;
mod keys;
mod lru;
mod state;

use address::Addr;
use keys::Keys;
use lru::Lru;
use plugbus_plugin_api::contract::payload::{
    SecurityAlert, Severity, UserLogin, UserLoginFailed, UserLogout,
};
use plugbus_plugin_api::contract::types;
use plugbus_plugin_api::{
    export_plugin, parse_config, ConfigSchema, DescribeConfig, Event, HostHandle, Plugin,
    PluginError, Reconfigure, Subscription,
};
use serde::{Deserialize, Serialize};
use state::{FailureWindow, UserState};
use std::fmt;

/// The plugin's name.
pub const NAME: &str = "auth-enhancer";

/// Addresses remembered per user for `new_address`; the oldest is forgotten beyond this.
pub const MAX_KNOWN_ADDRESSES: usize = 64;
/// Sessions tracked per user are `max(4 × max_sessions, MIN_TRACKED_SESSIONS)`; the oldest is
/// forgotten beyond that (a logout may have been lost).
pub const MIN_TRACKED_SESSIONS: usize = 64;
/// The largest `max_failures`, `max_prefix_failures` and `max_sessions`: each step of each costs
/// up to 8 bytes (16 for networks) per tracked key.
pub const MAX_THRESHOLD: u32 = 10_000;
/// The largest `max_tracked`.
pub const MAX_TRACKED_LIMIT: u32 = 100_000_000;

/// How much of a user id or unparsable address alerts and logs repeat: the rest of a huge value
/// is noise, and an alert should stay small.
const MAX_SHOWN_BYTES: usize = 256;
/// Distinct unparsable addresses warned about one by one before the plugin only counts them.
const UNPARSABLE_WARNINGS: usize = 16;

/// Users the background sweep looks at per event (see [`AuthEnhancer::prune`]).
const SWEEP_STEPS: usize = 4;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The plugin's configuration (see the crate docs); its schema, derived here, is what
/// `plugbus plugins inspect` shows and the host checks the table against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ConfigSchema)]
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
    /// Whether user ids that differ only in case are the same user.
    pub case_insensitive_users: bool,
    /// Failures from one network, across users, that make a spraying attempt.
    pub max_prefix_failures: u32,
    /// The sliding window for network failures, in seconds.
    pub prefix_window_secs: u64,
    /// Users, addresses and networks each kept at most.
    pub max_tracked: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_failures: 5,
            failure_window_secs: 300,
            max_sessions: 3,
            alert_new_address: true,
            case_insensitive_users: true,
            max_prefix_failures: 20,
            prefix_window_secs: 3600,
            max_tracked: 100_000,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        let bad = |key: &str, why: &dyn fmt::Display| {
            Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{NAME}': key '{key}': {why}"
            )))
        };
        for (key, value) in [
            ("max_failures", self.max_failures),
            ("max_prefix_failures", self.max_prefix_failures),
            ("max_sessions", self.max_sessions),
        ] {
            if value == 0 {
                return bad(key, &"must be at least 1");
            }
            if value > MAX_THRESHOLD {
                return bad(key, &format_args!("must be at most {MAX_THRESHOLD}"));
            }
        }
        for (key, secs) in [
            ("failure_window_secs", self.failure_window_secs),
            ("prefix_window_secs", self.prefix_window_secs),
        ] {
            if secs == 0 {
                return bad(key, &"must be at least 1");
            }
            if window_nanos(secs).is_none() {
                return bad(key, &"is too large");
            }
        }
        if self.max_tracked == 0 {
            return bad("max_tracked", &"must be at least 1");
        }
        if self.max_tracked > MAX_TRACKED_LIMIT {
            return bad(
                "max_tracked",
                &format_args!("must be at most {MAX_TRACKED_LIMIT}"),
            );
        }
        Ok(())
    }

    /// Sessions kept per user: room for several times the allowed number, so the alert sees a
    /// real excess, while lost logouts cannot grow the list without end.
    fn session_cap(&self) -> usize {
        usize::try_from(self.max_sessions)
            .unwrap_or(usize::MAX)
            .saturating_mul(4)
            .max(MIN_TRACKED_SESSIONS)
    }

    fn max_tracked(&self) -> usize {
        usize::try_from(self.max_tracked).unwrap_or(lru::MAX_CAPACITY)
    }
}

fn window_nanos(secs: u64) -> Option<i64> {
    i64::try_from(secs).ok()?.checked_mul(NANOS_PER_SEC)
}

/// Counters and sizes of the plugin's state, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Users tracked now.
    pub users: usize,
    /// Addresses tracked now (those with recent failures).
    pub addresses: usize,
    /// Networks tracked now (those with recent failures).
    pub prefixes: usize,
    /// Users forgotten because the user table was full.
    pub evicted_users: u64,
    /// Addresses forgotten because the address table was full.
    pub evicted_addresses: u64,
    /// Networks forgotten because the network table was full.
    pub evicted_prefixes: u64,
    /// Events whose address was not an IP address.
    pub unparsable_addresses: u64,
    /// Events answered with [`PluginError::InvalidEvent`].
    pub invalid_events: u64,
    /// Bytes the state holds: tables plus what their entries own, not counting allocator
    /// overhead.
    pub state_bytes: usize,
}

/// Unparsable addresses: counted always, warned about a bounded number of times.
#[derive(Debug, Default)]
struct Unparsable {
    seen: u64,
    /// Keys of the values already warned about.
    warned: Vec<u64>,
    /// The "no more warnings" notice was given.
    quiet: bool,
}

impl Unparsable {
    fn note(&mut self, key: u64, text: &str) {
        self.seen += 1;
        if self.quiet || self.warned.contains(&key) {
            return;
        }
        if self.warned.len() < UNPARSABLE_WARNINGS {
            self.warned.push(key);
            tracing::warn!(
                address = ?clip(text, 64),
                "client address is not an IP address; counted as an address of its own"
            );
        } else {
            self.quiet = true;
            tracing::warn!(
                distinct = UNPARSABLE_WARNINGS,
                "more client addresses are not IP addresses; counting them without a warning each"
            );
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An address as alerts show it.
fn shown(addr: &Addr<'_>) -> String {
    match addr {
        Addr::Ip(ip) => ip.to_string(),
        Addr::Other(s) => clip(s, MAX_SHOWN_BYTES).to_owned(),
    }
}

fn invalid(event: &Event<'_>, what: &str) -> PluginError {
    PluginError::invalid_event(format_args!(
        "'{}' event {} {what}",
        event.event_type(),
        event.id_string()
    ))
}

/// The auth enhancer plugin.
pub struct AuthEnhancer {
    host: HostHandle,
    config: Config,
    window: i64,
    prefix_window: i64,
    session_cap: usize,
    keys: Keys,
    users: Lru<UserState>,
    addresses: Lru<FailureWindow<1>>,
    /// Records are (time, user key): the user keys give the distinct-user count.
    prefixes: Lru<FailureWindow<2>>,
    /// The newest event time seen: the plugin's clock for dropping expired state.
    now: i64,
    /// Where the background sweep of the user table continues.
    sweep_cursor: usize,
    unparsable: Unparsable,
    /// Which tables have had their first eviction logged (bits: users, addresses, prefixes).
    eviction_logged: u8,
    invalid_events: u64,
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
            .field("stats", &self.stats())
            .field("handled", &self.handled)
            .field("alerts", &self.alerts)
            .finish_non_exhaustive()
    }
}

impl AuthEnhancer {
    /// The number of active sessions tracked for `user` (normalized as event user ids are).
    pub fn active_sessions(&self, user: &str) -> usize {
        self.users
            .peek(self.keys.user(user.trim()))
            .map_or(0, UserState::session_count)
    }

    /// The state's counters and sizes.
    pub fn stats(&self) -> Stats {
        let state_bytes = self.users.table_bytes()
            + self.addresses.table_bytes()
            + self.prefixes.table_bytes()
            + self
                .users
                .values()
                .map(UserState::heap_bytes)
                .sum::<usize>()
            + self
                .addresses
                .values()
                .map(FailureWindow::heap_bytes)
                .sum::<usize>()
            + self
                .prefixes
                .values()
                .map(FailureWindow::heap_bytes)
                .sum::<usize>();
        Stats {
            users: self.users.len(),
            addresses: self.addresses.len(),
            prefixes: self.prefixes.len(),
            evicted_users: self.users.evicted(),
            evicted_addresses: self.addresses.evicted(),
            evicted_prefixes: self.prefixes.evicted(),
            unparsable_addresses: self.unparsable.seen,
            invalid_events: self.invalid_events,
            state_bytes,
        }
    }

    fn on_login(&mut self, event: &Event<'_>) -> Result<(), PluginError> {
        let login: UserLogin = event.data()?;
        let user = login.user_id.trim();
        if user.is_empty() {
            return Err(invalid(event, "has an empty user_id"));
        }
        self.advance(event.timestamp_unix_nanos());
        let trigger = event.id_string();
        let user_key = self.keys.user(user);
        let addr = Addr::parse(&login.ip);
        let addr_key = addr.map(|a| self.keys.addr(&a));
        if let (Some(Addr::Other(text)), Some(key)) = (addr, addr_key) {
            self.unparsable.note(key, text);
        }
        let shown_ip = addr.as_ref().map(shown).unwrap_or_default();
        let shown_user = clip(user, MAX_SHOWN_BYTES);
        let session_key = if login.session_id.is_empty() {
            // Without a session id, the login event itself names the session.
            self.keys.session(&trigger)
        } else {
            self.keys.session(&login.session_id)
        };

        let state = self.users.get_or_insert_with(user_key, UserState::default);
        if let Some(key) = addr_key {
            if !state.knows_address(key) {
                let known = state.address_count();
                if self.config.alert_new_address && known > 0 {
                    self.pending.push(SecurityAlert {
                        reason: "new_address".into(),
                        severity: Severity::Medium,
                        user_id: shown_user.to_owned(),
                        ip: shown_ip.clone(),
                        message: format!(
                            "user '{shown_user}' logged in from an address not seen before for this user"
                        ),
                        count: u32::try_from(known + 1).unwrap_or(u32::MAX),
                        window_secs: 0,
                        trigger_event_id: trigger.clone(),
                    });
                }
                state.learn_address(key, MAX_KNOWN_ADDRESSES);
            }
        }
        if !state.has_session(session_key) {
            state.add_session(session_key, self.session_cap);
        }
        let active = state.session_count();
        let limit = usize::try_from(self.config.max_sessions).unwrap_or(usize::MAX);
        if active > limit && !state.over_limit {
            state.over_limit = true;
            self.pending.push(SecurityAlert {
                reason: "concurrent_sessions".into(),
                severity: Severity::Medium,
                user_id: shown_user.to_owned(),
                ip: shown_ip,
                message: format!(
                    "user '{shown_user}' has {active} active sessions (limit {limit})"
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
        let user = logout.user_id.trim();
        if user.is_empty() {
            return Err(invalid(event, "has an empty user_id"));
        }
        self.advance(event.timestamp_unix_nanos());
        let user_key = self.keys.user(user);
        let session_key =
            (!logout.session_id.is_empty()).then(|| self.keys.session(&logout.session_id));
        let Some(state) = self.users.get_mut(user_key) else {
            return Ok(());
        };
        match session_key {
            Some(key) => {
                state.end_session(key);
            }
            // No session named: end the oldest one.
            None => state.end_oldest_session(),
        }
        let limit = usize::try_from(self.config.max_sessions).unwrap_or(usize::MAX);
        if state.session_count() <= limit {
            state.over_limit = false;
        }
        Ok(())
    }

    fn on_failure(&mut self, event: &Event<'_>) -> Result<(), PluginError> {
        let failed: UserLoginFailed = event.data()?;
        let user = failed.user_id.trim();
        let addr = Addr::parse(&failed.ip);
        if user.is_empty() && addr.is_none() {
            return Err(invalid(event, "has neither a user_id nor an ip"));
        }
        let t = event.timestamp_unix_nanos();
        self.advance(t);
        let trigger = event.id_string();
        let threshold = self.config.max_failures;
        let window_secs = self.config.failure_window_secs;
        let shown_user = clip(user, MAX_SHOWN_BYTES);
        let shown_ip = addr.as_ref().map(shown).unwrap_or_default();
        let user_key = (!user.is_empty()).then(|| self.keys.user(user));

        if let Some(key) = user_key {
            let state = self.users.get_or_insert_with(key, UserState::default);
            if let Some(count) = state.record_failure(t, self.window, threshold) {
                self.pending.push(SecurityAlert {
                    reason: "brute_force_user".into(),
                    severity: Severity::High,
                    user_id: shown_user.to_owned(),
                    ip: shown_ip.clone(),
                    message: format!(
                        "{count} failed logins for user '{shown_user}' within {window_secs} s"
                    ),
                    count,
                    window_secs,
                    trigger_event_id: trigger.clone(),
                });
            }
        }
        let Some(addr) = addr else {
            return Ok(());
        };
        let addr_key = self.keys.addr(&addr);
        if let Addr::Other(text) = addr {
            self.unparsable.note(addr_key, text);
        }
        let window = self
            .addresses
            .get_or_insert_with(addr_key, FailureWindow::default);
        if let Some(count) = window.record([t], self.window, threshold) {
            self.pending.push(SecurityAlert {
                reason: "brute_force_ip".into(),
                severity: Severity::High,
                user_id: shown_user.to_owned(),
                ip: shown_ip.clone(),
                message: format!(
                    "{count} failed logins from address {shown_ip} within {window_secs} s"
                ),
                count,
                window_secs,
                trigger_event_id: trigger.clone(),
            });
        }
        if let Some(prefix) = addr.prefix() {
            let key = self.keys.prefix(&prefix);
            let window = self
                .prefixes
                .get_or_insert_with(key, FailureWindow::default);
            let record = [t, state::bits(user_key.unwrap_or(0))];
            if let Some(count) =
                window.record(record, self.prefix_window, self.config.max_prefix_failures)
            {
                let users = window.distinct_second();
                let window_secs = self.config.prefix_window_secs;
                self.pending.push(SecurityAlert {
                    reason: "password_spraying".into(),
                    severity: Severity::High,
                    user_id: String::new(),
                    ip: prefix.to_string(),
                    message: format!(
                        "{count} failed logins for {users} different users from network {prefix} within {window_secs} s"
                    ),
                    count,
                    window_secs,
                    trigger_event_id: trigger,
                });
            }
        }
        Ok(())
    }

    /// Moves the plugin's clock to event time `t` (never backwards).
    fn advance(&mut self, t: i64) {
        self.now = self.now.max(t);
    }

    /// Drops state whose failures have all left their window and that holds nothing else.
    ///
    /// The least recently seen entries are looked at, oldest first, stopping at the first one
    /// still needed: each entry is dropped once, so this costs O(1) per event on average,
    /// instead of a periodic scan of every table. Addresses and networks are only seen when
    /// they fail, so their least recently seen entry is also the one that expires first. Users
    /// are also swept [`SWEEP_STEPS`] entries per event.
    fn prune(&mut self) {
        let cutoff = self.now.saturating_sub(self.window);
        while self
            .addresses
            .peek_oldest()
            .is_some_and(|w| w.newest() <= cutoff)
        {
            self.addresses.remove_oldest();
        }
        let prefix_cutoff = self.now.saturating_sub(self.prefix_window);
        while self
            .prefixes
            .peek_oldest()
            .is_some_and(|w| w.newest() <= prefix_cutoff)
        {
            self.prefixes.remove_oldest();
        }
        while self.users.peek_oldest().is_some_and(|u| u.is_idle(cutoff)) {
            self.users.remove_oldest();
        }
        // A user with sessions or known addresses stays, and if it is the least recently seen
        // it holds up the loop above; the sweep finds idle users behind it and trims expired
        // failure times of the others.
        self.users.sweep(&mut self.sweep_cursor, SWEEP_STEPS, |u| {
            u.forget_failures_through(cutoff);
            !u.is_idle(cutoff)
        });
    }

    /// Logs the first eviction of each table: from then on the table is full and old entries
    /// are being forgotten, which an operator should know about.
    fn log_first_evictions(&mut self) {
        for (bit, table, evicted) in [
            (1, "users", self.users.evicted()),
            (2, "addresses", self.addresses.evicted()),
            (4, "networks", self.prefixes.evicted()),
        ] {
            if evicted > 0 && self.eviction_logged & bit == 0 {
                self.eviction_logged |= bit;
                tracing::warn!(
                    table,
                    max_tracked = self.config.max_tracked,
                    "state table full; forgetting the least recently seen entries from now on"
                );
            }
        }
    }

    fn publish_pending(&mut self) -> Result<(), PluginError> {
        while let Some(alert) = self.pending.first() {
            if let Err(e) = self.host.publish(alert) {
                tracing::warn!(reason = %alert.reason, error = %e, "security alert refused by host");
                // A full bus may take the alert later: ask for the event again (the retry
                // publishes only what is pending). Anything else is final.
                return Err(if e.is_transient() {
                    PluginError::retryable(e)
                } else {
                    e.into()
                });
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
        "session tracking, brute-force, password-spraying, new-address and concurrent-session alerts";

    fn config_schema() -> Option<ConfigSchema> {
        Some(Config::config_schema())
    }

    fn new(host: HostHandle, config: serde_json::Value) -> Result<Self, PluginError> {
        let config: Config = parse_config(NAME, config)?;
        config.validate()?;
        let tracked = config.max_tracked();
        Ok(AuthEnhancer {
            host,
            window: window_nanos(config.failure_window_secs).unwrap_or(i64::MAX),
            prefix_window: window_nanos(config.prefix_window_secs).unwrap_or(i64::MAX),
            session_cap: config.session_cap(),
            keys: Keys::new(config.case_insensitive_users),
            users: Lru::new(tracked),
            addresses: Lru::new(tracked),
            prefixes: Lru::new(tracked),
            now: i64::MIN,
            sweep_cursor: 0,
            unparsable: Unparsable::default(),
            eviction_logged: 0,
            invalid_events: 0,
            config,
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

    /// Thresholds, windows and the new-address switch change in place, the state kept (a
    /// shorter window applies to the failures already counted). The session cap, the case
    /// rule and the table sizes shape the tables themselves: changing them reloads the plugin.
    fn reconfigure(&mut self, config: serde_json::Value) -> Result<Reconfigure, PluginError> {
        let config: Config = parse_config(NAME, config)?;
        config.validate()?;
        let reshapes = config.max_sessions != self.config.max_sessions
            || config.case_insensitive_users != self.config.case_insensitive_users
            || config.max_tracked != self.config.max_tracked;
        if reshapes {
            return Ok(Reconfigure::Reload);
        }
        self.window = window_nanos(config.failure_window_secs).unwrap_or(i64::MAX);
        self.prefix_window = window_nanos(config.prefix_window_secs).unwrap_or(i64::MAX);
        tracing::info!(
            max_failures = config.max_failures,
            failure_window_secs = config.failure_window_secs,
            alert_new_address = config.alert_new_address,
            max_prefix_failures = config.max_prefix_failures,
            prefix_window_secs = config.prefix_window_secs,
            "auth enhancer reconfigured"
        );
        self.config = config;
        Ok(Reconfigure::Applied)
    }

    fn start(&mut self) -> Result<(), PluginError> {
        tracing::info!(
            max_failures = self.config.max_failures,
            failure_window_secs = self.config.failure_window_secs,
            max_sessions = self.config.max_sessions,
            alert_new_address = self.config.alert_new_address,
            case_insensitive_users = self.config.case_insensitive_users,
            max_prefix_failures = self.config.max_prefix_failures,
            prefix_window_secs = self.config.prefix_window_secs,
            max_tracked = self.config.max_tracked,
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
            let handled = match event.event_type() {
                types::USER_LOGIN => self.on_login(event),
                types::USER_LOGIN_FAILED => self.on_failure(event),
                types::USER_LOGOUT => self.on_logout(event),
                _ => Err(invalid(event, "is not a type this plugin subscribes to")),
            };
            if let Err(e) = handled {
                if matches!(e, PluginError::InvalidEvent(_)) {
                    self.invalid_events += 1;
                }
                return Err(e);
            }
            self.log_first_evictions();
            self.prune();
        }
        self.publish_pending()
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        let stats = self.stats();
        tracing::info!(
            handled = self.handled,
            alerts = self.alerts,
            users = stats.users,
            addresses = stats.addresses,
            prefixes = stats.prefixes,
            evicted_users = stats.evicted_users,
            evicted_addresses = stats.evicted_addresses,
            evicted_prefixes = stats.evicted_prefixes,
            unparsable_addresses = stats.unparsable_addresses,
            invalid_events = stats.invalid_events,
            state_bytes = stats.state_bytes,
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
    fn thresholds_change_in_place_and_table_shapes_ask_for_a_reload() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({}));
        send(&mut p, &failed("gina", "", T0));
        // Down from 5 to 2: the failure already counted is kept, the second raises the alert.
        let applied = p.reconfigure(json!({"max_failures": 2})).unwrap();
        assert_eq!(applied, Reconfigure::Applied);
        send(&mut p, &failed("gina", "", T0 + 1));
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.reason, "brute_force_user");
        assert_eq!(got[0].0.count, 2);
        assert!(host
            .logs()
            .iter()
            .any(|l| l.message == "auth enhancer reconfigured"
                && l.field("max_failures") == Some("2")));
        // The case rule and the table sizes shape the state: a reload.
        for table in [
            json!({"max_failures": 2, "case_insensitive_users": false}),
            json!({"max_failures": 2, "max_tracked": 10}),
            json!({"max_failures": 2, "max_sessions": 9}),
        ] {
            assert_eq!(p.reconfigure(table).unwrap(), Reconfigure::Reload);
        }
        // A table the schema refuses never reaches the plugin; one it refuses itself keeps
        // the old thresholds.
        let err = p.reconfigure(json!({"max_failures": "two"})).unwrap_err();
        assert!(
            err.message()
                .contains("key 'max_failures': expected an integer"),
            "{err}"
        );
        let err = p.reconfigure(json!({"max_failures": 0})).unwrap_err();
        assert!(
            err.message()
                .contains("key 'max_failures': must be at least 1"),
            "{err}"
        );
        send(&mut p, &failed("hank", "", T0 + 2));
        send(&mut p, &failed("hank", "", T0 + 3));
        assert_eq!(alerts(&host).len(), 1, "still 2 failures make an alert");
    }

    #[test]
    fn the_schema_names_every_key_with_its_default() {
        let schema = AuthEnhancer::config_schema().unwrap();
        let names: Vec<&str> = schema.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "max_failures",
                "failure_window_secs",
                "max_sessions",
                "alert_new_address",
                "case_insensitive_users",
                "max_prefix_failures",
                "prefix_window_secs",
                "max_tracked"
            ]
        );
        assert!(schema.deny_unknown);
        assert_eq!(schema.keys[0].default, Some(json!(5)));
        assert!(schema
            .keys
            .iter()
            .all(|k| !k.help.is_empty() && !k.required));
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
            (json!({"max_failures": 10_001}), "max_failures"),
            (json!({"max_sessions": 10_001}), "max_sessions"),
            (
                json!({"case_insensitive_users": 1}),
                "case_insensitive_users",
            ),
            (
                json!({"case_insensitive_user": true}),
                "case_insensitive_user",
            ),
            (json!({"max_prefix_failures": 0}), "max_prefix_failures"),
            (
                json!({"max_prefix_failures": 10_001}),
                "max_prefix_failures",
            ),
            (json!({"max_prefix_failures": "20"}), "max_prefix_failures"),
            (json!({"prefix_window_secs": 0}), "prefix_window_secs"),
            (
                json!({"prefix_window_secs": u64::MAX}),
                "prefix_window_secs",
            ),
            (json!({"prefix_window_secs": -5}), "prefix_window_secs"),
            (json!({"max_tracked": 0}), "max_tracked"),
            (json!({"max_tracked": 100_000_001}), "max_tracked"),
            (json!({"max_tracked": 1.5}), "max_tracked"),
            (json!({"max_tracked_users": 10}), "max_tracked_users"),
        ] {
            let err = host.load::<AuthEnhancer>(config.clone()).unwrap_err();
            assert!(matches!(err, PluginError::Config(_)), "{config}: {err}");
            assert!(
                err.message().contains(&format!("'{key}'")),
                "{config}: {err}"
            );
        }
        let err = host
            .load::<AuthEnhancer>(json!({"max_tracked": 0}))
            .unwrap_err();
        assert!(err.message().contains("at least 1"), "{err}");
        let err = host
            .load::<AuthEnhancer>(json!({"max_prefix_failures": 20_000}))
            .unwrap_err();
        assert!(err.message().contains("at most 10000"), "{err}");
        host.load::<AuthEnhancer>(json!({
            "max_failures": 10_000,
            "max_sessions": 10_000,
            "max_prefix_failures": 1,
            "prefix_window_secs": 1,
            "max_tracked": 100_000_000,
            "case_insensitive_users": false,
        }))
        .unwrap();
        let p = host.load::<AuthEnhancer>(json!({})).unwrap();
        assert_eq!(p.info().name.as_str(), NAME);
        let sub = &p.subscriptions()[0];
        assert_eq!(sub.event_types.len(), 3);
    }

    #[test]
    fn debug_output_has_no_user_data() {
        let mut plugin = direct(json!({}));
        feed(&mut plugin, &login("grace", "192.0.2.44", "sess-secret-1")).unwrap();
        assert_eq!(plugin.active_sessions("grace"), 1);
        let dbg = format!("{plugin:?}");
        for leaked in ["grace", "192.0.2.44", "sess-secret-1"] {
            assert!(!dbg.contains(leaked), "{dbg}");
        }
    }

    /// A host that takes every publish and drops every log line.
    struct NullHost;

    impl plugbus_plugin_api::AbiHost for NullHost {
        fn publish(
            &self,
            _: plugbus_plugin_api::OwnedEvent,
        ) -> plugbus_plugin_api::abi_stable::std_types::RResult<
            (),
            plugbus_plugin_api::PublishRefusal,
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

    /// The plugin itself rather than through the ABI, to read [`AuthEnhancer::stats`]; its
    /// alerts go nowhere.
    fn direct(config: serde_json::Value) -> AuthEnhancer {
        let host = HostHandle::new(plugbus_plugin_api::host_box(NullHost));
        AuthEnhancer::new(host, config).unwrap()
    }

    fn feed(p: &mut AuthEnhancer, ev: &TestEvent) -> Result<(), PluginError> {
        ev.with_view(|v| p.handle(0, &Event::new(v)))
    }

    fn raw(event_type: &str, payload: &str) -> TestEvent {
        TestEvent::new(event_type, Category::Business, payload).at_unix_secs(T0)
    }

    fn is_invalid(r: &Result<(), PluginError>) -> bool {
        matches!(r, Err(PluginError::InvalidEvent(_)))
    }

    fn stopped_field(host: &FakeHost, key: &str) -> Option<String> {
        host.logs()
            .iter()
            .rev()
            .find(|l| l.message == "auth enhancer stopped")
            .and_then(|l| l.field(key).map(str::to_owned))
    }

    /// Sends one failure per spelling, each for a different user, and returns the alerts.
    fn failures_from(spellings: &[&str]) -> Vec<SecurityAlert> {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": spellings.len()}));
        for (i, ip) in spellings.iter().enumerate() {
            let secs = T0 + i64::try_from(i).unwrap();
            send(&mut p, &failed(&format!("user{i}"), ip, secs));
        }
        alerts(&host).into_iter().map(|(a, _)| a).collect()
    }

    #[test]
    fn spellings_of_one_ipv4_address_count_as_one_address() {
        let got = failures_from(&[
            "10.0.0.9",
            "010.0.0.9",
            " 10.0.0.9 ",
            "::ffff:10.0.0.9",
            "::FFFF:10.0.0.9",
            "010.000.000.009",
        ]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].reason, "brute_force_ip");
        assert_eq!(got[0].ip, "10.0.0.9");
        assert_eq!(got[0].count, 6);
        assert_eq!(got[0].user_id, "user5");
    }

    #[test]
    fn spellings_of_one_ipv6_address_count_as_one_address() {
        let got = failures_from(&[
            "2001:DB8::1",
            "2001:db8::1",
            "2001:0db8:0000::1",
            " 2001:0DB8:0:0:0:0:0:0001\t",
            "[2001:db8::1]:443",
        ]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].reason, "brute_force_ip");
        assert_eq!(got[0].ip, "2001:db8::1");
        assert_eq!(got[0].count, 5);
    }

    #[test]
    fn user_ids_are_trimmed_and_case_folded() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": 5}));
        // Addresses in different networks: only the user counter can reach 5.
        let spellings = ["Alice", " alice ", "ALICE", "alice\t", " aLiCe"];
        for (i, user) in spellings.iter().enumerate() {
            let n = i64::try_from(i).unwrap();
            send(&mut p, &failed(user, &format!("10.{i}.0.1"), T0 + n));
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.reason, "brute_force_user");
        assert_eq!(got[0].0.user_id, "aLiCe", "the trigger's spelling, trimmed");
        assert_eq!(got[0].0.count, 5);

        // Sessions follow the same user whatever the spelling.
        let mut d = direct(json!({}));
        feed(&mut d, &login("Alice", "10.0.0.1", "s1")).unwrap();
        feed(&mut d, &login(" alice ", "10.0.0.1", "s2")).unwrap();
        assert_eq!(d.active_sessions("ALICE"), 2);
        feed(&mut d, &logout("alice", "s1")).unwrap();
        assert_eq!(d.active_sessions(" Alice"), 1);
        assert_eq!(d.stats().users, 1);

        // Case-sensitive on request; still trimmed.
        let host = FakeHost::new();
        let mut p = load(
            &host,
            json!({"max_failures": 3, "case_insensitive_users": false}),
        );
        for (i, user) in ["Alice", "alice", " Alice ", "alice"].iter().enumerate() {
            let n = i64::try_from(i).unwrap();
            send(&mut p, &failed(user, &format!("10.{i}.0.1"), T0 + n));
        }
        assert!(alerts(&host).is_empty());
        send(&mut p, &failed("Alice\n", "10.9.0.1", T0 + 9));
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.user_id, "Alice");
    }

    #[test]
    fn malformed_failures_are_invalid_events_and_hide_nothing() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({}));
        let malformed = [
            "not json",
            "",
            "null",
            "[]",
            r#"{"ip":"10.0.0.9"}"#,
            r#"{"user_id":42,"ip":"10.0.0.9"}"#,
            r#"{"user_id":"mallory","ip":"10.0.0.9""#,
            r#"{"user_id":"mallory","ip":["10.0.0.9"]}"#,
            r#"{"user_id":"mallory","ip":"10.0.0.9","reason":{"x":1}}"#,
            r#"{"user_id":"  ","ip":" "}"#,
        ];
        for (i, payload) in malformed.iter().enumerate() {
            let ev = raw("user.login_failed", payload).at_unix_secs(T0 + 1);
            let results = p.deliver(&ev);
            assert_eq!(results.len(), 1);
            assert!(is_invalid(&results[0].1), "{i}: {payload}: {results:?}");
        }
        assert!(alerts(&host).is_empty());
        // Real failures in between and after still add up to the alerts.
        let mut last = None;
        for i in 0..5 {
            let ev = failed("mallory", "10.0.0.9", T0 + 2 + i);
            send(&mut p, &ev);
            let results = p.deliver(&raw("user.login_failed", "{").at_unix_secs(T0 + 2));
            assert!(is_invalid(&results[0].1));
            last = Some(ev);
        }
        let got = alerts(&host);
        let reasons: Vec<&str> = got.iter().map(|(a, _)| a.reason.as_str()).collect();
        assert_eq!(reasons, ["brute_force_user", "brute_force_ip"]);
        assert_eq!(got[0].0.trigger_event_id, last.unwrap().id_string());
        p.stop().unwrap();
        assert_eq!(
            stopped_field(&host, "invalid_events").as_deref(),
            Some("15")
        );
    }

    #[test]
    fn every_decode_path_answers_malformed_payloads_with_invalid_event() {
        let mut p = direct(json!({}));
        let common = [
            "{",
            "{}",
            "7",
            "\u{0}\u{ff}",
            r#"{"user_id":null}"#,
            r#"{"user_id":"   "}"#,
        ];
        for (event_type, own) in [
            (
                "user.login",
                &[
                    r#"{"user_id":"a","session_id":5}"#,
                    r#"{"user_id":"a","ip":5}"#,
                    r#"{"user_id":"a","method":false}"#,
                ],
            ),
            (
                "user.logout",
                &[
                    r#"{"user_id":"a","session_id":5}"#,
                    r#"{"user_id":["a"]}"#,
                    r#"{"user_id":"a","reason":false}"#,
                ],
            ),
            (
                "user.login_failed",
                &[
                    r#"{"user_id":"a","ip":5}"#,
                    r#"{"user_id":"a","user_agent":[]}"#,
                    r#"{"user_id":"a","reason":false}"#,
                ],
            ),
        ] {
            for payload in common.iter().chain(own) {
                let r = feed(&mut p, &raw(event_type, payload));
                assert!(is_invalid(&r), "{event_type} {payload:?}: {r:?}");
            }
        }
        // A type the plugin did not subscribe to.
        let r = feed(
            &mut p,
            &raw("data.created", r#"{"entity":"x","entity_id":"1"}"#),
        );
        assert!(is_invalid(&r), "{r:?}");
        let stats = p.stats();
        assert_eq!(stats.invalid_events, 28);
        assert_eq!((stats.users, stats.addresses, stats.prefixes), (0, 0, 0));
        // Not malformed: a failure with only an address, or only a user.
        feed(
            &mut p,
            &raw("user.login_failed", r#"{"user_id":"","ip":"10.0.0.1"}"#),
        )
        .unwrap();
        feed(&mut p, &raw("user.login_failed", r#"{"user_id":"bob"}"#)).unwrap();
        assert_eq!((p.stats().users, p.stats().addresses), (1, 1));
    }

    #[test]
    fn password_spraying_from_one_network_across_users() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({}));
        let mut twentieth = None;
        // Low and slow: one attempt a minute, each user and each address once.
        for i in 1..=30 {
            let ev = failed(&format!("user{i}"), &format!("10.0.0.{i}"), T0 + 60 * i);
            send(&mut p, &ev);
            if i == 20 {
                twentieth = Some(ev);
            }
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        let (alert, published) = &got[0];
        let twentieth = twentieth.unwrap();
        assert_eq!(alert.reason, "password_spraying");
        assert_eq!(alert.severity, Severity::High);
        assert_eq!(alert.ip, "10.0.0.0/24");
        assert_eq!((alert.count, alert.window_secs), (20, 3600));
        assert!(
            alert.message.contains("20 different users"),
            "{}",
            alert.message
        );
        assert_eq!(alert.trigger_event_id, twentieth.id_string());
        assert_eq!(published.caused_by, Some(twentieth.id));

        // Another /24 is another network.
        for i in 1..=19 {
            send(
                &mut p,
                &failed(&format!("v{i}"), &format!("10.0.1.{i}"), T0 + 2000 + i),
            );
        }
        assert!(alerts(&host).is_empty());
        // IPv6: one /64, however the addresses inside it vary.
        for i in 1..=20 {
            let ip = format!("2001:db8:0:7:{i:x}::{i:x}");
            send(&mut p, &failed(&format!("w{i}"), &ip, T0 + 3000 + i));
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.ip, "2001:db8:0:7::/64");
        // Fewer distinct users than failures: the message says so.
        for i in 0..20 {
            send(
                &mut p,
                &failed(["x", "y"][i % 2], &format!("192.0.2.{i}"), T0 + 4000),
            );
        }
        let got = alerts(&host);
        let spraying: Vec<_> = got
            .iter()
            .filter(|(a, _)| a.reason == "password_spraying")
            .collect();
        assert_eq!(spraying.len(), 1, "{got:?}");
        assert!(
            spraying[0].0.message.contains("2 different users"),
            "{}",
            spraying[0].0.message
        );
    }

    #[test]
    fn the_network_window_has_its_own_length() {
        let host = FakeHost::new();
        let mut p = load(
            &host,
            json!({"max_prefix_failures": 3, "prefix_window_secs": 600}),
        );
        send(&mut p, &failed("a", "198.51.100.1", T0));
        send(&mut p, &failed("b", "198.51.100.2", T0 + 300));
        // The first has left the 600 s window.
        send(&mut p, &failed("c", "198.51.100.3", T0 + 700));
        assert!(alerts(&host).is_empty());
        send(&mut p, &failed("d", "198.51.100.4", T0 + 800));
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0.count, got[0].0.window_secs), (3, 600));
    }

    #[test]
    fn eviction_at_max_tracked_keeps_state_bounded_and_is_counted() {
        let mut p = direct(json!({"max_tracked": 100}));
        feed(&mut p, &login("keeper", "192.0.2.1", "k")).unwrap();
        let mut bytes_when_full = 0;
        for i in 0..1000 {
            let user = format!("user{i}");
            let ip = format!("10.{}.{}.1", i / 256, i % 256);
            feed(&mut p, &login(&user, &ip, "s")).unwrap();
            feed(&mut p, &failed(&user, &ip, T0)).unwrap();
            if i % 10 == 0 {
                // Seen often: never the least recently seen.
                feed(&mut p, &login("keeper", "192.0.2.1", "k")).unwrap();
            }
            if i == 99 {
                bytes_when_full = p.stats().state_bytes;
            }
        }
        let stats = p.stats();
        assert_eq!(
            (stats.users, stats.addresses, stats.prefixes),
            (100, 100, 100)
        );
        assert_eq!(stats.evicted_users, 1001 - 100);
        assert_eq!(stats.evicted_addresses, 1000 - 100);
        assert_eq!(stats.evicted_prefixes, 1000 - 100);
        assert_eq!(p.active_sessions("keeper"), 1);
        assert_eq!(p.active_sessions("user999"), 1);
        assert_eq!(p.active_sessions("user0"), 0, "evicted long ago");
        // Churn may double the index once (hashbrown grows when deleted buckets pile up),
        // but no further.
        assert!(
            stats.state_bytes <= 2 * bytes_when_full,
            "{} > 2 x {bytes_when_full}",
            stats.state_bytes
        );
        assert!(stats.state_bytes < 32 * 1024, "{stats:?}");

        // Through the host: counted in the stop line, the first eviction warned about once.
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_tracked": 2}));
        for user in ["a", "b", "c", "d"] {
            send(&mut p, &login(user, "", "s"));
        }
        p.stop().unwrap();
        assert_eq!(stopped_field(&host, "evicted_users").as_deref(), Some("2"));
        assert_eq!(stopped_field(&host, "users").as_deref(), Some("2"));
        let warned = host
            .logs()
            .iter()
            .filter(|l| l.message.starts_with("state table full"))
            .count();
        assert_eq!(warned, 1);
    }

    #[test]
    fn a_huge_session_id_is_not_stored() {
        let mut p = direct(json!({}));
        let baseline = p.stats().state_bytes;
        let session = "S".repeat(100 * 1024);
        feed(&mut p, &login("victim", "10.0.0.1", &session)).unwrap();
        let grown = p.stats().state_bytes - baseline;
        assert!(grown < 2048, "{grown} bytes for one login");
        assert_eq!(p.active_sessions("victim"), 1);
        // A different 100 KB id is a different session; the same one ends the session.
        let mut other = session.clone();
        other.push('!');
        feed(&mut p, &logout("victim", &other)).unwrap();
        assert_eq!(p.active_sessions("victim"), 1);
        feed(&mut p, &logout("victim", &session)).unwrap();
        assert_eq!(p.active_sessions("victim"), 0);

        // Huge user ids and addresses are not stored either, and alerts repeat only a bit.
        let host = FakeHost::new();
        let mut h = load(&host, json!({"max_failures": 1}));
        let user = "u".repeat(100 * 1024);
        let junk = "j".repeat(100 * 1024);
        send(&mut h, &failed(&user, &junk, T0));
        let got = alerts(&host);
        assert_eq!(got.len(), 2);
        for (a, e) in &got {
            assert!(
                e.payload_json.len() < 2048,
                "{} bytes",
                e.payload_json.len()
            );
            assert!(a.user_id.len() <= MAX_SHOWN_BYTES);
        }
        let warning = host
            .logs()
            .into_iter()
            .find(|l| l.message.starts_with("client address is not an IP address"))
            .unwrap();
        assert!(format!("{warning:?}").len() < 1024);
        let mut d = direct(json!({}));
        feed(&mut d, &failed(&user, &junk, T0)).unwrap();
        assert!(d.stats().state_bytes < 2048, "{:?}", d.stats());
    }

    #[test]
    fn unparsable_addresses_are_counted_and_warned_about_boundedly() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_failures": 3}));
        for i in 0..100 {
            send(&mut p, &failed(&format!("u{i}"), &format!("junk-{i}"), T0));
        }
        // The same junk three times is one address.
        for i in 0..3 {
            send(&mut p, &failed(&format!("v{i}"), " not-an-ip ", T0));
        }
        let got = alerts(&host);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0.ip, "not-an-ip");
        let warnings = host
            .logs()
            .iter()
            .filter(|l| {
                l.message.contains("not IP address") || l.message.contains("not an IP address")
            })
            .count();
        assert_eq!(warnings, UNPARSABLE_WARNINGS + 1);
        p.stop().unwrap();
        assert_eq!(
            stopped_field(&host, "unparsable_addresses").as_deref(),
            Some("103")
        );
    }

    #[test]
    fn sessions_per_user_are_capped() {
        let host = FakeHost::new();
        let mut p = load(&host, json!({"max_sessions": 3}));
        for i in 0..200 {
            send(&mut p, &login("hoarder", "10.0.0.1", &format!("s{i}")));
        }
        assert_eq!(alerts(&host).len(), 1);
        let mut d = direct(json!({"max_sessions": 3}));
        for i in 0..200 {
            feed(&mut d, &login("hoarder", "10.0.0.1", &format!("s{i}"))).unwrap();
        }
        assert_eq!(d.active_sessions("hoarder"), MIN_TRACKED_SESSIONS);
        let mut d = direct(json!({"max_sessions": 100}));
        for i in 0..1000 {
            feed(&mut d, &login("hoarder", "10.0.0.1", &format!("s{i}"))).unwrap();
        }
        assert_eq!(d.active_sessions("hoarder"), 400);
    }

    #[test]
    fn expired_failure_state_is_dropped_by_event_time() {
        let mut p = direct(json!({}));
        feed(&mut p, &login("regular", "192.0.2.7", "s")).unwrap();
        for i in 0..50 {
            feed(
                &mut p,
                &failed(&format!("u{i}"), &format!("10.0.0.{i}"), T0),
            )
            .unwrap();
        }
        let s = p.stats();
        assert_eq!((s.users, s.addresses, s.prefixes), (51, 50, 1));
        // Past the failure window: addresses go at once; users with nothing else go as the
        // sweep reaches them (a few per event).
        feed(&mut p, &failed("late", "203.0.113.1", T0 + 301)).unwrap();
        assert_eq!((p.stats().addresses, p.stats().prefixes), (1, 2));
        for _ in 0..20 {
            feed(&mut p, &failed("late", "203.0.113.1", T0 + 301)).unwrap();
        }
        let s = p.stats();
        assert_eq!((s.users, s.addresses, s.prefixes), (2, 1, 2));
        // Past the network window too.
        feed(&mut p, &failed("later", "203.0.113.2", T0 + 3602)).unwrap();
        let s = p.stats();
        assert_eq!((s.users, s.addresses, s.prefixes), (2, 1, 1), "{s:?}");
        assert_eq!(p.active_sessions("regular"), 1);
        assert_eq!(
            s.evicted_users + s.evicted_addresses + s.evicted_prefixes,
            0
        );
    }

    fn vm_kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    /// Feeds a login and a failure for each of 1,000,000 users, each from an address of its
    /// own, all at one instant (so nothing expires and only the bounds hold memory down);
    /// returns the peak RSS growth in MiB.
    fn million_users(config: serde_json::Value) -> (f64, Stats) {
        const USERS: u32 = 1_000_000;
        let mut p = direct(config);
        // Reset the peak to the current RSS (Linux >= 4.0), so the peak is this run's.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = vm_kib("VmRSS:");
        for i in 0..USERS {
            let user = format!("user-{i:07}");
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let session = format!("session-{i:07}-5f1d2a9c0e7b4d38");
            feed(&mut p, &login(&user, &ip, &session)).unwrap();
            feed(&mut p, &failed(&user, &ip, T0)).unwrap();
        }
        let peak = vm_kib("VmHWM:");
        let stats = p.stats();
        let mib = (peak.saturating_sub(before)) as f64 / 1024.0;
        eprintln!("1,000,000 users: peak RSS growth {mib:.1} MiB; {stats:?}");
        drop(p);
        (mib, stats)
    }

    #[test]
    #[ignore = "measures this process's memory; run alone and in release: \
                cargo test --release -p plugbus-auth-enhancer -- --ignored --exact \
                tests::a_million_users_stay_under_200_mib"]
    fn a_million_users_stay_under_200_mib() {
        let (mib, stats) = million_users(json!({}));
        assert_eq!(stats.users, 100_000);
        assert_eq!(stats.evicted_users, 900_000);
        assert!(mib < 200.0, "{mib:.1} MiB");
    }

    #[test]
    #[ignore = "measures this process's memory; run alone and in release: \
                cargo test --release -p plugbus-auth-enhancer -- --ignored --exact \
                tests::a_million_tracked_users_stay_under_200_mib"]
    fn a_million_tracked_users_stay_under_200_mib() {
        // Nothing evicted: what 1,000,000 users and 1,000,000 addresses cost when all are kept.
        let (mib, stats) = million_users(json!({"max_tracked": 1_000_000}));
        assert_eq!((stats.users, stats.addresses), (1_000_000, 1_000_000));
        assert_eq!(stats.evicted_users + stats.evicted_addresses, 0);
        assert!(mib < 200.0, "{mib:.1} MiB");
    }
}
