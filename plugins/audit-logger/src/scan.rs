//! A streaming JSON scanner that copies a payload through, token for token, redacting values.
//!
//! # Why not parse into a value tree
//!
//! A record must hold the payload as it came. Parsing into a tree and printing it again loses
//! exactly what an audit trail needs: numbers that do not fit an `f64` get rounded
//! (`123456789012345678901234567890` would become `1.2345678901234568e+29`), `1.10` becomes
//! `1.1`, string escapes are rewritten, and a parser that recurses refuses (or, worse, overflows
//! the stack on) deeply nested input. This scanner instead validates the text against the JSON
//! grammar (RFC 8259) and copies every token (string, number, literal, bracket, comma, colon)
//! byte for byte, dropping only the whitespace between tokens so that the record stays one
//! compact line. Where a key must be redacted, its value (whatever it is: a string, a number,
//! a whole object) is scanned but not copied, and `"[REDACTED]"` is written instead.
//!
//! # Depth
//!
//! Nesting is tracked on an explicit stack, never by recursion, so any depth that fits in
//! memory is scanned without touching the thread's stack. The scan also reports what common
//! JSON readers would choke on (nesting deeper than [`MAX_INLINE_DEPTH`], a number of ±1e301 or
//! more, a `\u` escape that is half of a surrogate pair), so that the record can hold such a
//! payload as text instead of inline (see the crate docs).
//!
//! # Size
//!
//! Output is bounded: the scan stops with [`ScanError::TooLarge`] as soon as the output would
//! pass the caller's budget, so an oversized payload is never copied in full.

use crate::redact::Redactor;

/// The deepest nesting (objects and arrays) of a payload recorded inline. serde_json, which the
/// host's verifier uses, refuses more than 128 levels in the whole record, and other common
/// readers have similar limits; 64 leaves room for the record's own object and any reader's.
pub(crate) const MAX_INLINE_DEPTH: usize = 64;

/// Numbers of magnitude `10^(MAX_INLINE_MAGNITUDE + 1)` or more are not recorded inline:
/// readers that parse numbers as `f64` (serde_json without `arbitrary_precision`, among others)
/// refuse values beyond ~1.8e308, and a margin below that avoids depending on how exactly each
/// reader rounds near the edge.
const MAX_INLINE_MAGNITUDE: i64 = 300;

/// The redaction marker, [`REDACTED`](crate::REDACTED), as a JSON string literal.
const REDACTED_JSON: &str = "\"[REDACTED]\"";

/// What a successful scan found out about the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// The deepest nesting of objects and arrays (0 for a scalar).
    pub(crate) depth: usize,
    /// False if the payload, although valid JSON, holds something common readers refuse: a
    /// number of ±1e301 or more, or a lone surrogate escape. (Depth is reported separately.)
    pub(crate) plain: bool,
}

impl Scanned {
    /// True if the payload can be embedded in the record as JSON that common readers accept.
    pub(crate) fn inline(&self) -> bool {
        self.plain && self.depth <= MAX_INLINE_DEPTH
    }
}

/// Why a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// The payload is not JSON: what was wrong and at which byte offset.
    Invalid {
        /// Byte offset in the payload.
        offset: usize,
        /// A fixed description; never any of the payload's content, which may hold secrets.
        reason: &'static str,
    },
    /// The output would grow past the budget.
    TooLarge,
}

/// Validates `payload` as JSON and appends it to `out`, compacted and redacted, stopping with
/// [`ScanError::TooLarge`] if `out` would grow past `budget` bytes. On error `out` holds a
/// partial copy; the caller truncates it.
pub(crate) fn copy_redacted(
    payload: &[u8],
    redactor: &Redactor,
    out: &mut String,
    budget: usize,
) -> Result<Scanned, ScanError> {
    let text = std::str::from_utf8(payload).map_err(|e| ScanError::Invalid {
        offset: e.valid_up_to(),
        reason: "invalid UTF-8",
    })?;
    Scanner {
        text,
        bytes: payload,
        pos: 0,
        out,
        budget,
        redactor,
        stack: Vec::new(),
        skip: None,
        depth: 0,
        plain: true,
    }
    .run()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Object,
    Array,
}

