//! [`inspect`]: a bridge's state read from outside the bridge, for an operator's `plugbus bridge
//! stats`: what its outbox file holds and what JetStream says of its stream and of this host's
//! durable consumer.
//!
//! Nothing here writes or creates anything, so it can be asked of a running host:
//! - the outbox is opened **read-only** (`SQLITE_OPEN_READ_ONLY`); in WAL mode a reader takes no
//!   lock the bridge's writer waits for, and a missing file is reported as missing, not created;
//! - JetStream is asked with plain info requests (`STREAM.INFO`, `CONSUMER.INFO`): the stream and
//!   the consumer are never created, a missing one is reported as such.
//!
//! The connection uses the bridge's own client options (host name, credentials, TLS), without
//! its retrying: a broker that is down is an error at once, naming the URL. Each part is
//! reported on its own, so the outbox's figures are there when the broker is not.
//!
//! The live counters of a running bridge (forwarded, received, ...) are in that process only
//! ([`BridgeStats`](crate::BridgeStats)); the `plugbus` binary serves them as Prometheus metrics.

use crate::config::NatsConfig;
use crate::error::BridgeError;
use async_nats::jetstream::context::{
    ConsumerInfoErrorKind, GetStreamErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::ErrorCode;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long connecting and each JetStream request may take.
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a read of the outbox waits for a lock (only SQLite's WAL recovery takes one a
/// reader must wait for).
const OUTBOX_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`inspect`] found: the bridge's settings, then each part, read or failed on its own.
#[derive(Debug)]
#[non_exhaustive]
pub struct BridgeReport {
    /// The server asked (`url`).
    pub url: String,
    /// The stream's name (`stream`).
    pub stream: String,
    /// The subjects' prefix (`subject_prefix`).
    pub subject_prefix: String,
    /// This host's durable consumer (`durable`).
    pub durable: String,
    /// This host's id.
    pub host_id: String,
    /// Whether the config has `receive` patterns (then the host has a consumer once it ran).
    pub receives: bool,
    /// The outbox file.
    pub outbox_path: PathBuf,
    /// The outbox's figures, or why they could not be read.
    pub outbox: Result<OutboxReport, InspectError>,
    /// JetStream's figures, or why they could not be asked.
    pub jetstream: Result<JetStreamReport, InspectError>,
}

impl BridgeReport {
    /// True when every part could be read (a missing outbox, stream or consumer is a finding,
    /// not a failure).
    pub fn is_complete(&self) -> bool {
        self.outbox.is_ok() && self.jetstream.is_ok()
    }
}

/// The outbox file's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutboxReport {
    /// Whether the file exists (a host that never ran has none; then every figure is 0).
    pub present: bool,
    /// Events waiting for JetStream's acknowledgement (`plugbus_outbox_batch`).
    pub depth: u64,
    /// Rows an application staged in its own transaction, not yet taken by the relay
    /// (`plugbus_outbox_staged`).
    pub staged: u64,
    /// Ids of received events this host delivered whose ack the server has not confirmed yet
    /// (`plugbus_inbox_seen`; a redelivery of one of them is dropped, also after a restart).
    pub unconfirmed_received: u64,
    /// The oldest waiting event's sequence number in the outbox.
    pub oldest_seq: Option<i64>,
    /// The newest waiting event's sequence number in the outbox.
    pub newest_seq: Option<i64>,
    /// The oldest waiting event's own timestamp (RFC 3339, from its envelope: when the event
    /// was made, which is when it was written for the events a host publishes itself).
    pub oldest_timestamp: Option<String>,
    /// How long ago that was, in milliseconds (0 for a timestamp in the future).
    pub oldest_age_ms: Option<u64>,
}

impl OutboxReport {
    /// The figures of an outbox that does not exist.
    fn absent() -> OutboxReport {
        OutboxReport {
            present: false,
            depth: 0,
            staged: 0,
            unconfirmed_received: 0,
            oldest_seq: None,
            newest_seq: None,
            oldest_timestamp: None,
            oldest_age_ms: None,
        }
    }
}

