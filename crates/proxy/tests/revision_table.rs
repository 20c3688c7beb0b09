//! The 5 × 5 table of docs/modern.md: a raw client of each revision (2024-11-05 …
//! 2026-07-28) lists and calls a tool through the proxy in front of the fixture server
//! pinned to each revision (`--protocol-version REV`, or `--modern-only` for 2026-07-28).
//! Each cell's outcome is decided from the spec (docs/modern.md says how) and every cell is
//! reported by name, then the test fails if any cell did not behave as the table says.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_proxy::ProxyHandle;
use serde_json::{Value, json};

const REVISIONS: [&str; 5] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
const MODERN: &str = "2026-07-28";

/// The proxy in front of the fixture server speaking only `server` revision.
async fn proxy_for(server: &str) -> ProxyHandle {
    let args: &[&str] =
        if server == MODERN { &["--stdio", "--modern-only"] } else { &["--stdio", "--protocol-version", server] };
    common::fixture_proxy(&format!("table-{server}"), args).await
}

/// The version a legacy client of `client` must end up speaking with a server of `server`
/// through the proxy (None: the client speaks 2026-07-28, which negotiates nothing).
///
/// Legacy negotiation (lifecycle, every legacy revision): the server echoes the client's
/// version if it supports it, otherwise answers another one it supports; the client goes on
/// if it supports that one. The proxy serves a session on a legacy child at most the child's
/// version; through the bridge to a 2026-07-28 server it serves every legacy revision, so it
/// echoes the client's. A client of revision R is taken to support R and every earlier one
/// (as every SDK does); one that supports R alone would disconnect where this is older.
fn negotiated(client: &str, server: &str) -> Option<&'static str> {
    let client = REVISIONS.iter().copied().find(|r| *r == client)?;
    if client == MODERN {
        return None;
    }
    if server == MODERN { Some(client) } else { Some(client.min(REVISIONS.iter().copied().find(|r| *r == server)?)) }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn sse_frames(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| l.strip_prefix("data:")).filter_map(|d| serde_json::from_str(d.trim()).ok()).collect()
}

/// The answer in a JSON body, or the frame answering `id` in an SSE one.
async fn answer(res: reqwest::Response, id: &Value) -> Result<Value, String> {
    let status = res.status();
    let sse =
        res.headers().get("content-type").is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = res.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {text}"));
    }
    let v = if sse {
        sse_frames(&text).into_iter().find(|f| &f["id"] == id).ok_or_else(|| format!("no answer in {text}"))?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?
    };
    Ok(v)
}

/// Checks a `tools/list` answer and a `tools/call` of `echo` answer.
fn check_list_and_call(list: &Value, call: &Value, text: &str) -> Result<(), String> {
    let tools = list["result"]["tools"].as_array().ok_or_else(|| format!("tools/list: {list}"))?;
    if !tools.iter().any(|t| t["name"] == "echo") {
        return Err(format!("no echo tool: {list}"));
    }
    if call["result"]["content"][0]["text"] != text {
        return Err(format!("tools/call: {call}"));
    }
    Ok(())
}

/// A legacy client's answers carry nothing of 2026-07-28's result shape.
fn check_legacy_shape(list: &Value, call: &Value) -> Result<(), String> {
    for v in [list, call] {
        if v["result"].get("resultType").is_some() || v["result"].get("ttlMs").is_some() {
            return Err(format!("a 2026-07-28 member in a legacy answer: {v}"));
        }
    }
    Ok(())
}

/// A Streamable HTTP client of a legacy revision (2025-03-26 and later).
async fn streamable_client(url: &str, client: &str, expect: &str) -> Result<String, String> {
    let post = |session: Option<&str>, version: Option<&str>, body: Value| {
        let mut req = http()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        // 2025-06-18 on: every request after initialize names the negotiated version.
        if let Some(v) = version.filter(|v| *v >= "2025-06-18") {
            req = req.header("mcp-protocol-version", v);
        }
        req.send()
    };
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":client,"capabilities":{},"clientInfo":{"name":format!("client-{client}"),"version":"1"}}});
    let res = post(None, None, init).await.map_err(|e| e.to_string())?;
    let session = res.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let init = answer(res, &json!(1)).await?;
    let version = init["result"]["protocolVersion"].as_str().ok_or_else(|| format!("initialize: {init}"))?.to_owned();
    if version != expect {
        return Err(format!("negotiated {version}, the spec says {expect}: {init}"));
    }
    let session = session.ok_or("no Mcp-Session-Id")?;
    let s = Some(session.as_str());
    let v = Some(version.as_str());
    let res =
        post(s, v, json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await.map_err(|e| e.to_string())?;
    if res.status() != 202 {
        return Err(format!("initialized: HTTP {}", res.status()));
    }
    let list = answer(
        post(s, v, json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await.map_err(|e| e.to_string())?,
        &json!(2),
    )
    .await?;
    let text = format!("{client} client");
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}});
    let call = answer(post(s, v, call).await.map_err(|e| e.to_string())?, &json!(3)).await?;
    check_list_and_call(&list, &call, &text)?;
    check_legacy_shape(&list, &call)?;
    Ok(format!("listed and called at {version}"))
}

