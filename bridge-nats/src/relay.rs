//! The relay: outbox rows -> JetStream, in order, each row deleted once JetStream acked it.
//!
//! Rows are read in `seq` order and published without waiting for each ack (up to
//! `max_in_flight` outstanding); acks are taken in the same order. The first failure (broker
//! down, ack timeout) drops everything still outstanding and starts again from the oldest
//! unacknowledged row after a backoff, so order is kept; rows the stream already had come back
//! as duplicates (their event id is the `Nats-Msg-Id`) and are deleted like the others.

use crate::counters::Counters;
use crate::headers;
use crate::outbox::{PendingRow, Reader};
use crate::subject::subject_for;
use crate::tail::{Tail, Take};
use crate::writer::Cmd;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use std::future::IntoFuture;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Rows read from the outbox per query.
const READ_BATCH: usize = 1024;

/// Backoff after a failure: from this ...
const BACKOFF_START: Duration = Duration::from_millis(100);
/// ... doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

type AckFuture = BoxFuture<'static, (i64, Result<bool, String>)>;

pub(crate) struct Relay {
    pub(crate) js: Context,
    pub(crate) reader: Arc<parking_lot::Mutex<Reader>>,
    /// Rows just committed, so the common case needs no read of the file.
    pub(crate) tail: Arc<Tail>,
    pub(crate) writer: Sender<Cmd>,
    pub(crate) appended: Arc<Notify>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) host: String,
    pub(crate) prefix: String,
    pub(crate) window: usize,
    /// Set once the stream is known to exist.
    pub(crate) ready: watch::Receiver<bool>,
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
        let mut next: i64 = 0;
        let mut acked_upto: Option<i64> = None;
        let mut inflight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        let mut backoff = BACKOFF_START;
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            // Fill the window.
            let mut failed = None;
            while inflight.len() < self.window {
                let rows = self
                    .read(next, (self.window - inflight.len()).min(READ_BATCH))
                    .await;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    let seq = row.seq;
                    next = seq + 1;
                    match self.send(row).await {
                        Ok(ack) => {
                            inflight.push_back(
                                ack.into_future()
                                    .map(move |r| {
                                        (seq, r.map(|a| a.duplicate).map_err(|e| e.to_string()))
                                    })
                                    .boxed(),
                            );
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if failed.is_some() {
                    break;
                }
            }
            // Take acks: at least one if any is outstanding, then every one already in.
            if failed.is_none() && !inflight.is_empty() {
                let mut progressed = None;
                let first = tokio::select! {
                    a = inflight.next() => a,
                    _ = self.connection_lost() => {
                        Some((acked_upto.map_or(0, |a| a + 1), Err("the connection to the broker was lost".to_owned())))
                    }
                    _ = stop.changed() => return,
                };
                let mut answer = first;
                while let Some((seq, result)) = answer {
                    match result {
                        Ok(duplicate) => {
                            Counters::add(&self.counters.forwarded, 1);
                            if duplicate {
                                Counters::add(&self.counters.broker_duplicates, 1);
                            }
                            progressed = Some(seq);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    answer = match inflight.next().now_or_never() {
                        Some(Some(a)) => Some(a),
                        _ => None,
                    };
                }
                if let Some(seq) = progressed {
                    acked_upto = Some(seq);
                    if self.writer.send(Cmd::Acked(seq)).is_err() {
                        return;
                    }
                    if failing {
                        tracing::info!("the broker acknowledges again; the outbox drains");
                        failing = false;
                    }
                    backoff = BACKOFF_START;
                }
            }
            if let Some(e) = failed {
                Counters::add(&self.counters.publish_errors, 1);
                if !failing {
                    tracing::warn!(error = %e, "publishing to JetStream failed; events stay in the outbox and are sent again");
                    failing = true;
                }
                inflight = FuturesOrdered::new();
                next = acked_upto.map_or(0, |a| a + 1);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            if inflight.is_empty() {
                // Nothing to send: wait for the writer (or look again now and then).
                tokio::select! {
                    _ = self.appended.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// Resolves once the client has been disconnected for a moment: the acks outstanding then
    /// would only time out (after the request timeout, seconds), so the window is sent again
    /// as soon as the broker is back (what it had already is dropped by its duplicate window).
    async fn connection_lost(&self) {
        let client = self.js.client();
        let mut down_since: Option<std::time::Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if client.connection_state() == async_nats::connection::State::Connected {
                down_since = None;
            } else if down_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                >= Duration::from_millis(100)
            {
                return;
            }
        }
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

    async fn send(&self, row: PendingRow) -> Result<PublishAckFuture, String> {
        let publish = PublishMessage::build()
            .headers(headers::build(&self.host, &row.stamp))
            .payload(Bytes::from(row.body));
        self.js
            .send_publish(subject_for(&self.prefix, &row.event_type), publish)
            .await
            .map_err(|e| e.to_string())
    }
}
