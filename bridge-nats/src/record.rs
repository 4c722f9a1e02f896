//! The outbox's batch record: the events one writer commit appends, as one blob.
//!
//! A commit of many events is one row of `plugbus_outbox_batch` (its first sequence number,
//! how many events, the blob), not a row per event: SQLite then does one insert and, once
//! JetStream has them all, one delete per commit, which halves what the outbox costs per
//! event. The blob holds each event as six fields, each a `u32` little-endian length and
//! that many bytes of UTF-8: the event id, its type, its origin on this host, the correlation
//! id and the causation id (empty when there is none), and the envelope (the event's JSON).
//!
//! The first four are in the envelope too, except the origin; they are kept beside it so that
//! the relay sends a row (subject and headers) without parsing its JSON.

use crate::headers::Stamp;
use crate::outbox::{NewRow, PendingRow};
use bytes::Bytes;
use parking_lot::Mutex;
use plugbus::Event;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

/// Blobs kept for reuse at most ...
const POOL_KEEP: usize = 8;
/// ... and only up to this size.
const POOL_MAX_BYTES: usize = 16 << 20;

/// Blob buffers given back once every event of their batch has been sent. A batch's blob is
/// megabytes; allocated afresh each time, it is memory the kernel maps and zeroes again for
/// every commit (a tenth of the writer's time at full speed), so the next commit writes into a
/// buffer that is already there.
#[derive(Debug, Default)]
pub(crate) struct Pool(Mutex<Vec<Vec<u8>>>);

/// A blob shared by the rows of its batch; back to the pool when the last is dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() <= POOL_MAX_BYTES {
            buf.clear();
            let mut kept = self.pool.0.lock();
            if kept.len() < POOL_KEEP {
                kept.push(buf);
            }
        }
    }
}

/// Events being gathered for one commit.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    blob: Vec<u8>,
    rows: Vec<Meta>,
    pool: Arc<Pool>,
}

/// What the relay needs of an encoded event, besides its body.
#[derive(Debug)]
struct Meta {
    event_type: String,
    stamp: Stamp,
    body: Range<usize>,
}

impl Encoder {
    /// Appends `event`.
    ///
    /// # Errors
    /// Its payload does not serialize (the encoder is then as it was).
    pub(crate) fn push_event(&mut self, event: &Event) -> Result<(), serde_json::Error> {
        let at = self.blob.len();
        let mut id = String::with_capacity(36);
        let _ = write!(id, "{}", event.id());
        let stamp = Stamp {
            id,
            origin: event.origin().as_str().to_owned(),
            correlation: event.correlation_id().map(|c| c.to_string()),
            causation: event.causation_id().map(|c| c.to_string()),
        };
        let event_type = event.event_type().name().to_owned();
        self.put_stamp(&event_type, &stamp);
        let start = self.blob.len() + 4;
        let len = self.open_field();
        if let Err(e) = event.write_json(&mut self.blob) {
            self.blob.truncate(at);
            return Err(e);
        }
        self.close_field(len);
        self.rows.push(Meta {
            event_type,
            stamp,
            body: start..self.blob.len(),
        });
        Ok(())
    }

