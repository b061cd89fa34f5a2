//! The processes and the database a run needs, each behind a guard that cleans up on drop: the
//! children are killed (also on panic, and by the kernel if the bench itself is killed), and the
//! benchmark's database is dropped, so a run leaves nothing behind.
//!
//! Ctrl-C (SIGINT) or SIGTERM only raises [`STOP`]: the row in progress ends within
//! milliseconds, and the guards then clean up on the normal path. A second signal exits at once.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::load::{write_get, HttpClient};

/// Raised by SIGINT or SIGTERM; the load generator and the main loop stop when they see it.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // The second signal: the user does not want to wait for the clean-up. Children die
        // with us (PR_SET_PDEATHSIG). Only async-signal-safe calls are allowed here.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Routes SIGINT and SIGTERM to [`STOP`].
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// A free loopback port: bind port 0, read the port, release it. Another process could take it
/// before the child binds it; the child then fails to start and says so.
pub fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// How long a child may take to answer `/healthz` (a MariaDB schema set-up included).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between `/healthz` polls.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// A child process serving HTTP on `addr`; killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Process {
    /// Starts `exe` with `env` (variables with the given prefixes are removed first, so the
    /// caller's shell cannot change the set-up) and waits until `/healthz` answers 200.
    pub fn start(
        name: &str,
        exe: &Path,
        addr: SocketAddr,
        clear_prefixes: &[&str],
        env: &[(&str, String)],
        log: PathBuf,
    ) -> Result<Process, String> {
        let log_file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(exe);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if clear_prefixes.iter().any(|p| key_text.starts_with(p)) {
                command.env_remove(&key);
            }
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            // Its own process group: a Ctrl-C in the terminal reaches only the bench, which
            // then stops the children in order (the database is dropped while they are idle).
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // Killed by the kernel if the bench dies without cleaning up (SIGKILL, abort).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut process = Process {
            name: name.to_owned(),
            child,
            addr,
            log,
        };
        process.wait_healthy()?;
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET /healthz` until it answers 200, the child exits, or [`START_TIMEOUT`].
    fn wait_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut request = Vec::new();
        write_get(&mut request, "/healthz", None);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before answering /healthz; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            if let Ok(200) = HttpClient::new(self.addr).send(&request) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT || STOP.load(Ordering::Relaxed) {
                return Err(format!(
                    "{} did not answer /healthz on {} within {START_TIMEOUT:?}; its log ({}):\n{}",
                    self.name,
                    self.addr,
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
}

impl Process {
    /// Kills the child and waits until it is gone (and its port released); idempotent.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last lines of a log file, to show why a child failed.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The database of one run: a fresh MariaDB database, or an SQLite file in a temporary folder.
pub enum Database {
    Mysql {
        /// The server without a database, e.g. `mysql://root@127.0.0.1:3306`.
        admin_url: String,
        name: String,
        version: String,
    },
    Sqlite {
        dir: tempfile::TempDir,
    },
}

impl Database {
    /// Creates `wxlogin_bench_<random>` on the server at `admin_url`.
    pub fn create_mysql(admin_url: &str) -> Result<Database, String> {
        let admin_url = admin_url.trim_end_matches('/').to_owned();
        let mut conn = admin_conn(&admin_url)?;
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("wxlogin_bench_{suffix}");
        conn.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        // On MariaDB the handshake's version is a fixed 5.5.5 prefix; ask the server instead.
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .map_err(|e| format!("SELECT VERSION(): {e}"))?;
        Ok(Database::Mysql {
            admin_url,
            name,
            version: version.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// An SQLite file in a temporary folder removed at the end.
    pub fn create_sqlite() -> Result<Database, String> {
        let dir = tempfile::Builder::new()
            .prefix("wxlogin-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        Ok(Database::Sqlite { dir })
    }

    /// The `DATABASE_URL` the server and the store ceiling use.
    pub fn url(&self) -> String {
        match self {
            Database::Mysql {
                admin_url, name, ..
            } => match admin_url.split_once('?') {
                Some((server, query)) => format!("{server}/{name}?{query}"),
                None => format!("{admin_url}/{name}"),
            },
            Database::Sqlite { dir } => {
                format!("sqlite://{}", dir.path().join("bench.db").display())
            }
        }
    }

    /// What the table's header says about the database.
    pub fn describe(&self) -> String {
        match self {
            Database::Mysql { version, .. } => format!("MariaDB/MySQL {version}"),
            Database::Sqlite { .. } => "SQLite (bundled with rusqlite, WAL mode)".into(),
        }
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self, Database::Mysql { .. })
    }

    /// MariaDB's global command counters now (`None` for SQLite or when unreadable). Their
    /// change over a row, per request, shows how many round trips one request costs.
    pub fn counters(&self) -> Option<DbCounters> {
        let Database::Mysql { admin_url, .. } = self else {
            return None;
        };
        let rows: Vec<(String, String)> = admin_conn(admin_url)
            .ok()?
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN \
                 ('Com_stmt_prepare', 'Com_stmt_execute', 'Com_set_option', 'Com_admin_commands', \
                 'Uptime')",
            )
            .ok()?;
        let get = |name: &str| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        Some(DbCounters {
            prepare: get("Com_stmt_prepare"),
            execute: get("Com_stmt_execute"),
            set_option: get("Com_set_option"),
            admin: get("Com_admin_commands"),
            uptime_s: get("Uptime"),
        })
    }
}

/// MariaDB's counters of the commands a request can cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbCounters {
    /// `COM_STMT_PREPARE`: once per connection if statements were reused.
    pub prepare: u64,
    /// `COM_STMT_EXECUTE`: the real work.
    pub execute: u64,
    /// `SET NAMES …` and other `SET` statements (the pool re-runs its init after each reset).
    pub set_option: u64,
    /// `COM_PING` and `COM_RESET_CONNECTION` (the pool's per-checkout health check and reset).
    pub admin: u64,
    /// Seconds since the server started: if it went down, a run's figures are not valid.
    pub uptime_s: u64,
}

impl DbCounters {
    /// Per-request change from `before` to `self`: prepare, execute, SET, ping + reset.
    pub fn per_request(&self, before: &DbCounters, requests: u64) -> [f64; 4] {
        let n = requests.max(1) as f64;
        [
            self.prepare.saturating_sub(before.prepare) as f64 / n,
            self.execute.saturating_sub(before.execute) as f64 / n,
            self.set_option.saturating_sub(before.set_option) as f64 / n,
            self.admin.saturating_sub(before.admin) as f64 / n,
        ]
    }
}

fn admin_conn(admin_url: &str) -> Result<mysql::Conn, String> {
    let opts = mysql::Opts::from_url(admin_url)
        .map_err(|e| format!("{admin_url} is not a mysql:// URL: {e}"))?;
    let opts = mysql::OptsBuilder::from_opts(opts)
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(Duration::from_secs(30)));
    mysql::Conn::new(opts).map_err(|e| {
        format!(
            "cannot connect to {admin_url}: {e} (start MariaDB, pass --mysql-url URL, or use --sqlite)"
        )
    })
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Mysql {
            admin_url, name, ..
        } = self
        {
            let dropped = admin_conn(admin_url).and_then(|mut conn| {
                conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = dropped {
                eprintln!("could not drop the benchmark database {name}: {e}");
            }
        }
    }
}
