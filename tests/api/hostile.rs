//! Hostile clients speaking raw TCP to the real binary (issue #9 item 5): a reset storm, HTTP/2
//! and HTTP/3 request lines, oversized heads, slow and trickled requests, the connection cap,
//! ambiguous framing with a request smuggled behind it, a closing 413, and connection threads
//! that cannot be started. Each attack asserts its answer; afterwards the process is alive,
//! `/healthz` and a login answer within a second, nothing panicked, and its thread and
//! descriptor counts come back near the baseline taken before the attack.

use crate::helpers::{Binary, FakeWechat, TestDb};
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wiremock::ResponseTemplate;

/// How far above the baseline the thread count may settle. Connection threads beyond the pool's
/// minimum leave after 5 s idle; the check polls until they have.
const THREAD_MARGIN: usize = 2;
/// How far above the baseline the descriptor count may settle.
const FD_MARGIN: usize = 2;
/// How long the counts may take to come back (the pool's idle threads linger 5 s).
const SETTLE_TIME: Duration = Duration::from_secs(10);

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The binary under attack

/// Threads and open descriptors of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct Usage {
    threads: usize,
    fds: usize,
}

fn usage_of(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (has the process died?)"));
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count();
    Usage { threads, fds }
}

/// The `wxlogin` binary, one process per test, against a fake WeChat that accepts every code.
struct Service {
    binary: Binary,
    addr: SocketAddr,
    /// Every line the process wrote to stderr so far.
    baseline: Usage,
    logins: AtomicUsize,
    _wechat: FakeWechat,
    _db: TestDb,
}

impl Service {
    /// Starts the binary with `vars` on top of a small default configuration (16 connections).
    fn start(vars: &[(&str, &str)]) -> Service {
        Service::start_with(&[], vars, TestDb::sqlite())
    }

    /// Starts the binary through `launcher` (e.g. `setpriv …`) when given, waits for its
    /// "listening on" line, warms it up with a health check and a login, and takes the baseline.
    fn start_with(launcher: &[&str], vars: &[(&str, &str)], db: TestDb) -> Service {
        let wechat = FakeWechat::start();
        wechat.answer_jscode2session(
            ResponseTemplate::new(200)
                .set_body_json(json!({"openid": "o-hostile", "session_key": "a2V5"})),
        );
        let mut all = vec![
            ("WXLOGIN_MAX_CONNECTIONS", "16"),
            ("WECHAT_APPID", "wxhostile"),
        ];
        all.extend_from_slice(vars);
        let binary = Binary::start(launcher, &wechat.uri(), &db, &all);
        let addr = binary.addr();
        let mut service = Service {
            binary,
            addr,
            baseline: Usage { threads: 0, fds: 0 },
            logins: AtomicUsize::new(0),
            _wechat: wechat,
            _db: db,
        };
        service.get_within_a_second("/healthz", "warm-up");
        service.login_within_a_second("warm-up");
        service.baseline = service.usage();
        service
    }

    fn pid(&self) -> u32 {
        self.binary.child.id()
    }

    fn usage(&self) -> Usage {
        usage_of(self.pid())
    }

    /// Every line the process logged so far.
    fn log_lines(&self) -> Vec<String> {
        self.binary.log_lines()
    }

    fn log_has(&self, text: &str) -> bool {
        self.log_lines().iter().any(|l| l.contains(text))
    }

    /// `GET path` on a new connection answers 200 within a second.
    fn get_within_a_second(&self, path: &str, when: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = self.within_a_second(request.as_bytes());
        assert_eq!(
            reply.status(),
            Some(200),
            "{when}: GET {path} must answer 200 within a second: {reply:?}"
        );
    }

