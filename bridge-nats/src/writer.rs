//! The outbox's writer: one thread owning the connection that appends and deletes.
//!
//! The forward subscription hands each event over with its [`Completion`]; the writer takes
//! whatever is waiting (up to a batch), appends it in one transaction, and only then finishes
//! the deliveries. So a local event's delivery to the bridge reads "delivered" exactly when it
//! is on disk, and many events share one commit (group commit). The same transaction deletes
//! the rows JetStream acknowledged since the last one, and moves staged events the staging
//! relay published locally into the outbox.

use crate::counters::Counters;
use crate::outbox::{Changes, NewRow, Store};
use crate::record::Encoder;
use crate::tail::Tail;
use plugbus::{Completion, Event, HandlerError};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Most events taken into one transaction ...
const BATCH: usize = 8192;
/// ... and about the most bytes: SQLite copies the batch's blob twice on its way to the file
/// (binding it, then making the row), and a copy beyond the C allocator's mmap threshold is
/// memory the kernel maps and zeroes afresh for every commit.
const BATCH_BYTES: usize = 192 << 10;

/// What the writer is asked to do.
pub(crate) enum Cmd {
    /// Append a local event, then finish its delivery.
    Forward(Event, Completion),
    /// Move a staged event (published locally already) to the outbox.
    Staged(i64, NewRow),
    /// Drop a staged event that cannot be published (logged by the relay).
    Unstage(i64),
    /// Delete every row up to this sequence number: JetStream has them.
    Acked(i64),
    /// Remember these received ids (numbered), then answer whether they are on disk.
    Seen(Vec<(i64, String)>, tokio::sync::oneshot::Sender<bool>),
    /// Forget received ids up to this number: JetStream confirmed their acks.
    SeenConfirmed(i64),
    /// Answer once everything before this is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Stop after committing what is queued.
    Stop,
}

/// What the writer shares with the rest of the bridge.
pub(crate) struct WriterShared {
    pub(crate) counters: Arc<Counters>,
    /// Woken after every commit that appended rows.
    pub(crate) appended: Arc<Notify>,
    /// Where committed rows go for the relay (which reads the file when they are not there).
    pub(crate) tail: Arc<Tail>,
}

/// Starts the writer thread.
pub(crate) fn spawn(
    store: Store,
    shared: WriterShared,
) -> std::io::Result<(Sender<Cmd>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("plugbus-outbox".to_owned())
        .spawn(move || run(store, shared, rx))?;
    Ok((tx, handle))
}

/// What one transaction carries. One is kept for the writer's life, so its buffers keep their
/// capacity from one commit to the next.
#[derive(Default)]
struct Batch {
    events: Encoder,
    done: Vec<Completion>,
    staged: Vec<i64>,
    acked: Option<i64>,
    seen: Vec<(i64, String)>,
    seen_answers: Vec<tokio::sync::oneshot::Sender<bool>>,
    seen_confirmed: Option<i64>,
    flushes: Vec<tokio::sync::oneshot::Sender<()>>,
    stop: bool,
}

impl Batch {
    fn take(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Forward(event, completion) => match self.events.push_event(&event) {
                Ok(()) => self.done.push(completion),
                Err(e) => {
                    completion.finish(Err::<(), _>(HandlerError::bad_event(e)));
                }
            },
            Cmd::Staged(seq, row) => {
                self.staged.push(seq);
                self.events.push_row(row);
            }
            Cmd::Unstage(seq) => self.staged.push(seq),
            Cmd::Acked(seq) => self.acked = Some(self.acked.map_or(seq, |a| a.max(seq))),
            Cmd::Seen(ids, answer) => {
                self.seen.extend(ids);
                self.seen_answers.push(answer);
            }
            Cmd::SeenConfirmed(n) => {
                self.seen_confirmed = Some(self.seen_confirmed.map_or(n, |c| c.max(n)));
            }
            Cmd::Flush(answer) => self.flushes.push(answer),
            Cmd::Stop => self.stop = true,
        }
    }

    /// Empty again, keeping the capacity.
    fn clear(&mut self) {
        self.events.clear();
        self.done.clear();
        self.staged.clear();
        self.acked = None;
        self.seen.clear();
        self.seen_answers.clear();
        self.seen_confirmed = None;
        self.flushes.clear();
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.staged.is_empty()
            && self.acked.is_none()
            && self.seen_answers.is_empty()
            && self.seen_confirmed.is_none()
    }
}

fn run(mut store: Store, shared: WriterShared, rx: Receiver<Cmd>) {
    let mut failures = 0u32;
    let mut batch = Batch::default();
    loop {
        if batch.is_empty() {
            let Ok(first) = rx.recv() else { break };
            batch.take(first);
        } else {
            // Marks carried over from a failed commit: try again soon even if nothing comes.
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(cmd) => batch.take(cmd),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        while batch.events.len() < BATCH && batch.events.blob().len() < BATCH_BYTES && !batch.stop {
            match rx.try_recv() {
                Ok(cmd) => batch.take(cmd),
                Err(_) => break,
            }
        }
        let committed = batch.is_empty() || commit(&mut store, &shared, &mut batch, &mut failures);
        for f in batch.flushes.drain(..) {
            let _ = f.send(());
        }
        if batch.stop {
            break;
        }
        // What a failed commit was to record of the broker's and the server's acks is kept
        // for the next one (the acks are not sent again); its events and staged moves come
        // again from their senders.
        let carried = (!committed).then_some((batch.acked, batch.seen_confirmed));
        batch.clear();
        if let Some((acked, seen_confirmed)) = carried {
            batch.acked = acked;
            batch.seen_confirmed = seen_confirmed;
        }
    }
}

/// Writes `batch`; false if the write failed.
fn commit(store: &mut Store, shared: &WriterShared, batch: &mut Batch, failures: &mut u32) -> bool {
    let first_seq = store.next_seq();
    let changes = Changes {
        appended: Some(&batch.events),
        staged_done: &batch.staged,
        acked: batch.acked,
        seen: &batch.seen,
        seen_confirmed: batch.seen_confirmed,
    };
    let result = store.write(&changes);
    let remembered = result.is_ok();
    for answer in batch.seen_answers.drain(..) {
        let _ = answer.send(remembered);
    }
    match result {
        Ok((appended, deleted)) => {
            *failures = 0;
            shared.tail.committed(batch.events.take(first_seq));
            let forwarded = batch.done.len() as u64;
            for c in batch.done.drain(..) {
                c.finish(Ok::<(), HandlerError>(()));
            }
            Counters::add(&shared.counters.queued, forwarded);
            Counters::add(&shared.counters.staged, batch.staged.len() as u64);
            let depth = &shared.counters.outbox_depth;
            depth.fetch_add(appended, Relaxed);
            let _ = depth.fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(deleted)));
            if appended > 0 {
                shared.appended.notify_one();
            }
            true
        }
        Err(e) => {
            *failures += 1;
            tracing::error!(outbox = %store.path().display(), error = %e, "outbox write failed");
            // Retryable: the bus retries the delivery (if its policy says so) or dead-letters
            // it with this reason; nothing is silently lost. Staged events stay staged and
            // come again.
            for c in batch.done.drain(..) {
                c.finish(Err::<(), _>(HandlerError::retryable(format!(
                    "outbox write failed: {e}"
                ))));
            }
            std::thread::sleep(Duration::from_millis(10 * u64::from((*failures).min(50))));
            false
        }
    }
}
