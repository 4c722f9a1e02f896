//! The receiving side: this host's durable pull consumer -> the local bus.
//!
//! For each message, in order:
//! 1. sent by this host (`Plugbus-Host` is ours): acked and dropped (loop prevention);
//! 2. not a valid envelope: terminated (never redelivered), counted as malformed;
//! 3. an id seen lately: acked and dropped, so a redelivery reaches each subscription once;
//! 4. outside the `receive` patterns (the consumer's filter covers them all at once):
//!    acked and dropped;
//! 5. refused by the admission check (e.g. a remote claiming the host's own types): terminated;
//! 6. otherwise stamped `remote:<host>` and **published** on the local bus, which returns once
//!    every matching subscription has its outcome (delivered, or failed and dead-lettered with
//!    the reason): only then is it acked. If the bus refuses it (shutting down), the message is
//!    nacked with a delay, for this host's next start.
//!
//! Before a message is acked, the ids of the events delivered since the last ack are written
//! to the outbox file (`plugbus_inbox_seen`), and they are removed once the server confirms
//! the ack: a host killed between delivering and acking loads them at its next start and drops
//! the messages JetStream redelivers then. The write and the confirmed ack run beside the
//! receiving (see [`crate::ack`]), so messages keep flowing meanwhile.
//!
//! Acks come in batches when the consumer's policy is "all" (`ack_batch` > 1): one ack for
//! the last handled message covers every one before it, sent after `ack_batch` messages or as
//! soon as no further message is waiting, so an idle consumer owes nothing. A terminated
//! message is covered the same way (it is never redelivered either). A nack cannot be: the
//! batch before it is acked, the message nacked, and the message stream dropped, so nothing
//! after it is acked past it (the consumer starts again from the server's ack floor).

use crate::ack::{AckJob, Acker};
use crate::counters::Counters;
use crate::dedup::SeenIds;
use crate::headers;
use crate::writer::Cmd;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::Message;
use async_nats::jetstream::AckKind;
use futures_util::{FutureExt, StreamExt};
use plugbus::{Bus, Event, Interest, Origin};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The admission check: why a remote event may not enter, if it may not.
pub type Admission = Arc<dyn Fn(&Event) -> Option<String> + Send + Sync>;

/// The delay asked for on a nack: from this ...
const NAK_START: Duration = Duration::from_millis(250);
/// ... doubling per delivery up to this.
const NAK_MAX: Duration = Duration::from_secs(10);

pub(crate) struct Receiver {
    pub(crate) consumer: pull::Stream,
    /// Messages acknowledged with one ack, at most (1: each on its own).
    pub(crate) ack_batch: usize,
    pub(crate) bus: Bus,
    pub(crate) host: String,
    pub(crate) interest: Interest,
    pub(crate) seen: SeenIds,
    /// The number the next remembered id gets (numbers only grow, across restarts too).
    pub(crate) next_n: i64,
    /// Ids delivered since the last ack, not written yet.
    pub(crate) unsaved: Vec<(i64, String)>,
    /// The outbox writer, which remembers the ids.
    pub(crate) writer: std::sync::mpsc::Sender<Cmd>,
    /// Sends the batch acks, each after its ids are written, and forgets the ids once
    /// the server confirms.
    pub(crate) acker: Acker,
    pub(crate) admission: Option<Admission>,
    pub(crate) counters: Arc<Counters>,
}

/// How long a stopping receiver waits for its acks to be confirmed.
const ACKS_AT_STOP: Duration = Duration::from_secs(5);

/// What became of one message.
enum Verdict {
    Ack,
    Term,
    Nak(Duration),
}

