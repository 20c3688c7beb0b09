//! The official Python SDK (PyPI `mcp`, pinned in xtask) through the proxy to a real legacy
//! server, npm `server-everything` over stdio: in its 2026-07-28 mode (the bridge: the
//! server's sampling request reaches the client as an `InputRequiredResult` the SDK answers
//! and retries) and in legacy mode (a session; the sampling request on its stream). Either
//! way the client lists tools, calls `echo`, and the sampling reaches the client once.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use apiary_proxy::ProxyHandle;
use apiary_testkit::env;
use serde_json::Value;

const SAMPLED: &str = "sampled by the python client";

async fn everything(name: &str) -> ProxyHandle {
    common::command_proxy(name, env::tool("mcp-server-everything"), &["stdio"], |_| {}).await
}

async fn python(url: &str, mode: &str) -> Value {
    let mut cmd = env::command("python3");
    cmd.arg(common::sdk::script("py_modern_client.py")).arg(url).arg(mode).arg("trigger-sampling-request");
    common::sdk::run_script(cmd).await.unwrap()
}

fn check(out: &Value, version: &str) {
    assert_eq!(out["protocolVersion"], version, "{out}");
    let tools: Vec<&str> = out["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"echo"), "{out}");
    assert_eq!(out["echo"]["content"][0]["text"], "Echo: hello through the bridge", "{out}");
    assert_ne!(out["sampled"]["isError"], true, "{out}");
    let text = out["sampled"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains(SAMPLED), "the client's sample reached the server: {out}");
    assert_eq!(out["samplings"], 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_2026_07_28_mode_samples_through_the_bridge() {
    let proxy = everything("py-modern-everything").await;
    let out = python(&proxy.url(), "2026-07-28").await;
    check(&out, "2026-07-28");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_in_legacy_mode_samples_through_the_proxy() {
    let proxy = everything("py-legacy-everything").await;
    let out = python(&proxy.url(), "legacy").await;
    check(&out, "2025-11-25");
    proxy.shutdown().await;
}
