//! The open-port phases (issue #9): hostile clients straight at wxlogin's own port on 127.0.0.1,
//! as if nginx were bypassed: a reset storm, a slow-body flood and a header flood. Each phase
//! reports what every attack connection got back, whether wxlogin stayed up (same pid), how
//! long `/healthz` and one honest login took meanwhile, and wxlogin's threads, descriptors and
//! resident memory before, during (peak) and after. Failures are findings, never a crash of the
//! drill: a wxlogin that died is restarted for the next phase.
//!
//! They run against their own mock-wechat and wxlogin on a temporary SQLite file, so they need
//! neither MariaDB nor nginx (`wxlogin-drill --only open-port`).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wxlogin_tools::children::{describe_exit, ChildProc};
use wxlogin_tools::database::Database;
use wxlogin_tools::http::{abort, get_status, write_form_post, HttpClient};
use wxlogin_tools::markdown::{short, Table};
use wxlogin_tools::ports::{free_addr, free_port};
use wxlogin_tools::procstat::{fd_count, rss_kib, thread_count};
use wxlogin_tools::signals::check_interrupt;

use crate::drill::{random_hex, start_mock, Paths, WxloginEnv};
use crate::report::{Check, Verdict};

/// Connections of the reset storm and of the slow-body flood.
const STORM_CONNS: usize = 300;
const SLOW_BODY_CONNS: usize = 300;
/// The slow bodies' declared and sent lengths.
const SLOW_BODY_DECLARED: usize = 5000;
/// The header flood: one line of 16 MiB, and a request with 200,000 header lines.
const HUGE_LINE: usize = 16 << 20;
const MANY_HEADERS: usize = 200_000;
/// wxlogin's `WXLOGIN_CLIENT_TIMEOUT` here: short, so the slow bodies meet it within the phase.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an attack connection is held waiting for its answer.
const HOLD: Duration = Duration::from_secs(10);
/// The longest an honest request may take during an attack, and the client's own bound on it.
const HONEST_LIMIT: Duration = Duration::from_secs(1);
const HONEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the counts may take to come back down after an attack: tiny_http keeps an idle
/// connection thread for 5 s for the next connection before it exits.
const SETTLE: Duration = Duration::from_secs(8);
/// How often the threads and descriptors are sampled during an attack.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The attacks, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attack {
    ResetStorm,
    SlowBody,
    HeaderFlood,
}

impl Attack {
    pub const ALL: [Attack; 3] = [Attack::ResetStorm, Attack::SlowBody, Attack::HeaderFlood];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Attack::ResetStorm => "reset-storm",
            Attack::SlowBody => "slow-body",
            Attack::HeaderFlood => "header-flood",
        }
    }

    fn what(self) -> String {
        match self {
            Attack::ResetStorm => format!(
                "{STORM_CONNS} connections send `GET /healthz` and close at once with a reset"
            ),
            Attack::SlowBody => format!(
                "{SLOW_BODY_CONNS} logins declare `Content-Length: {SLOW_BODY_DECLARED}`, send 5 \
                 bytes, then nothing (held ≤ {} s)",
                HOLD.as_secs()
            ),
            Attack::HeaderFlood => format!(
                "one header line of {} MiB, and a request with {} headers",
                HUGE_LINE >> 20,
                MANY_HEADERS
            ),
        }
    }

    /// The answers an attack connection may get from a server that defends itself.
    fn expected(self) -> &'static [&'static str] {
        match self {
            Attack::ResetStorm => &["reset by us"],
            Attack::SlowBody => &["408", "400", "503"],
            Attack::HeaderFlood => &["431", "400", "413"],
        }
    }
}

/// Threads, open descriptors and resident KiB of a process, each `None` when unreadable.
#[derive(Clone, Copy, Default)]
struct Counts {
    threads: Option<u64>,
    fds: Option<u64>,
    rss_kib: Option<u64>,
}

impl Counts {
    fn of(pid: u32) -> Counts {
        Counts {
            threads: thread_count(pid),
            fds: fd_count(pid),
            rss_kib: rss_kib(pid),
        }
    }
}

/// An honest request beside the attack: its status (`None`: no answer) and how long it took.
struct Honest {
    status: Option<u16>,
    took: Duration,
}

impl Honest {
    fn ok(&self) -> bool {
        self.status == Some(200) && self.took < HONEST_LIMIT
    }

    fn describe(&self) -> String {
        match self.status {
            Some(status) => format!("{status} in {}", short(self.took)),
            None => format!("no answer after {}", short(self.took)),
        }
    }
}

