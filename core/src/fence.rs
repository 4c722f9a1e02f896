//! An asymmetric memory fence: nearly free for the many (publishers), expensive for the rare
//! side (shutdown) that must be sure it sees what the many wrote.
//!
//! Publishing counts an event in, then checks the door is open; shutdown closes the door, then
//! reads the counts. Each side writes one location and reads the other, which on any CPU
//! (x86's store buffer included) needs a store-load barrier between the two on both sides, or
//! both may miss each other. A full fence per publish costs as much as a locked add; instead the
//! publisher issues a compiler-only fence ([`light`]) and shutdown, once, asks the kernel to run
//! a full barrier on every thread of the process that is running right now ([`heavy`], Linux's
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`): a thread that is not running has no stores
//! in flight. Where that is not available (another OS, or a sandbox that filters the call),
//! both sides use a full fence.

use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const EXPEDITED: u8 = 1;
const FALLBACK: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Decides, once per process, which kind of fence to use. Must run before any [`light`] whose
/// pairing with [`heavy`] matters: a bus calls it when it is built.
pub(crate) fn init() {
    if MODE.load(Ordering::Acquire) == UNKNOWN {
        let mode = if register() { EXPEDITED } else { FALLBACK };
        // Racing initializers agree unless registration itself is flaky; the first one wins.
        let _ = MODE.compare_exchange(UNKNOWN, mode, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[cfg(target_os = "linux")]
fn register() -> bool {
    use rustix::thread::{membarrier, membarrier_query, MembarrierCommand};
    let q = membarrier_query();
    q.contains_command(MembarrierCommand::PrivateExpedited)
        && q.contains_command(MembarrierCommand::RegisterPrivateExpedited)
        && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn register() -> bool {
    false
}

/// The publisher's side: orders its earlier store before its later load.
#[inline]
pub(crate) fn light() {
    if MODE.load(Ordering::Relaxed) == EXPEDITED {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The rare side: after it returns, every store that any thread made before its [`light`] is
/// visible here, or that thread's load after `light` sees what this thread stored before.
pub(crate) fn heavy() {
    fence(Ordering::SeqCst);
    if MODE.load(Ordering::Acquire) == EXPEDITED && !expedited_barrier() {
        // Registered but refused now (it does not happen on a working kernel): nothing else
        // gives the guarantee, so say so.
        tracing::error!("membarrier failed after registration; shutdown may miss a racing publish");
    }
}

#[cfg(target_os = "linux")]
fn expedited_barrier() -> bool {
    use rustix::thread::{membarrier, MembarrierCommand};
    membarrier(MembarrierCommand::PrivateExpedited).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn expedited_barrier() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_settles_on_one_mode() {
        init();
        let mode = MODE.load(Ordering::Acquire);
        assert!(mode == EXPEDITED || mode == FALLBACK);
        init();
        assert_eq!(MODE.load(Ordering::Acquire), mode);
        light();
        heavy();
    }
}
