//! Short text kept inline: the pieces of an event (its source, its metadata) that every
//! publisher writes on its hot path.
//!
//! Writing a few bytes through a general string type costs a call to `memcpy` and a handful of
//! branches, several nanoseconds each, which showed up as a third of event creation. Here short
//! copies are done with word moves, and a source of up to 30 bytes lives in the event itself.

use std::fmt;

/// Copies `src` into the front of `dst` (which must be at least as long) without calling out to
/// `memcpy`, whose call costs more than the copy for a few bytes: two overlapping word copies
/// cover 8 to 16 bytes, and so on down.
#[inline(always)]
pub(crate) fn short_copy(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n < 4 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Bytes kept inline by [`SmallText`].
const INLINE: usize = 30;

/// An immutable string: up to 30 bytes inline, longer ones on the heap; `&'static str`s are
/// kept by reference.
#[derive(Clone)]
pub(crate) enum SmallText {
    Static(&'static str),
    /// Only ever written from a whole `str`, so the first `len` bytes are valid UTF-8.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<str>),
}

impl SmallText {
    pub(crate) const fn from_static(s: &'static str) -> SmallText {
        SmallText::Static(s)
    }

    #[inline]
    pub(crate) fn new(s: &str) -> SmallText {
        if s.len() > INLINE {
            return SmallText::Heap(s.into());
        }
        let mut bytes = [0u8; INLINE];
        short_copy(&mut bytes, s.as_bytes());
        // At most INLINE (30) bytes, checked above.
        SmallText::Inline {
            len: s.len() as u8,
            bytes,
        }
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            SmallText::Static(s) => s,
            SmallText::Inline { len, bytes } => bytes
                .get(..usize::from(*len))
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
            SmallText::Heap(s) => s,
        }
    }
}

impl fmt::Debug for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_round_trips() {
        for len in 0..=64 {
            let s: String = "ж".repeat(len / 2) + &"q".repeat(len % 2);
            assert_eq!(SmallText::new(&s).as_str(), s, "len {len}");
            let mut buf = vec![0u8; s.len() + 3];
            short_copy(&mut buf, s.as_bytes());
            assert_eq!(&buf[..s.len()], s.as_bytes());
            assert!(buf[s.len()..].iter().all(|b| *b == 0));
        }
        assert_eq!(SmallText::from_static("local").as_str(), "local");
    }
}
