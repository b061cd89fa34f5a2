//! `wxlogin-bench`: the program behind `make bench` (issues 6 and 14).
//!
//! It starts the release builds of `mock-wechat` and `wxlogin` as child processes on free
//! loopback ports against a fresh database, drives them with our own keep-alive load generator,
//! measures the ceilings (mock-wechat alone, the store alone) in the same run, and prints one
//! report, also written to `target/bench/last-run.md` for the README. With `--peer CMD` it then
//! stops wxlogin, starts the peer with the same environment against a fresh database of its
//! own, runs the comparison rows ([`compare::PLAN`]) on it, and sets both side by side. Every
//! row is bounded by time and by a request budget, so the whole run takes about two minutes
//! without a peer and three with one on the reference machine (2 cores).

mod compare;
mod counters;
mod load;
mod probe;
mod report;
mod scenarios;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime};

use wxlogin::store::{DatabaseUrl, StoreOptions};
use wxlogin_tools::children::ChildProc;
use wxlogin_tools::database::Database;
use wxlogin_tools::http::{write_get, HttpClient};
use wxlogin_tools::markdown::thousands;
use wxlogin_tools::ports::free_addr;
use wxlogin_tools::procstat;
use wxlogin_tools::signals::{self, interrupted};

use crate::compare::{PeerRun, PLAN};
use crate::load::Limits;
use crate::probe::{Probe, Watched};
use crate::report::{Row, Setup, SLOW_WECHAT_LATENCY};
use crate::scenarios::{Kind, RawUpsertWorker, StoreWorker};

