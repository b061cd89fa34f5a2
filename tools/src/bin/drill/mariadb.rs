//! The local MariaDB: making sure it runs, the outage phase (stopped, then restarted by a guard
//! that restarts it whatever happens: other work on this machine needs it), the drill's own
//! database, and the final check that every login answered 200 has its row.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mysql::prelude::Queryable;
use wxlogin_tools::database::{connect, Database};
use wxlogin_tools::{bounded, children};

/// The server, as wxlogin's MariaDB tests reach it, over TCP even on localhost, like a database
/// on another machine.
const SERVER: &str = "mysql://root@127.0.0.1:3306?prefer_socket=false";
/// The daemon start-stop-daemon starts and stops (it runs as `mysql` per /etc/mysql/my.cnf).
const MARIADBD: &str = "/usr/sbin/mariadbd";
/// How long MariaDB may take to answer after a start, crash recovery included.
const START_LIMIT: Duration = Duration::from_secs(90);
/// start-stop-daemon's schedule: SIGTERM, this many seconds, SIGKILL, this many seconds.
const STOP_RETRY_SECS: u64 = 30;

/// Whether MariaDB answers `SELECT 1`.
pub fn answers() -> bool {
    connect(SERVER)
        .and_then(|mut conn| conn.query_drop("SELECT 1").map_err(|e| e.to_string()))
        .is_ok()
}

/// `SELECT VERSION()`: the handshake's version is a fixed 5.5.5 prefix on MariaDB.
pub fn version() -> Result<String, String> {
    connect(SERVER)?
        .query_first::<String, _>("SELECT VERSION()")
        .map_err(|e| format!("SELECT VERSION(): {e}"))
        .map(Option::unwrap_or_default)
}

/// Starts MariaDB unless it already answers; returns once it answers.
pub fn ensure_running(log: &Path) -> Result<(), String> {
    if answers() {
        return Ok(());
    }
    if !Path::new(MARIADBD).exists() {
        return Err(format!(
            "MariaDB does not answer at {SERVER} and {MARIADBD} is missing: \
             apt-get install -y mariadb-server"
        ));
    }
    println!("  MariaDB does not answer: starting it");
    start(log).map(|_| ())
}

/// Starts the daemon (a no-op if it runs) and waits, through Ctrl-C, until it answers. Returns
/// how long it took to answer.
fn start(log: &Path) -> Result<Duration, String> {
    let mut command = Command::new("start-stop-daemon");
    command.args(["--start", "--oknodo", "--background", "--exec", MARIADBD]);
    children::run(command, Duration::from_secs(30), log)?;
    bounded::wait_through_interrupt("MariaDB answering SELECT 1", START_LIMIT, || Ok(answers()))
}

/// MariaDB stopped on purpose. Dropping it restarts MariaDB (also on error and panic); [`end`]
/// does it on the normal path and says how long MariaDB took to answer again.
///
/// [`end`]: Outage::end
pub struct Outage<'a> {
    log: &'a Path,
    over: bool,
}

impl<'a> Outage<'a> {
    /// Stops MariaDB and returns once the daemon is gone. The guard exists before the stop is
    /// attempted, so that a stop that fails half-way is undone too.
    pub fn begin(log: &'a Path) -> Result<Outage<'a>, String> {
        let outage = Outage { log, over: false };
        let mut command = Command::new("start-stop-daemon");
        command.args(["--stop", "--oknodo", "--exec", MARIADBD, "--retry"]);
        command.arg(STOP_RETRY_SECS.to_string());
        children::run(
            command,
            Duration::from_secs(2 * STOP_RETRY_SECS + 10),
            outage.log,
        )?;
        Ok(outage)
    }

    /// Restarts MariaDB and returns how long it took to answer `SELECT 1`.
    pub fn end(mut self) -> Result<Duration, String> {
        self.over = true;
        start(self.log)
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if !self.over {
            eprintln!("drill: restarting MariaDB before going on with the clean-up");
            if let Err(e) = start(self.log) {
                eprintln!("drill: MariaDB did not come back: {e}");
            }
        }
    }
}

/// The drill's database `wxlogin_drill_<random>` on the local server, dropped with the guard.
pub fn create_database() -> Result<Database, String> {
    Database::create_mysql(SERVER, "wxlogin_drill")
}

/// The openids among `openids` that have no row in `wxuser` of `db`: each one is a login
/// answered 200 whose user was not stored.
pub fn missing_rows<'o>(db: &Database, openids: &'o [String]) -> Result<Vec<&'o str>, String> {
    let mut conn = connect(&db.url())?;
    let statement = conn
        .prep("SELECT COUNT(*) FROM wxuser WHERE user_id = ?")
        .map_err(|e| format!("prepare the row check: {e}"))?;
    let mut missing = Vec::new();
    for openid in openids {
        let count: Option<u64> = conn
            .exec_first(&statement, (openid,))
            .map_err(|e| format!("row check for {openid}: {e}"))?;
        if count.unwrap_or(0) == 0 {
            missing.push(openid.as_str());
        }
    }
    Ok(missing)
}

/// All rows of `wxuser`: more rows than 200s means logins that were stored but whose answer
/// was an error (the client retries; harmless).
pub fn rows(db: &Database) -> Result<u64, String> {
    connect(&db.url())?
        .query_first::<u64, _>("SELECT COUNT(*) FROM wxuser")
        .map_err(|e| format!("SELECT COUNT(*) FROM wxuser: {e}"))
        .map(Option::unwrap_or_default)
}
