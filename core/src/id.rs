//! Event ids: time-ordered UUID v7, generated without a global lock.
//!
//! The `uuid` crate's `now_v7` serializes every caller on one mutex to keep ids monotonic. An
//! event bus creates ids on every core at once, so each thread keeps its own millisecond and
//! 12-bit counter instead: ids from one thread are strictly increasing, ids from different threads
//! are ordered by millisecond and kept apart by 62 random bits.

use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// The id of an event: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh v7 id for the current time.
    pub fn new() -> EventId {
        let (id, _) = new_id_and_time();
        id
    }

    /// A fresh v7 id that sorts after `earlier` (ids are monotonic per thread, but an event
    /// built on one thread in the same millisecond as its cause on another could sort before
    /// it). An `earlier` that is not a v7 id (an id from another system) orders nothing.
    ///
    /// ```
    /// use plugbus::EventId;
    /// let cause = EventId::new();
    /// assert!(EventId::new_after(cause) > cause);
    /// ```
    pub fn new_after(earlier: EventId) -> EventId {
        let bytes = earlier.to_bytes();
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&bytes[..8]);
        let hi = u64::from_be_bytes(hi);
        if earlier.as_uuid().get_version_num() == 7 {
            // Move this thread's generator up to `earlier`: the next id is then in a later
            // millisecond or has a larger counter, so it sorts after `earlier` and after every
            // id this thread made before (ids stay unique and monotonic per thread).
            let theirs = (hi >> 16, (hi & 0x0fff) as u16);
            V7_STATE.with(|state| {
                if theirs > state.get() {
                    state.set(theirs);
                }
            });
        }
        EventId::new()
    }

    /// Wraps an existing UUID (of any version: ids from other systems are accepted as they are).
    pub const fn from_uuid(uuid: Uuid) -> EventId {
        EventId(uuid)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 bytes, big-endian (the form that crosses the plugin ABI).
    pub const fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    /// From 16 big-endian bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(Uuid::from_bytes(bytes))
    }

    /// The nil id (all zeros); never produced by [`EventId::new`].
    pub const fn nil() -> EventId {
        EventId(Uuid::nil())
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(EventId)
    }
}

impl From<Uuid> for EventId {
    fn from(u: Uuid) -> Self {
        EventId(u)
    }
}

thread_local! {
    /// (last millisecond used, counter within it)
    static V7_STATE: Cell<(u64, u16)> = const { Cell::new((0, 0)) };
}

/// The system's wall clock in Unix nanoseconds (0 if the clock is before 1970).
fn system_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long a thread trusts its anchor before re-reading the system clock, so that clock steps
/// (NTP, an operator) show within this bound.
const REANCHOR_NANOS: u64 = 1_000_000_000;

static CLOCK: std::sync::LazyLock<quanta::Clock> = std::sync::LazyLock::new(quanta::Clock::new);

thread_local! {
    /// (raw counter at anchor, wall nanos at anchor)
    static ANCHOR: Cell<(u64, i64)> = const { Cell::new((0, 0)) };
}

/// A monotonic instant from the time-stamp counter, for latency measurements: a few
/// nanoseconds to read, against ~25 for `std::time::Instant` on a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instant(u64);

impl Instant {
    pub(crate) fn now() -> Instant {
        Instant(CLOCK.raw())
    }

    pub(crate) fn elapsed(self) -> std::time::Duration {
        std::time::Duration::from_nanos(CLOCK.delta_as_nanos(self.0, CLOCK.raw()))
    }
}

/// Current Unix time in nanoseconds.
///
/// Reading the system clock costs ~35 ns on a VM; events need a timestamp each, so each thread
/// reads it once a second and advances it with the CPU's time-stamp counter in between (via
/// `quanta`, which falls back to the OS clock where the counter is unreliable).
pub(crate) fn unix_nanos_now() -> i64 {
    let clock = &*CLOCK;
    let raw = clock.raw();
    ANCHOR.with(|a| {
        let (raw0, wall0) = a.get();
        let elapsed = if raw0 == 0 || raw < raw0 {
            None
        } else {
            Some(clock.delta_as_nanos(raw0, raw)).filter(|d| *d < REANCHOR_NANOS)
        };
        match elapsed {
            Some(d) => wall0.saturating_add(i64::try_from(d).unwrap_or(i64::MAX)),
            None => {
                let wall = system_nanos();
                a.set((raw, wall));
                wall
            }
        }
    })
}

