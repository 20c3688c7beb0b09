//! The proxy's telemetry end to end, in front of the fixture server over stdio: `/metrics` on
//! the diagnostics listener parsed as Prometheus text and compared with the requests sent
//! (by method and outcome, including a 401 and a 403), a busy 9464 not stopping the proxy,
//! and spans read back from a real Jaeger (name, attributes, and the caller's trace).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apiary_config::{OidcConfig, RunConfig, SamplingRate};
use apiary_testkit::issuer::TestIssuer;
use apiary_testkit::jaeger::Jaeger;
use serde_json::{Value, json};

const AUDIENCE: &str = "apiary-test";

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn oidc(issuer: &TestIssuer) -> OidcConfig {
    OidcConfig {
        audience: Some(AUDIENCE.into()),
        insecure_allow_http: true,
        jwks_min_refresh_secs: Some(1),
        ..OidcConfig::new(issuer.issuer())
    }
}

/// Only `echo` may be called.
fn echo_only() -> Value {
    json!({"version": "1.0", "type": "cedarv1", "cedar": {
        "policies": ["permit(principal, action == Action::\"call_tool\", resource == Tool::\"echo\");"],
        "entities_json": "[]"}})
}

/// Sends one request and reads its whole answer; returns the status.
async fn send(url: &str, token: Option<&str>, session: Option<&str>, extra: &[(&str, &str)], body: &Value) -> u16 {
    let res = common::post_mcp(url, token, session, extra, body).await;
    let status = res.status().as_u16();
    let _ = res.bytes().await.unwrap();
    status
}

/// An initialized session (`initialize` then `notifications/initialized`).
async fn session(url: &str, token: Option<&str>) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"telemetry-test","version":"1"}}});
    let res = common::post_mcp(url, token, None, &[], &init).await;
    assert_eq!(res.status(), 200);
    let sid = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = res.bytes().await.unwrap();
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    assert_eq!(send(url, token, Some(&sid), &[], &note).await, 202);
    sid
}

fn tool_call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses Prometheus / OpenMetrics text: `# ` lines are metadata, every other line is
/// `name{label="value",…} number`. Escapes in label values (`\\`, `\"`, `\n`) are decoded.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_end, mut labels, rest) = match line.find('{') {
            Some(open) => {
                let mut labels = HashMap::new();
                let mut chars = line[open + 1..].char_indices().peekable();
                let mut key = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '}' => {
                            end = Some(open + 1 + i + 1);
                            break;
                        }
                        ',' | ' ' => {}
                        '=' => {
                            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                            let mut value = String::new();
                            loop {
                                match chars.next().unwrap().1 {
                                    '\\' => match chars.next().unwrap().1 {
                                        'n' => value.push('\n'),
                                        other => value.push(other),
                                    },
                                    '"' => break,
                                    other => value.push(other),
                                }
                            }
                            labels.insert(std::mem::take(&mut key), value);
                        }
                        other => key.push(other),
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (open, labels, &line[end..])
            }
            None => {
                let sp = line.find(' ').unwrap_or_else(|| panic!("no value: {line}"));
                (sp, HashMap::new(), &line[sp..])
            }
        };
        let name = line[..name_end].to_owned();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        labels.shrink_to_fit();
        out.push(Sample { name, labels, value });
    }
    out
}

async fn scrape(proxy: &apiary_proxy::ProxyHandle) -> Vec<Sample> {
    let addr = proxy.diagnostics_addr().expect("metrics are on by default");
    let res = http().get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = res.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    parse_exposition(&text)
}

/// The value of the one sample named `name` whose labels include `want` (0 if none).
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let hits: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(hits.len() <= 1, "{name} {want:?} matches {hits:?}");
    hits.first().map_or(0.0, |s| s.value)
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|s| s.name == name).map(|s| s.value).sum()
}

