//! CPU time of threads, read from `/proc` (Linux).
//!
//! Each thread's time comes from `/proc/self/task/TID/schedstat` (its first
//! field is the time it ran, user and kernel, in nanoseconds), or from the
//! `utime` and `stime` fields of `.../stat` (in clock ticks of 10 ms) where a
//! kernel has no schedstat. The client's time is the sum over every thread of
//! the process but the blaster's. Two limits, the same for every system
//! measured: a thread that ends during a run takes its last slice with it
//! (only short-lived helper threads do), and a running thread's figure may be
//! up to one scheduler tick old when it is read.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

/// Nanoseconds per clock tick of `/proc/.../stat` (`USER_HZ` is 100 on Linux).
const TICK_NS: u64 = 10_000_000;

/// The kernel's id of the calling thread (from the `/proc/thread-self` link).
pub fn current_thread_id() -> io::Result<u32> {
    let link = fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/thread-self link {link:?}")))
}

/// CPU time the calling thread has used so far.
pub fn current_thread_cpu() -> io::Result<Duration> {
    task_cpu_ns(Path::new("/proc/thread-self")).map(Duration::from_nanos)
}

/// CPU time used so far by each thread of this process, by thread id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCpu {
    /// Nanoseconds per live thread.
    threads: HashMap<u32, u64>,
}

impl ProcessCpu {
    /// Reads every thread of this process.
    pub fn sample() -> io::Result<ProcessCpu> {
        let mut threads = HashMap::new();
        for entry in fs::read_dir("/proc/self/task")? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(|name| name.parse().ok()) else {
                continue;
            };
            // A thread that ended since the directory was listed has nothing to add.
            if let Ok(ns) = task_cpu_ns(&entry.path()) {
                threads.insert(id, ns);
            }
        }
        Ok(ProcessCpu { threads })
    }

    /// CPU time used since `earlier` by every thread except those in
    /// `excluding`; a thread started since counts from zero.
    pub fn used_since(&self, earlier: &ProcessCpu, excluding: &[u32]) -> Duration {
        let ns: u64 = self
            .threads
            .iter()
            .filter(|(id, _)| !excluding.contains(id))
            .map(|(id, now)| now.saturating_sub(earlier.threads.get(id).copied().unwrap_or(0)))
            .sum();
        Duration::from_nanos(ns)
    }

    #[cfg(test)]
    fn from_threads(threads: &[(u32, u64)]) -> ProcessCpu {
        ProcessCpu { threads: threads.iter().copied().collect() }
    }
}

/// CPU nanoseconds of one task directory (`/proc/self/task/TID`).
fn task_cpu_ns(dir: &Path) -> io::Result<u64> {
    if let Ok(text) = fs::read_to_string(dir.join("schedstat")) {
        if let Some(ns) = parse_schedstat(&text) {
            return Ok(ns);
        }
    }
    let text = fs::read_to_string(dir.join("stat"))?;
    parse_stat_ticks(&text)
        .map(|ticks| ticks.saturating_mul(TICK_NS))
        .ok_or_else(|| io::Error::other(format!("unexpected {}/stat", dir.display())))
}

/// The time on CPU, in nanoseconds, from a `schedstat` line
/// (`on-cpu-ns waiting-ns timeslices`).
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// `utime + stime`, in clock ticks, from a `stat` line. The command name
/// (second field, in parentheses) may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state (field 3) ... utime is field 14 and stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field_is_the_cpu_time() {
        assert_eq!(parse_schedstat("107741 4938 2\n"), Some(107_741));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 93 0 0 0 37 12 0 0 20 0 3 0 1 0\n";
        assert_eq!(parse_stat_ticks(line), Some(49));
        assert_eq!(parse_stat_ticks("4242 (short) S 1"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn used_since_skips_excluded_threads_and_counts_new_ones_from_zero() {
        let before = ProcessCpu::from_threads(&[(1, 100), (2, 1_000), (3, 50)]);
        let after = ProcessCpu::from_threads(&[(1, 400), (2, 9_000), (4, 25)]);
        // Thread 2 is excluded, 3 ended (nothing counted), 4 is new.
        assert_eq!(after.used_since(&before, &[2]), Duration::from_nanos(300 + 25));
        assert_eq!(after.used_since(&before, &[]), Duration::from_nanos(300 + 8_000 + 25));
    }

    #[test]
    fn this_process_and_thread_can_be_read() {
        let id = current_thread_id().expect("thread id");
        assert!(id > 0);
        let sample = ProcessCpu::sample().expect("process sample");
        assert!(sample.threads.contains_key(&id));
        // Burn a little CPU so the figure moves, whatever its resolution.
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(current_thread_cpu().expect("thread cpu") > Duration::ZERO);
    }
}
