//! The relay: outbox rows -> JetStream, in order, each row deleted once JetStream acked it.
//!
//! Rows are read in `seq` order and published without waiting for each ack (up to
//! `max_in_flight` outstanding). Each message names its reply subject,
//! `<inbox>.<attempt>.<seq>`, and every JetStream ack comes back on one subscription
//! (`<inbox>.>`), where its row is found by that `seq`. This is what a JetStream publish is on
//! the wire; doing it here rather than through the client's per-message request (a oneshot, a
//! timer, a boxed future and a request-map entry for every message) halves what the relay
//! costs per event.
//!
//! The rows acked without a gap from the oldest are handed to the writer for deletion. The
//! first failure (an error answer, no stream for the subject, no ack within the request
//! timeout, the connection lost) drops everything still outstanding and starts again from the
//! oldest unacknowledged row after a backoff, so order is kept; rows the stream already had
//! come back as duplicates (their event id is the `Nats-Msg-Id`) and are deleted like the
//! others. Each restart is a new `attempt`: a refusal from an earlier one (the rest of a window
//! refused at once) is not taken for one of the rows sent again, while an ack from an earlier
//! one is still true (the stream has that row) and is taken as such.

use crate::counters::Counters;
use crate::headers;
use crate::outbox::{PendingRow, Reader};
use crate::subject::subject_for;
use crate::tail::{Tail, Take};
use crate::writer::Cmd;
use async_nats::{Client, Message, StatusCode, Subject, Subscriber};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Rows read from the outbox per query.
const READ_BATCH: usize = 1024;

/// Backoff after a failure: from this ...
const BACKOFF_START: Duration = Duration::from_millis(100);
/// ... doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How often the relay looks at the connection and at the oldest outstanding row.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Disconnected this long, the outstanding acks are given up: they would only time out (the
/// request timeout, seconds), so the window is sent again as soon as the broker is back (what
/// it had already is dropped by its duplicate window).
const LOST_AFTER: Duration = Duration::from_millis(100);

pub(crate) struct Relay {
    pub(crate) client: Client,
    pub(crate) reader: Arc<parking_lot::Mutex<Reader>>,
    /// Rows just committed, so the common case needs no read of the file.
    pub(crate) tail: Arc<Tail>,
    pub(crate) writer: Sender<Cmd>,
    pub(crate) appended: Arc<Notify>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) host: String,
    pub(crate) prefix: String,
    pub(crate) window: usize,
    /// How long a row may wait for its ack.
    pub(crate) ack_timeout: Duration,
    /// Set once the stream is known to exist.
    pub(crate) ready: watch::Receiver<bool>,
}

/// A row sent and not yet acknowledged without a gap.
struct Slot {
    seq: i64,
    sent: Instant,
    /// `Some(duplicate)` once JetStream acked it.
    acked: Option<bool>,
}

/// A JetStream publish ack (`{"stream":"S","seq":7}`, `"duplicate":true` when the stream had
/// the message id already) or its refusal (`{"error":{"code":503,"description":"..."}}`).
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<AnswerError>,
}

#[derive(Deserialize)]
struct AnswerError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    description: String,
}

/// What one answer says about row `seq`.
fn read_answer(message: &Message) -> Result<bool, String> {
    if message.status == Some(StatusCode::NO_RESPONDERS) {
        return Err(format!("no stream takes subject {}", message.subject));
    }
    match serde_json::from_slice::<Answer>(&message.payload) {
        Ok(Answer { error: Some(e), .. }) => Err(format!(
            "JetStream refused the message ({}): {}",
            e.code, e.description
        )),
        Ok(Answer { duplicate, .. }) => Ok(duplicate),
        Err(e) => Err(format!("an unreadable JetStream acknowledgement: {e}")),
    }
}

/// The attempt and the `seq` a reply subject `<inbox>.<attempt>.<seq>` names.
fn seq_of(subject: &Subject) -> Option<(u64, i64)> {
    let mut tail = subject.as_str().rsplit('.');
    let seq = tail.next()?.parse().ok()?;
    let attempt = tail.next()?.parse().ok()?;
    Some((attempt, seq))
}

/// Why the window is sent again.
struct Failed(String);

/// The relay's moving parts between two failures.
struct Window {
    /// Which attempt this is (one more after every failure).
    attempt: u64,
    out: VecDeque<Slot>,
    /// The next row to read.
    next: i64,
    /// The last row acknowledged with every row before it.
    acked_upto: Option<i64>,
}

