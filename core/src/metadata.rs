//! Event metadata: a small ordered string map that lives inside the event without allocating.
//!
//! Most events carry one to three short entries (a request id, a tenant), and building an event
//! is on every publisher's hot path. Two strings per entry made each insert cost ~14 ns here
//! (two string constructions, a 48-byte move, two out-of-line copies). Here the text of up to
//! three entries sits back to back in one 40-byte inline buffer with one-byte lengths beside it,
//! so an insert is a length check and two short copies; larger maps move to the heap.

use crate::text::short_copy;
use std::fmt;

/// Bytes of keys and values kept inline.
const INLINE_BYTES: usize = 40;
/// Entries kept inline.
const INLINE_ENTRIES: usize = 3;

/// A small string map for event metadata; keeps insertion order, and up to three entries with
/// 40 bytes of text in all live inline without allocating.
///
/// ```
/// let mut m = plugbus::Metadata::new();
/// m.insert("tenant", "acme");
/// m.insert("region", "eu");
/// m.insert("tenant", "globex");
/// assert_eq!(m.get("tenant"), Some("globex"));
/// assert_eq!(m.iter().collect::<Vec<_>>(), [("region", "eu"), ("tenant", "globex")]);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline(Inline),
    Heap(Vec<(Box<str>, Box<str>)>),
}

#[derive(Clone, PartialEq, Eq)]
struct Inline {
    /// Entries in use.
    n: u8,
    /// Bytes of `text` in use.
    used: u8,
    /// (key length, value length) of each entry.
    lens: [(u8, u8); INLINE_ENTRIES],
    /// Keys and values back to back, in entry order. Only ever written with whole `str`s, so
    /// every span is valid UTF-8.
    text: [u8; INLINE_BYTES],
}

impl Inline {
    fn entries(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut at = 0usize;
        self.lens[..usize::from(self.n)].iter().map(move |&(k, v)| {
            let (k, v) = (usize::from(k), usize::from(v));
            let key = text(&self.text, at, k);
            let value = text(&self.text, at + k, v);
            at += k + v;
            (key, value)
        })
    }

    /// True if `key` is set (compared as bytes: no UTF-8 check on the hot path).
    #[inline]
    fn contains(&self, key: &str) -> bool {
        let mut at = 0usize;
        self.lens[..usize::from(self.n)].iter().any(|&(k, v)| {
            let (k, v) = (usize::from(k), usize::from(v));
            let hit = self.text.get(at..at + k) == Some(key.as_bytes());
            at += k + v;
            hit
        })
    }

    /// Appends if it fits; false if the map must move to the heap.
    #[inline]
    fn push(&mut self, key: &str, value: &str) -> bool {
        let (k, v) = (key.len(), value.len());
        let used = usize::from(self.used);
        let n = usize::from(self.n);
        let end = used + k + v;
        if n == INLINE_ENTRIES || end > INLINE_BYTES {
            return false;
        }
        let (Some(dst), Some(slot)) = (self.text.get_mut(used..end), self.lens.get_mut(n)) else {
            return false;
        };
        let (dk, dv) = dst.split_at_mut(k);
        short_copy(dk, key.as_bytes());
        short_copy(dv, value.as_bytes());
        // Both lengths are at most INLINE_BYTES (checked above), so they fit a byte.
        *slot = (k as u8, v as u8);
        self.n += 1;
        self.used = end as u8;
        true
    }
}

