//! The result of a run: each cell's numbers read from `apiary-bench`'s JSON, one Markdown table
//! with every peer cell's ratios against the direct connection and against Apiary, the issue's
//! targets checked cell by cell, and the JSON of every row.

use super::matrix::{Cell, StdioMode, Target};
use anyhow::{Context, Result};
use serde_json::{Value, json};

/// What one cell measured (the fields of `apiary-bench --json` the table uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub calls_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
    /// CPU of every process of the target (the proxy, its stdio children, and the fixture when
    /// the proxy fronts it over HTTP) per call.
    pub target_cpu_us: Option<f64>,
    /// CPU of the target's main process alone (the proxy without its child; the fixture for
    /// the direct connection).
    pub proxy_cpu_us: Option<f64>,
    pub rss_mib: Option<f64>,
}

/// One row: a cell and what happened.
#[derive(Debug, Clone)]
pub struct Row {
    pub cell: Cell,
    pub outcome: Result<Measured, String>,
    /// `apiary-bench`'s whole JSON report, when it ran.
    pub raw: Option<Value>,
}

/// Reads the numbers out of `apiary-bench`'s JSON report.
pub fn parse_bench_json(v: &Value) -> Result<Measured> {
    let f = |ptr: &str| v.pointer(ptr).and_then(Value::as_f64);
    Ok(Measured {
        calls_per_s: f("/calls_per_s").context("no calls_per_s")?,
        p50_us: f("/latency_us/p50").context("no latency_us.p50")?,
        p99_us: f("/latency_us/p99").context("no latency_us.p99")?,
        errors: v.pointer("/errors").and_then(Value::as_u64).context("no errors")?,
        target_cpu_us: f("/target/cpu/cpu_us_per_call"),
        proxy_cpu_us: f("/target/per_pid/0/process/cpu_us_per_call"),
        rss_mib: f("/target/rss_kib").map(|kib| kib / 1024.0),
    })
}

fn find(rows: &[Row], target: Target, cell: &Cell) -> Option<Measured> {
    rows.iter()
        .find(|r| r.cell.target == target && r.cell.sessions == cell.sessions && r.cell.payload == cell.payload)
        .and_then(|r| r.outcome.as_ref().ok())
        .filter(|m| m.calls_per_s > 0.0)
        .cloned()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => format!("{:.2}", a / b),
        _ => "—".to_owned(),
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The Markdown table of a run.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| target | sessions | payload B | calls/s | p50 µs | p99 µs | errors | target CPU µs/call | proxy CPU µs/call | RSS MiB | calls/s ÷ direct | CPU ÷ direct | Apiary calls/s ÷ this | CPU ÷ Apiary's |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let c = &row.cell;
        let m = match &row.outcome {
            Ok(m) => m,
            Err(why) => {
                let why = why.lines().next().unwrap_or_default().replace('|', "\\|");
                out.push_str(&format!(
                    "| {} | {} | {} | not measured: {why} | | | | | | | | | | |\n",
                    c.target.label(),
                    c.sessions,
                    c.payload
                ));
                continue;
            }
        };
        let direct = (c.target != Target::Direct).then(|| find(rows, Target::Direct, c)).flatten();
        let apiary = c.target.apiary_counterpart().and_then(|t| find(rows, t, c));
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.target.label(),
            c.sessions,
            c.payload,
            m.calls_per_s,
            m.p50_us,
            m.p99_us,
            m.errors,
            num(m.target_cpu_us, 1),
            num(m.proxy_cpu_us, 1),
            num(m.rss_mib, 1),
            ratio(Some(m.calls_per_s), direct.as_ref().map(|d| d.calls_per_s)),
            ratio(m.target_cpu_us, direct.as_ref().and_then(|d| d.target_cpu_us)),
            ratio(apiary.as_ref().map(|a| a.calls_per_s), Some(m.calls_per_s)),
            ratio(m.target_cpu_us, apiary.as_ref().and_then(|a| a.target_cpu_us)),
        ));
    }
    out
}

/// One of the issue's targets checked against one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub met: bool,
    pub text: String,
}

const APIARY_STDIO: [Target; 3] = [
    Target::ApiaryStdio(StdioMode::Auto),
    Target::ApiaryStdio(StdioMode::Shared),
    Target::ApiaryStdio(StdioMode::PerSession),
];

