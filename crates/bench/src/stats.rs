//! What a run counts (latencies in an HDR histogram, calls and errors by kind) and how it is
//! reported: one Markdown table row for people, a JSON document with every number for tools.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tells apart, in nanoseconds (values above are clamped).
const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;

/// Counts shared by all sessions of a run.
pub struct Tally {
    latency_ns: Histogram<u64>,
    pub calls: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub warmup_calls: u64,
    pub warmup_errors: u64,
    /// Sessions ended with `DELETE` (`--calls-per-session`), warm-up included.
    pub sessions_closed: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        // 3 significant digits from 1 ns to an hour; the bounds are constants that are valid.
        let latency_ns = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Tally { latency_ns, calls: 0, errors: BTreeMap::new(), warmup_calls: 0, warmup_errors: 0, sessions_closed: 0 }
    }

    /// A good call in the measured window.
    pub fn record_call(&mut self, latency_ns: u64) {
        self.latency_ns.saturating_record(latency_ns.max(1));
        self.calls += 1;
    }

    pub fn record_error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn latency(&self) -> Latency {
        let h = &self.latency_ns;
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Latency summary in microseconds (all 0 when nothing was measured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// CPU used over the measured window by one set of processes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cpu {
    pub cpu_s: f64,
    /// `None` when no call was measured.
    pub cpu_us_per_call: Option<f64>,
}

impl Cpu {
    pub fn new(ticks: u64, ticks_per_s: u64, calls: u64) -> Cpu {
        let cpu_s = ticks as f64 / ticks_per_s.max(1) as f64;
        let cpu_us_per_call = (calls > 0).then(|| cpu_s * 1e6 / calls as f64);
        Cpu { cpu_s, cpu_us_per_call }
    }
}

/// One `--pid` and what it used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PidReport {
    pub pid: u32,
    /// The process alone.
    pub process: Cpu,
    pub process_rss_kib: u64,
    /// The process and its descendants at the end of the window.
    pub tree: Cpu,
    pub tree_rss_kib: u64,
    pub tree_pids: Vec<u32>,
}

/// All `--pid` processes and their descendants together (each process once).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetReport {
    pub cpu: Cpu,
    pub rss_kib: u64,
    pub pids: Vec<u32>,
    pub per_pid: Vec<PidReport>,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub command_line: Vec<String>,
    pub label: String,
    pub url: String,
    pub protocol_version: &'static str,
    pub sessions: u32,
    /// Sessions open (handshake done, not lost since) when the measured window starts.
    pub sessions_ready_at_start: u32,
    /// Sessions open when it ends.
    pub sessions_ready_at_end: u32,
    /// The load tool's open-file limit, when it raised it (more than 512 sessions).
    pub nofile_limit: Option<u64>,
    /// The echo tool called.
    pub tool: String,
    pub threads: u32,
    pub quick_ack: bool,
    pub payload_bytes: usize,
    pub warmup_s: u64,
    pub duration_s: u64,
    pub request_timeout_ms: u64,
    pub calls: u64,
    pub calls_per_s: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub warmup_calls: u64,
    pub warmup_errors: u64,
    pub sessions_closed: u64,
    pub latency_us: Latency,
    pub self_cpu: Cpu,
    pub target: Option<TargetReport>,
    pub pin_self: Option<String>,
    pub pin_target: Option<String>,
    pub clock_ticks_per_s: u64,
}

