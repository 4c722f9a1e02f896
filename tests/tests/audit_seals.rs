//! Signed audit seals through the real binary and the real audit logger `.so`: a log written
//! by `plugbus run` with a key from `plugbus audit keygen`, then tampered with as an attacker
//! who can write the file (but not read the key) would, and checked with
//! `plugbus audit verify --pubkey`.
//!
//! Most tampers here pass a verifier that checks only the hash chain (each test shows that
//! too, with `verify` without the key): what makes them fail is the seals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ed25519_dalek::{Signer, SigningKey};
use plugbus::contract::audit::{hex, Seal};
use plugbus_tests::{crates, plugbus_binary, PluginDir};
use sha2::{Digest, Sha256};

use plugbus_tests::output_text as text;

/// A plugin folder with the audit logger, a key pair, and a log path.
struct Signed {
    dir: PluginDir,
    keys: PathBuf,
    log: PathBuf,
}

impl Signed {
    fn new() -> Signed {
        let dir = PluginDir::new();
        dir.add(crates::AUDIT_LOGGER);
        let keys = dir.scratch().join("keys");
        let out = Command::new(plugbus_binary())
            .args(["audit", "keygen", "--out"])
            .arg(&keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("key id"), "{}", text(&out));
        let log = dir.scratch().join("audit.jsonl");
        Signed { dir, keys, log }
    }

    fn pubkey(&self) -> PathBuf {
        self.keys.join("audit.pub")
    }

    /// Writes the host's config: the audit logger required and signing, with `settings`
    /// (after the path and key) in its config table. Returns the file.
    fn write_config(&self, settings: &str) -> PathBuf {
        let config = self.dir.scratch().join("plugbus.toml");
        fs::write(
            &config,
            format!(
                "[plugins]\ndirectories = [\"{}\"]\n[plugin.audit-logger]\nrequired = true\n\
                 config = {{ path = \"{}\", signing_key = \"{}\", {settings} }}\n",
                self.dir.path().display(),
                self.log.display(),
                self.keys.join("audit.key").display()
            ),
        )
        .unwrap();
        config
    }

    /// Runs the host over `lines` with the audit logger signing every 10 records; `extra` is
    /// added to its config table.
    fn run(&self, lines: &[String], extra: &str) -> Output {
        let config = self.write_config(&format!("seal_every = 10{extra}"));
        let input = self.dir.scratch().join("events.jsonl");
        fs::write(&input, lines.concat()).unwrap();
        let out = Command::new(plugbus_binary())
            .args(["run", "-c"])
            .arg(&config)
            .arg("--events")
            .arg(&input)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out
    }

    fn verify(&self, files: &[&Path], key: bool, live: bool) -> (Option<i32>, String) {
        let mut cmd = Command::new(plugbus_binary());
        cmd.args(["audit", "verify"]).args(files);
        if key {
            cmd.arg("--pubkey").arg(self.pubkey());
        }
        if live {
            cmd.arg("--live");
        }
        let out = cmd.output().unwrap();
        (out.status.code(), text(&out))
    }

    /// Verifies the one-file log with the key (the binary), and with a verifier that checks
    /// the hash chain only (the library's chain check): what each tamper below gets past.
    fn both(&self) -> ((Option<i32>, String), (Option<i32>, String)) {
        (
            self.verify(&[&self.log], true, false),
            chain_only(&[&self.log]),
        )
    }
}

/// The hash chain alone, as a verifier without seals checks it.
fn chain_only(files: &[&Path]) -> (Option<i32>, String) {
    let paths: Vec<PathBuf> = files.iter().map(|p| p.to_path_buf()).collect();
    match plugbus_host::verify_files(&paths) {
        Ok(r) => (Some(0), format!("ok: {} records", r.records)),
        Err(e) => (Some(1), format!("broken: {e}")),
    }
}

fn events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i == n / 2 {
                "{\"type\":\"security.alert\",\"data\":{\"kind\":\"brute_force\",\"user_id\":\"mallory\"}}\n".to_owned()
            } else {
                format!("{{\"type\":\"user.login\",\"data\":{{\"user_id\":\"u{i}\",\"ip\":\"10.0.0.1\"}}}}\n")
            }
        })
        .collect()
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = fs::File::create(path).unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
    }
}

/// The body `B` of a line (as the format defines it) and its hash.
fn split(line: &str) -> (String, String) {
    let line = line.trim_end_matches('\n');
    let at = line.rfind(",\"hash\":\"").unwrap();
    (
        format!("{}}}", &line[..at]),
        line[at + 9..at + 9 + 64].to_owned(),
    )
}

