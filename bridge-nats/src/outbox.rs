//! The durable outbox: events bound for the broker wait in SQLite until JetStream has them.
//!
//! One file (WAL mode) holds these tables:
//! - `plugbus_outbox_batch`: events on their way to the broker, in order. Each event has a
//!   sequence number; each writer commit appends its events as one row (the first number, how
//!   many, and a blob of length-prefixed fields per event). The relay sends them, and
//!   `plugbus_outbox_acked` records up to which number JetStream acknowledged them; a row goes
//!   once all of its events are acknowledged. So a broker outage, a crash or a `kill -9` loses
//!   nothing: on restart the relay sends what is left, in order. An event sent twice
//!   (acknowledged, then the host died before that was written) is dropped by the stream's
//!   duplicate window, because the event id is the message id.
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
CREATE TABLE IF NOT EXISTS plugbus_outbox_batch (
    first_seq INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    events BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS plugbus_outbox_acked (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    upto INTEGER NOT NULL
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

/// The table of a row per event that outbox files had before `plugbus_outbox_batch`; the
/// bridge moves what is left in it at its next start.
const LEGACY_TABLE: &str = "plugbus_outbox";

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

    /// Events waiting for the broker's acknowledgement, oldest first (for tools and tests).
    ///
    /// # Errors
    /// The query fails, or a stored batch is damaged.
    pub fn pending_ids(conn: &Connection) -> Result<Vec<EventId>, OutboxError> {
        Ok(read_pending(conn, 0, usize::MAX)?
            .iter()
            .filter_map(|r| r.id().parse::<EventId>().ok())
            .collect())
    }

    /// Appends `events` to the outbox as the bridge's writer does, numbered from `first_seq`
    /// (for tests of the tools that read an outbox; a running bridge numbers its own).
    ///
    /// # Errors
    /// An event does not serialize, or the insert fails.
    #[doc(hidden)]
    pub fn append_for_tests(
        conn: &Connection,
        first_seq: i64,
        events: &[Event],
    ) -> Result<(), OutboxError> {
        let mut enc = crate::record::Encoder::default();
        for e in events {
            enc.push_event(e)?;
        }
        conn.execute(
            "INSERT INTO plugbus_outbox_batch (first_seq, count, events) VALUES (?1, ?2, ?3)",
            params![first_seq, enc.len() as i64, enc.blob()],
        )?;
        Ok(())
    }
}

/// Up to which sequence number JetStream acknowledged the outbox's events (0: none yet).
pub(crate) fn acked_upto(conn: &Connection) -> Result<i64, OutboxError> {
    Ok(conn
        .query_row(
            "SELECT upto FROM plugbus_outbox_acked WHERE id = 0",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Events waiting for acknowledgement with a sequence number of at least `from`, in order, at
/// most `limit`.
pub(crate) fn read_pending(
    conn: &Connection,
    from: i64,
    limit: usize,
) -> Result<Vec<PendingRow>, OutboxError> {
    let from = from.max(acked_upto(conn)? + 1);
    let mut stmt = conn.prepare_cached(
        "SELECT first_seq, count, events FROM plugbus_outbox_batch
         WHERE first_seq + count > ?1 ORDER BY first_seq",
    )?;
    let mut batches = stmt.query([from])?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(b) = batches.next()? else { break };
        let (first, count): (i64, i64) = (b.get(0)?, b.get(1)?);
        let blob = bytes::Bytes::from(b.get::<_, Vec<u8>>(2)?);
        let rows =
            crate::record::decode(first, count, blob).map_err(|reason| OutboxError::Damaged {
                first_seq: first,
                reason,
            })?;
        let room = limit - out.len();
        out.extend(rows.into_iter().filter(|r| r.seq >= from).take(room));
    }
    Ok(out)
}

/// How many events wait for acknowledgement: those of every batch, less the acknowledged
/// start of the oldest.
pub(crate) fn depth(conn: &Connection) -> Result<u64, OutboxError> {
    let acked = acked_upto(conn)?;
    let (total, oldest): (i64, Option<i64>) = conn.query_row(
        "SELECT COALESCE(SUM(count), 0), MIN(first_seq) FROM plugbus_outbox_batch",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let done = oldest.map_or(0, |o| (acked - o + 1).max(0));
    Ok(u64::try_from(total - done).unwrap_or(0))
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
}

pub(crate) use crate::record::PendingRow;

/// The writer's connection: the only one that appends to or deletes from the outbox.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
    next_seq: i64,
    acked_upto: i64,
    path: PathBuf,
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Store, OutboxError> {
        let mut conn = Outbox::connect(path)?;
        // Rows are appended and deleted moments later, so the same pages change again and
        // again: a larger cache and fewer, larger checkpoints write each page less often.
        conn.execute_batch("PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=8192;")?;
        move_legacy_rows(&mut conn)?;
        let acked_upto = acked_upto(&conn)?;
        let end: Option<i64> = conn.query_row(
            "SELECT MAX(first_seq + count) FROM plugbus_outbox_batch",
            [],
            |r| r.get(0),
        )?;
        Ok(Store {
            conn,
            // Numbers are never given twice, even once every row is gone: the acknowledged
            // mark stays.
            next_seq: end.unwrap_or(1).max(acked_upto + 1),
            acked_upto,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next appended event gets.
    pub(crate) fn next_seq(&self) -> i64 {
        self.next_seq
    }

    pub(crate) fn depth(&self) -> Result<u64, OutboxError> {
        depth(&self.conn)
    }

    /// Ids delivered and not yet confirmed acknowledged, oldest first, with their numbers.
    pub(crate) fn seen(&self) -> Result<Vec<(i64, String)>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare("SELECT n, event_id FROM plugbus_inbox_seen ORDER BY n")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies `changes` in one transaction. Returns (events appended, events acknowledged).
    pub(crate) fn write(&mut self, changes: &Changes<'_>) -> Result<(u64, u64), OutboxError> {
        let tx = self.conn.transaction()?;
        let seq = self.next_seq;
        let appended = changes.appended.filter(|e| !e.is_empty());
        if let Some(events) = appended {
            tx.prepare_cached(
                "INSERT INTO plugbus_outbox_batch (first_seq, count, events) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![seq, events.len() as i64, events.blob()])?;
        }
        {
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
        let mut acked = 0;
        if let Some(upto) = changes.acked.filter(|u| *u > self.acked_upto) {
            tx.prepare_cached(
                "DELETE FROM plugbus_outbox_batch WHERE first_seq <= ?1 AND first_seq + count - 1 <= ?1",
            )?
            .execute([upto])?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO plugbus_outbox_acked (id, upto) VALUES (0, ?1)",
            )?
            .execute([upto])?;
            acked = upto - self.acked_upto;
        }
        if let Some(upto) = changes.seen_confirmed {
            tx.prepare_cached("DELETE FROM plugbus_inbox_seen WHERE n <= ?1")?
                .execute([upto])?;
        }
        tx.commit()?;
        let appended = appended.map_or(0, |e| e.len() as u64);
        self.next_seq = seq + appended as i64;
        if let Some(upto) = changes.acked {
            self.acked_upto = self.acked_upto.max(upto);
        }
        Ok((appended, u64::try_from(acked).unwrap_or(0)))
    }
}

/// Moves the rows of an outbox file written before batches (a row per event, in
/// [`LEGACY_TABLE`]) into batches of one, keeping their numbers, and drops that table.
fn move_legacy_rows(conn: &mut Connection) -> Result<(), OutboxError> {
    let exists: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [LEGACY_TABLE],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let mut moved = 0u64;
    {
        let mut read = tx.prepare(
            "SELECT seq, event_id, event_type, origin, correlation_id, causation_id, body
             FROM plugbus_outbox ORDER BY seq",
        )?;
        let mut insert = tx.prepare(
            "INSERT OR IGNORE INTO plugbus_outbox_batch (first_seq, count, events) VALUES (?1, 1, ?2)",
        )?;
        let mut rows = read.query([])?;
        while let Some(r) = rows.next()? {
            let mut enc = crate::record::Encoder::default();
            enc.push_row(NewRow {
                event_id: r.get(1)?,
                event_type: r.get(2)?,
                origin: r.get(3)?,
                correlation: r.get(4)?,
                causation: r.get(5)?,
                body: r.get(6)?,
            });
            insert.execute(params![r.get::<_, i64>(0)?, enc.blob()])?;
            moved += 1;
        }
    }
    tx.execute_batch("DROP TABLE plugbus_outbox")?;
    tx.commit()?;
    if moved > 0 {
        tracing::info!(
            events = moved,
            "moved the outbox's waiting events into batches"
        );
    }
    Ok(())
}

/// What one writer transaction does.
#[derive(Debug, Default)]
pub(crate) struct Changes<'a> {
    /// Events to append, numbered from the store's next sequence number.
    pub(crate) appended: Option<&'a crate::record::Encoder>,
    /// Staged rows to remove (published, or dropped).
    pub(crate) staged_done: &'a [i64],
    /// JetStream acknowledged every event up to this sequence number.
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

    /// Events waiting with `seq >= from`, in order, at most `limit`.
    pub(crate) fn pending(&self, from: i64, limit: usize) -> Result<Vec<PendingRow>, OutboxError> {
        read_pending(&self.conn, from, limit)
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

    fn append(store: &mut Store, events: &[Event]) -> Result<(u64, u64), OutboxError> {
        let mut enc = crate::record::Encoder::default();
        for e in events {
            enc.push_event(e)?;
        }
        store.write(&Changes {
            appended: Some(&enc),
            ..Changes::default()
        })
    }

    fn ack(store: &mut Store, upto: i64) -> Result<(u64, u64), OutboxError> {
        store.write(&Changes {
            acked: Some(upto),
            ..Changes::default()
        })
    }

    fn batch_rows(store: &Store) -> Result<i64, OutboxError> {
        Ok(store
            .conn
            .query_row("SELECT COUNT(*) FROM plugbus_outbox_batch", [], |r| {
                r.get(0)
            })?)
    }

    fn ids(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.id().to_string()).collect()
    }

    #[test]
    fn events_survive_reopen_in_order_until_acked() -> Result<(), OutboxError> {
        let dir = tempfile::tempdir().map_err(|_| OutboxError::Closed)?;
        let path = dir.path().join("o.sqlite");
        let events: Vec<Event> = (0..5).map(|_| event()).collect();
        {
            let mut store = Store::open(&path)?;
            // Two commits: 1..=3 and 4..=5.
            assert_eq!(append(&mut store, &events[..3])?, (3, 0));
            assert_eq!(append(&mut store, &events[3..])?, (2, 0));
            // Half of the first batch: its row stays, its acked events are not pending.
            assert_eq!(ack(&mut store, 2)?, (0, 2));
            assert_eq!(store.depth()?, 3);
        }
        let store = Store::open(&path)?;
        assert_eq!(store.depth()?, 3);
        assert_eq!(store.next_seq, 6);
        let reader = Reader::open(&path)?;
        let pending = reader.pending(0, 100)?;
        let got: Vec<String> = pending.iter().map(|r| r.id().to_owned()).collect();
        assert_eq!(got, ids(&events[2..]));
        assert_eq!(pending[0].seq, 3);
        assert_eq!(pending[0].body(), events[2].to_json()?);
        // A limit and a starting point inside a batch.
        let two: Vec<i64> = reader.pending(4, 1)?.iter().map(|r| r.seq).collect();
        assert_eq!(two, vec![4]);
        Ok(())
    }

    #[test]
    fn a_batch_goes_once_all_of_it_is_acked_and_numbers_are_never_reused() -> Result<(), OutboxError>
    {
        let dir = tempfile::tempdir().map_err(|_| OutboxError::Closed)?;
        let path = dir.path().join("o.sqlite");
        let mut store = Store::open(&path)?;
        append(&mut store, &[event(), event()])?;
        ack(&mut store, 1)?;
        assert_eq!(batch_rows(&store)?, 1);
        // An older ack changes nothing.
        assert_eq!(ack(&mut store, 1)?, (0, 0));
        assert_eq!(ack(&mut store, 2)?, (0, 1));
        assert_eq!((batch_rows(&store)?, store.depth()?), (0, 0));
        drop(store);
        // Empty, reopened: the next event is number 3, not 1.
        let mut store = Store::open(&path)?;
        assert_eq!(store.next_seq(), 3);
        let e = event();
        append(&mut store, std::slice::from_ref(&e))?;
        let pending = Reader::open(&path)?.pending(0, 10)?;
        assert_eq!((pending.len(), pending[0].seq), (1, 3));
        assert_eq!(Outbox::pending_ids(&store.conn)?, vec![e.id()]);
        Ok(())
    }

    #[test]
    fn an_outbox_of_the_older_row_per_event_form_is_moved_into_batches() -> Result<(), OutboxError>
    {
        let dir = tempfile::tempdir().map_err(|_| OutboxError::Closed)?;
        let path = dir.path().join("o.sqlite");
        let events: Vec<Event> = (0..3).map(|_| event()).collect();
        {
            let conn = Outbox::connect(&path)?;
            conn.execute_batch(
                "CREATE TABLE plugbus_outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL,
                 event_type TEXT NOT NULL, origin TEXT NOT NULL, correlation_id TEXT,
                 causation_id TEXT, body BLOB NOT NULL)",
            )?;
            for (seq, e) in (7..).zip(&events) {
                conn.execute(
                    "INSERT INTO plugbus_outbox VALUES (?1, ?2, 'user.login', 'local', NULL, NULL, ?3)",
                    params![seq, e.id().to_string(), e.to_json()?],
                )?;
            }
        }
        let store = Store::open(&path)?;
        assert_eq!((store.depth()?, store.next_seq()), (3, 10));
        let pending = Reader::open(&path)?.pending(0, 10)?;
        let got: Vec<(i64, String)> = pending.iter().map(|r| (r.seq, r.id().to_owned())).collect();
        let want: Vec<(i64, String)> = (7..).zip(ids(&events)).collect();
        assert_eq!(got, want);
        assert_eq!(pending[2].body(), events[2].to_json()?);
        let legacy: i64 = store.conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'plugbus_outbox'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(legacy, 0);
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
