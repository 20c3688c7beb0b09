//! Seed 004's use case 2 through the gateway, on real parts: a real Keycloak with the `mcp`
//! realm, the seed's AuthPolicy verbatim (its Keycloak URLs pointed at this Keycloak) for route
//! `mcp-test/kubernetes-mcp` with the `token-exchange` Secret as the seed writes it
//! (`Basic <base64>`), the gateway served on loopback in front of real HTTP MCP servers — one
//! listing kubernetes-mcp-server's tool names under `kube_` and recording the `Authorization`
//! each call brings, one (the testkit's) under `fixture_` with no policy, and one whose route's
//! policy failed to load — driven by Apiary's own MCP client and by plain HTTP for the refusals.
//! Fails, never skips, when Keycloak is not installed (`cargo xtask test-env`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use apiary_authpolicy::{
    AuthPolicy, CacheLimits, CompiledPolicy, LoadError, OidcEnforcer, OidcVerifier, ReqwestFetcher,
};
use apiary_gateway::{GatewayOptions, serve};
use apiary_operator::gateway::{Backend, Snapshot};
use apiary_operator::registration::route::Key;
use apiary_policy::authn::AuthnOptions;
use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, REALM_JSON, USER_CLIENT, decode_claims,
};
use apiary_testkit::server::{ServerOptions, serve_http};
use apiary_transport::client::{ClientError, RawSession, SessionOptions};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The seed's AuthPolicy, as the seed writes it (the fixture the authpolicy crate tests).
const SEED: &str = include_str!("../../authpolicy/tests/fixtures/seed004-authpolicy.yaml");
const KUBE_ROUTE: &str = BACKEND_AUDIENCE;
const BROKEN_ROUTE: &str = "mcp-test/broken";
const WWW: &str = "Bearer resource_metadata=https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

/// kubernetes-mcp-server's tool names: the realm's roles for user `mcp` plus two nobody has.
fn kube_tools() -> Vec<String> {
    let mut tools: Vec<String> = realm_roles("mcp").into_iter().collect();
    tools.extend(["projects_list".to_owned(), "resources_scale".to_owned()]);
    tools
}

fn realm_roles(user: &str) -> BTreeSet<String> {
    let realm: Value = serde_json::from_str(REALM_JSON).unwrap();
    let found = realm["users"].as_array().unwrap().iter().find(|u| u["username"] == user).unwrap().clone();
    let roles = found["clientRoles"][BACKEND_AUDIENCE].as_array().cloned().unwrap_or_default();
    roles.iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

/// What the stand-in kubernetes-mcp-server saw: per `tools/call`, the tool, the `Authorization`
/// header and the raw body.
#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<(String, Option<String>, String)>>,
    /// The `Authorization` of every request (lists and the handshake included).
    every_authorization: Mutex<Vec<Option<String>>>,
}

