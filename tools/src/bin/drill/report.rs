//! The drill's phases, its checks, and the summary: one table of answers per phase and the
//! list of checks, short enough for one screen and written as Markdown for the README.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use wxlogin_tools::markdown::{short, utc_minute, Table};

use crate::load::{Answer, Outcome, Via};
use crate::phase::Phase;

/// A check's result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Pass,
    Fail,
    /// A finding that is reported, not judged.
    Info,
}

pub struct Check {
    pub verdict: Verdict,
    pub text: String,
}

/// The answers of one phase (or all), for a row of the table.
pub struct Stats {
    pub sent: usize,
    pub answers: Vec<Answer>,
    latencies: Vec<Duration>,
    pub nginx_sent: usize,
    pub nginx_ok: usize,
    pub nginx_max: Duration,
}

impl Stats {
    /// Over the given outcomes.
    pub fn of<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> Stats {
        let mut stats = Stats {
            sent: 0,
            answers: Vec::new(),
            latencies: Vec::new(),
            nginx_sent: 0,
            nginx_ok: 0,
            nginx_max: Duration::ZERO,
        };
        for outcome in outcomes {
            stats.sent += 1;
            stats.answers.push(outcome.answer);
            stats.latencies.push(outcome.latency);
            if outcome.via == Via::Nginx {
                stats.nginx_sent += 1;
                stats.nginx_max = stats.nginx_max.max(outcome.latency);
                if outcome.answer == Answer::Status(200) {
                    stats.nginx_ok += 1;
                }
            }
        }
        stats.latencies.sort_unstable();
        stats
    }

    pub fn count(&self, answer: Answer) -> usize {
        self.answers.iter().filter(|a| **a == answer).count()
    }

    /// Whether every answer is one of `allowed` (and there was at least one).
    pub fn only(&self, allowed: &[Answer]) -> bool {
        self.sent > 0 && self.answers.iter().all(|a| allowed.contains(a))
    }

    pub fn median(&self) -> Duration {
        self.latencies
            .get(self.latencies.len() / 2)
            .copied()
            .unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    /// `200×12 503×1200 timeout×1`, for progress lines and checks.
    pub fn breakdown(&self) -> String {
        let kinds: BTreeSet<Answer> = self.answers.iter().copied().collect();
        let parts: Vec<String> = kinds
            .iter()
            .map(|kind| format!("{}×{}", label(*kind), self.count(*kind)))
            .collect();
        if parts.is_empty() {
            "nothing sent".into()
        } else {
            parts.join(" ")
        }
    }
}

/// A column header for an answer.
pub fn label(answer: Answer) -> String {
    match answer {
        Answer::Status(code) => code.to_string(),
        Answer::Timeout => "timeout".into(),
        Answer::Failed => "conn. error".into(),
    }
}

/// Everything the summary shows.
pub struct Report {
    /// `MariaDB 10.11.6, nginx 1.22.1`, and the load's shape.
    pub setup: String,
    pub outcomes: Vec<Outcome>,
    /// How long each phase ran.
    pub spans: Vec<(Phase, Duration)>,
    pub checks: Vec<Check>,
    /// The tables of the phases outside the login load (cluster, open port), when they ran.
    pub tables: Vec<String>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .count()
    }

    /// The summary in Markdown: a heading, the tables, the checks.
    pub fn render(&self, now: SystemTime) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### Fault drill, last run {}\n", utc_minute(now));
        let _ = writeln!(out, "{}\n", self.setup);
        if !self.outcomes.is_empty() {
            let _ = writeln!(out, "{}", self.load_table());
        }
        for table in &self.tables {
            let _ = writeln!(out, "{table}");
        }
        for check in &self.checks {
            let mark = match check.verdict {
                Verdict::Pass => "✔",
                Verdict::Fail => "✘ FAILED:",
                Verdict::Info => "ℹ",
            };
            let _ = writeln!(out, "- {mark} {}", check.text);
        }
        out
    }

    /// The logins of every phase, by answer.
    fn load_table(&self) -> String {
        let columns: BTreeSet<Answer> = self.outcomes.iter().map(|o| o.answer).collect();
        let labels: Vec<String> = columns.iter().map(|column| label(*column)).collect();
        let mut headers = vec![
            ("phase", false),
            ("what was done", false),
            ("s", true),
            ("sent", true),
        ];
        headers.extend(labels.iter().map(|l| (l.as_str(), true)));
        headers.extend([
            ("median", true),
            ("max", true),
            ("via nginx: 200/sent, max", true),
        ]);
        let mut table = Table::new(&headers);
        let mut row = |name: &str, what: &str, seconds: Duration, stats: &Stats| {
            let mut cells = vec![
                name.to_owned(),
                what.to_owned(),
                format!("{:.1}", seconds.as_secs_f64()),
                stats.sent.to_string(),
            ];
            cells.extend(columns.iter().map(|c| stats.count(*c).to_string()));
            cells.extend([
                short(stats.median()),
                short(stats.max()),
                format!(
                    "{}/{}, {}",
                    stats.nginx_ok,
                    stats.nginx_sent,
                    short(stats.nginx_max)
                ),
            ]);
            table.row(cells);
        };
        let mut total_time = Duration::ZERO;
        for phase in Phase::ALL {
            let seconds: Duration = self
                .spans
                .iter()
                .filter(|(p, _)| *p == phase)
                .map(|(_, d)| *d)
                .sum();
            total_time += seconds;
            let stats = Stats::of(self.outcomes.iter().filter(|o| o.phase == phase));
            row(phase.name(), phase.what(), seconds, &stats);
        }
        row(
            "**total**",
            "",
            total_time,
            &Stats::of(self.outcomes.iter()),
        );
        table.render()
    }
}
