//! What ends up in the audit log: redaction by key patterns, payloads recorded as they came,
//! and the line limit. Each test writes a real log file and verifies its chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus_audit_logger::{verify_chain, AuditLogger, MAX_RECORD_BYTES, REDACTED};
use plugbus_plugin_api::contract::Category;
use plugbus_plugin_api::testing::{FakeHost, LoadedPlugin, TestEvent};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "plugbus-audit-records-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn load(host: &FakeHost, config: Value) -> LoadedPlugin {
    let mut p = host.load::<AuditLogger>(config).unwrap();
    p.start().unwrap();
    p
}

fn record(p: &mut LoadedPlugin, ev: &TestEvent) {
    let results = p.deliver(ev);
    assert_eq!(results.len(), 1, "{ev:?} was not delivered");
    for (_, r) in results {
        r.unwrap();
    }
}

fn event(payload: &str) -> TestEvent {
    TestEvent::new("data.created", Category::Business, payload)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The raw text of the `data` field of a record line: everything between `"data":` and
/// `,"prev_hash":` (the record's field order puts nothing else there).
fn raw_data(line: &str) -> &str {
    let start = line.find(",\"data\":").expect("no data field") + ",\"data\":".len();
    let end = line.rfind(",\"prev_hash\":").unwrap();
    &line[start..end]
}

/// Records `payload` with the default configuration and returns the record line.
fn record_one(payload: &str) -> (String, TempDir) {
    let dir = TempDir::new("one");
    let path = dir.file("audit.jsonl");
    let mut p = load(&FakeHost::new(), json!({ "path": path }));
    record(&mut p, &event(payload));
    p.stop().unwrap();
    assert_eq!(verify_chain(&path).unwrap(), 1);
    let mut all = lines(&path);
    assert_eq!(all.len(), 1);
    (all.remove(0), dir)
}

#[test]
fn listed_secret_keys_are_redacted_at_any_depth_in_arrays_and_metadata() {
    let secrets = [
        "password",
        "passwd",
        "pwd",
        "api_key",
        "apiKey",
        "access_token",
        "refresh_token",
        "client_secret",
        "new_password",
        "private_key",
        "Cookie",
        "authorization",
        "secret",
        "token",
        "PASSWORD",
        "Api_Key",
        "X-Api-Key",
    ];
    let kept = json!({"user_id": "alice", "ip": "10.0.0.1", "passport": "P1", "n": 1});
    let mut payload = serde_json::Map::new();
    let mut expected = serde_json::Map::new();
    for (i, key) in secrets.iter().enumerate() {
        // At the top, three objects down, and inside an array of objects.
        let deep = json!({"l1": {"l2": {*key: format!("s{i}"), "keep": i}}});
        let listed = json!([{*key: [1, {"x": "y"}]}, {"keep": key}]);
        payload.insert((*key).to_owned(), json!(format!("top-{i}")));
        payload.insert(format!("deep{i}"), deep);
        payload.insert(format!("list{i}"), listed);
        expected.insert((*key).to_owned(), json!(REDACTED));
        expected.insert(
            format!("deep{i}"),
            json!({"l1": {"l2": {*key: REDACTED, "keep": i}}}),
        );
        expected.insert(format!("list{i}"), json!([{*key: REDACTED}, {"keep": key}]));
    }
    payload.insert("kept".to_owned(), kept.clone());
    expected.insert("kept".to_owned(), kept);
    let payload = Value::Object(payload).to_string();

    let dir = TempDir::new("keys");
    let path = dir.file("audit.jsonl");
    let mut p = load(&FakeHost::new(), json!({ "path": path }));
    let ev = event(&payload)
        .with_metadata("api_key", "m1")
        .with_metadata("x-api-key", "m2")
        .with_metadata("X-Api-Key", "m3")
        .with_metadata("Authorization", "Bearer abc")
        .with_metadata("Cookie", "sid=1")
        .with_metadata("request_id", "r-1")
        .with_metadata("tenant", "acme");
    record(&mut p, &ev);
    p.stop().unwrap();
    assert_eq!(verify_chain(&path).unwrap(), 1);
    let line = &lines(&path)[0];
    let rec: Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["data"], Value::Object(expected));
    assert_eq!(
        rec["metadata"],
        json!({
            "api_key": REDACTED, "x-api-key": REDACTED, "X-Api-Key": REDACTED,
            "Authorization": REDACTED, "Cookie": REDACTED,
            "request_id": "r-1", "tenant": "acme",
        })
    );
    for secret in ["top-", "\"s1\"", "m1", "m2", "m3", "Bearer", "sid=1"] {
        assert!(!line.contains(secret), "{secret} leaked: {line}");
    }
    // Key order and every kept value survive as sent.
    let sent: Value = serde_json::from_str(&payload).unwrap();
    let sent_keys: Vec<&String> = sent.as_object().unwrap().keys().collect();
    let got_keys: Vec<&String> = rec["data"].as_object().unwrap().keys().collect();
    assert_eq!(sent_keys, got_keys);
}

