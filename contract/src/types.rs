//! Names of the built-in event types and the standard custom ones.

use crate::Category;

/// `plugin.loaded` (lifecycle): a plugin library was opened and its plugin constructed.
pub const PLUGIN_LOADED: &str = "plugin.loaded";
/// `plugin.unloaded` (lifecycle): a plugin was removed from the bus (its library stays mapped).
pub const PLUGIN_UNLOADED: &str = "plugin.unloaded";
/// `plugin.started` (lifecycle): a plugin's `start` returned and it receives events.
pub const PLUGIN_STARTED: &str = "plugin.started";
/// `plugin.stopped` (lifecycle): a plugin's `stop` returned.
pub const PLUGIN_STOPPED: &str = "plugin.stopped";
/// `plugin.error` (lifecycle): a plugin failed to load, start, handle or stop.
pub const PLUGIN_ERROR: &str = "plugin.error";
/// `system.startup` (system): the host has started.
pub const SYSTEM_STARTUP: &str = "system.startup";
/// `system.shutdown` (system): the bus is shutting down.
pub const SYSTEM_SHUTDOWN: &str = "system.shutdown";
/// `config.changed` (system): configuration was reloaded.
pub const CONFIG_CHANGED: &str = "config.changed";
/// `user.login` (business): a user logged in.
pub const USER_LOGIN: &str = "user.login";
/// `user.logout` (business): a user logged out.
pub const USER_LOGOUT: &str = "user.logout";
/// `data.created` (business): an entity was created.
pub const DATA_CREATED: &str = "data.created";
/// `data.updated` (business): an entity was updated.
pub const DATA_UPDATED: &str = "data.updated";
/// `data.deleted` (business): an entity was deleted.
pub const DATA_DELETED: &str = "data.deleted";
/// `user.login_failed` (business, standard custom type): a login attempt was refused.
pub const USER_LOGIN_FAILED: &str = "user.login_failed";
/// `security.alert` (business, standard custom type): something suspicious was detected.
pub const SECURITY_ALERT: &str = "security.alert";

/// The 13 built-in types followed by the 2 standard custom ones, each with its category.
///
/// The order is fixed: an implementation may use the position as a dense index.
pub const BUILTIN_TYPES: [(&str, Category); 15] = [
    (PLUGIN_LOADED, Category::Lifecycle),
    (PLUGIN_UNLOADED, Category::Lifecycle),
    (PLUGIN_STARTED, Category::Lifecycle),
    (PLUGIN_STOPPED, Category::Lifecycle),
    (PLUGIN_ERROR, Category::Lifecycle),
    (SYSTEM_STARTUP, Category::System),
    (SYSTEM_SHUTDOWN, Category::System),
    (CONFIG_CHANGED, Category::System),
    (USER_LOGIN, Category::Business),
    (USER_LOGOUT, Category::Business),
    (DATA_CREATED, Category::Business),
    (DATA_UPDATED, Category::Business),
    (DATA_DELETED, Category::Business),
    (USER_LOGIN_FAILED, Category::Business),
    (SECURITY_ALERT, Category::Business),
];

/// How many of [`BUILTIN_TYPES`] are built-in proper (the rest are standard custom types).
pub const BUILTIN_COUNT: usize = 13;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_unique_and_categorised() {
        let mut names: Vec<_> = BUILTIN_TYPES.iter().map(|(n, _)| *n).collect();
        for n in &names {
            crate::validate_type_name(n).unwrap();
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BUILTIN_TYPES.len());
        let count = |c| {
            BUILTIN_TYPES[..BUILTIN_COUNT]
                .iter()
                .filter(|(_, k)| *k == c)
                .count()
        };
        assert_eq!(count(Category::Lifecycle), 5);
        assert_eq!(count(Category::System), 3);
        assert_eq!(count(Category::Business), 5);
    }
}