fn seal_line(body: &str) -> (String, String) {
    let hash = hex(&Sha256::digest(body.as_bytes()));
    (
        format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]),
        hash,
    )
}

/// What an attacker who can write the file does after editing it: renumber `seq` and
/// recompute every `prev_hash` and `hash`, so the chain agrees with itself again. With
/// `resign`, seal records are also re-made with the attacker's own key.
fn rechain(lines: &[String], resign: Option<&SigningKey>) -> Vec<String> {
    let mut prev = "0".repeat(64);
    let mut last_seal = 0u64;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let seq = i as u64 + 1;
        let (body, _) = split(line);
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let (Some(key), Some(seal)) = (resign, v.get("seal").cloned()) {
            let mut seal: Seal = serde_json::from_value(seal).unwrap();
            seal.seq = seq;
            seal.from_seq = last_seal + 1;
            seal.to_seq = seq - 1;
            seal.records = seal.to_seq + 1 - seal.from_seq;
            seal.head_hash = prev.clone();
            seal.key_id = hex(&Sha256::digest(key.verifying_key().to_bytes())[..8]);
            seal.sig = hex(&key.sign(&seal.signing_message()).to_bytes());
            v["seal"] = serde_json::to_value(&seal).unwrap();
            last_seal = seq;
        }
        // Keep the field order of the format: replace values in the text, in place.
        let mut body = body.clone();
        if resign.is_some() && v.get("seal").is_some() {
            let seal_text = serde_json::to_string(&v["seal"]).unwrap();
            let start = body.find(",\"seal\":").unwrap() + 8;
            let end = body.rfind(",\"prev_hash\":").unwrap();
            body.replace_range(start..end, &seal_text);
        }
        let after_seq = body.find(',').unwrap();
        body.replace_range(..after_seq, &format!("{{\"seq\":{seq}"));
        let p = body.rfind(",\"prev_hash\":\"").unwrap() + 14;
        body.replace_range(p..p + 64, &prev);
        let (line, hash) = seal_line(&body);
        prev = hash;
        out.push(line);
    }
    out
}

fn assert_broken(result: &(Option<i32>, String), needle: &str) {
    assert_eq!(result.0, Some(1), "{}", result.1);
    assert!(result.1.contains("broken"), "{}", result.1);
    assert!(
        result.1.contains(needle),
        "expected '{needle}' in: {}",
        result.1
    );
}

fn assert_ok(result: &(Option<i32>, String)) {
    assert_eq!(result.0, Some(0), "{}", result.1);
    assert!(result.1.starts_with("ok:"), "{}", result.1);
}

/// A signed log of 60 input events (one of them a security alert), closed properly.
fn signed_log() -> Signed {
    let s = Signed::new();
    let out = s.run(&events(60), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s
}

#[test]
fn a_closed_signed_log_verifies_with_its_key_and_says_what_it_checked() {
    let s = signed_log();
    let (signed, _) = s.both();
    assert_ok(&signed);
    assert!(signed.1.contains("closed by a final seal"), "{}", signed.1);
    assert!(signed.1.contains("seals by key"), "{}", signed.1);
    let plain = s.verify(&[&s.log], false, false);
    assert_ok(&plain);
    assert!(plain.1.contains("hash chain only"), "{}", plain.1);
    assert!(
        plain.1.contains("signatures were NOT checked"),
        "{}",
        plain.1
    );
    // Records carry where they came from: the input line, the host.
    let all = fs::read_to_string(&s.log).unwrap();
    assert!(all.contains("\"origin\":\"input:"), "{all}");
    assert!(
        all.contains("\"event_type\":\"security.alert\"") && all.contains("\"origin\":\"host\""),
        "{all}"
    );
}

#[test]
fn cutting_the_last_records_is_detected() {
    let s = signed_log();
    let mut lines = read_lines(&s.log);
    lines.truncate(lines.len() - 3);
    write_lines(&s.log, &lines);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "truncated");
    // Without the key the seals' places still show the cut.
    assert_broken(&s.verify(&[&s.log], false, false), "found without the key");
    // A log being written is reported, not failed, with --live.
    let live = s.verify(&[&s.log], true, true);
    assert_ok(&live);
    assert!(live.1.contains("not sealed yet"), "{}", live.1);
}

