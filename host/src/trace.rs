//! Causation trees from an audit log (`plugbus trace`).
//!
//! Every event carries the id of the event being handled when it was published
//! (`causation_id`) and the id of the flow it belongs to (`correlation_id`); the audit logger
//! writes both into each record. [`TraceLog::read`] loads the records of a log (a rotated set
//! included) into a compact index, and answers two questions:
//!
//! - [`TraceLog::tree`]: an event's ancestors up to the root and all of its descendants;
//! - [`TraceLog::correlation`]: every event of one correlation, as the forest its causation
//!   links make.
//!
//! [`Forest`] renders the answer as a terminal tree, Mermaid, Graphviz DOT or JSON. Only the
//! header fields of each record are decoded (the payload is skipped, never built), so a
//! 1,000,000-record log loads in about a second.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plugbus::contract::audit::MAX_RECORD_BYTES;
use plugbus::EventId;
use serde::Deserialize;

/// Reading a log or answering a question failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A file could not be read.
    #[error("cannot read audit log '{}': {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not an audit record.
    #[error("audit log '{}' line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The id asked for is not a UUID.
    #[error("'{0}' is not an event id (a UUID)")]
    BadId(String),
    /// The event is not in the log.
    #[error("event {id} is not in the log ({records} event records read from {files})")]
    NotFound {
        /// The id asked for.
        id: String,
        /// Event records read.
        records: usize,
        /// The files read.
        files: String,
    },
}

/// One event of the log, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The event id.
    pub id: EventId,
    /// Its type.
    pub event_type: Arc<str>,
    /// Its claimed source.
    pub source: Arc<str>,
    /// Where the host says it came from (empty in logs written before origins were recorded).
    pub origin: Box<str>,
    /// Its time, RFC 3339.
    pub ts: Box<str>,
    /// Its time in Unix nanoseconds (for delays), when the time parses.
    #[serde(skip)]
    pub unix_nanos: Option<i64>,
    /// The event it was published while handling.
    pub causation_id: Option<EventId>,
    /// Its correlation id.
    pub correlation_id: Option<EventId>,
    /// The record's `seq`.
    pub seq: u64,
}

/// The event records of a log, indexed by id and by cause.
#[derive(Debug, Default)]
pub struct TraceLog {
    nodes: Vec<Node>,
    by_id: HashMap<EventId, usize>,
    children: HashMap<EventId, Vec<usize>>,
    files: Vec<PathBuf>,
    /// Types and sources repeat: one copy of each.
    strings: HashMap<Box<str>, Arc<str>>,
}

/// The header of a record; everything else (the payload first) is skipped unparsed.
#[derive(Deserialize)]
struct Header<'a> {
    seq: u64,
    #[serde(borrow)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    origin: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    correlation_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    causation_id: Option<std::borrow::Cow<'a, str>>,
}

