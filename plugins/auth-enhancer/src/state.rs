//! What the plugin remembers per user, per address and per network, kept small.
//!
//! A user costs one 40-byte table slot (see [`crate::lru`]) plus one heap block holding
//! everything variable about them: failure times, session keys and known address keys, 8 bytes
//! each, side by side. There is no per-user `HashMap`, `String` or `VecDeque`: the lists are
//! short and capped, so a linear scan is as fast as a lookup and far smaller. An address or a
//! network costs a slot plus one block of failure records.
//!
//! # Sliding windows in bounded space
//!
//! A window only has to answer "are there `threshold` failures within `window` of the newest
//! one?", and only the newest `threshold` failures can answer it: if they do not fit in the
//! window, no older ones do. So a window keeps at most `threshold` records, however fast
//! failures arrive, and reports counts up to `threshold` (alerts fire on reaching it). Records
//! are kept sorted by time, so a late event lands in its place; one older than the window
//! (relative to the newest record) is not counted.

/// A failure recorded in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Failures now in the window (at most the window's `keep`).
    pub(crate) count: u32,
    /// The window had no failure in it before this one: an earlier alert is over.
    pub(crate) was_empty: bool,
}

/// Adds a record (`record[0]` is its time) to the sorted records, `stride` values each, in
/// `buf[start..start + len * stride]`: drops the records that have left the window, keeps the
/// newest `keep`, and updates `len`. `None` if the record itself is outside the window.
fn add_record(
    buf: &mut Vec<i64>,
    start: usize,
    len: &mut u16,
    record: &[i64],
    window: i64,
    keep: usize,
) -> Option<Counted> {
    let stride = record.len();
    let t = *record.first()?;
    let time = |buf: &[i64], i: usize| buf[start + i * stride];
    let mut n = usize::from(*len);
    let newest = if n > 0 { time(buf, n - 1) } else { t };
    let cutoff = newest.max(t).saturating_sub(window);
    let expired = (0..n).take_while(|&i| time(buf, i) <= cutoff).count();
    buf.drain(start..start + expired * stride);
    n -= expired;
    let was_empty = n == 0;
    if t <= cutoff {
        *len = u16::try_from(n).unwrap_or(u16::MAX);
        return None;
    }
    // After the last record not newer than `t` (usually the end: events come in order).
    let pos = (0..n)
        .rev()
        .find(|&i| time(buf, i) <= t)
        .map_or(0, |i| i + 1);
    let at = start + pos * stride;
    buf.splice(at..at, record.iter().copied());
    n += 1;
    if n > keep {
        let extra = n - keep;
        buf.drain(start..start + extra * stride);
        n = keep;
    }
    *len = u16::try_from(n).unwrap_or(u16::MAX);
    Some(Counted {
        count: u32::try_from(n).unwrap_or(u32::MAX),
        was_empty,
    })
}

/// Runs `f` on `boxed` as a `Vec` with room for `grow` more values, and stores the result back
/// without spare capacity. Growing by exactly what is needed (not by doubling and shrinking
/// back) keeps the allocator's work to one resize, usually in place, and its free lists short.
fn edit<R>(boxed: &mut Box<[i64]>, grow: usize, f: impl FnOnce(&mut Vec<i64>) -> R) -> R {
    let mut v = std::mem::take(boxed).into_vec();
    v.reserve_exact(grow);
    let r = f(&mut v);
    *boxed = v.into_boxed_slice();
    r
}

/// Failures of one address or network within its window; each record is `N` values, the
/// time first (addresses: just the time; networks: the time and the user key).
#[derive(Debug, Default)]
pub(crate) struct FailureWindow<const N: usize> {
    /// Records oldest first.
    records: Box<[i64]>,
    len: u16,
    /// An alert fired for the current run of failures.
    alerted: bool,
}

impl<const N: usize> FailureWindow<N> {
    /// Records a failure (`record[0]` is its time) and returns the count if it makes the window
    /// reach `threshold` for the first time since the window was last empty.
    pub(crate) fn record(&mut self, record: [i64; N], window: i64, threshold: u32) -> Option<u32> {
        let keep = usize::try_from(threshold).unwrap_or(usize::MAX);
        let len = &mut self.len;
        let counted = edit(&mut self.records, N, |buf| {
            add_record(buf, 0, len, &record, window, keep)
        })?;
        if counted.was_empty {
            self.alerted = false;
        }
        if counted.count >= threshold && !self.alerted {
            self.alerted = true;
            Some(counted.count)
        } else {
            None
        }
    }

