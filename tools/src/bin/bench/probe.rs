//! What each process cost during a row: CPU time (utime + stime) of wxlogin, mock-wechat,
//! MariaDB and the load generator itself, how busy the whole machine was, and the server's peak
//! resident memory.
//!
//! On a 2-core machine everything competes for the same cores, so a throughput figure alone does
//! not say who is the bottleneck; CPU seconds per request per process does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wxlogin_tools::procstat::{clock_ticks, cpu_ticks, machine_ticks, rss_kib};

/// How often the server's resident set is sampled. Its high-water mark (`VmHWM`) would be exact
/// but covers the whole process lifetime; sampling gives the peak of this row alone.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(10);

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
