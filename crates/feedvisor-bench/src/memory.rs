//! Memory and file descriptors of this process, read from `/proc` (Linux).
//!
//! RSS is `VmRSS` of `/proc/self/status`: what is resident now, heap and
//! stacks and mapped code alike, in KiB. `VmHWM` is its high-water mark,
//! which writing `5` to `/proc/self/clear_refs` resets (Linux 4.0 and later),
//! so that a peak can be read for one phase of a run. Freed memory that the
//! allocator keeps for reuse stays resident: a figure is only clean in a
//! process that did not do something bigger before.

use std::fs;
use std::io;

/// Resident memory now and its high-water mark, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM`: the most resident since the process started or the mark was reset.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of this process.
pub fn sample() -> io::Result<Memory> {
    let text = fs::read_to_string("/proc/self/status")?;
    let field = |name| {
        status_kib(&text, name)
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/self/status")))
    };
    Ok(Memory { rss_kib: field("VmRSS")?, hwm_kib: field("VmHWM")? })
}

/// `VmRSS` of this process, in KiB.
pub fn rss_kib() -> io::Result<u64> {
    sample().map(|memory| memory.rss_kib)
}

/// Resets `VmHWM` to the current RSS.
pub fn reset_peak() -> io::Result<()> {
    fs::write("/proc/self/clear_refs", "5")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:    123456 kB`), in KiB.
pub fn status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?.trim();
        value.strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The soft limit on open files of this process (`None`: unlimited).
pub fn open_files_limit() -> io::Result<Option<u64>> {
    let text = fs::read_to_string("/proc/self/limits")?;
    parse_open_files_limit(&text)
        .ok_or_else(|| io::Error::other("no \"Max open files\" line in /proc/self/limits"))
}

/// The soft limit of the `Max open files` line of `/proc/PID/limits`:
/// `Some(None)` when it is `unlimited`, `None` when the line is missing.
pub fn parse_open_files_limit(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    match line.split_whitespace().next()? {
        "unlimited" => Some(None),
        soft => soft.parse().ok().map(Some),
    }
}

/// File descriptors this process has open now.
pub fn open_files() -> io::Result<u64> {
    Ok(fs::read_dir("/proc/self/fd")?.count() as u64)
}

/// KiB as MiB with one decimal (`61.3 MiB`), or KiB below 10 MiB.
pub fn format_kib(kib: f64) -> String {
    if kib.abs() >= 10.0 * 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tfeedvisor\nVmPeak:\t  812344 kB\nVmHWM:\t   61220 kB\nVmRSS:\t   48872 kB\nRssAnon:\t   40000 kB\nThreads:\t5\n";

    #[test]
    fn status_fields_are_read_in_kib() {
        assert_eq!(status_kib(STATUS, "VmRSS"), Some(48_872));
        assert_eq!(status_kib(STATUS, "VmHWM"), Some(61_220));
        // A field name that is the start of another is not mistaken for it.
        assert_eq!(status_kib(STATUS, "Rss"), None);
        assert_eq!(status_kib(STATUS, "Threads"), None, "not in kB");
        assert_eq!(status_kib("", "VmRSS"), None);
    }

    #[test]
    fn the_soft_open_files_limit_is_the_first_column() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             unlimited            unlimited            processes \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(Some(20_000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), Some(None));
        assert_eq!(parse_open_files_limit("Max processes 5 5 processes\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let memory = sample().expect("status");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib / 2);
        assert!(open_files().expect("fds") >= 3);
        assert!(open_files_limit().is_ok());
    }

    #[test]
    fn sizes_are_short() {
        assert_eq!(format_kib(512.0), "512 KiB");
        assert_eq!(format_kib(62_771.2), "61.3 MiB");
    }
}