/// JetStream's figures for the bridge's stream and this host's consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JetStreamReport {
    /// The stream, `None` when it does not exist yet (no bridge has connected).
    pub stream: Option<StreamReport>,
    /// This host's durable consumer, `None` when it does not exist (the host never ran with
    /// `receive` patterns, or the stream does not exist).
    pub consumer: Option<ConsumerReport>,
}

/// A stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamReport {
    /// Its name.
    pub name: String,
    /// The subjects it takes.
    pub subjects: Vec<String>,
    /// Messages it holds.
    pub messages: u64,
    /// Bytes of those messages.
    pub bytes: u64,
    /// The lowest sequence still held.
    pub first_seq: u64,
    /// The last sequence assigned.
    pub last_seq: u64,
    /// Consumers on it.
    pub consumer_count: u64,
}

/// A durable consumer's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumerReport {
    /// Its name (`durable`).
    pub name: String,
    /// The subject it filters on (empty: all of the stream's).
    pub filter_subject: String,
    /// The consumer lag: messages in the stream (matching its filter) not yet delivered to it.
    pub num_pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub num_ack_pending: u64,
    /// Messages delivered more than once.
    pub num_redelivered: u64,
    /// Pull requests waiting for messages (a running receiver has some).
    pub num_waiting: u64,
    /// The last stream sequence delivered.
    pub delivered_stream_seq: u64,
    /// The last consumer sequence delivered.
    pub delivered_consumer_seq: u64,
    /// The stream sequence up to which every message is acknowledged.
    pub ack_floor_stream_seq: u64,
    /// The consumer sequence up to which every message is acknowledged.
    pub ack_floor_consumer_seq: u64,
}

/// A part of a [`BridgeReport`] that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The outbox file could not be opened or queried.
    #[error("outbox '{path}': {source}")]
    Outbox {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is an SQLite database without the outbox's table.
    #[error("outbox '{path}': not a plugbus outbox (no plugbus_outbox_batch table)")]
    NotAnOutbox {
        /// The file.
        path: PathBuf,
    },
    /// A stored batch of events could not be read.
    #[error("outbox '{path}': {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by an older plugbus (a row per event): the bridge moves its
    /// events at its next start, and the figures are read then.
    #[error("outbox '{path}': written by an older plugbus ({events} events waiting in plugbus_outbox); start the host once to bring it up to date")]
    OlderFormat {
        /// The file.
        path: PathBuf,
        /// Events waiting in it.
        events: u64,
    },
    /// The thread reading the outbox stopped before answering.
    #[error("outbox '{path}': the reading thread stopped")]
    Interrupted {
        /// The file.
        path: PathBuf,
    },
    /// The server could not be reached, or the credentials file read.
    #[error(transparent)]
    Connect(BridgeError),
    /// A JetStream request failed.
    #[error("bridge.nats: JetStream at '{url}': {what}: {message}")]
    JetStream {
        /// The server.
        url: String,
        /// What was asked.
        what: String,
        /// The server's or client's report.
        message: String,
    },
}

/// Reads the outbox of `config` and asks JetStream about its stream and consumer, at most
/// [`INSPECT_TIMEOUT`] for connecting and for each request. Every part is reported, read or
/// failed: see [`BridgeReport::is_complete`].
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use plugbus_bridge_nats::{inspect, NatsConfig};
/// let config = NatsConfig::from_toml_str("durable = \"host-a\"", "host-a.toml".as_ref())?;
/// let report = inspect(&config).await;
/// if let Ok(outbox) = &report.outbox {
///     println!("{} event(s) wait in the outbox", outbox.depth);
/// }
/// if let Ok(Some(c)) = report.jetstream.as_ref().map(|j| j.consumer.as_ref()) {
///     println!("lag: {}", c.num_pending);
/// }
/// # Ok(()) }
/// ```
pub async fn inspect(config: &NatsConfig) -> BridgeReport {
    let outbox_path = config.outbox_path();
    let (path, stopped) = (outbox_path.clone(), outbox_path.clone());
    let outbox = async move {
        tokio::task::spawn_blocking(move || inspect_outbox(&path))
            .await
            .unwrap_or(Err(InspectError::Interrupted { path: stopped }))
    };
    let (outbox, jetstream) = tokio::join!(outbox, inspect_jetstream(config));
    BridgeReport {
        url: config.url.clone(),
        stream: config.stream.clone(),
        subject_prefix: config.subject_prefix.clone(),
        durable: config.durable.clone(),
        host_id: config.host_id().to_owned(),
        receives: !config.receive.is_empty(),
        outbox_path,
        outbox,
        jetstream,
    }
}

