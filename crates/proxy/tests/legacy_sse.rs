//! The 2024-11-05 HTTP+SSE transport for stdio servers: real clients (the Python SDK's
//! `mcp.client.sse` and Apiary's own) list and call tools through `/sse` + `/messages`,
//! directly and behind an ingress that strips a path prefix.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use apiary_transport::client::{ConnectOptions, McpClient, Transport};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::sdk::python_client;
use futures::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sse_clients_list_and_call_tools_through_sse() {
    let proxy = common::testkit_proxy(common::testkit_config("sse")).await;
    let url = format!("http://{}/sse", proxy.local_addr());

    let py = python_client(&url, "echo", &json!({"text": "over sse"})).await.unwrap();
    assert!(py["tools"].as_array().unwrap().iter().any(|t| t == "echo"), "{py}");
    assert_eq!(py["result"]["content"][0]["text"], "over sse", "{py}");

    let options = ConnectOptions { transport: Transport::Sse, timeout: Duration::from_secs(30), ..Default::default() };
    let client = McpClient::connect(&url, options).await.unwrap();
    let r = client.call_tool("echo", json!({"text": "rust over sse"})).await.unwrap();
    assert_eq!(r["content"][0]["text"], "rust over sse");
    client.close().await.unwrap();
    proxy.shutdown().await;
}

/// A stand-in for seed 000's Traefik `stripPrefix` middleware: strips `/fetch` and tells
/// the backend with `X-Forwarded-Prefix`.
async fn strip_prefix(State(backend): State<Arc<String>>, req: Request) -> Response {
    let path_q = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let stripped = path_q.strip_prefix("/fetch").unwrap_or(&path_q).to_owned();
    let client = reqwest::Client::new();
    let mut out = client.request(req.method().clone(), format!("{backend}{stripped}"));
    let hop = |k: &axum::http::HeaderName| {
        matches!(k.as_str(), "host" | "content-length" | "connection" | "transfer-encoding" | "keep-alive")
    };
    for (k, v) in req.headers() {
        if !hop(k) {
            out = out.header(k, v);
        }
    }
    out = out.header("x-forwarded-prefix", "/fetch");
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let res = out.body(body).send().await.unwrap();
    let mut b = Response::builder().status(res.status().as_u16());
    for (k, v) in res.headers() {
        if !hop(k) {
            b = b.header(k, v);
        }
    }
    b.body(Body::from_stream(res.bytes_stream().map(|r| r.map_err(std::io::Error::other)))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_path_stripping_ingress_the_endpoint_event_names_the_public_path() {
    let mut cfg = common::testkit_config("sse-prefix");
    cfg.proxy.trust_proxy_headers = true;
    let proxy = common::testkit_proxy(cfg).await;
    let backend = Arc::new(format!("http://{}", proxy.local_addr()));
    let app = axum::Router::new().fallback(strip_prefix).with_state(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("http://{ingress}/fetch/sse");
    let py = python_client(&url, "echo", &json!({"text": "through the ingress"})).await.unwrap();
    assert_eq!(py["result"]["content"][0]["text"], "through the ingress", "{py}");

    // The endpoint event itself names the prefixed path the ingress announced.
    let res = reqwest::Client::new()
        .get(format!("http://{}/sse", proxy.local_addr()))
        .header("accept", "text/event-stream")
        .header("x-forwarded-prefix", "/fetch")
        .send()
        .await
        .unwrap();
    let mut stream = res.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains("event: endpoint\ndata: /fetch/messages?session_id="), "{text}");

    // Without the header, the plain path.
    let direct = reqwest::Client::new()
        .get(format!("http://{}/sse", proxy.local_addr()))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut s2 = direct.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), s2.next()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data: /messages?session_id="));
    server.abort();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_refusals_are_the_posts_own_answer() {
    let proxy = common::testkit_proxy(common::testkit_config("sse-refusals")).await;
    let base = format!("http://{}", proxy.local_addr());
    let c = reqwest::Client::new();
    let post = |q: &str| c.post(format!("{base}/messages{q}")).header("content-type", "application/json").body("{}");
    assert_eq!(post("").send().await.unwrap().status(), 400);
    assert_eq!(post("?session_id=").send().await.unwrap().status(), 400);
    let r = post("?session_id=nope").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], -31001);
    assert_eq!(c.get(format!("{base}/messages")).send().await.unwrap().status(), 405);
    let r = c.post(format!("{base}/sse")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "GET"));
    let r = c.get(format!("{base}/sse")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 406);
    proxy.shutdown().await;
}
