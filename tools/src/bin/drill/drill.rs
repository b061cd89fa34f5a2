//! The drill itself: preflight, the servers, the phases in order, and the checks on what the
//! clients saw. Every step is bounded; every resource is held by a guard that cleans up when
//! it is dropped, in reverse order of creation, on errors and panics too.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ureq::tls::Certificate;
use ureq::Agent;

use wxlogin_tools::bounded;
use wxlogin_tools::children::{self, describe_exit, ChildProc};
use wxlogin_tools::http::get_status;
use wxlogin_tools::markdown::short;
use wxlogin_tools::ports::free_port;
use wxlogin_tools::signals::check_interrupt;

use crate::attacks::{self, SlowClients, SlowKind, HUGE_LENGTH};
use crate::cluster;
use crate::load::{self, Answer, Load, Outcome, Via};
use crate::mariadb::{self, Outage};
use crate::nginx::{self, Ports};
use crate::open_port::{self, Attack, Finding};
use crate::phase::Phase;
use crate::report::{Check, Report, Stats, Verdict};

/// mock-wechat's public default credentials.
const APPID: &str = "wx1234567890abcdef";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// wxlogin's bound on a WeChat call in the drill, and mock-wechat's latency in the slow phase:
/// above the bound, so that every login of that phase times out.
const WECHAT_TIMEOUT: Duration = Duration::from_secs(2);
const MOCK_SLOW_MS: u64 = 3000;
/// How long the ordinary phases run, the shorter ones, and MariaDB stays down.
const PHASE_TIME: Duration = Duration::from_secs(5);
const SHORT_PHASE_TIME: Duration = Duration::from_secs(4);
const DB_DOWN_TIME: Duration = Duration::from_secs(5);
/// The database bound wxlogin documents (connect, checkout, each query: 5 s), plus slack: no
/// login may wait longer for a 503 while MariaDB is down.
const DB_ANSWER_LIMIT: Duration = Duration::from_secs(6);
/// How many slow clients, how long nginx may take to drop them (the shipped
/// `client_header_timeout 10s`, plus slack), and the longest the phase may last.
const SLOW_CLIENTS: usize = 100;
const SLOW_DROP_LIMIT: Duration = Duration::from_secs(14);
const SLOW_PHASE_LIMIT: Duration = Duration::from_secs(25);
/// The longest an honest login through nginx may take while the slow clients are there: normal
/// is milliseconds; a client queued behind them would wait seconds.
const HONEST_LIMIT: Duration = Duration::from_secs(1);
/// How long the huge request's connection is held open after the answer, and the spare
/// watched for an exit after it is closed.
const HUGE_HOLD: Duration = Duration::from_secs(3);
/// How long a server may take to be ready (wxlogin applies its schema first).
pub const READY_LIMIT: Duration = Duration::from_secs(30);

/// Where the drill finds the binaries and the shipped files, and writes its output.
pub struct Paths {
    /// `target/release`: wxlogin, mock-wechat.
    pub bin: PathBuf,
    /// The repository: `deploy/nginx/wxlogin.conf`.
    pub repo: PathBuf,
    /// `target/drill`: `last-run.md`.
    pub out: PathBuf,
    /// `target/drill/logs`: every child's output, kept after the run.
    pub logs: PathBuf,
}

/// What wxlogin needs to be started again with the same configuration (the spare process of
/// the huge-request attack, the targets of the open-port phases).
pub struct WxloginEnv<'a> {
    pub paths: &'a Paths,
    pub mock_port: u16,
    pub database_url: String,
    pub jwt_secret: String,
    /// Extra variables, e.g. a shorter `WXLOGIN_CLIENT_TIMEOUT`.
    pub extra: Vec<(&'static str, String)>,
}