/// What the grammar allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A value (top level, after `:` or after `,` in an array).
    Value,
    /// A value or `]` (right after `[`).
    ValueOrEnd,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (right after `{`).
    KeyOrEnd,
    /// `,` or the end of the enclosing container, or the end of input at top level.
    AfterValue,
}

struct Scanner<'a, 'o> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: &'o mut String,
    budget: usize,
    redactor: &'a Redactor,
    stack: Vec<Open>,
    /// While a redacted value is being skipped: the stack height it sits at. Nothing is copied
    /// until a value completes at that height again.
    skip: Option<usize>,
    depth: usize,
    plain: bool,
}

impl Scanner<'_, '_> {
    fn invalid(&self, reason: &'static str) -> ScanError {
        ScanError::Invalid {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Copies `self.text[start..self.pos]` unless a redacted value is being skipped.
    fn emit_from(&mut self, start: usize) -> Result<(), ScanError> {
        if self.skip.is_none() {
            let token = self.text.get(start..self.pos).unwrap_or_default();
            self.emit(token)?;
        }
        Ok(())
    }

    fn emit(&mut self, s: &str) -> Result<(), ScanError> {
        if self.skip.is_none() {
            if self.out.len() + s.len() > self.budget {
                return Err(ScanError::TooLarge);
            }
            self.out.push_str(s);
        }
        Ok(())
    }

    /// A value just ended at the current stack height; a skipped redacted value may be over.
    fn value_done(&mut self) {
        if self.skip == Some(self.stack.len()) {
            self.skip = None;
        }
    }

    fn open(&mut self, kind: Open) -> Result<Next, ScanError> {
        let start = self.pos;
        self.pos += 1;
        self.stack.push(kind);
        self.depth = self.depth.max(self.stack.len());
        self.emit_from(start)?;
        Ok(match kind {
            Open::Object => Next::KeyOrEnd,
            Open::Array => Next::ValueOrEnd,
        })
    }

    fn close(&mut self) -> Result<Next, ScanError> {
        let start = self.pos;
        self.pos += 1;
        self.stack.pop();
        self.emit_from(start)?;
        self.value_done();
        Ok(Next::AfterValue)
    }

    fn run(mut self) -> Result<Scanned, ScanError> {
        let mut next = Next::Value;
        loop {
            self.skip_whitespace();
            let Some(b) = self.peek() else {
                if next == Next::AfterValue && self.stack.is_empty() {
                    return Ok(Scanned {
                        depth: self.depth,
                        plain: self.plain,
                    });
                }
                return Err(self.invalid("unexpected end of input"));
            };
            next = match next {
                Next::ValueOrEnd if b == b']' => self.close()?,
                Next::Value | Next::ValueOrEnd => self.value(b)?,
                Next::KeyOrEnd if b == b'}' => self.close()?,
                Next::Key | Next::KeyOrEnd => self.key(b)?,
                Next::AfterValue => match (self.stack.last().copied(), b) {
                    (None, _) => return Err(self.invalid("unexpected data after the value")),
                    (Some(open), b',') => {
                        let start = self.pos;
                        self.pos += 1;
                        self.emit_from(start)?;
                        match open {
                            Open::Object => Next::Key,
                            Open::Array => Next::Value,
                        }
                    }
                    (Some(Open::Object), b'}') | (Some(Open::Array), b']') => self.close()?,
                    (Some(Open::Object), _) => return Err(self.invalid("expected ',' or '}'")),
                    (Some(Open::Array), _) => return Err(self.invalid("expected ',' or ']'")),
                },
            };
        }
    }

    fn value(&mut self, b: u8) -> Result<Next, ScanError> {
        let start = self.pos;
        match b {
            b'{' => return self.open(Open::Object),
            b'[' => return self.open(Open::Array),
            b'"' => {
                self.string()?;
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b't' => self.literal("true")?,
            b'f' => self.literal("false")?,
            b'n' => self.literal("null")?,
            _ => return Err(self.invalid("expected a value")),
        }
        self.emit_from(start)?;
        self.value_done();
        Ok(Next::AfterValue)
    }

    /// A key, the `:` after it, and the redaction decision for the value that follows.
    fn key(&mut self, b: u8) -> Result<Next, ScanError> {
        if b != b'"' {
            return Err(self.invalid("expected a string key"));
        }
        let start = self.pos;
        let escaped = self.string()?;
        self.emit_from(start)?;
        let raw = self.text.get(start + 1..self.pos - 1).unwrap_or_default();
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.invalid("expected ':'"));
        }
        self.pos += 1;
        self.emit(":")?;
        if self.skip.is_none() {
            let redact = if escaped {
                self.redactor.matches(&unescape(raw))
            } else {
                self.redactor.matches(raw)
            };
            if redact {
                self.emit(REDACTED_JSON)?;
                self.skip = Some(self.stack.len());
            }
        }
        Ok(Next::Value)
    }

    fn literal(&mut self, word: &'static str) -> Result<(), ScanError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.invalid("invalid literal"))
        }
    }

