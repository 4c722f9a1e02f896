//! The map of who publishes and who receives what (`plugbus flows`).
//!
//! A [`FlowMap`] is built from two sources, both plain data:
//!
//! - **receivers**: every subscription with what it selects ([`Receiver`]): the loaded plugins'
//!   declared subscriptions ([`PluginStatus::declared`](crate::PluginStatus::declared), through
//!   [`Receiver::from_plugin`]) and the application's own in-process subscriptions;
//! - **observations** (optional): the events of an audit log ([`TraceLog`]), counted by
//!   publisher and type. The publisher is the event's origin as the host stamped it
//!   (`plugin:auth-enhancer`, `input:stdin`, `remote:host-b`, `host`), or, for the
//!   application's own events (origin `local`, or none in older logs), its claimed source.
//!
//! Each observed (publisher, type) pair is then matched against every receiver's interest, which
//! gives the edges publisher → type → receiver with their counts. An audit log holds only what
//! the audit logger recorded (by default lifecycle, business and `security.*` events), so types
//! it does not record never appear as observed.
//!
//! Nothing here loads a plugin or opens a file: the caller reads the log and loads the
//! plugins; the map renders as rows for a table, Mermaid, Graphviz DOT or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plugbus::{Category, EventType, Pattern};

use crate::manager::DeclaredSubscription;
use crate::trace::TraceLog;

/// Who owns a subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Owner {
    /// A plugin, by name.
    Plugin(String),
    /// The application (or the `plugbus` binary) itself, in process.
    InProcess,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Plugin(name) => write!(f, "plugin {name}"),
            Owner::InProcess => f.write_str("in process"),
        }
    }
}

/// One subscription and what it selects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Receiver {
    /// The subscription's name (`<plugin>/<handler>` for a plugin's).
    pub name: String,
    /// Who it belongs to.
    pub owner: Owner,
    /// Exact type names.
    pub event_types: Vec<String>,
    /// Whole categories.
    pub categories: Vec<Category>,
    /// Patterns (`user.*`, `*`). A malformed one matches nothing.
    pub patterns: Vec<String>,
    /// Whether a filter may skip some matching events (the map shows who *may* receive).
    pub filtered: bool,
}

impl Receiver {
    /// A plugin's declared subscription.
    pub fn from_plugin(plugin: &str, sub: &DeclaredSubscription) -> Receiver {
        Receiver {
            name: sub.name.clone(),
            owner: Owner::Plugin(plugin.to_owned()),
            event_types: sub.event_types.clone(),
            categories: sub.categories.clone(),
            patterns: sub.patterns.clone(),
            filtered: sub.filtered,
        }
    }

    /// An in-process subscription selecting what `types` and `patterns` name (a selector
    /// containing `*` is a pattern, anything else an exact type).
    pub fn in_process<'a>(name: &str, selectors: impl IntoIterator<Item = &'a str>) -> Receiver {
        let (patterns, event_types) = selectors
            .into_iter()
            .map(str::to_owned)
            .partition(|s: &String| s.contains('*'));
        Receiver {
            name: name.to_owned(),
            owner: Owner::InProcess,
            event_types,
            categories: Vec::new(),
            patterns,
            filtered: false,
        }
    }

    /// Does this subscription select events of type `name`? A type the bus does not know is
    /// taken to be of category `custom` (the category custom types get unless they declare one).
    pub fn matches(&self, name: &str) -> bool {
        if self.event_types.iter().any(|t| t == name) {
            return true;
        }
        let category = EventType::lookup(name).map_or(Category::Custom, |t| t.category());
        if self.categories.contains(&category) {
            return true;
        }
        self.patterns
            .iter()
            .any(|p| Pattern::parse(p).is_ok_and(|p| p.matches(name)))
    }

    /// What it selects, in one line: `user.login | category:lifecycle | security.*`.
    pub fn selects(&self) -> String {
        let mut parts: Vec<String> = self.event_types.clone();
        parts.extend(self.categories.iter().map(|c| format!("category:{c}")));
        parts.extend(self.patterns.iter().cloned());
        if parts.is_empty() {
            return "(nothing)".to_owned();
        }
        let mut s = parts.join(" | ");
        if self.filtered {
            s.push_str(" (filtered)");
        }
        s
    }
}

/// Events of one type from one publisher, seen in a log, and who receives them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// The publisher (see the module docs).
    pub publisher: String,
    /// The event type.
    pub event_type: String,
    /// How many events of this type the publisher published (in the log).
    pub count: u64,
    /// The receivers whose interest selects the type, by name.
    pub receivers: Vec<String>,
}