/// Reads an outbox file's figures without writing to it (see the module's notes); a missing
/// file is [`OutboxReport::present`] `false`.
///
/// # Errors
/// The file cannot be opened or read, or is not an outbox.
pub fn inspect_outbox(path: &Path) -> Result<OutboxReport, InspectError> {
    if !path.exists() {
        return Ok(OutboxReport::absent());
    }
    let fail = |source| InspectError::Outbox {
        path: path.to_path_buf(),
        source,
    };
    let conn = open_read_only(path).map_err(fail)?;
    conn.busy_timeout(OUTBOX_BUSY_TIMEOUT).map_err(fail)?;
    // One read transaction: the figures are of one moment of the file.
    conn.execute_batch("BEGIN").map_err(fail)?;
    let report = read_figures(&conn, path);
    let _ = conn.execute_batch("COMMIT");
    report
}

/// Opens `path` read-only. With a `-wal` file beside it (a bridge has it open, or died), the
/// connection reads through the WAL like any reader, taking no lock a writer waits for. With
/// none, no connection has the file open and the file holds everything: it is read as
/// immutable, so that reading does not leave a `-wal` and `-shm` file behind.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    match path.to_str() {
        Some(text) if !Path::new(&wal).exists() => Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_escape(text)),
            flags | OpenFlags::SQLITE_OPEN_URI,
        ),
        _ => Connection::open_with_flags(path, flags),
    }
}