impl TraceLog {
    /// Reads the event records of `paths` (oldest first for a rotated set); seal records are
    /// skipped. A line that is not a JSON record with a `seq` is an error naming its place.
    ///
    /// # Errors
    /// A file cannot be read, or a line is not an audit record.
    pub fn read(paths: &[PathBuf]) -> Result<TraceLog, TraceError> {
        let mut log = TraceLog {
            files: paths.to_vec(),
            ..TraceLog::default()
        };
        for path in paths {
            log.read_file(path)?;
        }
        for (i, n) in log.nodes.iter().enumerate() {
            if let Some(cause) = n.causation_id {
                log.children.entry(cause).or_default().push(i);
            }
        }
        Ok(log)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), TraceError> {
        let io = |source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        let mut buffer = Vec::new();
        let mut line = 0u64;
        loop {
            buffer.clear();
            line += 1;
            let read = (&mut reader)
                .take(MAX_RECORD_BYTES as u64 + 2)
                .read_until(b'\n', &mut buffer)
                .map_err(io)?;
            if read == 0 {
                return Ok(());
            }
            let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            if text.is_empty() {
                continue;
            }
            let malformed = |reason: String| TraceError::Malformed {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let h: Header<'_> = serde_json::from_slice(text)
                .map_err(|e| malformed(format!("not an audit record: {e}")))?;
            let Some(id) = h.event_id else {
                continue; // a seal record
            };
            let parse = |field: &str, v: &str| {
                v.parse::<EventId>()
                    .map_err(|_| malformed(format!("{field} '{v}' is not a UUID")))
            };
            let id = parse("event_id", &id)?;
            let causation_id = h
                .causation_id
                .as_deref()
                .map(|v| parse("causation_id", v))
                .transpose()?;
            let correlation_id = h
                .correlation_id
                .as_deref()
                .map(|v| parse("correlation_id", v))
                .transpose()?;
            let ts: Box<str> = h.ts.as_deref().unwrap_or_default().into();
            let unix_nanos = chrono::DateTime::parse_from_rfc3339(&ts)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt());
            let event_type = self.intern(h.event_type.as_deref().unwrap_or_default());
            let source = self.intern(h.source.as_deref().unwrap_or_default());
            // Unique per input line (`input:<file>:<line>`): not worth interning.
            let origin: Box<str> = h.origin.as_deref().unwrap_or_default().into();
            self.by_id.insert(id, self.nodes.len());
            self.nodes.push(Node {
                id,
                event_type,
                source,
                origin,
                ts,
                unix_nanos,
                causation_id,
                correlation_id,
                seq: h.seq,
            });
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(s.into(), Arc::clone(&a));
        a
    }

    /// Event records read.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the log holds no event record.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every event record read, in log order.
    pub fn events(&self) -> &[Node] {
        &self.nodes
    }

    fn find(&self, id: &str) -> Result<usize, TraceError> {
        let parsed: EventId = id
            .trim()
            .parse()
            .map_err(|_| TraceError::BadId(id.to_owned()))?;
        self.by_id
            .get(&parsed)
            .copied()
            .ok_or_else(|| TraceError::NotFound {
                id: id.to_owned(),
                records: self.nodes.len(),
                files: self
                    .files
                    .iter()
                    .map(|f| format!("'{}'", f.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The causation tree of event `id`: its chain of ancestors from the root down to it, and
    /// every event caused by it, directly or not.
    ///
    /// # Errors
    /// `id` is not a UUID, or not in the log.
    pub fn tree(&self, id: &str) -> Result<Forest<'_>, TraceError> {
        let target = self.find(id)?;
        // Up: follow causes while they are in the log (a cycle cannot form from real ids, but
        // a doctored log must not hang us).
        let mut chain = vec![target];
        let mut seen = std::collections::HashSet::from([target]);
        let mut missing_root = None;
        while let Some(cause) = self.nodes[*chain.last().unwrap_or(&target)].causation_id {
            match self.by_id.get(&cause) {
                Some(&i) if seen.insert(i) => chain.push(i),
                Some(_) => break,
                None => {
                    missing_root = Some(cause);
                    break;
                }
            }
        }
        chain.reverse();
        let mut included = vec![false; self.nodes.len()];
        for &i in &chain {
            included[i] = true;
        }
        // Down: everything the target caused.
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            for &c in self.children.get(&self.nodes[i].id).into_iter().flatten() {
                if !included[c] {
                    included[c] = true;
                    stack.push(c);
                }
            }
        }
        Ok(Forest {
            log: self,
            included,
            target: Some(target),
            missing_root,
        })
    }

    /// Every event of correlation `id` (and the event whose id it is), linked by causation.
    ///
    /// # Errors
    /// `id` is not a UUID, or no event of the log has it as id or correlation id.
    pub fn correlation(&self, id: &str) -> Result<Forest<'_>, TraceError> {
        let parsed: EventId = id
            .trim()
            .parse()
            .map_err(|_| TraceError::BadId(id.to_owned()))?;
        let included: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.id == parsed || n.correlation_id == Some(parsed))
            .collect();
        if !included.iter().any(|b| *b) {
            return Err(self
                .find(id)
                .err()
                .unwrap_or(TraceError::BadId(id.to_owned())));
        }
        Ok(Forest {
            log: self,
            included,
            target: None,
            missing_root: None,
        })
    }
}

/// A set of events of a log with their causation links, ready to render.
#[derive(Debug)]
pub struct Forest<'a> {
    log: &'a TraceLog,
    included: Vec<bool>,
    /// The event asked for (marked in the output).
    target: Option<usize>,
    /// The root's cause, when it is not in the log (older than the log, or from elsewhere).
    missing_root: Option<EventId>,
}

impl Forest<'_> {
    fn nodes(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.log
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.included[*i])
    }

    /// The events included, in log order.
    pub fn events(&self) -> Vec<&Node> {
        self.nodes().map(|(_, n)| n).collect()
    }

    fn parent(&self, n: &Node) -> Option<usize> {
        let i = *self.log.by_id.get(&n.causation_id?)?;
        self.included[i].then_some(i)
    }

    fn kids(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .log
            .children
            .get(&self.log.nodes[i].id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|c| self.included[*c])
            .collect();
        v.sort_unstable();
        v
    }

    fn delay(&self, n: &Node) -> Option<String> {
        let p = &self.log.nodes[self.parent(n)?];
        let d = n.unix_nanos? - p.unix_nanos?;
        Some(if d < 0 {
            human_delay(d)
        } else {
            format!("+{}", human_delay(d))
        })
    }

    fn line(&self, i: usize) -> String {
        let n = &self.log.nodes[i];
        let mut s = format!("{}  {}", n.event_type, n.id);
        let _ = write!(s, "  source={}", n.source);
        if !n.origin.is_empty() {
            let _ = write!(s, " origin={}", n.origin);
        }
        let _ = write!(s, "  {}", n.ts);
        if let Some(d) = self.delay(n) {
            let _ = write!(s, " ({d} after its cause)");
        }
        if Some(i) == self.target {
            s.push_str("  <== this event");
        }
        s
    }

    /// The forest as an indented tree.
    pub fn to_tree(&self) -> String {
        let mut out = String::new();
        if let Some(cause) = self.missing_root {
            let _ = writeln!(out, "(caused by {cause}, which is not in the log)");
        }
        let roots: Vec<usize> = self
            .nodes()
            .filter(|(_, n)| self.parent(n).is_none())
            .map(|(i, _)| i)
            .collect();
        for r in roots {
            self.walk(&mut out, r, "", true, true);
        }
        out
    }

    fn walk(&self, out: &mut String, i: usize, prefix: &str, last: bool, root: bool) {
        let (branch, next) = match (root, last) {
            (true, _) => ("", String::new()),
            (false, true) => ("└─ ", format!("{prefix}   ")),
            (false, false) => ("├─ ", format!("{prefix}│  ")),
        };
        let _ = writeln!(out, "{prefix}{branch}{}", self.line(i));
        let kids = self.kids(i);
        let n = kids.len();
        for (k, c) in kids.into_iter().enumerate() {
            self.walk(out, c, &next, k + 1 == n, false);
        }
    }

    /// The forest as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, n) in self.nodes() {
            let mark = if Some(i) == self.target { "**" } else { "" };
            let _ = writeln!(
                out,
                "  e{}[\"{mark}{}{mark}<br/>{}<br/>{}\"]",
                n.seq,
                escape_label(&n.event_type),
                escape_label(&n.source),
                short(&n.id)
            );
        }
        for (_, n) in self.nodes() {
            if let Some(p) = self.parent(n) {
                let label = self.delay(n).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  e{} -->|{}| e{}",
                    self.log.nodes[p].seq,
                    escape_label(&label),
                    n.seq
                );
            }
        }
        out
    }

    /// The forest as a Graphviz DOT digraph.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph trace {\n  rankdir=TB;\n  node [shape=box];\n");
        for (i, n) in self.nodes() {
            let style = if Some(i) == self.target {
                ", style=bold"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  e{} [label=\"{}\\n{}\\n{}\"{style}];",
                n.seq,
                escape_dot(&n.event_type),
                escape_dot(&n.source),
                short(&n.id)
            );
        }
        for (_, n) in self.nodes() {
            if let Some(p) = self.parent(n) {
                let _ = writeln!(
                    out,
                    "  e{} -> e{} [label=\"{}\"];",
                    self.log.nodes[p].seq,
                    n.seq,
                    escape_dot(&self.delay(n).unwrap_or_default())
                );
            }
        }
        out.push_str("}\n");
        out
    }

    /// The forest as JSON: `{"target": id|null, "events": [{id, event_type, ..., parent}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .nodes()
            .map(|(_, n)| {
                let mut v = serde_json::to_value(n).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "parent".into(),
                        serde_json::json!(self.parent(n).map(|p| self.log.nodes[p].id)),
                    );
                    obj.insert(
                        "delay_ns".into(),
                        serde_json::json!(self
                            .parent(n)
                            .and_then(|p| Some(n.unix_nanos? - self.log.nodes[p].unix_nanos?))),
                    );
                }
                v
            })
            .collect();
        serde_json::json!({
            "target": self.target.map(|t| self.log.nodes[t].id),
            "caused_by_missing": self.missing_root,
            "events": events,
        })
    }
}

