//! The proxy's policy against a real identity provider: Keycloak with the `mcp` realm
//! (`apiary_testkit::keycloak`). Its tokens pass, its `groups` claim drives Cedar, and a
//! client without a token is sent to Keycloak by the RFC 9728 metadata.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_config::OidcConfig;
use apiary_testkit::keycloak::{Keycloak, USER_CLIENT};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

async fn post(url: &str, token: Option<&str>, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = http().post(url).header("content-type", "application/json").body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.send().await.unwrap()
}

async fn session(url: &str, token: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"kc-test","version":"1"}}});
    let res = post(url, Some(token), None, &init).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    res.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_tokens_pass_and_their_groups_drive_cedar() {
    let kc = Keycloak::shared().await;
    let mut cfg = common::testkit_config("keycloak-policy");
    cfg.policy.oidc = Some(OidcConfig {
        // The realm's user tokens are addressed to the gateway client.
        audience: Some("mcp-gateway".into()),
        scopes: vec!["openid".into()],
        resource_url: Some("http://127.0.0.1/mcp".into()),
        insecure_allow_http: true,
        ..OidcConfig::new(kc.issuer())
    });
    cfg.policy.authz = Some(json!({
        "version": "1.0",
        "type": "cedarv1",
        "cedar": {
            "policies": [
                "permit(principal in THVGroup::\"engineering\", action == Action::\"call_tool\", resource == Tool::\"echo\");",
                "permit(principal, action == Action::\"call_tool\", resource == Tool::\"pid\") when { principal.claim_preferred_username == \"mcp\" };"
            ],
            "entities_json": "[]"
        }
    }));
    let proxy = common::testkit_proxy(cfg).await;
    let url = proxy.url();

    // No token: 401, and the metadata names Keycloak as the authorization server.
    let res = post(&url, None, None, &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).await;
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with(&format!("Bearer realm=\"{}\"", kc.issuer())), "{challenge}");
    let doc: Value = http()
        .get(format!("http://{}/.well-known/oauth-protected-resource/mcp", proxy.local_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["authorization_servers"], json!([kc.issuer()]));

    let mcp = kc.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap().access_token;
    let limited = kc.password_token(USER_CLIENT, "mcp-limited", "mcp-limited", "openid").await.unwrap().access_token;
    let norole = kc.password_token(USER_CLIENT, "mcp-norole", "mcp-norole", "openid").await.unwrap().access_token;

    let list = |token: String| {
        let url = url.clone();
        async move {
            let sid = session(&url, &token).await;
            let res =
                post(&url, Some(&token), Some(&sid), &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await;
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            let mut names: Vec<String> = body["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            (sid, names)
        }
    };
    // `mcp` is in engineering and is named `mcp`; `mcp-limited` is in engineering only;
    // `mcp-norole` is in accounting only.
    let (sid, names) = list(mcp.clone()).await;
    assert_eq!(names, vec!["echo", "pid"]);
    assert_eq!(list(limited.clone()).await.1, vec!["echo"]);
    let (norole_sid, names) = list(norole.clone()).await;
    assert!(names.is_empty(), "{names:?}");

    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"kc"}}});
    let res = post(&url, Some(&mcp), Some(&sid), &call).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "kc", "{body}");
    let res = post(&url, Some(&norole), Some(&norole_sid), &call).await;
    assert_eq!(res.status(), 403);

    // The official Python SDK with a Keycloak token sees what Cedar lets `mcp` see.
    let mut cmd = apiary_testkit::env::command("python3");
    cmd.env("MCP_BEARER_TOKEN", &mcp).arg(common::sdk::script("py_client.py")).arg(&url).arg("pid").arg("{}");
    let out = common::sdk::run_script(cmd).await.unwrap();
    assert_eq!(out["tools"], json!(["echo", "pid"]), "{out}");
    proxy.shutdown().await;
}

/// Seed 004's exchange, done by the proxy: the caller's Keycloak token is swapped at Keycloak
/// for one addressed to `mcp-test/kubernetes-mcp`, and the upstream sees only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_exchanged_token_never_the_callers() {
    use apiary_config::{SubjectTokenType, TokenExchangeConfig};
    use apiary_testkit::keycloak::{BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, decode_claims};

    let kc = Keycloak::shared().await;
    let (upstream, seen) = common::recording_upstream().await;
    let mut cfg = apiary_config::RunConfig::new("keycloak-exchange", apiary_config::Source::remote(&upstream));
    cfg.policy.oidc = Some(OidcConfig {
        audience: Some("mcp-gateway".into()),
        insecure_allow_http: true,
        ..OidcConfig::new(kc.issuer())
    });
    cfg.policy.outgoing.token_exchange = Some(TokenExchangeConfig {
        token_url: kc.token_endpoint(),
        client_id: GATEWAY_CLIENT.into(),
        client_secret: Some(GATEWAY_SECRET.into()),
        client_secret_env: None,
        audience: Some(BACKEND_AUDIENCE.into()),
        scopes: vec!["openid".into(), "profile".into(), "groups".into()],
        header_name: None,
        subject_token_type: SubjectTokenType::AccessToken,
        insecure_allow_http: true,
    });
    let proxy = apiary_proxy::start(cfg, None).await.unwrap();
    let url = proxy.url();
    let list = json!({"jsonrpc":"2.0","id":5,"method":"tools/list"});

    let caller = kc.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap().access_token;
    for _ in 0..2 {
        let res = post(&url, Some(&caller), Some("up-1"), &list).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    let got: Vec<String> = seen.lock().unwrap().iter().map(|h| h.clone().unwrap()).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1], "the second call reuses the cached exchanged token");
    let token = got[0].strip_prefix("Bearer ").unwrap();
    assert_ne!(token, caller, "the caller's own token reached the upstream");
    let claims = decode_claims(token).unwrap();
    assert_eq!(claims["aud"], BACKEND_AUDIENCE, "{claims}");
    assert_eq!(claims["azp"], GATEWAY_CLIENT, "{claims}");
    assert_eq!(claims["preferred_username"], "mcp");

    // A user Keycloak will not exchange for that audience is refused, and nothing is forwarded.
    let norole = kc.password_token(USER_CLIENT, "mcp-norole", "mcp-norole", "openid").await.unwrap().access_token;
    let res = post(&url, Some(&norole), Some("up-1"), &list).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], -31007, "{body}");
    assert_eq!(body["id"], 5);
    assert!(body["error"]["data"]["reason"].as_str().unwrap().contains("Requested audience not available"), "{body}");
    assert_eq!(seen.lock().unwrap().len(), 2, "a refused exchange forwards nothing");
    proxy.shutdown().await;
}