/// The `len` bytes of `buf` at `at` as text ("" if out of range, which `Inline` never asks).
fn text(buf: &[u8], at: usize, len: usize) -> &str {
    buf.get(at..at + len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

impl Metadata {
    /// An empty map.
    pub const fn new() -> Metadata {
        Metadata(Repr::Inline(Inline {
            n: 0,
            used: 0,
            lens: [(0, 0); INLINE_ENTRIES],
            text: [0; INLINE_BYTES],
        }))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`; a key set before moves to the end with its new value.
    #[inline]
    pub fn insert(&mut self, key: &str, value: &str) {
        let set = match &self.0 {
            Repr::Inline(inline) => inline.contains(key),
            Repr::Heap(entries) => entries.iter().any(|(k, _)| &**k == key),
        };
        if set {
            self.remove(key);
        }
        if let Repr::Inline(inline) = &mut self.0 {
            if inline.push(key, value) {
                return;
            }
            let moved = inline
                .entries()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            self.0 = Repr::Heap(moved);
        }
        if let Repr::Heap(entries) = &mut self.0 {
            entries.push((key.into(), value.into()));
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        match &mut self.0 {
            Repr::Heap(entries) => {
                let pos = entries.iter().position(|(k, _)| &**k == key)?;
                Some(entries.remove(pos).1.into_string())
            }
            Repr::Inline(inline) => {
                let value = inline.entries().find(|(k, _)| *k == key)?.1.to_owned();
                let mut rebuilt = Metadata::new();
                for (k, v) in inline.entries().filter(|(k, _)| *k != key) {
                    rebuilt.insert(k, v);
                }
                *self = rebuilt;
                Some(value)
            }
        }
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let (inline, heap) = match &self.0 {
            Repr::Inline(i) => (Some(i.entries()), None),
            Repr::Heap(e) => (None, Some(e.iter().map(|(k, v)| (&**k, &**v)))),
        };
        inline
            .into_iter()
            .flatten()
            .chain(heap.into_iter().flatten())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline(i) => usize::from(i.n),
            Repr::Heap(e) => e.len(),
        }
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata::new()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_keep_order_and_replace() {
        let mut m = Metadata::new();
        assert!(m.is_empty());
        m.insert("a", "1");
        m.insert("b", "");
        m.insert("", "empty key");
        m.insert("ключ", "значение");
        assert_eq!(m.len(), 4);
        assert_eq!(m.get("b"), Some(""));
        assert_eq!(m.get(""), Some("empty key"));
        assert_eq!(m.get("ключ"), Some("значение"));
        assert_eq!(m.get("c"), None);
        m.insert("a", "2");
        let all: Vec<_> = m.iter().collect();
        assert_eq!(
            all,
            [
                ("b", ""),
                ("", "empty key"),
                ("ключ", "значение"),
                ("a", "2")
            ]
        );
        assert_eq!(m.remove("ключ").as_deref(), Some("значение"));
        assert_eq!(m.remove("ключ"), None);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("a"), Some("2"));
        assert_eq!(format!("{m:?}"), r#"{"b": "", "": "empty key", "a": "2"}"#);
    }

    #[test]
    fn every_length_reads_back_inline_and_after_spilling() {
        for len in 0..=40 {
            let value: String = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let mut m = Metadata::new();
            m.insert("", &value);
            assert_eq!(m.get(""), Some(value.as_str()), "len {len}");
            m.insert("k2", "v2");
            m.insert("k3", "v3");
            m.insert("k4", "v4");
            assert_eq!(m.len(), 4);
            assert_eq!(m.get(""), Some(value.as_str()), "len {len}");
            assert_eq!(m.get("k4"), Some("v4"));
        }
    }

    #[test]
    fn long_text_spills_and_still_reads_back() {
        let mut m = Metadata::new();
        let long = "x".repeat(1000);
        for i in 0..20 {
            m.insert(&format!("key{i}"), &long);
        }
        assert_eq!(m.len(), 20);
        assert!(m.iter().all(|(_, v)| v == long));
        assert_eq!(m.get("key19").map(str::len), Some(1000));
    }

    #[test]
    fn equal_maps_compare_equal() {
        let mut a = Metadata::new();
        let mut b = Metadata::new();
        a.insert("x", "1");
        b.insert("x", "1");
        assert_eq!(a, b);
        b.insert("x", "2");
        assert_ne!(a, b);
    }
}