/// A minimal Streamable HTTP MCP server (JSON answers) listing `kube_tools()`; a call answers
/// with the tool's name.
async fn kube_server(seen: Arc<Seen>) -> SocketAddr {
    async fn mcp(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        seen.every_authorization.lock().unwrap().push(auth.clone());
        let m: Value = serde_json::from_slice(&body).unwrap();
        let Some(id) = m.get("id").cloned() else { return StatusCode::ACCEPTED.into_response() };
        let result = match m["method"].as_str().unwrap_or_default() {
            "initialize" => json!({"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
                "serverInfo": {"name": "kubernetes-mcp-server-stand-in", "version": "0"}}),
            "tools/list" => json!({"tools": kube_tools().iter().map(|t| json!({"name": t,
                "inputSchema": {"type": "object"}})).collect::<Vec<_>>()}),
            "tools/call" => {
                let tool = m["params"]["name"].as_str().unwrap().to_owned();
                let text = String::from_utf8_lossy(&body).into_owned();
                seen.calls.lock().unwrap().push((tool.clone(), auth, text));
                json!({"content": [{"type": "text", "text": format!("called {tool}")}]})
            }
            "ping" => json!({}),
            other => {
                let e = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": other}});
                return ([("content-type", "application/json")], e.to_string()).into_response();
            }
        };
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
        ([("content-type", "application/json"), ("mcp-session-id", "kube-1")], answer.to_string()).into_response()
    }
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(mcp)
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                .delete(|| async { StatusCode::OK }),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn seed_policy(kc: &Keycloak) -> CompiledPolicy {
    let text = SEED
        .replace("issuerUrl: https://keycloak.example.com/realms/mcp", &format!("issuerUrl: {}", kc.issuer()))
        .replace(
            "url: https://keycloak.example.com/realms/mcp/protocol/openid-connect/token",
            &format!("url: {}", kc.token_endpoint()),
        );
    assert_eq!(text.matches(&kc.issuer()).count(), 2, "both URLs substituted");
    let secret = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{GATEWAY_CLIENT}:{GATEWAY_SECRET}"))
    );
    let value: Value = serde_saphyr::from_str(&text).unwrap();
    let policy = AuthPolicy::from_value(value).unwrap();
    CompiledPolicy::load(&policy, &move |name: &str, key: &str| {
        (name == "token-exchange" && key == "oauth-client-basic-auth").then(|| secret.clone())
    })
    .unwrap()
}

fn backend(name: &str, route: &str, url: String, prefix: &str) -> Backend {
    Backend {
        registration: Key { namespace: "mcp-test".into(), name: name.into() },
        route: Key { namespace: "mcp-test".into(), name: route.into() },
        url,
        prefix: prefix.into(),
        token: Some("registration-credential".into()),
    }
}

async fn user_token(kc: &Keycloak, user: &str) -> String {
    kc.password_token(USER_CLIENT, user, user, "openid").await.unwrap().access_token
}

async fn session(url: &str, token: Option<&str>) -> Result<RawSession, ClientError> {
    let headers = token.map(|t| vec![("Authorization".to_owned(), format!("Bearer {t}"))]).unwrap_or_default();
    let (s, _incoming) =
        RawSession::open(url, SessionOptions { headers, listen: false, ..SessionOptions::default() }).await?;
    Ok(s)
}

async fn request(s: &RawSession, id: u64, method: &str, params: Value) -> Result<Value, ClientError> {
    let m = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let answer = s.request(Bytes::from(m.to_string())).await?;
    Ok(serde_json::from_slice(&answer).unwrap())
}

async fn tool_names(s: &RawSession) -> BTreeSet<String> {
    let answer = request(s, 1, "tools/list", json!({})).await.unwrap();
    answer["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

/// A plain HTTP `tools/call` POST (as a bare client would send it), for the refusals' bodies.
async fn raw_call(url: &str, token: Option<&str>, tool: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

/// One 2026-07-28 request (no session; its `_meta` and headers as that revision wants them):
/// the HTTP status, the body's text and the answer (from JSON or the first SSE response).
async fn modern(
    url: &str,
    token: Option<&str>,
    id: u64,
    method: &str,
    mut params: Value,
) -> (u16, String, Option<Value>) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "gateway-modern-test", "version": "1"},
    });
    let name = params.get("name").and_then(Value::as_str).map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .body(body.to_string());
    if let Some(n) = name {
        req = req.header("mcp-name", n);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let answer = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
    });
    (status, text, answer)
}

