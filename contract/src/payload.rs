//! Standard payload structs for the built-in and standard custom event types.
//!
//! Each implements [`TypedEvent`], so it can be published and subscribed to by type. Optional
//! fields are omitted from JSON when empty and default when absent, so producers may send less.

use crate::{types, Category, TypedEvent};
use serde::{Deserialize, Serialize};

macro_rules! typed {
    ($ty:ident, $name:expr, $cat:ident) => {
        impl TypedEvent for $ty {
            const EVENT_TYPE: &'static str = $name;
            const CATEGORY: Category = Category::$cat;
        }
    };
}

/// Identity of a plugin in lifecycle events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    /// The plugin's declared name.
    pub name: String,
    /// The plugin's declared version.
    pub version: String,
    /// The file it was loaded from.
    pub path: String,
}

/// Payload of `plugin.loaded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLoaded {
    /// Which plugin.
    #[serde(flatten)]
    pub plugin: PluginRef,
}
typed!(PluginLoaded, types::PLUGIN_LOADED, Lifecycle);

/// Payload of `plugin.unloaded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUnloaded {
    /// Which plugin.
    #[serde(flatten)]
    pub plugin: PluginRef,
}
typed!(PluginUnloaded, types::PLUGIN_UNLOADED, Lifecycle);

/// Payload of `plugin.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStarted {
    /// Which plugin.
    #[serde(flatten)]
    pub plugin: PluginRef,
}
typed!(PluginStarted, types::PLUGIN_STARTED, Lifecycle);

/// Payload of `plugin.stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStopped {
    /// Which plugin.
    #[serde(flatten)]
    pub plugin: PluginRef,
}
typed!(PluginStopped, types::PLUGIN_STOPPED, Lifecycle);

/// Payload of `plugin.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    /// Which plugin; `name` and `version` are empty when it failed before declaring them.
    #[serde(flatten)]
    pub plugin: PluginRef,
    /// What it was doing: `load`, `start`, `handle`, `stop`.
    pub stage: String,
    /// The error, as text.
    pub error: String,
}
typed!(PluginError, types::PLUGIN_ERROR, Lifecycle);

/// Payload of `system.startup`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SystemStartup {
    /// The host program's name.
    pub host: String,
    /// The host program's version.
    pub version: String,
    /// The host's process id.
    #[serde(default)]
    pub pid: u32,
}
typed!(SystemStartup, types::SYSTEM_STARTUP, System);

/// Payload of `system.shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SystemShutdown {
    /// Why the bus is shutting down (`requested`, `signal`, `end of input`, ...).
    pub reason: String,
}
typed!(SystemShutdown, types::SYSTEM_SHUTDOWN, System);

/// Payload of `config.changed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfigChanged {
    /// Where the configuration came from (a file path, usually).
    pub source: String,
    /// The keys whose values changed, dotted (`bus.timeout`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_keys: Vec<String>,
    /// Plugins that applied their new `config` table without a reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reconfigured: Vec<String>,
    /// Plugins reloaded to apply their new `config` table (they do not reconfigure in place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reloaded: Vec<String>,
    /// Plugins whose new table was refused, each `name: reason`; they keep the old one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Changed keys that take effect only when the host starts again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
    /// Why nothing was applied, when the new file could not be read or is invalid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}
typed!(ConfigChanged, types::CONFIG_CHANGED, System);

/// Payload of `user.login`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserLogin {
    /// Who logged in.
    pub user_id: String,
    /// The client's address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// The session the login opened.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    /// How the user authenticated (`password`, `sso`, `mfa`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
}
typed!(UserLogin, types::USER_LOGIN, Business);

/// Payload of `user.logout`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserLogout {
    /// Who logged out.
    pub user_id: String,
    /// The session that ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    /// Why (`user`, `expired`, `revoked`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}
typed!(UserLogout, types::USER_LOGOUT, Business);

/// Payload of `user.login_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserLoginFailed {
    /// The user name that was tried.
    pub user_id: String,
    /// The client's address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// Why the attempt was refused (`bad_password`, `unknown_user`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}
typed!(UserLoginFailed, types::USER_LOGIN_FAILED, Business);

/// Shared shape of the `data.*` payloads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataChange {
    /// The kind of entity (`invoice`, `user`, ...).
    pub entity: String,
    /// The entity's id.
    pub entity_id: String,
    /// Who made the change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// The new or changed fields (absent for deletions).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub fields: serde_json::Value,
}

/// Payload of `data.created`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataCreated(pub DataChange);
typed!(DataCreated, types::DATA_CREATED, Business);

/// Payload of `data.updated`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataUpdated(pub DataChange);
typed!(DataUpdated, types::DATA_UPDATED, Business);

/// Payload of `data.deleted`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataDeleted(pub DataChange);
typed!(DataDeleted, types::DATA_DELETED, Business);

/// How serious a [`SecurityAlert`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Likely a problem.
    Medium,
    /// Act now.
    High,
}

/// Payload of `security.alert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityAlert {
    /// Machine-readable reason: `brute_force_user`, `brute_force_ip`, `new_address`,
    /// `concurrent_sessions`, ...
    pub reason: String,
    /// How serious it is.
    pub severity: Severity,
    /// The user concerned, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// The address concerned, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Human-readable explanation.
    pub message: String,
    /// How many occurrences triggered the alert (failures, sessions, ...).
    #[serde(default)]
    pub count: u32,
    /// The window the count was taken over, in seconds (0 when not windowed).
    #[serde(default)]
    pub window_secs: u64,
    /// The id of the event that triggered the alert (also its `causation_id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger_event_id: String,
}
typed!(SecurityAlert, types::SECURITY_ALERT, Business);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_omit_empty_fields() {
        let login = UserLogin {
            user_id: "alice".into(),
            ip: "10.0.0.1".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&login).unwrap();
        assert_eq!(json, r#"{"user_id":"alice","ip":"10.0.0.1"}"#);
        assert_eq!(serde_json::from_str::<UserLogin>(&json).unwrap(), login);

        let loaded = PluginLoaded {
            plugin: PluginRef {
                name: "audit".into(),
                version: "1.0.0".into(),
                path: "/p/libaudit.so".into(),
            },
        };
        let v = serde_json::to_value(&loaded).unwrap();
        assert_eq!(v["name"], "audit");
        assert_eq!(serde_json::from_value::<PluginLoaded>(v).unwrap(), loaded);
    }

    #[test]
    fn payload_types_match_contract_table() {
        fn check<T: TypedEvent>() {
            let found = crate::BUILTIN_TYPES
                .iter()
                .find(|(n, _)| *n == T::EVENT_TYPE)
                .map(|(_, c)| *c);
            assert_eq!(found, Some(T::CATEGORY), "{}", T::EVENT_TYPE);
        }
        check::<PluginLoaded>();
        check::<PluginUnloaded>();
        check::<PluginStarted>();
        check::<PluginStopped>();
        check::<PluginError>();
        check::<SystemStartup>();
        check::<SystemShutdown>();
        check::<ConfigChanged>();
        check::<UserLogin>();
        check::<UserLogout>();
        check::<DataCreated>();
        check::<DataUpdated>();
        check::<DataDeleted>();
        check::<UserLoginFailed>();
        check::<SecurityAlert>();
    }
}
