//! The gateway's middleware on `/mcp`, in front of the proxy's own front layers
//! (`apiary_proxy::StartExtras::mcp_layer`), so it sees each request as the caller sent it,
//! `Authorization` included. For a POST with a JSON-RPC body:
//!
//! - a `tools/call` whose prefixed name maps to a registered route is decided by that route's
//!   AuthPolicy (with `x-mcp-servername`, `x-mcp-toolname` and `x-mcp-method` set): a denial
//!   is the HTTP answer, verbatim (the seed's 401 with `WWW-Authenticate`, its 403, or 503 for
//!   a route whose policy failed to load); an allow goes on with a grant;
//! - every request goes on naming its caller (the caller's headers, and the grant if any) to
//!   the vMCP by a one-shot ticket spliced into `params._meta` ([`GATEWAY_TICKET_META`]); the
//!   vMCP filters lists and forwards calls in that caller's scope (`apiary_vmcp::route_auth`);
//! - a batch (2025-03-26) is decided member by member: any refusal refuses the whole POST
//!   with that refusal's answer, and nothing of it is served.
//!
//! Anything else (other methods and paths, a body that is not JSON-RPC) passes untouched, for
//! the front to serve or refuse as it does; a request without a ticket reaches no tool of a
//! registered route (the vMCP fails closed).

use std::sync::Arc;

use apiary_authpolicy::{Decision, Enforcer, JwtVerifier, MetadataFetcher, RequestInfo};
use apiary_operator::gateway::Snapshot;
use apiary_protocol::{Body, Kind, Message, error_response, parse_body, splice};
use apiary_proxy::McpLayer;
use apiary_vmcp::{GATEWAY_TICKET_META, GatewayCaller, Grant};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::sync::watch;

use crate::auth::{caller_headers, request_info};
use crate::backends::{ToolRoute, tool_route};

/// What the middleware asks of the routes' policies (an [`Enforcer`]; a stand-in in tests).
pub trait Enforce: Send + Sync + 'static {
    fn enforce<'a>(&'a self, route: &'a str, request: &'a RequestInfo) -> BoxFuture<'a, Decision>;
}

impl<V: JwtVerifier + 'static, F: MetadataFetcher + 'static> Enforce for Enforcer<V, F> {
    fn enforce<'a>(&'a self, route: &'a str, request: &'a RequestInfo) -> BoxFuture<'a, Decision> {
        Box::pin(Enforcer::enforce(self, route, request))
    }
}

/// A refusal: the route's policy's HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FORBIDDEN);
        let mut response = (status, self.body.clone().unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        headers.remove(CONTENT_TYPE);
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                headers.append(n, v);
            }
        }
        // The seed's bodies are JSON but its responses name no type.
        let is_json = self.body.as_deref().is_some_and(|b| serde_json::from_str::<serde_json::Value>(b).is_ok());
        if is_json && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response
    }
}

/// The middleware's state.
pub struct Middleware {
    enforcer: Arc<dyn Enforce>,
    snapshots: watch::Receiver<Snapshot>,
    /// The proxy's body limit (`limits.maxBodyBytes`).
    max_body: usize,
}

impl Middleware {
    pub fn new(enforcer: Arc<dyn Enforce>, snapshots: watch::Receiver<Snapshot>, max_body: usize) -> Middleware {
        Middleware { enforcer, snapshots, max_body }
    }

    /// The middleware as the proxy's `mcp_layer`.
    pub fn layer(self: Arc<Self>) -> McpLayer {
        Arc::new(move |request: Request, next: Next| {
            let this = Arc::clone(&self);
            Box::pin(async move { this.handle(request, next).await })
        })
    }

    async fn handle(&self, request: Request, next: Next) -> Response {
        if request.method() != Method::POST || request.uri().path() != "/mcp" {
            return next.run(request).await;
        }
        let declared =
            request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            // The front refuses it as it always does.
            return next.run(request).await;
        }
        let (mut parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, self.max_body).await else {
            let answer =
                error_response(None, -32600, &format!("the body is larger than {} bytes", self.max_body), None);
            return (StatusCode::PAYLOAD_TOO_LARGE, [(CONTENT_TYPE, "application/json")], answer).into_response();
        };
        let base = GatewayCaller {
            scheme: "http".to_owned(),
            host: parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .or_else(|| parts.uri.authority().map(|a| a.to_string()))
                .unwrap_or_default(),
            path: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: caller_headers(&parts.headers),
            grant: None,
        };
        match admit(self.enforcer.as_ref(), &self.snapshots, &base, bytes).await {
            Ok(body) => {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                next.run(Request::from_parts(parts, axum::body::Body::from(body))).await
            }
            Err(denied) => denied.into_response(),
        }
    }
}