    /// Scans a string starting at its `"`, leaving `pos` after the closing `"`. Returns whether
    /// it holds escapes.
    fn string(&mut self) -> Result<bool, ScanError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.invalid("unterminated string"));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0x00..=0x1f => return Err(self.invalid("control character in string")),
                _ => self.pos += 1,
            }
        }
    }

    /// Scans one escape starting at its `\`.
    fn escape(&mut self) -> Result<(), ScanError> {
        match self.bytes.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex4(self.pos + 2)?;
                self.pos += 6;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = if self.bytes[self.pos..].starts_with(b"\\u") {
                            self.hex4(self.pos + 2).ok()
                        } else {
                            None
                        };
                        match low {
                            Some(0xDC00..=0xDFFF) => self.pos += 6,
                            _ => self.plain = false,
                        }
                    }
                    0xDC00..=0xDFFF => self.plain = false,
                    _ => {}
                }
                Ok(())
            }
            _ => Err(self.invalid("invalid escape")),
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, ScanError> {
        let digits = self
            .bytes
            .get(at..at + 4)
            .ok_or_else(|| self.invalid("invalid \\u escape"))?;
        digits.iter().try_fold(0u32, |acc, d| {
            let v = char::from(*d)
                .to_digit(16)
                .ok_or_else(|| self.invalid("invalid \\u escape"))?;
            Ok(acc * 16 + v)
        })
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Scans a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) and notes whether it is
    /// beyond what `f64` readers accept.
    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.invalid("invalid number")),
        }
        let int = &self.bytes[int_start..self.pos];
        let mut frac: &[u8] = &[];
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let start = self.pos;
            if self.digits() == 0 {
                return Err(self.invalid("invalid number"));
            }
            frac = &self.bytes[start..self.pos];
        }
        let mut exponent: i64 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            let negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let start = self.pos;
            if self.digits() == 0 {
                return Err(self.invalid("invalid number"));
            }
            let magnitude = self.bytes[start..self.pos].iter().fold(0i64, |acc, d| {
                acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
            });
            exponent = if negative { -magnitude } else { magnitude };
        }
        // The power of ten of the first significant digit, before the exponent.
        let lead = if int != b"0" {
            i64::try_from(int.len() - 1).unwrap_or(i64::MAX)
        } else {
            match frac.iter().position(|d| *d != b'0') {
                Some(zeros) => -i64::try_from(zeros + 1).unwrap_or(i64::MAX),
                // Zero, whatever the exponent.
                None => return Ok(()),
            }
        };
        if lead.saturating_add(exponent) > MAX_INLINE_MAGNITUDE {
            self.plain = false;
        }
        Ok(())
    }
}