#[test]
fn cutting_the_final_seal_alone_is_detected() {
    let s = signed_log();
    let mut lines = read_lines(&s.log);
    assert!(lines.last().unwrap().contains("\"kind\":\"final\""));
    lines.pop();
    write_lines(&s.log, &lines);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(
        &signed,
        "truncated, or the host stopped without closing the log",
    );
}

#[test]
fn removing_the_first_ten_records_is_detected() {
    let s = signed_log();
    let lines = read_lines(&s.log);
    write_lines(&s.log, &lines[10..]);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "seal check failed");
}

#[test]
fn keeping_only_one_record_or_none_is_detected() {
    let s = signed_log();
    let lines = read_lines(&s.log);
    write_lines(&s.log, &lines[..1]);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "not a final one");
    write_lines(&s.log, &lines[lines.len() - 1..]);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "seal check failed");
    write_lines(&s.log, &[]);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "no records at all");
}

#[test]
fn erasing_an_alert_and_recomputing_the_chain_is_detected() {
    let s = signed_log();
    let lines = read_lines(&s.log);
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("\"event_type\":\"security.alert\""))
        .cloned()
        .collect();
    assert_eq!(
        kept.len(),
        lines.len() - 1,
        "exactly one alert was recorded"
    );
    write_lines(&s.log, &rechain(&kept, None));
    let (signed, plain) = s.both();
    assert_ok(&plain); // the chain agrees with itself again
    assert_broken(&signed, "seal check failed");
}

#[test]
fn seals_made_with_another_key_are_refused() {
    let s = signed_log();
    let lines = read_lines(&s.log);
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("\"event_type\":\"security.alert\""))
        .cloned()
        .collect();
    let forger = SigningKey::from_bytes(&[42u8; 32]);
    write_lines(&s.log, &rechain(&kept, Some(&forger)));
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "not by the given key");
}

#[test]
fn what_the_chain_detected_before_is_still_detected() {
    let s = signed_log();
    let lines = read_lines(&s.log);
    let alert = lines
        .iter()
        .position(|l| l.contains("security.alert"))
        .unwrap();
    let edited = |f: &dyn Fn(&mut Vec<String>)| {
        let mut l = lines.clone();
        f(&mut l);
        write_lines(&s.log, &l);
        s.both()
    };
    // One byte changed.
    let (signed, plain) = edited(&|l| l[alert] = l[alert].replace("mallory", "mallorz"));
    assert_broken(&signed, "hash mismatch");
    assert_broken(&plain, "hash mismatch");
    // A record removed in the middle.
    let (signed, plain) = edited(&|l| {
        l.remove(alert);
    });
    assert_broken(&signed, "seq gap");
    assert_broken(&plain, "seq gap");
    // Two records swapped.
    let (signed, plain) = edited(&|l| l.swap(alert, alert + 1));
    assert_broken(&signed, "seq");
    assert_broken(&plain, "seq");
    // A record duplicated.
    let (signed, plain) = edited(&|l| {
        let dup = l[alert].clone();
        l.insert(alert, dup);
    });
    assert_broken(&signed, "seq");
    assert_broken(&plain, "seq");
}