/// The current time as a UTC date-time.
pub(crate) fn utc_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_nanos(unix_nanos_now())
}

/// A fresh id and the Unix-nanosecond timestamp it was made at, from one clock read.
pub(crate) fn new_id_and_time() -> (EventId, i64) {
    let nanos = unix_nanos_now();
    let now_ms = (nanos / 1_000_000) as u64;
    let (ms, counter) = V7_STATE.with(|s| {
        let (last_ms, counter) = s.get();
        // Monotonic per thread: a clock step backwards or a full counter keeps the old ms.
        let next = if now_ms > last_ms {
            (now_ms, fastrand::u16(..0x400))
        } else if counter < 0x0fff {
            (last_ms, counter + 1)
        } else {
            (last_ms + 1, fastrand::u16(..0x400))
        };
        s.set(next);
        next
    });
    let rand_b = fastrand::u64(..);
    let hi: u64 = (ms << 16) | 0x7000 | u64::from(counter & 0x0fff);
    let lo: u64 = (rand_b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    (EventId(Uuid::from_bytes(bytes)), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_strictly_increasing_per_thread() {
        let mut prev = EventId::new();
        assert_eq!(prev.as_uuid().get_version_num(), 7);
        assert_eq!(prev.as_uuid().get_variant(), uuid::Variant::RFC4122);
        for _ in 0..100_000 {
            let next = EventId::new();
            assert!(next > prev, "{next} <= {prev}");
            prev = next;
        }
    }

    #[test]
    fn an_id_after_another_sorts_after_it_and_stays_v7() {
        // A cause from "the future" (another thread's counter ahead of this one's).
        let ahead = EventId::new();
        let mut bytes = ahead.to_bytes();
        bytes[6] |= 0x0f;
        bytes[7] = 0xff;
        let cause = EventId::from_bytes(bytes);
        let next = EventId::new_after(cause);
        assert!(next > cause, "{next} <= {cause}");
        assert_eq!(next.as_uuid().get_version_num(), 7);
        assert_eq!(next.as_uuid().get_variant(), uuid::Variant::RFC4122);
        let fresh_cause = EventId::new();
        assert!(EventId::new_after(fresh_cause) > fresh_cause);
        // Many after the same cause: each after it, all distinct and increasing.
        let mut prev = cause;
        for _ in 0..10_000 {
            let next = EventId::new_after(cause);
            assert!(next > prev, "{next} <= {prev}");
            prev = next;
        }
    }

    #[test]
    fn the_fast_clock_tracks_the_system_clock() {
        for _ in 0..5 {
            let fast = unix_nanos_now();
            let sys = system_nanos();
            assert!(
                (sys - fast).abs() < 5_000_000,
                "fast {fast} vs system {sys}"
            );
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let a = unix_nanos_now();
        let b = unix_nanos_now();
        assert!(b >= a);
    }

    #[test]
    fn ids_carry_the_creation_millisecond() {
        let (id, nanos) = new_id_and_time();
        let ts = id.as_uuid().get_timestamp().map(|t| t.to_unix());
        let (secs, sub) = ts.unwrap_or_default();
        let ms = secs * 1000 + u64::from(sub / 1_000_000);
        assert!((ms as i64 - nanos / 1_000_000).abs() <= 1);
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let all: Vec<EventId> = (0..4)
            .map(|_| std::thread::spawn(|| (0..20_000).map(|_| EventId::new()).collect::<Vec<_>>()))
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 80_000);
    }

    #[test]
    fn bytes_and_text_round_trip() {
        let id = EventId::new();
        assert_eq!(EventId::from_bytes(id.to_bytes()), id);
        assert_eq!(id.to_string().parse::<EventId>().ok(), Some(id));
    }
}
