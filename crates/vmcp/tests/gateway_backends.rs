//! The gateway's additions to the vMCP, on real fixture servers: a backend's literal
//! `toolPrefix` is prepended as written and stripped on the way back; a backend with a
//! `serverName` gets `x-mcp-servername`, `x-mcp-toolname` (unprefixed) and `x-mcp-method` on
//! every routed request; a reload that removes a backend tells the open session and drops
//! its tools.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use apiary_testkit::server::{ServerOptions, serve_http};
use apiary_transport::launch::{BoxRead, BoxWrite, Launch};
use apiary_vmcp::{InstanceLimits, VmcpConfig, VmcpLaunch};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const LIMIT: Duration = Duration::from_secs(30);

struct Peer {
    stdin: BoxWrite,
    lines: Lines<BufReader<BoxRead>>,
    _kill: tokio::sync::oneshot::Sender<()>,
}

impl Peer {
    async fn start(launch: &VmcpLaunch) -> Peer {
        let child = launch.launch().await.unwrap();
        let mut peer = Peer { stdin: child.stdin, lines: BufReader::new(child.stdout).lines(), _kill: child.kill };
        let init = json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}});
        let (answer, _) = peer.call(0, "initialize", init).await;
        assert!(answer.get("result").is_some(), "{answer}");
        peer.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
        peer
    }

    async fn send(&mut self, v: Value) {
        self.stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    }

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

    /// The text of a call of `tool` (a fixture's `request_header`, through its prefix) for header `name`.
    async fn header(&mut self, id: u64, tool: &str, name: &str) -> String {
        let (answer, _) = self.call(id, "tools/call", json!({"name": tool, "arguments": {"name": name}})).await;
        answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
    }
}

fn config(kube: &str, other: Option<&str>) -> VmcpConfig {
    let mut text = format!(
        "backends:\n  - {{name: mcp-test.kubernetes-mcp-server, url: '{kube}', toolPrefix: kube_, serverName: mcp-test/kubernetes-mcp}}\n"
    );
    if let Some(other) = other {
        text.push_str(&format!(
            "  - {{name: team.other, url: '{other}', toolPrefix: 'other-', serverName: team/other-route, headers: {{X-Static: s}}}}\n"
        ));
    }
    VmcpConfig::parse(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_prefixes_route_with_the_gateway_headers_and_a_removed_backend_goes() {
    let kube = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let other = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let launch = VmcpLaunch::new(&config(kube.url(), Some(other.url())), InstanceLimits::default()).unwrap();
    let mut peer = Peer::start(&launch).await;

    let names = peer.tool_names(1).await;
    for want in ["kube_echo", "kube_request_header", "other-echo", "other-request_header"] {
        assert!(names.contains(&want.to_owned()), "{want} not in {names:?}");
    }
    assert!(names.iter().all(|n| n.starts_with("kube_") || n.starts_with("other-")), "{names:?}");

    // The call reaches its owner with its own name (the fixture would refuse `kube_echo`).
    let (answer, _) = peer.call(2, "tools/call", json!({"name": "kube_echo", "arguments": {"text": "hi"}})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");

    assert_eq!(peer.header(3, "kube_request_header", "x-mcp-servername").await, "mcp-test/kubernetes-mcp");
    assert_eq!(peer.header(4, "kube_request_header", "x-mcp-toolname").await, "request_header");
    assert_eq!(peer.header(5, "kube_request_header", "x-mcp-method").await, "tools/call");
    assert_eq!(peer.header(6, "other-request_header", "x-mcp-servername").await, "team/other-route");
    // Session headers still go along beside the routed ones.
    assert_eq!(peer.header(7, "other-request_header", "x-static").await, "s");
    assert_eq!(peer.header(8, "other-request_header", "x-mcp-authorized").await, "no header x-mcp-authorized");

    // The other registration goes: the open session is told, and its tools are gone.
    launch.reload(&config(kube.url(), None)).unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &Value| m["method"] == "notifications/tools/list_changed") {
        seen.push(peer.next().await);
    }
    let names = peer.tool_names(9).await;
    assert!(names.contains(&"kube_echo".to_owned()) && !names.iter().any(|n| n.starts_with("other-")), "{names:?}");
    let (answer, _) = peer.call(10, "tools/call", json!({"name": "other-echo", "arguments": {"text": "x"}})).await;
    assert!(answer.get("error").is_some(), "{answer}");
    kube.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}