    /// An honest login (a fresh code) on a new connection answers 200 with a token within a
    /// second.
    fn login_within_a_second(&self, when: &str) {
        let n = self.logins.fetch_add(1, Ordering::SeqCst);
        let reply = self.within_a_second(login_request(&format!("code-{n}")).as_bytes());
        assert_eq!(
            reply.status(),
            Some(200),
            "{when}: an honest login must answer 200 within a second: {reply:?}"
        );
        assert!(
            reply.text().contains("\"token\""),
            "{when}: the login carries a token: {reply:?}"
        );
    }

    /// Sends `request` on a new connection and reads the reply, all within a second. Right after
    /// an attack the connection cap may still count attackers' connections whose threads have
    /// not yet seen them close: a 503 for "too many connections" is retried within the second.
    fn within_a_second(&self, request: &[u8]) -> Reply {
        let started = Instant::now();
        loop {
            let left = SECOND.saturating_sub(started.elapsed());
            let reply = exchange(self.addr, request, left);
            let cap_reached =
                reply.status() == Some(503) && reply.text().contains("too many connections");
            if !cap_reached || started.elapsed() + Duration::from_millis(20) >= SECOND {
                if cap_reached || started.elapsed() > Duration::from_millis(100) {
                    eprintln!(
                        "answered after {:?}: {:?}",
                        started.elapsed(),
                        reply.status()
                    );
                }
                return reply;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_alive(&mut self, when: &str) {
        if let Some(exit) = self.binary.child.try_wait().unwrap() {
            panic!(
                "{when}: wxlogin exited ({exit:?}); its log: {:?}",
                self.log_lines()
            );
        }
    }

    /// After an attack: alive, `/healthz` and a login within a second, no panic logged, and the
    /// thread and descriptor counts back near the baseline (polled, bounded).
    fn assert_recovered(&mut self, after: &str) {
        self.assert_alive(after);
        self.get_within_a_second("/healthz", after);
        self.login_within_a_second(after);
        self.assert_settled(after);
        assert!(
            !self.log_has("panicked"),
            "{after}: something panicked: {:?}",
            self.log_lines()
        );
        self.assert_alive(after);
    }

    /// Polls (50 ms steps, at most `SETTLE_TIME`) until threads and descriptors are back within
    /// their margins of the baseline.
    fn assert_settled(&self, after: &str) {
        let started = Instant::now();
        loop {
            let now = self.usage();
            if now.threads <= self.baseline.threads + THREAD_MARGIN
                && now.fds <= self.baseline.fds + FD_MARGIN
            {
                eprintln!(
                    "{after}: baseline {:?}, settled at {now:?} after {:?}",
                    self.baseline,
                    started.elapsed()
                );
                return;
            }
            assert!(
                started.elapsed() < SETTLE_TIME,
                "{after}: threads/descriptors not back near the baseline {:?} within {SETTLE_TIME:?}: {now:?}",
                self.baseline
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP

fn login_head(content_length: usize) -> String {
    format!(
        "POST /api/wxuser HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

fn login_request(code: &str) -> String {
    let body = format!("code={code}");
    format!(
        "POST /api/wxuser HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const SMUGGLED: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// How reading a connection ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The server closed it (EOF).
    Closed,
    /// The server reset it.
    Reset,
    /// One whole answer arrived (when asked to stop there); the connection may live on.
    Answered,
    /// Still open when the time ran out.
    TimedOut,
}

/// What came back on a connection.
pub(crate) struct Reply {
    bytes: Vec<u8>,
    end: End,
    /// When the first byte of the answer arrived, from the first byte of the request.
    first_byte: Option<Duration>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(600).collect();
        f.debug_struct("Reply")
            .field("text", &shown)
            .field("end", &self.end)
            .field("first_byte", &self.first_byte)
            .finish()
    }
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status of the first answer.
    pub(crate) fn status(&self) -> Option<u16> {
        let text = self.text();
        let rest = text.strip_prefix("HTTP/1.1 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// How many answers (status lines) came back.
    fn answers(&self) -> usize {
        let b = &self.bytes;
        (0..b.len())
            .filter(|&i| {
                b[i..].starts_with(b"HTTP/1.")
                    && b.len() >= i + 12
                    && matches!(b[i + 7], b'0' | b'1')
                    && b[i + 8] == b' '
                    && b[i + 9..i + 12].iter().all(u8::is_ascii_digit)
            })
            .count()
    }

    /// Whether the server ended the connection.
    pub(crate) fn closed(&self) -> bool {
        matches!(self.end, End::Closed | End::Reset)
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Whether `bytes` hold one whole answer (a head and its `Content-Length` of body).
fn one_answer_complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]);
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

/// Reads until the server closes the connection, or (with `stop_at_answer`) one answer is whole,
/// or `within` of `started` has passed.
pub(crate) fn read_reply(
    stream: &mut TcpStream,
    started: Instant,
    within: Duration,
    stop_at_answer: bool,
) -> Reply {
    let deadline = started + within;
    let mut bytes = Vec::new();
    let mut first_byte = None;
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        if stop_at_answer && one_answer_complete(&bytes) {
            break End::Answered;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break End::TimedOut;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break End::Closed,
            Ok(n) => {
                first_byte.get_or_insert_with(|| started.elapsed());
                bytes.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break End::Reset,
        }
    };
    Reply {
        bytes,
        end,
        first_byte,
    }
}

/// Sends `request` on a new connection and reads until the server closes it (or `within` runs
/// out). The request is written from another thread, so a server that answers and closes before
/// reading it all does not leave this side stuck in a write.
fn exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Reply {
    converse(addr, request, b"", within)
}

/// Like `exchange`, but after `at_once` the bytes of `drip` follow one every 200 ms, until the
/// server answers.
fn converse(addr: SocketAddr, at_once: &[u8], drip: &[u8], within: Duration) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to wxlogin");
    let writer = stream.try_clone().expect("clone the client socket");
    writer.set_write_timeout(Some(within)).unwrap();
    let answered = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        let answered = &answered;
        s.spawn(move || {
            let mut writer = writer;
            if writer.write_all(at_once).is_err() {
                return;
            }
            for byte in drip {
                if answered.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200)); // the pace of the drip
                if answered.load(Ordering::SeqCst) || writer.write_all(&[*byte]).is_err() {
                    return;
                }
            }
        });
        let reply = read_reply(&mut stream, started, within, false);
        answered.store(true, Ordering::SeqCst);
        // Unblocks the writer if the server stopped reading without closing.
        let _ = stream.shutdown(Shutdown::Both);
        reply
    })
}

/// Opens a keep-alive connection and has `/healthz` answered on it.
fn held_connection(addr: SocketAddr, what: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to wxlogin");
    assert_eq!(
        healthz_on(&mut stream).status(),
        Some(200),
        "{what}: answered"
    );
    stream
}

/// `GET /healthz` on an open connection, keeping it open.
fn healthz_on(stream: &mut TcpStream) -> Reply {
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write on the held connection");
    read_reply(stream, started, SECOND, true)
}

// ---------------------------------------------------------------------------------------------
// The attacks

#[test]
fn a_reset_storm_leaves_the_service_up() {
    let mut service = Service::start(&[]);
    let inside_a_body = format!("{}code=", login_head(100));
    let openings: [(&[u8], &str); 3] = [
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "reset after a whole request",
        ),
        (inside_a_body.as_bytes(), "reset inside a body"),
        (b"", "reset before a byte"),
    ];
    // 4 clients × 50 connections, each closed with SO_LINGER {on, 0}: an RST, not a FIN.
    crate::helpers::race(4, |client| {
        for n in 0..50 {
            let (opening, what) = openings[(client + n) % openings.len()];
            let mut stream = TcpStream::connect(service.addr).expect("connect to wxlogin");
            stream
                .write_all(opening)
                .unwrap_or_else(|e| panic!("{what}: write: {e}"));
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
        }
    });
    service.assert_recovered("after 200 connections reset by their clients");
}

#[test]
fn http_2_and_3_get_505_and_the_connection_closes() {
    let mut service = Service::start(&[]);
    let cases = [
        (
            format!("GET / HTTP/2.0\r\nHost: x\r\n\r\n{SMUGGLED}"),
            "an HTTP/2.0 request line",
        ),
        (
            format!("GET / HTTP/3.0\r\nHost: x\r\n\r\n{SMUGGLED}"),
            "an HTTP/3.0 request line",
        ),
        (
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
            "the HTTP/2 connection preface",
        ),
    ];
    for round in 0..20 {
        for (request, what) in &cases {
            let reply = exchange(service.addr, request.as_bytes(), 2 * SECOND);
            assert_eq!(
                reply.status(),
                Some(505),
                "{what} (round {round}): {reply:?}"
            );
            assert_eq!(
                reply.answers(),
                1,
                "{what} (round {round}): one answer, the request behind it unanswered: {reply:?}"
            );
            assert!(
                reply.closed(),
                "{what} (round {round}): the connection closes: {reply:?}"
            );
        }
    }
    service.assert_recovered("after 60 requests in HTTP/2 and HTTP/3");
}

#[test]
fn oversized_heads_get_431_and_the_connection_closes() {
    let mut service = Service::start(&[]);
    let mut huge_line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    huge_line.resize(huge_line.len() + 16 * 1024 * 1024, b'a');
    huge_line.extend_from_slice(b"\r\n\r\n");
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(200_000)
    );
    let long_request_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 * 1024));
    let long_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..9)
            .map(|n| format!("X-Long-{n}: {}\r\n", "a".repeat(8000)))
            .collect::<String>()
    );
    let headers_101 = format!(
        "GET /healthz HTTP/1.1\r\n{}\r\n",
        (0..101)
            .map(|n| format!("X-H{n}: v\r\n"))
            .collect::<String>()
    );
    let headers_100 = format!(
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n{}\r\n",
        (0..99)
            .map(|n| format!("X-H{n}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&[u8], u16, &str)> = vec![
        (&huge_line, 431, "one 16 MiB header line"),
        (many_headers.as_bytes(), 431, "200,000 small headers"),
        (long_request_line.as_bytes(), 431, "a 9 KiB request line"),
        (
            long_head.as_bytes(),
            431,
            "a 72 KB head of 8 KB header lines",
        ),
        (headers_101.as_bytes(), 431, "101 header lines"),
        (headers_100.as_bytes(), 200, "100 header lines are allowed"),
    ];
    std::thread::scope(|s| {
        for (request, status, what) in &cases {
            let addr = service.addr;
            s.spawn(move || {
                let reply = exchange(addr, request, 5 * SECOND);
                assert_eq!(reply.status(), Some(*status), "{what}: {reply:?}");
                assert_eq!(reply.answers(), 1, "{what}: one answer: {reply:?}");
                assert!(reply.closed(), "{what}: the connection closes: {reply:?}");
                let at = reply.first_byte.unwrap();
                assert!(at < SECOND, "{what}: answered at once, not after {at:?}");
            });
        }
    });
    service.assert_recovered("after oversized heads");
}

#[test]
fn slow_bodies_hold_only_their_own_connection_and_each_gets_408() {
    let mut service = Service::start(&[
        ("WXLOGIN_MAX_CONNECTIONS", "200"),
        ("WXLOGIN_BODY_TIMEOUT", "3s"),
    ]);
    let timeout = 3 * SECOND;
    // 40 logins, each sending 5 bytes of the 5000 its head announces.
    let opening = format!("{}code=", login_head(5000));
    let mut slow: Vec<(TcpStream, Instant)> = (0..40)
        .map(|_| {
            let mut stream = TcpStream::connect(service.addr).expect("connect to wxlogin");
            let started = Instant::now();
            stream.write_all(opening.as_bytes()).expect("write a head");
            (stream, started)
        })
        .collect();

    let while_hanging = "while 40 slow bodies hang";
    service.get_within_a_second("/healthz", while_hanging);
    service.get_within_a_second("/readyz", while_hanging);
    service.login_within_a_second(while_hanging);
    let during = service.usage();
    assert!(
        slow[0].1.elapsed() < timeout,
        "the checks ran while the slow bodies still hung (took {:?})",
        slow[0].1.elapsed()
    );

    for (n, (stream, started)) in slow.iter_mut().enumerate() {
        let reply = read_reply(stream, *started, timeout + 2 * SECOND, false);
        assert_eq!(reply.status(), Some(408), "slow body {n}: {reply:?}");
        assert!(
            reply.closed(),
            "slow body {n}: the connection closes: {reply:?}"
        );
        let at = reply.first_byte.unwrap();
        assert!(
            at >= timeout && at < timeout + SECOND,
            "slow body {n}: answered at {at:?}, not at its {timeout:?} deadline"
        );
    }
    eprintln!("40 slow bodies: {during:?} while they hung");
    service.assert_recovered("after 40 slow bodies");
}

#[test]
fn a_trickling_client_gets_408_at_the_deadline_not_later() {
    let mut service = Service::start(&[("WXLOGIN_BODY_TIMEOUT", "1s")]);
    let opening = format!("{}code=", login_head(5000));
    let drip = [b'a'; 40]; // 8 s at one byte every 200 ms, far beyond the deadline
    let request = login_request("trickled");
    let cases: [(&[u8], &[u8], &str); 3] = [
        (
            b"",
            request.as_bytes(),
            "a head trickled a byte every 200 ms",
        ),
        (
            opening.as_bytes(),
            &drip,
            "a body trickled a byte every 200 ms",
        ),
        (
            opening.as_bytes(),
            b"",
            "5 bytes of a 5000-byte body, then silence",
        ),
    ];
    std::thread::scope(|s| {
        for (at_once, drip, what) in cases {
            let addr = service.addr;
            s.spawn(move || {
                let reply = converse(addr, at_once, drip, 4 * SECOND);
                assert_eq!(reply.status(), Some(408), "{what}: {reply:?}");
                assert!(reply.closed(), "{what}: the connection closes: {reply:?}");
                let at = reply.first_byte.unwrap();
                assert!(
                    at >= SECOND && at < SECOND + Duration::from_millis(600),
                    "{what}: answered at {at:?}, not at its 1 s deadline"
                );
            });
        }
    });
    service.assert_recovered("after trickling clients");
}

#[test]
fn beyond_the_connection_cap_a_connection_gets_503_at_once() {
    let mut service = Service::start(&[("WXLOGIN_MAX_CONNECTIONS", "5")]);
    // The warm-up's connections are closed for good before counting to the cap.
    service.assert_settled("before holding connections");
    let mut held: Vec<TcpStream> = (0..5)
        .map(|n| {
            held_connection(
                service.addr,
                &format!("held connection {n} (under the cap)"),
            )
        })
        .collect();
    let during = service.usage();

    for n in 0..5 {
        let reply = exchange(
            service.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            SECOND,
        );
        let what = format!("connection {} beyond a cap of 5", n + 1);
        assert_eq!(reply.status(), Some(503), "{what}: {reply:?}");
        assert_eq!(
            reply.header("Retry-After").as_deref(),
            Some("1"),
            "{what}: {reply:?}"
        );
        assert!(reply.closed(), "{what}: closed within a second: {reply:?}");
    }
    assert_eq!(
        healthz_on(&mut held[0]).status(),
        Some(200),
        "a held connection is still served at the cap"
    );

    drop(held);
    // Each released connection frees its slot once its thread has seen the close: poll.
    let started = Instant::now();
    loop {
        let reply = exchange(
            service.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            SECOND,
        );
        if reply.status() == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < 3 * SECOND,
            "after releasing the held connections, new ones are served again: {reply:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("5 held connections at a cap of 5: {during:?}");
    service.assert_recovered("after the connection cap was reached");
}

#[test]
fn ambiguous_framing_gets_400_and_the_smuggled_request_is_never_answered() {
    let mut service = Service::start(&[]);
    let login = |headers: &str, body: &str| {
        format!(
            "POST /api/wxuser HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{headers}\r\n{body}{SMUGGLED}"
        )
    };
    let cases = [
        (
            login("Content-Length: 6\r\nContent-Length: 6\r\n", "code=a"),
            "two Content-Length headers",
        ),
        (
            login("Content-Length: 6\r\nContent-Length: 40\r\n", "code=a"),
            "two different Content-Length headers",
        ),
        (login("Content-Length: 5x\r\n", "code="), "Content-Length: 5x"),
        (
            login("Content-Length: 6, 6\r\n", "code=a"),
            "Content-Length: 6, 6",
        ),
        (
            login("Content-Length: 99999999999999999999999\r\n", "code=a"),
            "an overflowing Content-Length",
        ),
        (
            login(
                "Content-Length: 11\r\nTransfer-Encoding: chunked\r\n",
                "6\r\ncode=a\r\n0\r\n\r\n",
            ),
            "Content-Length with Transfer-Encoding: chunked",
        ),
        (
            login(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "6\r\ncode=a\r\n0\r\n\r\n",
            ),
            "two Transfer-Encoding headers",
        ),
        (
            login("Transfer-Encoding: chunked, identity\r\n", "code=a"),
            "a body not chunked last",
        ),
        (
            format!(
                "POST /api/wxuser HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ncode=a\r\n0\r\n\r\n{SMUGGLED}"
            ),
            "Transfer-Encoding in HTTP/1.0",
        ),
    ];
    for (request, what) in &cases {
        let reply = exchange(service.addr, request.as_bytes(), 3 * SECOND);
        assert_eq!(reply.status(), Some(400), "{what}: {reply:?}");
        assert_eq!(
            reply.answers(),
            1,
            "{what}: the request smuggled behind it is never answered: {reply:?}"
        );
        assert!(reply.closed(), "{what}: the connection closes: {reply:?}");
    }
    service.assert_recovered("after ambiguous framing");
}

#[test]
fn a_closing_413_ends_the_connection() {
    let mut service = Service::start(&[]);
    let chunk = "a".repeat(70_000);
    let cases = [
        (
            format!("{}code=a{SMUGGLED}", login_head(100_000)),
            "a declared body over the 64 KiB limit",
        ),
        (
            format!(
                "POST /api/wxuser HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\ncode={chunk}\r\n0\r\n\r\n{SMUGGLED}",
                chunk.len() + 5
            ),
            "a chunked body over the 64 KiB limit",
        ),
    ];
    for (request, what) in &cases {
        let reply = exchange(service.addr, request.as_bytes(), 3 * SECOND);
        assert_eq!(reply.status(), Some(413), "{what}: {reply:?}");
        assert_eq!(
            reply.header("Connection").map(|v| v.to_ascii_lowercase()),
            Some("close".into()),
            "{what}: the answer says Connection: close: {reply:?}"
        );
        assert_eq!(
            reply.answers(),
            1,
            "{what}: the request pipelined behind it is not answered: {reply:?}"
        );
        assert!(reply.closed(), "{what}: the connection closes: {reply:?}");
    }
    service.assert_recovered("after closing 413s");
}

/// Threads of every process whose real user is `uid`: what `RLIMIT_NPROC` counts.
fn threads_of_user(uid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next())
                == Some(&uid.to_string())
        })
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .sum()
}