/// What one phase found.
pub struct Finding {
    attack: Attack,
    /// Attack connections by what they got back: a status code, `closed`, `reset`, `open`...
    answers: BTreeMap<String, usize>,
    /// wxlogin's fate: `None` if it stayed up with the same pid, else how it ended.
    died: Option<String>,
    healthz: Honest,
    login: Honest,
    before: Counts,
    peak: Counts,
    after: Counts,
    took: Duration,
}

impl Finding {
    fn answers(&self) -> String {
        let parts: Vec<String> = self
            .answers
            .iter()
            .map(|(answer, n)| format!("{answer}×{n}"))
            .collect();
        parts.join(" ")
    }

    /// The phase's check: wxlogin up, the honest requests fast, every attack connection
    /// refused the way a defended server refuses it, and the threads and descriptors back.
    pub fn check(&self) -> Check {
        let expected = self.attack.expected();
        let refused = self.answers.keys().all(|a| expected.contains(&a.as_str()));
        let recovered = |before: Option<u64>, after: Option<u64>| matches!((before, after), (Some(b), Some(a)) if a <= b + 2);
        let pass = self.died.is_none()
            && self.healthz.ok()
            && self.login.ok()
            && refused
            && recovered(self.before.threads, self.after.threads)
            && recovered(self.before.fds, self.after.fds);
        Check {
            verdict: if pass { Verdict::Pass } else { Verdict::Fail },
            text: format!(
                "open port, {}: wxlogin {}; attack connections got {} (expected {}); during it \
                 /healthz {}, a login {} (limit {}); threads {}, fds {} (before → peak → after)",
                self.attack.name(),
                self.died.as_deref().unwrap_or("stayed up (same pid)"),
                self.answers(),
                expected.join("/"),
                self.healthz.describe(),
                self.login.describe(),
                short(HONEST_LIMIT),
                counts(self.before.threads, self.peak.threads, self.after.threads),
                counts(self.before.fds, self.peak.fds, self.after.fds),
            ),
        }
    }
}

fn counts(before: Option<u64>, peak: Option<u64>, after: Option<u64>) -> String {
    let n = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    format!("{} → {} → {}", n(before), n(peak), n(after))
}

/// The open-port table, in Markdown.
pub fn render(findings: &[Finding]) -> String {
    let mut table = Table::new(&[
        ("attack", false),
        ("what was sent", false),
        ("s", true),
        ("attack connections got", false),
        ("wxlogin", false),
        ("/healthz during", true),
        ("login during", true),
        ("threads", true),
        ("fds", true),
        ("RSS MiB", true),
    ]);
    let mib = |kib: Option<u64>| kib.map(|k| k.div_ceil(1024));
    for f in findings {
        table.row(vec![
            f.attack.name().into(),
            f.attack.what(),
            format!("{:.1}", f.took.as_secs_f64()),
            f.answers(),
            f.died.clone().unwrap_or_else(|| "up, same pid".into()),
            f.healthz.describe(),
            f.login.describe(),
            counts(f.before.threads, f.peak.threads, f.after.threads),
            counts(f.before.fds, f.peak.fds, f.after.fds),
            counts(
                mib(f.before.rss_kib),
                mib(f.peak.rss_kib),
                mib(f.after.rss_kib),
            ),
        ]);
    }
    format!(
        "Open port: straight to wxlogin on 127.0.0.1 (no nginx), SQLite, \
         `WXLOGIN_CLIENT_TIMEOUT={}s`; counts are before → peak during → after.\n\n{}",
        CLIENT_TIMEOUT.as_secs(),
        table.render()
    )
}

/// Runs `attacks` against a wxlogin of their own and returns what each found.
pub fn run(paths: &Paths, attacks: &[Attack]) -> Result<Vec<Finding>, String> {
    let db = Database::create_sqlite("wxlogin-drill")?;
    let mock_port = free_port()?;
    let _mock = start_mock(paths, mock_port, 0)?;
    let env = WxloginEnv {
        paths,
        mock_port,
        database_url: db.url(),
        jwt_secret: random_hex(32)?,
        extra: vec![(
            "WXLOGIN_CLIENT_TIMEOUT",
            format!("{}s", CLIENT_TIMEOUT.as_secs()),
        )],
    };
    let run_id = random_hex(4)?;
    let addr = free_addr()?;
    let mut wxlogin = env.start("wxlogin-open-port", addr.port(), "/healthz")?;
    let mut findings = Vec::new();
    for (n, &attack) in attacks.iter().enumerate() {
        check_interrupt()?;
        if wxlogin.exit_status().is_some() {
            wxlogin = env.start("wxlogin-open-port", addr.port(), "/healthz")?;
        }
        let finding = phase(attack, addr, &mut wxlogin, &format!("open_{n}.{run_id}"));
        println!("  {}", finding.check().text);
        findings.push(finding);
    }
    Ok(findings)
}