const USAGE: &str = "\
usage: wxlogin-bench [options]     (normally run by `make bench`)

  --peer CMD          after wxlogin, run the comparison rows on another server speaking our
                      login API, started as `sh -c 'exec CMD'` with wxlogin's environment
                      (WXLOGIN_BIND, WECHAT_*, JWT_SECRET, DATABASE_URL of its own fresh
                      database; build it first), and print both side by side (MariaDB only)
  --sqlite            use a temporary SQLite file instead of MariaDB
  --quick             only 16 and 64 connections (plus the comparison rows: new logins
                      at 256, /healthz and /auth/verify at 16, slow WeChat at 1,024)
  --conns LIST        connection counts to run, e.g. `64,256` (default 1,16,64,256)
  --duration SECS     bound on each row (default 2.5)
  --max-requests N    bound on each row's request count (default 500000)
  --users N           returning users and /api/me tokens (default 1000)
  --max-connections N WXLOGIN_MAX_CONNECTIONS for the server (default: the server's default)
  --mock-close        mock-wechat closes every connection (its own default) instead of
                      keeping them alive as WeChat does (MOCK_WECHAT_KEEP_ALIVE=1)
  --mysql-url URL     MariaDB/MySQL server without a database
                      (default $WXLOGIN_BENCH_MYSQL_URL or mysql://root@127.0.0.1:3306)
  --only LIST         run only these rows, e.g. `first,me` (mock, store, raw, first,
                      returning, me, mix, slow, verify, healthz; default all): to profile
                      one scenario
  --out PATH          where to write the Markdown table (default target/bench/last-run.md)
";

/// Connections per row, as the issue asks.
const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];
const QUICK_CONCURRENCY: [usize; 2] = [16, 64];
/// mock-wechat holds a worker for the whole added latency, so it needs one per login in flight
/// (up to [`compare::SLOW_WECHAT_CONNS`] for a server that does not cap them) or it becomes the
/// bottleneck itself; 1,024 is also the most it accepts.
const SLOW_WECHAT_MOCK_THREADS: usize = 1024;
/// How long the peer may take to answer `/healthz`: longer than wxlogin's, since it may be a
/// `cargo run` or a script that checks its build first.
const PEER_START_TIMEOUT: Duration = Duration::from_secs(120);
/// Connections used to log the returning users in before the rows start.
const SETUP_CONNS: usize = 16;

#[derive(Debug, Clone)]
struct Args {
    sqlite: bool,
    quick: bool,
    duration: Duration,
    max_requests: u64,
    users: usize,
    max_connections: Option<usize>,
    /// Keep mock-wechat's connections alive, as WeChat's are. Off by default: with tiny_http
    /// 0.12's connection pool, a burst of new keep-alive connections (wxlogin's upstream pool
    /// growing to 256 in the slow-WeChat row) leaves some without a thread, and the logins on
    /// them wait out `WECHAT_TIMEOUT` (504), which measures the mock, not wxlogin.
    mock_keep_alive: bool,
    mysql_url: String,
    /// Row kinds to run; empty: all.
    only: Vec<Kind>,
    /// Connection counts to run; empty: the default (or the quick) set.
    conns: Vec<usize>,
    out: Option<PathBuf>,
    /// The peer's command line, run through `sh -c`.
    peer: Option<String>,
}

impl Args {
    fn wants(&self, kind: Kind) -> bool {
        self.only.is_empty() || self.only.contains(&kind)
    }

    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            sqlite: false,
            quick: false,
            duration: Duration::from_millis(2500),
            max_requests: 500_000,
            users: 1000,
            max_connections: None,
            mock_keep_alive: true,
            mysql_url: std::env::var("WXLOGIN_BENCH_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
            only: Vec::new(),
            conns: Vec::new(),
            out: None,
            peer: None,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--sqlite" => parsed.sqlite = true,
                "--quick" => parsed.quick = true,
                "--mock-close" => parsed.mock_keep_alive = false,
                "--duration" => {
                    let text = value("--duration")?;
                    let secs: f64 = text
                        .parse()
                        .ok()
                        .filter(|s: &f64| (0.1..=60.0).contains(s))
                        .ok_or(format!("--duration {text}: use seconds from 0.1 to 60"))?;
                    parsed.duration = Duration::from_secs_f64(secs);
                }
                "--max-requests" => {
                    parsed.max_requests = number(&value("--max-requests")?, "--max-requests")?;
                }
                "--users" => parsed.users = number(&value("--users")?, "--users")?,
                "--max-connections" => {
                    parsed.max_connections =
                        Some(number(&value("--max-connections")?, "--max-connections")?)
                }
                "--mysql-url" => parsed.mysql_url = value("--mysql-url")?,
                "--peer" => {
                    let command = value("--peer")?;
                    // An empty BENCH_PEER from the Makefile means no peer.
                    parsed.peer = Some(command).filter(|c| !c.trim().is_empty());
                }
                "--only" => {
                    for name in value("--only")?.split(',') {
                        parsed.only.extend_from_slice(match name.trim() {
                            "mock" => &[Kind::MockAlone][..],
                            "store" => &[Kind::StoreInsert, Kind::StoreUpdate],
                            "raw" => &[Kind::DbRaw],
                            "first" => &[Kind::First],
                            "returning" => &[Kind::Returning],
                            "me" => &[Kind::Me],
                            "mix" => &[Kind::Mix],
                            "slow" => &[Kind::FirstSlowWechat],
                            "verify" => &[Kind::Verify],
                            "healthz" => &[Kind::Healthz],
                            other => return Err(format!("--only: unknown row {other:?}")),
                        });
                    }
                }
                "--conns" => {
                    for n in value("--conns")?.split(',') {
                        let n: usize = number(n.trim(), "--conns")?;
                        if n > 4096 {
                            return Err(format!("--conns {n}: at most 4096"));
                        }
                        parsed.conns.push(n);
                    }
                }
                "--out" => parsed.out = Some(PathBuf::from(value("--out")?)),
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if parsed.peer.is_some() && parsed.sqlite {
            return Err("--peer needs MariaDB: a peer speaks mysql:// (drop --sqlite)".into());
        }
        Ok(parsed)
    }
}

/// A positive whole number.
fn number<T: std::str::FromStr + PartialOrd + Default>(
    text: &str,
    name: &str,
) -> Result<T, String> {
    text.parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or(format!("{name} {text}: use a whole number above 0"))
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) if why.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprint!("wxlogin-bench: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = signals::install() {
        eprintln!("wxlogin-bench: {why}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) if interrupted() => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("wxlogin-bench: {why}");
            ExitCode::FAILURE
        }
    }
}