impl WxloginEnv<'_> {
    /// Starts a wxlogin named `name` on `port`, waits until `ready_path` answers 200.
    pub fn start(&self, name: &str, port: u16, ready_path: &str) -> Result<ChildProc, String> {
        let mut command = Command::new(self.paths.bin.join("wxlogin"));
        command
            .env("WXLOGIN_BIND", format!("127.0.0.1:{port}"))
            .env(
                "WECHAT_API_BASE",
                format!("http://127.0.0.1:{}", self.mock_port),
            )
            .env("WECHAT_APPID", APPID)
            .env("WECHAT_SECRET", SECRET)
            .env("JWT_SECRET", &self.jwt_secret)
            .env("DATABASE_URL", &self.database_url)
            .env("WECHAT_TIMEOUT", format!("{}s", WECHAT_TIMEOUT.as_secs()))
            .envs(wxlogin_tools::WXLOGIN_UNDER_LOAD)
            .env("RUST_LOG", "warn")
            .envs(self.extra.iter().map(|(k, v)| (k, v)));
        let log = self.paths.logs.join(format!("{name}.log"));
        let mut child = ChildProc::spawn(name, command, &log)?;
        child.wait_ready(READY_LIMIT, || answers_200(port, ready_path))?;
        Ok(child)
    }
}

/// Whether `GET path` on 127.0.0.1:`port` answers 200 within 3 s.
fn answers_200(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    get_status(addr, path, Duration::from_secs(3)) == Some(200)
}

/// Starts mock-wechat on `port`, answering jscode2session after `latency_ms`.
pub fn start_mock(paths: &Paths, port: u16, latency_ms: u64) -> Result<ChildProc, String> {
    let mut command = Command::new(paths.bin.join("mock-wechat"));
    command
        .env("MOCK_WECHAT_BIND", format!("127.0.0.1:{port}"))
        .env("MOCK_WECHAT_LATENCY_MS", latency_ms.to_string())
        .env("RUST_LOG", "warn");
    let mut child = ChildProc::spawn("mock-wechat", command, &paths.logs.join("mock-wechat.log"))?;
    child.wait_ready(READY_LIMIT, || answers_200(port, "/healthz"))?;
    Ok(child)
}

/// Replaces `mock` (stopped first, if it runs) with one on the same port and `latency_ms`:
/// wxlogin keeps its configuration, as it would while WeChat changes behaviour.
fn restart_mock(
    mock: &mut ChildProc,
    paths: &Paths,
    port: u16,
    latency_ms: u64,
) -> Result<(), String> {
    mock.stop();
    *mock = start_mock(paths, port, latency_ms)?;
    Ok(())
}

pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

fn check(passed: bool, text: String) -> Check {
    let verdict = if passed { Verdict::Pass } else { Verdict::Fail };
    Check { verdict, text }
}

/// Prints a phase's answers as it ends.
fn progress(load: &Load, phase: Phase) {
    let stats = Stats::of(load.outcomes_of(phase).iter());
    println!(
        "  {:<13} {:>5} sent: {}; slowest {}",
        phase.name(),
        stats.sent,
        stats.breakdown(),
        short(stats.max())
    );
}

/// Runs `phase` for `time` with nothing else done.
fn timed_phase(load: &mut Load, phase: Phase, time: Duration) -> Result<(), String> {
    load.run(phase);
    bounded::sleep(time)?;
    load.pause()?;
    progress(load, phase);
    Ok(())
}

/// `nginx version: nginx/1.22.1` → `nginx 1.22.1`.
fn nginx_version(logs: &Path) -> Result<String, String> {
    let file = logs.join("nginx-version.txt");
    let mut command = Command::new("nginx");
    command.arg("-v");
    children::run(command, Duration::from_secs(10), &file)?;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    Ok(text
        .split_once("nginx/")
        .map(|(_, v)| format!("nginx {}", v.trim()))
        .unwrap_or_else(|| "nginx".into()))
}