/// One attack on wxlogin at `addr`, the honest requests beside it, and the counts.
fn phase(attack: Attack, addr: SocketAddr, wxlogin: &mut ChildProc, code: &str) -> Finding {
    let pid = wxlogin.pid();
    let before = Counts::of(pid);
    let started = Instant::now();
    let armed = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let peaks = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let (answers, healthz, login) = thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let now = Counts::of(pid);
                for (peak, value) in peaks.iter().zip([now.threads, now.fds, now.rss_kib]) {
                    peak.fetch_max(value.unwrap_or(0), Ordering::Relaxed);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        });
        let attacker = scope.spawn(|| {
            let answers = match attack {
                Attack::ResetStorm => reset_storm(addr, &armed),
                Attack::SlowBody => slow_bodies(addr, &armed),
                Attack::HeaderFlood => header_flood(addr, &armed),
            };
            armed.store(true, Ordering::SeqCst);
            answers
        });
        while !armed.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
        }
        let healthz = timed(|| get_status(addr, "/healthz", HONEST_TIMEOUT));
        let login = timed(|| honest_login(addr, code));
        let answers = attacker.join().unwrap_or_default();
        done.store(true, Ordering::SeqCst);
        (answers, healthz, login)
    });
    let took = started.elapsed();
    // The counts come back down as wxlogin's threads notice their connections are gone.
    let settle_until = Instant::now() + SETTLE;
    let mut after = Counts::of(pid);
    while Instant::now() < settle_until
        && (after.threads > before.threads || after.fds > before.fds)
    {
        thread::sleep(Duration::from_millis(100));
        after = Counts::of(pid);
    }
    let peak = |i: usize| Some(peaks[i].load(Ordering::Relaxed)).filter(|v| *v > 0);
    let died = wxlogin.exit_status().map(|status| {
        // The panic's own line says why; a backtrace's last lines would not.
        let log = wxlogin.log_tail(200);
        let lines: Vec<&str> = log.lines().collect();
        let why = match lines.iter().position(|line| line.contains("panicked")) {
            Some(i) => lines[i..lines.len().min(i + 2)].join(" "),
            None => lines.last().copied().unwrap_or_default().to_owned(),
        };
        format!("DIED ({}): {why:?}", describe_exit(status))
    });
    Finding {
        attack,
        answers,
        died,
        healthz,
        login,
        before,
        peak: Counts {
            threads: peak(0),
            fds: peak(1),
            rss_kib: peak(2),
        },
        after,
        took,
    }
}

fn timed(request: impl FnOnce() -> Option<u16>) -> Honest {
    let started = Instant::now();
    let status = request();
    Honest {
        status,
        took: started.elapsed(),
    }
}

/// One login with `code` (a fresh mock code), on a new connection.
fn honest_login(addr: SocketAddr, code: &str) -> Option<u16> {
    let mut request = Vec::new();
    write_form_post(&mut request, "/api/wxuser", &format!("code={code}"));
    let mut client = HttpClient::new(addr);
    client.set_timeout(HONEST_TIMEOUT);
    client.send(&request).ok()
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(stream)
}

/// Counts one more of `answer`.
fn tally(answers: &mut BTreeMap<String, usize>, answer: impl Into<String>) {
    *answers.entry(answer.into()).or_default() += 1;
}

/// (a) Connections that send a request and close at once with `SO_LINGER {on, 0}`: the server
/// finds a reset where it writes its answer. Armed from the start: the honest requests run
/// while the storm does.
fn reset_storm(addr: SocketAddr, armed: &AtomicBool) -> BTreeMap<String, usize> {
    armed.store(true, Ordering::SeqCst);
    let mut answers = BTreeMap::new();
    for _ in 0..STORM_CONNS {
        let sent = connect(addr).and_then(|mut stream| {
            stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n")?;
            Ok(stream)
        });
        match sent {
            Ok(stream) => {
                abort(stream);
                tally(&mut answers, "reset by us");
            }
            Err(e) => tally(&mut answers, format!("not sent ({})", e.kind())),
        }
    }
    answers
}

