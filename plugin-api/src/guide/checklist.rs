//! # Checklist before publishing a plugin
//!
//! - [ ] **`crate-type = ["cdylib", "rlib"]`** under `[lib]`: the `cdylib` is the file the
//!   host loads, the `rlib` lets the plugin's own tests use it ([`testing`](super::testing)).
//! - [ ] **`panic = "unwind"`** in every profile the library is built with (the default; check
//!   `[profile.release]`, also in the workspace the plugin is built in). The export macro
//!   catches panics at the boundary only in an unwinding build; the host reads which one a
//!   library is ([`PluginInfo::unwind`](crate::PluginInfo::unwind)) and **refuses abort
//!   builds**, whose first panic would abort the process that runs them.
//! - [ ] **[`export_plugin!`](crate::export_plugin) once**, at the crate root, and a
//!   [`Plugin::NAME`](crate::Plugin::NAME) that is unique among the host's plugins.
//! - [ ] **No tokio runtime assumed**: `handle` is synchronous, and `tokio::spawn` or
//!   `Handle::current()` find no runtime inside a plugin ([`threads`](super::threads)).
//! - [ ] **Bounded state**: whatever grows with the events (sessions, counters per user or
//!   address, pending alerts) has a cap or an expiry. A plugin lives as long as the host.
//! - [ ] **`handle` never blocks for long**: no unbounded waits on locks, sockets or
//!   channels. A slow `handle` holds back every later delivery to the plugin, one past its
//!   timeout is dead-lettered, and a few in a row open its breaker. Slow work belongs on a
//!   thread of the plugin's own, with a bounded queue to it.
//! - [ ] **Threads stopped in `stop`**: every thread the plugin spawned is signalled and
//!   joined there; the host joins none ([`threads`](super::threads)).
//! - [ ] **Subscriptions as narrow as they can be**: exact types rather than `*`, and a
//!   [`Filter`](crate::Filter) the host evaluates before it hands the plugin anything; every
//!   event delivered costs a trip through the plugin's queue and a call into it.
//! - [ ] **The right error kinds** ([`errors`](super::errors)): `Retryable` only for what may
//!   succeed later, `InvalidEvent` for bad input, and refusals of transient publishes
//!   ([`PublishError::is_transient`](crate::PublishError::is_transient)) handled.
//! - [ ] **Configuration** read with [`parse_config`](crate::parse_config) into a struct with
//!   `#[serde(default, deny_unknown_fields)]`, with a default for every key, and **declared**
//!   with `#[derive(ConfigSchema)]` and [`Plugin::config_schema`](crate::Plugin::config_schema)
//!   (a doc comment on each field: it is the key's help in `plugbus plugins inspect`).
//!   [`Plugin::reconfigure`](crate::Plugin::reconfigure) where a change can apply in place
//!   ([`configuration`](super::configuration)).
//! - [ ] **Tested with [`FakeHost`](crate::testing::FakeHost)**: what it publishes (and that
//!   the host accepts it: type names, categories, sizes), its configuration errors, and how it
//!   copes with `Full` and `Closed` refusals.
//! - [ ] **Tried in a real host**: `plugbus plugins check` with the configuration it will
//!   run with, then `plugbus run` over a few events; with `isolation = "process"` too if it
//!   may run that way ([`isolation`](super::isolation)): a handler that may see an event twice
//!   after a crash.
//! - [ ] **Secrets kept out of logs**: payloads may carry tokens and passwords; `Debug`
//!   output and `tracing` fields of the plugin should not print them.