/// Who publishes and who receives what.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowMap {
    /// Every subscription, sorted by owner then name.
    pub receivers: Vec<Receiver>,
    /// The observed flows, by publisher then type; empty without a log.
    pub flows: Vec<Flow>,
    /// Event records read from logs.
    pub events_read: u64,
}

/// The publisher of an event, from its origin and claimed source (see the module docs).
pub fn publisher(origin: &str, source: &str) -> String {
    match origin.split_once(':') {
        // `input:<name>:<line>`: the input, not each line (the name may itself hold colons).
        Some(("input", rest)) => match rest.rsplit_once(':') {
            Some((name, line)) if line.bytes().all(|b| b.is_ascii_digit()) => {
                format!("input:{name}")
            }
            _ => origin.to_owned(),
        },
        Some(_) => origin.to_owned(),
        None if origin == "host" => "host".to_owned(),
        None if source.is_empty() => "(unknown)".to_owned(),
        None => source.to_owned(),
    }
}

impl FlowMap {
    /// A map of these receivers, with nothing observed yet.
    pub fn new(mut receivers: Vec<Receiver>) -> FlowMap {
        receivers.sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
        FlowMap {
            receivers,
            flows: Vec::new(),
            events_read: 0,
        }
    }

    /// Counts the events of `log` by publisher and type and matches each type against the
    /// receivers. May be called for several logs; counts add up.
    pub fn observe(&mut self, log: &TraceLog) {
        self.observe_events(
            log.events()
                .iter()
                .map(|n| (publisher(&n.origin, &n.source), &*n.event_type)),
        );
    }

    /// [`observe`](Self::observe) over (publisher, type) pairs.
    pub fn observe_events<'a>(&mut self, events: impl IntoIterator<Item = (String, &'a str)>) {
        let mut counts: BTreeMap<(String, String), u64> = self
            .flows
            .drain(..)
            .map(|f| ((f.publisher, f.event_type), f.count))
            .collect();
        for (publisher, event_type) in events {
            self.events_read += 1;
            *counts
                .entry((publisher, event_type.to_owned()))
                .or_default() += 1;
        }
        self.flows = counts
            .into_iter()
            .map(|((publisher, event_type), count)| {
                let receivers = self
                    .receivers
                    .iter()
                    .filter(|r| r.matches(&event_type))
                    .map(|r| r.name.clone())
                    .collect();
                Flow {
                    publisher,
                    event_type,
                    count,
                    receivers,
                }
            })
            .collect();
    }

    /// Observed events per (type, receiver): what each receiver was sent, summed over
    /// publishers.
    pub fn deliveries(&self) -> BTreeMap<(String, String), u64> {
        let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
        for f in &self.flows {
            for r in &f.receivers {
                *out.entry((f.event_type.clone(), r.clone())).or_default() += f.count;
            }
        }
        out
    }

    /// The map as a Mermaid flowchart (`flowchart LR`): publishers, then types, then
    /// receivers; edges carry event counts. Without observations, each receiver hangs under
    /// what it selects.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let ids = Ids::new(self);
        for (p, id) in &ids.publishers {
            let _ = writeln!(out, "  {id}([\"{}\"])", mermaid_label(p));
        }
        for (t, id) in &ids.types {
            let _ = writeln!(out, "  {id}{{{{\"{}\"}}}}", mermaid_label(t));
        }
        for r in &self.receivers {
            let _ = writeln!(
                out,
                "  {}[\"{}<br/><i>{}</i>\"]",
                ids.receiver(&r.name),
                mermaid_label(&r.name),
                mermaid_label(&r.owner.to_string())
            );
        }
        for f in &self.flows {
            let _ = writeln!(
                out,
                "  {} -->|{}| {}",
                ids.publishers[&f.publisher], f.count, ids.types[&f.event_type]
            );
        }
        for ((t, r), n) in self.deliveries() {
            let _ = writeln!(out, "  {} -->|{n}| {}", ids.types[&t], ids.receiver(&r));
        }
        if self.flows.is_empty() {
            for r in &self.receivers {
                for s in selectors(r) {
                    let _ = writeln!(out, "  {} -.-> {}", ids.types[&s], ids.receiver(&r.name));
                }
            }
        }
        out
    }

    /// The map as a Graphviz DOT digraph (left to right, as the Mermaid one).
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph flows {\n  rankdir=LR;\n");
        let ids = Ids::new(self);
        for (p, id) in &ids.publishers {
            let _ = writeln!(out, "  {id} [label=\"{}\", shape=ellipse];", dot_label(p));
        }
        for (t, id) in &ids.types {
            let _ = writeln!(out, "  {id} [label=\"{}\", shape=hexagon];", dot_label(t));
        }
        for r in &self.receivers {
            let _ = writeln!(
                out,
                "  {} [label=\"{}\\n{}\", shape=box];",
                ids.receiver(&r.name),
                dot_label(&r.name),
                dot_label(&r.owner.to_string())
            );
        }
        for f in &self.flows {
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"{}\"];",
                ids.publishers[&f.publisher], ids.types[&f.event_type], f.count
            );
        }
        for ((t, r), n) in self.deliveries() {
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"{n}\"];",
                ids.types[&t],
                ids.receiver(&r)
            );
        }
        if self.flows.is_empty() {
            for r in &self.receivers {
                for s in selectors(r) {
                    let _ = writeln!(
                        out,
                        "  {} -> {} [style=dashed];",
                        ids.types[&s],
                        ids.receiver(&r.name)
                    );
                }
            }
        }
        out.push_str("}\n");
        out
    }

    /// The map as JSON: `{"receivers": [...], "flows": [...], "events_read": N}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A receiver's selectors as node labels (`category:business`, `user.*`, `user.login`).