#[test]
fn redact_replaces_and_redact_extra_extends_the_defaults() {
    let payload = r#"{"password":"p","ip":"1.2.3.4","session_id":"s","email":"e@x","user":"u"}"#;
    let dir = TempDir::new("config");
    let host = FakeHost::new();
    let cases = [
        // Replacing: only the listed keys, the defaults are gone.
        (
            json!({"redact": ["IP"]}),
            json!({"password":"p","ip":REDACTED,"session_id":"s","email":"e@x","user":"u"}),
        ),
        // Extending: the defaults and the extra ones.
        (
            json!({"redact_extra": ["ip", "*SESSION*"]}),
            json!({"password":REDACTED,"ip":REDACTED,"session_id":REDACTED,"email":"e@x","user":"u"}),
        ),
        // Both: the replacement plus the extra ones.
        (
            json!({"redact": ["ip"], "redact_extra": ["e*l"]}),
            json!({"password":"p","ip":REDACTED,"session_id":"s","email":REDACTED,"user":"u"}),
        ),
        // Nothing at all.
        (
            json!({"redact": []}),
            json!({"password":"p","ip":"1.2.3.4","session_id":"s","email":"e@x","user":"u"}),
        ),
    ];
    for (i, (mut config, expected)) in cases.into_iter().enumerate() {
        let path = dir.file(&format!("audit{i}.jsonl"));
        config["path"] = json!(path);
        let mut p = load(&host, config.clone());
        record(&mut p, &event(payload).with_metadata("Session-Id", "m"));
        p.stop().unwrap();
        verify_chain(&path).unwrap();
        let rec: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(rec["data"], expected, "{config}");
        let session_redacted = expected["session_id"] == REDACTED;
        assert_eq!(
            rec["metadata"]["Session-Id"] == REDACTED,
            session_redacted,
            "{config}"
        );
    }
}