/// Decodes the escapes of a validated JSON string body (without its quotes), for matching keys.
/// A lone surrogate becomes U+FFFD.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let hex4 = |chars: &mut std::str::Chars<'_>| -> u32 {
        (0..4).fold(0, |acc, _| {
            acc * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0)
        })
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let unit = hex4(&mut chars);
                if (0xD800..=0xDBFF).contains(&unit) {
                    let mut ahead = chars.clone();
                    if ahead.next() == Some('\\') && ahead.next() == Some('u') {
                        let low = hex4(&mut ahead);
                        if (0xDC00..=0xDFFF).contains(&low) {
                            chars = ahead;
                            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        } else {
                            '\u{fffd}'
                        }
                    } else {
                        '\u{fffd}'
                    }
                } else {
                    char::from_u32(unit).unwrap_or('\u{fffd}')
                }
            }
            Some(other) => other,
            None => break,
        };
        out.push(decoded);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::redact::DEFAULT_REDACT;

    fn redactor() -> Redactor {
        let mut r = Redactor::default();
        r.add(DEFAULT_REDACT.iter().copied()).unwrap();
        r
    }

    fn copy(payload: &str) -> Result<(String, Scanned), ScanError> {
        let mut out = String::new();
        let scanned = copy_redacted(payload.as_bytes(), &redactor(), &mut out, usize::MAX)?;
        Ok((out, scanned))
    }

    fn copied(payload: &str) -> String {
        let (out, scanned) = copy(payload).unwrap();
        assert!(scanned.inline(), "{payload}");
        // Whatever is written inline must be JSON that serde_json reads.
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        out
    }

    #[test]
    fn tokens_are_copied_byte_for_byte() {
        for json in [
            r#"{"a":1.10,"b":123456789012345678901234567890,"c":-0,"d":1E+2,"e":0.000e-5}"#,
            r#"["\u00e9\/\n\"",true,false,null,{},[],"é☃😀"]"#,
            r#"{"dup":1,"dup":2,"z":{"y":[{"x":[]}]}}"#,
            r#""just a string""#,
            "42",
            "-1.5e-300",
            "1e300",
        ] {
            assert_eq!(copied(json), json);
        }
    }

    #[test]
    fn whitespace_between_tokens_is_dropped() {
        let pretty = "{\n  \"a\" : [ 1 ,\t2 ],\r\n  \"s\": \" kept  inside \"\n}\n";
        assert_eq!(copied(pretty), r#"{"a":[1,2],"s":" kept  inside "}"#);
    }

    #[test]
    fn redacts_any_value_at_any_depth() {
        assert_eq!(
            copied(
                r#"{"password":{"deep":[1,2,{"x":"y"}]},"list":[{"Token":7},{"ok":"k"}],"n":{"m":{"api_key":null,"pwd":"p"}}}"#
            ),
            r#"{"password":"[REDACTED]","list":[{"Token":"[REDACTED]"},{"ok":"k"}],"n":{"m":{"api_key":"[REDACTED]","pwd":"[REDACTED]"}}}"#
        );
        // A key spelled with escapes is matched by its meaning.
        assert_eq!(
            copied(r#"{"pass\u0077ord":"x","\u0074oken":1}"#),
            r#"{"pass\u0077ord":"[REDACTED]","\u0074oken":"[REDACTED]"}"#
        );
        // Keys inside a redacted value are not looked at; the value after it is normal again.
        assert_eq!(
            copied(r#"[{"secret":{"secret":{"a":1}},"b":[{"c":2}]},3]"#),
            r#"[{"secret":"[REDACTED]","b":[{"c":2}]},3]"#
        );
        // A string value equal to a secret key name is not a key.
        assert_eq!(
            copied(r#"["password",{"k":"token"}]"#),
            r#"["password",{"k":"token"}]"#
        );
    }

    #[test]
    fn invalid_json_is_refused_with_an_offset() {
        for (json, offset) in [
            ("", 0),
            ("password=x", 0),
            ("{", 1),
            ("{\"a\"}", 4),
            ("{\"a\":1,}", 7),
            ("[1,]", 3),
            ("[1 2]", 3),
            ("01", 1),
            ("1.", 2),
            ("1e", 2),
            ("-", 1),
            ("tru", 0),
            ("\"a\u{1}\"", 2),
            ("\"\\x\"", 1),
            ("\"\\u12g4\"", 1),
            ("\"abc", 4),
            ("{} {}", 3),
            ("{1:2}", 1),
            ("NaN", 0),
        ] {
            match copy(json) {
                Err(ScanError::Invalid { offset: at, .. }) => assert_eq!(at, offset, "{json:?}"),
                other => panic!("{json:?}: {other:?}"),
            }
        }
        let mut out = String::new();
        let err = copy_redacted(b"{\"a\":\"\xff\"}", &redactor(), &mut out, usize::MAX);
        assert_eq!(
            err,
            Err(ScanError::Invalid {
                offset: 6,
                reason: "invalid UTF-8"
            })
        );
    }

    #[test]
    fn what_readers_refuse_is_reported() {
        let (_, s) = copy("[1e301]").unwrap();
        assert!(!s.plain);
        let long_int = format!("[{}]", "9".repeat(302));
        assert!(!copy(&long_int).unwrap().1.plain);
        let long_int = format!("[{}]", "9".repeat(301));
        assert!(copy(&long_int).unwrap().1.plain);
        assert!(copy("[0e999999999999999999999]").unwrap().1.plain);
        assert!(copy("[1e-999999]").unwrap().1.plain);
        assert!(copy("[0.0001e303]").unwrap().1.plain);
        assert!(copy("[0.001e303]").unwrap().1.plain);
        assert!(!copy("[0.01e303]").unwrap().1.plain);
        assert!(!copy("[-1e301]").unwrap().1.plain);
        assert!(!copy(r#"["\ud800"]"#).unwrap().1.plain);
        assert!(!copy(r#"["\udc00"]"#).unwrap().1.plain);
        assert!(!copy(r#"["\ud800\u0041"]"#).unwrap().1.plain);
        assert!(copy(r#"["\ud83d\ude00"]"#).unwrap().1.plain);
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let (out, s) = copy(&deep).unwrap();
        assert_eq!(
            (out.as_str(), s.depth, s.inline()),
            (deep.as_str(), 65, false)
        );
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(copy(&ok).unwrap().1.inline());
    }

    #[test]
    fn very_deep_nesting_does_not_recurse() {
        let n = 1_000_000;
        let deep = format!("{}{}", "{\"a\":[".repeat(n), "]}".repeat(n));
        let (out, s) = copy(&deep).unwrap();
        assert_eq!(out, deep);
        assert_eq!(s.depth, 2 * n);
        let unclosed = "[".repeat(n);
        assert!(matches!(copy(&unclosed), Err(ScanError::Invalid { .. })));
    }

    #[test]
    fn output_stops_at_the_budget() {
        let mut out = String::from("prefix");
        let r = copy_redacted(br#"{"a":"0123456789"}"#, &redactor(), &mut out, 20);
        assert_eq!(r, Err(ScanError::TooLarge));
        let mut out = String::new();
        let r = copy_redacted(br#"{"a":"0123456789"}"#, &redactor(), &mut out, 18);
        assert!(r.is_ok());
        // Redacted bytes do not count.
        let mut out = String::new();
        let payload = format!(r#"{{"token":"{}"}}"#, "x".repeat(1000));
        let r = copy_redacted(payload.as_bytes(), &redactor(), &mut out, 30);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(out, r#"{"token":"[REDACTED]"}"#);
    }

    #[test]
    fn marker_is_the_redacted_string() {
        assert_eq!(
            REDACTED_JSON,
            serde_json::to_string(crate::REDACTED).unwrap()
        );
    }

    #[test]
    fn unescape_decodes_keys() {
        assert_eq!(unescape(r#"a\u0041\n\"\\\/"#), "aA\n\"\\/");
        assert_eq!(unescape(r#"\ud83d\ude00"#), "😀");
        assert_eq!(unescape(r#"\ud800x"#), "\u{fffd}x");
        assert_eq!(unescape(r#"\udc00"#), "\u{fffd}");
    }
}
