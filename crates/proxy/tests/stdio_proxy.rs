//! The proxy in front of the real fixture server over stdio: the conformance suite through
//! it, seed 000's bare POST, crash recovery, and the edge checks.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use apiary_testkit::conformance::{EXPECTED_2025_11_25, run_server_suite};
use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_the_proxy_over_stdio() {
    let proxy = common::testkit_proxy(common::testkit_config("conformance")).await;
    let summary = run_server_suite(&proxy.url(), "2025-11-25").await;
    proxy.shutdown().await;
    assert!(summary.failed.is_empty(), "failing scenarios: {:?}\n{}", summary.failed, summary.output);
    assert_eq!(summary.total_checks_failed, 0, "{}", summary.output);
    assert_eq!(summary.passed.len(), EXPECTED_2025_11_25, "passed: {:?}\n{}", summary.passed, summary.output);
    assert!(summary.success, "{}", summary.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_one_shared_child() {
    let mut cfg = common::testkit_config("conformance-shared");
    cfg.stdio.mode = apiary_config::StdioMode::Shared;
    let proxy = common::testkit_proxy(cfg).await;
    let summary = run_server_suite(&proxy.url(), "2025-11-25").await;
    let pids = proxy.status().borrow().child_pids.clone();
    proxy.shutdown().await;
    assert!(summary.failed.is_empty(), "failing scenarios: {:?}\n{}", summary.failed, summary.output);
    assert_eq!(summary.passed.len(), EXPECTED_2025_11_25, "passed: {:?}\n{}", summary.passed, summary.output);
    assert_eq!(pids.len(), 1, "shared mode runs one child: {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_post_without_session_or_accept_gets_the_tool_list_as_json() {
    let proxy = common::testkit_proxy(common::testkit_config("bare")).await;
    let res = http()
        .post(proxy.url())
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers().get("mcp-session-id").is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], 1);
    let names: Vec<&str> =
        body["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo"), "{names:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_call_fails_the_caller_fast_and_the_child_restarts() {
    let proxy = common::testkit_proxy(common::testkit_config("crash")).await;
    let url = proxy.url();
    let client = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    client.call_tool("echo", json!({"text": "up"})).await.unwrap();

    // A long call in flight, then the child dies.
    let slow = {
        let url = url.clone();
        tokio::spawn(async move {
            let c = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
            let started = Instant::now();
            let out = c.call_tool("sleep", json!({"ms": 20_000})).await;
            (out, started.elapsed(), c)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sleeper_session_crash = {
        // Kill every child the proxy runs, the sleeper's among them.
        let pids = proxy.status().borrow().child_pids.clone();
        assert!(!pids.is_empty(), "the proxy reports no child: {pids:?}");
        let killed_at = Instant::now();
        for p in &pids {
            kill_9(*p);
        }
        killed_at
    };
    let (out, _elapsed, _c) = slow.await.unwrap();
    let err = out.expect_err("the call in flight must fail");
    let waited = sleeper_session_crash.elapsed();
    assert!(err.to_string().contains("-31004") || err.to_string().contains("upstream unavailable"), "{err}");
    assert!(waited < Duration::from_secs(2), "the caller waited {waited:?}");

    // Later calls succeed on a restarted child.
    let mut restarted = None;
    for _ in 0..50 {
        if let Ok(c) = McpClient::connect(&url, ConnectOptions::default()).await
            && let Ok(r) = c.call_tool("echo", json!({"text": "again"})).await
        {
            restarted = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = restarted.expect("calls succeed after the restart");
    assert_eq!(r["content"][0]["text"], "again");
    let st = proxy.status().borrow().clone();
    assert!(st.restarts >= 1, "{st:?}");
    assert!(st.last_exit.as_deref().is_some_and(|e| e.contains("signal 9")), "{st:?}");
    proxy.shutdown().await;
}

fn kill_9(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_checks_refuse_before_anything_reaches_the_child() {
    let proxy = common::testkit_proxy(common::testkit_config("edge")).await;
    let url = proxy.url();
    let c = http();
    let post = |body: &'static str| c.post(&url).header("content-type", "application/json").body(body);

    let r = post(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c.put(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST, DELETE");
    let r = c.post(&url).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r =
        post(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 406);
    let r = post(r#"{"jsonrpc":"#).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700);
    let r = post(r#"{"jsonrpc":"1.0","method":"tools/list","id":"x"}"#).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["error"]["code"].as_i64(), v["id"].as_str()), (Some(-32600), Some("x")));
    // A declared length over the cap is refused before any body is sent.
    let head = raw_exchange(
        proxy.local_addr(),
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let r = post(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)
        .header("mcp-session-id", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -31001);
    let r = c.get(format!("http://{}/health", proxy.local_addr())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    proxy.shutdown().await;
}

/// Sends raw request bytes and returns what the server answers first.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Opens a session with raw HTTP and returns its id.
async fn open_session(c: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = c.post(url).header("content-type", "application/json").body(init.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    assert!(sid.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{sid}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rules_duplicate_ids_get_delete_and_versions() {
    let proxy = common::testkit_proxy(common::testkit_config("sessions")).await;
    let url = proxy.url();
    let c = http();
    let sid = open_session(&c, &url).await;
    let post = |body: Value| {
        c.post(&url).header("content-type", "application/json").header("mcp-session-id", &sid).body(body.to_string())
    };

    // A request id still in flight cannot be reused in the same session (row 18).
    let slow =
        post(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":1500}}}))
            .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dup = post(json!({"jsonrpc":"2.0","id":5,"method":"tools/list"})).send().await.unwrap();
    assert_eq!(dup.status(), 400);
    let v: Value = dup.json().await.unwrap();
    assert_eq!((v["error"]["code"].as_i64(), v["id"].as_i64()), (Some(-32600), Some(5)));
    let first: Value = slow.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(first["id"], 5);
    assert!(first["result"].is_object(), "{first}");
    // Answered: the id is free again.
    let again = post(json!({"jsonrpc":"2.0","id":5,"method":"tools/list"})).send().await.unwrap();
    assert_eq!(again.status(), 200);

    // An unsupported version header is refused with the supported list (row 14).
    let r = post(json!({"jsonrpc":"2.0","id":6,"method":"tools/list"}))
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["data"]["supported"].as_array().unwrap().iter().any(|x| x == "2025-11-25"), "{v}");

    // Session-only requests without a session (row 12), GET without a session.
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(&url).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(r.status(), 400);

    // DELETE ends the session; a second DELETE and later requests get 404 (rows 11, 13).
    let r = c.delete(&url).header("mcp-session-id", &sid).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.delete(&url).header("mcp-session-id", &sid).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post(json!({"jsonrpc":"2.0","id":7,"method":"tools/list"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    proxy.shutdown().await;
}
