//! A token-exchange backend reached by 2026-07-28 requests, which the front hands to the
//! shared instance naming each one's caller by a one-shot ticket in `_meta`
//! (`CallerHandle::lend`): with a ticket the backend is listed and called with that caller's
//! token exchanged (a fake STS here; `crates/cli/tests/vmcp_exchange_modern.rs` uses Keycloak);
//! without one, or with a ticket used already, the backend is neither listed nor reached.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use apiary_testkit::server::{ServerOptions, serve_http};
use apiary_transport::launch::{BoxRead, BoxWrite, CALLER_TICKET_META, CallerHandle, Launch};
use apiary_vmcp::{InstanceLimits, VmcpConfig, VmcpLaunch};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const LIMIT: Duration = Duration::from_secs(30);

/// A fake STS: the exchanged token is `x-` and the subject token.
async fn fake_sts() -> String {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|body: String| async move {
            let subject =
                body.split('&').find_map(|kv| kv.strip_prefix("subject_token=")).unwrap_or_default().to_owned();
            let answer = json!({"access_token": format!("x-{subject}"), "token_type": "Bearer", "expires_in": 300,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"});
            ([("content-type", "application/json")], answer.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

struct Peer {
    stdin: BoxWrite,
    lines: Lines<BufReader<BoxRead>>,
    _kill: tokio::sync::oneshot::Sender<()>,
}

impl Peer {
    /// A 2026-07-28 request, naming `ticket` as the front does; its answer.
    async fn call(&mut self, id: u64, method: &str, mut params: Value, ticket: Option<&str>) -> Value {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        if let Some(t) = ticket {
            params["_meta"][CALLER_TICKET_META] = json!(t);
        }
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.stdin.write_all(format!("{req}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        loop {
            let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.unwrap().unwrap().unwrap();
            let m: Value = serde_json::from_str(&line).unwrap();
            if m["id"] == json!(id) && m.get("method").is_none() {
                return m;
            }
        }
    }
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_requests_caller_reaches_a_token_exchange_backend_and_no_caller_never_does() {
    let sts = fake_sts().await;
    let exchanged = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let plain = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let config = VmcpConfig::parse(&format!(
        "backends:\n  - {{name: x, url: '{}', transport: streamable-http}}\n  - {{name: p, url: '{}', transport: streamable-http}}\n\
         incomingAuth:\n  type: oidc\n  oidc: {{issuer: 'http://127.0.0.1:9', audience: vmcp, insecureAllowHttp: true}}\n\
         outgoingAuth:\n  backends:\n    x:\n      type: token_exchange\n      tokenExchange:\n        tokenUrl: '{sts}'\n        clientId: vmcp\n        clientSecret: s3cret\n        audience: backend\n        insecureAllowHttp: true\n",
        exchanged.url(),
        plain.url()
    ))
    .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    // The shared instance: launched with no session caller.
    let child = launch.launch().await.unwrap();
    let mut peer = Peer { stdin: child.stdin, lines: BufReader::new(child.stdout).lines(), _kill: child.kill };

    // No caller: the exchange backend is left out of the list and unknown to a call.
    let list = peer.call(1, "tools/list", json!({}), None).await;
    let listed = names(&list);
    assert!(listed.iter().any(|n| n.starts_with("p_")) && !listed.iter().any(|n| n.starts_with("x_")), "{listed:?}");
    let header = json!({"name": "x_request_header", "arguments": {"name": "authorization"}});
    let refused = peer.call(2, "tools/call", header.clone(), None).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    // A caller named by a ticket: listed, and called with its own token exchanged.
    let alice = CallerHandle::new(Some(Arc::from("alice-token")));
    let list = peer.call(3, "tools/list", json!({}), Some(&alice.lend())).await;
    assert!(names(&list).contains(&"x_request_header".to_owned()), "{list}");
    let seen = peer.call(4, "tools/call", header.clone(), Some(&alice.lend())).await;
    assert_eq!(seen["result"]["content"][0]["text"], "Bearer x-alice-token", "{seen}");
    let bob = CallerHandle::new(Some(Arc::from("bob-token")));
    let seen = peer.call(5, "tools/call", header.clone(), Some(&bob.lend())).await;
    assert_eq!(seen["result"]["content"][0]["text"], "Bearer x-bob-token", "{seen}");
    // The plain backend never sees a caller's token, nor the ticket.
    let plain_seen = peer
        .call(
            6,
            "tools/call",
            json!({"name": "p_request_header", "arguments": {"name": "authorization"}}),
            Some(&bob.lend()),
        )
        .await;
    assert_eq!(plain_seen["result"]["isError"], true, "{plain_seen}");

    // A ticket names its caller once: used again, it is nobody's.
    let once = alice.lend();
    let _ = peer.call(7, "tools/list", json!({}), Some(&once)).await;
    let again = peer.call(8, "tools/call", header, Some(&once)).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
}