    /// The time of the newest failure (`i64::MIN` if none).
    pub(crate) fn newest(&self) -> i64 {
        match usize::from(self.len).checked_sub(1) {
            Some(last) => self.records.get(last * N).copied().unwrap_or(i64::MIN),
            None => i64::MIN,
        }
    }

    /// The number of distinct values in position `1` of the records (the user keys of a
    /// network's failures); sorts a copy, so call it when alerting, not per event.
    pub(crate) fn distinct_second(&self) -> usize {
        if N < 2 {
            return 0;
        }
        let mut v: Vec<i64> = self.records.iter().skip(1).step_by(N).copied().collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    }

    /// Heap bytes this window owns.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.records)
    }
}

/// Everything remembered about one user.
///
/// `buf` holds three lists back to back: failure times (sorted, at most `max_failures`),
/// session keys (oldest first, capped by the plugin) and known address keys (oldest first, at
/// most [`crate::MAX_KNOWN_ADDRESSES`]). Keys are stored as `i64` bit patterns.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    buf: Box<[i64]>,
    failures: u16,
    sessions: u16,
    addresses: u16,
    /// A brute-force alert fired for the current run of failures.
    alerted: bool,
    /// A concurrent-sessions alert fired and the user has not come back under the limit.
    pub(crate) over_limit: bool,
}

pub(crate) fn bits(key: u64) -> i64 {
    i64::from_ne_bytes(key.to_ne_bytes())
}

impl UserState {
    fn sessions_start(&self) -> usize {
        usize::from(self.failures)
    }

    fn addresses_start(&self) -> usize {
        self.sessions_start() + usize::from(self.sessions)
    }

    fn session_keys(&self) -> &[i64] {
        self.buf
            .get(self.sessions_start()..self.addresses_start())
            .unwrap_or(&[])
    }

    fn address_keys(&self) -> &[i64] {
        let start = self.addresses_start();
        self.buf
            .get(start..start + usize::from(self.addresses))
            .unwrap_or(&[])
    }

    /// Records a failure at `t`; the count if it reaches `threshold` for the first time since
    /// the user's window was last empty.
    pub(crate) fn record_failure(&mut self, t: i64, window: i64, threshold: u32) -> Option<u32> {
        let keep = usize::try_from(threshold).unwrap_or(usize::MAX);
        let len = &mut self.failures;
        let counted = edit(&mut self.buf, 1, |buf| {
            add_record(buf, 0, len, &[t], window, keep)
        })?;
        if counted.was_empty {
            self.alerted = false;
        }
        if counted.count >= threshold && !self.alerted {
            self.alerted = true;
            Some(counted.count)
        } else {
            None
        }
    }

    /// Active sessions.
    pub(crate) fn session_count(&self) -> usize {
        usize::from(self.sessions)
    }

    /// Whether session `key` is active.
    pub(crate) fn has_session(&self, key: u64) -> bool {
        self.session_keys().contains(&bits(key))
    }

    /// Adds session `key`; beyond `cap` sessions the oldest is forgotten (its logout was
    /// probably lost).
    pub(crate) fn add_session(&mut self, key: u64, cap: usize) {
        let at = self.addresses_start();
        let start = self.sessions_start();
        let drop_oldest = self.session_count() >= cap.max(1);
        edit(&mut self.buf, 1, |buf| {
            buf.insert(at, bits(key));
            if drop_oldest {
                buf.remove(start);
            }
        });
        if !drop_oldest {
            self.sessions += 1;
        }
    }

    /// Ends session `key`; false if it was not active.
    pub(crate) fn end_session(&mut self, key: u64) -> bool {
        let start = self.sessions_start();
        match self.session_keys().iter().position(|k| *k == bits(key)) {
            Some(i) => {
                edit(&mut self.buf, 0, |buf| buf.remove(start + i));
                self.sessions -= 1;
                true
            }
            None => false,
        }
    }

    /// Ends the oldest session, if any.
    pub(crate) fn end_oldest_session(&mut self) {
        if self.sessions > 0 {
            let start = self.sessions_start();
            edit(&mut self.buf, 0, |buf| buf.remove(start));
            self.sessions -= 1;
        }
    }

    /// Number of addresses the user is known to have logged in from.
    pub(crate) fn address_count(&self) -> usize {
        usize::from(self.addresses)
    }

    /// Whether the user has logged in from address `key` before.
    pub(crate) fn knows_address(&self, key: u64) -> bool {
        self.address_keys().contains(&bits(key))
    }

