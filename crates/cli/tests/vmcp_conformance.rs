//! The official MCP conformance suite (requirement set 2025-11-25) through `apiary vmcp serve`
//! in front of the fixture server, with the `priority` strategy so names stay as the suite
//! expects: every scenario must pass, sampling and elicitation relayed from the backend to
//! the suite's client included. Needs the suite (Node), which xtask's test harness provides.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::process::Stdio;
use std::time::Duration;

use apiary_testkit::conformance::{EXPECTED_2025_11_25, run_server_suite};
use apiary_testkit::http_fixture;
use support::Apiary;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_the_vmcp() {
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

    let summary = run_server_suite(&url, "2025-11-25").await;
    vmcp.kill().await.unwrap();
    assert!(summary.failed.is_empty(), "failing scenarios: {:?}\n{}", summary.failed, summary.output);
    assert_eq!(summary.total_checks_failed, 0, "{}", summary.output);
    assert!(summary.passed.len() >= EXPECTED_2025_11_25, "passed: {:?}\n{}", summary.passed, summary.output);
    for scenario in ["tools-call-sampling", "tools-call-elicitation", "tools-call-with-progress", "resources-subscribe"]
    {
        assert!(summary.passed.iter().any(|name| name == scenario), "{scenario} not passed\n{}", summary.output);
    }
}