#[test]
fn a_restarted_log_resumes_and_still_verifies() {
    let s = signed_log();
    let out = s.run(&events(25), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = fs::read_to_string(&s.log).unwrap();
    assert!(all.contains("\"kind\":\"resume\""), "{all}");
    let (signed, _) = s.both();
    assert_ok(&signed);
    // A record appended after the final seal, chained but not sealed, is caught.
    let mut lines = read_lines(&s.log);
    let template = lines
        .iter()
        .rev()
        .find(|l| l.contains("\"event_type\":\"user.login\""))
        .unwrap()
        .clone();
    let (mut body, _) = split(&template);
    let p = body.rfind(",\"prev_hash\":\"").unwrap() + 14;
    body.replace_range(p..p + 64, &split(lines.last().unwrap()).1);
    let after_seq = body.find(',').unwrap();
    body.replace_range(..after_seq, &format!("{{\"seq\":{}", lines.len() + 1));
    lines.push(seal_line(&body).0);
    write_lines(&s.log, &lines);
    let (signed, plain) = s.both();
    assert_ok(&plain);
    assert_broken(&signed, "follows the final seal");
}

#[test]
fn seals_are_written_on_time_while_records_wait() {
    let s = Signed::new();
    // Feed the input slowly through a pipe: 3 events, then a pause of 4 seal intervals.
    let config = s.write_config("seal_every = 1000, seal_interval = \"200ms\"");
    let mut child = Command::new(plugbus_binary())
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in events(3) {
        stdin.write_all(line.as_bytes()).unwrap();
    }
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    // While the host runs, the tail is sealed by time, long before 1000 records.
    let during = fs::read_to_string(&s.log).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let periodic: Vec<Seal> = during
        .lines()
        .filter(|l| l.contains("\"kind\":\"periodic\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["seal"].clone()).unwrap()
        })
        .collect();
    assert!(
        periodic.iter().any(|seal| seal.records >= 3),
        "a time-based seal covers the waiting records: {during}"
    );
    assert_ok(&s.verify(&[&s.log], true, false));
}

#[test]
fn every_seal_is_also_published_as_an_event() {
    let s = signed_log();
    let out = s.run(&events(35), "");
    let summary = text(&out);
    let seals = fs::read_to_string(&s.log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(",\"seal\":{"))
        .count();
    // This run's seals: those after the first run's final seal.
    let this_run = fs::read_to_string(&s.log)
        .unwrap()
        .lines()
        .skip_while(|l| !l.contains("\"kind\":\"resume\""))
        .filter(|l| l.contains(",\"seal\":{"))
        .count();
    assert!(this_run >= 5 && this_run < seals, "{this_run} of {seals}");
    let row = summary
        .lines()
        .find(|l| l.contains("audit.sealed"))
        .unwrap_or_else(|| panic!("no audit.sealed row: {summary}"));
    let count: usize = row
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|t| !t.is_empty())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, this_run, "{summary}");
}

#[test]
fn a_rotated_set_must_be_whole_and_in_order() {
    let s = Signed::new();
    let out = s.run(&events(120), ", max_bytes = 6000, max_files = 3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = |n: u32| {
        if n == 0 {
            s.log.clone()
        } else {
            PathBuf::from(format!("{}.{n}", s.log.display()))
        }
    };
    assert!(file(3).exists(), "the run rotated at least 3 times");
    assert!(!file(4).exists());
    let (f3, f2, f1, f0) = (file(3), file(2), file(1), file(0));
    let whole: [&Path; 4] = [&f3, &f2, &f1, &f0];
    let result = s.verify(&whole, true, false);
    assert_ok(&result);
    assert!(result.1.contains("files "), "{}", result.1);
    // The chain alone accepts a set missing its oldest or newest file.
    assert_ok(&chain_only(&[&f2, &f1, &f0]));
    assert_ok(&chain_only(&[&f3, &f2, &f1]));
    // The binary without the key sees it in the seals' places already.
    assert_broken(
        &s.verify(&[&f3, &f2, &f1], false, false),
        "newest file is missing",
    );
    assert_broken(&s.verify(&[&f2, &f1, &f0], true, false), "missing");
    assert_broken(
        &s.verify(&[&f3, &f2, &f1], true, false),
        "the newest file is missing",
    );
    // Out of order, repeated, or one from the middle missing.
    assert_broken(&s.verify(&[&f2, &f3, &f1, &f0], true, false), "");
    assert_broken(&s.verify(&[&f3, &f2, &f2, &f1, &f0], true, false), "");
    assert_broken(&s.verify(&[&f3, &f1, &f0], true, false), "");
    // A file of another log slipped in.
    let other = signed_log();
    assert_broken(
        &s.verify(&[&f3, &f2, &f1, &other.log, &f0], true, false),
        "",
    );
}

#[test]
fn an_origin_claimed_by_an_input_line_is_refused_and_events_too_large_are_refused_at_the_door() {
    let s = Signed::new();
    let big = format!(
        "{{\"type\":\"user.login\",\"data\":{{\"blob\":\"{}\"}}}}\n",
        "x".repeat(20 * 1024 * 1024)
    );
    let lines = vec![
        "{\"type\":\"user.login\",\"origin\":\"host\",\"data\":{}}\n".to_owned(),
        big,
        "{\"type\":\"user.login\",\"data\":{\"user_id\":\"ok\"}}\n".to_owned(),
    ];
    let out = s.run(&lines, "");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("origin"), "{all}");
    assert!(all.contains("15728640"), "the limit is named: {all}");
    assert!(
        !all.contains("-> balanced") || all.contains("skipped"),
        "{all}"
    );
    // Nothing unverifiable was written, and the one good event is there.
    assert_ok(&s.verify(&[&s.log], true, false));
    let log = fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("\"user_id\":\"ok\""));
    assert!(!log.contains("xxxxxxxx"));
}