impl Receiver {
    /// Takes messages until `stop` or the stream ends (then the caller makes a new one); when
    /// stopped, waits (a while) for the acks it sent to be confirmed.
    pub(crate) async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let stopped = self.receive(stop).await;
        // A stream that ended (the server went away, say) is followed by a new one at once,
        // with the same acker.
        if stopped {
            self.acker.settled(ACKS_AT_STOP).await;
        }
        stopped
    }

    async fn receive(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        // The last handled message not acknowledged yet, and how many it stands for.
        let mut owed: Option<(Message, u64)> = None;
        loop {
            // Nothing waiting: settle what is owed before waiting.
            let ready = match self.consumer.next().now_or_never() {
                Some(m) => Some(m),
                None => {
                    self.settle(&mut owed).await;
                    None
                }
            };
            let next = match ready {
                Some(m) => m,
                None => tokio::select! {
                    m = self.consumer.next() => m,
                    _ = stop.changed() => return true,
                },
            };
            let message = match next {
                None => {
                    self.settle(&mut owed).await;
                    return false;
                }
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the consumer reported an error");
                    continue;
                }
            };
            let verdict = self.handle(&message).await;
            match verdict {
                Verdict::Nak(delay) => {
                    self.settle(&mut owed).await;
                    match message.ack_with(AckKind::Nak(Some(delay))).await {
                        Ok(()) => Counters::add(&self.counters.nacked, 1),
                        Err(e) => tracing::debug!(error = %e, "nacking a message failed"),
                    }
                    if self.ack_batch > 1 {
                        // An ack past it would cover it: start again from the ack floor.
                        return false;
                    }
                }
                Verdict::Term if self.ack_batch <= 1 => {
                    self.ack(&message, AckKind::Term, 1).await;
                }
                Verdict::Ack | Verdict::Term => {
                    let count = owed.take().map_or(0, |(_, n)| n) + 1;
                    owed = Some((message, count));
                    if count >= self.ack_batch as u64 {
                        self.settle(&mut owed).await;
                    }
                }
            }
            if *stop.borrow() {
                self.settle(&mut owed).await;
                return true;
            }
        }
    }

    /// Acknowledges what is owed: the last handled message, covering those before it, once
    /// the ids delivered before it are on disk; they are forgotten when the server confirms.
    async fn settle(&mut self, owed: &mut Option<(Message, u64)>) {
        let Some((message, count)) = owed.take() else {
            return;
        };
        let upto = self.next_n - 1;
        let written = if self.unsaved.is_empty() {
            None
        } else {
            let (answer, written) = tokio::sync::oneshot::channel();
            let ids = std::mem::take(&mut self.unsaved);
            self.writer
                .send(Cmd::Seen(ids, answer))
                .ok()
                .map(|()| written)
        };
        match message.reply.clone() {
            Some(reply) => self.acker.ack(AckJob {
                written,
                reply,
                upto,
                count,
            }),
            None => {
                tracing::debug!(subject = %message.subject, "a message without a reply subject cannot be acked")
            }
        }
    }

    async fn ack(&self, message: &Message, kind: AckKind, count: u64) {
        match message.ack_with(kind).await {
            Ok(()) => Counters::add(&self.counters.acked, count),
            // The server redelivers after the ack wait; dedup drops the copies.
            Err(e) => tracing::debug!(error = %e, "acking a message failed"),
        }
    }

    async fn handle(&mut self, message: &Message) -> Verdict {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        if delivered > 1 {
            Counters::add(&self.counters.redelivered, 1);
        }
        let hdrs = message.headers.as_ref();
        let from = headers::get(hdrs, headers::HOST).unwrap_or("unknown");
        if from == self.host {
            Counters::add(&self.counters.own, 1);
            return Verdict::Ack;
        }
        let event = match Event::from_json(&message.payload) {
            Ok(e) => e,
            Err(e) => {
                Counters::add(&self.counters.malformed, 1);
                tracing::warn!(subject = %message.subject, error = %e, "a message is not a plugbus event: terminated");
                return Verdict::Term;
            }
        };
        if self.seen.contains(&event.id()) {
            Counters::add(&self.counters.duplicates, 1);
            return Verdict::Ack;
        }
        if !self.interest.matches(event.event_type()) {
            return Verdict::Ack;
        }
        if let Some(why) = self.admission.as_ref().and_then(|check| check(&event)) {
            Counters::add(&self.counters.refused, 1);
            tracing::warn!(event_id = %event.id(), from, reason = %why, "a remote event was refused: terminated");
            return Verdict::Term;
        }
        let id = event.id();
        match self
            .bus
            .publish(event.with_origin(Origin::remote(from)))
            .await
        {
            Ok(report) => {
                for d in report.failures() {
                    if !d.dead_lettered {
                        tracing::warn!(event_id = %id, subscription = %d.subscription, outcome = %d.outcome,
                            "a remote event failed locally (not dead-lettered)");
                    }
                }
                if self.seen.insert(id) {
                    self.unsaved.push((self.next_n, id.to_string()));
                    self.next_n += 1;
                }
                Counters::add(&self.counters.received, 1);
                Verdict::Ack
            }
            Err(e) => {
                let exp = u32::try_from(delivered.clamp(1, 16) - 1).unwrap_or(0);
                let delay = NAK_START.saturating_mul(1 << exp).min(NAK_MAX);
                tracing::debug!(event_id = %id, error = %e, "the local bus refused a remote event: nacked");
                Verdict::Nak(delay)
            }
        }
    }
}