impl Window {
    /// Takes an answer; returns a failure to restart on.
    fn answer(&mut self, message: &Message) -> Result<(), Failed> {
        let Some((attempt, seq)) = seq_of(&message.subject) else {
            return Ok(());
        };
        let slot = self
            .out
            .binary_search_by_key(&seq, |s| s.seq)
            .ok()
            .and_then(|i| self.out.get_mut(i));
        match (read_answer(message), slot) {
            (Ok(duplicate), Some(slot)) => {
                slot.acked = Some(duplicate);
                Ok(())
            }
            (Err(e), Some(_)) if attempt == self.attempt => Err(Failed(e)),
            // For a row acked already or not sent again yet, or a refusal from an earlier
            // attempt (that failure was taken then).
            _ => Ok(()),
        }
    }

    /// Drops the rows acked without a gap from the oldest: how many, how many of them the
    /// stream had already, and the last one's number.
    fn settle(&mut self) -> Option<(u64, u64, i64)> {
        let (mut settled, mut duplicates, mut last) = (0, 0, None);
        while let Some(duplicate) = self.out.front().and_then(|s| s.acked) {
            if let Some(slot) = self.out.pop_front() {
                settled += 1;
                duplicates += u64::from(duplicate);
                last = Some(slot.seq);
            }
        }
        let last = last?;
        self.acked_upto = Some(last);
        Some((settled, duplicates, last))
    }
}