async fn assert_seed_401(response: reqwest::Response) {
    assert_eq!(response.status(), 401);
    let www: Vec<String> =
        response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(www, vec![WWW.to_owned()]);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"error": "Unauthorized", "message": "MCP Tool Access denied: Authentication required."}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_case_2_through_the_gateway_lists_calls_and_refuses_as_the_seed_says() {
    let kc = Keycloak::shared().await;
    let seen = Arc::new(Seen::default());
    let kube = kube_server(Arc::clone(&seen)).await;
    let open = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let snapshot = Snapshot {
        backends: vec![
            backend("broken-server", "broken", format!("http://{kube}/mcp"), "broken_"),
            backend("fixture", "fixture", open.url().to_owned(), "fixture_"),
            backend("kubernetes-mcp-server", "kubernetes-mcp", format!("http://{kube}/mcp"), "kube_"),
        ],
        skipped: Vec::new(),
        synced: true,
    };
    let verifier = OidcVerifier::new(AuthnOptions::default(), true);
    let enforcer = Arc::new(OidcEnforcer::new(verifier, ReqwestFetcher::new().unwrap(), CacheLimits::default()));
    enforcer.set_policy(KUBE_ROUTE, Ok(seed_policy(kc)));
    enforcer.set_policy(
        BROKEN_ROUTE,
        Err(LoadError::Unsupported { path: "spec.rules.authorization.x.kubernetesSubjectAccessReview".into() }),
    );
    let (_tx, rx) = watch::channel(snapshot);
    let options = GatewayOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 16,
        gateway: Key { namespace: "gateway-system".into(), name: "mcp-gateway".into() },
    };
    let handle = serve(options, rx, Arc::clone(&enforcer)).await.unwrap();
    let url = handle.url();

    // User `mcp`: exactly its roles' tools of the kube route, all the open backend's, none of
    // the refused route's.
    let caller = user_token(kc, "mcp").await;
    let s = session(&url, Some(&caller)).await.unwrap();
    let names = tool_names(&s).await;
    let kube_seen: BTreeSet<String> = names.iter().filter_map(|n| n.strip_prefix("kube_")).map(str::to_owned).collect();
    assert_eq!(kube_seen, realm_roles("mcp"), "{names:?}");
    assert!(names.contains("fixture_echo"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("broken_")), "{names:?}");
    assert_eq!(enforcer.cache_stats().fetches, 1, "one exchange for the whole list");

    // A call among its roles: through, with an exchanged token for the server, not the caller's.
    let answer = request(&s, 2, "tools/call", json!({"name": "kube_namespaces_list", "arguments": {}})).await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "called namespaces_list", "{answer}");
    let answer = request(&s, 3, "tools/call", json!({"name": "kube_pods_list", "arguments": {}})).await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "called pods_list", "{answer}");
    {
        let calls = seen.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        let injected = calls[0].1.as_deref().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
        assert_ne!(injected, caller);
        let claims = decode_claims(&injected).unwrap();
        assert_eq!(claims["aud"], BACKEND_AUDIENCE, "{claims}");
        assert_eq!(claims["azp"], GATEWAY_CLIENT, "{claims}");
        assert_eq!(claims["preferred_username"], "mcp", "{claims}");
        assert_eq!(calls[1].1, calls[0].1, "the cached exchange");
        assert!(!calls[0].2.contains("apiary/gatewayTicket"), "the ticket never reaches a server: {}", calls[0].2);
    }
    assert_eq!(enforcer.cache_stats().fetches, 1, "the list's exchange is reused by the calls");

    // A kubernetes-mcp-server tool outside its roles: the seed's 403, as HTTP, never forwarded.
    let refused = request(&s, 4, "tools/call", json!({"name": "kube_projects_list", "arguments": {}})).await;
    assert!(matches!(refused, Err(ClientError::HttpStatus { status: 403, .. })), "{refused:?}");
    let response = raw_call(&url, Some(&caller), "kube_projects_list").await;
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("www-authenticate").is_none());
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"error": "Forbidden", "message": "MCP Tool Access denied: Insufficient permissions for this tool."})
    );

    // The open route needs nothing; the refused route answers 503.
    let answer =
        request(&s, 5, "tools/call", json!({"name": "fixture_echo", "arguments": {"text": "hi"}})).await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    let response = raw_call(&url, Some(&caller), "broken_namespaces_list").await;
    assert_eq!(response.status(), 503);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "ServiceUnavailable", "{body}");

    // No token, a garbage token: the seed's 401, nothing exchanged, nothing forwarded.
    assert_seed_401(raw_call(&url, None, "kube_namespaces_list").await).await;
    assert_seed_401(raw_call(&url, Some("garbage"), "kube_namespaces_list").await).await;
    let anonymous = session(&url, None).await.unwrap();
    let names = tool_names(&anonymous).await;
    assert!(!names.iter().any(|n| n.starts_with("kube_")) && names.contains("fixture_echo"), "{names:?}");
    let refused = request(&anonymous, 6, "tools/call", json!({"name": "kube_namespaces_list", "arguments": {}})).await;
    assert!(matches!(refused, Err(ClientError::HttpStatus { status: 401, .. })), "{refused:?}");
    assert_eq!(seen.calls.lock().unwrap().len(), 2);
    assert_eq!(enforcer.cache_stats().fetches, 1);

    // User `mcp-limited`: its two tools, one more exchange.
    let limited = session(&url, Some(&user_token(kc, "mcp-limited").await)).await.unwrap();
    let names = tool_names(&limited).await;
    let kube_seen: BTreeSet<String> = names.iter().filter_map(|n| n.strip_prefix("kube_")).map(str::to_owned).collect();
    assert_eq!(kube_seen, realm_roles("mcp-limited"));
    assert_eq!(enforcer.cache_stats().fetches, 2);
    let refused = request(&limited, 7, "tools/call", json!({"name": "kube_pods_delete", "arguments": {}})).await;
    assert!(matches!(refused, Err(ClientError::HttpStatus { status: 403, .. })), "{refused:?}");

    // 2026-07-28 requests (no session) meet the same policy: the same list, the same call
    // through with the exchanged token, the same 403.
    let (status, _, listed) = modern(&url, Some(&caller), 10, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{listed:?}");
    let listed = listed.unwrap();
    let kube_seen: BTreeSet<String> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().unwrap().strip_prefix("kube_").map(str::to_owned))
        .collect();
    assert_eq!(kube_seen, realm_roles("mcp"));
    let params = json!({"name": "kube_namespaces_list", "arguments": {}});
    let (status, text, answer) = modern(&url, Some(&caller), 11, "tools/call", params).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(answer.unwrap()["result"]["content"][0]["text"], "called namespaces_list");
    {
        let calls = seen.calls.lock().unwrap();
        let (tool, auth, _) = calls.last().unwrap();
        assert_eq!(tool, "namespaces_list");
        assert_eq!(auth.as_deref(), calls[0].1.as_deref(), "the same cached exchanged token");
    }
    let (status, text, _) = modern(&url, Some(&caller), 12, "tools/call", json!({"name": "kube_projects_list"})).await;
    assert_eq!(status, 403, "{text}");
    let (status, text, _) = modern(&url, None, 13, "tools/call", json!({"name": "kube_pods_list"})).await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(enforcer.cache_stats().fetches, 2);

    // The caller's own token never reached the server; its lists came with the registration's.
    let every = seen.every_authorization.lock().unwrap().clone();
    assert!(!every.iter().flatten().any(|a| a.contains(&caller)), "the caller's token reached the server");
    assert!(every.iter().flatten().any(|a| a == "Bearer registration-credential"));

    // `/status` names each route's policy state.
    let status: Value = reqwest::get(url.replace("/mcp", "/status")).await.unwrap().json().await.unwrap();
    let state = |route: &str| {
        status["servers"].as_array().unwrap().iter().find(|s| s["serverName"] == route).unwrap()["authPolicy"]["state"]
            .clone()
    };
    assert_eq!(state(KUBE_ROUTE), "enforced");
    assert_eq!(state(BROKEN_ROUTE), "refused");
    assert_eq!(state("mcp-test/fixture"), "none");

    for s in [s, anonymous, limited] {
        let _ = s.close().await;
    }
    handle.shutdown().await;
    open.shutdown().await.unwrap();
}
