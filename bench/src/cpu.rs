//! CPU time a process has used, from `/proc/<pid>/stat` (Linux): the broker's and the bench's
//! own, so the NATS scenarios can say where a second of two cores goes.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI plugbus
/// builds for).
const TICKS_PER_SEC: u64 = 100;

/// User plus system time of process `pid` (this process when `None`), its finished threads
/// included; `None` where `/proc` does not tell.
pub(super) fn used(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(text: &str) -> Option<Duration> {
    // The command name, field 2, is in parentheses and may hold spaces: count from after it.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), then fields 4..=13, utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

/// CPU time used between two readings, in microseconds per event.
pub(super) fn per_event_us(
    before: Option<Duration>,
    after: Option<Duration>,
    events: u64,
) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    Some(used.as_secs_f64() * 1e6 / events.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks() {
        let text = "4242 (nats server) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_stat(text), Some(Duration::from_millis(3000)));
        assert!(used(None).is_some());
    }
}
