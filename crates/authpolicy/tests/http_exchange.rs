//! The seed's token exchange over real HTTP: the `ReqwestFetcher` posts to a token endpoint on
//! 127.0.0.1 (an axum stand-in for Keycloak), and the exchanged token is injected.
#![allow(clippy::unwrap_used)]
mod common;

use std::sync::{Arc, Mutex};

use apiary_authpolicy::{Decision, FetchError, HttpCall, MetadataFetcher, ReqwestFetcher};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header::CONTENT_TYPE};
use common::*;
use serde_json::{Value, json};

const JSON: [(HeaderName, &str); 1] = [(CONTENT_TYPE, "application/json")];

type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>, Vec<(String, String)>)>>>;

/// Answers like Keycloak: 200 with an exchanged token for the right client, 401 otherwise.
async fn token(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, [(HeaderName, &'static str); 1], String) {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let form = form(body.as_bytes());
    seen.lock().unwrap().push((header("authorization"), header("content-type"), form.clone()));
    if header("authorization").as_deref() != Some(SECRET) {
        return (StatusCode::UNAUTHORIZED, JSON, json!({"error": "invalid_client"}).to_string());
    }
    let audience = form.iter().find(|(k, _)| k == "audience").map(|(_, v)| v.clone()).unwrap();
    let reply = json!({"access_token": jwt(&exchanged_claims(&audience)), "token_type": "Bearer"});
    (StatusCode::OK, JSON, reply.to_string())
}

async fn serve(seen: Seen) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/realms/mcp/protocol/openid-connect/token", axum::routing::post(token))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn the_seed_exchange_goes_over_http_and_its_token_is_injected() {
    let seen: Seen = Arc::default();
    let (base, server) = serve(seen.clone()).await;
    // The seed's policy, its Keycloak URL pointed at the local endpoint.
    let text = SEED
        .replace("url: https://keycloak.example.com/realms/mcp/protocol", &format!("url: {base}/realms/mcp/protocol"));
    assert_ne!(text, SEED);
    let policy = load_value(yaml(&text)).unwrap();
    let fetcher = ReqwestFetcher::new().unwrap();
    let user = jwt(&user_claims());

    let d = policy.evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &fetcher).await;
    let exchanged = jwt(&exchanged_claims(SERVER));
    assert_eq!(d, Decision::Allow { headers_to_set: vec![("authorization".into(), format!("Bearer {exchanged}"))] });
    let d = policy.evaluate(&request(Some(&user), "pods_delete"), &Verifier, &fetcher).await;
    assert!(matches!(d, Decision::Deny { status: 403, .. }), "{d:?}");

    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 2);
    let (auth, content_type, mut form) = seen_now[0].clone();
    assert_eq!(auth.as_deref(), Some(SECRET));
    assert_eq!(content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    form.sort();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["audience", "grant_type", "scope", "subject_token", "subject_token_type"]);
    assert!(form.contains(&("subject_token".into(), user.clone())));

    // Keycloak refuses the client (wrong secret): its error JSON becomes the metadata, there is
    // no access_token, the Rego falls back to the caller's token, and its audience is refused.
    let policy = apiary_authpolicy::AuthPolicy::from_value(yaml(&text)).unwrap();
    let wrong = |_: &str, _: &str| Some("Basic d3Jvbmc6d3Jvbmc=".to_owned());
    let policy = apiary_authpolicy::CompiledPolicy::load(&policy, &wrong).unwrap();
    let d = policy.evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &fetcher).await;
    let Decision::Deny { status, reason, .. } = &d else { panic!("{d:?}") };
    assert_eq!(*status, 403);
    assert!(reason.contains("scoped-audience-check"), "{reason}");
    server.abort();
}

#[tokio::test]
async fn reqwest_fetcher_returns_json_or_text_whatever_the_status_and_caps_the_size() {
    let app = axum::Router::new()
        .route("/err", axum::routing::get(|| async { (StatusCode::BAD_REQUEST, JSON, "{\"error\":\"x\"}") }))
        .route("/badjson", axum::routing::get(|| async { (JSON, "{not json") }))
        .route("/big", axum::routing::get(|| async { "x".repeat(2048) }))
        .route("/text", axum::routing::get(|| async { "plain" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fetcher = ReqwestFetcher::with_limits(std::time::Duration::from_secs(5), 1024).unwrap();
    let get =
        |path: &str| HttpCall { method: http::Method::GET, url: format!("{base}{path}"), headers: vec![], body: None };
    // As Authorino: an error status still gives its body (the policy decides what it means).
    assert_eq!(fetcher.fetch(&get("/err")).await.unwrap(), json!({"error": "x"}));
    assert!(matches!(fetcher.fetch(&get("/badjson")).await, Err(FetchError::Json)));
    assert!(matches!(fetcher.fetch(&get("/big")).await, Err(FetchError::TooLarge(1024))));
    assert_eq!(fetcher.fetch(&get("/text")).await.unwrap(), Value::String("plain".into()));
    server.abort();
}
