//! wxlogin side by side with a peer (issue 14): the rows both servers run, and the one table
//! that sets their figures next to each other with the ratio wxlogin / peer and the goal
//! for each, marked PASS or MISS.
//!
//! The goals are ratios to a peer measured in the same run on the same machine, because on a
//! shared 2-core machine an absolute figure says as much about the neighbours as about us.
//! Without a peer, only the goals that need none (RSS, p99 against slow WeChat, `/auth/verify`
//! against `/healthz`, no failed answer) are judged.

use std::fmt::Write as _;

use wxlogin_tools::markdown::{ms, thousands, Table};

use crate::report::Row;
use crate::scenarios::Kind;

/// Connections of the slow-WeChat row: four times wxlogin's 256 workers, so the row shows
/// whether a thread-per-request server keeps up when WeChat's latency, not CPU, is the limit.
pub const SLOW_WECHAT_CONNS: usize = 1024;

/// The rows both servers run, in this order; the slow-WeChat row comes last (it needs
/// mock-wechat restarted with its latency).
pub const PLAN: [(Kind, usize); 8] = [
    (Kind::First, 16),
    (Kind::First, 64),
    (Kind::Returning, 16),
    (Kind::Returning, 64),
    (Kind::First, 256),
    (Kind::Healthz, 16),
    (Kind::Verify, 16),
    (Kind::FirstSlowWechat, SLOW_WECHAT_CONNS),
];

/// The login rows whose CPU is summed into "CPU per login".
const CPU_ROWS: [(Kind, usize); 4] = [
    (Kind::First, 16),
    (Kind::First, 64),
    (Kind::Returning, 16),
    (Kind::Returning, 64),
];

/// What the peer was and what it measured.
pub struct PeerRun {
    /// The command it was started with, as given.
    pub command: String,
    pub rows: Vec<Row>,
}

/// How a figure is judged.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// wxlogin / peer at least this much (throughput).
    RatioAtLeast(f64),
    /// wxlogin / peer at most this much (latency, CPU).
    RatioAtMost(f64),
    /// wxlogin's own figure below this (p99 ms), at most this (MB, failures), or at least
    /// this (`/auth/verify`'s share of `/healthz`).
    Below(f64),
    AtMost(f64),
    AtLeast(f64),
    /// Shown for context only.
    None,
}

impl Goal {
    fn describe(self, unit: &str) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("≥ {r}× peer"),
            Goal::RatioAtMost(r) => format!("≤ {r}× peer"),
            Goal::Below(v) => format!("< {v}{unit}"),
            Goal::AtMost(v) => format!("≤ {v}{unit}"),
            Goal::AtLeast(v) => format!("≥ {v}{unit}"),
            Goal::None => "–".into(),
        }
    }

    /// PASS, MISS, or why it cannot be judged.
    fn verdict(self, ours: Option<f64>, peer: Option<f64>) -> &'static str {
        let Some(ours) = ours else {
            return "not run";
        };
        let pass = match self {
            Goal::None => return "",
            Goal::Below(v) => ours < v,
            Goal::AtMost(v) => ours <= v,
            Goal::AtLeast(v) => ours >= v,
            Goal::RatioAtLeast(r) | Goal::RatioAtMost(r) => {
                let Some(peer) = peer.filter(|p| *p > 0.0) else {
                    return "no peer";
                };
                match self {
                    Goal::RatioAtLeast(_) => ours / peer >= r,
                    _ => ours / peer <= r,
                }
            }
        };
        if pass {
            "PASS"
        } else {
            "MISS"
        }
    }
}

fn find(rows: &[Row], kind: Kind, conns: usize) -> Option<&Row> {
    rows.iter().find(|r| r.kind == kind && r.conns == conns)
}

fn rate(rows: &[Row], kind: Kind, conns: usize) -> Option<f64> {
    find(rows, kind, conns).map(|r| r.outcome.rate())
}

fn p99(rows: &[Row], kind: Kind, conns: usize) -> Option<f64> {
    find(rows, kind, conns).map(|r| r.outcome.percentile_ms(99.0))
}

/// Peak RSS in MB (10^6 bytes, as the goals are written).
fn rss_mb(rows: &[Row], kind: Kind, conns: usize) -> Option<f64> {
    find(rows, kind, conns).map(|r| r.usage.server_peak_rss_kib as f64 * 1024.0 / 1e6)
}

/// Server CPU (user + system) per answered login over [`CPU_ROWS`], in microseconds.
fn cpu_per_login_us(rows: &[Row]) -> Option<f64> {
    let measured: Vec<&Row> = CPU_ROWS
        .iter()
        .filter_map(|&(kind, conns)| find(rows, kind, conns))
        .collect();
    let logins: u64 = measured.iter().map(|r| r.outcome.answered()).sum();
    let cpu_s: f64 = measured.iter().map(|r| r.usage.server_cpu_s).sum();
    (logins > 0).then(|| cpu_s * 1e6 / logins as f64)
}

