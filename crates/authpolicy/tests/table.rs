//! The AuthPolicy evaluation table: seed 004's policy verbatim, then each rule kind and response
//! field on its own, then the fail-closed cases.
#![allow(clippy::unwrap_used)]
mod common;

use apiary_authpolicy::{Decision, FetchError};
use common::*;
use serde_json::json;

const BODY_401: &str =
    "{\n  \"error\": \"Unauthorized\",\n  \"message\": \"MCP Tool Access denied: Authentication required.\"\n}\n";
const BODY_403: &str = "{\n  \"error\": \"Forbidden\",\n  \"message\": \"MCP Tool Access denied: Insufficient permissions for this tool.\"\n}\n";

fn deny_parts(d: &Decision) -> (u16, Vec<(String, String)>, Option<String>) {
    match d {
        Decision::Deny { status, headers, body, .. } => (*status, headers.clone(), body.clone()),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn allowed_headers(d: &Decision) -> Vec<(String, String)> {
    match d {
        Decision::Allow { headers_to_set } => headers_to_set.clone(),
        other => panic!("expected allow, got {other:?}"),
    }
}

#[tokio::test]
async fn seed_allows_a_tool_among_the_roles_and_injects_the_exchanged_token() {
    let policy = seed();
    let user = jwt(&user_claims());
    let fetcher = Fetcher::exchange_to(SERVER);
    let d = policy.evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &fetcher).await;
    let headers = allowed_headers(&d);
    let exchanged = jwt(&exchanged_claims(SERVER));
    assert_eq!(headers, vec![("authorization".to_owned(), format!("Bearer {exchanged}"))]);
    assert!(!headers[0].1.contains(&user), "the caller's token is not forwarded");
}

#[tokio::test]
async fn seed_builds_the_token_exchange_call_as_written() {
    let policy = seed();
    let user = jwt(&user_claims());
    let fetcher = Fetcher::exchange_to(SERVER);
    policy.evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &fetcher).await;
    let calls = fetcher.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, http::Method::POST);
    assert_eq!(call.url, "https://keycloak.example.com/realms/mcp/protocol/openid-connect/token");
    assert_eq!(call.header("content-type"), Some("application/x-www-form-urlencoded"));
    // The Secret holds `Basic <b64>` and the policy adds `Basic`: sent once (names.md §6).
    assert_eq!(call.header("authorization"), Some(SECRET));
    let mut body = form(call.body.as_ref().unwrap());
    body.sort();
    assert_eq!(
        body,
        vec![
            ("audience".to_owned(), SERVER.to_owned()),
            ("grant_type".to_owned(), "urn:ietf:params:oauth:grant-type:token-exchange".to_owned()),
            ("scope".to_owned(), "openid profile groups".to_owned()),
            ("subject_token".to_owned(), user.clone()),
            ("subject_token_type".to_owned(), "urn:ietf:params:oauth:token-type:access_token".to_owned()),
        ]
    );
}

#[tokio::test]
async fn seed_denies_a_tool_outside_the_roles_with_the_seed_body() {
    let policy = seed();
    let user = jwt(&user_claims());
    let d = policy.evaluate(&request(Some(&user), "pods_delete"), &Verifier, &Fetcher::exchange_to(SERVER)).await;
    let (status, headers, body) = deny_parts(&d);
    assert_eq!(status, 403);
    assert!(headers.is_empty());
    assert_eq!(body.as_deref(), Some(BODY_403));
}

#[tokio::test]
async fn seed_answers_401_with_the_seed_header_and_body_without_a_token() {
    let policy = seed();
    let fetcher = Fetcher::exchange_to(SERVER);
    let d = policy.evaluate(&request(None, "namespaces_list"), &Verifier, &fetcher).await;
    let (status, headers, body) = deny_parts(&d);
    assert_eq!(status, 401);
    assert_eq!(
        headers,
        vec![(
            "WWW-Authenticate".to_owned(),
            "Bearer resource_metadata=https://mcp.example.com/.well-known/oauth-protected-resource/mcp".to_owned()
        )]
    );
    assert_eq!(body.as_deref(), Some(BODY_401));
    assert!(fetcher.calls().is_empty(), "no exchange for an unauthenticated caller");
}

#[tokio::test]
async fn seed_answers_401_for_a_token_the_verifier_rejects() {
    let policy = seed();
    let mut claims = user_claims();
    claims["bad"] = json!(true);
    let d = policy
        .evaluate(&request(Some(&jwt(&claims)), "namespaces_list"), &Verifier, &Fetcher::exchange_to(SERVER))
        .await;
    assert_eq!(deny_parts(&d).0, 401);
    let wrong_issuer = jwt(&json!({"iss": "https://evil.example.com/realms/mcp"}));
    let d = policy
        .evaluate(&request(Some(&wrong_issuer), "namespaces_list"), &Verifier, &Fetcher::exchange_to(SERVER))
        .await;
    assert_eq!(deny_parts(&d).0, 401);
}

#[tokio::test]
async fn seed_scoped_audience_check_denies_an_exchanged_token_for_another_audience() {
    let policy = seed();
    let user = jwt(&user_claims());
    let d = policy
        .evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &Fetcher::exchange_to("mcp-test/other"))
        .await;
    let (status, _, body) = deny_parts(&d);
    assert_eq!(status, 403);
    assert_eq!(body.as_deref(), Some(BODY_403));
}

#[tokio::test]
async fn seed_denies_when_the_exchange_fails_and_the_user_token_has_another_audience() {
    // Metadata failures leave auth.metadata empty; the Rego falls back to the caller's token,
    // whose aud (mcp-gateway) fails scoped-audience-check.
    let policy = seed();
    let user = jwt(&user_claims());
    let fetcher = Fetcher::replying(Err(FetchError::Status(400)));
    let d = policy.evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &fetcher).await;
    assert_eq!(deny_parts(&d).0, 403);
    assert_eq!(fetcher.calls().len(), 1);
}

#[tokio::test]
async fn seed_skips_the_exchange_when_the_token_already_has_the_audience() {
    // The metadata `when`: no exchange for a token whose aud already is x-mcp-servername.
    let policy = seed();
    let scoped = jwt(&exchanged_claims(SERVER));
    let fetcher = Fetcher::exchange_to(SERVER);
    let d = policy.evaluate(&request(Some(&scoped), "namespaces_list"), &Verifier, &fetcher).await;
    assert_eq!(allowed_headers(&d), vec![("authorization".to_owned(), format!("Bearer {scoped}"))]);
    assert!(fetcher.calls().is_empty());
}
