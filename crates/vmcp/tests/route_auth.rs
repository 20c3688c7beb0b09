//! The vMCP's side of the gateway's route authorization, on real fixture servers and a
//! stand-in `RouteAuth`: a request names its gateway caller by a one-shot ticket in
//! `params._meta`; lists show a `serverName` backend's tools only as `visible_tools` says (none
//! without a ticket), a granted call carries the grant's headers (the registration's credential
//! replaced, the caller's own `Authorization` never sent), an ungranted one is decided again and
//! refused on denial, and a backend without a `serverName` is untouched.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use apiary_testkit::server::{ServerOptions, serve_http};
use apiary_transport::launch::{BoxRead, BoxWrite, Launch};
use apiary_vmcp::route_auth::AuthFuture;
use apiary_vmcp::{
    GATEWAY_TICKET_META, GatewayCaller, Grant, InstanceLimits, Refusal, RouteAuth, VmcpConfig, VmcpLaunch,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const LIMIT: Duration = Duration::from_secs(30);
const SERVER: &str = "mcp-test/kubernetes-mcp";

/// Callers whose `authorization` is `Bearer good` may call anything but `echo`, and get
/// `Authorization: Bearer decided-<tool>`; every other caller is refused with 403.
struct StandIn;

fn is_good(caller: &GatewayCaller) -> bool {
    caller.headers.get("authorization").is_some_and(|v| v == "Bearer good")
}

impl RouteAuth for StandIn {
    fn visible_tools<'a>(
        &'a self,
        caller: &'a GatewayCaller,
        server_name: &'a str,
        tools: &'a [String],
    ) -> AuthFuture<'a, Vec<String>> {
        assert_eq!(server_name, SERVER);
        let good = is_good(caller);
        Box::pin(async move { tools.iter().filter(|t| good && *t != "echo").cloned().collect() })
    }

    fn decide<'a>(
        &'a self,
        caller: &'a GatewayCaller,
        server_name: &'a str,
        method: &'a str,
        tool: Option<&'a str>,
    ) -> AuthFuture<'a, Result<Vec<(String, String)>, Refusal>> {
        assert_eq!(server_name, SERVER);
        let allowed = is_good(caller) && method == "tools/call" && tool != Some("echo");
        let tool = tool.unwrap_or_default().to_owned();
        Box::pin(async move {
            if allowed {
                Ok(vec![("authorization".to_owned(), format!("Bearer decided-{tool}"))])
            } else {
                Err(Refusal { status: 403, message: "Forbidden".into() })
            }
        })
    }
}

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
        let answer = peer.call(0, "initialize", init, None).await;
        assert!(answer.get("result").is_some(), "{answer}");
        peer
    }

    /// A request, with `caller` named by a ticket when given.
    async fn call(&mut self, id: u64, method: &str, mut params: Value, caller: Option<GatewayCaller>) -> Value {
        if let Some(c) = caller {
            params["_meta"] = json!({ GATEWAY_TICKET_META: c.lend(), "progressToken": 5 });
        }
        let line = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        loop {
            let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.unwrap().unwrap().unwrap();
            let m: Value = serde_json::from_str(&line).unwrap();
            if m["id"] == json!(id) && m.get("method").is_none() {
                return m;
            }
        }
    }

    async fn names(&mut self, id: u64, caller: Option<GatewayCaller>) -> Vec<String> {
        let answer = self.call(id, "tools/list", json!({}), caller).await;
        answer["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    /// What header `name` the backend saw on a call of `tool` (a fixture's `request_header`).
    async fn seen(&mut self, id: u64, tool: &str, name: &str, caller: Option<GatewayCaller>) -> Value {
        self.call(id, "tools/call", json!({"name": tool, "arguments": {"name": name}}), caller).await
    }
}

fn caller(authorization: &str, grant: Option<Grant>) -> GatewayCaller {
    let mut c = GatewayCaller { scheme: "http".into(), host: "h".into(), path: "/mcp".into(), ..Default::default() };
    c.headers.insert("authorization", authorization.parse().unwrap());
    c.grant = grant;
    c
}

fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_auth_filters_lists_sets_grants_and_refuses_what_it_must() {
    let kube = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let open = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let config = VmcpConfig::parse(&format!(
        "backends:\n  - {{name: mcp-test.kube, url: '{}', toolPrefix: kube_, serverName: {SERVER}, \
         headers: {{Authorization: Bearer registration}}}}\n  - {{name: open, url: '{}', toolPrefix: open_}}\n",
        kube.url(),
        open.url()
    ))
    .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap().with_route_auth(Arc::new(StandIn));
    let mut peer = Peer::start(&launch).await;

    // No ticket: none of the serverName backend's tools; the other backend's all.
    let names = peer.names(1, None).await;
    assert!(names.iter().all(|n| n.starts_with("open_")), "{names:?}");
    assert!(names.contains(&"open_echo".to_owned()), "{names:?}");
    // A refused caller sees the same.
    assert_eq!(peer.names(2, Some(caller("Bearer bad", None))).await, names);
    // A good caller: the kube tools but `echo`.
    let good = peer.names(3, Some(caller("Bearer good", None))).await;
    assert!(good.contains(&"kube_request_header".to_owned()) && !good.contains(&"kube_echo".to_owned()), "{good:?}");
    assert!(good.contains(&"open_echo".to_owned()), "{good:?}");

    // A granted call: the grant's header replaces the registration's credential, and the
    // caller's own is not sent.
    let grant = Grant {
        server_name: SERVER.into(),
        tool: "request_header".into(),
        headers_to_set: vec![("authorization".into(), "Bearer granted".into())],
    };
    let a =
        peer.seen(4, "kube_request_header", "authorization", Some(caller("Bearer caller", Some(grant.clone())))).await;
    assert_eq!(text(&a), "Bearer granted");
    // No grant, a good caller: decided here.
    let a = peer.seen(5, "kube_request_header", "authorization", Some(caller("Bearer good", None))).await;
    assert_eq!(text(&a), "Bearer decided-request_header");
    // A grant for another tool does not count: decided again, and refused for this caller.
    let mut other = grant.clone();
    other.tool = "echo".into();
    let a = peer.seen(6, "kube_request_header", "authorization", Some(caller("Bearer caller", Some(other)))).await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    assert_eq!(a["error"]["data"]["status"], 403, "{a}");
    // No ticket: never forwarded.
    let a = peer.seen(7, "kube_request_header", "authorization", None).await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    assert_eq!(a["error"]["data"]["status"], 401, "{a}");
    // A ticket redeems once: the same ticket again is no caller.
    let ticket = caller("Bearer good", None).lend();
    let params = json!({"name": "kube_request_header", "arguments": {"name": "authorization"}, "_meta": {GATEWAY_TICKET_META: ticket}});
    let a = peer.call(8, "tools/call", params.clone(), None).await;
    assert_eq!(text(&a), "Bearer decided-request_header");
    let a = peer.call(9, "tools/call", params, None).await;
    assert_eq!(a["error"]["data"]["status"], 401, "{a}");
    // The backend without a serverName is untouched, with or without a ticket.
    let a = peer.seen(10, "open_request_header", "authorization", None).await;
    assert_eq!(text(&a), "no header authorization");
    let a = peer.seen(11, "open_request_header", "x-mcp-servername", Some(caller("Bearer bad", None))).await;
    assert_eq!(text(&a), "no header x-mcp-servername");
    kube.shutdown().await.unwrap();
    open.shutdown().await.unwrap();
}
