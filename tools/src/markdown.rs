//! The reports' Markdown: a table padded so its columns line up in a terminal too, and the
//! number, duration and date formats both tools print.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// `3 ms`, `2.01 s`.
pub fn short(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Milliseconds with about three significant digits.
pub fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A whole number with thousands separators: `12,345`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `2026-11-25 16:29 UTC`: the minute a run happened, for its report.
pub fn utc_minute(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| "(unknown time)".into())
}

/// A Markdown table padded so its columns line up in a terminal as well.
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, bool)]) -> Table {
        Table {
            headers: columns.iter().map(|(h, _)| (*h).to_owned()).collect(),
            right: columns.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.headers[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let line = |cells: &[String]| {
            let mut text = String::from("|");
            for (i, cell) in cells.iter().enumerate() {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if self.right[i] {
                    let _ = write!(text, " {pad}{cell} |");
                } else {
                    let _ = write!(text, " {cell}{pad} |");
                }
            }
            text.push('\n');
            text
        };
        let mut out = line(&self.headers);
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let dashes = "-".repeat(w - 1);
            if self.right[i] {
                let _ = write!(out, " {dashes}: |");
            } else {
                let _ = write!(out, " {dashes}- |");
            }
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn formats_numbers_and_durations() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(0.4567), "0.46");
        assert_eq!(ms(123.4), "123");
        assert_eq!(short(Duration::from_millis(3)), "3 ms");
        assert_eq!(short(Duration::from_millis(2014)), "2.01 s");
    }

    #[test]
    fn dates_are_civil_utc() {
        let at = |secs| utc_minute(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_782_400 + 3_661), "2000-02-29 01:01 UTC");
        assert_eq!(at(1_764_088_142), "2025-11-25 16:29 UTC");
    }

    #[test]
    fn renders_aligned_markdown() {
        let mut table = Table::new(&[("a", false), ("bb", true)]);
        table.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(
            table.render(),
            "| a   |  bb |\n| --- | --: |\n| xyz |   1 |\n"
        );
    }
}
