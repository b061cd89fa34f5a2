//! The report: wxlogin side by side with the peer ([`crate::compare`]) first, then every row's
//! figures, each login row as a fraction of the lower ceiling measured in the same run, and the
//! earlier issue's targets marked PASS or MISS, rendered once as Markdown (aligned, so it reads
//! in a terminal too) for both stdout and `target/bench/last-run.md`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use wxlogin_tools::markdown::{ms, thousands, utc_minute, Table};

use crate::compare::{self, PeerRun};
use crate::load::Outcome;
use crate::probe::Usage;
use crate::scenarios::Kind;

/// The order rows appear in, whatever order they ran in.
const LOGIN_PATH_ORDER: [Kind; 7] = [
    Kind::First,
    Kind::Returning,
    Kind::Me,
    Kind::Mix,
    Kind::FirstSlowWechat,
    Kind::Healthz,
    Kind::Verify,
];
const CEILING_ORDER: [Kind; 4] = [
    Kind::MockAlone,
    Kind::StoreInsert,
    Kind::StoreUpdate,
    Kind::DbRaw,
];

/// The latency mock-wechat adds in the slow-WeChat row, for its theoretical ceiling.
pub const SLOW_WECHAT_LATENCY: Duration = Duration::from_millis(100);

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub kind: Kind,
    pub conns: usize,
    pub outcome: Outcome,
    pub usage: Usage,
    /// MariaDB commands per request: prepare, execute, SET, ping + reset (`None` on SQLite).
    pub db_commands: Option<[f64; 4]>,
}

/// Where and how the run happened, for the header.
#[derive(Debug, Clone)]
pub struct Setup {
    pub started: SystemTime,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory: String,
    pub database: String,
    /// Whether mock-wechat kept connections alive (as WeChat does) or closed each one.
    pub mock_keep_alive: bool,
    pub server_connections: String,
    /// The malloc settings both servers ran with (`deploy/wxlogin.service`'s), as `NAME=value`.
    pub malloc_environment: String,
    pub pool: usize,
    pub duration: Duration,
    pub max_requests: u64,
    pub users: usize,
    pub command: String,
    pub interrupted: bool,
    /// `/proc/loadavg` at the start and the end: the machine is shared, and other work on it
    /// takes CPU from every process measured.
    pub load_average: String,
    /// Reasons not to trust this run (say the database restarted under it).
    pub warnings: Vec<String>,
}

/// A target checked against one row.
#[derive(Debug, Clone)]
struct Check {
    name: &'static str,
    pass: bool,
    /// The measured value against the target, for the list of misses.
    detail: String,
}