fn selectors(r: &Receiver) -> Vec<String> {
    let mut v: Vec<String> = r.event_types.clone();
    v.extend(r.categories.iter().map(|c| format!("category:{c}")));
    v.extend(r.patterns.iter().cloned());
    v
}

/// Node ids for the diagrams: `p<n>`, `t<n>`, `r<n>` (labels may hold any text).
struct Ids {
    publishers: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    receivers: BTreeMap<String, String>,
}

impl Ids {
    fn new(map: &FlowMap) -> Ids {
        let mut publishers = BTreeMap::new();
        let mut types = BTreeMap::new();
        for f in &map.flows {
            let n = publishers.len();
            publishers
                .entry(f.publisher.clone())
                .or_insert_with(|| format!("p{n}"));
            let n = types.len();
            types
                .entry(f.event_type.clone())
                .or_insert_with(|| format!("t{n}"));
        }
        if map.flows.is_empty() {
            for s in map.receivers.iter().flat_map(selectors) {
                let n = types.len();
                types.entry(s).or_insert_with(|| format!("t{n}"));
            }
        }
        let receivers = map
            .receivers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), format!("r{i}")))
            .collect();
        Ids {
            publishers,
            types,
            receivers,
        }
    }

    fn receiver(&self, name: &str) -> &str {
        self.receivers.get(name).map_or("r_unknown", String::as_str)
    }
}

