//! A scenario's results: rows of named figures, printed as a table or as JSON.

use crate::floor::Floor;
use crate::stats::Summary;
use crate::wire::Protocol;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Row {
    pub metric: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// How the figure compares with the floor, or what it means.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub label: String,
    pub protocol: Protocol,
    pub url: String,
    pub params: serde_json::Value,
    pub floor: Floor,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(scenario: &'static str, protocol: Protocol, url: &str, floor: Floor) -> Self {
        Self {
            scenario,
            label: String::new(),
            protocol,
            url: url.to_owned(),
            params: serde_json::Value::Null,
            floor,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, metric: &str, value: Option<f64>, unit: &'static str, note: String) {
        self.rows.push(Row {
            metric: metric.to_owned(),
            value,
            unit,
            note,
        });
    }

    /// `metric, p50` (noting the sample count) and `metric, p99` in µs, and `metric, max`
    /// with `max`.
    pub fn latency(&mut self, metric: &str, s: &Summary, max: bool) {
        self.row(
            &format!("{metric}, p50"),
            Some(s.p50_us),
            "µs",
            format!("{} samples", s.count),
        );
        self.row(
            &format!("{metric}, p99"),
            Some(s.p99_us),
            "µs",
            String::new(),
        );
        if max {
            self.row(
                &format!("{metric}, max"),
                Some(s.max_us),
                "µs",
                String::new(),
            );
        }
    }

    pub fn print_table(&self) {
        println!(
            "\n== {} ({:?}, {}) ==",
            self.scenario, self.protocol, self.url
        );
        println!(
            "floor: WebSocket round trip p50 {:.1} µs, p99 {:.1} µs; yrs decode+apply {:.2} µs/update",
            self.floor.ws_rtt.p50_us, self.floor.ws_rtt.p99_us, self.floor.yrs_apply_us
        );
        let width = self.rows.iter().map(|r| r.metric.len()).max().unwrap_or(10);
        for r in &self.rows {
            let v = match r.value {
                Some(v) if v.abs() >= 100.0 || v == v.trunc() => format!("{v:.0}"),
                Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
                Some(v) => format!("{v:.4}"),
                None => "n/a".to_owned(),
            };
            println!("  {:width$}  {:>12} {:<6} {}", r.metric, v, r.unit, r.note);
        }
    }
}

/// `a / b` as "N.Nx <what>", or empty when either is missing.
pub fn ratio(a: Option<f64>, b: f64, what: &str) -> String {
    match a {
        Some(a) if b > 0.0 => format!("{:.1}x {what}", a / b),
        _ => String::new(),
    }
}

/// Progress on stderr, so `--json` output stays clean.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[duet-bench] {}", format!($($arg)*)) };
}
