//! # Reloads
//!
//! With `watch = true` in the host's `[plugins]` table, a plugin file that changes (its
//! SHA-256 differs from the loaded one's) is reloaded, and so is a plugin whose `config` table
//! changes when it does not [reconfigure in place](super::configuration#when-it-changes); a
//! host embedding `plugbus-host` can also reload a plugin by name. A reload:
//!
//! 1. checks the new file as any load does (trust, ELF structure, abi_stable's layouts, the
//!    interface version). If that fails, the old instance keeps running and the failure is
//!    published as `plugin.error`;
//! 2. unloads the old instance: delivers what was already queued for it (for a bounded
//!    time), removes its subscriptions, calls its [`stop`](crate::Plugin::stop), and drops it;
//! 3. then constructs the new one from the new file: [`new`](crate::Plugin::new) with the
//!    plugin's configuration, [`subscriptions`](crate::Plugin::subscriptions), and
//!    [`start`](crate::Plugin::start) if the old one was started.
//!
//! So the **old instance's `stop` runs before the new instance's `new`**, never at the same
//! time, and:
//!
//! - **State is lost.** The new instance starts from `new`, with nothing of the old one's
//!   memory. What must survive a reload (or a restart, see [`isolation`](super::isolation))
//!   the plugin writes somewhere in `stop` and reads back in `new` or `start`. Events published
//!   between the old instance's unsubscribing and the new one's subscribing reach neither.
//! - **Old code stays mapped.** Libraries are never unloaded (unloading Rust code with
//!   thread-locals is unsound): the old copy's code and statics stay in memory for the life of
//!   the process, the new copy has statics of its own (a `static` counter or `OnceLock`
//!   starts afresh), and each reload costs the library's size in memory. A thread the old
//!   instance did not stop keeps running the old code: see [`threads`](super::threads).
//! - **A changed file is loaded from a private copy.** The host copies the file's bytes into
//!   a private directory of its own, named by their SHA-256, and maps the copy (the dynamic
//!   loader would otherwise hand back the old mapping for the same path), so the original
//!   file may be overwritten at any time. Replace it atomically all the same (build it
//!   elsewhere, then rename it over the old one), so that the watcher never sees a library
//!   half written.
//! - If the new instance fails to construct or start, the failure is reported
//!   (`plugin.error`) and the old one is gone: test a new version before dropping it in.