/// Answers that were not 2xx, and requests without an answer, over every row of the plan.
fn not_ok(rows: &[Row]) -> Option<f64> {
    let measured: Vec<&Row> = PLAN
        .iter()
        .filter_map(|&(kind, conns)| find(rows, kind, conns))
        .collect();
    (!measured.is_empty()).then(|| measured.iter().map(|r| r.outcome.not_ok()).sum::<u64>() as f64)
}

/// `/auth/verify` throughput as a share of `/healthz`'s at 16 connections.
fn verify_share(rows: &[Row]) -> Option<f64> {
    let healthz = rate(rows, Kind::Healthz, 16).filter(|r| *r > 0.0)?;
    Some(rate(rows, Kind::Verify, 16)? / healthz)
}

/// How a figure is printed.
#[derive(Clone, Copy)]
enum Format {
    Rate,
    Ms,
    Micros,
    Mb,
    Count,
    Share,
}

impl Format {
    fn show(self, value: Option<f64>) -> String {
        let Some(v) = value else {
            return "–".into();
        };
        match self {
            Format::Rate | Format::Count => thousands(v),
            Format::Ms => ms(v),
            Format::Micros => format!("{v:.0}"),
            Format::Mb => format!("{v:.1}"),
            Format::Share => format!("{v:.2}"),
        }
    }
}

/// One line of the table: a name, how to get the figure from a server's rows, its goal.
struct Figure {
    name: &'static str,
    get: fn(&[Row]) -> Option<f64>,
    format: Format,
    unit: &'static str,
    goal: Goal,
}

fn figures() -> Vec<Figure> {
    let f = |name, get, format, unit, goal| Figure {
        name,
        get,
        format,
        unit,
        goal,
    };
    vec![
        f(
            "new logins/s, 16 conns",
            |r| rate(r, Kind::First, 16),
            Format::Rate,
            "",
            Goal::RatioAtLeast(0.8),
        ),
        f(
            "new logins/s, 64 conns",
            |r| rate(r, Kind::First, 64),
            Format::Rate,
            "",
            Goal::RatioAtLeast(0.8),
        ),
        f(
            "returning logins/s, 16 conns",
            |r| rate(r, Kind::Returning, 16),
            Format::Rate,
            "",
            Goal::RatioAtLeast(0.8),
        ),
        f(
            "returning logins/s, 64 conns",
            |r| rate(r, Kind::Returning, 64),
            Format::Rate,
            "",
            Goal::RatioAtLeast(0.8),
        ),
        f(
            "p99 ms, new @16",
            |r| p99(r, Kind::First, 16),
            Format::Ms,
            " ms",
            Goal::None,
        ),
        f(
            "p99 ms, new @64",
            |r| p99(r, Kind::First, 64),
            Format::Ms,
            " ms",
            Goal::RatioAtMost(3.0),
        ),
        f(
            "p99 ms, returning @64",
            |r| p99(r, Kind::Returning, 64),
            Format::Ms,
            " ms",
            Goal::RatioAtMost(3.0),
        ),
        f(
            "server CPU per login, µs (user+system, logins @16 and @64)",
            cpu_per_login_us,
            Format::Micros,
            " µs",
            Goal::RatioAtMost(1.5),
        ),
        f(
            "answers not 2xx or missing, all rows above and below",
            not_ok,
            Format::Count,
            "",
            Goal::AtMost(0.0),
        ),
        f(
            "peak RSS MB, new logins @256, default settings",
            |r| rss_mb(r, Kind::First, 256),
            Format::Mb,
            " MB",
            Goal::AtMost(40.0),
        ),
        f(
            "WeChat +100 ms, 1,024 conns: new logins/s",
            |r| rate(r, Kind::FirstSlowWechat, SLOW_WECHAT_CONNS),
            Format::Rate,
            "",
            Goal::RatioAtLeast(0.8),
        ),
        f(
            "WeChat +100 ms, 1,024 conns: p99 ms",
            |r| p99(r, Kind::FirstSlowWechat, SLOW_WECHAT_CONNS),
            Format::Ms,
            " ms",
            Goal::Below(150.0),
        ),
        f(
            "WeChat +100 ms, 1,024 conns: peak RSS MB",
            |r| rss_mb(r, Kind::FirstSlowWechat, SLOW_WECHAT_CONNS),
            Format::Mb,
            " MB",
            Goal::AtMost(100.0),
        ),
        f(
            "GET /healthz/s, 16 conns",
            |r| rate(r, Kind::Healthz, 16),
            Format::Rate,
            "",
            Goal::None,
        ),
        f(
            "GET /auth/verify/s, 16 conns",
            |r| rate(r, Kind::Verify, 16),
            Format::Rate,
            "",
            Goal::None,
        ),
        f(
            "/auth/verify ÷ /healthz, 16 conns",
            verify_share,
            Format::Share,
            "",
            Goal::AtLeast(0.8),
        ),
    ]
}