    /// Appends an event already made into a row (a staged one).
    pub(crate) fn push_row(&mut self, row: NewRow) {
        let stamp = Stamp {
            id: row.event_id,
            origin: row.origin,
            correlation: row.correlation,
            causation: row.causation,
        };
        self.put_stamp(&row.event_type, &stamp);
        let start = self.blob.len() + 4;
        self.put(&row.body);
        self.rows.push(Meta {
            event_type: row.event_type,
            stamp,
            body: start..self.blob.len(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The blob of the events gathered so far.
    pub(crate) fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The gathered events as rows numbered from `first_seq`, ready for the relay; the
    /// encoder is empty again.
    pub(crate) fn take(&mut self, first_seq: i64) -> Vec<PendingRow> {
        let next = self
            .pool
            .0
            .lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.blob.capacity()));
        let blob = Bytes::from_owner(Pooled {
            buf: std::mem::replace(&mut self.blob, next),
            pool: Arc::clone(&self.pool),
        });
        self.rows
            .drain(..)
            .zip(first_seq..)
            .map(|(m, seq)| PendingRow {
                seq,
                event_type: m.event_type,
                stamp: m.stamp,
                body: blob.slice(m.body),
            })
            .collect()
    }

    /// Forgets what was gathered (a commit that failed: the events come again).
    pub(crate) fn clear(&mut self) {
        self.blob.clear();
        self.rows.clear();
    }

    fn put_stamp(&mut self, event_type: &str, s: &Stamp) {
        self.put(s.id.as_bytes());
        self.put(event_type.as_bytes());
        self.put(s.origin.as_bytes());
        self.put(s.correlation.as_deref().unwrap_or("").as_bytes());
        self.put(s.causation.as_deref().unwrap_or("").as_bytes());
    }

    fn put(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.blob.extend_from_slice(&len.to_le_bytes());
        self.blob.extend_from_slice(bytes);
    }

    /// Starts a field whose length is known only once written; returns where the length goes.
    fn open_field(&mut self) -> usize {
        let at = self.blob.len();
        self.blob.extend_from_slice(&[0; 4]);
        at
    }

    fn close_field(&mut self, at: usize) {
        let len = u32::try_from(self.blob.len() - at - 4).unwrap_or(u32::MAX);
        self.blob[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// The `count` events of the blob of the batch starting at `first_seq`.
///
/// # Errors
/// The blob is not what [`Encoder`] writes (a damaged file): what is wrong, and where.
pub(crate) fn decode(first_seq: i64, count: i64, blob: Bytes) -> Result<Vec<PendingRow>, String> {
    let mut rows = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 16));
    let mut at = 0usize;
    let field = |at: &mut usize| -> Result<Range<usize>, String> {
        let len = blob
            .get(*at..*at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("cut short at byte {at}"))?;
        let start = *at + 4;
        let end = start + len as usize;
        if end > blob.len() {
            return Err(format!(
                "a field of {len} bytes at byte {at} runs past the end"
            ));
        }
        *at = end;
        Ok(start..end)
    };
    let text = |r: Range<usize>| -> Result<String, String> {
        std::str::from_utf8(&blob[r.clone()])
            .map(str::to_owned)
            .map_err(|_| format!("a field at byte {} is not UTF-8", r.start))
    };
    for seq in first_seq..first_seq + count {
        let id = text(field(&mut at)?)?;
        let event_type = text(field(&mut at)?)?;
        let origin = text(field(&mut at)?)?;
        let correlation = Some(text(field(&mut at)?)?).filter(|s| !s.is_empty());
        let causation = Some(text(field(&mut at)?)?).filter(|s| !s.is_empty());
        let body = field(&mut at)?;
        rows.push(PendingRow {
            seq,
            event_type,
            stamp: Stamp {
                id,
                origin,
                correlation,
                causation,
            },
            body: blob.slice(body),
        });
    }
    if at != blob.len() {
        return Err(format!(
            "{} bytes after the {count} events it should hold",
            blob.len() - at
        ));
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use plugbus::{EventId, EventType};

    fn event(n: usize) -> Event {
        Event::builder(EventType::USER_LOGIN)
            .json(&format!(r#"{{"user_id":"u{n}"}}"#))
            .correlation_id(EventId::new())
            .build()
            .unwrap()
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_rows() {
        let events: Vec<Event> = (0..3).map(event).collect();
        let mut enc = Encoder::default();
        for e in &events {
            enc.push_event(e).unwrap();
        }
        enc.push_row(NewRow::of(&events[0]).unwrap());
        assert_eq!(enc.len(), 4);
        let blob = Bytes::copy_from_slice(enc.blob());
        let taken = enc.take(10);
        assert!(enc.is_empty() && enc.blob().is_empty());
        let decoded = decode(10, 4, blob).unwrap();
        assert_eq!(decoded.len(), 4);
        for (a, b) in taken.iter().zip(&decoded) {
            assert_eq!(
                (a.seq, &a.event_type, &a.stamp, &a.body),
                (b.seq, &b.event_type, &b.stamp, &b.body)
            );
        }
        assert_eq!(decoded[1].seq, 11);
        assert_eq!(decoded[1].body, events[1].to_json().unwrap());
        assert_eq!(decoded[1].stamp.id, events[1].id().to_string());
        assert_eq!(
            decoded[1].stamp.correlation,
            events[1].correlation_id().map(|c| c.to_string())
        );
        assert_eq!(decoded[1].stamp.causation, None);
        assert_eq!(decoded[3].stamp, decoded[0].stamp);
    }

    #[test]
    fn a_blob_is_used_again_once_every_row_of_its_batch_is_gone() {
        let mut enc = Encoder::default();
        enc.push_event(&event(1)).unwrap();
        enc.push_event(&event(2)).unwrap();
        let rows = enc.take(1);
        let first = rows[1].body.as_ptr() as usize;
        assert!(enc.pool.0.lock().is_empty());
        drop(rows);
        let (base, cap) = {
            let kept = enc.pool.0.lock();
            assert_eq!(kept.len(), 1);
            (kept[0].as_ptr() as usize, kept[0].capacity())
        };
        assert!(
            (base..base + cap).contains(&first),
            "the pool holds another buffer"
        );
        // The commit after next writes into it (the next one has its buffer already).
        enc.push_event(&event(3)).unwrap();
        let _second = enc.take(3);
        enc.push_event(&event(4)).unwrap();
        let third = enc.take(4);
        let at = third[0].body.as_ptr() as usize;
        assert!(
            (base..base + cap).contains(&at),
            "a new buffer was allocated"
        );
        assert!(enc.pool.0.lock().is_empty());
        let body = std::str::from_utf8(&third[0].body).unwrap();
        assert!(body.contains(r#""user_id":"u4""#), "{body}");
    }

    #[test]
    fn a_damaged_blob_is_an_error_that_says_where() {
        let mut enc = Encoder::default();
        enc.push_event(&event(1)).unwrap();
        let blob = enc.blob().to_vec();
        let cut = Bytes::copy_from_slice(&blob[..blob.len() - 3]);
        assert!(decode(1, 1, cut).unwrap_err().contains("runs past the end"));
        assert!(decode(1, 2, Bytes::from(blob.clone()))
            .unwrap_err()
            .contains("cut short"));
        let mut extra = blob;
        extra.push(0);
        assert!(decode(1, 1, Bytes::from(extra))
            .unwrap_err()
            .contains("after"));
    }
}
