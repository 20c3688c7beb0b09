//! The bridge under load (issue 18, "what it must show"): 20 official Python SDK clients in
//! 2026-07-28 mode calling `echo` at once through the proxy in front of the real npm
//! `server-everything` over stdio (a legacy server), beside 5 clients per era each doing a
//! sampling round trip (modern: the `InputRequiredResult` the bridge makes of the child's
//! request; legacy: a session and the request on its stream). Every value is unique to its
//! client, so nothing lost and nothing delivered to the wrong client is checked by value:
//! every call answered with its own message, every sampling result carrying its own client's
//! answer, every sampling callback asked its own prompt only.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_testkit::env;
use serde_json::Value;

/// Modern clients calling `echo` at once, and the calls each makes at the least.
const CALLERS: usize = 20;
const CALLS: usize = 25;
/// Sampling clients of each era.
const SAMPLERS: usize = 5;
/// Bounds the whole run (the driver is killed past it).
const LIMIT: Duration = Duration::from_secs(240);

/// Runs the Python driver to completion within [`LIMIT`]; its JSON report.
async fn drive(url: &str) -> Value {
    let mut cmd = env::command("python3");
    cmd.arg(common::sdk::script("py_modern_load.py")).arg(url).args([
        CALLERS.to_string(),
        CALLS.to_string(),
        SAMPLERS.to_string(),
        "trigger-sampling-request".to_owned(),
    ]);
    tokio::time::timeout(LIMIT, common::sdk::run_script(cmd))
        .await
        .unwrap_or_else(|_| panic!("the load did not finish within {LIMIT:?}"))
        .unwrap()
}

/// Every problem one caller's report shows: calls lost (an error, no text) or answered with
/// another message.
fn caller_problems(i: usize, caller: &Value) -> Vec<String> {
    let calls = caller["calls"].as_array().unwrap();
    let mut problems = Vec::new();
    if calls.len() < CALLS {
        problems.push(format!("caller-{i} made {} calls, not {CALLS}", calls.len()));
    }
    for (j, call) in calls.iter().enumerate() {
        let message = format!("caller-{i}-call-{j}");
        // The message sent is checked too: the report cannot vouch for a call it skipped.
        if call[0] != message.as_str() {
            problems.push(format!("caller-{i}'s call {j} sent {}", call[0]));
        } else if call[1] != format!("Echo: {message}").as_str() {
            problems.push(format!("{message}: answered {} / error {}", call[1], call[2]));
        }
    }
    problems
}

/// Every problem one sampler's report shows: an error, a result without its own answer (or
/// with another's), or a callback asked something other than its own prompt, or twice.
fn sampler_problems(sampler: &Value) -> Vec<String> {
    let name = sampler["name"].as_str().unwrap();
    let text = sampler["text"].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    if sampler["error"] != Value::Null || sampler["is_error"] != false {
        problems.push(format!("{name} failed: {sampler}"));
    }
    if !text.contains(&format!("\"sampled-for-{name}\"")) {
        problems.push(format!("{name}'s result does not carry its own answer: {sampler}"));
    }
    if text.matches("sampled-for-").count() != 1 {
        problems.push(format!("{name}'s result carries another client's answer: {sampler}"));
    }
    let seen: Vec<&str> = sampler["seen"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    if seen.len() != 1 || !seen[0].contains(&format!("prompt-of-{name}")) {
        problems.push(format!("{name} was not asked its own prompt exactly once: {sampler}"));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_modern_callers_beside_sampling_round_trips_of_both_eras_lose_and_misdeliver_nothing() {
    let proxy = common::command_proxy("modern-load", env::tool("mcp-server-everything"), &["stdio"], |cfg| {
        // Room for every sampler's own child (5 leased by modern calls, 5 legacy sessions).
        cfg.stdio.max_session_children = 2 * SAMPLERS as u32;
    })
    .await;
    let report = drive(&proxy.url()).await;
    proxy.shutdown().await;

    let callers = report["callers"].as_array().unwrap();
    assert_eq!(callers.len(), CALLERS, "{report}");
    let problems: Vec<String> = callers.iter().enumerate().flat_map(|(i, c)| caller_problems(i, c)).collect();
    let calls: usize = callers.iter().map(|c| c["calls"].as_array().unwrap().len()).sum();
    assert!(
        problems.is_empty(),
        "{} problems in {calls} calls (first 10):\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n")
    );

    let samplers = report["samplers"].as_array().unwrap();
    let mut names: Vec<&str> = samplers.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut expected: Vec<String> =
        (0..SAMPLERS).flat_map(|k| [format!("legacy-{k}"), format!("modern-{k}")]).collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "{report}");
    let problems: Vec<String> = samplers.iter().flat_map(sampler_problems).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The round trips ran while the callers did: echo answers arrived between the first
    // sampler's start and the last one's end (the callers go on until every sampler is done).
    let first_start = samplers.iter().map(|s| s["echo_before"].as_u64().unwrap()).min().unwrap();
    let last_end = samplers.iter().map(|s| s["echo_after"].as_u64().unwrap()).max().unwrap();
    assert!(first_start < last_end, "no echo answer arrived while the samplers ran: {first_start} → {last_end}");
    assert!(calls >= CALLERS * CALLS);
    println!("{calls} echo calls answered right; the samplers ran from echo answer {first_start} to {last_end}");
}