/// The side-by-side section of the report.
pub fn markdown(ours: &[Row], peer: Option<&PeerRun>) -> String {
    let mut out = String::from("### Side by side with the peer (issue 14's goals)\n\n");
    match peer {
        Some(peer) => {
            let _ = writeln!(
                out,
                "Peer: `{}`, started with wxlogin's environment against its own fresh database, \
                 measured after wxlogin was stopped, with the same load generator and \
                 mock-wechat.\n",
                peer.command
            );
        }
        None => out.push_str(
            "No peer in this run (`BENCH_PEER=CMD make bench`): the ratio goals are not judged.\n\n",
        ),
    }
    let peer_rows = peer.map(|p| p.rows.as_slice());
    let mut table = Table::new(&[
        ("figure", false),
        ("wxlogin", true),
        ("peer", true),
        ("wxlogin / peer", true),
        ("goal", false),
        ("verdict", false),
    ]);
    let (mut passes, mut misses) = (0, Vec::new());
    for figure in figures() {
        let value = (figure.get)(ours);
        let peer_value = peer_rows.and_then(figure.get);
        let verdict = figure.goal.verdict(value, peer_value);
        match verdict {
            "PASS" => passes += 1,
            "MISS" => misses.push(figure.name),
            _ => {}
        }
        let ratio = match (figure.format, value, peer_value) {
            (Format::Count, ..) => "–".into(),
            (_, Some(v), Some(p)) if p > 0.0 => format!("{:.2}×", v / p),
            _ => "–".into(),
        };
        table.row(vec![
            figure.name.into(),
            figure.format.show(value),
            figure.format.show(peer_value),
            ratio,
            figure.goal.describe(figure.unit),
            verdict.into(),
        ]);
    }
    out.push_str(&table.render());
    let _ = writeln!(
        out,
        "\n{passes} PASS, {} MISS{}.",
        misses.len(),
        if misses.is_empty() {
            String::new()
        } else {
            format!(": {}", misses.join("; "))
        }
    );
    out.push_str(
        "\nCPU per login: the server process's user + system time (`/proc/PID/stat`) over the \
         four login rows at 16 and 64 connections, divided by their logins. Peak RSS: sampled \
         every 10 ms during the row. WeChat +100 ms: mock-wechat restarted with \
         `MOCK_WECHAT_LATENCY_MS=100` and 1,024 worker threads (it sleeps in a worker, so it can \
         hold 1,024 calls at once: 10,240 answers/s at most). Each row's other figures are in \
         the tables below.\n\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;
    use crate::probe::Usage;
    use std::time::Duration;

    fn row(kind: Kind, conns: usize, answered: usize, cpu_s: f64) -> Row {
        Row {
            kind,
            conns,
            outcome: Outcome {
                elapsed: Duration::from_secs(1),
                latencies_us: vec![1000; answered],
                statuses: [(200, answered as u64)].into_iter().collect(),
                ..Outcome::default()
            },
            usage: Usage {
                server_cpu_s: cpu_s,
                server_peak_rss_kib: 50_000,
                ..Usage::default()
            },
            db_commands: None,
        }
    }

    #[test]
    fn ratios_are_judged_against_the_peer() {
        let ours = vec![
            row(Kind::First, 16, 900, 0.18),
            row(Kind::Healthz, 16, 1000, 0.0),
            row(Kind::Verify, 16, 700, 0.0),
        ];
        let peer = PeerRun {
            command: "peer".into(),
            rows: vec![row(Kind::First, 16, 1000, 0.1)],
        };
        let text = markdown(&ours, Some(&peer));
        let line = |name: &str| text.lines().find(|l| l.contains(name)).unwrap().to_owned();
        assert!(line("new logins/s, 16 conns").contains("PASS"));
        assert!(line("new logins/s, 16 conns").contains("0.90×"));
        // 200 µs per login against 100 µs: 2× is over 1.5×.
        assert!(line("server CPU per login").contains("MISS"));
        assert!(line("/auth/verify ÷").contains("0.70") && line("/auth/verify ÷").contains("MISS"));
        assert!(line("peak RSS MB, new logins @256").contains("not run"));
        assert!(markdown(&ours, None).contains("no peer"));
    }
}
