//! 2024-11-05 HTTP+SSE clients through the proxy to an HTTP server that speaks only
//! 2026-07-28 (the fixture over Streamable HTTP, `--modern-only`), which has no `/sse`: the
//! proxy serves `/sse` and `/messages` itself, and each message runs through the HTTP bridge
//! (answers, and the server→client requests of `InputRequiredResult` rounds, on the stream).
//! A real client (the Python SDK's `sse_client`, Apiary's own in SSE mode) and a raw one
//! (the `/messages` refusals of bad-input.md, as for a stdio server).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_config::{RunConfig, Source};
use apiary_proxy::ProxyHandle;
use apiary_testkit::env;
use apiary_testkit::server::{HttpServer, ServerOptions, serve_http};
use apiary_transport::client::{ConnectOptions, McpClient, Transport};
use common::legacy_session::{client, next_frame};
use serde_json::{Value, json};

/// The fixture's tools that ask the client for input with an `InputRequiredResult`.
const SAMPLING_TOOL: &str = "test_input_required_result_sampling";
const ELICITATION_TOOL: &str = "test_input_required_result_elicitation";

/// The fixture over HTTP, modern-only, and the proxy in front of it.
async fn bridged_proxy(name: &str) -> (HttpServer, ProxyHandle) {
    let options = ServerOptions { modern_only: true, ..ServerOptions::default() };
    let upstream = serve_http("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
    let proxy = apiary_proxy::start(RunConfig::new(name, Source::remote(upstream.url())), None).await.unwrap();
    (upstream, proxy)
}

/// The Python SDK's 2024-11-05 client initializes, lists, calls `echo`, and answers the
/// sampling and the elicitation the upstream asks for while its tools run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sse_client_lists_calls_and_gives_input_through_a_modern_only_http_server() {
    let (upstream, proxy) = bridged_proxy("httpsse-python").await;
    let url = format!("http://{}/sse", proxy.local_addr());
    let mut cmd = env::command("python3");
    cmd.arg(common::sdk::script("py_sse_input_client.py")).arg(&url).arg(SAMPLING_TOOL).arg(ELICITATION_TOOL);
    let out = common::sdk::run_script(cmd).await.unwrap();

    let tools: Vec<&str> = out["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"echo") && tools.contains(&SAMPLING_TOOL), "{out}");
    assert_eq!(out["echo"]["content"][0]["text"], "over 2024-11-05 sse", "{out}");
    let sampled = out["sampled"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(sampled.contains("sampled over 2024-11-05 sse"), "the client's sample reached the server: {out}");
    assert_eq!(out["elicited"]["content"][0]["text"], "Hello, Ada!", "{out}");
    assert_eq!((out["samplings"].as_u64(), out["elicitations"].as_u64()), (Some(1), Some(1)), "{out}");

    // Apiary's own client in its SSE mode, too.
    let options = ConnectOptions { transport: Transport::Sse, timeout: Duration::from_secs(30), ..Default::default() };
    let c = McpClient::connect(&url, options).await.unwrap();
    let r = c.call_tool("echo", json!({"text": "rust over sse"})).await.unwrap();
    assert_eq!(r["content"][0]["text"], "rust over sse");
    c.close().await.unwrap();
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// An open `GET /sse` stream: its body, read as it comes.
struct Stream {
    res: reqwest::Response,
    text: String,
    seen: usize,
}

impl Stream {
    async fn open(base: &str) -> (Stream, String) {
        let res = client().get(format!("{base}/sse")).header("accept", "text/event-stream").send().await.unwrap();
        assert_eq!(res.status(), 200);
        let mut s = Stream { res, text: String::new(), seen: 0 };
        let endpoint = loop {
            if let Some(at) = s.text.find("event: endpoint") {
                let rest = &s.text[at..];
                if let Some(data) = rest.lines().nth(1).and_then(|l| l.strip_prefix("data:"))
                    && rest.contains("\n\n")
                {
                    break data.trim().to_owned();
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), s.res.chunk()).await.unwrap().unwrap().unwrap();
            s.text.push_str(std::str::from_utf8(&chunk).unwrap());
        };
        (s, format!("{base}{endpoint}"))
    }

    async fn frame(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        next_frame(&mut self.res, &mut self.text, &mut self.seen, want).await
    }
}

async fn post(url: &str, body: &str) -> reqwest::Response {
    client().post(url).header("content-type", "application/json").body(body.to_owned()).send().await.unwrap()
}

/// A raw 2024-11-05 client: the endpoint names the proxy's `/messages`; the refusals are the
/// stdio front's (no `session_id` 400, an unknown one 404, a batch 400, a request before
/// `initialize` 400, a second `initialize` 400); answers and input requests travel on the
/// stream; the stream is the session (once it closes, its id is unknown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_sse_client_gets_the_stdio_fronts_answers_from_the_http_bridge() {
    let (upstream, proxy) = bridged_proxy("httpsse-raw").await;
    let base = format!("http://{}", proxy.local_addr());
    let (mut s, endpoint) = Stream::open(&base).await;
    assert!(endpoint.starts_with(&format!("{base}/messages?session_id=")), "{endpoint}");

    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert_eq!(post(&format!("{base}/messages"), list).await.status(), 400, "no session_id");
    assert_eq!(post(&format!("{base}/messages?session_id=nope"), list).await.status(), 404, "unknown session");
    assert_eq!(post(&endpoint, list).await.status(), 400, "before initialize");
    assert_eq!(post(&endpoint, &format!("[{list}]")).await.status(), 400, "a batch");
    assert_eq!(post(&endpoint, "{not json").await.status(), 400, "not JSON");

    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2024-11-05","capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}});
    assert_eq!(post(&endpoint, &init.to_string()).await.status(), 202);
    let v = s.frame(|f| f["id"] == 1).await;
    assert_eq!(v["result"]["protocolVersion"], "2024-11-05", "{v}");
    assert_eq!(v["result"]["serverInfo"]["name"], "apiary-testkit-server", "{v}");
    assert_eq!(post(&endpoint, &init.to_string()).await.status(), 400, "initialized twice");
    assert_eq!(post(&endpoint, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await.status(), 202);

    assert_eq!(post(&endpoint, list).await.status(), 202);
    let v = s.frame(|f| f["id"] == 2).await;
    assert!(v["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{v}");
    assert!(v["result"].get("resultType").is_none(), "a legacy result: {v}");

    // The sampling the upstream asks for comes as a request on the stream; the answer,
    // POSTed back, completes the call there.
    let call = json!({"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":SAMPLING_TOOL,"arguments":{}}});
    assert_eq!(post(&endpoint, &call.to_string()).await.status(), 202);
    let ask = s.frame(|f| f.get("method").is_some()).await;
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"Paris"},"model":"m","stopReason":"endTurn"}});
    assert_eq!(post(&endpoint, &answer.to_string()).await.status(), 202);
    let done = s.frame(|f| f["id"] == "c").await;
    assert!(done["result"]["content"][0]["text"].as_str().unwrap_or_default().contains("Paris"), "{done}");
    assert_eq!(post(&endpoint, &answer.to_string()).await.status(), 400, "an answer nobody waits for");

    // The stream is the session: closed, its id is unknown.
    drop(s);
    let mut gone = false;
    for _ in 0..100 {
        if post(&endpoint, list).await.status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the session outlived its stream");

    // The proxy's shutdown ends an open stream rather than wait out its 10 s grace for the
    // client to leave.
    let (mut open, _) = Stream::open(&base).await;
    let stopping = tokio::spawn(proxy.shutdown());
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(8), open.res.chunk()).await;
        match chunk.expect("the stream ends at shutdown, within the grace period") {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        }
    }
    stopping.await.unwrap();
    upstream.shutdown().await.unwrap();
}
