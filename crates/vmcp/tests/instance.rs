//! One vMCP instance spoken to as the proxy's front speaks to a stdio child: a backend's
//! `list_changed` is relayed up and the next list rebuilt; a backend that never answers
//! does not stall a list (partial result, the backend named as missing); an injected
//! header reaches its backend; an instance's end ends its backend sessions (DELETE); with
//! `partialFailureMode: fail` a list missing a backend fails, naming it; a token-exchange
//! backend is never reached without a caller token exchanged for it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use apiary_testkit::server::{ServerOptions, raw_echo_router, serve_http};
use apiary_transport::launch::{BoxRead, BoxWrite, CallerHandle, Launch, LaunchContext};
use apiary_vmcp::{InstanceLimits, VmcpConfig, VmcpLaunch};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const LIMIT: Duration = Duration::from_secs(30);

struct Peer {
    stdin: BoxWrite,
    lines: Lines<BufReader<BoxRead>>,
    /// Dropping it stops the instance, as the proxy does.
    _kill: tokio::sync::oneshot::Sender<()>,
}

impl Peer {
    async fn start(launch: &VmcpLaunch) -> Peer {
        Peer::start_with(launch, LaunchContext::default()).await
    }

    async fn start_with(launch: &VmcpLaunch, context: LaunchContext) -> Peer {
        let child = launch.launch_with(context).await.unwrap();
        let mut peer = Peer { stdin: child.stdin, lines: BufReader::new(child.stdout).lines(), _kill: child.kill };
        peer.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
        peer.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
        let init = peer.next().await;
        assert_eq!(init["result"]["serverInfo"]["name"], "apiary-vmcp", "{init}");
        peer
    }