/// The body to pass on (each request naming its caller), or the refusal of the whole POST.
pub async fn admit(
    enforcer: &dyn Enforce,
    snapshots: &watch::Receiver<Snapshot>,
    base: &GatewayCaller,
    body: Bytes,
) -> Result<Bytes, Denied> {
    let Ok(parsed) = parse_body(body.clone()) else { return Ok(body) };
    let messages: Vec<Message> = match parsed {
        Body::Single(m) => vec![m],
        Body::Batch(members) => match members.into_iter().collect::<Result<Vec<Message>, _>>() {
            Ok(ms) if !ms.is_empty() => ms,
            // A bad member or an empty batch: the front answers it.
            _ => return Ok(body),
        },
    };
    let is_batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    // The routes first (the snapshot is not held across an await).
    let routes: Vec<Option<ToolRoute>> = {
        let snapshot = snapshots.borrow();
        messages.iter().map(|m| called_tool(m).and_then(|name| tool_route(&snapshot, &name))).collect()
    };
    let mut out = Vec::with_capacity(messages.len());
    for (m, route) in messages.iter().zip(routes) {
        out.push(admit_one(enforcer, m, route, base).await?);
    }
    if !is_batch {
        return Ok(out.swap_remove(0));
    }
    let mut joined = Vec::with_capacity(body.len() + out.len() * 64);
    joined.push(b'[');
    for (i, m) in out.iter().enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(m);
    }
    joined.push(b']');
    Ok(Bytes::from(joined))
}

/// The advertised name of a `tools/call` request.
fn called_tool(m: &Message) -> Option<String> {
    (m.kind() == Kind::Request && m.method() == Some("tools/call")).then(|| m.params_string("name")).flatten()
}

