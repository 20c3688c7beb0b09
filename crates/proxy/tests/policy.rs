//! The proxy's policy layers end to end, in front of the real fixture server over stdio:
//! bearer tokens minted by a test issuer (the attack table: each a 401 with a correct
//! `WWW-Authenticate`), RFC 9728 metadata, Cedar decisions on calls and on lists (also through
//! the official Python SDK), the tool filter and overrides, a server's `tools/list_changed`
//! reaching clients and its next list filtered again, audit events, and the client's token never
//! reaching an HTTP upstream.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_config::{OidcConfig, RunConfig, ToolOverride};
use apiary_proxy::ProxyHandle;
use apiary_testkit::issuer::{self, SigningKey, TestIssuer};
use serde_json::{Value, json};

const AUDIENCE: &str = "apiary-test";
const RESOURCE: &str = "https://mcp.example.com/mcp";

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn oidc(issuer: &TestIssuer) -> OidcConfig {
    OidcConfig {
        audience: Some(AUDIENCE.into()),
        resource_url: Some(RESOURCE.into()),
        insecure_allow_http: true,
        jwks_min_refresh_secs: Some(1),
        ..OidcConfig::new(issuer.issuer())
    }
}

async fn proxy_with(cfg: RunConfig) -> ProxyHandle {
    common::testkit_proxy(cfg).await
}

/// A POST of one JSON-RPC message, with an optional bearer token and session.
async fn post(url: &str, token: Option<&str>, session: Option<&str>, body: &Value) -> reqwest::Response {
    common::post_mcp(url, token, session, &[], body).await
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"policy-test","version":"1"}}})
}

/// Reads a JSON or SSE answer's one JSON-RPC message.
async fn message(res: reqwest::Response) -> Value {
    let sse = res.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    if !sse {
        return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str::<Value>(d.trim()).unwrap())
        .find(|m| m.get("id").is_some() && (m.get("result").is_some() || m.get("error").is_some()))
        .unwrap_or_else(|| panic!("no answer in {text}"))
}

