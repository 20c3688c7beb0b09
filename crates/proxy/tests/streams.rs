//! Streams and memory: a client that drops its SSE stream mid-response resumes it with
//! `Last-Event-ID` and gets every later event exactly once; and a thousand sessions opened,
//! used and closed leave the proxy's memory where it was.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

/// Splits an SSE byte stream into (id, data) events; comments and priming events with
/// empty data are kept as events with empty data.
fn events(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
        .map(|block| {
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (id, data)
        })
        .collect()
}

async fn open_session(c: &reqwest::Client, url: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = c.post(url).header("content-type", "application/json").body(init.to_string()).send().await.unwrap();
    r.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_resumes_with_last_event_id_losing_and_repeating_nothing() {
    let proxy = common::testkit_proxy(common::testkit_config("resume")).await;
    let url = proxy.url();
    let c = reqwest::Client::new();
    let sid = open_session(&c, &url).await;

    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"tok"}}});
    let res = c
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");

    // Read until the first progress event, then drop the connection mid-response.
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    let last_id = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        let evs = events(&seen);
        if let Some((Some(id), _)) = evs.iter().find(|(_, d)| d.contains("notifications/progress")) {
            break id.clone();
        }
    };
    drop(body);
    let before = events(&seen);
    assert!(before.first().is_some_and(|(id, d)| id.is_some() && d.is_empty()), "a priming event comes first: {seen}");

    // Resume: the rest of the stream, exactly once.
    let resumed = c
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let mut body = resumed.bytes_stream();
    let mut after = String::new();
    let answer = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(15), body.next()).await.unwrap().unwrap().unwrap();
        after.push_str(&String::from_utf8_lossy(&chunk));
        if let Some((_, d)) = events(&after).into_iter().find(|(_, d)| d.contains("\"result\"")) {
            break serde_json::from_str::<Value>(&d).unwrap();
        }
    };
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["content"][0]["text"], "Tool with progress executed successfully");

    let progress = |evs: &[(Option<String>, String)]| -> Vec<f64> {
        evs.iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
            .filter(|v| v["method"] == "notifications/progress")
            .map(|v| v["params"]["progress"].as_f64().unwrap())
            .collect()
    };
    let mut all = progress(&before);
    all.extend(progress(&events(&after)));
    assert_eq!(all, vec![0.0, 50.0, 100.0], "every progress event once, in order");
    let ids_before: Vec<_> = before.iter().filter_map(|(id, _)| id.clone()).collect();
    let ids_after: Vec<_> = events(&after).iter().filter_map(|(id, _)| id.clone()).collect();
    assert!(ids_after.iter().all(|id| !ids_before.contains(id)), "no event twice: {ids_before:?} {ids_after:?}");

    // An id never issued, and one from a stream whose events were evicted, are refused.
    let bad = c
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("last-event-id", "999-999")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    proxy.shutdown().await;
}

/// A client that admits both JSON and SSE gets JSON when the answer comes first, and a
/// stream (priming event first) when a notification for the call comes before its answer or
/// when the answer is slower than the proxy's grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_admitted_the_answer_is_json_unless_something_comes_first() {
    let proxy = common::testkit_proxy(common::testkit_config("json-first")).await;
    let url = proxy.url();
    let c = reqwest::Client::new();
    let sid = open_session(&c, &url).await;
    let post = |id: i64, name: &str, args: Value, meta: Option<Value>| {
        let mut params = json!({"name": name, "arguments": args});
        if let Some(m) = meta {
            params["_meta"] = m;
        }
        c.post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .body(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params}).to_string())
            .send()
    };
    let content_type = |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_owned();

    let r = post(1, "echo", json!({"text": "quick"}), None).await.unwrap();
    assert_eq!(content_type(&r), "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["id"].clone(), v["result"]["content"][0]["text"].clone()), (json!(1), json!("quick")));

    let r = post(2, "test_tool_with_progress", json!({}), Some(json!({"progressToken": "p"}))).await.unwrap();
    assert_eq!(content_type(&r), "text/event-stream");
    let text = r.text().await.unwrap();
    let evs = events(&text);
    assert!(evs.first().is_some_and(|(id, d)| id.is_some() && d.is_empty()), "a priming event first: {text}");
    let kinds: Vec<Value> = evs.iter().filter_map(|(_, d)| serde_json::from_str(d).ok()).collect();
    assert_eq!(kinds.iter().filter(|v| v["method"] == "notifications/progress").count(), 3, "{text}");
    assert_eq!(kinds.last().unwrap()["id"], 2, "the answer last: {text}");

    let r = post(3, "sleep", json!({"ms": 600}), None).await.unwrap();
    assert_eq!(content_type(&r), "text/event-stream", "a slow answer is streamed");
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&events(&text).last().unwrap().1).unwrap();
    assert_eq!(answer["id"], 3, "{text}");
    proxy.shutdown().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_leave_no_memory_behind() {
    let proxy = common::testkit_proxy(common::testkit_config("rss")).await;
    let url = proxy.url();
    let c = reqwest::Client::new();
    let round = |n: usize| {
        let c = c.clone();
        let url = url.clone();
        async move {
            for _ in 0..n {
                let sid = open_session(&c, &url).await;
                let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}});
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("mcp-session-id", &sid)
                    .body(call.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let r = c.delete(&url).header("mcp-session-id", &sid).send().await.unwrap();
                assert_eq!(r.status(), 204);
            }
        }
    };
    // Warm up allocator pools and connection state, then measure around 1,000 sessions.
    round(200).await;
    let before = rss_kib();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        set.spawn(round(100));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let after = rss_kib();
    proxy.shutdown().await;
    // The proxy runs in this process (the children do not): its RSS is ours.
    assert!(after <= before + before / 10, "RSS grew from {before} KiB to {after} KiB over 1,000 sessions");
}
