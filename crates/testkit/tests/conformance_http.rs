//! The official MCP conformance suite (requirement set 2025-11-25) run against the fixture
//! server over Streamable HTTP: every scenario must pass, the scored ones and the three the
//! requirement set runs without scoring (server-session-lifecycle, json-schema-2020-12,
//! server-sse-polling).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Scenarios `conformance server --requirements 2025-11-25` runs (30 scored + 3 not scored).
const EXPECTED_SCENARIOS: usize = 33;
/// Bound on the whole suite run (it takes about a minute).
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);
/// Bound on the server printing its URL.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the suite's `=== SUMMARY ===` block says.
#[derive(Debug)]
struct Summary {
    passed: Vec<String>,
    failed: Vec<String>,
    total_checks_passed: u64,
    total_checks_failed: u64,
}

/// Parses the summary block: one `✓ name: N passed, M failed` (or `✗ ...`) line per
/// scenario, then `Total: N passed, M failed`.
fn parse_summary(output: &str) -> Option<Summary> {
    let block = output.split("=== SUMMARY ===").nth(1)?;
    let mut summary = Summary {
        passed: vec![],
        failed: vec![],
        total_checks_passed: 0,
        total_checks_failed: 0,
    };
    for line in block.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("✓ ") {
            summary.passed.push(rest.split(':').next()?.to_owned());
        } else if let Some(rest) = line.strip_prefix("✗ ") {
            summary.failed.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("Total: ") {
            let mut numbers = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|part| !part.is_empty());
            summary.total_checks_passed = numbers.next()?.parse().ok()?;
            summary.total_checks_failed = numbers.next()?.parse().ok()?;
            return Some(summary);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_every_2025_11_25_scenario_over_http() {
    let workdir = tempfile::tempdir().unwrap();
    let server_log = std::fs::File::create(workdir.path().join("server.log")).unwrap();
    let mut server = common::server_command()
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(server_log)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line())
        .await
        .expect("the server printed no URL in time")
        .unwrap()
        .expect("the server exited before printing its URL");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );

    let mut suite = tokio::process::Command::from(apiary_testkit::env::command("conformance"));
    suite
        .args(["server", "--url", &url, "--requirements", "2025-11-25"])
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SUITE_TIMEOUT, suite.output())
        .await
        .expect("the conformance suite did not finish in time")
        .unwrap();
    server.kill().await.unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = || {
        let log = std::fs::read_to_string(workdir.path().join("server.log")).unwrap_or_default();
        format!(
            "suite stdout:\n{stdout}\nsuite stderr:\n{}\nserver log:\n{log}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let summary =
        parse_summary(&stdout).unwrap_or_else(|| panic!("no summary in the output\n{}", report()));
    assert!(
        summary.failed.is_empty(),
        "failing scenarios: {:?}\n{}",
        summary.failed,
        report()
    );
    assert_eq!(summary.total_checks_failed, 0, "{}", report());
    assert_eq!(
        summary.passed.len(),
        EXPECTED_SCENARIOS,
        "passed: {:?}\n{}",
        summary.passed,
        report()
    );
    for scenario in [
        "server-sse-polling",
        "json-schema-2020-12",
        "server-session-lifecycle",
        "dns-rebinding-protection",
    ] {
        assert!(
            summary.passed.iter().any(|name| name == scenario),
            "{scenario} not passed\n{}",
            report()
        );
    }
    assert!(summary.total_checks_passed > 0, "{}", report());
    assert!(
        output.status.success(),
        "suite exit status {}\n{}",
        output.status,
        report()
    );
}

#[test]
fn summary_parser_reads_passes_failures_and_totals() {
    let text = "noise\n=== SUMMARY ===\n✓ ping: 2 passed, 0 failed\n✗ tools-list: 1 passed, 2 failed\n\nTotal: 3 passed, 2 failed\n";
    let summary = parse_summary(text).unwrap();
    assert_eq!(summary.passed, vec!["ping"]);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(
        (summary.total_checks_passed, summary.total_checks_failed),
        (3, 2)
    );
    assert!(parse_summary("no summary here").is_none());
}