    /// Remembers address `key`; beyond `cap` addresses the oldest is forgotten.
    pub(crate) fn learn_address(&mut self, key: u64, cap: usize) {
        let start = self.addresses_start();
        let end = start + self.address_count();
        let drop_oldest = self.address_count() >= cap.max(1);
        edit(&mut self.buf, 1, |buf| {
            buf.insert(end, bits(key));
            if drop_oldest {
                buf.remove(start);
            }
        });
        if !drop_oldest {
            self.addresses += 1;
        }
    }

    /// Forgets failure times at or before `cutoff` (they can no longer count).
    pub(crate) fn forget_failures_through(&mut self, cutoff: i64) {
        let expired = self
            .buf
            .iter()
            .take(usize::from(self.failures))
            .take_while(|t| **t <= cutoff)
            .count();
        if expired > 0 {
            edit(&mut self.buf, 0, |buf| buf.drain(..expired).for_each(drop));
            self.failures -= u16::try_from(expired).unwrap_or(self.failures);
        }
    }

    /// Nothing worth keeping: no session, no known address, and no failure after `cutoff`.
    pub(crate) fn is_idle(&self, cutoff: i64) -> bool {
        self.sessions == 0
            && self.addresses == 0
            && (self.failures == 0
                || self
                    .buf
                    .get(usize::from(self.failures) - 1)
                    .is_none_or(|t| *t <= cutoff))
    }

    /// Heap bytes this user owns.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_keeps_at_most_threshold_records_and_slides() {
        let mut w = FailureWindow::<1>::default();
        // Threshold 3, window 10: alert on the third within 10 of the newest.
        assert_eq!(w.record([0], 10, 3), None);
        assert_eq!(w.record([5], 10, 3), None);
        assert_eq!(w.record([9], 10, 3), Some(3));
        for t in 10..1000 {
            // A steady stream: still one run, no new alert, and never more than 3 kept.
            assert_eq!(w.record([t], 10, 3), None);
            assert_eq!(w.heap_bytes(), 3 * 8);
        }
        assert_eq!(w.newest(), 999);
        // A failure older than the window (relative to the newest) is not counted.
        assert_eq!(w.record([100], 10, 3), None);
        assert_eq!(w.newest(), 999);
        // After a gap the window is empty again: the next run alerts.
        assert_eq!(w.record([2000], 10, 3), None);
        assert_eq!(w.record([2001], 10, 3), None);
        assert_eq!(w.record([2002], 10, 3), Some(3));
    }

    #[test]
    fn late_records_land_in_order_and_extra_values_follow_them() {
        let mut w = FailureWindow::<2>::default();
        assert_eq!(w.record([10, 1], 100, 4), None);
        assert_eq!(w.record([30, 2], 100, 4), None);
        assert_eq!(w.record([20, 1], 100, 4), None);
        assert_eq!(w.newest(), 30);
        assert_eq!(&*w.records, &[10, 1, 20, 1, 30, 2]);
        assert_eq!(w.distinct_second(), 2);
        assert_eq!(w.record([40, 3], 100, 4), Some(4));
        assert_eq!(w.distinct_second(), 3);
    }

    #[test]
    fn user_lists_stay_apart() {
        let mut u = UserState::default();
        u.add_session(11, 3);
        u.learn_address(21, 2);
        assert_eq!(u.record_failure(100, 50, 2), None);
        u.add_session(12, 3);
        u.learn_address(22, 2);
        assert_eq!(u.record_failure(101, 50, 2), Some(2));
        assert!(u.has_session(11) && u.has_session(12) && !u.has_session(21));
        assert!(u.knows_address(21) && u.knows_address(22) && !u.knows_address(11));
        // Caps: the oldest goes.
        u.learn_address(23, 2);
        assert!(!u.knows_address(21) && u.knows_address(23));
        u.add_session(13, 3);
        u.add_session(14, 3);
        assert_eq!(u.session_count(), 3);
        assert!(!u.has_session(11) && u.has_session(14));
        assert!(u.end_session(13));
        assert!(!u.end_session(13));
        u.end_oldest_session();
        assert_eq!(u.session_count(), 1);
        assert!(u.has_session(14));
        assert_eq!(u.heap_bytes(), (2 + 1 + 2) * 8);
        assert!(!u.is_idle(i64::MAX));
        u.end_oldest_session();
        u.end_oldest_session();
        let mut v = UserState::default();
        assert!(v.is_idle(0));
        v.record_failure(5, 10, 3);
        assert!(!v.is_idle(4));
        assert!(v.is_idle(5));
        v.record_failure(7, 10, 3);
        v.forget_failures_through(5);
        assert_eq!(v.heap_bytes(), 8);
        assert!(!v.is_idle(6));
        v.forget_failures_through(7);
        assert_eq!(v.heap_bytes(), 0);
        assert!(v.is_idle(i64::MIN));
    }
}