/// A 2024-11-05 client: HTTP+SSE (`GET /sse`, then POSTs to the announced endpoint; every
/// answer on the stream).
async fn sse_client(base: &str, expect: &str) -> Result<String, String> {
    let mut stream = http()
        .get(format!("{base}/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut next = async |text: &mut String, want: &dyn Fn(&str) -> Option<Value>| -> Result<Value, String> {
        loop {
            if let Some(v) = want(text) {
                return Ok(v);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk()).await;
            let chunk = chunk.map_err(|_| format!("nothing in time: {text}"))?.map_err(|e| e.to_string())?;
            text.push_str(std::str::from_utf8(&chunk.ok_or_else(|| format!("stream ended: {text}"))?).unwrap_or(""));
        }
    };
    let endpoint = next(&mut text, &|t: &str| {
        let mut lines = t.lines();
        while let Some(l) = lines.next() {
            if l.trim() == "event: endpoint" {
                return lines.next().and_then(|d| d.strip_prefix("data:")).map(|d| Value::from(d.trim()));
            }
        }
        None
    })
    .await?;
    let endpoint = format!("{base}{}", endpoint.as_str().unwrap_or_default());
    let post =
        |body: Value| http().post(&endpoint).header("content-type", "application/json").body(body.to_string()).send();
    let by_id = |id: i64| move |t: &str| sse_frames(t).into_iter().find(|f| f["id"] == id);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"client-2024-11-05","version":"1"}}});
    post(init).await.map_err(|e| e.to_string())?;
    let init = next(&mut text, &by_id(1)).await?;
    let version = init["result"]["protocolVersion"].as_str().ok_or_else(|| format!("initialize: {init}"))?.to_owned();
    if version != expect {
        return Err(format!("negotiated {version}, the spec says {expect}: {init}"));
    }
    post(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await.map_err(|e| e.to_string())?;
    post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await.map_err(|e| e.to_string())?;
    let list = next(&mut text, &by_id(2)).await?;
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"2024-11-05 client"}}});
    post(call).await.map_err(|e| e.to_string())?;
    let call = next(&mut text, &by_id(3)).await?;
    check_list_and_call(&list, &call, "2024-11-05 client")?;
    check_legacy_shape(&list, &call)?;
    Ok(format!("listed and called at {version} over HTTP+SSE"))
}

/// A 2026-07-28 client: every POST stands alone, with `_meta` and the mirror headers.
async fn modern_client(url: &str) -> Result<String, String> {
    let request = async |id: i64, method: &str, name: Option<&str>, mut params: Value| -> Result<Value, String> {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "client-2026-07-28", "version": "1"},
        });
        let mut req = http()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method);
        if let Some(n) = name {
            req = req.header("mcp-name", n);
        }
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let res = req.body(body.to_string()).send().await.map_err(|e| e.to_string())?;
        if res.headers().contains_key("mcp-session-id") {
            return Err("a modern answer carries a session".into());
        }
        answer(res, &json!(id)).await
    };
    let discover = request(1, "server/discover", None, json!({})).await?;
    let versions = &discover["result"]["supportedVersions"];
    if !versions.as_array().is_some_and(|v| v.iter().any(|v| v == MODERN)) {
        return Err(format!("server/discover: {discover}"));
    }
    let list = request(2, "tools/list", None, json!({})).await?;
    let call =
        request(3, "tools/call", Some("echo"), json!({"name":"echo","arguments":{"text":"2026-07-28 client"}})).await?;
    check_list_and_call(&list, &call, "2026-07-28 client")?;
    for v in [&list, &call] {
        if v["result"]["resultType"] != "complete" {
            return Err(format!("no resultType: {v}"));
        }
    }
    Ok("discovered, listed and called at 2026-07-28".into())
}

/// One cell: the client of revision `client` against the proxy in front of a `server` one.
async fn cell(proxy: &ProxyHandle, client: &str, server: &str) -> Result<String, String> {
    match negotiated(client, server) {
        None => modern_client(&proxy.url()).await,
        Some(expect) if client == "2024-11-05" => sse_client(&format!("http://{}", proxy.local_addr()), expect).await,
        Some(expect) => streamable_client(&proxy.url(), client, expect).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_revision_lists_and_calls_through_every_server_revision() {
    let mut failed = Vec::new();
    for server in REVISIONS {
        let proxy = proxy_for(server).await;
        for client in REVISIONS {
            let name = format!("client_{client}_x_server_{server}");
            match cell(&proxy, client, server).await {
                Ok(outcome) => println!("cell {name} ... ok: {outcome}"),
                Err(why) => {
                    println!("cell {name} ... FAILED: {why}");
                    failed.push(name);
                }
            }
        }
        proxy.shutdown().await;
    }
    assert!(failed.is_empty(), "cells that failed: {failed:?}");
}

#[test]
fn the_table_negotiates_as_the_spec_says() {
    assert_eq!(negotiated("2025-11-25", "2024-11-05"), Some("2024-11-05"));
    assert_eq!(negotiated("2025-03-26", "2025-11-25"), Some("2025-03-26"));
    assert_eq!(negotiated("2024-11-05", MODERN), Some("2024-11-05"));
    assert_eq!(negotiated(MODERN, "2024-11-05"), None);
}