/// How long a child may take to answer `/healthz` (a MariaDB schema set-up included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A child serving HTTP on `addr`.
struct Server {
    process: ChildProc,
    addr: SocketAddr,
}

impl Server {
    /// Starts `command` (its output in `log`) and waits up to `limit` until `/healthz`
    /// answers 200.
    fn start(
        name: &str,
        command: Command,
        addr: SocketAddr,
        log: &Path,
        limit: Duration,
    ) -> Result<Server, String> {
        let mut process = ChildProc::spawn(name, command, log)?;
        let mut request = Vec::new();
        write_get(&mut request, "/healthz", None);
        process.wait_ready(limit, || {
            matches!(HttpClient::new(addr).send(&request), Ok(200))
        })?;
        Ok(Server { process, addr })
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The two children, and what the load generator needs to reach them.
struct Servers {
    bin_dir: PathBuf,
    log_dir: PathBuf,
    mock_keep_alive: bool,
    /// wxlogin, then the peer.
    server: Server,
    mock: Server,
    /// The latency mock-wechat was started with.
    mock_latency: Duration,
}

impl Servers {
    /// Restarts mock-wechat on the same address with other settings; wxlogin keeps pointing at
    /// it (mock-wechat closes every connection, so wxlogin holds none to the old process).
    fn restart_mock(&mut self, latency: Duration, threads: Option<usize>) -> Result<(), String> {
        // The old one must be gone before the new one binds its port.
        self.mock.process.stop();
        self.mock = start_mock(
            &self.bin_dir,
            &self.log_dir,
            self.mock.addr,
            latency,
            threads,
            self.mock_keep_alive,
        )?;
        self.mock_latency = latency;
        Ok(())
    }

    fn watched(&self, db: Option<u32>) -> Watched {
        Watched {
            server: self.server.pid(),
            mock: self.mock.pid(),
            db,
        }
    }
}

/// `RUST_LOG` for both children: `warn`, because per-request access logging at `info` would be
/// part of what we measure. `WXLOGIN_BENCH_RUST_LOG` overrides it to investigate a run.
fn child_log_level() -> String {
    std::env::var("WXLOGIN_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into())
}

fn start_mock(
    bin_dir: &Path,
    log_dir: &Path,
    addr: SocketAddr,
    latency: Duration,
    threads: Option<usize>,
    keep_alive: bool,
) -> Result<Server, String> {
    let mut command = Command::new(bin_dir.join("mock-wechat"));
    command
        .env("MOCK_WECHAT_BIND", addr.to_string())
        .env("MOCK_WECHAT_LATENCY_MS", latency.as_millis().to_string())
        .env("MOCK_WECHAT_KEEP_ALIVE", u8::from(keep_alive).to_string())
        .env("RUST_LOG", child_log_level());
    if let Some(threads) = threads {
        command.env("MOCK_WECHAT_THREADS", threads.to_string());
    }
    let log = log_dir.join(format!("mock-wechat-{}ms.log", latency.as_millis()));
    Server::start("mock-wechat", command, addr, &log, START_TIMEOUT)
}

/// Starts a login server (wxlogin or the peer) with the environment both are configured by: a
/// free loopback address, mock-wechat as WeChat, a fresh `JWT_SECRET`, and `database_url`.
fn start_server(
    name: &str,
    mut command: Command,
    log_dir: &Path,
    mock: SocketAddr,
    database_url: &str,
    limit: Duration,
) -> Result<Server, String> {
    let addr = free_addr()?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
    let jwt_secret: String = key.iter().map(|b| format!("{b:02x}")).collect();
    command
        .env("WXLOGIN_BIND", addr.to_string())
        .env("WECHAT_API_BASE", format!("http://{mock}"))
        .env("WECHAT_APPID", scenarios::APPID)
        .env("WECHAT_SECRET", scenarios::APP_SECRET)
        .env("JWT_SECRET", jwt_secret)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", child_log_level())
        .envs(malloc_environment());
    let log = log_dir.join(format!("{name}.log"));
    Server::start(name, command, addr, &log, limit)
}

/// The service unit wxlogin is deployed with: its malloc settings are part of how it runs.
const SERVICE_UNIT: &str = include_str!("../../../../deploy/wxlogin.service");

/// The unit's `Environment=` settings for glibc's malloc (`MALLOC_*`, `GLIBC_TUNABLES`), which
/// both servers get, as they get the rest of their environment; an operator's own values of
/// these variables win.
fn malloc_environment() -> Vec<(&'static str, &'static str)> {
    SERVICE_UNIT
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .filter_map(|setting| setting.split_once('='))
        .filter(|(name, _)| name.starts_with("MALLOC_") || *name == "GLIBC_TUNABLES")
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect()
}

/// wxlogin's command, with `--max-connections` when given.
fn wxlogin_command(bin_dir: &Path, max_connections: Option<usize>) -> Command {
    let mut command = Command::new(bin_dir.join("wxlogin"));
    command.envs(wxlogin_tools::WXLOGIN_UNDER_LOAD);
    if let Some(n) = max_connections {
        command.env("WXLOGIN_MAX_CONNECTIONS", n.to_string());
    }
    command
}

/// The peer's command: `sh -c 'exec CMD'`, so that a command line with arguments works and the
/// shell is replaced by the server (same pid, so its CPU and RSS are the server's; run.sh
/// scripts that `exec` their binary keep it too).
fn peer_command(command: &str) -> Command {
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(format!("exec {command}"));
    shell
}

/// Open files the run needs at most: the load generator's 1,024 connections of the slow-WeChat
/// row, and as many again in each server, beside their upstream and database connections.
const WANTED_OPEN_FILES: u64 = 16_384;

/// Raises this process's soft `RLIMIT_NOFILE` (which the children inherit) towards
/// [`WANTED_OPEN_FILES`], within the hard limit, through util-linux's `prlimit`: the common
/// default of 1,024 would fail the 1,024-connection row, and calling `setrlimit` ourselves
/// would take `unsafe` or another crate. Returns a warning when the limit stays too low.
fn raise_open_files() -> Option<String> {
    let (soft, hard) = open_files_limit()?;
    if soft >= WANTED_OPEN_FILES {
        return None;
    }
    let wanted = hard.min(WANTED_OPEN_FILES);
    let _ = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={wanted}:"),
        ])
        .stderr(std::process::Stdio::null())
        .status();
    let (soft, _) = open_files_limit()?;
    (soft < WANTED_OPEN_FILES).then(|| {
        format!(
            "open files are limited to {soft} (wanted {WANTED_OPEN_FILES}): the 1,024-connection \
             row may fail; raise it with `ulimit -n {WANTED_OPEN_FILES}` before `make bench`"
        )
    })
}

/// The soft and hard open-file limits of this process (`unlimited` counts as `u64::MAX`).
fn open_files_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(u64::MAX));
    Some((values.next()?, values.next()?))
}

