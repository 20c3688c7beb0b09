//! The official MCP conformance suite (requirement set 2025-11-25) run against the fixture
//! server over Streamable HTTP: every scenario must pass, the scored ones and the three the
//! requirement set runs without scoring (server-session-lifecycle, json-schema-2020-12,
//! server-sse-polling).

mod common;

use apiary_testkit::conformance::{EXPECTED_2025_11_25, run_server_suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_every_2025_11_25_scenario_over_http() {
    let (mut server, url) = common::spawn_http().await;
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"), "{url}");

    let summary = run_server_suite(&url, "2025-11-25").await;
    server.kill().await.unwrap();
    assert!(summary.failed.is_empty(), "failing scenarios: {:?}\n{}", summary.failed, summary.output);
    assert_eq!(summary.total_checks_failed, 0, "{}", summary.output);
    assert_eq!(summary.passed.len(), EXPECTED_2025_11_25, "passed: {:?}\n{}", summary.passed, summary.output);
    for scenario in
        ["server-sse-polling", "json-schema-2020-12", "server-session-lifecycle", "dns-rebinding-protection"]
    {
        assert!(summary.passed.iter().any(|name| name == scenario), "{scenario} not passed\n{}", summary.output);
    }
    assert!(summary.success, "{}", summary.output);
}
