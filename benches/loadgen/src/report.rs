//! Result output: one JSON object on stdout (and optionally a file), a short
//! human table on stderr, and small shared counters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::Opts;
use crate::histogram::Histogram;
use crate::sys::Usage;

/// Named counters (error kinds, close codes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    pub fn add(&mut self, k: impl Into<String>) {
        *self.0.entry(k.into()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: &Counts) {
        for (k, v) in &o.0 {
            *self.0.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }

    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} ({})", self.total(), parts.join(", "))
    }
}

/// The first few distinct error messages, for diagnosis.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<String>);

impl Samples {
    pub const MAX: usize = 8;

    pub fn add(&mut self, msg: impl FnOnce() -> String) {
        if self.0.len() < Self::MAX {
            let m = msg();
            if !self.0.contains(&m) {
                self.0.push(m);
            }
        }
    }

    pub fn merge(&mut self, o: &Samples) {
        for m in &o.0 {
            self.add(|| m.clone());
        }
    }
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

/// Latency summary in microseconds.
pub fn lat_json(h: &Histogram) -> Value {
    json!({
        "count": h.count(),
        "avg_us": (h.mean() / 100.0).round() / 10.0,
        "min_us": us(h.min()),
        "p50_us": us(h.percentile(50.0)),
        "p90_us": us(h.percentile(90.0)),
        "p95_us": us(h.percentile(95.0)),
        "p99_us": us(h.percentile(99.0)),
        "p999_us": us(h.percentile(99.9)),
        "max_us": us(h.max()),
    })
}

pub fn lat_line(h: &Histogram) -> String {
    if h.count() == 0 {
        return "n/a".into();
    }
    format!(
        "avg {} p50 {} p90 {} p99 {} max {} (n={})",
        fmt_us(h.mean() as u64),
        fmt_us(h.percentile(50.0)),
        fmt_us(h.percentile(90.0)),
        fmt_us(h.percentile(99.0)),
        fmt_us(h.max()),
        h.count()
    )
}

/// Human-friendly duration from nanoseconds.
pub fn fmt_us(ns: u64) -> String {
    if ns < 10_000_000 {
        format!("{:.0}us", ns as f64 / 1e3)
    } else if ns < 10_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

/// The generator's own cost: CPU (user+sys, all threads) over wall time.
pub fn generator_json(start: Usage, end: Usage, wall: Duration, threads: usize) -> Value {
    let cpu = end.cpu_s() - start.cpu_s();
    let wall_s = wall.as_secs_f64();
    json!({
        "cpu_user_s": round3(end.user_s - start.user_s),
        "cpu_sys_s": round3(end.sys_s - start.sys_s),
        "cpu_s": round3(cpu),
        "wall_s": round3(wall_s),
        "cpu_pct": if wall_s > 0.0 { round1(cpu / wall_s * 100.0) } else { 0.0 },
        "threads": threads,
        "max_rss_kb": end.max_rss_kb,
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rows of the stderr summary.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn row(&mut self, k: &str, v: impl Into<String>) {
        self.rows.push((k.to_string(), v.into()));
    }

    pub fn render(&self, title: &str) -> String {
        let w = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut s = format!("== pygw-loadgen {title} ==\n");
        for (k, v) in &self.rows {
            s.push_str(&format!("  {k:<w$}  {v}\n"));
        }
        s
    }
}

/// Print the table (unless quiet), the JSON line, and write `--json`.
pub fn emit(opts: &Opts, mut result: Value, table: &Table) -> std::io::Result<()> {
    if let Value::Object(m) = &mut result {
        m.insert("options".into(), opts.to_json());
    }
    if !opts.quiet {
        eprint!("{}", table.render(opts.mode.name()));
    }
    let line = serde_json::to_string(&result).expect("json");
    println!("{line}");
    if let Some(p) = &opts.json {
        std::fs::write(p, format!("{line}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_summary() {
        let mut a = Counts::default();
        a.add("close:1008");
        a.add("close:1008");
        let mut b = Counts::default();
        b.add("eof");
        a.merge(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.summary(), "3 (close:1008=2, eof=1)");
        assert_eq!(Counts::default().summary(), "0");
    }

    #[test]
    fn samples_are_capped_and_distinct() {
        let mut s = Samples::default();
        for i in 0..20 {
            s.add(|| format!("e{}", i % 10));
            s.add(|| "same".into());
        }
        assert_eq!(s.0.len(), Samples::MAX);
        assert_eq!(s.0.iter().filter(|m| *m == "same").count(), 1);
    }

    #[test]
    fn latency_json_units() {
        let mut h = Histogram::new();
        h.record(1_500);
        h.record(2_500);
        let j = lat_json(&h);
        assert_eq!(j["count"], 2);
        assert_eq!(j["min_us"], 1.5);
        assert_eq!(j["max_us"], 2.5);
        assert_eq!(j["avg_us"], 2.0);
        assert_eq!(fmt_us(1_500), "2us");
        assert_eq!(fmt_us(12_000_000), "12.0ms");
    }
}
