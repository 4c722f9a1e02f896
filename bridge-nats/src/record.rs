//! The outbox's batch record: the events one writer commit appends, as one blob.
//!
//! A commit of many events is one row of `plugbus_outbox_batch` (its first sequence number,
//! how many events, the blob), not a row per event: SQLite then does one insert and, once
//! JetStream has them all, one delete per commit: about half of what the outbox cost per event
//! with a row each. The blob holds each event as six fields, each a `u32` little-endian length and
//! that many bytes of UTF-8: the event id, its type, its origin on this host, the correlation
//! id and the causation id (empty when there is none), and the envelope (the event's JSON).
//!
//! The first four are in the envelope too, except the origin; they are kept beside it so that
//! the relay sends a row (subject and headers) without parsing its JSON. A [`PendingRow`] is a
//! slice of its batch's blob and where its fields end: handing a batch to the relay allocates
//! nothing per event.

use crate::outbox::NewRow;
use bytes::Bytes;
use plugbus::Event;
use std::io::Write as _;

/// One event waiting for the broker: its record (a slice of its batch's blob) and where each of
/// its six fields ends in it.
#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    pub(crate) seq: i64,
    rec: Bytes,
    ends: [u32; FIELDS],
}

/// Fields per event: id, type, origin, correlation id, causation id, envelope.
const FIELDS: usize = 6;

impl PendingRow {
    fn field(&self, i: usize) -> &[u8] {
        let start = match i {
            0 => 4,
            _ => self.ends[i - 1] as usize + 4,
        };
        self.rec.get(start..self.ends[i] as usize).unwrap_or(&[])
    }

    /// Text fields are checked to be UTF-8 when the row is made.
    fn text(&self, i: usize) -> &str {
        std::str::from_utf8(self.field(i)).unwrap_or("")
    }

    pub(crate) fn id(&self) -> &str {
        self.text(0)
    }

    pub(crate) fn event_type(&self) -> &str {
        self.text(1)
    }

    pub(crate) fn origin(&self) -> &str {
        self.text(2)
    }

    pub(crate) fn correlation(&self) -> Option<&str> {
        Some(self.text(3)).filter(|s| !s.is_empty())
    }

    pub(crate) fn causation(&self) -> Option<&str> {
        Some(self.text(4)).filter(|s| !s.is_empty())
    }

    /// The envelope, sharing the blob.
    pub(crate) fn body(&self) -> Bytes {
        let start = self.ends[FIELDS - 2] as usize + 4;
        self.rec
            .slice(start.min(self.rec.len())..self.ends[FIELDS - 1] as usize)
    }

    /// What keeping the row costs in memory, roughly.
    pub(crate) fn weight(&self) -> usize {
        64 + self.rec.len()
    }
}

/// Events being gathered for one commit.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    blob: Vec<u8>,
    /// Where each record starts in the blob, and its fields' ends (from its start).
    rows: Vec<(usize, [u32; FIELDS])>,
}

/// A record being written: each field is a length, then its bytes.
struct Writing<'a> {
    blob: &'a mut Vec<u8>,
    start: usize,
    ends: [u32; FIELDS],
    next: usize,
}

impl<'a> Writing<'a> {
    /// A record appended to `blob`.
    fn at_end_of(blob: &'a mut Vec<u8>) -> Writing<'a> {
        Writing {
            start: blob.len(),
            blob,
            ends: [0; FIELDS],
            next: 0,
        }
    }

    fn field<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let at = self.blob.len();
        self.blob.extend_from_slice(&[0; 4]);
        write(self.blob)?;
        let len = u32::try_from(self.blob.len() - at - 4).unwrap_or(u32::MAX);
        self.blob[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.ends[self.next] = u32::try_from(self.blob.len() - self.start).unwrap_or(u32::MAX);
        self.next += 1;
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) {
        let _ = self.field(|blob| {
            blob.extend_from_slice(b);
            Ok::<(), ()>(())
        });
    }

    fn shown(&mut self, v: Option<impl std::fmt::Display>) {
        let _ = self.field(|blob| match v {
            Some(v) => write!(blob, "{v}"),
            None => Ok(()),
        });
    }
}

impl Encoder {
    /// Appends `event`.
    ///
    /// # Errors
    /// Its payload does not serialize (the encoder is then as it was).
    pub(crate) fn push_event(&mut self, event: &Event) -> Result<(), serde_json::Error> {
        let start = self.blob.len();
        let mut w = Writing::at_end_of(&mut self.blob);
        w.shown(Some(event.id()));
        w.bytes(event.event_type().name().as_bytes());
        w.bytes(event.origin().as_str().as_bytes());
        w.shown(event.correlation_id());
        w.shown(event.causation_id());
        if let Err(e) = w.field(|blob| event.write_json(blob)) {
            self.blob.truncate(start);
            return Err(e);
        }
        let ends = w.ends;
        self.rows.push((start, ends));
        Ok(())
    }

