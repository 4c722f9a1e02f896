//! The plugin author's guide: what the host does with a plugin, beyond the types.
//!
//! Documentation only (these modules hold no items). Each part is short; read them in order
//! before a first plugin, or go to the one you need:
//!
//! - [`threads`]: which thread calls the plugin, threads of its own, and what becomes of
//!   them at `stop` and on a reload.
//! - [`reloads`]: what a reload does to an instance and its state.
//! - [`configuration`]: the `[plugin.NAME].config` table, read into a serde struct.
//! - [`testing`]: unit tests with [`FakeHost`](crate::testing::FakeHost), and the
//!   dev-dependency line that turns it on.
//! - [`isolation`]: running in the host's process or in a child process of its own.
//! - [`errors`]: what the host does with each [`PluginError`](crate::PluginError), and
//!   the exit status of `plugbus run`.
//! - [`checklist`]: before publishing a plugin.
//!
//! The [crate docs](crate) open with a complete plugin; `plugbus plugins new NAME` writes a
//! new plugin crate that builds, tests and loads as it is.

pub mod checklist;
pub mod configuration;
pub mod errors;
pub mod isolation;
pub mod reloads;
pub mod testing;
pub mod threads;
