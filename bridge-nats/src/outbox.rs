//! The durable outbox: events bound for the broker wait in SQLite until JetStream has them.
//!
//! One file (WAL mode) holds two tables:
//! - `plugbus_outbox`: events on their way to the broker, in order (`seq`). The bridge's writer
//!   appends them, the relay sends them, and a row is deleted only once JetStream acknowledged
//!   it, so a broker outage, a crash or a `kill -9` loses nothing: on restart the relay sends
//!   what is left, in order. A row sent twice (acknowledged, then the host died before the
//!   delete) is dropped by the stream's duplicate window, because the event id is the
//!   message id.
//! - `plugbus_outbox_staged`: events an application staged in **its own** transaction with
//!   [`Outbox::stage`]. They exist only if that transaction commits; the relay then publishes
//!   each to the local bus and moves it to `plugbus_outbox` for the broker.
//! - `plugbus_inbox_seen`: on the receiving side, the ids of events delivered to the local bus
//!   whose acknowledgement JetStream has not confirmed yet. A message is acked only once its id
//!   is here, and the rows go when the server confirms the ack; a host killed in between loads
//!   them at its next start, so the messages JetStream then redelivers are dropped, not
//!   delivered a second time.
//!
//! # Staging an event with your own data
//! ```
//! use plugbus::{Event, EventType};
//! use plugbus_bridge_nats::Outbox;
//!
//! let dir = tempfile::tempdir()?;
//! let mut conn = Outbox::connect(dir.path().join("app.sqlite"))?;
//! conn.execute_batch("CREATE TABLE accounts (name TEXT)")?;
//!
//! let tx = conn.transaction()?;
//! tx.execute("INSERT INTO accounts VALUES ('alice')", [])?;
//! let event = Event::builder(EventType::DATA_CREATED).json(r#"{"table":"accounts"}"#).build()?;
//! Outbox::stage(&tx, &event)?;
//! tx.commit()?; // both the row and the event, or neither
//! assert_eq!(Outbox::staged_count(&conn)?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! The bridge whose `outbox` setting names the same file publishes the staged event.

