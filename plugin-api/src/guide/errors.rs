//! # Errors and exit status
//!
//! A plugin says what went wrong with a [`PluginError`]; the host maps each kind to an
//! outcome of the delivery (`plugbus_host::bridge::handler_error` for `handle`):
//!
//! | returned | by | what the host does |
//! |---|---|---|
//! | [`Retryable`](crate::PluginError::Retryable) | `handle` | retried with backoff if the host's config has `[bus.retry]` (no retries by default); failed like `Permanent` when retries are spent or off |
//! | [`Permanent`](crate::PluginError::Permanent) | `handle` | failed: counted, dead-lettered, and counted towards the subscription's circuit breaker |
//! | [`InvalidEvent`](crate::PluginError::InvalidEvent) | `handle` | a poison message: dead-lettered with its reason, never retried, and never counted towards the breaker (bad input must not switch a plugin off) |
//! | [`Panicked`](crate::PluginError::Panicked) | any call (the export macro catches the panic) | in `handle`: counted as panicked and dead-lettered; an instance's first panic is logged and published as `plugin.error`, later ones only counted; the instance keeps receiving events |
//! | [`Config`](crate::PluginError::Config) | `new` | the plugin does not load: `plugin.error` with the message |
//! | any | `new`, `start` | the plugin does not load or start: `plugin.error`; it gets no events |
//! | any | `stop` | reported as `plugin.error`; the instance is dropped anyway |
//!
//! A `handle` that runs past its timeout (the subscription's
//! [`timeout`](crate::Subscription::timeout), else `[plugin.NAME] timeout`, else
//! `plugins.default_timeout`, 5 s) is recorded as timed out and dead-lettered. After 3
//! consecutive failures or timeouts (`[bus.circuit_breaker]` changes that) the subscription's
//! breaker opens for 5 s: deliveries meanwhile fail at once as "circuit open" and are
//! dead-lettered, then one is let through to try. A publish the host refused
//! ([`PublishError`]) turned into an error by `?` is `Permanent`: the event being handled is
//! never delivered again because of a refused publish.
//!
//! Return the kind that says what retrying would do: `Retryable` only when the same event
//! may succeed later (a busy file, a lost connection), `InvalidEvent` when the event itself
//! is at fault (a payload that does not decode: [`Event::data`](crate::Event::data) returns
//! that kind by itself), `Permanent` for the rest.
//!
//! ## Exit status
//!
//! Handler errors, panics, timeouts and dead letters are counted (`plugbus run` and `demo`
//! print them in their summary, per plugin and per subscription) and **keep the exit status
//! 0**: a plugin failing on some events is reported, not fatal. The run exits 1 when a plugin
//! fails to load or start (a bad configuration included), and when a plugin marked
//! `required = true` in its `[plugin.NAME]` section fails in any of these ways: a required
//! plugin (an audit trail) that cannot keep up stops the run from taking input, which
//! drains and exits 1. Exit status 2 is for the host itself failing (an unreadable config).
//!
//! [`PluginError`]: crate::PluginError
//! [`PublishError`]: crate::PublishError