impl Relay {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut ready = self.ready.clone();
        // Wait for the stream (the broker may be down at start; the outbox fills meanwhile).
        while !*ready.borrow() {
            tokio::select! {
                r = ready.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
        let inbox = self.client.new_inbox();
        let Some(mut answers) = self.subscribe(&inbox, &mut stop).await else {
            return;
        };
        let mut w = Window {
            attempt: 0,
            out: VecDeque::new(),
            next: 0,
            acked_upto: None,
        };
        let mut backoff = BACKOFF_START;
        let mut failing = false;
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down_since: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let mut failed = self.fill(&inbox, &mut w).await.err();
            if failed.is_none() {
                let room = w.out.len() < self.window;
                if w.out.is_empty() {
                    // Nothing outstanding: wait for the writer (or look again now and then).
                    tokio::select! {
                        _ = self.appended.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stop.changed() => break,
                    }
                    continue;
                }
                tokio::select! {
                    m = answers.next() => match m {
                        Some(m) => failed = self.take_answers(&mut w, &m, &mut answers).err(),
                        None => {
                            // Its acks are lost with it: a new one, and the window again.
                            let Some(again) = self.subscribe(&inbox, &mut stop).await else {
                                break;
                            };
                            answers = again;
                            failed = Some(Failed("the subscription to JetStream's acknowledgements ended".to_owned()));
                        }
                    },
                    _ = self.appended.notified(), if room => {}
                    _ = check.tick() => failed = self.check(&w, &mut down_since).err(),
                    _ = stop.changed() => break,
                }
            }
            if let Some(seq) = self.settle(&mut w) {
                if self.writer.send(Cmd::Acked(seq)).is_err() {
                    break;
                }
                if failing {
                    tracing::info!("the broker acknowledges again; the outbox drains");
                    failing = false;
                }
                backoff = BACKOFF_START;
            }
            if let Some(Failed(e)) = failed {
                Counters::add(&self.counters.publish_errors, 1);
                if !failing {
                    tracing::warn!(error = %e, "publishing to JetStream failed; events stay in the outbox and are sent again");
                    failing = true;
                }
                w.out.clear();
                w.attempt += 1;
                w.next = w.acked_upto.map_or(0, |a| a + 1);
                down_since = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        let _ = answers.unsubscribe().await;
    }

    /// Subscribes to the acks sent to `inbox`, trying again until it works; `None` once asked
    /// to stop.
    async fn subscribe(&self, inbox: &str, stop: &mut watch::Receiver<bool>) -> Option<Subscriber> {
        let mut backoff = BACKOFF_START;
        loop {
            match self.client.subscribe(format!("{inbox}.>")).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "subscribing to JetStream's acknowledgements failed; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return None,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sends rows until the window is full or the outbox has no more.
    async fn fill(&self, inbox: &str, w: &mut Window) -> Result<(), Failed> {
        while w.out.len() < self.window {
            let rows = self
                .read(w.next, (self.window - w.out.len()).min(READ_BATCH))
                .await;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let seq = row.seq;
                w.next = seq + 1;
                self.send(inbox, w.attempt, row).await.map_err(Failed)?;
                w.out.push_back(Slot {
                    seq,
                    sent: Instant::now(),
                    acked: None,
                });
            }
        }
        Ok(())
    }

    /// Takes `first` and every answer already waiting behind it.
    fn take_answers(
        &self,
        w: &mut Window,
        first: &Message,
        answers: &mut Subscriber,
    ) -> Result<(), Failed> {
        w.answer(first)?;
        while let Some(Some(m)) = answers.next().now_or_never() {
            w.answer(&m)?;
        }
        Ok(())
    }

    /// Counts the rows acked without a gap from the oldest and drops them from the window;
    /// the last of them, if any.
    fn settle(&self, w: &mut Window) -> Option<i64> {
        let (forwarded, duplicates, last) = w.settle()?;
        Counters::add(&self.counters.forwarded, forwarded);
        Counters::add(&self.counters.broker_duplicates, duplicates);
        Some(last)
    }

    /// The periodic look: the oldest row waited too long, or the connection is gone.
    fn check(&self, w: &Window, down_since: &mut Option<Instant>) -> Result<(), Failed> {
        if let Some(oldest) = w.out.front() {
            if oldest.sent.elapsed() >= self.ack_timeout {
                return Err(Failed(format!(
                    "no acknowledgement within {:?}",
                    self.ack_timeout
                )));
            }
        }
        if self.client.connection_state() == async_nats::connection::State::Connected {
            *down_since = None;
        } else if down_since.get_or_insert_with(Instant::now).elapsed() >= LOST_AFTER {
            return Err(Failed("the connection to the broker was lost".to_owned()));
        }
        Ok(())
    }

    async fn read(&self, from: i64, limit: usize) -> Vec<PendingRow> {
        match self.tail.take(from, limit) {
            Take::Rows(rows) => return rows,
            Take::CaughtUp => return Vec::new(),
            Take::ReadDisk => {}
        }
        let reader = self.reader.clone();
        match tokio::task::spawn_blocking(move || reader.lock().pending(from, limit)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the outbox failed");
                tokio::time::sleep(BACKOFF_START).await;
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn send(&self, inbox: &str, attempt: u64, row: PendingRow) -> Result<(), String> {
        use std::fmt::Write;
        let mut reply = String::with_capacity(inbox.len() + 32);
        let _ = write!(reply, "{inbox}.{attempt}.{}", row.seq);
        let subject = subject_for(&self.prefix, row.event_type());
        self.client
            .publish_with_reply_and_headers(
                subject,
                reply,
                headers::build(&self.host, &row),
                row.body(),
            )
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(subject: &str, payload: &str) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: Bytes::from(payload.to_owned()),
            headers: None,
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn an_ack_names_its_row_and_says_whether_it_was_a_duplicate() {
        let m = message(
            "_INBOX.x.3.42",
            r#"{"stream":"S","seq":7,"duplicate":true}"#,
        );
        assert_eq!(seq_of(&m.subject), Some((3, 42)));
        assert_eq!(read_answer(&m), Ok(true));
        let m = message("_INBOX.x.43", r#"{"stream":"S","seq":8}"#);
        assert_eq!(read_answer(&m), Ok(false));
    }

    #[test]
    fn a_refusal_or_no_stream_is_a_failure_that_says_why() {
        let m = message(
            "_INBOX.x.1",
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#,
        );
        let e = read_answer(&m).unwrap_err();
        assert!(
            e.contains("503") && e.contains("maximum messages exceeded"),
            "{e}"
        );
        let mut m = message("_INBOX.x.1", "");
        m.status = Some(StatusCode::NO_RESPONDERS);
        assert!(read_answer(&m).unwrap_err().contains("no stream"));
        assert!(read_answer(&message("_INBOX.x.1", "not json")).is_err());
    }

    #[test]
    fn rows_settle_only_without_a_gap_from_the_oldest() {
        let mut w = Window {
            attempt: 1,
            out: (1..=3)
                .map(|seq| Slot {
                    seq,
                    sent: Instant::now(),
                    acked: None,
                })
                .collect(),
            next: 4,
            acked_upto: None,
        };
        let ok = |attempt: u64, seq: i64| {
            message(
                &format!("_INBOX.x.{attempt}.{seq}"),
                r#"{"stream":"S","seq":1}"#,
            )
        };
        let refused = |attempt: u64, seq: i64| {
            message(
                &format!("_INBOX.x.{attempt}.{seq}"),
                r#"{"error":{"code":503,"description":"maximum messages exceeded"}}"#,
            )
        };
        // A refusal left over from the attempt before is not this attempt's failure.
        assert!(w.answer(&refused(0, 3)).is_ok());
        assert!(w.answer(&refused(1, 3)).is_err());
        assert!(w.answer(&ok(1, 2)).is_ok());
        assert!(w.out.front().is_some_and(|s| s.acked.is_none()));
        // An ack from the attempt before is still true.
        assert!(w.answer(&ok(0, 1)).is_ok());
        // An answer for a row not outstanding changes nothing.
        assert!(w.answer(&ok(1, 99)).is_ok());
        // 1 (acked by the attempt before) and 2 settle; 3 waits for its own answer.
        assert_eq!(w.settle(), Some((2, 0, 2)));
        assert_eq!(w.acked_upto, Some(2));
        assert_eq!(w.settle(), None);
        assert_eq!(w.out.len(), 1);
    }
}