#[test]
fn numbers_and_strings_are_recorded_byte_for_byte() {
    let payload = r#"{"big":123456789012345678901234567890,"f":1.10,"e":1E+2,"z":-0.000,"u":"\u00e9\/","list":[1.0,2.50e-3,18446744073709551616],"dup":1,"dup":2}"#;
    let (line, _dir) = record_one(payload);
    assert_eq!(raw_data(&line), payload);
    assert!(line.contains(r#""big":123456789012345678901234567890,"f":1.10,"#));
    // The record is still JSON any reader accepts.
    let rec: Value = serde_json::from_str(&line).unwrap();
    assert!(rec["data"].is_object());

    // Whitespace between tokens goes (one compact line), tokens stay.
    let (line, _dir) = record_one("{ \"f\" : 1.10 ,\n \"s\" : \"a  b\" }\n");
    assert_eq!(raw_data(&line), r#"{"f":1.10,"s":"a  b"}"#);
}

#[test]
fn a_200000_deep_payload_is_recorded_faithfully_without_crashing() {
    // 200,000 levels (objects and arrays alternating), a secret and exact numbers at the
    // bottom.
    let n = 100_000;
    let open = "{\"a\":[".repeat(n);
    let close = "]}".repeat(n);
    let payload = format!(r#"{open}{{"password":"hunter2","n":1.10}}{close}"#);
    let expected = format!(r#"{open}{{"password":"{REDACTED}","n":1.10}}{close}"#);

    let dir = TempDir::new("deep");
    let path = dir.file("audit.jsonl");
    // On a small stack: a recursive scanner would overflow it long before 200,000 levels.
    let (log, payload) = (path.clone(), payload.clone());
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut p = load(&FakeHost::new(), json!({ "path": log }));
            record(&mut p, &event(&payload));
            record(&mut p, &event(r#"{"after":true}"#));
            p.stop().unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(verify_chain(&path).unwrap(), 2);

    let all = lines(&path);
    assert!(!all[0].contains("hunter2"));
    // Too deep for common readers inline, so it is held as text: exactly the payload.
    let rec: Value = serde_json::from_str(&all[0]).unwrap();
    assert_eq!(rec.get("data"), None);
    assert_eq!(rec["data_text"].as_str().unwrap(), expected);
    let next: Value = serde_json::from_str(&all[1]).unwrap();
    assert_eq!(next["data"], json!({"after": true}));
}

#[test]
fn valid_json_common_readers_refuse_is_held_as_text() {
    for payload in [r#"{"huge":1e400}"#, r#"["\ud800"]"#] {
        let (line, _dir) = record_one(payload);
        let rec: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(rec["data_text"].as_str(), Some(payload), "{line}");
    }
    // Not JSON at all: marked, and the bytes are not recorded.
    let (line, _dir) = record_one(r#"{"password":"hunter2""#);
    let rec: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        rec["data_invalid"],
        json!({"bytes": 21, "offset": 21, "error": "unexpected end of input"})
    );
    assert!(!line.contains("hunter2"), "{line}");
}

/// The hash-chain and line-limit checks `plugbus audit verify` makes, from the log's
/// specification: every line at most [`MAX_RECORD_BYTES`] long without its `\n`, its body
/// JSON that serde_json reads, and the chain intact.
fn verify_like_the_host(path: &Path) -> usize {
    let text = fs::read(path).unwrap();
    let mut n = 0;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            line.len() <= MAX_RECORD_BYTES,
            "line of {} bytes",
            line.len()
        );
        let rec: Value = serde_json::from_slice(line).unwrap();
        assert!(rec["seq"].is_u64() && rec["prev_hash"].is_string());
        n += 1;
    }
    assert_eq!(verify_chain(path).unwrap(), u64::try_from(n).unwrap());
    n
}

#[test]
fn a_20_mb_payload_becomes_a_too_large_marker_and_the_log_verifies() {
    let dir = TempDir::new("large");
    let path = dir.file("audit.jsonl");
    let host = FakeHost::new();
    let mut p = load(&host, json!({ "path": path }));
    record(&mut p, &event(r#"{"before":1}"#));
    let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(20_000_000));
    let big = event(&payload)
        .with_id([9; 16])
        .with_metadata("request_id", "r-big");
    record(&mut p, &big);
    // Metadata alone can be too large too.
    let meta = event("{}").with_metadata("note", &"m".repeat(MAX_RECORD_BYTES));
    record(&mut p, &meta);
    record(&mut p, &event(r#"{"after":1}"#));
    p.stop().unwrap();

    assert_eq!(verify_like_the_host(&path), 4);
    let all = lines(&path);
    let marker: Value = serde_json::from_str(&all[1]).unwrap();
    assert!(all[1].len() < 1024, "{}", all[1]);
    assert_eq!(marker["seq"], 2);
    assert_eq!(marker["event_id"], big.id_string());
    assert_eq!(marker["event_type"], "data.created");
    assert_eq!(
        marker["too_large"],
        json!({
            "payload_bytes": payload.len(),
            "metadata_entries": 1,
            "metadata_bytes": "request_id".len() + "r-big".len(),
            "limit": MAX_RECORD_BYTES,
        })
    );
    for absent in ["data", "data_text", "metadata"] {
        assert_eq!(marker.get(absent), None, "{absent}");
    }
    let meta_marker: Value = serde_json::from_str(&all[2]).unwrap();
    assert_eq!(meta_marker["too_large"]["payload_bytes"], 2);
    assert_eq!(
        meta_marker["too_large"]["metadata_bytes"],
        4 + MAX_RECORD_BYTES
    );
    let warned = host
        .logs()
        .into_iter()
        .filter(|l| l.message.starts_with("event too large"))
        .count();
    assert_eq!(warned, 2);
}

#[test]
fn a_record_of_exactly_the_limit_is_written_and_one_byte_more_is_a_marker() {
    let dir = TempDir::new("edge");
    let host = FakeHost::new();
    let padded = |n: usize| {
        event(&format!(r#"{{"p":"{}"}}"#, "y".repeat(n)))
            .with_id([1; 16])
            .at_unix_nanos(1_700_000_000_000_000_000)
    };
    // The line length for an empty pad, then pads that land exactly on the limit and just past.
    let probe = dir.file("probe.jsonl");
    let mut p = load(&host, json!({ "path": probe }));
    record(&mut p, &padded(0));
    p.stop().unwrap();
    let base = lines(&probe)[0].len();
    let fits = MAX_RECORD_BYTES - base;
    for (name, pad, whole) in [("fits", fits, true), ("over", fits + 1, false)] {
        let path = dir.file(&format!("{name}.jsonl"));
        let mut p = load(&host, json!({ "path": path }));
        record(&mut p, &padded(pad));
        p.stop().unwrap();
        assert_eq!(verify_like_the_host(&path), 1);
        let line = &lines(&path)[0];
        if whole {
            assert_eq!(line.len(), MAX_RECORD_BYTES);
        } else {
            assert!(line.contains("\"too_large\":{"), "{}", &line[..200]);
        }
    }
}

#[test]
fn an_oversized_type_or_source_keeps_the_marker_short() {
    let dir = TempDir::new("cut");
    let path = dir.file("audit.jsonl");
    let host = FakeHost::new();
    let mut p = load(&host, json!({ "path": path }));
    // The host never sends such a source, but the plugin does not rely on it.
    let ev = event(&format!(r#"{{"blob":"{}"}}"#, "z".repeat(MAX_RECORD_BYTES)))
        .with_source(&"é".repeat(MAX_RECORD_BYTES / 2));
    record(&mut p, &ev);
    p.stop().unwrap();
    assert_eq!(verify_like_the_host(&path), 1);
    let line = &lines(&path)[0];
    assert!(line.len() < 4096, "{} bytes", line.len());
    let rec: Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["too_large"]["cut"], true);
    assert_eq!(rec["source"].as_str().unwrap(), "é".repeat(512));
}
