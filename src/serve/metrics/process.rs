//! The standard `process_*` metrics, read from `/proc/self`.
//!
//! Every Prometheus client library exports the same handful of process
//! metrics (CPU seconds, resident memory, open and maximum file descriptors,
//! start time), so that one dashboard and one alert fit every daemon. The
//! Rust client does not collect them itself, and the crates that do pull in
//! a `/proc` parser far larger than the three files read here.
//!
//! Each read is a few system calls, done per scrape on the loop's thread, so
//! it must stay cheap with many clients: the open descriptors are counted by
//! one `stat` of `/proc/self/fd` (Linux 6.2 and later give the count as its
//! size) and only listed, one `getdents` per 1,000 or so, on older kernels.
//! A file that cannot be read leaves its metrics out; it never fails the
//! scrape.

use std::fs;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Threads in the process.
    pub threads: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors, when they could be counted.
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`, when it could be read.
    pub max_fds: Option<u64>,
}

/// What stays the same for the life of the process: read once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Constants {
    /// Clock ticks per second (`/proc` counts CPU time in ticks).
    ticks: f64,
    page_size: u64,
    /// When the machine booted, in seconds since the Unix epoch.
    boot_time: Option<u64>,
}

impl Constants {
    pub fn read() -> Constants {
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Constants {
            ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096),
            boot_time: fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|text| boot_time(&text)),
        }
    }
}

/// Reads the process's resources now; `None` where `/proc` is missing.
pub(super) fn read(constants: &Constants) -> Option<ProcessStats> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let fields = StatFields::parse(&stat)?;
    Some(ProcessStats {
        cpu_seconds: (fields.utime + fields.stime) as f64 / constants.ticks,
        resident_bytes: fields.rss_pages.saturating_mul(constants.page_size),
        virtual_bytes: fields.vsize,
        threads: fields.threads,
        start_time_seconds: constants.boot_time.map_or(0.0, |boot| {
            boot as f64 + fields.start_ticks as f64 / constants.ticks
        }),
        open_fds: open_fds(),
        max_fds: rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft),
    })
}

/// The fields of `/proc/self/stat` that the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    utime: u64,
    stime: u64,
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl StatFields {
    /// Parses `pid (comm) state ppid ...`; the command name may hold spaces
    /// and parentheses, so the fields are counted from its last `)`.
    fn parse(stat: &str) -> Option<StatFields> {
        let after = &stat[stat.rfind(')')? + 1..];
        // Field 3 (state) is the first after the name: field n is at n - 3.
        let fields: Vec<&str> = after.split_ascii_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(StatFields {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// `btime` in `/proc/stat`: when the machine booted.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// Open descriptors: the size of `/proc/self/fd` on Linux 6.2 and later,
/// else its entries counted.
fn open_fds() -> Option<u64> {
    let size = fs::metadata("/proc/self/fd").ok()?.len();
    if size > 0 {
        return Some(size);
    }
    // Older kernels: list it. The listing's own descriptor is not counted.
    let entries = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(entries.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 300 0 0 0 \
                    150 50 0 0 20 0 3 0 12345 104857600 2560 18446744073709551615";
        let fields = StatFields::parse(stat).expect("parses");
        assert_eq!(
            fields,
            StatFields {
                utime: 150,
                stime: 50,
                threads: 3,
                start_ticks: 12345,
                vsize: 104_857_600,
                rss_pages: 2560,
            }
        );
    }

    #[test]
    fn a_truncated_stat_is_no_reading() {
        assert_eq!(StatFields::parse("4242 (selectd) S 1 2 3"), None);
        assert_eq!(StatFields::parse("no parenthesis"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1796395140\nprocesses 9\n";
        assert_eq!(boot_time(stat), Some(1_796_395_140));
        assert_eq!(boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process_reads_as_alive() {
        let stats = read(&Constants::read()).expect("/proc is mounted");
        assert!(stats.resident_bytes > 0);
        assert!(stats.threads >= 1);
        assert!(stats.open_fds.is_some_and(|fds| fds >= 3), "{stats:?}");
        assert!(stats.max_fds.is_some_and(|max| max >= 3));
        assert!(stats.start_time_seconds > 1_000_000_000.0);
    }
}
