//! abi_stable's report of a type layout mismatch, summarized to the type and field that differ.
//!
//! When a plugin's root module does not have the host's layout, abi_stable refuses it with a
//! report of every type layout it compared: hundreds of lines (about 960 for plugbus's root
//! module), the part that matters at the end. abi_stable hands the report over as text only, so
//! the summary is read from that text: the chain of fields from the root module down to the one
//! that differs, and each difference with what was expected and found, e.g.
//!
//! ```text
//! PluginInfo.abi_major: mismatched type: expected u32, found u64 (reached from PluginMod.info → returns PluginInfo → abi_major)
//! ```
//!
//! The host logs the whole report at debug level; errors carry the summary.

/// The most differences listed in a summary.
const MAX_DIFFERENCES: usize = 4;

/// One field on the way from the root module to a difference: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    field: String,
    ty: String,
}

/// A few lines naming the type and field that differ, and how; the first lines of `report`
/// if it cannot be read that way.
pub(crate) fn summarize(report: &str) -> String {
    match read(report) {
        Some(summary) => summary,
        None => {
            let lines: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
            let mut head = lines
                .iter()
                .take(8)
                .map(|l| l.trim_end())
                .collect::<Vec<_>>()
                .join("\n");
            if lines.len() > 8 {
                head.push_str("\n(the whole report at debug level)");
            }
            head
        }
    }
}

fn read(report: &str) -> Option<String> {
    let lines: Vec<&str> = report.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut at = 0;
    while at < lines.len() && out.len() < MAX_DIFFERENCES {
        // A block "N error(s)inside:" with N > 0, then the field chain, then the layouts, then
        // "Error:<what>" "Expected:" <value> "Found:" <value>.
        let Some(start) =
            (at..lines.len()).find(|&i| errors_inside(lines[i]).is_some_and(|n| n > 0))
        else {
            break;
        };
        let chain_end = (start..lines.len())
            .find(|&i| {
                lines[i]
                    .trim_start()
                    .starts_with("Layout of expected type:")
            })
            .unwrap_or(lines.len());
        let chain = steps(&lines[start..chain_end]);
        let next_block = (start + 1..lines.len())
            .find(|&i| errors_inside(lines[i]).is_some())
            .unwrap_or(lines.len());
        let mut i = chain_end;
        while i < next_block && out.len() < MAX_DIFFERENCES {
            if let Some(what) = lines[i].strip_prefix("Error:") {
                let expected = value_after(&lines[i..next_block], "Expected:");
                let found = value_after(&lines[i..next_block], "Found:");
                out.push(describe(&chain, what.trim(), expected, found));
            }
            i += 1;
        }
        at = next_block;
    }
    (!out.is_empty()).then(|| out.join("\n"))
}

/// `Some(N)` for a line "N error(s)inside:" (also "N error(s) inside:").
fn errors_inside(line: &str) -> Option<usize> {
    let (count, rest) = line.trim().split_once(' ')?;
    let rest = rest.replace(' ', "");
    (rest == "error(s)inside:")
        .then(|| count.parse().ok())
        .flatten()
}

/// The `field_name:`/`type:` pairs of a field chain (indented once).
fn steps(lines: &[&str]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in lines {
        let Some(text) = line.strip_prefix("    ") else {
            continue;
        };
        if text.starts_with(' ') {
            continue;
        }
        if let Some(field) = text.strip_prefix("field_name:") {
            pending = Some(field.trim().to_owned());
        } else if let Some(ty) = text.strip_prefix("type:") {
            if let Some(field) = pending.take() {
                out.push(Step {
                    field,
                    ty: ty.trim().to_owned(),
                });
            }
        }
    }
    out
}

/// The first non-empty line after `label`, up to the next label.
fn value_after(lines: &[&str], label: &str) -> Option<String> {
    let from = lines.iter().position(|l| l.trim() == label)?;
    lines
        .get(from + 1..)?
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.ends_with(':') || l.contains(' '))
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// "PluginInfo.abi_major: mismatched type: expected u32, found u64 (reached from PluginMod.info
/// → returns PluginInfo → abi_major)".
fn describe(chain: &[Step], what: &str, expected: Option<String>, found: Option<String>) -> String {
    // The first step is the root module behind its prefix reference (field "0").
    let root = chain.first().map(|s| s.ty.clone());
    let fields: Vec<&Step> = chain.iter().skip(1).collect();
    let place = match fields.as_slice() {
        [] => root.clone().unwrap_or_else(|| "the root module".to_owned()),
        [only] => format!("{}.{}", root.clone().unwrap_or_default(), only.field),
        [.., parent, last] => format!("{}.{}", owner(parent), last.field),
    };
    let mut text = format!("{place}: {what}");
    match (expected, found) {
        (Some(e), Some(f)) => text.push_str(&format!(": expected {e}, found {f}")),
        (Some(e), None) => text.push_str(&format!(": expected {e}")),
        (None, Some(f)) => text.push_str(&format!(": found {f}")),
        (None, None) => {}
    }
    if fields.len() > 1 {
        let path: Vec<String> =
            std::iter::once(format!("{}.{}", root.unwrap_or_default(), fields[0].field))
                .chain(fields.iter().skip(1).map(|s| match s.field.as_str() {
                    "__returns" => format!("returns {}", s.ty),
                    field => field.to_owned(),
                }))
                .collect();
        text.push_str(&format!(" (reached from {})", path.join(" → ")));
    }
    text
}

/// The type that holds the next field: the step's type (a function's return value is its
/// type).
fn owner(step: &Step) -> String {
    step.ty.clone()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The shape of abi_stable 0.11's report, shortened.
    const REPORT: &str = "Compared <this>:
    --- Type Layout ---
    type:PrefixRef<'a, PluginMod>

0 error(s).

0 error(s)inside:
    <other>

    field_name:0
    type:PluginMod
    size:16 align:8

Layout of expected type:
    type:PluginMod

1 error(s)inside:
    <other>

    field_name:0
    type:PluginMod
    size:16 align:8
    package:'plugbus-plugin-api' version:'0.1.0'

    field_name:info
    type:AFunctionPointer
    fn pointer(s):
        fn()->PluginInfo

    fn()->PluginInfo

    field_name:__returns
    type:PluginInfo
    size:112 align:8

    field_name:abi_major
    type:u64
    size:8 align:8

Layout of expected type:
    --- Type Layout ---
    type:u32
    data:
        Primitive:U32

Layout of found type:
    --- Type Layout ---
    type:u64



Error:mismatched type
Expected:
    u32
Found:
    u64";

    #[test]
    fn names_the_type_and_field_that_differ() {
        assert_eq!(
            summarize(REPORT),
            "PluginInfo.abi_major: mismatched type: expected u32, found u64 (reached from \
             PluginMod.info → returns PluginInfo → abi_major)"
        );
    }

    #[test]
    fn an_unreadable_report_is_cut_to_its_first_lines() {
        let long: String = (0..100).map(|n| format!("line {n}\n")).collect();
        let summary = summarize(&long);
        assert_eq!(summary.lines().count(), 9, "{summary}");
        assert!(summary.ends_with("(the whole report at debug level)"));
    }
}
