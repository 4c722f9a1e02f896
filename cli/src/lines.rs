//! Reading `plugbus run`'s input one line at a time, in memory bounded by a maximum line length.
//!
//! Why not [`tokio::io::AsyncBufReadExt::lines`]: it gathers a whole line into a `String` before
//! the caller sees any of it, so one huge line costs memory in proportion to its length (a 1.5 GB
//! line aborted the host), and a line that is not UTF-8 ends the stream with an error that names
//! no line. [`LineReader`] keeps at most `max + 1` bytes of a line: a longer line streams past and
//! is dropped as it goes, then comes back as an error item with its number and length. A line that
//! is too long or not UTF-8 is something to report; only an I/O error ends the input.
//!
//! # Lines
//!
//! A line ends at `\n`; a `\r` right before that `\n` belongs to the line ending, not the line.
//! Bytes after the last `\n` are a line too (a file whose last line has no newline), with nothing
//! stripped. The length limit counts a line's bytes without its line ending.

use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// A line of the input, borrowed from the reader until its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// 1-based, counting every line (blank, too long and not UTF-8 ones included).
    pub(crate) number: u64,
    /// The line without its line ending.
    pub(crate) text: &'a str,
}

/// A line that could not be read as text, or the read that failed.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {kind}")]
pub(crate) struct LineError {
    /// The 1-based number of the line (for an I/O error, the line being read).
    pub(crate) line: u64,
    /// What was wrong.
    pub(crate) kind: LineErrorKind,
}

/// What was wrong with a line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineErrorKind {
    /// The line has more bytes than the limit; they were read past, not kept.
    #[error("{len} bytes, longer than the limit of {max} bytes (--max-line-bytes)")]
    TooLong {
        /// The line's length without its line ending.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The line is not UTF-8 text.
    #[error("not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// How many bytes from the start of the line are valid UTF-8.
        valid_up_to: usize,
    },
    /// Reading failed; the reader yields nothing more after this.
    #[error("reading failed: {0}")]
    Io(#[source] io::Error),
}

impl LineError {
    /// Whether the input ends here: true for an I/O error, false for a bad line one can skip.
    pub(crate) fn ends_input(&self) -> bool {
        matches!(self.kind, LineErrorKind::Io(_))
    }
}