/// The load averages of `/proc/loadavg` (1, 5, 15 minutes), as printed there.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".into())
}

fn run(args: &Args) -> Result<(), String> {
    let started = SystemTime::now();
    let load_at_start = load_average();
    let mut warnings: Vec<String> = raise_open_files().into_iter().collect();
    let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
    let bin_dir = exe.parent().ok_or("no binary folder")?.to_path_buf();
    for name in ["wxlogin", "mock-wechat"] {
        if !bin_dir.join(name).is_file() {
            return Err(format!(
                "{} is missing: build with `cargo build --release --workspace` (or run `make bench`)",
                bin_dir.join(name).display()
            ));
        }
    }
    // target/release/ → target/bench/, the children's logs in target/bench/logs/ (the previous
    // run's go: the children append to them).
    let out_dir = bin_dir.parent().unwrap_or(&bin_dir).join("bench");
    let log_dir = out_dir.join("logs");
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let out_path = args
        .out
        .clone()
        .unwrap_or_else(|| out_dir.join("last-run.md"));

    let database = if args.sqlite {
        Database::create_sqlite("wxlogin-bench")?
    } else {
        Database::create_mysql(&args.mysql_url, "wxlogin_bench")
            .map_err(|e| format!("{e} (start MariaDB, pass --mysql-url URL, or use --sqlite)"))?
    };
    let database_url = database.url();
    eprintln!("database: {}", database.describe());
    let db_at_start = counters::counters(&database);

    let mock = start_mock(
        &bin_dir,
        &log_dir,
        free_addr()?,
        Duration::ZERO,
        None,
        args.mock_keep_alive,
    )?;
    let server = start_server(
        "wxlogin",
        wxlogin_command(&bin_dir, args.max_connections),
        &log_dir,
        mock.addr,
        &database_url,
        START_TIMEOUT,
    )?;
    let mut servers = Servers {
        bin_dir,
        log_dir,
        mock_keep_alive: args.mock_keep_alive,
        server,
        mock,
        mock_latency: Duration::ZERO,
    };
    eprintln!(
        "wxlogin on {} (pid {}), mock-wechat on {} (pid {}); logs in {}",
        servers.server.addr,
        servers.server.pid(),
        servers.mock.addr,
        servers.mock.pid(),
        servers.log_dir.display()
    );

    // The server sizes its pool as min(connections + 1, 32); the store ceiling uses the same.
    let pool = (args
        .max_connections
        .unwrap_or(wxlogin::config::DEFAULT_MAX_CONNECTIONS)
        + 1)
    .min(StoreOptions::default().max_connections);
    let store = wxlogin::store::open(
        &DatabaseUrl::parse(&database_url)?,
        StoreOptions {
            max_connections: pool,
            ..StoreOptions::default()
        },
    )
    .map_err(|e| format!("opening the store for the ceiling: {e}"))?;
    // MariaDB without the store layer's per-checkout costs, for comparison.
    let raw_pool = if database.is_mysql() {
        Some(scenarios::raw_mysql_pool(&database_url, pool)?)
    } else {
        None
    };
    let db_pid = if database.is_mysql() && is_local(&args.mysql_url) {
        procstat::find_process(&["mariadbd", "mysqld"])
    } else {
        None
    };

    eprintln!("logging {} returning users in…", args.users);
    let tokens = scenarios::log_in_returning_users(servers.server.addr, args.users, SETUP_CONNS)?;
    // The existing openids the store-update ceiling cycles through.
    let setup = load::run(
        &Limits {
            conns: SETUP_CONNS,
            duration: Duration::from_secs(60),
            max_requests: args.users as u64,
        },
        signals::flag(),
        |_| StoreWorker::new(&*store, 0, Some(args.users as u64)),
    );
    if setup.not_ok() > 0 {
        return Err(format!(
            "storing the existing users failed: {:?}",
            setup.first_failure
        ));
    }

    let concurrencies: &[usize] = if !args.conns.is_empty() {
        &args.conns
    } else if args.quick {
        &QUICK_CONCURRENCY
    } else {
        &CONCURRENCY
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut row_no = 0;
    let measure = |row_no: usize,
                   kind: Kind,
                   conns: usize,
                   servers: &Servers,
                   tokens: &[String],
                   database: &Database|
     -> Row {
        let limits = Limits {
            conns,
            duration: args.duration,
            max_requests: args.max_requests,
        };
        let counters_before = counters::counters(database);
        let probe = Probe::start(servers.watched(db_pid));
        let http_target = if kind == Kind::MockAlone {
            servers.mock.addr
        } else {
            servers.server.addr
        };
        let outcome = match kind {
            Kind::StoreInsert => load::run(&limits, signals::flag(), |_| {
                StoreWorker::new(&*store, row_no, None)
            }),
            Kind::StoreUpdate => load::run(&limits, signals::flag(), |_| {
                StoreWorker::new(&*store, row_no, Some(args.users as u64))
            }),
            Kind::DbRaw => {
                let pool = raw_pool.as_ref().expect("only run on MySQL");
                load::run(&limits, signals::flag(), |_| {
                    RawUpsertWorker::new(pool, row_no)
                })
            }
            _ => load::run_http(http_target, &limits, signals::flag(), |seq, out| {
                scenarios::login_path_request(kind, row_no, seq, tokens, out)
            }),
        };
        let usage = probe.finish();
        let db_commands = match (counters_before, counters::counters(database)) {
            (Some(before), Some(after)) => Some(after.per_request(&before, outcome.answered())),
            _ => None,
        };
        let row = Row {
            kind,
            conns,
            outcome,
            usage,
            db_commands,
        };
        eprintln!(
            "  {:<41} {:>4} conns  {:>8}/s  p99 {:>7.2} ms  not 2xx: {}",
            kind.label(),
            conns,
            thousands(row.outcome.rate()),
            row.outcome.percentile_ms(99.0),
            row.outcome.not_ok()
        );
        row
    };

    let kinds = [
        Kind::MockAlone,
        Kind::StoreInsert,
        Kind::StoreUpdate,
        Kind::DbRaw,
        Kind::First,
        Kind::Returning,
        Kind::Me,
        Kind::Mix,
    ];
    'all: for &conns in concurrencies {
        for kind in kinds
            .into_iter()
            .filter(|&k| args.wants(k) && (k != Kind::DbRaw || raw_pool.is_some()))
        {
            if interrupted() {
                break 'all;
            }
            row_no += 1;
            rows.push(measure(row_no, kind, conns, &servers, &tokens, &database));
        }
    }
    // The comparison rows the loop above did not run (say with --quick), slow WeChat last.
    for (kind, conns) in comparison_rows(args) {
        if interrupted() {
            break;
        }
        if rows.iter().any(|r| r.kind == kind && r.conns == conns) {
            continue;
        }
        if kind == Kind::FirstSlowWechat {
            slow_mock(&mut servers)?;
        }
        if kind == Kind::Healthz && args.wants(Kind::Verify) {
            // The pair whose ratio is a goal: alternated, each kept at its median.
            let mut pair = (Vec::new(), Vec::new());
            for _ in 0..PAIRED_ROUNDS {
                for (kind, runs) in [(Kind::Healthz, &mut pair.0), (Kind::Verify, &mut pair.1)] {
                    row_no += 1;
                    runs.push(measure(row_no, kind, conns, &servers, &tokens, &database));
                }
            }
            rows.extend(
                [median_row(pair.0), median_row(pair.1)]
                    .into_iter()
                    .flatten(),
            );
            continue;
        }
        row_no += 1;
        rows.push(measure(row_no, kind, conns, &servers, &tokens, &database));
    }

    let mut peer_run = None;
    if let Some(command) = args.peer.as_deref().filter(|_| !interrupted()) {
        // One server at a time: wxlogin goes before the peer starts, so the peer has the
        // machine to itself as wxlogin had.
        servers.server.process.stop();
        // A fresh mock-wechat, as wxlogin had: it also forgets the codes already spent, so the
        // returning users' set-up codes work again.
        servers.restart_mock(Duration::ZERO, None)?;
        let peer_database = Database::create_mysql(&args.mysql_url, "wxlogin_bench_peer")?;
        let peer = start_server(
            "peer",
            peer_command(command),
            &servers.log_dir,
            servers.mock.addr,
            &peer_database.url(),
            PEER_START_TIMEOUT,
        )?;
        eprintln!(
            "peer `{command}` on {} (pid {}), its own database; logging {} returning users in…",
            peer.addr,
            peer.pid(),
            args.users
        );
        servers.server = peer;
        let peer_tokens =
            scenarios::log_in_returning_users(servers.server.addr, args.users, SETUP_CONNS)?;
        let mut peer_rows = Vec::new();
        for (kind, conns) in comparison_rows(args) {
            if interrupted() {
                break;
            }
            if kind == Kind::Verify && !answers_verify(servers.server.addr, &peer_tokens[0]) {
                eprintln!("  the peer has no /auth/verify: that row is wxlogin's only");
                continue;
            }
            if kind == Kind::FirstSlowWechat {
                slow_mock(&mut servers)?;
            }
            row_no += 1;
            peer_rows.push(measure(
                row_no,
                kind,
                conns,
                &servers,
                &peer_tokens,
                &peer_database,
            ));
        }
        servers.server.process.stop();
        peer_run = Some(PeerRun {
            command: command.to_owned(),
            rows: peer_rows,
        });
    }

    if let (Some(start), Some(end)) = (db_at_start, counters::counters(&database)) {
        if end.uptime_s < start.uptime_s {
            warnings.push(format!(
                "the database server restarted during this run (up {} s at the end): rows with \
                 failures measured the outage, and the figures are not comparable",
                end.uptime_s
            ));
        }
    }
    for warning in &warnings {
        eprintln!("WARNING: {warning}");
    }
    let setup = Setup {
        warnings,
        started,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpu_model(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("?".into(), |s| s.trim().to_owned()),
        memory: memory(),
        database: database.describe(),
        mock_keep_alive: args.mock_keep_alive,
        malloc_environment: malloc_environment()
            .iter()
            .map(|(name, value)| format!("`{name}={value}`"))
            .collect::<Vec<_>>()
            .join(" "),
        server_connections: args.max_connections.map_or(
            format!("{} (default)", wxlogin::config::DEFAULT_MAX_CONNECTIONS),
            |n| n.to_string(),
        ),
        pool,
        duration: args.duration,
        max_requests: args.max_requests,
        users: args.users,
        command: command_line(args),
        interrupted: interrupted(),
        load_average: format!(
            "{load_at_start} at the start, {} at the end",
            load_average()
        ),
    };
    let markdown = report::markdown(&setup, &rows, peer_run.as_ref());
    println!("\n{markdown}");
    if let Some(dir) = out_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out_path, &markdown).map_err(|e| format!("{}: {e}", out_path.display()))?;
    eprintln!("written to {}", out_path.display());

    // Order matters: the pool and the children go before the database is dropped.
    drop(raw_pool);
    drop(store);
    drop(servers);
    drop(database);
    Ok(())
}