/// One message: a request with its ticket (after its route's decision for a `tools/call`);
/// anything else as it came.
async fn admit_one(
    enforcer: &dyn Enforce,
    m: &Message,
    route: Option<ToolRoute>,
    base: &GatewayCaller,
) -> Result<Bytes, Denied> {
    if m.kind() != Kind::Request {
        return Ok(m.bytes().clone());
    }
    let mut caller = base.clone();
    if let Some(ToolRoute { server_name, tool }) = route
        && let Some(request) = request_info(base, &server_name, "tools/call", Some(&tool))
    {
        match enforcer.enforce(&server_name, &request).await {
            Decision::Deny { status, headers, body, reason } => {
                tracing::info!(route = %server_name, %tool, status, %reason, "gateway: tools/call refused by the route's AuthPolicy");
                return Err(Denied { status, headers, body });
            }
            Decision::Allow { headers_to_set } => {
                caller.grant = Some(Grant { server_name, tool, headers_to_set });
            }
        }
    }
    let ticket = serde_json::Value::from(caller.lend()).to_string();
    let whole = 0..m.bytes().len();
    match splice::set_path(m.bytes(), whole, &["params", "_meta", GATEWAY_TICKET_META], &ticket) {
        Ok(bytes) => Ok(bytes),
        // `params` that is no object: no ticket, so the vMCP serves no registered route's tool.
        Err(_) => Ok(m.bytes().clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use apiary_operator::gateway::Backend;
    use apiary_operator::registration::route::Key;
    use serde_json::{Value, json};

    use super::*;

    /// Allows every tool but `pods_delete` (403), refuses route `ns/broken` (503); records
    /// what it was asked.
    #[derive(Default)]
    struct StandIn {
        asked: Mutex<Vec<(String, String, Option<String>)>>,
    }

    impl Enforce for StandIn {
        fn enforce<'a>(&'a self, route: &'a str, request: &'a RequestInfo) -> BoxFuture<'a, Decision> {
            let tool = request.header("x-mcp-toolname").unwrap_or_default();
            self.asked.lock().unwrap().push((route.to_owned(), tool.clone(), request.header("authorization")));
            let d = if route == "ns/broken" {
                Decision::Deny { status: 503, headers: Vec::new(), body: Some("{}".into()), reason: "r".into() }
            } else if tool == "pods_delete" {
                Decision::Deny {
                    status: 403,
                    headers: vec![("x-why".into(), "roles".into())],
                    body: Some(r#"{"error":"Forbidden"}"#.into()),
                    reason: "r".into(),
                }
            } else {
                Decision::Allow { headers_to_set: vec![("authorization".into(), format!("Bearer for-{tool}"))] }
            };
            Box::pin(async move { d })
        }
    }

    fn snapshots() -> watch::Receiver<Snapshot> {
        let b = |name: &str, prefix: &str| Backend {
            registration: Key { namespace: "ns".into(), name: name.into() },
            route: Key { namespace: "ns".into(), name: name.into() },
            url: "http://127.0.0.1:1/mcp".into(),
            prefix: prefix.into(),
            token: None,
        };
        let snapshot =
            Snapshot { backends: vec![b("kube", "kube_"), b("broken", "broken_")], skipped: Vec::new(), synced: true };
        watch::channel(snapshot).1
    }

    fn base() -> GatewayCaller {
        let mut c =
            GatewayCaller { scheme: "http".into(), host: "h".into(), path: "/mcp".into(), ..Default::default() };
        c.headers.insert("authorization", "Bearer caller".parse().unwrap());
        c
    }

    /// The caller each request of `body` names (the tickets redeemed).
    fn callers(body: &[u8]) -> Vec<Option<Arc<GatewayCaller>>> {
        let v: Value = serde_json::from_slice(body).unwrap();
        let members = match v {
            Value::Array(ms) => ms,
            one => vec![one],
        };
        members
            .iter()
            .map(|m| m["params"]["_meta"][GATEWAY_TICKET_META].as_str().and_then(GatewayCaller::redeem))
            .collect()
    }

    async fn run(body: &str) -> (Result<Bytes, Denied>, Vec<(String, String, Option<String>)>) {
        let e = StandIn::default();
        let out = admit(&e, &snapshots(), &base(), Bytes::from(body.to_owned())).await;
        (out, e.asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_call_is_decided_by_its_route_and_names_its_grant() {
        let body =
            r#" {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"kube_pods_list","arguments":{}}}"#;
        let (out, asked) = run(body).await;
        assert_eq!(asked, vec![("ns/kube".into(), "pods_list".into(), Some("Bearer caller".into()))]);
        let out = out.unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["params"]["name"], "kube_pods_list", "the rest is kept");
        let caller = callers(&out).remove(0).unwrap();
        let grant = caller.grant.clone().unwrap();
        assert_eq!((grant.server_name.as_str(), grant.tool.as_str()), ("ns/kube", "pods_list"));
        assert_eq!(grant.headers_to_set[0].1, "Bearer for-pods_list");
        assert_eq!(caller.headers.get("authorization").unwrap(), "Bearer caller");
    }

    #[tokio::test]
    async fn other_requests_name_their_caller_without_a_grant_and_others_pass_as_they_came() {
        let (out, asked) = run(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
        assert!(asked.is_empty());
        let caller = callers(&out.unwrap()).remove(0).unwrap();
        assert!(caller.grant.is_none());
        // A call of a name no route's prefix fits: no decision here, no grant.
        let (out, asked) = run(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#).await;
        assert!(asked.is_empty());
        assert!(callers(&out.unwrap()).remove(0).unwrap().grant.is_none());
        // A notification, and a body that is not JSON-RPC: untouched.
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(run(note).await.0.unwrap(), note.as_bytes());
        assert_eq!(run("not json").await.0.unwrap(), "not json".as_bytes());
    }

    #[tokio::test]
    async fn a_refusal_is_the_routes_answer_and_a_broken_route_is_503() {
        let (out, _) =
            run(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"kube_pods_delete"}}"#).await;
        let denied = out.unwrap_err();
        assert_eq!(denied.status, 403);
        assert_eq!(denied.headers, vec![("x-why".to_owned(), "roles".to_owned())]);
        let response = denied.into_response();
        assert_eq!(response.headers().get(CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(response.headers().get("x-why").unwrap(), "roles");
        let (out, _) = run(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"broken_x"}}"#).await;
        assert_eq!(out.unwrap_err().status, 503);
    }

    #[tokio::test]
    async fn a_batch_is_refused_whole_by_any_refused_call_else_each_member_gets_its_own_ticket() {
        let batch = json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"kube_pods_list"}},
            {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}},
            {"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}},
        ]);
        let (out, asked) = run(&batch.to_string()).await;
        assert_eq!(asked.len(), 1);
        let got = callers(&out.unwrap());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().grant.as_ref().unwrap().tool, "pods_list");
        assert!(got[1].is_none(), "a notification gets no ticket");
        assert!(got[2].as_ref().unwrap().grant.is_none());

        let refused = json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"kube_pods_list"}},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"kube_pods_delete"}},
        ]);
        let (out, asked) = run(&refused.to_string()).await;
        assert_eq!(out.unwrap_err().status, 403);
        assert_eq!(asked.len(), 2);
        // An empty batch or a bad member: left to the front.
        assert_eq!(run("[]").await.0.unwrap(), "[]".as_bytes());
        let bad = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"kube_pods_delete"}}, 7]"#;
        assert_eq!(run(bad).await.0.unwrap(), bad.as_bytes());
    }
}