/// Splits an [`AsyncBufRead`] into lines of at most `max` bytes each; see the module docs.
///
/// `next_line` is cancel-safe: a call dropped halfway (a `select!` that took another branch)
/// leaves the part of the line read so far in the reader, and the next call carries on with it.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    max: usize,
    /// The current line's bytes, while it is not known to be too long.
    buf: Vec<u8>,
    /// The current line's length so far, including the bytes not kept.
    seen: u64,
    /// The last byte of the current line so far (to tell `\r\n` from `\n` once the bytes are gone).
    last: Option<u8>,
    /// The current line is longer than the limit: its bytes are dropped, only counted.
    overlong: bool,
    /// The previous call returned a line: clear it before reading the next.
    returned: bool,
    /// Lines completed so far.
    number: u64,
    /// End of input or an I/O error: nothing more to yield.
    done: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader of lines of at most `max` bytes (a `max` of 0 allows only empty lines).
    pub(crate) fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
            seen: 0,
            last: None,
            overlong: false,
            returned: false,
            number: 0,
            done: false,
        }
    }

    /// How many lines were read to their end (returned as lines or as bad-line errors).
    pub(crate) fn lines_read(&self) -> u64 {
        self.number
    }

    /// The next line, a bad line to report (`Some(Err(_))` that does not
    /// [end the input](LineError::ends_input)), or `None` at the end of the input.
    ///
    /// After an I/O error (reported once, as `Some(Err(_))`), returns `None`.
    pub(crate) async fn next_line(&mut self) -> Option<Result<Line<'_>, LineError>> {
        if self.done {
            return None;
        }
        if self.returned {
            self.buf.clear();
            self.seen = 0;
            self.last = None;
            self.overlong = false;
            self.returned = false;
        }
        // Room for the longest allowed line plus a `\r` that may turn out to be its line ending.
        let keep = self.max.saturating_add(1);
        loop {
            let chunk = match self.inner.fill_buf().await {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(LineError {
                        line: self.number.saturating_add(1),
                        kind: LineErrorKind::Io(e),
                    }));
                }
            };
            if chunk.is_empty() {
                self.done = true;
                if self.seen == 0 {
                    return None;
                }
                return Some(self.complete(false));
            }
            let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let part = &chunk[..take];
            self.seen = self.seen.saturating_add(part.len() as u64);
            if let Some(&b) = part.last() {
                self.last = Some(b);
            }
            if !self.overlong {
                let need = self.buf.len() + part.len();
                if need > keep {
                    self.overlong = true;
                    self.buf.clear();
                } else {
                    if need > self.buf.capacity() {
                        // Grow geometrically, but never past `keep`: what the limit promises.
                        let want = need.max(self.buf.capacity().saturating_mul(2)).min(keep);
                        self.buf.reserve_exact(want - self.buf.len());
                    }
                    self.buf.extend_from_slice(part);
                }
            }
            self.inner.consume(take + usize::from(newline));
            if newline {
                return Some(self.complete(true));
            }
        }
    }

    /// Ends the current line: strips a `\r` before its `\n`, checks length and UTF-8.
    fn complete(&mut self, newline: bool) -> Result<Line<'_>, LineError> {
        self.number += 1;
        self.returned = true;
        let cr = newline && self.last == Some(b'\r');
        let len = self.seen - u64::from(cr);
        if self.overlong || len > self.max as u64 {
            return Err(LineError {
                line: self.number,
                kind: LineErrorKind::TooLong { len, max: self.max },
            });
        }
        let bytes = &self.buf[..self.buf.len() - usize::from(cr)];
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Line {
                number: self.number,
                text,
            }),
            Err(e) => Err(LineError {
                line: self.number,
                kind: LineErrorKind::NotUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
            }),
        }
    }

    /// The capacity of the line buffer, to check the memory bound.
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

    /// Everything the reader yields, as `Ok((number, text))` or `Err(display)`.
    async fn collect<R: AsyncBufRead + Unpin>(
        mut r: LineReader<R>,
    ) -> Vec<Result<(u64, String), String>> {
        let mut out = Vec::new();
        while let Some(item) = r.next_line().await {
            out.push(
                item.map(|l| (l.number, l.text.to_owned()))
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }

    /// Lines of `input` read through a buffer of `cap` bytes, so lines straddle chunks.
    async fn lines(input: &[u8], cap: usize, max: usize) -> Vec<Result<(u64, String), String>> {
        collect(LineReader::new(BufReader::with_capacity(cap, input), max)).await
    }

    fn ok(n: u64, s: &str) -> Result<(u64, String), String> {
        Ok((n, s.to_owned()))
    }

    #[tokio::test]
    async fn splits_on_newlines_whatever_the_chunk_size() {
        let input = b"one\ntwo\r\n\nfour\n";
        for cap in [1, 2, 3, 5, 64] {
            assert_eq!(
                lines(input, cap, 100).await,
                vec![ok(1, "one"), ok(2, "two"), ok(3, ""), ok(4, "four")],
                "buffer of {cap} bytes"
            );
        }
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_a_line_and_no_empty_line_follows_a_newline() {
        assert_eq!(lines(b"a\nb", 2, 10).await, vec![ok(1, "a"), ok(2, "b")]);
        assert_eq!(lines(b"a\n", 2, 10).await, vec![ok(1, "a")]);
        assert_eq!(lines(b"", 2, 10).await, vec![]);
        // Only a `\r` before `\n` is a line ending.
        assert_eq!(lines(b"a\rb\r", 8, 10).await, vec![ok(1, "a\rb\r")]);
    }

    #[tokio::test]
    async fn invalid_utf8_is_an_item_with_its_line_number_and_reading_goes_on() {
        let got = lines(b"good\nba\xffd\nafter\n", 3, 100).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ok(1, "good"));
        let err = got[1].as_ref().unwrap_err();
        assert!(
            err.starts_with("line 2: not valid UTF-8") && err.contains("offset 2"),
            "{err}"
        );
        assert_eq!(got[2], ok(3, "after"));
    }

    #[tokio::test]
    async fn the_limit_counts_bytes_without_the_line_ending() {
        // Exactly 4 bytes pass, with `\n`, `\r\n` or none; 5 do not.
        for input in [
            &b"abcd\nabcde\nx"[..],
            b"abcd\r\nabcde\r\nx",
            b"abcd\nabcde",
        ] {
            for cap in [1, 3, 64] {
                let got = lines(input, cap, 4).await;
                assert_eq!(got[0], ok(1, "abcd"), "{input:?} cap {cap}");
                let err = got[1].as_ref().unwrap_err();
                assert_eq!(
                    err, "line 2: 5 bytes, longer than the limit of 4 bytes (--max-line-bytes)",
                    "{input:?} cap {cap}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_huge_line_is_skipped_in_bounded_memory_and_counted() {
        const HUGE: u64 = 10 * 1024 * 1024;
        let max = 1024;
        let input = tokio::io::repeat(b'x')
            .take(HUGE)
            .chain(&b"\r\n{\"after\":1}\n"[..]);
        let mut r = LineReader::new(BufReader::new(input), max);
        let err = r.next_line().await.unwrap().unwrap_err();
        assert_eq!(err.line, 1);
        assert!(
            matches!(
                err.kind,
                LineErrorKind::TooLong {
                    len: HUGE,
                    max: 1024
                }
            ),
            "{err}"
        );
        assert!(!err.ends_input());
        assert!(r.buffer_capacity() <= max + 1, "{}", r.buffer_capacity());
        let next = r.next_line().await.unwrap().unwrap();
        assert_eq!((next.number, next.text), (2, "{\"after\":1}"));
        assert!(r.next_line().await.is_none());
        assert_eq!(r.lines_read(), 2);
    }

    #[tokio::test]
    async fn a_line_just_under_the_limit_keeps_the_buffer_within_it() {
        let max = 100_000;
        let mut input = vec![b'y'; max];
        input.push(b'\n');
        let mut r = LineReader::new(BufReader::with_capacity(7, &input[..]), max);
        assert_eq!(r.next_line().await.unwrap().unwrap().text.len(), max);
        assert!(r.buffer_capacity() <= max + 1, "{}", r.buffer_capacity());
    }

    /// Yields its data, then fails every read.
    struct FailsAfter(&'static [u8]);

    impl AsyncRead for FailsAfter {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Ready(Err(io::Error::other("disk on fire")));
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_io_error_ends_the_input_after_the_lines_before_it() {
        let r = LineReader::new(BufReader::new(FailsAfter(b"a\nb\npart")), 100);
        let got = collect(r).await;
        assert_eq!(got[..2], [ok(1, "a"), ok(2, "b")]);
        assert_eq!(got.len(), 3, "nothing after the error: {got:?}");
        let err = got[2].as_ref().unwrap_err();
        assert!(
            err.starts_with("line 3: reading failed") && err.contains("disk on fire"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_call_loses_nothing() {
        // A pipe with part of a line in it: the call reads that part, then waits for more, and
        // is dropped while it waits.
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = LineReader::new(BufReader::new(rx), 100);
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"hel")
            .await
            .unwrap();
        assert!(r.next_line().now_or_never().is_none(), "no newline yet");
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"lo\n")
            .await
            .unwrap();
        drop(tx);
        let line = r.next_line().await.unwrap().unwrap();
        assert_eq!((line.number, line.text), (1, "hello"));
        assert!(r.next_line().await.is_none());
    }
}
