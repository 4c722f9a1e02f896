//! The outbox's tail in memory: rows the writer just committed, handed to the relay so that it
//! does not read back from SQLite what was written a moment ago.
//!
//! The outbox file stays the truth. The tail is only a shortcut for the common case (the relay
//! keeps up, or is behind by less than the cap): it holds at most `cap` bytes of rows, and the
//! writer skips it while it is full, so a relay
//! that falls behind, restarts its window after a failure, or starts on a non-empty outbox reads
//! the rows from disk as before. A row is handed out only when the tail holds exactly the
//! sequence number the relay asks for next, so order and completeness never depend on it.

use crate::outbox::PendingRow;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// What the relay gets for the sequence number it asks for.
#[derive(Debug)]
pub(crate) enum Take {
    /// Rows starting exactly at the asked number, contiguous.
    Rows(Vec<PendingRow>),
    /// Nothing is committed at or after the asked number: no need to look on disk.
    CaughtUp,
    /// The tail cannot answer (it skipped rows, or was never given them): read the outbox.
    ReadDisk,
}

#[derive(Debug)]
struct State {
    rows: VecDeque<PendingRow>,
    /// The rows' size, as [`weight`] counts it.
    bytes: usize,
    /// The highest sequence number committed (handed to the tail or skipped).
    committed_upto: i64,
}

/// Committed rows waiting for the relay.
#[derive(Debug)]
pub(crate) struct Tail {
    state: Mutex<State>,
    cap: usize,
}

impl Tail {
    /// A tail of at most `cap` bytes; `committed_upto` is the last sequence number already in the
    /// outbox file when the bridge starts (those rows are read from disk).
    pub(crate) fn new(cap: usize, committed_upto: i64) -> Tail {
        Tail {
            state: Mutex::new(State {
                rows: VecDeque::new(),
                bytes: 0,
                committed_upto,
            }),
            cap,
        }
    }

    /// Called by the writer after each commit, with the rows it appended, in order.
    pub(crate) fn committed(&self, rows: Vec<PendingRow>) {
        let size: usize = rows.iter().map(weight).sum();
        let mut s = self.state.lock();
        if let Some(last) = rows.last() {
            s.committed_upto = s.committed_upto.max(last.seq);
        }
        // Rows that do not all fit are left on disk, whole commits at a time, so the tail
        // never hands out a batch with a hole in it.
        if s.bytes + size <= self.cap {
            s.bytes += size;
            s.rows.extend(rows);
        }
    }

    /// Up to `limit` rows starting at sequence number `from`.
    pub(crate) fn take(&self, from: i64, limit: usize) -> Take {
        let mut s = self.state.lock();
        while s.rows.front().is_some_and(|r| r.seq < from) {
            if let Some(row) = s.rows.pop_front() {
                s.bytes -= weight(&row);
            }
        }
        match s.rows.front() {
            Some(first) if first.seq == from => {
                let mut out = Vec::with_capacity(limit.min(s.rows.len()));
                let mut expect = from;
                while out.len() < limit && s.rows.front().is_some_and(|r| r.seq == expect) {
                    if let Some(row) = s.rows.pop_front() {
                        s.bytes -= weight(&row);
                        out.push(row);
                    }
                    expect += 1;
                }
                Take::Rows(out)
            }
            None if from > s.committed_upto => Take::CaughtUp,
            _ => Take::ReadDisk,
        }
    }
}

fn weight(row: &PendingRow) -> usize {
    row.weight()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use plugbus::{Event, EventType};

    fn row(seq: i64) -> PendingRow {
        let mut enc = crate::record::Encoder::default();
        enc.push_event(&Event::builder(EventType::USER_LOGIN).build().unwrap())
            .unwrap();
        enc.take(seq).remove(0)
    }

    fn seqs(t: Take) -> Vec<i64> {
        match t {
            Take::Rows(r) => r.iter().map(|r| r.seq).collect(),
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[test]
    fn hands_out_contiguous_rows_then_says_caught_up() {
        let t = Tail::new(1 << 20, 0);
        assert!(matches!(t.take(1, 10), Take::CaughtUp));
        t.committed((1..=5).map(row).collect());
        assert_eq!(seqs(t.take(1, 3)), vec![1, 2, 3]);
        assert_eq!(seqs(t.take(4, 10)), vec![4, 5]);
        assert!(matches!(t.take(6, 10), Take::CaughtUp));
    }

    #[test]
    fn rows_already_on_disk_at_start_are_read_from_disk() {
        let t = Tail::new(1 << 20, 7);
        assert!(matches!(t.take(0, 10), Take::ReadDisk));
        t.committed((8..=9).map(row).collect());
        // The relay read 1..=7 from disk and asks for 8 next.
        assert_eq!(seqs(t.take(8, 10)), vec![8, 9]);
    }

    #[test]
    fn a_full_tail_skips_whole_commits_and_never_hands_out_a_hole() {
        let t = Tail::new(4 * weight(&row(1)), 0);
        t.committed((1..=3).map(row).collect());
        t.committed((4..=6).map(row).collect()); // does not fit: left on disk
        t.committed(vec![row(7)]);
        assert_eq!(seqs(t.take(1, 10)), vec![1, 2, 3]);
        // 4..=6 are only on disk.
        assert!(matches!(t.take(4, 10), Take::ReadDisk));
        // After reading 4..=7 from disk, the stale 7 is dropped.
        assert!(matches!(t.take(8, 10), Take::CaughtUp));
    }

    #[test]
    fn a_relay_that_starts_again_from_an_older_row_reads_the_disk() {
        let t = Tail::new(1 << 20, 0);
        t.committed((1..=5).map(row).collect());
        assert_eq!(seqs(t.take(1, 5)), vec![1, 2, 3, 4, 5]);
        t.committed((6..=8).map(row).collect());
        // A failure: the relay goes back to the oldest unacknowledged row.
        assert!(matches!(t.take(3, 10), Take::ReadDisk));
    }
}
