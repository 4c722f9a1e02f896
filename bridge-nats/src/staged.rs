//! The staging relay: events an application committed with
//! [`Outbox::stage`](crate::Outbox::stage) are published to the local bus, then moved to the
//! outbox for the broker.
//!
//! The local publish comes first and the move after it, in the writer's next transaction: a
//! crash in between publishes the event locally once more on restart (at least once), never
//! not at all. The broker sees it once either way (its id is the message id).

use crate::outbox::{NewRow, Outbox};
use crate::writer::Cmd;
use parking_lot::Mutex;
use plugbus::{Bus, Event, EventId, Interest};
use rusqlite::Connection;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the staged table is looked at.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Most staged events taken per look.
const BATCH: usize = 1024;

pub(crate) struct StagedRelay {
    pub(crate) path: PathBuf,
    pub(crate) bus: Bus,
    pub(crate) writer: Sender<Cmd>,
    /// Ids of staged events being published locally: the forward subscription must not append
    /// them a second time.
    pub(crate) relaying: Arc<Mutex<HashSet<EventId>>>,
    pub(crate) forward: Interest,
}

impl StagedRelay {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let conn = match open(self.path.clone()).await {
            Some(c) => Arc::new(parking_lot::Mutex::new(c)),
            None => return,
        };
        let mut last = 0i64;
        loop {
            let c = conn.clone();
            let from = last;
            let rows = tokio::task::spawn_blocking(move || read(&c.lock(), from))
                .await
                .unwrap_or_default();
            let got = rows.len();
            for (seq, body) in rows {
                last = seq;
                let event = match Event::from_json(&body) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "a staged event is not a valid envelope: dropped");
                        self.move_row(seq, None);
                        continue;
                    }
                };
                let row = match NewRow::of(&event) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "a staged event does not serialize: dropped");
                        self.move_row(seq, None);
                        continue;
                    }
                };
                let comes_back = self.forward.matches(event.event_type());
                let id = event.id();
                if comes_back {
                    self.relaying.lock().insert(id);
                }
                if let Err(e) = self.bus.emit(event).await {
                    if comes_back {
                        self.relaying.lock().remove(&id);
                    }
                    // Shutting down: it stays staged, for the next start.
                    tracing::warn!(seq, error = %e, "the local bus refused a staged event; it stays staged");
                    return;
                }
                self.move_row(seq, Some(row));
            }
            if got == BATCH {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    fn move_row(&self, seq: i64, row: Option<NewRow>) {
        let cmd = match row {
            Some(r) => Cmd::Staged(seq, r),
            None => Cmd::Unstage(seq),
        };
        if self.writer.send(cmd).is_err() {
            tracing::warn!(
                seq,
                "the outbox writer has stopped; the staged event stays staged"
            );
        }
    }
}

async fn open(path: PathBuf) -> Option<Connection> {
    match tokio::task::spawn_blocking(move || Outbox::connect(path)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the staging relay cannot open the outbox");
            None
        }
        Err(_) => None,
    }
}

fn read(conn: &Connection, after: i64) -> Vec<(i64, Vec<u8>)> {
    let result = (|| -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, body FROM plugbus_outbox_staged WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map([after, BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    })();
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading staged events failed");
        Vec::new()
    })
}
