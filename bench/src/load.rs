//! The load generator: N worker threads, each with its own connection (or store handle), all
//! bounded by one deadline and one shared request budget, so a row always stops by itself.
//!
//! We write our own instead of using wrk so that `make bench` needs nothing but Rust, and so the
//! client costs as little CPU as possible: on a 2-core machine the load generator shares the cores
//! with the server, mock-wechat and MariaDB, and every cycle it burns is missing from the server.
//! Every latency is kept (a sorted `Vec<u32>` of microseconds is a few hundred KiB at these
//! volumes), so the percentiles are exact rather than bucketed.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

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

    /// Answers other than 200 plus requests with no answer: the targets want zero.
    pub fn not_ok(&self) -> u64 {
        let non_200: u64 = self
            .statuses
            .iter()
            .filter(|(&status, _)| status != 200)
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

/// Appends a `GET` request, with an `Authorization` header when `auth` is given.
pub fn write_get(out: &mut Vec<u8>, path: &str, auth: Option<&str>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(auth) = auth {
        out.extend_from_slice(b"Authorization: ");
        out.extend_from_slice(auth.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a form `POST` request whose body is `body` (already URL-encoded).
pub fn write_form_post(out: &mut Vec<u8>, path: &str, body: &str) {
    // `write!` into a Vec cannot fail.
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// Bound on any single read or write, so a hung server fails the request instead of the run.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head accepted; ours are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// A minimal HTTP/1.1 client over one `TcpStream`: keep-alive by default, reconnecting when the
/// server answered `Connection: close` (as mock-wechat does) or the connection broke.
pub struct HttpClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read from the socket: the response head and body of the last answer.
    buf: Vec<u8>,
    /// The decoded body of the last answer.
    body: Vec<u8>,
    /// TCP connections opened so far.
    pub connects: u64,
    /// Read and write timeout of the connection.
    timeout: Duration,
}

/// What the head of a response says about its body and the connection.
struct Head {
    status: u16,
    /// Bytes of `buf` the head (with its blank line) takes.
    len: usize,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        HttpClient {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
            body: Vec::with_capacity(1024),
            connects: 0,
            timeout: IO_TIMEOUT,
        }
    }

    /// Sets the read and write timeout, now and for later connections.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        if let Some(stream) = &self.stream {
            let _ = stream.set_read_timeout(Some(timeout));
            let _ = stream.set_write_timeout(Some(timeout));
        }
    }

    /// Opens the connection unless one is open.
    pub fn ensure_connected(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            self.connects += 1;
            // Requests are written in one piece; Nagle would only add delay to small writes.
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("just set"))
    }

    /// Sends one complete request and reads the whole answer; returns its status. The body is
    /// then in [`HttpClient::body`]. Any error drops the connection, so the next call reconnects.
    pub fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        let result = self.exchange(request);
        match &result {
            Ok((_, true)) | Err(_) => {
                if let Some(stream) = self.stream.take() {
                    abort(stream);
                }
            }
            Ok((_, false)) => {}
        }
        result.map(|(status, _)| status)
    }

    /// The body of the last answer.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Writes the request and reads the answer; returns the status and whether to close.
    fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, bool)> {
        self.ensure_connected()?.write_all(request)?;
        self.buf.clear();
        self.body.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill()?;
        };
        if head.chunked {
            self.read_chunked(head.len)?;
        } else if let Some(length) = head.content_length {
            while self.buf.len() < head.len + length {
                self.fill()?;
            }
            self.body
                .extend_from_slice(&self.buf[head.len..head.len + length]);
        } else if head.status == 204 || head.status == 304 || (100..200).contains(&head.status) {
            // No body by definition.
        } else {
            // Neither length nor chunks: the body runs to the end of the connection.
            while self.fill_or_eof()? > 0 {}
            self.body.extend_from_slice(&self.buf[head.len..]);
            return Ok((head.status, true));
        }
        Ok((head.status, head.close))
    }

    /// Decodes a chunked body that starts at `buf[start..]`.
    fn read_chunked(&mut self, start: usize) -> io::Result<()> {
        let mut at = start;
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[at..], b"\r\n") {
                    break at + i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[at..line_end])
                .map_err(|_| invalid("bad chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            at = line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with a blank line.
                while find(&self.buf[at..], b"\r\n").is_none() {
                    self.fill()?;
                }
                return Ok(());
            }
            while self.buf.len() < at + size + 2 {
                self.fill()?;
            }
            self.body.extend_from_slice(&self.buf[at..at + size]);
            at += size + 2;
        }
    }

    /// Reads more bytes; the connection ending here is an error (the answer is incomplete).
    fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the answer was complete",
            ));
        }
        Ok(())
    }

    /// Reads more bytes; returns how many (0 at the end of the connection).
    fn fill_or_eof(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let stream = self.stream.as_mut().expect("connected");
        let n = stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// Closes with a reset instead of a FIN, so this side keeps no TIME_WAIT socket.
///
/// mock-wechat answers every request with `Connection: close` but leaves the closing to the
/// client, so each request would otherwise park one of the ~28,000 ephemeral loopback ports in
/// TIME_WAIT for 60 s: one mock-wechat row at 7,000 requests/s left about 20,000 of them, in the
/// same port range wxlogin needs for its own upstream connections during the next rows. The
/// answer has been read in full, so nothing is lost.
fn abort(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Parses the status line and the headers we need, once the blank line has arrived.
fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut head = Head {
        status,
        len: end + 4,
        content_length: None,
        chunked: false,
        // HTTP/1.0 closes unless asked otherwise; we never ask.
        close: version != "HTTP/1.1",
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(value.parse().map_err(|_| invalid("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves each accepted connection with the canned answers, one per request read.
    fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                loop {
                    let mut buf = [0u8; 4096];
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let Some(answer) = answers.next() else { return };
                    stream.write_all(answer.as_bytes()).unwrap();
                    if answer.contains("Connection: close") {
                        break;
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn keeps_the_connection_alive_and_reconnects_after_close() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ]);
        let mut client = HttpClient::new(addr);
        let mut request = Vec::new();
        write_get(&mut request, "/x", None);
        assert_eq!(client.send(&request).unwrap(), 200);
        assert_eq!(client.body(), b"hi");
        assert_eq!(client.send(&request).unwrap(), 401);
        assert_eq!(client.body(), b"no!");
        assert_eq!(client.connects, 1);
        assert_eq!(client.send(&request).unwrap(), 200);
        assert_eq!(client.body(), b"abcde");
        assert_eq!(client.connects, 2);
    }

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