/// An initialized session for `token`.
async fn session(url: &str, token: Option<&str>) -> String {
    let res = post(url, token, None, &initialize(1)).await;
    assert_eq!(res.status(), 200, "initialize: {}", res.text().await.unwrap());
    let sid = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = message(res).await;
    let res = post(url, token, Some(&sid), &json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
    assert_eq!(res.status(), 202);
    sid
}

async fn tool_names(url: &str, token: Option<&str>, sid: &str) -> Vec<String> {
    let res = post(url, token, Some(sid), &json!({"jsonrpc":"2.0","id":7,"method":"tools/list"})).await;
    assert_eq!(res.status(), 200);
    let m = message(res).await;
    let mut names: Vec<String> =
        m["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

async fn call(url: &str, token: Option<&str>, sid: &str, tool: &str, args: Value) -> (u16, Value) {
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":tool,"arguments":args}});
    let res = post(url, token, Some(sid), &body).await;
    let status = res.status().as_u16();
    (status, message(res).await)
}

/// Splits `Bearer a="b", c="d"` into its parameters.
fn challenge_params(v: &str) -> Vec<(String, String)> {
    let rest = v.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a Bearer challenge: {v}"));
    rest.split("\", ")
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_a_401_with_a_correct_challenge() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("authn-attacks");
    cfg.policy.oidc = Some(oidc(&iss));
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();

    let good = iss.claims("alice", AUDIENCE);
    let now = issuer::now();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let stranger = SigningKey::generate("k1");
    let unknown = SigningKey::generate("not-published");
    let mut bad_sig = iss.mint(&good);
    let flip = bad_sig.len() - 5;
    bad_sig.replace_range(flip..flip + 1, if &bad_sig[flip..flip + 1] == "A" { "B" } else { "A" });
    let oversized = iss.mint(&with("padding", json!("x".repeat(20_000))));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("alg none", Some(issuer::unsigned(&good))),
        ("HS256 keyed with the public key", Some(issuer::hs256("k1", &iss.key().public_der(), &good))),
        ("wrong issuer", Some(iss.mint(&with("iss", json!("https://evil.example"))))),
        ("wrong audience", Some(iss.mint(&with("aud", json!("someone-else"))))),
        ("expired", Some(iss.mint(&with("exp", json!(now - 3600))))),
        ("not yet valid", Some(iss.mint(&with("nbf", json!(now + 3600))))),
        ("signed by another key under a known kid", Some(stranger.sign(&json!({"alg":"RS256","kid":"k1"}), &good))),
        ("bad signature", Some(bad_sig)),
        ("oversized", Some(oversized)),
        ("garbage", Some("not-a-token".into())),
    ];
    for (what, token) in &cases {
        let res = post(&url, token.as_deref(), None, &initialize(1)).await;
        assert_eq!(res.status(), 401, "{what}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        let params = challenge_params(&challenge);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("realm"), Some(iss.issuer().as_str()), "{what}: {challenge}");
        assert_eq!(
            get("resource_metadata"),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
            "{what}: {challenge}"
        );
        match token {
            None => assert_eq!(get("error"), None, "no token, no error code (RFC 6750 §3.1): {challenge}"),
            Some(_) => assert_eq!(get("error"), Some("invalid_token"), "{what}: {challenge}"),
        }
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], -31006, "{what}: {body}");
        assert!(body.get("id").is_none(), "the body was never read: {body}");
    }

    // An unknown kid costs exactly one refetch of the JWKS, and is then refused.
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refetch interval
    let before = iss.jwks_fetches();
    let token = unknown.sign(&json!({"alg":"RS256","kid":"not-published"}), &good);
    let res = post(&url, Some(&token), None, &initialize(1)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(iss.jwks_fetches(), before + 1, "one refetch for an unknown kid");

    // A valid token opens a session and calls a tool.
    let token = iss.mint(&good);
    let sid = session(&url, Some(&token)).await;
    let (status, answer) = call(&url, Some(&token), &sid, "echo", json!({"text":"hi"})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    // …and only with the token: the session alone is not a credential.
    let (status, _) = call(&url, None, &sid, "echo", json!({"text":"hi"})).await;
    assert_eq!(status, 401);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_after_one_refetch() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("authn-rotation");
    cfg.policy.oidc = Some(oidc(&iss));
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();
    session(&url, Some(&iss.mint(&iss.claims("alice", AUDIENCE)))).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refetch interval
    let before = iss.jwks_fetches();
    iss.rotate("k2");
    session(&url, Some(&iss.mint(&iss.claims("alice", AUDIENCE)))).await;
    assert_eq!(iss.jwks_fetches(), before + 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_keys_refuse_with_503_and_never_let_a_token_through() {
    let iss = TestIssuer::start().await;
    iss.set_down(true);
    let mut cfg = common::testkit_config("authn-down");
    cfg.policy.oidc = Some(oidc(&iss));
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();
    let token = iss.mint(&iss.claims("alice", AUDIENCE));
    let res = post(&url, Some(&token), None, &initialize(1)).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], -31006, "{body}");
    // Once the issuer is back (and the refetch interval has passed), the same token works.
    iss.set_down(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let res = post(&url, Some(&token), None, &initialize(1)).await;
        if res.status() == 200 {
            break;
        }
        assert_eq!(res.status(), 503, "while keys load, only 503");
        assert!(tokio::time::Instant::now() < deadline, "keys never loaded after the issuer came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_resource_metadata_is_served_without_a_token() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("authn-metadata");
    cfg.policy.oidc = Some(OidcConfig { scopes: vec!["openid".into(), "mcp:tools".into()], ..oidc(&iss) });
    let proxy = proxy_with(cfg).await;
    let base = format!("http://{}", proxy.local_addr());
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let res = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["resource"], RESOURCE);
        assert_eq!(doc["authorization_servers"], json!([iss.issuer()]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["scopes_supported"], json!(["openid", "mcp:tools"]));
    }
    proxy.shutdown().await;

    // Without a resource URL there is no document.
    let mut cfg = common::testkit_config("authn-no-metadata");
    cfg.policy.oidc = Some(OidcConfig { resource_url: None, ..oidc(&iss) });
    let proxy = proxy_with(cfg).await;
    let res =
        http().get(format!("http://{}/.well-known/oauth-protected-resource", proxy.local_addr())).send().await.unwrap();
    assert_eq!(res.status(), 404);
    proxy.shutdown().await;
}

/// The policy table of the Cedar tests, through the proxy.
fn cedar_doc() -> Value {
    json!({
        "version": "1.0",
        "type": "cedarv1",
        "cedar": {
            "policies": [
                // Everyone may echo, but not the word "secret".
                "permit(principal, action == Action::\"call_tool\", resource == Tool::\"echo\");",
                "forbid(principal, action == Action::\"call_tool\", resource == Tool::\"echo\") when { resource has arg_text && resource.arg_text == \"secret\" };",
                // Read-only tools for everyone (annotations from the server's own list).
                "permit(principal, action == Action::\"call_tool\", resource) when { resource has readOnlyHint && resource.readOnlyHint == true };",
                // Engineers may sleep.
                "permit(principal in THVGroup::\"engineering\", action == Action::\"call_tool\", resource == Tool::\"sleep\");",
                // Admins (by a claim) may do anything but crash the server.
                "permit(principal, action == Action::\"call_tool\", resource) when { principal has claim_role && principal.claim_role == \"admin\" };",
                "forbid(principal, action == Action::\"call_tool\", resource == Tool::\"crash\");"
            ],
            "entities_json": "[]"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cedar_decides_calls_and_filters_lists_per_caller() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("authz-table");
    cfg.policy.oidc = Some(oidc(&iss));
    cfg.policy.authz = Some(cedar_doc());
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();

    let token = |sub: &str, extra: Value| {
        let mut c = iss.claims(sub, AUDIENCE);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        iss.mint(&c)
    };
    let plain = token("pat", json!({}));
    let engineer = token("eve", json!({"groups": ["engineering"]}));
    let admin = token("ada", json!({"role": "admin"}));

    // Lists first: they teach the proxy the server's annotations.
    let s_plain = session(&url, Some(&plain)).await;
    assert_eq!(tool_names(&url, Some(&plain), &s_plain).await, vec!["echo", "pid"]);
    let s_eng = session(&url, Some(&engineer)).await;
    assert_eq!(tool_names(&url, Some(&engineer), &s_eng).await, vec!["echo", "pid", "sleep"]);
    let s_admin = session(&url, Some(&admin)).await;
    let admin_tools = tool_names(&url, Some(&admin), &s_admin).await;
    assert!(admin_tools.contains(&"sleep".to_owned()) && admin_tools.contains(&"test_simple_text".to_owned()));
    assert!(!admin_tools.contains(&"crash".to_owned()), "forbid wins over the admin permit");

    let table: Vec<(&str, &str, &str, Value, bool)> = vec![
        ("plain", &plain, "echo", json!({"text": "hi"}), true),
        ("plain", &plain, "echo", json!({"text": "secret"}), false),
        ("plain", &plain, "pid", json!({}), true),
        ("plain", &plain, "sleep", json!({"ms": 1}), false),
        ("plain", &plain, "test_simple_text", json!({}), false),
        ("engineer", &engineer, "sleep", json!({"ms": 1}), true),
        ("engineer", &engineer, "test_simple_text", json!({}), false),
        ("admin", &admin, "test_simple_text", json!({}), true),
        ("admin", &admin, "echo", json!({"text": "secret"}), false),
        ("admin", &admin, "crash", json!({}), false),
    ];
    let sessions = [("plain", &s_plain), ("engineer", &s_eng), ("admin", &s_admin)];
    for (who, tok, tool, args, allowed) in table {
        let sid = sessions.iter().find(|(w, _)| *w == who).unwrap().1;
        let (status, answer) = call(&url, Some(tok), sid, tool, args.clone()).await;
        if allowed {
            assert_eq!(status, 200, "{who} {tool} {args}: {answer}");
            assert!(answer.get("result").is_some(), "{who} {tool} {args}: {answer}");
        } else {
            assert_eq!(status, 403, "{who} {tool} {args}: {answer}");
            assert_eq!(answer["error"]["code"], -31007, "{answer}");
            assert_eq!(answer["id"], 9, "a denial answers the request: {answer}");
            assert_eq!(answer["error"]["data"]["action"], "call_tool");
        }
    }

    // The official Python SDK sees the same filtered list.
    let mut cmd = apiary_testkit::env::command("python3");
    cmd.env("MCP_BEARER_TOKEN", &plain)
        .arg(common::sdk::script("py_client.py"))
        .arg(&url)
        .arg("echo")
        .arg(json!({"text": "from python"}).to_string());
    let out = common::sdk::run_script(cmd).await.unwrap();
    assert_eq!(out["tools"], json!(["echo", "pid"]), "{out}");
    assert_eq!(out["result"]["content"][0]["text"], "from python");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_filter_hides_and_the_override_renames() {
    let mut cfg = common::testkit_config("tools-filter");
    cfg.policy.tools.filter = vec!["echo".into(), "pid".into()];
    cfg.policy
        .tools
        .overrides
        .insert("echo".into(), ToolOverride { name: Some("say".into()), description: Some("Says it back".into()) });
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();
    let sid = session(&url, None).await;
    let res = post(&url, None, Some(&sid), &json!({"jsonrpc":"2.0","id":7,"method":"tools/list"})).await;
    let listed = message(res).await;
    let tools = listed["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["say", "pid"], "{listed}");
    assert_eq!(tools[0]["description"], "Says it back");
    assert_eq!(tools[0]["inputSchema"]["properties"]["text"]["type"], "string", "the rest of the tool is kept");

    let (status, answer) = call(&url, None, &sid, "say", json!({"text": "renamed"})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["content"][0]["text"], "renamed", "{answer}");
    for hidden in ["echo", "sleep", "crash"] {
        let (status, answer) = call(&url, None, &sid, hidden, json!({})).await;
        assert_eq!(status, 200, "{hidden}");
        assert_eq!(answer["error"]["code"], -32602, "{hidden}: {answer}");
        assert_eq!(answer["error"]["message"], format!("Unknown tool: {hidden}"));
    }
    proxy.shutdown().await;
}

/// Opens the session's GET stream (where the proxy sends what no request owns).
async fn open_get_stream(url: &str, sid: &str) -> reqwest::Response {
    let res = http()
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET stream: {}", res.text().await.unwrap());
    res
}

/// Reads a GET stream until an event carries `method`; returns that message. Bounded so a
/// dropped notification fails the test instead of hanging it.
async fn wait_for_method(res: reqwest::Response, method: &str) -> Value {
    use futures::StreamExt;
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .unwrap_or_else(|_| panic!("no {method} on the GET stream; saw {seen:?}"))
            .unwrap_or_else(|| panic!("the GET stream ended before {method}; saw {seen:?}"))
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        let found = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m["method"] == method);
        if let Some(m) = found {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_list_changed_reaches_clients_and_the_next_list_is_filtered_again() {
    let mut cfg = common::testkit_config("list-changed");
    // The filter lets two of the three tools the test adds through; the override renames one.
    cfg.policy.tools.filter = vec!["add_tool".into(), "dyn_shown".into(), "dyn_denied".into()];
    cfg.policy
        .tools
        .overrides
        .insert("dyn_shown".into(), ToolOverride { name: Some("shown".into()), description: None });
    // Cedar names the server's own tools; it permits one of the two the filter passes.
    cfg.policy.authz = Some(json!({"version": "1.0", "type": "cedarv1", "cedar": {
        "policies": [
            "permit(principal, action == Action::\"call_tool\", resource == Tool::\"add_tool\");",
            "permit(principal, action == Action::\"call_tool\", resource == Tool::\"dyn_shown\");"
        ],
        "entities_json": "[]"}}));
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();

    let caller = session(&url, None).await;
    let other = session(&url, None).await;
    assert_eq!(tool_names(&url, None, &caller).await, vec!["add_tool"]);
    let caller_stream = open_get_stream(&url, &caller).await;
    let other_stream = open_get_stream(&url, &other).await;

    for name in ["dyn_shown", "dyn_denied", "dyn_hidden"] {
        let (status, answer) = call(&url, None, &caller, "add_tool", json!({"name": name})).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], format!("added {name}"), "{answer}");
    }
    // The shared child's list changed for every session on it, not just the caller's.
    let note = wait_for_method(caller_stream, "notifications/tools/list_changed").await;
    assert!(note.get("id").is_none(), "{note}");
    wait_for_method(other_stream, "notifications/tools/list_changed").await;

    // The next list is filtered again: renamed, and neither the denied nor the unfiltered tool.
    for sid in [&caller, &other] {
        assert_eq!(tool_names(&url, None, sid).await, vec!["add_tool", "shown"]);
    }
    let (status, answer) = call(&url, None, &other, "shown", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "dyn_shown", "the server got its own name: {answer}");
    let (status, answer) = call(&url, None, &other, "dyn_denied", json!({})).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], -31007, "{answer}");
    let (status, answer) = call(&url, None, &other, "dyn_hidden", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["error"]["message"], "Unknown tool: dyn_hidden", "{answer}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_audit_event_and_none_holds_the_token() {
    let iss = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut cfg = common::testkit_config("audit");
    cfg.policy.oidc = Some(oidc(&iss));
    cfg.policy.authz = Some(cedar_doc());
    cfg.policy.audit = Some(json!({"component": "audit-test", "logFile": log, "includeRequestData": true}));
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();
    let token = iss.mint(&iss.claims("alice", AUDIENCE));

    let sid = session(&url, Some(&token)).await; // initialize + initialized: 2 events
    tool_names(&url, Some(&token), &sid).await; // 1
    call(&url, Some(&token), &sid, "echo", json!({"text": "ok"})).await; // 1, success
    call(&url, Some(&token), &sid, "sleep", json!({"ms": 1})).await; // 1, denied
    post(&url, None, None, &initialize(1)).await; // 1, denied (401)
    post(&url, Some("garbage"), None, &initialize(1)).await; // 1, denied (401)
    proxy.shutdown().await; // flushes

    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 7, "{text}");
    let outcomes: Vec<&str> = events.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, vec!["success", "success", "success", "success", "denied", "denied", "denied"], "{text}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[..4], ["mcp_initialize", "mcp_notification", "mcp_tools_list", "mcp_tool_call"]);
    assert_eq!(events[3]["target"]["name"], "echo");
    assert_eq!(events[3]["subjects"]["user_id"], "alice");
    assert_eq!(events[4]["target"]["name"], "sleep");
    assert!(events.iter().all(|e| e["component"] == "audit-test"));
    assert!(!text.contains(&token), "a token was written to the audit log");
    assert!(!text.contains("garbage"), "a presented credential was written to the audit log");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_token_never_reaches_an_http_upstream() {
    let iss = TestIssuer::start().await;
    let (upstream, seen) = common::recording_upstream().await;
    let mut cfg = RunConfig::new("authn-upstream", apiary_config::Source::remote(&upstream));
    cfg.policy.oidc = Some(oidc(&iss));
    let proxy = apiary_proxy::start(cfg, None).await.unwrap();
    let token = iss.mint(&iss.claims("alice", AUDIENCE));
    let res =
        post(&proxy.url(), Some(&token), Some("up-1"), &json!({"jsonrpc":"2.0","id":3,"method":"tools/list"})).await;
    assert_eq!(res.status(), 200);
    let res = post(&proxy.url(), None, Some("up-1"), &json!({"jsonrpc":"2.0","id":4,"method":"tools/list"})).await;
    assert_eq!(res.status(), 401, "no token, no forwarding");
    proxy.shutdown().await;
    assert_eq!(*seen.lock().unwrap(), vec![None], "the upstream got exactly one request, without the caller's token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_without_a_required_scope_gets_a_403_insufficient_scope() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("authn-scopes");
    cfg.policy.oidc = Some(OidcConfig {
        scopes: vec!["openid".into()],
        required_scopes: vec!["mcp:tools".into(), "mcp:read".into()],
        ..oidc(&iss)
    });
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();
    let with_scope = |scope: Value| {
        let mut c = iss.claims("alice", AUDIENCE);
        c["scope"] = scope;
        iss.mint(&c)
    };

    let lacking = with_scope(json!("openid mcp:read"));
    let res = post(&url, Some(&lacking), None, &initialize(5)).await;
    assert_eq!(res.status(), 403);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let params = challenge_params(&challenge);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(param("error"), Some("insufficient_scope"), "{challenge}");
    assert_eq!(param("scope"), Some("mcp:tools mcp:read"), "the scopes required: {challenge}");
    assert_eq!(
        param("resource_metadata"),
        Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    assert_eq!(param("realm"), Some(iss.issuer().as_str()));
    let body = message(res).await;
    assert_eq!(body["error"]["code"], apiary_protocol::codes::FORBIDDEN);
    assert_eq!(body["error"]["data"], json!({"error": "insufficient_scope", "scope": "mcp:tools"}));

    // No token at all is still a 401 (the caller is unknown), its challenge naming every scope.
    let res = post(&url, None, None, &initialize(6)).await;
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains(r#"scope="openid mcp:tools mcp:read""#), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");

    // Both scopes, as a `scope` string or an `scp` array: admitted.
    let granted = with_scope(json!("mcp:read openid mcp:tools"));
    assert!(!session(&url, Some(&granted)).await.is_empty());
    let mut c = iss.claims("alice", AUDIENCE);
    c["scp"] = json!(["mcp:tools", "mcp:read"]);
    let sid = session(&url, Some(&iss.mint(&c))).await;
    assert!(tool_names(&url, Some(&iss.mint(&c)), &sid).await.contains(&"echo".to_owned()));

    // The metadata advertises them.
    let doc: Value = http()
        .get(format!("http://{}/.well-known/oauth-protected-resource/mcp", proxy.local_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["scopes_supported"], json!(["openid", "mcp:tools", "mcp:read"]));
    proxy.shutdown().await;
}

/// Permits every tool call to `user` alone.
fn only_user(user: &str) -> Value {
    json!({"version": "1.0", "type": "cedarv1", "cedar": {
        "policies": [format!("permit(principal == Client::\"{user}\", action == Action::\"call_tool\", resource);")],
        "entities_json": "[]"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_makes_every_caller_the_os_user_for_cedar() {
    let me = apiary_policy::Identity::os_username();
    let mut cfg = common::testkit_config("authn-local");
    cfg.policy.auth_mode = apiary_config::AuthMode::Local;
    cfg.policy.authz = Some(only_user(&me));
    let proxy = proxy_with(cfg).await;
    let url = proxy.url();
    let sid = session(&url, None).await;
    let (status, m) = call(&url, None, &sid, "echo", json!({"text": "hi"})).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["result"]["content"][0]["text"], "hi", "{m}");
    assert!(tool_names(&url, None, &sid).await.contains(&"echo".to_owned()));
    proxy.shutdown().await;

    // Another user (named in the config) is not the one the policy permits; nor is anonymous.
    for policy in [
        apiary_config::PolicyConfig {
            auth_mode: apiary_config::AuthMode::Local,
            local_user: Some(format!("not-{me}")),
            authz: Some(only_user(&me)),
            ..Default::default()
        },
        apiary_config::PolicyConfig { authz: Some(only_user(&me)), ..Default::default() },
    ] {
        let mut cfg = common::testkit_config("authn-local-other");
        cfg.policy = policy;
        let proxy = proxy_with(cfg).await;
        let url = proxy.url();
        let sid = session(&url, None).await;
        let (status, m) = call(&url, None, &sid, "echo", json!({"text": "hi"})).await;
        assert_eq!(status, 403, "{m}");
        assert!(tool_names(&url, None, &sid).await.is_empty(), "no tool is listed to another principal");
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_cannot_be_combined_with_oidc() {
    let mut cfg = common::testkit_config("authn-local-oidc");
    cfg.policy.auth_mode = apiary_config::AuthMode::Local;
    cfg.policy.oidc = Some(OidcConfig { insecure_allow_http: true, ..OidcConfig::new("http://127.0.0.1:9") });
    let err = apiary_proxy::start(cfg, None).await.err().expect("refused");
    assert!(err.to_string().contains("authMode: local cannot be combined"), "{err}");
}