    async fn send(&mut self, v: Value) {
        self.stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| {
            // Numbers out of serde_json's range (the raw echo's 1e400): keep the id and the text.
            let msg = apiary_protocol::Message::parse(bytes::Bytes::from(line.clone())).unwrap();
            json!({"id": serde_json::from_str::<Value>(msg.id_raw().unwrap()).unwrap(), "raw": line})
        })
    }

    /// Sends a request and returns its answer, with every other message seen meanwhile.
    async fn call(&mut self, id: u64, method: &str, params: Value) -> (Value, Vec<Value>) {
        self.send(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})).await;
        let mut others = Vec::new();
        loop {
            let m = self.next().await;
            if m["id"] == json!(id) && m.get("method").is_none() {
                return (m, others);
            }
            others.push(m);
        }
    }

    async fn tool_names(&mut self, id: u64) -> Vec<String> {
        let (answer, _) = self.call(id, "tools/list", json!({})).await;
        answer["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_list_change_is_relayed_and_the_next_list_rebuilt() {
    let server = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let config =
        VmcpConfig::parse(&format!("backends: [{{name: fx, url: '{}', transport: streamable-http}}]", server.url()))
            .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    let mut peer = Peer::start(&launch).await;
    assert!(!peer.tool_names(1).await.contains(&"fx_extra".to_owned()));

    let (answer, mut seen) =
        peer.call(2, "tools/call", json!({"name": "fx_add_tool", "arguments": {"name": "extra"}})).await;
    assert!(answer.get("result").is_some(), "{answer}");
    // The notification may come on the backend's GET stream, after the answer: wait for it.
    while !seen.iter().any(|m| m["method"] == "notifications/tools/list_changed") {
        seen.push(peer.next().await);
    }
    assert!(peer.tool_names(3).await.contains(&"fx_extra".to_owned()), "the list was not rebuilt");
    let (answer, _) = peer.call(4, "tools/call", json!({"name": "fx_extra"})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "extra", "{answer}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_does_not_stall_a_list() {
    // A black hole: accepts connections and never says a word.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hole.accept().await {
            held.push(sock);
        }
    });
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(echo, raw_echo_router()).await });

    let config = VmcpConfig::parse(&format!(
        "backends:\n  - {{name: slow, url: 'http://{hole_addr}/mcp', transport: streamable-http}}\n  - {{name: raw, url: 'http://{echo_addr}/mcp', transport: streamable-http}}\n"
    ))
    .unwrap();
    let limits = InstanceLimits { list_deadline: Duration::from_millis(500), ..InstanceLimits::default() };
    let launch = VmcpLaunch::new(&config, limits).unwrap();
    let mut peer = Peer::start(&launch).await;
    assert_eq!(peer.tool_names(1).await, ["raw_raw_echo"]);
    let status = launch.health().status_report();
    assert_eq!(status["missingFromLastList"], json!(["slow"]), "{status}");
    // Calls to the backend that answers are not held up either.
    let (answer, _) = peer.call(2, "tools/call", json!({"name": "raw_raw_echo", "arguments": {}})).await;
    assert!(answer["raw"].as_str().unwrap().contains(r#""received":"#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_mode_fail_refuses_a_list_missing_a_backend() {
    let server = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    // A port nothing listens on: the backend is down.
    let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let text = |mode: &str| {
        format!(
            "backends:\n  - {{name: up, url: '{}', transport: streamable-http}}\n  - {{name: down, url: 'http://{down}/mcp', transport: streamable-http}}\noperational:\n  failureHandling: {{partialFailureMode: {mode}}}\n",
            server.url()
        )
    };
    let config = VmcpConfig::parse(&text("fail")).unwrap();
    assert!(config.validate().unwrap().is_empty(), "fail is carried out, not warned about");
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    let mut peer = Peer::start(&launch).await;
    for (id, method) in [(1, "tools/list"), (2, "prompts/list"), (3, "resources/list")] {
        let (answer, _) = peer.call(id, method, json!({})).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("partialFailureMode is fail") && message.contains("\"down\""), "{answer}");
        assert_eq!(answer["error"]["data"]["missingBackends"], json!(["down"]), "{answer}");
    }
    // Calls to the backend that is up still work.
    let (answer, _) = peer.call(4, "tools/call", json!({"name": "up_echo", "arguments": {"message": "hi"}})).await;
    assert!(answer.get("result").is_some(), "{answer}");

    // best_effort (the default): the same backends give a partial list.
    let launch = VmcpLaunch::new(&VmcpConfig::parse(&text("best_effort")).unwrap(), InstanceLimits::default()).unwrap();
    let mut peer = Peer::start(&launch).await;
    let names = peer.tool_names(5).await;
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("up_")), "{names:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_exchange_backend_is_never_reached_without_an_exchanged_caller_token() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The token-exchange backend only counts the connections it gets.
    let counted = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counted_addr = counted.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((_sock, _)) = counted.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let server = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    // An STS nobody answers at: no caller token can be exchanged.
    let sts = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let config = VmcpConfig::parse(&format!(
        "backends:\n  - {{name: te, url: 'http://{counted_addr}/mcp', transport: streamable-http}}\n  - {{name: up, url: '{}', transport: streamable-http}}\n\
         incomingAuth: {{type: oidc, oidc: {{issuer: 'https://idp.example.com'}}}}\n\
         outgoingAuth:\n  backends:\n    te: {{type: token_exchange, tokenExchange: {{tokenUrl: 'http://{sts}/token', clientId: gw, clientSecret: s, audience: te, insecureAllowHttp: true}}}}\n",
        server.url()
    ))
    .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    assert!(launch.wants_caller(), "a token-exchange backend asks the proxy for the session's caller");

    // The shared instance (no caller) and a session whose caller token cannot be exchanged.
    let caller = LaunchContext { caller: Some(CallerHandle::new(Some(Arc::from("the-callers-token")))) };
    for context in [LaunchContext::default(), caller] {
        let mut peer = Peer::start_with(&launch, context).await;
        let names = peer.tool_names(1).await;
        assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("up_")), "{names:?}");
        let (answer, _) = peer.call(2, "tools/call", json!({"name": "te_echo", "arguments": {}})).await;
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the backend was reached without an exchanged token");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_reaches_the_backend() {
    let server = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let config = VmcpConfig::parse(&format!(
        "backends: [{{name: fx, url: '{}', transport: streamable-http}}]\noutgoingAuth:\n  source: inline\n  backends:\n    fx:\n      type: header_injection\n      headerInjection: {{headerName: X-Api-Key, headerValue: key-123}}\n",
        server.url()
    ))
    .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    let mut peer = Peer::start(&launch).await;
    let (answer, _) =
        peer.call(1, "tools/call", json!({"name": "fx_request_header", "arguments": {"name": "x-api-key"}})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "key-123", "{answer}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_an_instance_ends_its_backend_sessions() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let deletes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&deletes);
    let router = raw_echo_router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let counted = Arc::clone(&counted);
            async move {
                if req.method() == axum::http::Method::DELETE {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let config =
        VmcpConfig::parse(&format!("backends: [{{name: raw, url: 'http://{addr}/mcp', transport: streamable-http}}]"))
            .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    let child = launch.launch().await.unwrap();
    let mut peer = Peer { stdin: child.stdin, lines: BufReader::new(child.stdout).lines(), _kill: child.kill };
    peer.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    peer.next().await;
    assert_eq!(peer.tool_names(1).await, ["raw_raw_echo"]);
    assert_eq!(deletes.load(Ordering::SeqCst), 0, "the backend session stays open while the client's does");
    drop(peer);
    // (The exit is reported only after the backend sessions are closed.)
    let why = tokio::time::timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert!(why.description.contains("vMCP instance ended"), "{why}");
    assert_eq!(deletes.load(Ordering::SeqCst), 1, "the backend session was not ended with DELETE");
}

/// A reload that does not validate, or that changes `incomingAuth` (applied once, at start),
/// changes nothing; one that does swaps the backends seen by `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_validated_and_may_not_change_incoming_auth() {
    let one = "backends:\n  - {name: a, url: 'http://127.0.0.1:9/mcp'}\n";
    let launch = VmcpLaunch::new(&VmcpConfig::parse(one).unwrap(), InstanceLimits::default()).unwrap();
    let names = |l: &VmcpLaunch| -> Vec<String> {
        l.health().status_report()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let two = format!("{one}  - {{name: b, url: 'http://127.0.0.1:10/mcp'}}\n");
    let bad = format!("{two}aggregation: {{conflictResolution: random}}\n");
    let err = launch.reload(&VmcpConfig::parse(&bad).unwrap()).unwrap_err();
    assert!(err.to_string().contains("aggregation.conflictResolution"), "{err}");
    let auth = format!("{two}incomingAuth: {{type: local}}\n");
    let err = launch.reload(&VmcpConfig::parse(&auth).unwrap()).unwrap_err();
    assert!(err.to_string().contains("incomingAuth") && err.to_string().contains("restart"), "{err}");
    assert_eq!(names(&launch), ["a"]);
    launch.reload(&VmcpConfig::parse(&two).unwrap()).unwrap();
    assert_eq!(names(&launch), ["a", "b"]);
    assert_eq!(launch.backend_count(), 2);
}