/// (b) Logins whose bodies stop after 5 of 5,000 declared bytes, all held open until each is
/// answered or closed, or [`HOLD`] passes. Armed once every connection has sent its bytes.
fn slow_bodies(addr: SocketAddr, armed: &AtomicBool) -> BTreeMap<String, usize> {
    let head = format!(
        "POST /api/wxuser HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {SLOW_BODY_DECLARED}\
         \r\n\r\ncode="
    );
    let mut answers = BTreeMap::new();
    let mut open = Vec::new();
    for _ in 0..SLOW_BODY_CONNS {
        match connect(addr).and_then(|mut stream| {
            stream.write_all(head.as_bytes())?;
            Ok(stream)
        }) {
            Ok(stream) => open.push(stream),
            Err(e) => tally(&mut answers, format!("not sent ({})", e.kind())),
        }
    }
    armed.store(true, Ordering::SeqCst);
    for (answer, n) in watch(open, HOLD) {
        *answers.entry(answer).or_default() += n;
    }
    answers
}

/// (c) One request with a 16 MiB header line and one with 200,000 headers, sent side by side
/// in 64 KiB pieces (a server that refuses early cuts the sending short), then their answers.
/// Armed once both are sending.
fn header_flood(addr: SocketAddr, armed: &AtomicBool) -> BTreeMap<String, usize> {
    let requests: [fn(&mut TcpStream) -> std::io::Result<()>; 2] = [huge_line, many_headers];
    let started = AtomicU64::new(0);
    let results: Vec<BTreeMap<String, usize>> = thread::scope(|scope| {
        let senders: Vec<_> = requests
            .iter()
            .map(|send| {
                let started = &started;
                scope.spawn(move || {
                    let stream = connect(addr);
                    if started.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                        armed.store(true, Ordering::SeqCst);
                    }
                    let mut stream = match stream {
                        Ok(stream) => stream,
                        Err(e) => {
                            let mut answers = BTreeMap::new();
                            tally(&mut answers, format!("not sent ({})", e.kind()));
                            return answers;
                        }
                    };
                    // A refusal mid-send shows as a write error; its answer may still be there.
                    let _ = send(&mut stream);
                    watch(vec![stream], HOLD)
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|sender| sender.join().unwrap_or_default())
            .collect()
    });
    let mut answers = BTreeMap::new();
    for result in results {
        for (answer, n) in result {
            *answers.entry(answer).or_default() += n;
        }
    }
    answers
}

/// A request whose one header line is [`HUGE_LINE`] bytes long.
fn huge_line(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")?;
    let piece = vec![b'a'; 64 << 10];
    for _ in 0..HUGE_LINE / piece.len() {
        out.write_all(&piece)?;
    }
    out.write_all(b"\r\n\r\n")
}

/// A request with [`MANY_HEADERS`] short header lines.
fn many_headers(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")?;
    let mut piece = Vec::with_capacity(70 << 10);
    for i in 0..MANY_HEADERS {
        let _ = write!(piece, "X-H{i}: v\r\n");
        if piece.len() >= 64 << 10 {
            out.write_all(&piece)?;
            piece.clear();
        }
    }
    piece.extend_from_slice(b"\r\n");
    out.write_all(&piece)
}

/// Reads every stream until it shows a status line (its code), ends (`closed`, `reset`), or
/// `limit` passes (`open`), all in one thread; then closes them.
fn watch(streams: Vec<TcpStream>, limit: Duration) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<(TcpStream, Vec<u8>)> = streams
        .into_iter()
        .filter(|s| s.set_nonblocking(true).is_ok())
        .map(|s| (s, Vec::new()))
        .collect();
    let mut answers = BTreeMap::new();
    let mut buf = [0u8; 4096];
    while !pending.is_empty() && Instant::now() < deadline && check_interrupt().is_ok() {
        pending.retain_mut(|(stream, got)| {
            let ended = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break Some("closed, no answer".to_owned()),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                        break Some("reset, no answer".to_owned())
                    }
                    Err(e) => break Some(format!("error ({})", e.kind())),
                }
            };
            let status = got
                .contains(&b'\n')
                .then(|| {
                    String::from_utf8_lossy(got)
                        .split_whitespace()
                        .nth(1)
                        .map(str::to_owned)
                })
                .flatten();
            match status.or(ended) {
                Some(answer) => {
                    tally(&mut answers, answer);
                    false
                }
                None => true,
            }
        });
        thread::sleep(SAMPLE_EVERY);
    }
    for _ in &pending {
        tally(&mut answers, format!("open after {}", short(limit)));
    }
    answers
}