    /// Appends an event already made into a row (a staged one).
    pub(crate) fn push_row(&mut self, row: NewRow) {
        let start = self.blob.len();
        let mut w = Writing::at_end_of(&mut self.blob);
        w.bytes(row.event_id.as_bytes());
        w.bytes(row.event_type.as_bytes());
        w.bytes(row.origin.as_bytes());
        w.bytes(row.correlation.as_deref().unwrap_or("").as_bytes());
        w.bytes(row.causation.as_deref().unwrap_or("").as_bytes());
        w.bytes(&row.body);
        let ends = w.ends;
        self.rows.push((start, ends));
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
        let next = Vec::with_capacity(self.blob.capacity());
        let blob = Bytes::from(std::mem::replace(&mut self.blob, next));
        self.rows
            .drain(..)
            .zip(first_seq..)
            .map(|((start, ends), seq)| PendingRow {
                seq,
                rec: blob.slice(start..start + ends[FIELDS - 1] as usize),
                ends,
            })
            .collect()
    }

    /// Forgets what was gathered (a commit that failed: the events come again).
    pub(crate) fn clear(&mut self) {
        self.blob.clear();
        self.rows.clear();
    }
}

/// The `count` events of the blob of the batch starting at `first_seq`.
///
/// # Errors
/// The blob is not what [`Encoder`] writes (a damaged file): what is wrong, and where.
pub(crate) fn decode(first_seq: i64, count: i64, blob: Bytes) -> Result<Vec<PendingRow>, String> {
    let mut rows = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 16));
    let mut at = 0usize;
    for seq in first_seq..first_seq + count {
        let start = at;
        let mut ends = [0u32; FIELDS];
        for (i, end) in ends.iter_mut().enumerate() {
            let len = blob
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| format!("cut short at byte {at}"))?;
            let field_end = at + 4 + len as usize;
            if field_end > blob.len() {
                return Err(format!(
                    "a field of {len} bytes at byte {at} runs past the end"
                ));
            }
            if i < FIELDS - 1 && std::str::from_utf8(&blob[at + 4..field_end]).is_err() {
                return Err(format!("a field at byte {at} is not UTF-8"));
            }
            at = field_end;
            *end = u32::try_from(at - start)
                .map_err(|_| format!("a record at byte {start} is too long"))?;
        }
        rows.push(PendingRow {
            seq,
            rec: blob.slice(start..at),
            ends,
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
        let fields = |r: &PendingRow| {
            (
                r.id().to_owned(),
                r.event_type().to_owned(),
                r.origin().to_owned(),
                r.correlation().map(str::to_owned),
                r.causation().map(str::to_owned),
                r.body(),
            )
        };
        for (a, b) in taken.iter().zip(&decoded) {
            assert_eq!((a.seq, fields(a)), (b.seq, fields(b)));
        }
        assert_eq!(decoded[1].seq, 11);
        assert_eq!(decoded[1].body(), events[1].to_json().unwrap());
        assert_eq!(decoded[1].id(), events[1].id().to_string());
        assert_eq!(decoded[1].event_type(), "user.login");
        assert_eq!(decoded[1].origin(), events[1].origin().as_str());
        assert_eq!(
            decoded[1].correlation().map(str::to_owned),
            events[1].correlation_id().map(|c| c.to_string())
        );
        assert_eq!(decoded[1].causation(), None);
        assert_eq!(fields(&decoded[3]), fields(&decoded[0]));
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
