//! The process's own metrics (CPU, memory, file descriptors, start time),
//! read from `/proc` at each scrape and written under the names every
//! Prometheus client library uses (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, ...), so existing
//! dashboards and alerts for them work unchanged.
//!
//! Linux only: where `/proc/self` cannot be read, nothing is written (each
//! value on its own: one unreadable file loses only its metrics).

use std::fmt::Write as _;
use std::path::Path;

use super::registry::number;

/// Clock ticks per second of the times in `/proc/self/stat` (`USER_HZ`,
/// 100 on every Linux architecture that exposes it to user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process metrics read now, in Prometheus text.
pub(crate) fn render() -> String {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|text| boot_time(&text));
    let snapshot = Snapshot {
        cpu_seconds: stat.as_deref().and_then(cpu_seconds),
        resident_bytes: status.as_deref().and_then(|text| status_kib(text, "VmRSS:")),
        virtual_bytes: status.as_deref().and_then(|text| status_kib(text, "VmSize:")),
        open_fds: open_fds(Path::new("/proc/self/fd")),
        max_fds: limits.as_deref().and_then(max_open_files),
        start_time_seconds: stat
            .as_deref()
            .and_then(start_ticks)
            .zip(boot_time)
            .map(|(ticks, boot)| boot + ticks / TICKS_PER_SECOND),
    };
    snapshot.to_text()
}

/// One reading; `None` where the value could not be read.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl Snapshot {
    fn to_text(&self) -> String {
        let metrics: [(&str, &str, &str, Option<f64>); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_bytes,
            ),
            ("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.", self.max_fds),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in metrics {
            if let Some(value) = value {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                let _ = writeln!(out, "{name} {}", number(value));
            }
        }
        out
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold
/// spaces and parentheses, so it is skipped up to its last `)`): the first
/// is field 3, `state`.
fn fields_after_name(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// `utime` + `stime` (fields 14 and 15), in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields = fields_after_name(stat)?;
    let user: f64 = fields.get(14 - 3)?.parse().ok()?;
    let system: f64 = fields.get(15 - 3)?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// `starttime` (field 22): clock ticks after boot.
fn start_ticks(stat: &str) -> Option<f64> {
    fields_after_name(stat)?.get(22 - 3)?.parse().ok()
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines().find_map(|line| line.strip_prefix("btime")?.trim().parse().ok())
}

/// A `kB` line of `/proc/self/status` (such as `VmRSS:`), in bytes.
fn status_kib(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find_map(|line| line.strip_prefix(field))?;
    let kib: f64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

fn open_fds(dir: &Path) -> Option<f64> {
    Some(std::fs::read_dir(dir).ok()?.count() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "42 (feed (visor) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 \
                    1000 200 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(start_ticks(stat), Some(12345.0));
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        assert_eq!(status_kib("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"), Some(2048.0 * 1024.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 4096                 files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1_700_000_000.0));
    }

    #[test]
    fn unreadable_values_are_left_out_and_the_rest_written() {
        let snapshot = Snapshot { open_fds: Some(7.0), ..Snapshot::default() };
        let text = snapshot.to_text();
        assert!(text.contains("# TYPE process_open_fds gauge\nprocess_open_fds 7\n"), "{text}");
        assert!(!text.contains("process_cpu_seconds_total"), "{text}");
    }

    #[test]
    fn this_process_reports_its_memory_and_descriptors() {
        let text = render();
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"]
        {
            assert!(text.contains(&format!("\n{name} ")), "{name} missing from\n{text}");
        }
    }
}