/// `text` with the characters a SQLite file URI reserves percent-encoded.
fn uri_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn read_figures(conn: &Connection, path: &Path) -> Result<OutboxReport, InspectError> {
    let fail = |source| InspectError::Outbox {
        path: path.to_path_buf(),
        source,
    };
    let has_table = |name: &str| -> Result<bool, InspectError> {
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(fail)
    };
    if !has_table("plugbus_outbox_batch")? && has_table("plugbus_outbox")? {
        let events: i64 = conn
            .query_row("SELECT COUNT(*) FROM plugbus_outbox", [], |r| r.get(0))
            .map_err(fail)?;
        return Err(InspectError::OlderFormat {
            path: path.to_path_buf(),
            events: u64::try_from(events).unwrap_or(0),
        });
    }
    if !has_table("plugbus_outbox_batch")? {
        return Err(InspectError::NotAnOutbox {
            path: path.to_path_buf(),
        });
    }
    let depth = crate::outbox::depth(conn).map_err(|e| InspectError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let acked = crate::outbox::acked_upto(conn).map_err(|e| InspectError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let newest_seq: Option<i64> = conn
        .query_row(
            "SELECT MAX(first_seq + count - 1) FROM plugbus_outbox_batch",
            [],
            |r| r.get(0),
        )
        .map_err(fail)?;
    let staged = if has_table("plugbus_outbox_staged")? {
        conn.query_row("SELECT COUNT(*) FROM plugbus_outbox_staged", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(fail)?
    } else {
        0
    };
    let unconfirmed_received = if has_table("plugbus_inbox_seen")? {
        conn.query_row("SELECT COUNT(*) FROM plugbus_inbox_seen", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(fail)?
    } else {
        0
    };
    let oldest_row = crate::outbox::read_pending(conn, acked + 1, 1)
        .map_err(|e| InspectError::Damaged {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .into_iter()
        .next();
    let oldest_seq = oldest_row.as_ref().map(|r| r.seq);
    let newest_seq = newest_seq.filter(|_| depth > 0);
    let oldest_body = oldest_row.map(|r| r.body());
    // The rows keep no time of their own; the envelope has the event's.
    let oldest = oldest_body.and_then(|b| plugbus::Event::from_json(&b).ok());
    let now_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    Ok(OutboxReport {
        present: true,
        depth,
        staged: u64::try_from(staged).unwrap_or(0),
        unconfirmed_received: u64::try_from(unconfirmed_received).unwrap_or(0),
        oldest_seq,
        newest_seq,
        oldest_timestamp: oldest.as_ref().map(|e| e.timestamp().to_rfc3339()),
        oldest_age_ms: oldest.as_ref().map(|e| {
            let age = (now_nanos - i128::from(e.timestamp_unix_nanos())).max(0) / 1_000_000;
            u64::try_from(age).unwrap_or(u64::MAX)
        }),
    })
}

/// Asks JetStream about the stream and this host's consumer, creating neither.
///
/// # Errors
/// The server cannot be reached (the message names the URL), the credentials file cannot be
/// read, or a request fails or times out.
pub async fn inspect_jetstream(config: &NatsConfig) -> Result<JetStreamReport, InspectError> {
    let client = crate::bridge::connect_options(config)
        .await
        .map_err(InspectError::Connect)?
        .name(format!("plugbus:{}:inspect", config.host_id()))
        .connection_timeout(INSPECT_TIMEOUT)
        .connect(config.url.as_str())
        .await
        .map_err(|e| {
            InspectError::Connect(BridgeError::Connect {
                url: config.url.clone(),
                message: e.to_string(),
            })
        })?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(INSPECT_TIMEOUT)
        .build(client);
    let fail = |what: String, message: String| InspectError::JetStream {
        url: config.url.clone(),
        what,
        message,
    };
    let stream = match js.get_stream(&config.stream).await {
        Ok(s) => s,
        Err(e) => {
            if let GetStreamErrorKind::JetStream(j) = e.kind() {
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND {
                    return Ok(JetStreamReport {
                        stream: None,
                        consumer: None,
                    });
                }
            }
            let no_jetstream = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<RequestError>())
                .is_some_and(|r| r.kind() == RequestErrorKind::NoResponders);
            let message = if no_jetstream {
                "no JetStream answers on this server (is it started with JetStream on, `-js`?)"
                    .to_owned()
            } else {
                describe(&e)
            };
            return Err(fail(
                format!("stream info for '{}'", config.stream),
                message,
            ));
        }
    };
    let info = stream.cached_info();
    let stream_report = StreamReport {
        name: info.config.name.clone(),
        subjects: info.config.subjects.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
        consumer_count: info.state.consumer_count as u64,
    };
    let consumer = match stream.consumer_info(&config.durable).await {
        Ok(c) => Some(ConsumerReport {
            name: c.name,
            filter_subject: c.config.filter_subject,
            num_pending: c.num_pending,
            num_ack_pending: c.num_ack_pending as u64,
            num_redelivered: c.num_redelivered as u64,
            num_waiting: c.num_waiting as u64,
            delivered_stream_seq: c.delivered.stream_sequence,
            delivered_consumer_seq: c.delivered.consumer_sequence,
            ack_floor_stream_seq: c.ack_floor.stream_sequence,
            ack_floor_consumer_seq: c.ack_floor.consumer_sequence,
        }),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => None,
        Err(e) => {
            return Err(fail(
                format!("consumer info for '{}'", config.durable),
                describe(&e),
            ))
        }
    };
    Ok(JetStreamReport {
        stream: Some(stream_report),
        consumer,
    })
}

/// An error with its sources ("request error: timed out").
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::outbox::{Changes, Outbox, Store};
    use plugbus::{Event, EventType};

    fn event() -> Event {
        Event::builder(EventType::USER_LOGIN)
            .json(r#"{"user_id":"a"}"#)
            .build()
            .unwrap()
    }

    #[test]
    fn a_missing_outbox_is_reported_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sqlite");
        let report = inspect_outbox(&path).unwrap();
        assert!(!report.present);
        assert_eq!(report.depth, 0);
        assert!(!path.exists());
    }

    fn encoded(n: usize) -> crate::record::Encoder {
        let mut enc = crate::record::Encoder::default();
        for _ in 0..n {
            enc.push_event(&event()).unwrap();
        }
        enc
    }

    #[test]
    fn an_outbox_of_the_older_form_is_named_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE plugbus_outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL,
                 event_type TEXT NOT NULL, origin TEXT NOT NULL, correlation_id TEXT,
                 causation_id TEXT, body BLOB NOT NULL);
                 INSERT INTO plugbus_outbox VALUES (1, 'x', 'user.login', 'local', NULL, NULL, x'7b7d');",
            )
            .unwrap();
        let e = inspect_outbox(&path).unwrap_err();
        assert!(
            matches!(e, InspectError::OlderFormat { events: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("start the host once"), "{e}");
    }

    #[test]
    fn figures_of_an_outbox_held_open_by_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        let mut store = Store::open(&path).unwrap();
        let rows = encoded(4);
        let seen = [
            (1, "a".to_owned()),
            (2, "b".to_owned()),
            (3, "c".to_owned()),
        ];
        store
            .write(&Changes {
                appended: Some(&rows),
                acked: Some(1),
                seen: &seen,
                ..Changes::default()
            })
            .unwrap();
        store
            .write(&Changes {
                seen_confirmed: Some(1),
                ..Changes::default()
            })
            .unwrap();
        let conn = Outbox::connect(&path).unwrap();
        Outbox::stage(&conn, &event()).unwrap();

        let report = inspect_outbox(&path).unwrap();
        assert!(report.present);
        assert_eq!(report.depth, 3);
        assert_eq!(report.staged, 1);
        assert_eq!(report.unconfirmed_received, 2);
        assert_eq!((report.oldest_seq, report.newest_seq), (Some(2), Some(4)));
        assert!(report.oldest_timestamp.is_some());
        assert!(report.oldest_age_ms.unwrap() < 60_000);
        // The writer goes on while a reader is open.
        let reader = open_read_only(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        store
            .write(&Changes {
                acked: Some(4),
                ..Changes::default()
            })
            .unwrap();
        drop(reader);
        assert_eq!(inspect_outbox(&path).unwrap().depth, 0);
    }

    #[test]
    fn a_closed_outbox_reads_and_another_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        {
            let mut store = Store::open(&path).unwrap();
            let rows = encoded(1);
            store
                .write(&Changes {
                    appended: Some(&rows),
                    ..Changes::default()
                })
                .unwrap();
        }
        let beside = |ext: &str| dir.path().join(format!("o.sqlite-{ext}")).exists();
        assert!(!beside("wal"));
        assert_eq!(inspect_outbox(&path).unwrap().depth, 1);
        assert!(
            !beside("wal") && !beside("shm"),
            "reading left files behind"
        );
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = inspect_outbox(&other).unwrap_err();
        assert!(matches!(e, InspectError::NotAnOutbox { .. }), "{e}");
    }

    #[test]
    fn a_name_with_uri_characters_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("an odd #name? 100%.sqlite");
        {
            let mut store = Store::open(&path).unwrap();
            let rows = encoded(1);
            store
                .write(&Changes {
                    appended: Some(&rows),
                    ..Changes::default()
                })
                .unwrap();
        }
        assert_eq!(inspect_outbox(&path).unwrap().depth, 1);
    }

    #[tokio::test]
    async fn a_broker_that_is_down_is_named_and_the_outbox_still_read() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("nats://127.0.0.1:{port}");
        let config = NatsConfig::new(&url, "h").with_outbox(dir.path().join("o.sqlite"));
        let report = inspect(&config).await;
        assert!(!report.is_complete());
        assert!(!report.outbox.as_ref().unwrap().present);
        let e = report.jetstream.unwrap_err();
        assert!(e.to_string().contains(&url), "{e}");
    }
}