/// Whether the database URL names this machine, so its server process can be watched.
fn is_local(url: &str) -> bool {
    [
        "@127.0.0.1",
        "@localhost",
        "@[::1]",
        "//127.0.0.1",
        "//localhost",
    ]
    .iter()
    .any(|host| url.contains(host))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB RAM", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "RAM unknown".into())
}

/// How this run was started, for the "reproduce" line.
fn command_line(parsed: &Args) -> String {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let peer = match args.iter().position(|a| a == "--peer") {
        Some(at) if at + 1 < args.len() => {
            args.drain(at..at + 2);
            parsed
                .peer
                .as_deref()
                .map_or(String::new(), |cmd| format!("BENCH_PEER='{cmd}' "))
        }
        _ => String::new(),
    };
    if args.is_empty() {
        format!("{peer}make bench")
    } else {
        format!("{peer}make bench BENCH_ARGS='{}'", args.join(" "))
    }
}

/// The comparison rows this run makes (all of [`PLAN`] unless `--only` says otherwise), slow
/// WeChat last.
fn comparison_rows(args: &Args) -> impl Iterator<Item = (Kind, usize)> + '_ {
    PLAN.into_iter().filter(|&(kind, _)| args.wants(kind))
}

/// How many times `/healthz` and `/auth/verify` are measured, alternately, for their ratio (a
/// goal of issue 14): single 2.5 s rows a few seconds apart moved it by a third either way on
/// this shared machine, far more than the servers' own difference.
const PAIRED_ROUNDS: usize = 3;