/// The whole report as Markdown.
pub fn markdown(setup: &Setup, rows: &[Row], peer: Option<&PeerRun>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## wxlogin benchmark, {}{}\n",
        utc_minute(setup.started),
        if setup.interrupted {
            " (interrupted: partial)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {}, Linux {}. Database: {}. wxlogin release build, at most {} \
         connections (each a thread that runs its requests), store pool {}; both servers run with \
         the service unit's malloc settings ({}); mock-wechat {}; wxlogin, mock-wechat, the database and the load \
         generator all share the machine. Each row: {} s or {} requests, whichever ends first; {} returning \
         users. Load average (1, 5, 15 min): {}. Reproduce: `{}`.\n",
        setup.cpus,
        setup.cpu_model,
        setup.memory,
        setup.kernel,
        setup.database,
        setup.server_connections,
        setup.pool,
        if setup.malloc_environment.is_empty() {
            "none: the operator's own"
        } else {
            &setup.malloc_environment
        },
        if setup.mock_keep_alive {
            "keeps connections alive, as WeChat does"
        } else {
            "closes every connection (`--mock-close`)"
        },
        setup.duration.as_secs_f64(),
        thousands(setup.max_requests as f64),
        thousands(setup.users as f64),
        setup.load_average,
        setup.command,
    );

    for warning in &setup.warnings {
        let _ = writeln!(out, "**Warning: {warning}.**\n");
    }
    out.push_str(&compare::markdown(rows, peer));
    out.push_str("### Login path (wxlogin)\n\n");
    let mut table = Table::new(&[
        ("scenario", false),
        ("conns", true),
        ("req/s", true),
        ("p50 ms", true),
        ("p90 ms", true),
        ("p99 ms", true),
        ("max ms", true),
        ("answers", false),
        ("peak RSS MiB", true),
        ("CPU s/1k req", true),
        ("of ceiling", true),
        ("targets", false),
    ]);
    let mut misses = Vec::new();
    let mut passes = 0;
    for row in ordered(rows, &LOGIN_PATH_ORDER) {
        let checks = checks(row, rows);
        for check in &checks {
            if check.pass {
                passes += 1;
            } else {
                misses.push(format!(
                    "{} @ {}: {} ({})",
                    row.kind.label(),
                    row.conns,
                    check.name,
                    check.detail
                ));
            }
        }
        let o = &row.outcome;
        table.row(vec![
            row.kind.label().into(),
            row.conns.to_string(),
            thousands(o.rate()),
            ms(o.percentile_ms(50.0)),
            ms(o.percentile_ms(90.0)),
            ms(o.percentile_ms(99.0)),
            ms(o.max_ms()),
            answers(o, false),
            format!("{:.1}", row.usage.server_peak_rss_kib as f64 / 1024.0),
            per_thousand(row.usage.server_cpu_s, o.answered()),
            lower_ceiling(row, rows).map_or("–".into(), |c| {
                format!("{:.0}% of {}", 100.0 * o.rate() / c, thousands(c))
            }),
            targets(&checks),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(
        "\n\"of ceiling\": throughput as a share of the lower of mock-wechat alone and the store \
         alone at the same concurrency (new users for first logins, existing ones for returning \
         logins); for the slow-WeChat row, the lower of the store and conns / 100 ms.\n\n",
    );

    out.push_str("### Ceilings (same run, same machine)\n\n");
    let mut table = Table::new(&[
        ("ceiling", false),
        ("conns", true),
        ("ops/s", true),
        ("p50 ms", true),
        ("p90 ms", true),
        ("p99 ms", true),
        ("max ms", true),
        ("answers", false),
        ("TCP connects / request", true),
    ]);
    for row in ordered(rows, &CEILING_ORDER) {
        let o = &row.outcome;
        let connects = if row.kind == Kind::MockAlone && o.answered() > 0 {
            format!("{:.2}", o.connects as f64 / o.answered() as f64)
        } else {
            "–".into()
        };
        table.row(vec![
            row.kind.label().into(),
            row.conns.to_string(),
            thousands(o.rate()),
            ms(o.percentile_ms(50.0)),
            ms(o.percentile_ms(90.0)),
            ms(o.percentile_ms(99.0)),
            ms(o.max_ms()),
            answers(o, row.kind != Kind::MockAlone),
            connects,
        ]);
    }
    out.push_str(&table.render());
    if !setup.mock_keep_alive {
        out.push_str(
            "\nmock-wechat answered every request with `Connection: close`, so each \
             jscode2session call (from the load generator and from wxlogin alike) paid a TCP \
             connect.",
        );
    }
    out.push_str(
        "\nThe store \
         rows call `wxlogin::store` directly from the bench process with the server's pool size; \
         the MariaDB-alone row runs the same upsert through the mysql crate with the same pool \
         size but without the pool's per-checkout ping and reset (not a target ceiling: it shows \
         what the store layer's own overhead costs).\n\n",
    );

    out.push_str("### Where the CPU went (CPU seconds per 1,000 requests)\n\n");
    let mut table = Table::new(&[
        ("row", false),
        ("conns", true),
        ("server", true),
        ("mock-wechat", true),
        ("database", true),
        ("load generator", true),
        ("machine busy", true),
        ("client TCP connects", true),
        ("stalled new conns", true),
        (
            "DB commands / request: prepare, execute, SET, ping+reset",
            false,
        ),
    ]);
    let peer_rows = peer.map_or(&[][..], |p| p.rows.as_slice());
    let labelled = ordered(rows, &CEILING_ORDER)
        .chain(ordered(rows, &LOGIN_PATH_ORDER))
        .map(|row| (row.kind.label().to_owned(), row))
        .chain(
            ordered(peer_rows, &LOGIN_PATH_ORDER)
                .map(|row| (format!("peer: {}", row.kind.label()), row)),
        );
    for (label, row) in labelled {
        let n = row.outcome.answered();
        let u = &row.usage;
        table.row(vec![
            label,
            row.conns.to_string(),
            per_thousand(u.server_cpu_s, n),
            per_thousand(u.mock_cpu_s, n),
            u.db_cpu_s
                .map_or("–".into(), |cpu_s| per_thousand(cpu_s, n)),
            per_thousand(u.bench_cpu_s, n),
            format!("{:.0}%", 100.0 * u.machine_busy),
            thousands(row.outcome.connects as f64),
            thousands(row.outcome.stalled as f64),
            row.db_commands
                .map_or("–".into(), |[prepare, execute, set, admin]| {
                    format!("{prepare:.2}, {execute:.2}, {set:.2}, {admin:.2}")
                }),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(
        "\n\"server\": wxlogin, or the peer in the rows marked so. The store-alone and \
         MariaDB-alone rows run inside the load generator's process, so \
         their client cost is counted there. \"machine busy\": share of all CPUs' time not idle. \
         DB commands come from MariaDB's global counters (`Com_stmt_prepare`, \
         `Com_stmt_execute`, `Com_set_option`, `Com_admin_commands`) over the row; like the \
         database's CPU they are server-wide, so other clients of the same server count too. \
         \"stalled new conns\": connections opened before the row whose first request got no \
         answer within 2 s (tiny_http left them queued without a thread) and were replaced.\n\n",
    );

    out.push_str("### Targets\n\n");
    let _ = writeln!(out, "{passes} PASS, {} MISS.", misses.len());
    for miss in &misses {
        let _ = writeln!(out, "- MISS {miss}");
    }
    out
}

/// The rows of these kinds, in this kind order, then by concurrency.
fn ordered<'a>(rows: &'a [Row], order: &'a [Kind]) -> impl Iterator<Item = &'a Row> + 'a {
    order.iter().flat_map(move |&kind| {
        let mut of_kind: Vec<&Row> = rows.iter().filter(|r| r.kind == kind).collect();
        of_kind.sort_by_key(|r| r.conns);
        of_kind
    })
}

fn rate_of(rows: &[Row], kind: Kind, conns: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.kind == kind && r.conns == conns)
        .map(|r| r.outcome.rate())
}

/// A ceiling's rate, when it was measured cleanly: a row with failures (say the database
/// restarted under it) measured the failures, not the ceiling.
fn ceiling_of(rows: &[Row], kind: Kind, conns: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.kind == kind && r.conns == conns)
        .filter(|r| r.outcome.not_ok() == 0 && r.outcome.rate() > 0.0)
        .map(|r| r.outcome.rate())
}

/// The ceiling kinds a login row is compared with.
fn ceiling_kinds(kind: Kind) -> &'static [Kind] {
    match kind {
        Kind::First => &[Kind::MockAlone, Kind::StoreInsert],
        Kind::FirstSlowWechat => &[Kind::StoreInsert],
        Kind::Returning => &[Kind::MockAlone, Kind::StoreUpdate],
        _ => &[],
    }
}

/// The store ceiling that matches a login row: inserts for new users, updates for existing.
fn store_ceiling(row: &Row, rows: &[Row]) -> Option<f64> {
    match row.kind {
        Kind::First | Kind::FirstSlowWechat => ceiling_of(rows, Kind::StoreInsert, row.conns),
        Kind::Returning => ceiling_of(rows, Kind::StoreUpdate, row.conns),
        _ => None,
    }
}

/// The lower of the two ceilings for a login row (none for `/api/me` and the mix).
fn lower_ceiling(row: &Row, rows: &[Row]) -> Option<f64> {
    let store = store_ceiling(row, rows)?;
    let upstream = match row.kind {
        Kind::FirstSlowWechat => row.conns as f64 / SLOW_WECHAT_LATENCY.as_secs_f64(),
        _ => ceiling_of(rows, Kind::MockAlone, row.conns)?,
    };
    Some(store.min(upstream))
}

/// The targets that apply to this row.
fn checks(row: &Row, rows: &[Row]) -> Vec<Check> {
    let o = &row.outcome;
    let rate = o.rate();
    let p99 = o.percentile_ms(99.0);
    let mut checks = Vec::new();
    let plain_login = matches!(row.kind, Kind::First | Kind::Returning);

    for &ceiling in ceiling_kinds(row.kind) {
        let failed = rows
            .iter()
            .find(|r| r.kind == ceiling && r.conns == row.conns)
            .filter(|_| ceiling_of(rows, ceiling, row.conns).is_none());
        if let Some(failed) = failed {
            checks.push(Check {
                name: "valid ceilings",
                pass: false,
                detail: format!(
                    "\"{}\" failed, so this row has nothing to compare with: {}",
                    ceiling.label(),
                    answers(&failed.outcome, true)
                ),
            });
        }
    }

    if plain_login && (row.conns == 16 || row.conns == 64) {
        if let Some(store) = store_ceiling(row, rows) {
            checks.push(Check {
                name: "≥50% of store",
                pass: rate >= 0.5 * store,
                detail: format!(
                    "{}/s is {:.0}% of the store's {}/s",
                    thousands(rate),
                    100.0 * rate / store,
                    thousands(store)
                ),
            });
        }
    }
    if (plain_login && (row.conns == 16 || row.conns == 64)) || row.kind == Kind::FirstSlowWechat {
        checks.push(Check {
            name: "0 non-200",
            pass: o.not_ok() == 0,
            detail: format!("{} not 200: {}", o.not_ok(), answers(o, false)),
        });
    }
    if row.conns == 64 {
        let limit = match row.kind {
            Kind::First | Kind::Returning => Some(10.0),
            Kind::Me => Some(2.0),
            _ => None,
        };
        if let Some(limit) = limit {
            checks.push(Check {
                name: if limit == 10.0 { "p99<10ms" } else { "p99<2ms" },
                pass: p99 < limit,
                detail: format!("p99 {} ms", ms(p99)),
            });
        }
    }
    if row.kind == Kind::FirstSlowWechat {
        checks.push(Check {
            name: "≥1,600/s",
            pass: rate >= 1600.0,
            detail: format!("{}/s", thousands(rate)),
        });
        checks.push(Check {
            name: "p99<150ms",
            pass: p99 < 150.0,
            detail: format!("p99 {} ms", ms(p99)),
        });
        let rss_mb = row.usage.server_peak_rss_kib as f64 * 1024.0 / 1e6;
        checks.push(Check {
            name: "RSS≤100MB",
            pass: rss_mb <= 100.0,
            detail: format!("peak {rss_mb:.1} MB"),
        });
    }
    if row.conns == 256 {
        let rss_mib = row.usage.server_peak_rss_kib as f64 / 1024.0;
        checks.push(Check {
            name: "RSS<40MB",
            pass: rss_mib < 40.0,
            detail: format!("peak {rss_mib:.1} MiB"),
        });
        if let Some(at_64) = rate_of(rows, row.kind, 64) {
            checks.push(Check {
                name: "256≥64",
                pass: rate >= at_64,
                detail: format!(
                    "{}/s at 256 vs {}/s at 64",
                    thousands(rate),
                    thousands(at_64)
                ),
            });
        }
    }
    if plain_login {
        if let Some(mock) = ceiling_of(rows, Kind::MockAlone, row.conns) {
            checks.push(Check {
                name: "mock≥3×",
                pass: mock >= 3.0 * rate,
                detail: format!(
                    "mock-wechat {}/s is {:.1}× the login path",
                    thousands(mock),
                    mock / rate.max(f64::MIN_POSITIVE)
                ),
            });
        }
    }
    checks
}

/// `MISS: a, b; PASS: c` (misses first: they are what the reader looks for).
fn targets(checks: &[Check]) -> String {
    let names = |pass: bool| {
        checks
            .iter()
            .filter(|c| c.pass == pass)
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (missed, passed) = (names(false), names(true));
    match (missed.is_empty(), passed.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("PASS: {passed}"),
        (false, true) => format!("MISS: {missed}"),
        (false, false) => format!("MISS: {missed}; PASS: {passed}"),
    }
}

/// `200×1,234 401×5 no answer×1`; store rows say `ok` and `failed`.
fn answers(o: &Outcome, store: bool) -> String {
    let mut parts: Vec<String> = o
        .statuses
        .iter()
        .map(|(&status, &n)| {
            if store && status == 200 {
                format!("ok×{}", thousands(n as f64))
            } else {
                format!("{status}×{}", thousands(n as f64))
            }
        })
        .collect();
    if o.failures > 0 {
        let why = o.first_failure.as_deref().unwrap_or("?");
        let label = if store { "failed" } else { "no answer" };
        parts.push(format!(
            "{label}×{} ({})",
            thousands(o.failures as f64),
            why.replace('|', "/")
        ));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

fn per_thousand(cpu_s: f64, requests: u64) -> String {
    if requests == 0 {
        "–".into()
    } else {
        format!("{:.3}", cpu_s * 1000.0 / requests as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, conns: usize, per_second: u32, p99_ms: u32) -> Row {
        // The slowest 2% take `p99_ms`, so that is the 99th percentile.
        let slow = per_second as usize / 50;
        let mut latencies_us = vec![1000; per_second as usize - slow];
        latencies_us.extend(vec![p99_ms * 1000; slow]);
        Row {
            kind,
            conns,
            outcome: Outcome {
                elapsed: Duration::from_secs(1),
                latencies_us,
                statuses: [(200, u64::from(per_second))].into_iter().collect(),
                ..Outcome::default()
            },
            usage: Usage::default(),
            db_commands: None,
        }
    }

    #[test]
    fn login_rows_are_checked_against_the_ceilings_of_their_concurrency() {
        let rows = vec![
            row(Kind::MockAlone, 64, 9000, 1),
            row(Kind::StoreInsert, 64, 4000, 1),
            row(Kind::First, 64, 2500, 20),
        ];
        let checks = checks(&rows[2], &rows);
        let verdict = |name: &str| checks.iter().find(|c| c.name == name).map(|c| c.pass);
        assert_eq!(verdict("≥50% of store"), Some(true));
        assert_eq!(verdict("0 non-200"), Some(true));
        assert_eq!(verdict("p99<10ms"), Some(false));
        assert_eq!(verdict("mock≥3×"), Some(true));
        assert_eq!(lower_ceiling(&rows[2], &rows), Some(4000.0));
        assert!(targets(&checks).starts_with("MISS: p99<10ms; PASS: "));
    }

    #[test]
    fn a_failed_ceiling_is_no_ceiling() {
        let mut store = row(Kind::StoreInsert, 16, 100, 1);
        store.outcome.failures = 5;
        let rows = vec![store, row(Kind::First, 16, 2500, 1)];
        assert_eq!(lower_ceiling(&rows[1], &rows), None);
        let checks = checks(&rows[1], &rows);
        assert!(checks.iter().any(|c| c.name == "valid ceilings" && !c.pass));
        assert!(!checks.iter().any(|c| c.name == "≥50% of store"));
    }
}
