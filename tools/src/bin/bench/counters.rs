//! MariaDB's global command counters around a row: their change per request shows how many
//! round trips one request costs, and the server's uptime shows whether it restarted mid-run.

use mysql::prelude::Queryable;
use wxlogin_tools::database::{connect, Database};

/// The counters of `database`'s server now (`None` for SQLite or when unreadable).
pub fn counters(database: &Database) -> Option<DbCounters> {
    let rows: Vec<(String, String)> = connect(database.admin_url()?)
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
