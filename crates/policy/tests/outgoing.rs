//! Upstream credentials: the RFC 8693 exchange against a small STS on 127.0.0.1 (one request
//! for many concurrent callers of one token, a cache per caller token, refusals and failures
//! told apart) and the configuration checks (refused headers, conflicts, missing secrets).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apiary_config::{OutgoingConfig, SubjectTokenType, TokenExchangeConfig};
use apiary_policy::outgoing::{ExchangeError, Outgoing, OutgoingConfigError, OutgoingError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

struct Sts {
    calls: AtomicUsize,
}

/// An STS: `subject_token=good-*` gets `exchanged-<n>-<subject>`, `denied` gets an OAuth
/// error, `broken` a 500.
async fn token(State(sts): State<Arc<Sts>>, headers: HeaderMap, body: String) -> axum::response::Response {
    let n = sts.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange");
    assert_eq!(form["subject_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(form["audience"], "backend");
    assert_eq!(form["scope"], "openid groups");
    // Basic base64("gateway:s3cret")
    assert_eq!(headers["authorization"], "Basic Z2F0ZXdheTpzM2NyZXQ=");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    match form["subject_token"].as_str() {
        "denied" => (
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_request","error_description":"Requested audience not available: backend"}"#,
        )
            .into_response(),
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        s => (
            [("content-type", "application/json")],
            format!(r#"{{"access_token":"exchanged-{n}-{s}","expires_in":300,"token_type":"Bearer"}}"#),
        )
            .into_response(),
    }
}

async fn sts() -> (String, Arc<Sts>) {
    let state = Arc::new(Sts { calls: AtomicUsize::new(0) });
    let app = axum::Router::new().route("/token", axum::routing::post(token)).with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn exchange(url: &str) -> OutgoingConfig {
    OutgoingConfig {
        token_exchange: Some(TokenExchangeConfig {
            token_url: url.to_owned(),
            client_id: "gateway".into(),
            client_secret: Some("s3cret".into()),
            client_secret_env: None,
            audience: Some("backend".into()),
            scopes: vec!["openid".into(), "groups".into()],
            header_name: None,
            subject_token_type: SubjectTokenType::AccessToken,
            insecure_allow_http: true,
        }),
        ..OutgoingConfig::default()
    }
}

fn authorization(headers: &[(http::HeaderName, http::HeaderValue)]) -> String {
    headers.iter().find(|(n, _)| n == http::header::AUTHORIZATION).unwrap().1.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_one_token_share_one_exchange_and_the_cache() {
    let (url, sts) = sts().await;
    let out = Arc::new(Outgoing::new(&exchange(&url)).unwrap().unwrap());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let out = Arc::clone(&out);
        tasks.push(tokio::spawn(async move { authorization(&out.headers(Some("good-a")).await.unwrap()) }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert!(got.iter().all(|g| g == "Bearer exchanged-1-good-a"), "{got:?}");
    assert_eq!(sts.calls.load(Ordering::SeqCst), 1);
    // Another caller token is another exchange.
    assert_eq!(authorization(&out.headers(Some("good-b")).await.unwrap()), "Bearer exchanged-2-good-b");
    assert_eq!(authorization(&out.headers(Some("good-a")).await.unwrap()), "Bearer exchanged-1-good-a");
    assert_eq!(sts.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refusals_failures_and_a_missing_caller_token_are_told_apart() {
    let (url, sts) = sts().await;
    let out = Outgoing::new(&exchange(&url)).unwrap().unwrap();
    match out.headers(Some("denied")).await {
        Err(OutgoingError::Exchange(ExchangeError::Refused { status: 400, error, description })) => {
            assert_eq!(error, "invalid_request");
            assert!(description.unwrap().contains("audience not available"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(out.headers(Some("broken")).await, Err(OutgoingError::Exchange(ExchangeError::Unavailable(_)))));
    assert!(matches!(out.headers(None).await, Err(OutgoingError::Exchange(ExchangeError::Refused { .. }))));
    // Failures are not cached.
    let before = sts.calls.load(Ordering::SeqCst);
    assert!(out.headers(Some("denied")).await.is_err());
    assert_eq!(sts.calls.load(Ordering::SeqCst), before + 1);

    let dead = Outgoing::new(&exchange("http://127.0.0.1:9/token")).unwrap().unwrap();
    assert!(matches!(dead.headers(Some("good-a")).await, Err(OutgoingError::Exchange(ExchangeError::Unavailable(_)))));
}

#[tokio::test]
async fn a_custom_header_gets_the_bare_token() {
    let (url, _sts) = sts().await;
    let mut cfg = exchange(&url);
    cfg.token_exchange.as_mut().unwrap().header_name = Some("X-Upstream-Token".into());
    let out = Outgoing::new(&cfg).unwrap().unwrap();
    let headers = out.headers(Some("good-c")).await.unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0.as_str(), "x-upstream-token");
    assert_eq!(headers[0].1, "exchanged-1-good-c");
}

#[test]
fn configuration_mistakes_are_refused() {
    let mut cfg = OutgoingConfig::default();
    cfg.headers.insert("X-Forwarded-For".into(), "1.2.3.4".into());
    assert!(matches!(Outgoing::new(&cfg), Err(OutgoingConfigError::Header(_))));

    let mut cfg = OutgoingConfig { bearer_token: Some("t".into()), ..OutgoingConfig::default() };
    cfg.headers.insert("Authorization".into(), "Basic x".into());
    assert!(matches!(Outgoing::new(&cfg), Err(OutgoingConfigError::Conflict(..))));

    let mut cfg = exchange("https://sts.example/token");
    cfg.bearer_token = Some("t".into());
    assert!(matches!(Outgoing::new(&cfg), Err(OutgoingConfigError::Conflict(..))));

    let cfg = OutgoingConfig { bearer_token_env: Some("APIARY_TEST_SURELY_UNSET".into()), ..OutgoingConfig::default() };
    assert!(matches!(Outgoing::new(&cfg), Err(OutgoingConfigError::MissingEnv { .. })));

    let mut cfg = exchange("http://sts.example/token");
    cfg.token_exchange.as_mut().unwrap().insecure_allow_http = false;
    assert!(matches!(Outgoing::new(&cfg), Err(OutgoingConfigError::Exchange(_))));

    let mut cfg = exchange("https://sts.example/token");
    cfg.token_exchange.as_mut().unwrap().client_secret = None;
    assert!(matches!(Outgoing::new(&cfg), Err(OutgoingConfigError::Exchange(_))));

    assert!(Outgoing::new(&OutgoingConfig::default()).unwrap().is_none());
    let mut cfg = OutgoingConfig { bearer_token: Some("t".into()), ..OutgoingConfig::default() };
    cfg.headers.insert("X-Tenant-ID".into(), "acme".into());
    assert!(Outgoing::new(&cfg).unwrap().is_some());
}

/// A token endpoint: refresh token `good` gets a new pair, anything else `invalid_grant`.
async fn refresh_endpoint(body: String) -> axum::response::Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(form["grant_type"], "refresh_token");
    if form["refresh_token"] == "good" {
        (
            [("content-type", "application/json")],
            r#"{"access_token":"fresh-at","refresh_token":"rotated","expires_in":600}"#,
        )
            .into_response()
    } else {
        (StatusCode::BAD_REQUEST, [("content-type", "application/json")], r#"{"error":"invalid_grant"}"#)
            .into_response()
    }
}

#[tokio::test]
async fn a_remote_login_session_is_refreshed_saved_back_and_an_expired_one_says_what_to_do() {
    use apiary_policy::remote_auth::RemoteAuthSnapshot;
    let app = axum::Router::new().route("/token", axum::routing::post(refresh_endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.json");
    let snap = |refresh: &str| RemoteAuthSnapshot {
        token_url: token_url.clone(),
        client_id: "c".into(),
        client_auth: "none".into(),
        registered_client_secret: None,
        resource: None,
        access_token: "stale-at".into(),
        refresh_token: Some(refresh.into()),
        expires_at_unix: 0,
    };
    let cfg = OutgoingConfig {
        remote_auth: Some(apiary_config::RemoteAuthSettings {
            insecure_allow_http: true,
            session_file: Some(session.clone()),
            relogin_hint: Some("run `apiary restart w` in a terminal".into()),
            ..Default::default()
        }),
        ..OutgoingConfig::default()
    };
    // No session yet: refused at start, naming what to do.
    let err = Outgoing::new(&cfg).unwrap_err().to_string();
    assert!(err.contains("apiary restart w"), "{err}");

    snap("good").save(&session).unwrap();
    let out = Outgoing::new(&cfg).unwrap().unwrap();
    let headers = out.headers(Some("the-callers-token")).await.unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].1, "Bearer fresh-at");
    let saved = RemoteAuthSnapshot::load(&session).unwrap();
    assert_eq!((saved.access_token.as_str(), saved.refresh_token.as_deref()), ("fresh-at", Some("rotated")));

    snap("revoked").save(&session).unwrap();
    let out = Outgoing::new(&cfg).unwrap().unwrap();
    match out.headers(None).await {
        Err(OutgoingError::RemoteAuth { message, needs_login: true }) => {
            assert!(message.contains("expired") && message.contains("apiary restart w"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