/// The issue's targets (Foundation 4) that this run's cells can tell, each cell that can be
/// judged once: the proxy's own CPU per call at 8 sessions (≤ 20 µs stdio, ≤ 15 µs HTTP),
/// ≥ 25,000 calls/s through stdio at 64 sessions, Apiary ≥ 10× the stdio bridges and ≥ 5×
/// `thv proxy` at 8 and 64 sessions, and ≤ 50 µs added p50 over direct at 1 session.
pub fn checks(rows: &[Row]) -> Vec<Check> {
    let mut out = Vec::new();
    let ok = |r: &Row| r.outcome.as_ref().ok().cloned();
    for row in rows {
        let c = &row.cell;
        let Some(m) = ok(row) else { continue };
        let at = format!("{}, sessions {}, {} B", c.target.label(), c.sessions, c.payload);
        let is_stdio = APIARY_STDIO.contains(&c.target);
        let is_apiary = is_stdio || c.target == Target::ApiaryHttp;
        if is_apiary && c.sessions == 8 {
            let limit = if is_stdio { 20.0 } else { 15.0 };
            if let Some(cpu) = m.proxy_cpu_us {
                out.push(Check {
                    met: cpu <= limit,
                    text: format!("{at}: proxy CPU {cpu:.1} µs/call (target ≤ {limit:.0})"),
                });
            }
        }
        if is_stdio && c.sessions == 64 {
            out.push(Check {
                met: m.calls_per_s >= 25_000.0,
                text: format!("{at}: {:.0} calls/s (target ≥ 25,000)", m.calls_per_s),
            });
        }
        if is_apiary
            && c.sessions == 1
            && let Some(d) = find(rows, Target::Direct, c)
        {
            let added = m.p50_us - d.p50_us;
            out.push(Check {
                met: added <= 50.0,
                text: format!(
                    "{at}: p50 {:.0} µs over direct's {:.0}, +{added:.0} µs (target ≤ +50)",
                    m.p50_us, d.p50_us
                ),
            });
        }
        if c.target.is_peer()
            && (c.sessions == 8 || c.sessions == 64)
            && let Some(apiary_target) = c.target.apiary_counterpart()
            && let Some(a) = find(rows, apiary_target, c)
            && m.calls_per_s > 0.0
        {
            let factor = if c.target == Target::ThvProxy { 5.0 } else { 10.0 };
            let got = a.calls_per_s / m.calls_per_s;
            out.push(Check {
                met: got >= factor,
                text: format!(
                    "{at}: {} at {:.0} calls/s is {got:.2}× this peer's {:.0} (target ≥ {factor:.0}×)",
                    apiary_target.label(),
                    a.calls_per_s,
                    m.calls_per_s
                ),
            });
        }
    }
    out
}

/// The checks as Markdown list items, misses first.
pub fn checks_markdown(checks: &[Check]) -> String {
    let mut out = String::new();
    let missed = checks.iter().filter(|c| !c.met).count();
    out.push_str(&format!(
        "Targets of the issue: {} checked, {} met, {missed} missed.\n\n",
        checks.len(),
        checks.len() - missed
    ));
    for check in checks.iter().filter(|c| !c.met).chain(checks.iter().filter(|c| c.met)) {
        out.push_str(&format!("- {} {}\n", if check.met { "met:" } else { "**missed**:" }, check.text));
    }
    out
}

