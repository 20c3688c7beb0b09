//! Runs the official MCP conformance suite's client scenarios (`conformance client`) against
//! this client. The suite starts its own scenario server and launches a driver with the
//! server URL as the last argument; the driver is the ignored test `conformance_driver`
//! below, re-entered through this very test binary.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod client_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiary_transport::client::{ConnectOptions, McpClient};
use client_common::{WAIT, tool};
use serde_json::{Value, json};

/// The legacy-era client scenarios of conformance 0.2.0-alpha.12 that need no OAuth.
const SCENARIOS: [&str; 4] = ["initialize", "tools_call", "sse-retry", "json-schema-2020-12-preservation"];

#[test]
fn conformance_client_scenarios() {
    let me = std::env::current_exe().unwrap();
    let out = tempdir();
    for scenario in SCENARIOS {
        // The suite appends the server URL, which libtest takes as a second (non-matching)
        // name filter; `--exact` keeps it from selecting anything else.
        let driver = format!("{} conformance_driver --exact --ignored --nocapture --test-threads=1", me.display());
        let mut child = Command::new(tool("conformance"))
            .args(["client", "--scenario", scenario, "--command", &driver])
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT * 3;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("conformance scenario {scenario} did not finish in {:?}", WAIT * 3);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = child.wait_with_output().unwrap();
        assert!(
            status.success(),
            "scenario {scenario} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("apiary-client-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Not a test on its own: the client side of a scenario, launched by `conformance client`.
/// Without `MCP_CONFORMANCE_SCENARIO` there is nothing to drive, so it returns.
#[test]
#[ignore = "driver launched by conformance_client_scenarios"]
fn conformance_driver() {
    let Ok(scenario) = std::env::var("MCP_CONFORMANCE_SCENARIO") else {
        return;
    };
    let url = std::env::args().next_back().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(drive(&scenario, &url));
}

async fn drive(scenario: &str, url: &str) {
    let options = ConnectOptions { timeout: WAIT, ..ConnectOptions::default() };
    let client = McpClient::connect(url, options).await.unwrap();
    match scenario {
        "initialize" => {}
        "tools_call" => {
            let tools = client.list_tools().await.unwrap();
            assert!(tools.iter().any(|t| t["name"] == "add_numbers"));
            let r = client.call_tool("add_numbers", json!({"a": 2, "b": 3})).await.unwrap();
            println!("{r}");
        }
        "sse-retry" => {
            let tools = client.list_tools().await.unwrap();
            let name = tools[0]["name"].as_str().unwrap().to_owned();
            // The server closes this call's stream early; the answer must come after a
            // GET with Last-Event-ID, no sooner than the advertised retry delay.
            let r = client.call_tool(&name, json!({})).await.unwrap();
            println!("{r}");
        }
        "json-schema-2020-12-preservation" => {
            let tools = client.list_tools().await.unwrap();
            let focal = tools.iter().find(|t| t["name"] == "json_schema_2020_12_tool").unwrap();
            let echo = tools.iter().find(|t| t["name"] != "json_schema_2020_12_tool").unwrap();
            let schema: Value = focal["inputSchema"].clone();
            let r = client.call_tool(echo["name"].as_str().unwrap(), json!({ "schema": schema })).await.unwrap();
            println!("{r}");
        }
        other => panic!("no driver for scenario {other}"),
    }
    client.close().await.unwrap();
}
