//! The official MCP conformance suite's 2026-07-28 requirement set run against the fixture
//! server over Streamable HTTP: the yardstick the proxy's modern front is measured by
//! (`crates/proxy/tests/modern.rs` runs the same set through the proxy). The fixture passes
//! all 50 scenarios; a failure prints the failing names. Set `APIARY_CONFORMANCE_OUTPUT_DIR`
//! to keep each scenario's checks.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use apiary_testkit::conformance::run_server_suite;

/// Scenarios of the 2026-07-28 set: the fixture passes every one.
const FIXTURE_FLOOR: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_2026_07_28_against_the_fixture_over_http() {
    let (mut server, url) = common::spawn_http().await;
    let summary = run_server_suite(&url, "2026-07-28").await;
    server.kill().await.unwrap();
    summary.assert_all_pass(FIXTURE_FLOOR);
}