fn diag_on_free_port(cfg: &mut RunConfig) {
    cfg.telemetry.diagnostics_address = Some("127.0.0.1:0".into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_sent_by_method_and_outcome() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("metrics-count");
    cfg.policy.oidc = Some(oidc(&iss));
    cfg.policy.authz = Some(echo_only());
    diag_on_free_port(&mut cfg);
    let proxy = common::testkit_proxy(cfg).await;
    let url = proxy.url();
    let token = iss.mint(&iss.claims("pat", AUDIENCE));

    let sid = session(&url, Some(&token)).await;
    assert_eq!(
        send(&url, Some(&token), Some(&sid), &[], &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await,
        200
    );
    for i in 0..3 {
        let body = tool_call(10 + i, "echo", json!({"text": "hi"}));
        assert_eq!(send(&url, Some(&token), Some(&sid), &[], &body).await, 200);
    }
    assert_eq!(send(&url, Some(&token), Some(&sid), &[], &tool_call(20, "pid", json!({}))).await, 403);
    assert_eq!(send(&url, None, None, &[], &json!({"jsonrpc":"2.0","id":3,"method":"ping"})).await, 401);
    let unknown = json!({"jsonrpc":"2.0","id":4,"method":"x/user-chosen-name"});
    let unknown_status = send(&url, Some(&token), Some(&sid), &[], &unknown).await;

    let m = scrape(&proxy).await;
    let req = "toolhive_mcp_requests_total";
    let base = [("server", "metrics-count"), ("transport", "stdio")];
    let count = |method: &str, status: &str, code: &str| {
        let mut want = vec![("mcp_method", method), ("status", status), ("status_code", code)];
        want.extend(base);
        value(&m, req, &want)
    };
    assert_eq!(count("initialize", "success", "200"), 1.0);
    assert_eq!(count("notifications/initialized", "success", "202"), 1.0);
    assert_eq!(count("tools/list", "success", "200"), 1.0);
    assert_eq!(count("tools/call", "success", "200"), 3.0);
    assert_eq!(count("tools/call", "denied", "403"), 1.0);
    assert_eq!(count("unknown", "unauthenticated", "401"), 1.0, "refused before the body was read");
    let unknown_code = unknown_status.to_string();
    assert_eq!(count("other", apiary_status(unknown_status), &unknown_code), 1.0, "an unlisted method is `other`");
    assert_eq!(sum(&m, req), 9.0, "every request counted once: {m:?}");
    assert!(!m.iter().any(|s| s.labels.values().any(|v| v == "pat" || v == &sid || v.contains("user-chosen"))));

    let tools = "toolhive_mcp_tool_calls_total";
    assert_eq!(value(&m, tools, &[("tool", "echo"), ("status", "success"), ("server", "metrics-count")]), 3.0);
    assert_eq!(value(&m, tools, &[("tool", "pid"), ("status", "denied")]), 1.0);
    assert_eq!(sum(&m, tools), 4.0);

    let hist = "toolhive_mcp_request_duration_seconds_count";
    assert_eq!(value(&m, hist, &[("mcp_method", "tools/call"), ("status", "success")]), 3.0);
    assert_eq!(sum(&m, hist), 9.0);
    let inf = m
        .iter()
        .filter(|s| s.name == "toolhive_mcp_request_duration_seconds_bucket" && s.labels["le"] == "+Inf")
        .map(|s| s.value)
        .sum::<f64>();
    assert_eq!(inf, 9.0);

    assert_eq!(value(&m, "apiary_mcp_upstream_state", &[("state", "running")]), 1.0);
    assert_eq!(value(&m, "apiary_mcp_upstream_state", &[("state", "down")]), 0.0);
    // Every answer was read to its end: nothing is still open (bounded wait: the body's
    // last frame and the gauge's decrement race with the client seeing the end).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&proxy).await;
        let open = value(&m, "toolhive_mcp_active_connections", &base);
        if open == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{open} connections still counted as open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.shutdown().await;
}

fn apiary_status(code: u16) -> &'static str {
    match code {
        0..=399 => "success",
        401 => "unauthenticated",
        403 => "denied",
        _ => "error",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_9464_does_not_stop_the_proxy() {
    // Hold the default port; if something else already holds it, it is busy all the same.
    let _held = tokio::net::TcpListener::bind("127.0.0.1:9464").await;
    let proxy = common::testkit_proxy(common::testkit_config("busy-diag")).await;
    let addr = proxy.diagnostics_addr().unwrap();
    assert_ne!(addr.port(), 9464);
    assert!(addr.ip().is_loopback());
    let sid = session(&proxy.url(), None).await;
    assert!(!sid.is_empty());
    let m = scrape(&proxy).await;
    assert_eq!(value(&m, "toolhive_mcp_requests_total", &[("mcp_method", "initialize")]), 1.0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let mut cfg = common::testkit_config("no-metrics");
    cfg.telemetry.prometheus_metrics_path = false;
    let proxy = common::testkit_proxy(cfg).await;
    assert!(proxy.diagnostics_addr().is_none());
    assert!(!session(&proxy.url(), None).await.is_empty());
    proxy.shutdown().await;
}

/// A tag's value in a Jaeger span (`tags: [{key, type, value}]`).
fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key).map(|t| &t["value"])
}

fn spans(traces: &[Value]) -> Vec<&Value> {
    traces.iter().flat_map(|t| t["spans"].as_array().into_iter().flatten()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_jaeger_with_mcp_names_attributes_and_the_callers_trace() {
    let jaeger = Jaeger::start().await.unwrap();
    let service = format!("apiary-trace-test-{}", std::process::id());
    let mut cfg = common::testkit_config("trace-test");
    diag_on_free_port(&mut cfg);
    cfg.telemetry.endpoint = Some(jaeger.otlp_endpoint());
    cfg.telemetry.insecure = true;
    cfg.telemetry.service_name = Some(service.clone());
    cfg.telemetry.sampling_rate = SamplingRate::new(1.0).unwrap();
    let proxy = common::testkit_proxy(cfg).await;
    let url = proxy.url();

    let sid = session(&url, None).await;
    assert_eq!(send(&url, None, Some(&sid), &[], &tool_call(41, "echo", json!({"text": "a"}))).await, 200);
    // The caller's trace from the HTTP header.
    let header_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let header_parent = format!("00-{header_trace}-00f067aa0ba902b7-01");
    let body = tool_call(42, "echo", json!({"text": "b"}));
    assert_eq!(send(&url, None, Some(&sid), &[("traceparent", &header_parent)], &body).await, 200);
    // `_meta.traceparent` wins over the header.
    let meta_trace = "0af7651916cd43dd8448eb211c80319c";
    let meta_parent = format!("00-{meta_trace}-b7ad6b7169203331-01");
    let body = json!({"jsonrpc":"2.0","id":43,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"c"},"_meta":{"traceparent": meta_parent}}});
    assert_eq!(send(&url, None, Some(&sid), &[("traceparent", &header_parent)], &body).await, 200);
    proxy.shutdown().await; // flushes the batch

    let limit = Duration::from_secs(60);
    let found = jaeger
        .wait_for(&service, limit, |traces| {
            let all = spans(traces);
            let calls: Vec<&Value> = all.iter().copied().filter(|s| s["operationName"] == "tools/call echo").collect();
            (calls.len() >= 3 && all.iter().any(|s| s["operationName"] == "initialize"))
                .then(|| calls.into_iter().cloned().collect::<Vec<Value>>())
        })
        .await
        .unwrap();

    let by_id = |id: i64| found.iter().find(|s| tag(s, "jsonrpc.request.id") == Some(&json!(id.to_string()))).unwrap();
    let first = by_id(41);
    assert_eq!(tag(first, "span.kind"), Some(&json!("server")));
    assert_eq!(tag(first, "mcp.method.name"), Some(&json!("tools/call")));
    assert_eq!(tag(first, "rpc.system.name"), Some(&json!("jsonrpc")));
    assert_eq!(tag(first, "gen_ai.tool.name"), Some(&json!("echo")));
    assert_eq!(tag(first, "gen_ai.operation.name"), Some(&json!("execute_tool")));
    assert_eq!(tag(first, "mcp.session.id"), Some(&json!(sid)));
    assert_eq!(tag(first, "network.transport"), Some(&json!("tcp")));
    assert_eq!(tag(first, "client.address"), Some(&json!("127.0.0.1")));
    assert_eq!(tag(first, "http.response.status_code"), Some(&json!(200)));
    assert!(tag(first, "error.type").is_none());
    assert!(first["references"].as_array().is_none_or(Vec::is_empty), "a root span: {first}");

    let second = by_id(42);
    assert_eq!(second["traceID"], header_trace);
    assert_eq!(second["references"][0]["spanID"], "00f067aa0ba902b7");
    let third = by_id(43);
    assert_eq!(third["traceID"], meta_trace, "_meta wins over the header");
    assert_eq!(third["references"][0]["spanID"], "b7ad6b7169203331");
}

/// The text of a `tools/call` answer (JSON or one SSE event), with whether it is a tool error.
fn call_text(body: &str) -> (String, bool) {
    // An SSE answer may start with a priming event whose data is empty.
    let json = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.starts_with('{'))
        .unwrap_or(body.trim());
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    let result = &v["result"];
    (result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned(), result["isError"] == true)
}

/// The `traceparent` the fixture server received with call `id` (its `request_header` tool).
async fn traceparent_seen(url: &str, session: Option<&str>, caller: &str, id: u64) -> String {
    let body = tool_call(id, "request_header", json!({"name": "traceparent"}));
    let res = common::post_mcp(url, None, session, &[("traceparent", caller)], &body).await;
    assert_eq!(res.status(), 200);
    let (text, is_error) = call_text(&res.text().await.unwrap());
    assert!(!is_error, "the upstream got no traceparent: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstreams_get_the_proxys_span_as_parent_in_the_callers_trace() {
    let jaeger = Jaeger::start().await.unwrap();
    let upstream = apiary_testkit::http_fixture::start(&[]).await;
    let service = format!("apiary-traceparent-test-{}", std::process::id());
    let mut cfg = RunConfig::new("traceparent-test", apiary_config::Source::remote(&upstream.url));
    diag_on_free_port(&mut cfg);
    cfg.telemetry.endpoint = Some(jaeger.otlp_endpoint());
    cfg.telemetry.insecure = true;
    cfg.telemetry.service_name = Some(service.clone());
    cfg.telemetry.sampling_rate = SamplingRate::new(1.0).unwrap();
    let proxy = apiary_proxy::start(cfg, None).await.unwrap();
    let url = proxy.url();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let caller = format!("00-{trace}-{caller_span}-01");

    // Without a session the proxy bridges the call over a session of its own; with one it
    // forwards the request as it is. Both carry the proxy's span.
    let bridged = traceparent_seen(&url, None, &caller, 51).await;
    let sid = session(&url, None).await;
    let forwarded = traceparent_seen(&url, Some(&sid), &caller, 52).await;
    proxy.shutdown().await; // flushes the batch

    let mut parents = HashMap::new();
    for (id, seen) in [(51, &bridged), (52, &forwarded)] {
        let parts: Vec<&str> = seen.split('-').collect();
        assert_eq!(parts.len(), 4, "{seen}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"), "the caller's trace, sampled: {seen}");
        assert_eq!(parts[2].len(), 16, "{seen}");
        assert_ne!(parts[2], caller_span, "the parent is the proxy's span, not the caller's: {seen}");
        parents.insert(id, parts[2].to_owned());
    }
    assert_ne!(parents[&51], parents[&52], "each request has its own span");

    let limit = Duration::from_secs(60);
    let found = jaeger
        .wait_for(&service, limit, |traces| {
            let calls: Vec<Value> = spans(traces)
                .into_iter()
                .filter(|s| s["operationName"] == "tools/call request_header")
                .cloned()
                .collect();
            (calls.len() >= 2).then_some(calls)
        })
        .await
        .unwrap();
    for (id, parent) in &parents {
        let span = found.iter().find(|s| tag(s, "jsonrpc.request.id") == Some(&json!(id.to_string()))).unwrap();
        assert_eq!(span["traceID"], trace);
        assert_eq!(&span["spanID"], parent, "the upstream's parent is this request's span in Jaeger");
        assert_eq!(span["references"][0]["spanID"], caller_span, "and it is the caller's child");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_the_callers_traceparent_reaches_an_http_upstream_unchanged() {
    let upstream = apiary_testkit::http_fixture::start(&[]).await;
    let mut cfg = RunConfig::new("traceparent-off", apiary_config::Source::remote(&upstream.url));
    cfg.telemetry.prometheus_metrics_path = false;
    let proxy = apiary_proxy::start(cfg, None).await.unwrap();
    let url = proxy.url();
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(traceparent_seen(&url, None, caller, 61).await, caller, "bridged");
    let sid = session(&url, None).await;
    assert_eq!(traceparent_seen(&url, Some(&sid), caller, 62).await, caller, "forwarded");
    proxy.shutdown().await;
}
