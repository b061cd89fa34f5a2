//! The load generator: N worker threads, each with its own connection (or store handle), all
//! bounded by one deadline and one shared request budget, so a row always stops by itself.
//!
//! We write our own instead of using wrk so that `make bench` needs nothing but Rust, and so the
//! client costs as little CPU as possible: on a 2-core machine the load generator shares the cores
//! with the server, mock-wechat and MariaDB, and every cycle it burns is missing from the server.
//! Every latency is kept (a sorted `Vec<u32>` of microseconds is a few hundred KiB at these
//! volumes), so the percentiles are exact rather than bucketed.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use wxlogin_tools::http::{write_get, HttpClient, IO_TIMEOUT};

/// How much load one row applies and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent workers, each with its own connection.
    pub conns: usize,
    /// Each worker stops issuing requests once this much time has passed since the start.
    pub duration: Duration,
    /// Requests issued by all workers together; the row ends early once they are used up.
    pub max_requests: u64,
}

/// One worker's client. It is created inside its own thread, so it need not be `Send`.
pub trait Worker {
    /// Performs request number `seq` (unique within the row) and returns its HTTP status
    /// (or 200 for a store operation that succeeded); `Err` is a transport or store failure.
    fn call(&mut self, seq: u64) -> Result<u16, String>;

    /// TCP connections this worker opened, to show which servers reuse connections.
    fn connects(&self) -> u64 {
        0
    }

    /// Connections that got no answer to their warm-up request and were replaced.
    fn stalled(&self) -> u64 {
        0
    }
}

/// What one row measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// From the moment every worker was ready to the moment the last one stopped.
    pub elapsed: Duration,
    /// Latency of every answered request in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer at all (connection refused or reset, timeout, bad response).
    pub failures: u64,
    /// The first failure's message, to say why.
    pub first_failure: Option<String>,
    /// TCP connections opened by all workers.
    pub connects: u64,
    /// New connections whose warm-up request got no answer within [`WARM_UP_TIMEOUT`].
    pub stalled: u64,
}

impl Outcome {
    /// Requests that got an answer, whatever its status.
    pub fn answered(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.answered() as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in milliseconds (`p` in 0–100); 0 when nothing was answered.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        f64::from(self.latencies_us[rank.clamp(1, n) - 1]) / 1000.0
    }

    /// The slowest answer in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latencies_us
            .last()
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    }

    /// Answers other than 2xx plus requests with no answer: the targets want zero. Any 2xx
    /// counts as success because `/auth/verify` answers 204 (No Content) when all is well.
    pub fn not_ok(&self) -> u64 {
        let non_200: u64 = self
            .statuses
            .iter()
            .filter(|(&status, _)| !(200..300).contains(&status))
            .map(|(_, &n)| n)
            .sum();
        non_200 + self.failures
    }
}

/// Pause after a request that got no answer.
const FAILURE_PAUSE: Duration = Duration::from_millis(1);

/// What one worker thread collected; merged into the [`Outcome`] at the end.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    failures: u64,
    first_failure: Option<String>,
    connects: u64,
    stalled: u64,
}

/// Runs `limits.conns` workers made by `init` until the deadline, the request budget or `stop`.
///
/// Workers are created first and the clock starts only once all of them exist (behind a barrier),
/// so connection set-up is not counted against the row's throughput.
pub fn run<W, I>(limits: &Limits, stop: &AtomicBool, init: I) -> Outcome
where
    W: Worker,
    I: Fn(usize) -> W + Sync,
{
    let conns = limits.conns.max(1);
    let issued = AtomicU64::new(0);
    let ready = Barrier::new(conns + 1);
    let tallies = Mutex::new(Vec::with_capacity(conns));
    let mut started = Instant::now();
    std::thread::scope(|scope| {
        for n in 0..conns {
            let (init, issued, ready, tallies) = (&init, &issued, &ready, &tallies);
            std::thread::Builder::new()
                .name(format!("load-{n}"))
                // Workers keep almost nothing on the stack; 256 of them at the default 2 MiB
                // would only be address space, but there is no reason to reserve it.
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    let mut worker = init(n);
                    let mut tally = Tally::default();
                    ready.wait();
                    let deadline = Instant::now() + limits.duration;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let seq = issued.fetch_add(1, Ordering::Relaxed);
                        if seq >= limits.max_requests {
                            break;
                        }
                        let sent = Instant::now();
                        let answer = worker.call(seq);
                        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        match answer {
                            Ok(status) => {
                                tally.latencies_us.push(micros);
                                *tally.statuses.entry(status).or_default() += 1;
                            }
                            Err(why) => {
                                tally.failures += 1;
                                tally.first_failure.get_or_insert(why);
                                // A refused connection fails in microseconds; without a pause
                                // a dead server turns the row into a busy loop that starves
                                // the processes still working.
                                std::thread::sleep(FAILURE_PAUSE);
                            }
                        }
                    }
                    tally.connects = worker.connects();
                    tally.stalled = worker.stalled();
                    tallies
                        .lock()
                        .expect("no worker panics holding it")
                        .push(tally);
                })
                .expect("spawn a load thread");
        }
        ready.wait();
        started = Instant::now();
    });
    let elapsed = started.elapsed();

    let mut outcome = Outcome {
        elapsed,
        ..Outcome::default()
    };
    for tally in tallies.into_inner().expect("workers are done") {
        outcome.latencies_us.extend_from_slice(&tally.latencies_us);
        for (status, n) in tally.statuses {
            *outcome.statuses.entry(status).or_default() += n;
        }
        outcome.failures += tally.failures;
        if outcome.first_failure.is_none() {
            outcome.first_failure = tally.first_failure;
        }
        outcome.connects += tally.connects;
        outcome.stalled += tally.stalled;
    }
    outcome.latencies_us.sort_unstable();
    outcome
}