use crate::error::OutboxError;
use plugbus::{Event, EventId};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a statement waits for another connection's write lock (an application staging
/// events while the bridge writes).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS plugbus_outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    origin TEXT NOT NULL,
    correlation_id TEXT,
    causation_id TEXT,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS plugbus_outbox_staged (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS plugbus_inbox_seen (
    n INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL
);
";

/// The outbox's public face: opening its file, staging events in an application's transaction.
#[derive(Debug)]
pub struct Outbox(());

impl Outbox {
    /// Opens (creating if needed) an outbox file the way the bridge does: WAL mode, normal
    /// synchronous level, a busy timeout, the outbox tables present. An application staging
    /// events keeps its own tables in this connection's file.
    ///
    /// # Errors
    /// The file cannot be opened or set up.
    pub fn connect(path: impl AsRef<Path>) -> Result<Connection, OutboxError> {
        let path = path.as_ref();
        let open = |source| OutboxError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing folder is reported by SQLite below, with the file's name.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "the outbox is not in WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(open)?;
        conn.execute_batch(SCHEMA).map_err(open)?;
        Ok(conn)
    }

    /// Stages `event` in the caller's transaction (or connection): it is published, to the
    /// local bus and to the broker, only if that transaction commits. The connection must be
    /// on the bridge's outbox file (see [`connect`](Self::connect)).
    ///
    /// # Errors
    /// The event does not serialize, or the insert fails (the caller's transaction is then
    /// best rolled back).
    pub fn stage(conn: &Connection, event: &Event) -> Result<(), OutboxError> {
        let body = event.to_json()?;
        conn.execute(
            "INSERT INTO plugbus_outbox_staged (event_id, body) VALUES (?1, ?2)",
            params![event.id().to_string(), body],
        )?;
        Ok(())
    }

    /// Events staged and not yet taken by a relay.
    ///
    /// # Errors
    /// The query fails.
    pub fn staged_count(conn: &Connection) -> Result<u64, OutboxError> {
        Ok(
            conn.query_row("SELECT COUNT(*) FROM plugbus_outbox_staged", [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    }

    /// Events waiting for the broker's acknowledgement (for tools and tests).
    ///
    /// # Errors
    /// The query fails.
    pub fn pending_ids(conn: &Connection) -> Result<Vec<EventId>, OutboxError> {
        let mut stmt = conn.prepare("SELECT event_id FROM plugbus_outbox ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut ids = Vec::new();
        for row in rows {
            if let Ok(id) = row?.parse::<EventId>() {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// A row to append.
#[derive(Debug)]
pub(crate) struct NewRow {
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) origin: String,
    pub(crate) correlation: Option<String>,
    pub(crate) causation: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl NewRow {
    pub(crate) fn of(event: &Event) -> Result<NewRow, OutboxError> {
        Ok(NewRow {
            event_id: event.id().to_string(),
            event_type: event.event_type().name().to_owned(),
            origin: event.origin().as_str().to_owned(),
            correlation: event.correlation_id().map(|c| c.to_string()),
            causation: event.causation_id().map(|c| c.to_string()),
            body: event.to_json()?,
        })
    }

    /// The row as the relay sends it, once committed as number `seq`.
    pub(crate) fn into_pending(self, seq: i64) -> PendingRow {
        PendingRow {
            seq,
            event_type: self.event_type,
            stamp: crate::headers::Stamp {
                id: self.event_id,
                origin: self.origin,
                correlation: self.correlation,
                causation: self.causation,
            },
            body: self.body,
        }
    }
}

/// A row read back for sending.
#[derive(Debug)]
pub(crate) struct PendingRow {
    pub(crate) seq: i64,
    pub(crate) event_type: String,
    pub(crate) stamp: crate::headers::Stamp,
    pub(crate) body: Vec<u8>,
}

/// The writer's connection: the only one that appends to or deletes from `plugbus_outbox`.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
    next_seq: i64,
    path: PathBuf,
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Store, OutboxError> {
        let conn = Outbox::connect(path)?;
        // Rows are appended and deleted moments later, so the same pages change again and
        // again: a larger cache and fewer, larger checkpoints write each page less often.
        conn.execute_batch("PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=8192;")?;
        let last: Option<i64> = conn
            .query_row("SELECT MAX(seq) FROM plugbus_outbox", [], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(Store {
            conn,
            next_seq: last.unwrap_or(0) + 1,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next appended row gets.
    pub(crate) fn next_seq(&self) -> i64 {
        self.next_seq
    }

    pub(crate) fn depth(&self) -> Result<u64, OutboxError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM plugbus_outbox", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Ids delivered and not yet confirmed acknowledged, oldest first, with their numbers.
    pub(crate) fn seen(&self) -> Result<Vec<(i64, String)>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare("SELECT n, event_id FROM plugbus_inbox_seen ORDER BY n")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies `changes` in one transaction. Returns (rows appended, rows deleted).
    pub(crate) fn write(&mut self, changes: &Changes<'_>) -> Result<(u64, u64), OutboxError> {
        let tx = self.conn.transaction()?;
        let mut seq = self.next_seq;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO plugbus_outbox (seq, event_id, event_type, origin, correlation_id, causation_id, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in changes.rows {
                insert.execute(params![
                    seq,
                    r.event_id,
                    r.event_type,
                    r.origin,
                    r.correlation,
                    r.causation,
                    r.body
                ])?;
                seq += 1;
            }
            let mut unstage =
                tx.prepare_cached("DELETE FROM plugbus_outbox_staged WHERE seq = ?1")?;
            for s in changes.staged_done {
                unstage.execute([s])?;
            }
            let mut seen = tx.prepare_cached(
                "INSERT OR REPLACE INTO plugbus_inbox_seen (n, event_id) VALUES (?1, ?2)",
            )?;
            for (n, id) in changes.seen {
                seen.execute(params![n, id])?;
            }
        }
        let deleted = match changes.acked {
            Some(upto) => tx.execute("DELETE FROM plugbus_outbox WHERE seq <= ?1", [upto])? as u64,
            None => 0,
        };
        if let Some(upto) = changes.seen_confirmed {
            tx.execute("DELETE FROM plugbus_inbox_seen WHERE n <= ?1", [upto])?;
        }
        tx.commit()?;
        self.next_seq = seq;
        Ok((changes.rows.len() as u64, deleted))
    }
}

/// What one writer transaction does.
#[derive(Debug, Default)]
pub(crate) struct Changes<'a> {
    /// Rows to append.
    pub(crate) rows: &'a [NewRow],
    /// Staged rows to remove (published, or dropped).
    pub(crate) staged_done: &'a [i64],
    /// Delete every outbox row up to this sequence number.
    pub(crate) acked: Option<i64>,
    /// Received ids to remember, with their numbers.
    pub(crate) seen: &'a [(i64, String)],
    /// Forget remembered ids up to this number: their acks are confirmed.
    pub(crate) seen_confirmed: Option<i64>,
}

/// The relay's read-only view of the outbox.
#[derive(Debug)]
pub(crate) struct Reader {
    conn: Connection,
}

impl Reader {
    pub(crate) fn open(path: &Path) -> Result<Reader, OutboxError> {
        Ok(Reader {
            conn: Outbox::connect(path)?,
        })
    }

    /// Rows with `seq >= from`, in order, at most `limit`.
    pub(crate) fn pending(&self, from: i64, limit: usize) -> Result<Vec<PendingRow>, OutboxError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, event_id, event_type, origin, correlation_id, causation_id, body
             FROM plugbus_outbox WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![from, limit as i64], |r| {
            Ok(PendingRow {
                seq: r.get(0)?,
                event_type: r.get(2)?,
                stamp: crate::headers::Stamp {
                    id: r.get(1)?,
                    origin: r.get(3)?,
                    correlation: r.get(4)?,
                    causation: r.get(5)?,
                },
                body: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use plugbus::EventType;

    fn event() -> Event {
        Event::builder(EventType::USER_LOGIN)
            .json(r#"{"user_id":"a"}"#)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rows_survive_reopen_in_order_until_acked() -> Result<(), OutboxError> {
        let dir = tempfile::tempdir().map_err(|_| OutboxError::Closed)?;
        let path = dir.path().join("o.sqlite");
        let events: Vec<Event> = (0..5).map(|_| event()).collect();
        {
            let mut store = Store::open(&path)?;
            let rows: Vec<NewRow> = events.iter().map(NewRow::of).collect::<Result<_, _>>()?;
            store.write(&Changes {
                rows: &rows,
                ..Changes::default()
            })?;
            store.write(&Changes {
                acked: Some(2),
                ..Changes::default()
            })?;
        }
        let store = Store::open(&path)?;
        assert_eq!(store.depth()?, 3);
        assert_eq!(store.next_seq, 6);
        let reader = Reader::open(&path)?;
        let pending = reader.pending(0, 100)?;
        let ids: Vec<String> = pending.iter().map(|r| r.stamp.id.clone()).collect();
        let want: Vec<String> = events[2..].iter().map(|e| e.id().to_string()).collect();
        assert_eq!(ids, want);
        assert_eq!(pending[0].seq, 3);
        Ok(())
    }

    #[test]
    fn a_rolled_back_stage_leaves_nothing() -> Result<(), OutboxError> {
        let dir = tempfile::tempdir().map_err(|_| OutboxError::Closed)?;
        let mut conn = Outbox::connect(dir.path().join("o.sqlite"))?;
        let tx = conn.transaction()?;
        Outbox::stage(&tx, &event())?;
        tx.rollback()?;
        assert_eq!(Outbox::staged_count(&conn)?, 0);
        let tx = conn.transaction()?;
        Outbox::stage(&tx, &event())?;
        tx.commit()?;
        assert_eq!(Outbox::staged_count(&conn)?, 1);
        Ok(())
    }
}