/// The whole drill. Returns the report; an error means the drill could not run to its end
/// (everything is cleaned up all the same).
pub fn run(paths: &Paths) -> Result<Report, String> {
    let commands_log = paths.logs.join("commands.log");
    println!("preflight (logs in {})", paths.logs.display());
    nginx::ensure_installed(&commands_log)?;
    let mut openssl = Command::new("openssl");
    openssl.arg("version");
    children::run(openssl, Duration::from_secs(10), &commands_log)
        .map_err(|e| format!("openssl is needed for the certificate: {e}"))?;
    mariadb::ensure_running(&commands_log)?;
    binaries_present(paths)?;
    let setup = format!(
        "MariaDB {} · {} with the shipped `deploy/nginx/wxlogin.conf` · {}.",
        mariadb::version()?,
        nginx_version(&paths.logs)?,
        load::describe()
    );

    // Dropped last: the database, after every process using it.
    let db = mariadb::create_database()?;
    let tmp = tempfile::Builder::new()
        .prefix("wxlogin-drill-")
        .tempdir()
        .map_err(|e| format!("no temporary folder: {e}"))?;
    // nginx's workers run as nobody and create their temporary folders under it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    let (cert_path, key_path) = nginx::make_certificate(tmp.path(), &commands_log)?;
    let cert_pem =
        std::fs::read(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let cert = Certificate::from_pem(&cert_pem).map_err(|e| format!("the certificate: {e}"))?;
    let probe = load::agent(&cert, Duration::from_secs(3));
    let tls = attacks::tls_config(cert.der())?;

    let mock_port = free_port()?;
    let mut mock = start_mock(paths, mock_port, 0)?;
    let env = WxloginEnv {
        paths,
        mock_port,
        database_url: db.url(),
        jwt_secret: random_hex(32)?,
        extra: Vec::new(),
    };
    let wx_port = free_port()?;
    let mut wxlogin = env.start("wxlogin", wx_port, "/readyz")?;
    let wxlogin_pid = wxlogin.pid();
    let wx = format!("http://127.0.0.1:{wx_port}");
    let ports = Ports {
        http: free_port()?,
        https: free_port()?,
        upstream: wx_port,
    };
    let shipped_path = paths.repo.join("deploy/nginx/wxlogin.conf");
    let shipped = std::fs::read_to_string(&shipped_path)
        .map_err(|e| format!("{}: {e}", shipped_path.display()))?;
    let mut nginx = nginx::start(
        tmp.path(),
        &shipped,
        &ports,
        (&cert_path, &key_path),
        &paths.logs.join("nginx-error.log"),
    )?;
    let front = format!("https://127.0.0.1:{}", ports.https);
    nginx.wait_ready(READY_LIMIT, || {
        load::status(&probe, &format!("{front}/healthz")) == Some(200)
    })?;
    println!(
        "up: mock-wechat :{mock_port}, wxlogin :{wx_port} (pid {wxlogin_pid}, database {}), \
         nginx https :{} http :{}",
        db.name().unwrap_or_default(),
        ports.https,
        ports.http
    );

    let mut checks = Vec::new();
    let redirect = attacks::plain_get_status(ports.http, "/api/wxuser");
    checks.push(check(
        redirect == Ok(301),
        format!(
            "nginx's plain-HTTP listener redirects to HTTPS: {}",
            redirect
                .as_ref()
                .map_or_else(Clone::clone, ToString::to_string)
        ),
    ));

    let mut load = Load::start(
        &format!("{wx}/api/wxuser"),
        &format!("{front}/api/wxuser"),
        &cert,
        &random_hex(4)?,
    );

    // a. Everything up.
    timed_phase(&mut load, Phase::Baseline, PHASE_TIME)?;
    checks.push(judge(&load, Phase::Baseline));

    // b. MariaDB stopped under load, then restarted; wxlogin is never restarted.
    database_outage(&mut load, &probe, &wx, &commands_log, &mut checks)?;

    // c. WeChat slow, then unreachable, then normal: mock-wechat restarted on the same port.
    restart_mock(&mut mock, paths, mock_port, MOCK_SLOW_MS)?;
    timed_phase(&mut load, Phase::WechatSlow, PHASE_TIME)?;
    checks.push(judge(&load, Phase::WechatSlow));
    load.run(Phase::WechatDown);
    mock.stop();
    bounded::sleep(SHORT_PHASE_TIME)?;
    load.pause()?;
    progress(&load, Phase::WechatDown);
    checks.push(judge(&load, Phase::WechatDown));
    restart_mock(&mut mock, paths, mock_port, 0)?;
    timed_phase(&mut load, Phase::WechatBack, SHORT_PHASE_TIME)?;
    checks.push(judge(&load, Phase::WechatBack));

    // d. Slow clients on nginx while the honest clients keep logging in through it.
    load.run(Phase::SlowClients);
    let slow = SlowClients::start(SLOW_CLIENTS, ports.https, ports.http, &tls);
    let started = Instant::now();
    // Clients still open at the limit are a finding, reported below; Ctrl-C is not.
    let _ = bounded::wait_until("slow clients dropped", SLOW_PHASE_LIMIT, || {
        Ok(slow.all_ended())
    });
    check_interrupt()?;
    bounded::sleep(PHASE_TIME.saturating_sub(started.elapsed()))?;
    let waited = started.elapsed();
    load.pause()?;
    progress(&load, Phase::SlowClients);
    checks.push(slow_client_check(&slow.finish(), waited));
    checks.push(judge(&load, Phase::SlowClients));

    // d'. A terabyte declared: through nginx, then straight to a spare wxlogin.
    let through_nginx = attacks::huge_request_tls(ports.https, &tls)?;
    let health = load::status(&probe, &format!("{wx}/healthz"));
    checks.push(check(
        through_nginx.status == Some(413) && health == Some(200) && wxlogin.exit_status().is_none(),
        format!(
            "`Content-Length: {HUGE_LENGTH}` through nginx: {} after {}, never reaches wxlogin \
             (its /healthz {})",
            through_nginx
                .status
                .map_or("no answer".into(), |s| s.to_string()),
            short(through_nginx.after),
            health.map_or("no answer".into(), |s| s.to_string()),
        ),
    ));
    checks.push(huge_request_direct(&env)?);

    // The end: what the clients saw, every 200's row, the server still up.
    let (record, spans) = load.finish()?;
    let openids: Vec<String> = record.openids.iter().flatten().cloned().collect();
    let unreadable = record.openids.len() - openids.len();
    let missing = mariadb::missing_rows(&db, &openids)?;
    let distinct = openids.iter().collect::<HashSet<_>>().len() as u64;
    let rows = mariadb::rows(&db)?;
    checks.push(check(
        missing.is_empty() && unreadable == 0,
        format!(
            "every 200 has its row: {} tokens, {} with a row, {} lost{}{}; {rows} rows in wxuser{}",
            record.openids.len(),
            openids.len() - missing.len(),
            missing.len() + unreadable,
            if unreadable > 0 {
                format!(" ({unreadable} tokens without a readable openid)")
            } else {
                String::new()
            },
            missing
                .first()
                .map(|m| format!(", e.g. openid {m}"))
                .unwrap_or_default(),
            if rows > distinct {
                format!(
                    " ({} stored for logins that got no 200, an error or no answer in time: \
                     harmless, a retry logs the same user in)",
                    rows - distinct
                )
            } else {
                String::new()
            }
        ),
    ));
    let health = load::status(&probe, &format!("{wx}/healthz"));
    let exit = wxlogin.exit_status();
    checks.push(check(
        exit.is_none() && health == Some(200),
        format!(
            "wxlogin (pid {wxlogin_pid}) {}, /healthz {}",
            exit.map_or("still running, never restarted".into(), |s| format!(
                "CRASHED ({})",
                describe_exit(s)
            )),
            health.map_or("no answer".into(), |s| s.to_string())
        ),
    ));
    if exit.is_some() {
        eprintln!("the end of wxlogin's log:\n{}", wxlogin.log_tail(20));
    }

    // e. Three nodes behind nginx, one killed under load (MariaDB stays up).
    let cluster = cluster::run(paths)?;
    checks.extend(cluster.checks);

    // f. The open port: hostile clients straight at a wxlogin of their own (no nginx).
    println!("open port (straight to wxlogin, SQLite):");
    let findings = open_port::run(paths, &Attack::ALL)?;
    checks.extend(findings.iter().map(Finding::check));
    Ok(Report {
        setup,
        outcomes: record.outcomes,
        spans,
        checks,
        tables: vec![cluster.table, open_port::render(&findings)],
    })
}

/// What `--only` selects: the cluster phase, open-port phases, or both.
#[derive(Debug, PartialEq, Eq)]
pub struct Only {
    pub cluster: bool,
    pub attacks: Vec<Attack>,
}

/// Only the phases `only` names: no MariaDB stop, no login load; nginx only for the cluster.
pub fn run_only(paths: &Paths, only: &Only) -> Result<Report, String> {
    binaries_present(paths)?;
    let mut names = Vec::new();
    let mut checks = Vec::new();
    let mut tables = Vec::new();
    if only.cluster {
        println!("cluster (logs in {}):", paths.logs.display());
        let cluster = cluster::run(paths)?;
        names.push("cluster");
        checks.extend(cluster.checks);
        tables.push(cluster.table);
    }
    if !only.attacks.is_empty() {
        println!(
            "open port (straight to wxlogin, SQLite; logs in {}):",
            paths.logs.display()
        );
        let findings = open_port::run(paths, &only.attacks)?;
        names.extend(only.attacks.iter().map(|a| a.name()));
        checks.extend(findings.iter().map(Finding::check));
        tables.push(open_port::render(&findings));
    }
    Ok(Report {
        setup: format!("Only these phases: {}.", names.join(", ")),
        outcomes: Vec::new(),
        spans: Vec::new(),
        checks,
        tables,
    })
}

/// Fails unless wxlogin and mock-wechat were built beside this binary.
fn binaries_present(paths: &Paths) -> Result<(), String> {
    for exe in ["wxlogin", "mock-wechat"] {
        if !paths.bin.join(exe).exists() {
            return Err(format!(
                "{} is missing: run `cargo build --release --workspace` (make drill does)",
                paths.bin.join(exe).display()
            ));
        }
    }
    Ok(())
}

/// Phase b: stops MariaDB under load, checks readiness and liveness while it is down, holds it
/// down, restarts it, and runs the phase after, judging both.
fn database_outage(
    load: &mut Load,
    probe: &Agent,
    wx: &str,
    commands_log: &Path,
    checks: &mut Vec<Check>,
) -> Result<(), String> {
    load.run(Phase::DbDown);
    let stopping = Instant::now();
    let outage = Outage::begin(commands_log)?;
    let stop_took = stopping.elapsed();
    let readyz = bounded::wait_until("/readyz 503", Duration::from_secs(15), || {
        Ok(load::status(probe, &format!("{wx}/readyz")) == Some(503))
    });
    let healthz = load::status(probe, &format!("{wx}/healthz"));
    checks.push(check(
        readyz.is_ok() && healthz == Some(200),
        format!(
            "MariaDB down: /readyz 503 {}, /healthz {}",
            readyz.map_or_else(
                |e| format!("never ({e})"),
                |d| format!("{} after it stopped", short(d))
            ),
            healthz.map_or("no answer".into(), |s| s.to_string())
        ),
    ));
    bounded::sleep(DB_DOWN_TIME)?;
    let back_took = outage.end()?;
    load.run(Phase::DbBack);
    bounded::sleep(PHASE_TIME)?;
    let ready_again = bounded::wait_until("/readyz 200", Duration::from_secs(10), || {
        Ok(load::status(probe, &format!("{wx}/readyz")) == Some(200))
    });
    load.pause()?;
    progress(load, Phase::DbDown);
    progress(load, Phase::DbBack);
    checks.push(judge(load, Phase::DbDown));
    checks.push(Check {
        verdict: Verdict::Info,
        text: format!(
            "MariaDB took {} to stop and {} to answer again after its restart",
            short(stop_took),
            short(back_took)
        ),
    });
    checks.push(check(
        ready_again.is_ok(),
        format!(
            "MariaDB back: /readyz {}",
            if ready_again.is_ok() {
                "200 again"
            } else {
                "still not 200"
            }
        ),
    ));
    checks.push(judge(load, Phase::DbBack));
    Ok(())
}

/// How nginx dealt with the slow clients, kind by kind: each must be connected, then dropped
/// within [`SLOW_DROP_LIMIT`].
fn slow_client_check(results: &[attacks::SlowResult], waited: Duration) -> Check {
    let mut passed = !results.is_empty();
    let kinds: Vec<String> = SlowKind::ALL
        .iter()
        .map(|kind| {
            let of_kind: Vec<&attacks::SlowResult> =
                results.iter().filter(|r| r.kind == *kind).collect();
            let opened = of_kind.iter().filter(|r| r.opened).count();
            let drops: Vec<Duration> = of_kind.iter().filter_map(|r| r.dropped_after).collect();
            let first = drops.iter().min().copied().unwrap_or_default();
            let last = drops.iter().max().copied().unwrap_or_default();
            passed &=
                opened == of_kind.len() && drops.len() == of_kind.len() && last <= SLOW_DROP_LIMIT;
            let when = if drops.is_empty() {
                String::new()
            } else {
                format!(" after {}–{}", short(first), short(last))
            };
            let still_open = if drops.len() < opened {
                format!(
                    ", {} still open after {}",
                    opened - drops.len(),
                    short(waited)
                )
            } else {
                String::new()
            };
            format!(
                "{} ({} connected): {} dropped{when}{still_open}",
                kind.describe(),
                opened,
                drops.len()
            )
        })
        .collect();
    check(
        passed,
        format!(
            "{} slow clients, dropped by nginx within {}: {}",
            results.len(),
            short(SLOW_DROP_LIMIT),
            kinds.join("; ")
        ),
    )
}

/// The huge request straight to a spare wxlogin (never the main one): what tiny_http does
/// with it, and whether the process survives. Reported, not judged: this is why nginx is there.
fn huge_request_direct(env: &WxloginEnv) -> Result<Check, String> {
    let port = free_port()?;
    let mut spare = env.start("wxlogin-spare", port, "/healthz")?;
    let mut connection = attacks::plain_connect(port)?;
    let answer = attacks::send_huge_request(&mut connection)?;
    let answered = Instant::now();
    // The connection is left open, as an attacker would leave it, until the server closes it
    // (or dies), then closed by us.
    let closed_by_server = attacks::wait_for_close(&mut connection, HUGE_HOLD);
    drop(connection);
    let died = bounded::wait_until("the spare's exit", HUGE_HOLD, || {
        Ok(spare.exit_status().is_some())
    })
    .is_ok();
    check_interrupt()?;
    let fate = match spare.exit_status() {
        Some(status) if died => format!(
            "the process DIED ({}) within {} of its answer; its log: {:?}",
            describe_exit(status),
            short(answered.elapsed()),
            spare.log_head()
        ),
        _ => format!(
            "the process survived (its /healthz {}); it {}",
            get_status(
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                "/healthz",
                Duration::from_secs(3)
            )
            .map_or("no answer".into(), |s| s.to_string()),
            closed_by_server.map_or_else(
                || format!(
                    "kept the connection open for {} (a worker waiting for the body) until we \
                     closed it",
                    short(HUGE_HOLD)
                ),
                |after| format!("closed the connection {} after its answer", short(after))
            )
        ),
    };
    Ok(Check {
        verdict: Verdict::Info,
        text: format!(
            "`Content-Length: {HUGE_LENGTH}` straight to a spare wxlogin (no nginx): answered {} \
             after {}; {fate}",
            answer.status.map_or("nothing".into(), |s| s.to_string()),
            short(answer.after),
        ),
    })
}

/// The check on the answers of `phase`, right after it ran.
fn judge(load: &Load, phase: Phase) -> Check {
    let outcomes = load.outcomes_of(phase);
    let stats = Stats::of(outcomes.iter());
    let ok = Answer::Status(200);
    let wechat_bound = WECHAT_TIMEOUT + Duration::from_secs(1);
    match phase {
        Phase::DbBack => judge_db_back(&outcomes, load.started(phase)),
        Phase::Baseline | Phase::WechatBack => check(
            stats.only(&[ok]),
            format!("{}: every login 200 ({})", phase.name(), stats.breakdown()),
        ),
        Phase::DbDown => check(
            stats.only(&[ok, Answer::Status(503)]) && stats.max() <= DB_ANSWER_LIMIT,
            format!(
                "MariaDB down: logins answered 503 (200 before the stop took effect), none slower \
                 than {} ({}; slowest {})",
                short(DB_ANSWER_LIMIT),
                stats.breakdown(),
                short(stats.max())
            ),
        ),
        Phase::WechatSlow => check(
            stats.only(&[Answer::Status(504)]) && stats.max() <= wechat_bound,
            format!(
                "WeChat slow: every login 504 within {} ({}; slowest {})",
                short(wechat_bound),
                stats.breakdown(),
                short(stats.max())
            ),
        ),
        Phase::WechatDown => check(
            stats.only(&[Answer::Status(502)]) && stats.max() <= wechat_bound,
            format!(
                "WeChat unreachable: every login 502 ({}; slowest {})",
                stats.breakdown(),
                short(stats.max())
            ),
        ),
        Phase::SlowClients => {
            let honest = Stats::of(outcomes.iter().filter(|o| o.via == Via::Nginx));
            let calm = load.outcomes_of(Phase::Baseline);
            let calm = Stats::of(calm.iter().filter(|o| o.via == Via::Nginx));
            check(
                stats.only(&[ok]) && honest.max() <= HONEST_LIMIT,
                format!(
                    "during the slow clients, honest logins through nginx: {} of {} answered 200, \
                     median {} (baseline {}), slowest {}; straight to wxlogin: {}",
                    honest.count(ok),
                    honest.sent,
                    short(honest.median()),
                    short(calm.median()),
                    short(honest.max()),
                    Stats::of(outcomes.iter().filter(|o| o.via == Via::Direct)).breakdown()
                ),
            )
        }
    }
}

/// The phase after the database outage, which starts when MariaDB answers again (`back_at`):
/// logins must succeed again without a restart of wxlogin, and keep succeeding.
fn judge_db_back(back: &[Outcome], back_at: Option<Instant>) -> Check {
    let ok = Answer::Status(200);
    let first_ok = back
        .iter()
        .filter(|o| o.answer == ok)
        .filter_map(|o| Some((o.sent_at + o.latency).saturating_duration_since(back_at?)))
        .min();
    let last_sent = back.iter().map(|o| o.sent_at).max();
    let last_second_ok = last_sent.is_some_and(|end| {
        back.iter()
            .filter(|o| o.sent_at + Duration::from_secs(1) >= end)
            .all(|o| o.answer == ok)
    });
    check(
        first_ok.is_some() && last_second_ok,
        format!(
            "MariaDB back, wxlogin not restarted: first 200 {} after MariaDB answered, the last \
             second all 200: {} ({})",
            first_ok.map_or("never".into(), short),
            if last_second_ok { "yes" } else { "no" },
            Stats::of(back.iter()).breakdown()
        ),
    )
}