/// Bound on the warm-up request of a new connection; its normal answer takes a millisecond.
pub const WARM_UP_TIMEOUT: Duration = Duration::from_secs(2);
/// New connections tried per worker before the row starts anyway.
const WARM_UP_TRIES: u32 = 3;

/// A [`Worker`] that sends HTTP requests built by `build` over one keep-alive connection.
pub struct HttpWorker<'a, F> {
    client: HttpClient,
    request: Vec<u8>,
    build: &'a F,
    stalled: u64,
}

impl<'a, F: Fn(u64, &mut Vec<u8>)> HttpWorker<'a, F> {
    /// Connects and sends one `GET /healthz` before the clock starts, so a row measures the
    /// steady state of a keep-alive server and not the set-up of its connections.
    ///
    /// A connection whose warm-up gets no answer within [`WARM_UP_TIMEOUT`] is replaced and
    /// counted as stalled. That happens with tiny_http 0.12: its connection thread pool hands a
    /// new connection to an idle thread whenever *any* thread is idle, not one per connection,
    /// so when a burst of connections meets a few idle threads, the surplus waits in its queue
    /// until some other connection closes (with keep-alive clients: indefinitely).
    pub fn new(addr: SocketAddr, build: &'a F) -> Self {
        let mut client = HttpClient::new(addr);
        let mut warm_up = Vec::new();
        write_get(&mut warm_up, "/healthz", None);
        let mut stalled = 0;
        client.set_timeout(WARM_UP_TIMEOUT);
        for _ in 0..WARM_UP_TRIES {
            match client.send(&warm_up) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    stalled += 1;
                }
                // Answered, or refused: the row itself will show the failures.
                _ => break,
            }
        }
        client.set_timeout(IO_TIMEOUT);
        // Count only the connections opened during the row (mock-wechat: one per request).
        client.connects = 0;
        HttpWorker {
            client,
            request: Vec::with_capacity(512),
            build,
            stalled,
        }
    }
}

impl<F: Fn(u64, &mut Vec<u8>)> Worker for HttpWorker<'_, F> {
    fn call(&mut self, seq: u64) -> Result<u16, String> {
        self.request.clear();
        (self.build)(seq, &mut self.request);
        self.client.send(&self.request).map_err(|e| e.to_string())
    }

    fn connects(&self) -> u64 {
        self.client.connects
    }

    fn stalled(&self) -> u64 {
        self.stalled
    }
}

/// Drives `addr` with requests made by `build(seq, buffer)`.
pub fn run_http<F>(addr: SocketAddr, limits: &Limits, stop: &AtomicBool, build: F) -> Outcome
where
    F: Fn(u64, &mut Vec<u8>) + Sync,
{
    run(limits, stop, |_| HttpWorker::new(addr, &build))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let outcome = Outcome {
            elapsed: Duration::from_secs(1),
            latencies_us: (1..=100).map(|ms| ms * 1000).collect(),
            ..Outcome::default()
        };
        assert_eq!(outcome.percentile_ms(50.0), 50.0);
        assert_eq!(outcome.percentile_ms(99.0), 99.0);
        assert_eq!(outcome.max_ms(), 100.0);
        assert_eq!(outcome.rate(), 100.0);
    }

    #[test]
    fn stops_at_the_request_budget() {
        struct Ok200;
        impl Worker for Ok200 {
            fn call(&mut self, _: u64) -> Result<u16, String> {
                Ok(200)
            }
        }
        let limits = Limits {
            conns: 4,
            duration: Duration::from_secs(60),
            max_requests: 1000,
        };
        let outcome = run(&limits, &AtomicBool::new(false), |_| Ok200);
        assert_eq!(outcome.answered(), 1000);
        assert_eq!(outcome.not_ok(), 0);
    }
}