/// The row with the median throughput of `runs` (the middle one of an odd count).
fn median_row(mut runs: Vec<Row>) -> Option<Row> {
    runs.sort_by(|a, b| a.outcome.rate().total_cmp(&b.outcome.rate()));
    let middle = runs.len() / 2;
    runs.into_iter().nth(middle)
}

/// Restarts mock-wechat as slow WeChat, unless it already is.
fn slow_mock(servers: &mut Servers) -> Result<(), String> {
    if servers.mock_latency == SLOW_WECHAT_LATENCY {
        return Ok(());
    }
    eprintln!(
        "restarting mock-wechat with {} ms latency and {SLOW_WECHAT_MOCK_THREADS} threads…",
        SLOW_WECHAT_LATENCY.as_millis()
    );
    servers.restart_mock(SLOW_WECHAT_LATENCY, Some(SLOW_WECHAT_MOCK_THREADS))
}

/// Whether the server answers `/auth/verify` with a 2xx for a valid token (a peer may not
/// have forward auth at all).
fn answers_verify(addr: SocketAddr, token: &str) -> bool {
    let mut request = Vec::new();
    write_get(&mut request, "/auth/verify", Some(token));
    HttpClient::new(addr)
        .send(&request)
        .is_ok_and(|status| (200..300).contains(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn both_servers_get_the_service_units_malloc_settings() {
        let names: Vec<_> = malloc_environment().into_iter().map(|(n, _)| n).collect();
        for name in ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES"] {
            assert!(
                std::env::var_os(name).is_some() || names.contains(&name),
                "{name} from deploy/wxlogin.service: {names:?}"
            );
        }
    }

    #[test]
    fn parses_the_flags() {
        let args = parse(&[
            "--sqlite",
            "--quick",
            "--duration",
            "1.5",
            "--max-connections",
            "64",
        ])
        .unwrap();
        assert!(args.sqlite && args.quick && args.mock_keep_alive);
        assert!(!parse(&["--mock-close"]).unwrap().mock_keep_alive);
        assert_eq!(args.duration, Duration::from_millis(1500));
        assert_eq!(args.max_connections, Some(64));
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--users", "-1"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        let only = parse(&["--only", "store,me"]).unwrap();
        assert!(only.wants(Kind::StoreUpdate) && only.wants(Kind::Me) && !only.wants(Kind::First));
        assert!(parse(&["--only", "nope"]).is_err());
        assert_eq!(parse(&["--conns", "64,256"]).unwrap().conns, vec![64, 256]);
        assert!(parse(&["--conns", "0"]).is_err());
        assert_eq!(parse(&["--help"]).unwrap_err(), "");
        let peer = parse(&["--peer", "bash run.sh", "--only", "verify"]).unwrap();
        assert_eq!(peer.peer.as_deref(), Some("bash run.sh"));
        assert!(peer.wants(Kind::Verify) && !peer.wants(Kind::Healthz));
        assert!(parse(&["--peer", " "]).unwrap().peer.is_none());
        assert!(parse(&["--peer", "x", "--sqlite"]).is_err());
    }
}
