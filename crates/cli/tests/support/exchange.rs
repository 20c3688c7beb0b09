//! What the vMCP `token_exchange` tests (`vmcp_exchange*.rs`) share against the real Keycloak:
//! two fixture backends (`alpha` gets the caller's token exchanged for [`BACKEND_AUDIENCE`],
//! `beta` no outgoing auth) behind `apiary vmcp serve` with incoming OIDC, one JSON-RPC POST,
//! and reading which `Authorization` a backend saw and checking it is an exchanged token.

use std::process::Stdio;
use std::time::Duration;

use apiary_testkit::binaries::testkit_server;
use apiary_testkit::keycloak::{BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, decode_claims};
use serde_json::Value;

use super::{Apiary, Running, start_printing_url};

/// Bound on one request to the vMCP.
const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// A vMCP exchanging tokens for backend `alpha`, and what it runs on; all stopped when dropped
/// (the vMCP first, the installation last).
pub struct ExchangeVmcp {
    /// `apiary vmcp serve`; its `url` is the MCP endpoint.
    pub vmcp: Running,
    /// The two fixture servers over HTTP: `alpha`, `beta`.
    pub backends: Vec<Running>,
    /// The configuration file's text.
    pub config: String,
    pub apiary: Apiary,
}

/// Starts two fixture backends and `apiary vmcp serve` in front of them, accepting tokens of
/// `kc` for audience `mcp-gateway` and exchanging them (as [`GATEWAY_CLIENT`]) for `alpha`.
pub async fn start_exchange_vmcp(kc: &Keycloak) -> ExchangeVmcp {
    let apiary = Apiary::new();
    let mut backends = Vec::new();
    for _ in 0..2 {
        let mut cmd = tokio::process::Command::new(testkit_server());
        cmd.args(["--http", "127.0.0.1:0"]).stdin(Stdio::null());
        backends.push(start_printing_url(cmd).await);
    }
    let config = format!(
        "backends:\n  - {{name: alpha, url: '{}', transport: streamable-http}}\n  - {{name: beta, url: '{}', transport: streamable-http}}\n\
         incomingAuth:\n  type: oidc\n  oidc: {{issuer: '{}', audience: mcp-gateway, insecureAllowHttp: true}}\n\
         outgoingAuth:\n  backends:\n    alpha:\n      type: token_exchange\n      tokenExchange:\n        tokenUrl: '{}'\n        clientId: {GATEWAY_CLIENT}\n        clientSecretEnv: APIARY_TEST_STS_SECRET\n        audience: {BACKEND_AUDIENCE}\n        scopes: [openid]\n        subjectTokenType: urn:ietf:params:oauth:token-type:access_token\n        insecureAllowHttp: true\n",
        backends[0].url,
        backends[1].url,
        kc.issuer(),
        kc.token_endpoint()
    );
    let path = apiary.scratch().join("exchange.yaml");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = apiary.command(&["vmcp", "serve", "--port", "0", "--config", path.to_str().unwrap()]);
    cmd.env("APIARY_TEST_STS_SECRET", GATEWAY_SECRET);
    let vmcp = start_printing_url(tokio::process::Command::from(cmd)).await;
    ExchangeVmcp { vmcp, backends, config, apiary }
}

/// POSTs one JSON-RPC message to `url` with `token` as its bearer and `headers` beside the
/// usual ones: the HTTP status, the answer (from JSON or the first SSE `data:` line that is a
/// response) and the session id the answer names.
pub async fn post(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Option<Value>, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .timeout(REQUEST_LIMIT)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let sid = res.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let answer = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
    });
    (status, answer, sid)
}

/// What the fixture's `request_header` tool answered: the header's value, or the error text
/// (a JSON-RPC error, or a tool error such as "no header authorization").
pub fn header_seen(answer: &Value) -> Result<String, String> {
    if let Some(e) = answer.get("error") {
        return Err(e.to_string());
    }
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    if answer["result"]["isError"] == true { Err(text) } else { Ok(text) }
}

/// Asserts that `seen` (the `Authorization` a backend received) is a token Keycloak exchanged
/// for [`BACKEND_AUDIENCE`] on behalf of user `mcp`, requested by [`GATEWAY_CLIENT`]: never
/// `caller`, the caller's own token.
pub fn assert_exchanged(seen: &str, caller: &str) {
    let exchanged = seen.strip_prefix("Bearer ").unwrap();
    assert_ne!(exchanged, caller, "the caller's own token reached the backend");
    let claims = decode_claims(exchanged).unwrap();
    assert!(audiences(&claims).contains(&BACKEND_AUDIENCE.to_owned()), "{claims}");
    assert_eq!(claims["azp"], GATEWAY_CLIENT, "{claims}");
    assert_eq!(claims["preferred_username"], "mcp", "{claims}");
}

/// A token's `aud` claim as a list (it may be one string).
fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}
