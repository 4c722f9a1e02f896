//! What only the host may say: its own event types and source names.
//!
//! Lifecycle, system and configuration events (`plugin.*`, `system.*`, `config.*`) and the
//! sources `plugbus` and `plugbus-host` come from the host alone, so that every consumer, the
//! audit trail first, can trust them. The host refuses them from plugins and from input; the
//! plugin API's test host refuses them the same way, so a plugin's unit tests catch it.

/// Type prefixes only the host may publish.
pub const HOST_TYPE_PREFIXES: [&str; 3] = ["plugin.", "system.", "config."];

/// Source names only the host may use (compared without case, trimmed).
pub const HOST_SOURCES: [&str; 2] = ["plugbus", "plugbus-host"];

/// Why an event of type `name` from `source` may not come from anyone but the host, if it may
/// not.
///
/// ```
/// use plugbus_contract::reserved::host_only;
/// assert!(host_only("plugin.loaded", "my-plugin").is_some());
/// assert!(host_only("user.login", "PlugBus-Host").is_some());
/// assert!(host_only("user.login", "auth").is_none());
/// ```
pub fn host_only(name: &str, source: &str) -> Option<String> {
    if let Some(prefix) = HOST_TYPE_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Some(format!(
            "'{name}': types '{prefix}*' are the host's own; only the host publishes them"
        ));
    }
    if HOST_SOURCES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(source.trim()))
    {
        return Some(format!(
            "source '{source}' is the host's own; only the host publishes under it"
        ));
    }
    None
}
