//! The official MCP conformance suite through `apiary vmcp serve` in front of the fixture
//! server, with the `priority` strategy so names stay as the suite expects: for 2025-11-25
//! every scenario must pass, sampling and elicitation relayed from the backend to the suite's
//! client included; for 2026-07-28 every scenario too, the fixture being a 2026-07-28
//! backend the vMCP speaks that revision to (input-required results, tasks and listen
//! streams pass through it).
//! Needs the suite (Node), which xtask's test harness provides.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::process::Stdio;
use std::time::Duration;

use apiary_testkit::conformance::{EXPECTED_2025_11_25, Summary, run_server_suite};
use apiary_testkit::http_fixture;
use support::Apiary;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Runs the suite's `requirements` set through `apiary vmcp serve` in front of the fixture
/// over HTTP, with the `priority` strategy so names stay as the suite expects.
async fn suite_through_the_vmcp(requirements: &str) -> Summary {
    let apiary = Apiary::new();
    let backend = http_fixture::start(&[]).await;
    let config = apiary.scratch().join("vmcp.yaml");
    std::fs::write(
        &config,
        format!(
            "name: conformance\nbackends:\n  - {{name: fixture, url: '{}', transport: streamable-http}}\n\
             aggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [fixture]}}\n",
            backend.url
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::from(apiary.command(&[
        "vmcp",
        "serve",
        "--port",
        "0",
        "--config",
        config.to_str().unwrap(),
    ]));
    cmd.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    let mut vmcp = cmd.spawn().unwrap();
    let mut lines = BufReader::new(vmcp.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();

    let summary = run_server_suite(&url, requirements).await;
    vmcp.kill().await.unwrap();
    drop(backend);
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_the_vmcp() {
    let summary = suite_through_the_vmcp("2025-11-25").await;
    summary.assert_all_pass(EXPECTED_2025_11_25);
    for scenario in ["tools-call-sampling", "tools-call-elicitation", "tools-call-with-progress", "resources-subscribe"]
    {
        assert!(summary.passed.iter().any(|name| name == scenario), "{scenario} not passed\n{}", summary.output);
    }
}

/// The 2026-07-28 scenarios through the vMCP, whose backend speaks 2026-07-28: every one
/// of the 50 passes, every check (31 on 2026-12-07, when backends were spoken to in
/// 2025-11-25 only).
const MODERN_FLOOR: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2026_07_28_through_the_vmcp() {
    let summary = suite_through_the_vmcp("2026-07-28").await;
    summary.assert_all_pass(MODERN_FLOOR);
    for scenario in ["input-required-result-multi-round", "tasks-lifecycle", "tasks-mrtr-input", "server-stateless"] {
        assert!(summary.passed.iter().any(|name| name == scenario), "{scenario} not passed\n{}", summary.output);
    }
}