/// Opens keep-alive connections, each answered on a thread of its own, until one is refused
/// (closed without an answer) because no thread can be started for it. Returns the served ones
/// and what the refused one saw.
fn hold_until_refused(addr: SocketAddr, what: &str) -> (Vec<TcpStream>, Reply) {
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut stream = TcpStream::connect(addr).expect("connect to wxlogin");
        let reply = healthz_on(&mut stream);
        match reply.status() {
            Some(200) => held.push(stream),
            _ => return (held, reply),
        }
    }
    panic!("{what}: 16 connections were all served; the thread limit did not bite");
}

/// `RLIMIT_NPROC` is ignored for root, so the binary runs as `nobody` (through `setpriv`) under a
/// limit of the threads it needs plus one; nothing else runs as `nobody` here.
#[test]
fn a_connection_thread_that_cannot_start_refuses_only_that_connection() {
    use std::os::unix::fs::PermissionsExt;
    const NOBODY: u32 = 65534;
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !is_root || !setpriv.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "\n!!!!!!!! SKIPPED: the thread-limit test needs root and setpriv, to run the binary alone as nobody under RLIMIT_NPROC !!!!!!!!\n"
        );
        return;
    }
    // What the binary needs with this configuration, measured on an unlimited run.
    let needed = Service::start(&[]).baseline.threads;
    // Two to spare: a connection may arrive before the pool's first threads wait for work (it
    // then gets a thread of its own).
    let limit = threads_of_user(NOBODY) + needed + 2;
    let db = TestDb::sqlite();
    let wxlogin::store::DatabaseUrl::Sqlite(path) = &db.url else {
        unreachable!("a SQLite test database")
    };
    std::fs::set_permissions(
        path.parent().unwrap(),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("let nobody write the database");
    let nproc = format!("--nproc={limit}:{limit}");
    let mut service = Service::start_with(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "prlimit",
            &nproc,
            "--",
        ],
        &[],
        db,
    );

    let (held, refused) = hold_until_refused(service.addr, "under the thread limit");
    assert!(
        held.len() >= 4,
        "the pool's idle threads serve connections without starting new ones: {} served",
        held.len()
    );
    assert!(
        refused.status() == Some(503)
            && refused.answers() == 1
            && refused.header("Connection").as_deref() == Some("close"),
        "the connection without a thread is answered 503 and closed, not left hanging: {refused:?}"
    );
    let started = Instant::now();
    while !service.log_has("cannot start a connection thread") {
        assert!(
            started.elapsed() < SECOND,
            "the refusal is logged: {:?}",
            service.log_lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    service.assert_alive("after a connection thread could not start");
    let mut held = held;
    for (n, stream) in held.iter_mut().enumerate() {
        assert_eq!(
            healthz_on(stream).status(),
            Some(200),
            "held connection {n} is still served at the thread limit"
        );
    }
    eprintln!(
        "thread limit {limit} (nobody's threads): {} connections served, the next refused; {:?}",
        held.len(),
        service.usage()
    );
    drop(held);
    // The released connections' threads stay idle in the pool, counting against the limit, for
    // 5 s. A login needs room for a thread (see the end of this test): first let them go.
    let started = Instant::now();
    while service.usage().threads + 2 > limit {
        assert!(
            started.elapsed() < SETTLE_TIME,
            "idle connection threads leave the pool: {:?} at a limit of {limit}",
            service.usage()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    service.assert_recovered("after connection threads could not start");

    // At the limit again, with one connection thread idle for the login's connection: the
    // login must not fail inside the server, since its connection thread exists and a WeChat call needs no
    // thread of its own.
    let (mut held, _) = hold_until_refused(service.addr, "at the thread limit again");
    drop(held.pop());
    let n = service.logins.fetch_add(1, Ordering::SeqCst);
    let login = login_request(&format!("code-{n}"));
    let started = Instant::now();
    let reply = loop {
        // Until the released connection's thread is idle again, a new connection is refused.
        let reply = exchange(service.addr, login.as_bytes(), SECOND);
        if !reply.bytes.is_empty() || started.elapsed() > SECOND {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(held);
    let trouble: Vec<String> = service
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("panicked") || l.contains("ERROR"))
        .collect();
    assert!(
        matches!(reply.status(), Some(200 | 503)) && !service.log_has("panicked"),
        "a login while no thread can be started gets 200 (or 503), not a panic: {reply:?}; log: {trouble:?}"
    );
}
