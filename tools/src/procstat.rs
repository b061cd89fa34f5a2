//! What a process is using, read from `/proc`: CPU ticks, resident memory, threads and open file
//! descriptors, how busy the whole machine is, and which process has a given name. The bench
//! turns them into CPU seconds per request; the drill watches wxlogin's threads and descriptors
//! while it is attacked.

use std::process::Command;
use std::sync::OnceLock;

/// Clock ticks per second of `/proc/<pid>/stat` times (`CLK_TCK`), asked of `getconf` once:
/// reading it directly would take an `unsafe` `sysconf`. It is 100 on every Linux we run on,
/// which is also the answer when `getconf` is missing.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
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

/// Threads of the process now (`Threads:` in `/proc/<pid>/status`).
pub fn thread_count(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

/// Open file descriptors of the process now (entries of `/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Busy and total ticks of all CPUs together, from the first line of `/proc/stat`.
pub fn machine_ticks() -> Option<(u64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(thread_count(pid).unwrap() >= 1);
        assert!(fd_count(pid).unwrap() >= 3);
        assert!(machine_ticks().is_some());
        assert!(clock_ticks() > 0.0);
    }
}
