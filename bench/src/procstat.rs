//! What each process cost during a row, read from `/proc`: CPU time (utime + stime) of wxlogin,
//! mock-wechat, MariaDB and the load generator itself, how busy the whole machine was, and the
//! server's peak resident memory.
//!
//! On a 2-core machine everything competes for the same cores, so a throughput figure alone does
//! not say who is the bottleneck; CPU seconds per request per process does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the server's resident set is sampled. Its high-water mark (`VmHWM`) would be exact
/// but covers the whole process lifetime; sampling gives the peak of this row alone.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Clock ticks per second of `/proc/<pid>/stat` times (`CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User plus system CPU ticks the process has used so far.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0], so utime (14) and stime (15) are fields[11] and [12].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Current resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Busy and total ticks of all CPUs together, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The pid of the first process whose command name is one of `names` (e.g. MariaDB's server).
pub fn find_process(names: &[&str]) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| names.contains(&comm.trim()))
    })
}

/// The processes whose cost a row reports.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// wxlogin; its peak RSS is sampled.
    pub server: u32,
    pub mock: u32,
    /// MariaDB's server process, when it runs on this machine.
    pub db: Option<u32>,
}

/// CPU seconds used by each process during a row, the machine's load, and the server's peak RSS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub server_cpu_s: f64,
    pub mock_cpu_s: f64,
    pub db_cpu_s: Option<f64>,
    pub bench_cpu_s: f64,
    /// Share of all CPUs' time that was busy (0–1), whoever used it.
    pub machine_busy: f64,
    pub server_peak_rss_kib: u64,
}

/// A measurement in progress: counters read at the start, and a thread sampling the server's RSS.
pub struct Probe {
    watched: Watched,
    start: [Option<u64>; 4],
    machine_start: Option<(u64, u64)>,
    peak_rss: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

impl Probe {
    pub fn start(watched: Watched) -> Probe {
        let peak_rss = Arc::new(AtomicU64::new(rss_kib(watched.server).unwrap_or(0)));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak_rss, done) = (peak_rss.clone(), done.clone());
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        if let Some(rss) = rss_kib(watched.server) {
                            peak_rss.fetch_max(rss, Ordering::Relaxed);
                        }
                        std::thread::sleep(RSS_SAMPLE_EVERY);
                    }
                })
                .ok()
        };
        Probe {
            watched,
            start: Self::ticks(&watched),
            machine_start: machine_ticks(),
            peak_rss,
            done,
            sampler,
        }
    }

    fn ticks(watched: &Watched) -> [Option<u64>; 4] {
        [
            cpu_ticks(watched.server),
            cpu_ticks(watched.mock),
            watched.db.and_then(cpu_ticks),
            cpu_ticks(std::process::id()),
        ]
    }

    /// Stops sampling and returns what the row cost.
    pub fn finish(mut self) -> Usage {
        let end = Self::ticks(&self.watched);
        let machine_end = machine_ticks();
        self.done.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        if let Some(rss) = rss_kib(self.watched.server) {
            self.peak_rss.fetch_max(rss, Ordering::Relaxed);
        }
        let hz = clock_ticks();
        let seconds = |i: usize| match (self.start[i], end[i]) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / hz),
            _ => None,
        };
        let machine_busy = match (self.machine_start, machine_end) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64
            }
            _ => 0.0,
        };
        Usage {
            server_cpu_s: seconds(0).unwrap_or(0.0),
            mock_cpu_s: seconds(1).unwrap_or(0.0),
            db_cpu_s: seconds(2),
            bench_cpu_s: seconds(3).unwrap_or(0.0),
            machine_busy,
            server_peak_rss_kib: self.peak_rss.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(machine_ticks().is_some());
        assert!(clock_ticks() > 0.0);
    }
}