fn mermaid_label(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn dot_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plugin(
        name: &str,
        handler: u32,
        types: &[&str],
        cats: &[Category],
        pats: &[&str],
    ) -> Receiver {
        Receiver::from_plugin(
            name,
            &DeclaredSubscription {
                name: format!("{name}/{handler}"),
                handler,
                event_types: types.iter().map(|s| s.to_string()).collect(),
                categories: cats.to_vec(),
                patterns: pats.iter().map(|s| s.to_string()).collect(),
                filtered: false,
            },
        )
    }

    fn demo_like() -> FlowMap {
        let mut map = FlowMap::new(vec![
            Receiver::in_process("app/counter", ["*"]),
            Receiver::in_process("app/alerts", ["security.alert"]),
            plugin(
                "audit-logger",
                0,
                &[],
                &[Category::Lifecycle, Category::Business],
                &["security.*"],
            ),
            plugin(
                "auth-enhancer",
                0,
                &["user.login", "user.login_failed"],
                &[],
                &[],
            ),
        ]);
        let events = [
            ("demo-app", "local", "user.login"),
            ("demo-app", "local", "user.login"),
            ("demo-app", "local", "user.login_failed"),
            ("auth-enhancer", "plugin:auth-enhancer", "security.alert"),
            ("plugbus-host", "host", "plugin.started"),
            ("x", "input:/tmp/a:b.jsonl:17", "billing.paid"),
            ("x", "input:/tmp/a:b.jsonl:18", "billing.paid"),
        ];
        map.observe_events(events.iter().map(|(s, o, t)| (publisher(o, s), *t)));
        map
    }

    #[test]
    fn publishers_come_from_origins_and_local_sources() {
        assert_eq!(
            publisher("plugin:auth-enhancer", "anything"),
            "plugin:auth-enhancer"
        );
        assert_eq!(publisher("input:stdin:42", "app"), "input:stdin");
        assert_eq!(
            publisher("input:/a:b/in.jsonl:3", "app"),
            "input:/a:b/in.jsonl"
        );
        assert_eq!(publisher("local", "demo-app"), "demo-app");
        assert_eq!(publisher("", "demo-app"), "demo-app");
        assert_eq!(publisher("", ""), "(unknown)");
        assert_eq!(publisher("host", "plugbus"), "host");
        assert_eq!(publisher("remote:h-2", "app"), "remote:h-2");
    }

    #[test]
    fn interests_match_by_type_category_and_pattern() {
        let audit = plugin(
            "a",
            0,
            &[],
            &[Category::Lifecycle, Category::Business],
            &["security.*"],
        );
        assert!(audit.matches("user.login"));
        assert!(audit.matches("plugin.loaded"));
        assert!(audit.matches("security.whatever"));
        assert!(!audit.matches("system.startup"));
        // Unknown types are custom: not business.
        assert!(!audit.matches("billing.paid"));
        let custom = plugin("c", 1, &[], &[Category::Custom], &[]);
        assert!(custom.matches("billing.paid"));
        let all = Receiver::in_process("all", ["*"]);
        assert!(all.matches("anything.at_all") && all.matches("system.shutdown"));
        let bad = Receiver::in_process("bad", ["us*"]);
        assert!(!bad.matches("user.login"));
        assert_eq!(
            audit.selects(),
            "category:lifecycle | category:business | security.*"
        );
    }

    #[test]
    fn observed_edges_are_counted_and_matched() {
        let map = demo_like();
        assert_eq!(map.events_read, 7);
        let flow = |p: &str, t: &str| {
            map.flows
                .iter()
                .find(|f| f.publisher == p && f.event_type == t)
                .unwrap()
                .clone()
        };
        let login = flow("demo-app", "user.login");
        assert_eq!(login.count, 2);
        // Plugins first, then in-process subscriptions, each by name.
        assert_eq!(
            login.receivers,
            ["audit-logger/0", "auth-enhancer/0", "app/counter"]
        );
        let alert = flow("plugin:auth-enhancer", "security.alert");
        assert_eq!(
            alert.receivers,
            ["audit-logger/0", "app/alerts", "app/counter"]
        );
        assert_eq!(flow("input:/tmp/a:b.jsonl", "billing.paid").count, 2);
        assert_eq!(
            flow("input:/tmp/a:b.jsonl", "billing.paid").receivers,
            ["app/counter"]
        );
        let d = map.deliveries();
        assert_eq!(
            d[&("user.login".to_owned(), "auth-enhancer/0".to_owned())],
            2
        );
        // Observing more adds up.
        let mut more = map.clone();
        more.observe_events([("demo-app".to_owned(), "user.login")]);
        assert_eq!(
            more.flows
                .iter()
                .find(|f| f.event_type == "user.login")
                .unwrap()
                .count,
            3
        );
        assert_eq!(more.events_read, 8);
    }

    #[test]
    fn renders_mermaid_dot_and_json() {
        let map = demo_like();
        let m = map.to_mermaid();
        assert!(m.starts_with("flowchart LR\n"), "{m}");
        assert!(m.contains("([\"demo-app\"])"), "{m}");
        assert!(m.contains("{{\"security.alert\"}}"), "{m}");
        assert!(
            m.contains("[\"auth-enhancer/0<br/><i>plugin auth-enhancer</i>\"]"),
            "{m}"
        );
        assert!(m.contains("-->|2|"), "{m}");
        let d = map.to_dot();
        assert!(
            d.starts_with("digraph flows {") && d.trim_end().ends_with('}'),
            "{d}"
        );
        assert!(d.contains("[label=\"2\"]"), "{d}");
        let j = map.to_json();
        assert_eq!(j["events_read"], 7);
        assert_eq!(j["receivers"][0]["owner"]["kind"], "plugin");
        assert!(j["flows"].as_array().unwrap().len() >= 5);
        // Without a log: receivers under their selectors, dashed.
        let bare = FlowMap::new(map.receivers.clone());
        let m = bare.to_mermaid();
        assert!(
            m.contains("-.->") && m.contains("category:lifecycle"),
            "{m}"
        );
        assert!(bare.to_dot().contains("style=dashed"));
    }
}