/// Every row as JSON: the cell, the error if any, and `apiary-bench`'s report.
pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "target": r.cell.target.key(),
                    "label": r.cell.target.label(),
                    "sessions": r.cell.sessions,
                    "payload_bytes": r.cell.payload,
                    "error": r.outcome.as_ref().err(),
                    "report": r.raw,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn measured(calls: f64, p50: f64, cpu: f64, proxy: f64) -> Measured {
        Measured {
            calls_per_s: calls,
            p50_us: p50,
            p99_us: p50 * 2.0,
            errors: 0,
            target_cpu_us: Some(cpu),
            proxy_cpu_us: Some(proxy),
            rss_mib: Some(10.0),
        }
    }

    fn row(target: Target, sessions: u32, m: Result<Measured, String>) -> Row {
        Row { cell: Cell { target, sessions, payload: 64 }, outcome: m, raw: None }
    }

    #[test]
    fn the_bench_json_is_read() {
        let v = json!({
            "calls_per_s": 1234.5, "errors": 2,
            "latency_us": {"p50": 100.0, "p99": 300.0},
            "target": {"cpu": {"cpu_us_per_call": 50.0}, "rss_kib": 2048,
                       "per_pid": [{"process": {"cpu_us_per_call": 30.0}}]}
        });
        let m = parse_bench_json(&v).unwrap();
        assert_eq!(
            m,
            Measured {
                calls_per_s: 1234.5,
                p50_us: 100.0,
                p99_us: 300.0,
                errors: 2,
                target_cpu_us: Some(50.0),
                proxy_cpu_us: Some(30.0),
                rss_mib: Some(2.0)
            }
        );
        let without_target =
            json!({"calls_per_s": 1.0, "errors": 0, "latency_us": {"p50": 1.0, "p99": 1.0}, "target": null});
        assert_eq!(parse_bench_json(&without_target).unwrap().target_cpu_us, None);
        assert!(parse_bench_json(&json!({})).is_err());
    }

    #[test]
    fn peer_rows_carry_ratios_against_direct_and_apiary() {
        let rows = vec![
            row(Target::Direct, 8, Ok(measured(40_000.0, 150.0, 20.0, 20.0))),
            row(Target::ApiaryStdio(StdioMode::Auto), 8, Ok(measured(20_000.0, 400.0, 50.0, 40.0))),
            row(Target::Supergateway, 8, Ok(measured(2_000.0, 4000.0, 500.0, 450.0))),
            row(Target::ThvProxy, 8, Err("thv is not installed: go install failed".into())),
        ];
        let table = markdown(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 4);
        // direct: no ratios.
        assert!(lines[2].ends_with("| — | — | — | — |"), "{}", lines[2]);
        // Apiary: against direct only (0.50 of the calls, 2.50× the CPU).
        assert!(lines[3].ends_with("| 0.50 | 2.50 | — | — |"), "{}", lines[3]);
        // supergateway: 0.05 of direct, 25× its CPU; Apiary does 10× its calls at 0.1 of the CPU.
        assert!(lines[4].ends_with("| 0.05 | 25.00 | 10.00 | 10.00 |"), "{}", lines[4]);
        assert!(lines[5].contains("not measured: thv is not installed"), "{}", lines[5]);
    }

    #[test]
    fn the_issue_targets_are_checked_per_cell() {
        let rows = vec![
            row(Target::Direct, 1, Ok(measured(7_000.0, 140.0, 20.0, 20.0))),
            row(Target::ApiaryStdio(StdioMode::Auto), 1, Ok(measured(5_000.0, 180.0, 50.0, 19.0))),
            row(Target::ApiaryStdio(StdioMode::Shared), 8, Ok(measured(20_000.0, 400.0, 50.0, 19.0))),
            row(Target::ApiaryHttp, 8, Ok(measured(15_000.0, 400.0, 50.0, 16.0))),
            row(Target::ApiaryStdio(StdioMode::PerSession), 64, Ok(measured(24_000.0, 2000.0, 50.0, 30.0))),
            row(Target::ApiaryStdio(StdioMode::Auto), 64, Ok(measured(30_000.0, 2000.0, 50.0, 30.0))),
            row(Target::NpmMcpProxy, 64, Ok(measured(3_100.0, 9000.0, 300.0, 250.0))),
            row(Target::ThvProxy, 8, Ok(measured(3_000.0, 2000.0, 150.0, 140.0))),
        ];
        let checks = checks(&rows);
        let verdict = |needle: &str| {
            let found: Vec<&Check> = checks.iter().filter(|c| c.text.contains(needle)).collect();
            assert_eq!(found.len(), 1, "{needle}: {checks:#?}");
            found[0].met
        };
        assert!(verdict("+40 µs"), "p50 added at 1 session");
        assert!(verdict("(shared), sessions 8, 64 B: proxy CPU 19.0"));
        assert!(!verdict("Apiary → HTTP, sessions 8, 64 B: proxy CPU 16.0"), "15 µs limit for HTTP");
        assert!(!verdict("(per-session), sessions 64, 64 B: 24000 calls/s"));
        assert!(verdict("(auto), sessions 64, 64 B: 30000 calls/s"));
        assert!(!verdict("9.68× this peer"), "30000 / 3100 < 10");
        assert!(verdict("5.00× this peer"), "thv: 15000 / 3000 = 5");
        assert_eq!(checks.len(), 7);
        let text = checks_markdown(&checks);
        assert!(text.starts_with("Targets of the issue: 7 checked, 4 met, 3 missed."), "{text}");
        assert!(text.lines().nth(2).unwrap().starts_with("- **missed**"), "misses first: {text}");
    }

    #[test]
    fn rows_json_keeps_errors_and_reports() {
        let rows = vec![row(Target::PyMcpProxy, 1, Err("boom".into()))];
        let v = rows_json(&rows);
        assert_eq!(v[0]["target"], "mcp-proxy-pypi");
        assert_eq!(v[0]["error"], "boom");
        assert!(v[0]["report"].is_null());
    }
}