fn short(id: &EventId) -> String {
    id.to_string().chars().take(8).collect()
}

fn escape_label(s: &str) -> String {
    s.replace('"', "#quot;").replace('|', "#124;")
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `1.2 ms`, `340 µs`, `2.5 s` (negative delays, from clock steps, keep their sign).
fn human_delay(nanos: i64) -> String {
    let a = nanos.unsigned_abs() as f64;
    let sign = if nanos < 0 { "-" } else { "" };
    if a >= 1e9 {
        format!("{sign}{:.2} s", a / 1e9)
    } else if a >= 1e6 {
        format!("{sign}{:.2} ms", a / 1e6)
    } else if a >= 1e3 {
        format!("{sign}{:.1} µs", a / 1e3)
    } else {
        format!("{sign}{a} ns")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn id(n: u8) -> String {
        format!("0190a1b2-c3d4-7e5f-8a6b-0000000000{n:02x}")
    }

    fn record(seq: u64, n: u8, t: &str, cause: Option<u8>, corr: Option<u8>) -> String {
        let mut s = format!(
            r#"{{"seq":{seq},"ts":"2026-12-01T00:00:00.{:09}Z","event_id":"{}","event_type":"{t}","category":"business","source":"s","origin":"input:stdin:{seq}""#,
            u64::from(n) * 1_000_000,
            id(n)
        );
        if let Some(c) = corr {
            let _ = write!(s, r#","correlation_id":"{}""#, id(c));
        }
        if let Some(c) = cause {
            let _ = write!(s, r#","causation_id":"{}""#, id(c));
        }
        s.push_str(r#","data":{"deep":[{"x":"y"}]},"prev_hash":"00","hash":"11"}"#);
        s.push('\n');
        s
    }

    fn log(lines: &[String]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = File::create(&path).unwrap();
        for l in lines {
            f.write_all(l.as_bytes()).unwrap();
        }
        // A seal record is skipped.
        f.write_all(b"{\"seq\":99,\"ts\":\"t\",\"seal\":{},\"prev_hash\":\"0\",\"hash\":\"1\"}\n")
            .unwrap();
        (dir, path)
    }

    #[test]
    fn ancestors_and_descendants_and_nothing_else() {
        let (_d, path) = log(&[
            record(1, 1, "user.login_failed", None, None),
            record(2, 2, "user.login_failed", Some(1), Some(1)),
            record(3, 3, "security.alert", Some(2), Some(1)),
            record(4, 4, "notify.sent", Some(3), Some(1)),
            record(5, 5, "audit.note", Some(3), Some(1)),
            record(6, 6, "user.login", None, None),
            record(7, 7, "sibling", Some(1), Some(1)),
        ]);
        let log = TraceLog::read(&[path]).unwrap();
        assert_eq!(log.len(), 7);
        let f = log.tree(&id(3)).unwrap();
        let types: Vec<&str> = f.events().iter().map(|n| &*n.event_type).collect();
        assert_eq!(
            types,
            [
                "user.login_failed",
                "user.login_failed",
                "security.alert",
                "notify.sent",
                "audit.note"
            ]
        );
        let tree = f.to_tree();
        assert!(
            tree.contains("security.alert") && tree.contains("<== this event"),
            "{tree}"
        );
        assert!(tree.contains("(+1.00 ms after its cause)"), "{tree}");
        assert!(
            !tree.contains("sibling") && !tree.contains("user.login "),
            "{tree}"
        );
        assert!(f.to_mermaid().contains("e2 -->|+1.00 ms| e3"));
        assert!(f.to_dot().contains("e3 -> e4"));
        let j = f.to_json();
        assert_eq!(j["events"].as_array().unwrap().len(), 5);
        // The correlation holds the root, its descendants and the sibling, not the other one.
        let c = log.correlation(&id(1)).unwrap();
        assert_eq!(c.events().len(), 6);
    }

    #[test]
    fn clear_errors() {
        let (_d, path) = log(&[record(1, 1, "a", Some(9), None)]);
        let log = TraceLog::read(std::slice::from_ref(&path)).unwrap();
        let err = log.tree(&id(2)).unwrap_err().to_string();
        assert!(
            err.contains("is not in the log") && err.contains("1 event records"),
            "{err}"
        );
        assert!(log
            .tree("nope")
            .unwrap_err()
            .to_string()
            .contains("not an event id"));
        // A cause older than the log is said to be missing.
        assert!(log
            .tree(&id(1))
            .unwrap()
            .to_tree()
            .contains("not in the log"));
        std::fs::write(&path, "not json\n").unwrap();
        let err = TraceLog::read(&[path]).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("not an audit record"),
            "{err}"
        );
    }
}