/// The Markdown header matching [`markdown_row`].
pub fn markdown_header() -> String {
    "| run | sessions | payload B | calls/s | p50 µs | p99 µs | p99.9 µs | max µs | errors | target CPU µs/call | target RSS MiB | bench CPU µs/call |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        .to_owned()
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// One Markdown table row for a report (no trailing newline).
pub fn markdown_row(r: &Report) -> String {
    let l = &r.latency_us;
    let target_cpu = r.target.as_ref().and_then(|t| t.cpu.cpu_us_per_call);
    let target_rss = r.target.as_ref().map(|t| t.rss_kib as f64 / 1024.0);
    format!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
        r.label.replace('|', "\\|"),
        r.sessions,
        r.payload_bytes,
        r.calls_per_s,
        l.p50,
        l.p99,
        l.p99_9,
        l.max,
        r.errors,
        opt(target_cpu, 1),
        opt(target_rss, 1),
        opt(r.self_cpu.cpu_us_per_call, 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(tally: &Tally, target: Option<TargetReport>) -> Report {
        Report {
            command_line: vec!["apiary-bench".into(), "--url".into(), "http://x/mcp".into()],
            label: "direct | stdio".into(),
            url: "http://x/mcp".into(),
            protocol_version: "2025-11-25",
            sessions: 2,
            sessions_ready_at_start: 2,
            sessions_ready_at_end: 2,
            nofile_limit: None,
            tool: "echo".into(),
            threads: 1,
            quick_ack: false,
            payload_bytes: 1024,
            warmup_s: 0,
            duration_s: 2,
            request_timeout_ms: 1000,
            calls: tally.calls,
            calls_per_s: tally.calls as f64 / 2.0,
            errors: tally.errors_total(),
            errors_by_kind: tally.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            warmup_calls: 0,
            warmup_errors: 0,
            sessions_closed: 0,
            latency_us: tally.latency(),
            self_cpu: Cpu::new(50, 100, tally.calls),
            target,
            pin_self: None,
            pin_target: None,
            clock_ticks_per_s: 100,
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut t = Tally::new();
        // 1..=1000 µs, one call each.
        for us in 1..=1000u64 {
            t.record_call(us * 1000);
        }
        let l = t.latency();
        assert_eq!(t.calls, 1000);
        // 3 significant digits: values come back within 0.1%.
        assert!((l.p50 - 500.0).abs() <= 0.5, "{l:?}");
        assert!((l.p99 - 990.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_9 - 999.0).abs() <= 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() <= 1.0, "{l:?}");
        assert!((l.min - 1.0).abs() <= 0.01, "{l:?}");
    }

    #[test]
    fn an_empty_tally_reports_zeros_and_no_cpu_per_call() {
        let t = Tally::new();
        assert_eq!(t.latency(), Latency::default());
        assert_eq!(Cpu::new(10, 100, 0), Cpu { cpu_s: 0.1, cpu_us_per_call: None });
        let row = markdown_row(&report(&t, None));
        assert_eq!(row, "| direct \\| stdio | 2 | 1024 | 0 | 0 | 0 | 0 | 0 | 0 | - | - | - |");
    }

    #[test]
    fn the_row_matches_the_header_and_rounds() {
        let mut t = Tally::new();
        for _ in 0..4 {
            t.record_call(250_000);
        }
        t.record_error("timeout");
        t.record_error("timeout");
        t.record_error("wrong_echo");
        let target =
            TargetReport { cpu: Cpu::new(3, 100, 4), rss_kib: 20 * 1024 + 512, pids: vec![10, 11], per_pid: vec![] };
        let r = report(&t, Some(target));
        let row = markdown_row(&r);
        assert_eq!(row, "| direct \\| stdio | 2 | 1024 | 2 | 250 | 250 | 250 | 250 | 3 | 7500.0 | 20.5 | 125000.0 |");
        let header = markdown_header();
        let columns = |line: &str| line.matches(" | ").count();
        assert_eq!(columns(header.lines().next().unwrap()), columns(&row.replace("\\|", "/")));
        assert_eq!(r.errors_by_kind.get("timeout"), Some(&2));
        let json = serde_json::to_value(&r).unwrap();
        assert!((json["latency_us"]["p99_9"].as_f64().unwrap() - 250.0).abs() < 1.0);
        assert_eq!(json["target"]["rss_kib"], 20992);
    }
}
