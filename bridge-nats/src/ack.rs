//! Confirmed acks, sent in order, beside the receiving.
//!
//! A received batch is acked once the ids it delivered are on disk (`plugbus_inbox_seen`), and
//! those ids are forgotten once the server confirms the ack. Waiting for either inside the
//! receive loop would stall it, so the acks go to a task of their own: it waits for each write,
//! then sends the ack with a reply subject, **in the order the receiver asked** (an ack sent
//! after a later "ack all" would be for a message already acknowledged, which the server does
//! not answer). The answers come on one subscription (`<inbox>.<k>`) and are matched to their
//! ack by `k`; many acks are outstanding at once. The server handles a connection's messages in
//! order, so the answer to ack `k` confirms every ack before it too (one lost to a reconnect
//! is covered by the next "ack all"); an ack whose answer is lost is counted, and its ids
//! forgotten, when a later answer covers it. A stopping receiver waits [`ANSWER_WAIT`] at most
//! for the last answers.

use crate::counters::Counters;
use crate::writer::Cmd;
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// One ack to send: for the message whose reply subject is `reply`, covering `count` messages,
/// once `written` says the ids delivered up to number `upto` are on disk.
pub(crate) struct AckJob {
    pub(crate) written: Option<oneshot::Receiver<bool>>,
    pub(crate) reply: Subject,
    pub(crate) upto: i64,
    pub(crate) count: u64,
}

/// The acks of one bridge's receiver.
#[derive(Clone)]
pub(crate) struct Acker {
    jobs: mpsc::UnboundedSender<AckJob>,
    unanswered: Arc<Unanswered>,
}

/// How long a stopping receiver waits for an ack's answer.
pub(crate) const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What an unanswered ack stands for.
struct Sent {
    upto: i64,
    count: u64,
    at: Instant,
}

/// Acks on their way.
#[derive(Default)]
struct Unanswered {
    /// Sent and not answered, by `k` (oldest first). An ack whose answer was lost stays until
    /// a later answer covers it (and counts it): the map holds only the acks since the last
    /// answer.
    sent: Mutex<BTreeMap<u64, Sent>>,
    /// Queued and not sent (or failed) yet.
    queued: AtomicUsize,
}

impl Unanswered {
    /// True while an ack is queued, or sent less than [`ANSWER_WAIT`] ago and unanswered.
    fn waiting(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
            || self
                .sent
                .lock()
                .values()
                .next_back()
                .is_some_and(|s| s.at.elapsed() < ANSWER_WAIT)
    }
}

impl Acker {
    /// Subscribes to the answers and starts the task that sends the acks.
    ///
    /// # Errors
    /// The answers' subscription cannot be made.
    pub(crate) async fn start(
        client: Client,
        writer: std::sync::mpsc::Sender<Cmd>,
        counters: Arc<Counters>,
    ) -> Result<Acker, async_nats::SubscribeError> {
        let inbox = client.new_inbox();
        let mut answers = client.subscribe(format!("{inbox}.*")).await?;
        let (jobs, mut queue) = mpsc::unbounded_channel::<AckJob>();
        let unanswered = Arc::new(Unanswered::default());
        let answered = unanswered.clone();
        // The answers: the one to ack `k` (the last part of its subject) confirms every ack
        // up to `k`.
        tokio::spawn(async move {
            while let Some(answer) = answers.next().await {
                let Some(k) = answer
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|k| k.parse::<u64>().ok())
                else {
                    continue;
                };
                let confirmed = {
                    let mut sent = answered.sent.lock();
                    let newer = sent.split_off(&(k + 1));
                    std::mem::replace(&mut *sent, newer)
                };
                if confirmed.is_empty() {
                    continue;
                }
                let count: u64 = confirmed.values().map(|s| s.count).sum();
                let upto = confirmed.values().map(|s| s.upto).max().unwrap_or(0);
                Counters::add(&counters.acked, count);
                let _ = writer.send(Cmd::SeenConfirmed(upto));
            }
        });
        // The sender: in order, each after its write.
        let sender = unanswered.clone();
        tokio::spawn(async move {
            let mut k: u64 = 0;
            while let Some(job) = queue.recv().await {
                if let Some(written) = job.written {
                    if !matches!(written.await, Ok(true)) {
                        tracing::warn!("remembering received event ids failed: if this host stops before the ack is confirmed, JetStream's redelivery reaches the bus again");
                    }
                }
                k += 1;
                sender.sent.lock().insert(
                    k,
                    Sent {
                        upto: job.upto,
                        count: job.count,
                        at: Instant::now(),
                    },
                );
                sender.queued.fetch_sub(1, Ordering::AcqRel);
                let reply = format!("{inbox}.{k}");
                if let Err(e) = client
                    .publish_with_reply(job.reply, reply, Bytes::from_static(b"+ACK"))
                    .await
                {
                    // The server redelivers after the ack wait; dedup drops the copies.
                    tracing::debug!(error = %e, "acking a message failed");
                    sender.sent.lock().remove(&k);
                }
            }
        });
        Ok(Acker { jobs, unanswered })
    }

    /// Queues an ack (sent after every ack queued before it).
    pub(crate) fn ack(&self, job: AckJob) {
        self.unanswered.queued.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(job).is_err() {
            self.unanswered.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until every queued ack is sent and answered (an answer not come within
    /// [`ANSWER_WAIT`] is not waited for), at most `limit`.
    pub(crate) async fn settled(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.unanswered.waiting() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
