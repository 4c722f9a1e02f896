//! The process's resident set, from `/proc/self/status` (Linux), for the memory scenario.

use std::path::Path;

/// One `kB` line of `/proc/self/status` (`VmHWM`, `VmRSS`), in MiB.
fn status_mib(key: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status(&text, key)
}

fn parse_status(text: &str, key: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The peak resident set (`VmHWM`) in MiB, if the kernel tells.
pub(super) fn peak_mib() -> Option<f64> {
    status_mib("VmHWM")
}

/// The resident set now (`VmRSS`) in MiB.
pub(super) fn current_mib() -> Option<f64> {
    status_mib("VmRSS")
}

/// Resets the peak to the current resident set (writes `5` to `/proc/self/clear_refs`), so the
/// next [`peak_mib`] covers only what follows. False if the kernel refused: the peak then
/// covers the whole process life.
pub(super) fn reset_peak() -> bool {
    std::fs::write(Path::new("/proc/self/clear_refs"), b"5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_lines() {
        let text = "Name:\tplugbus\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status(text, "VmHWM"), Some(20.0));
        assert_eq!(parse_status(text, "VmRSS"), Some(10.0));
        assert_eq!(parse_status(text, "VmSwap"), None);
    }
}
