//! # Isolation
//!
//! A plugin runs in the host's own process by default. With `isolation = "process"` in its
//! section of the host's config (or in `[plugins]`, for every plugin), it runs in a
//! **supervised child process of its own** instead:
//!
//! ```toml
//! [plugin.lockout]
//! isolation = "process"      # default "in_process"
//! max_restarts = 5           # at most this many restarts ...
//! restart_window = "60s"     # ... in this window, then the plugin is failed
//! limits = { memory_mib = 256, open_files = 64, cpu_seconds = 600 }
//! ```
//!
//! **The same `.so`, with nothing to change.** The child is the host's executable started
//! again (`plugbus __plugbus-plugin-child NAME` in `ps`); it maps the same checked private
//! copy of the library, constructs the plugin with the same configuration and makes every
//! call from one thread, in the same order, as in process ([`threads`](super::threads)). The
//! plugin cannot tell, and should not need to. What differs:
//!
//! - **A publish is a round trip to the host.** [`HostHandle::publish`](crate::HostHandle::publish)
//!   sends the event over the child's channel and waits for the host's answer: the host checks
//!   it, stamps it and queues it exactly as in process, with the same causation and the same
//!   typed refusals, plus [`Closed`](crate::RefusalKind::Closed) once the channel to the host
//!   is gone. Deliveries reach the child in batches. Throughput is lower than in process (the
//!   target is at least 500,000 events a second, at most 3 times the in-process cost).
//! - **A crash costs a restart, not the host.** A segfault, an abort, `exit`, a limit
//!   exceeded, or no heartbeat for `heartbeat_timeout` (5 s by default: a deadlock, or one
//!   call running that long; the child is then killed) is published as `plugin.error` ("killed
//!   by SIGSEGV", "exit status 42", "no heartbeat for 5s: killed"), and a new child is started
//!   after an exponential backoff, at most `max_restarts` times in `restart_window`; then the
//!   plugin is failed and its remaining deliveries fail with the reason.
//! - **The delivery it died on is delivered once more.** Deliveries the child had not
//!   answered go to the new child first, in their order; one it had answered is never
//!   repeated. The one it was handling is blamed: if it kills a second child too, it is
//!   failed as "plugin crashed: ..." and dead-lettered, so one poison event cannot crash-loop
//!   the plugin. So a handler may see the same event twice after a crash: make what it does
//!   for an event safe to do again (the event's [`id`](crate::Event::id) identifies it).
//! - **State is lost on a restart**, as on a [reload](super::reloads): the new child runs
//!   `new` and `start` afresh.
//! - **Limits** apply to the child alone, under `[plugin.NAME.limits]`: `memory_mib`
//!   (address space the plugin may add once loaded; an allocation beyond it fails and the
//!   child aborts and restarts), `open_files` (`RLIMIT_NOFILE`), `cpu_seconds` (`RLIMIT_CPU`;
//!   the child is killed by `SIGXCPU`). The child inherits no descriptor but its channel and
//!   stderr.
//! - Threads the plugin spawned end with the child when it exits after `stop`, or when it
//!   crashes; stop them in `stop` anyway, as in process.
//!
//! In process stays the default because it is the fastest (a delivery costs well under a
//! microsecond) and shares nothing it does not need to. A plugin whose crash must not take
//! the host with it, or that links native code of uncertain quality, is the case for a
//! process of its own. An application embedding `plugbus-host` turns isolation on in its own
//! executable (see `plugbus_host::isolation`); without that, a plugin configured for a
//! process of its own fails to load with an error saying so, and never silently runs in
//! process.
