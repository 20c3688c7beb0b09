//! The remote OAuth login (`apiary_policy::remote_auth`) against a real Keycloak (realm `mcp`,
//! public client `mcp-client` with PKCE S256 required): the browser's part is played by
//! `apiary_testkit::keycloak::browser_login`, and tiny local servers stand in for a remote MCP
//! server (401 + RFC 9728 metadata), a flaky or tampering token endpoint in front of Keycloak,
//! and a registration endpoint.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_policy::remote_auth::{RemoteAuth, RemoteAuthConfig, RemoteAuthError};
use apiary_testkit::keycloak::{Keycloak, USER_CLIENT, browser_login, decode_claims};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A JSON answer (axum's `json` feature is off in this workspace).
fn json_answer(status: StatusCode, v: Value) -> axum::response::Response {
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

/// Serves `app` on 127.0.0.1 until the test's runtime ends; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A config whose authorization URL goes to `tx` (any free callback port, short backoff).
fn config(tx: tokio::sync::mpsc::Sender<String>) -> RemoteAuthConfig {
    RemoteAuthConfig {
        callback_port: 0,
        timeout: Duration::from_secs(90),
        insecure_allow_http: true,
        on_authorize_url: Some(Arc::new(move |url: &str| {
            let _ = tx.try_send(url.to_string());
        })),
        retry_backoff: Duration::from_millis(20),
        ..RemoteAuthConfig::default()
    }
}

/// Runs `login` while playing the browser: log in as `mcp`/`mcp`, deliver the callback.
/// Returns the login's result and the authorization URL it asked for.
async fn login_as_mcp(
    cfg: impl FnOnce(RemoteAuthConfig) -> RemoteAuthConfig,
    remote: &str,
) -> (Result<Arc<RemoteAuth>, RemoteAuthError>, String) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let cfg = cfg(config(tx));
    let browser = async {
        let url = rx.recv().await.unwrap();
        let callback = browser_login(&url, "mcp", "mcp").await.unwrap();
        assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
        assert!(callback.contains("code="), "{callback}");
        let answer = reqwest::get(&callback).await.unwrap();
        assert_eq!(answer.status(), 200);
        url
    };
    tokio::join!(RemoteAuth::login(cfg, remote), browser)
}

fn claims(token: &str) -> Value {
    decode_claims(token).unwrap()
}

#[tokio::test]
async fn login_with_a_client_id_gives_an_mcp_client_token() {
    let kc = Keycloak::shared().await;
    let (auth, url) = login_as_mcp(
        |c| RemoteAuthConfig {
            issuer: Some(kc.issuer()),
            client_id: Some(USER_CLIENT.into()),
            scopes: vec!["openid".into()],
            ..c
        },
        "http://127.0.0.1:1/unused",
    )
    .await;
    let auth = auth.unwrap();
    // The authorization request was a PKCE S256 one to Keycloak's discovered endpoint.
    let url = url::Url::parse(&url).unwrap();
    assert_eq!(url.as_str().split('?').next().unwrap(), kc.authorization_endpoint());
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["scope"], "openid");
    assert_eq!(q["client_id"], USER_CLIENT);
    let token = auth.access_token().await.unwrap();
    let c = claims(&token);
    assert_eq!(c["azp"], USER_CLIENT);
    assert_eq!(c["preferred_username"], "mcp");
    assert_eq!(c["iss"], kc.issuer());
    // Fresh (1800 s, refreshed 60 s before): the same token again, no refresh.
    assert_eq!(auth.access_token().await.unwrap(), token);
    // Debug output never shows a token.
    assert!(!format!("{auth:?}").contains(&*token));
}

/// A token endpoint in front of Keycloak's: counts refreshes, answers 503 to the first
/// `fail` of them, and with `tamper` spoils the refresh token (Keycloak then says invalid_grant).
struct TokenProxy {
    upstream: String,
    refreshes: AtomicUsize,
    fail: AtomicUsize,
    tamper: AtomicBool,
    resources: Mutex<Vec<Option<String>>>,
}

async fn token_proxy(State(p): State<Arc<TokenProxy>>, body: String) -> axum::response::Response {
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let get = |k: &str, f: &[(String, String)]| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    p.resources.lock().unwrap().push(get("resource", &form));
    if get("grant_type", &form).as_deref() == Some("refresh_token") {
        let n = p.refreshes.fetch_add(1, Ordering::SeqCst);
        if n < p.fail.load(Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
        }
        if p.tamper.load(Ordering::SeqCst) {
            for (k, v) in &mut form {
                if k == "refresh_token" {
                    v.push('x');
                }
            }
        }
    }
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let res = reqwest::Client::new()
        .post(&p.upstream)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
    (status, [("content-type", "application/json")], res.bytes().await.unwrap()).into_response()
}

async fn proxied_login(
    kc: &Keycloak,
    fail: usize,
    tamper: bool,
    tune: impl FnOnce(RemoteAuthConfig) -> RemoteAuthConfig,
) -> (Arc<RemoteAuth>, Arc<TokenProxy>) {
    let proxy = Arc::new(TokenProxy {
        upstream: kc.token_endpoint(),
        refreshes: AtomicUsize::new(0),
        fail: AtomicUsize::new(fail),
        tamper: AtomicBool::new(tamper),
        resources: Mutex::new(Vec::new()),
    });
    let base = serve(axum::Router::new().route("/token", post(token_proxy)).with_state(Arc::clone(&proxy))).await;
    let (auth, _) = login_as_mcp(
        |c| {
            tune(RemoteAuthConfig {
                issuer: Some(kc.issuer()),
                token_url: Some(format!("{base}/token")),
                client_id: Some(USER_CLIENT.into()),
                // Longer than Keycloak's 1800 s: every access_token() call refreshes.
                refresh_before: Duration::from_secs(3600),
                ..c
            })
        },
        "http://127.0.0.1:1/unused",
    )
    .await;
    (auth.unwrap(), proxy)
}

#[tokio::test]
async fn access_token_refreshes_when_near_expiry() {
    let kc = Keycloak::shared().await;
    let (auth, proxy) = proxied_login(kc, 0, false, |c| c).await;
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 0);
    let first = auth.access_token().await.unwrap();
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 1);
    let second = auth.access_token().await.unwrap();
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 2);
    let (a, b) = (claims(&first), claims(&second));
    assert_ne!(a["jti"], b["jti"], "a refresh gives a new token");
    assert_eq!(b["azp"], USER_CLIENT);
    assert_eq!(a["sid"], b["sid"], "the same session");
}

/// A local token endpoint that notes how many requests it serves at once.
#[derive(Default)]
struct SlowSts {
    now: AtomicUsize,
    most: AtomicUsize,
    total: AtomicUsize,
}

async fn slow_token(State(s): State<Arc<SlowSts>>, body: String) -> axum::response::Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let n = s.total.fetch_add(1, Ordering::SeqCst);
    let at_once = s.now.fetch_add(1, Ordering::SeqCst) + 1;
    s.most.fetch_max(at_once, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.now.fetch_sub(1, Ordering::SeqCst);
    assert_eq!(form["client_id"], "c");
    // The login's token is already within the 60 s refresh margin; refreshed ones are not.
    let life = if n == 0 { 30 } else { 1800 };
    json_answer(
        StatusCode::OK,
        json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": life,
        "refresh_token": format!("rt-{n}")}),
    )
}

/// Delivers the callback of the login whose authorization URL arrives on `rx`, with `code`.
async fn deliver_code(rx: &mut tokio::sync::mpsc::Receiver<String>, code: &str) {
    let url = url::Url::parse(&rx.recv().await.unwrap()).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let back = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    assert_eq!(reqwest::get(back).await.unwrap().status(), 200);
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let sts = Arc::new(SlowSts::default());
    let base = serve(axum::Router::new().route("/token", post(slow_token)).with_state(Arc::clone(&sts))).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let cfg = RemoteAuthConfig {
        authorize_url: Some(format!("{base}/authorize")),
        token_url: Some(format!("{base}/token")),
        client_id: Some("c".into()),
        ..config(tx)
    };
    let (auth, ()) = tokio::join!(RemoteAuth::login(cfg, "http://127.0.0.1:1/unused"), deliver_code(&mut rx, "x"));
    let auth = auth.unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let auth = Arc::clone(&auth);
            tokio::spawn(async move { auth.access_token().await.unwrap() })
        })
        .collect();
    for c in calls {
        // All four get the one refreshed token.
        assert_eq!(&*c.await.unwrap(), "at-1");
    }
    // One code exchange and a single refresh shared by the four callers.
    assert_eq!(sts.total.load(Ordering::SeqCst), 2);
    assert_eq!(sts.most.load(Ordering::SeqCst), 1);
    // Now fresh: no further request.
    assert_eq!(&*auth.access_token().await.unwrap(), "at-1");
    assert_eq!(sts.total.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn transient_token_endpoint_failures_are_retried() {
    let kc = Keycloak::shared().await;
    let (auth, proxy) = proxied_login(kc, 2, false, |c| RemoteAuthConfig { retry_attempts: 4, ..c }).await;
    let token = auth.access_token().await.unwrap();
    // Two 503s, then Keycloak's answer.
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 3);
    assert_eq!(claims(&token)["azp"], USER_CLIENT);
}

#[tokio::test]
async fn an_outage_longer_than_the_retries_keeps_the_still_valid_token() {
    let kc = Keycloak::shared().await;
    let (auth, proxy) = proxied_login(kc, 1000, false, |c| RemoteAuthConfig { retry_attempts: 3, ..c }).await;
    // The login's token is within refresh_before but not expired: it is still handed out.
    let token = auth.access_token().await.unwrap();
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 3);
    assert_eq!(claims(&token)["azp"], USER_CLIENT);
    // The STS recovers: the next call refreshes for real.
    proxy.fail.store(0, Ordering::SeqCst);
    let fresh = auth.access_token().await.unwrap();
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 4);
    assert_ne!(claims(&fresh)["jti"], claims(&token)["jti"]);
}

#[tokio::test]
async fn invalid_grant_says_log_in_again_without_retrying() {
    let kc = Keycloak::shared().await;
    let (auth, proxy) = proxied_login(kc, 0, true, |c| RemoteAuthConfig { retry_attempts: 5, ..c }).await;
    let err = auth.access_token().await.unwrap_err();
    assert!(err.needs_login(), "{err}");
    assert!(err.to_string().contains("log in again"), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 1, "a refusal is not retried");
    // The dead refresh token is forgotten: no further request, the same advice.
    let again = auth.access_token().await.unwrap_err();
    assert!(again.needs_login(), "{again}");
    assert_eq!(proxy.refreshes.load(Ordering::SeqCst), 1);
}

/// A remote MCP server that wants a token: 401 with `resource_metadata`, and the metadata.
struct Remote {
    issuer: String,
    base: Mutex<String>,
    posts: AtomicUsize,
}

async fn remote_mcp(State(r): State<Arc<Remote>>) -> axum::response::Response {
    r.posts.fetch_add(1, Ordering::SeqCst);
    let base = r.base.lock().unwrap().clone();
    let challenge = format!(
        r#"Bearer error="invalid_request", resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="openid profile""#
    );
    (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)], "").into_response()
}

async fn remote_prm(State(r): State<Arc<Remote>>) -> axum::response::Response {
    let base = r.base.lock().unwrap().clone();
    json_answer(
        StatusCode::OK,
        json!({"resource": format!("{base}/mcp"), "authorization_servers": [r.issuer], "scopes_supported": ["openid"]}),
    )
}

#[tokio::test]
async fn login_discovers_keycloak_from_the_remotes_401() {
    let kc = Keycloak::shared().await;
    let remote = Arc::new(Remote { issuer: kc.issuer(), base: Mutex::new(String::new()), posts: AtomicUsize::new(0) });
    let app = axum::Router::new()
        .route("/mcp", post(remote_mcp))
        .route("/.well-known/oauth-protected-resource/mcp", get(remote_prm))
        .with_state(Arc::clone(&remote));
    let base = serve(app).await;
    *remote.base.lock().unwrap() = base.clone();
    let (auth, url) =
        login_as_mcp(|c| RemoteAuthConfig { client_id: Some(USER_CLIENT.into()), ..c }, &format!("{base}/mcp")).await;
    let auth = auth.unwrap();
    assert_eq!(remote.posts.load(Ordering::SeqCst), 1);
    let q: HashMap<String, String> = url::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
    assert!(url.starts_with(&kc.authorization_endpoint()), "{url}");
    // The challenge's scope wins over the metadata's; the metadata's resource is asked for.
    assert_eq!(q["scope"], "openid profile");
    assert_eq!(q["resource"], format!("{base}/mcp"));
    let c = claims(&auth.access_token().await.unwrap());
    assert_eq!(c["azp"], USER_CLIENT);
    assert_eq!(c["iss"], kc.issuer());
}

#[tokio::test]
async fn keycloak_refuses_anonymous_registration_and_login_says_so() {
    let kc = Keycloak::shared().await;
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let cfg = RemoteAuthConfig { issuer: Some(kc.issuer()), ..config(tx) };
    let err = RemoteAuth::login(cfg, "http://127.0.0.1:1/unused").await.unwrap_err();
    let RemoteAuthError::Registration(msg) = &err else { panic!("{err}") };
    // The realm keeps Keycloak's default anonymous-registration policy ("Trusted Hosts", none
    // trusted): HTTP 403 insufficient_scope. The error carries that answer.
    assert!(msg.contains(&kc.registration_endpoint()), "{msg}");
    assert!(msg.contains("HTTP 403") && msg.contains("Trusted Hosts"), "{msg}");
}

/// An authorization server whose metadata points at Keycloak's endpoints but at a local
/// registration endpoint, which "registers" the realm's `mcp-client`.
struct Registrar {
    kc_auth: String,
    kc_token: String,
    base: Mutex<String>,
    requests: Mutex<Vec<Value>>,
}

async fn registrar_meta(State(r): State<Arc<Registrar>>) -> axum::response::Response {
    let base = r.base.lock().unwrap().clone();
    json_answer(
        StatusCode::OK,
        json!({
            "issuer": base, "authorization_endpoint": r.kc_auth, "token_endpoint": r.kc_token,
            "registration_endpoint": format!("{base}/register"), "code_challenge_methods_supported": ["S256"],
        }),
    )
}

async fn registrar_register(State(r): State<Arc<Registrar>>, body: String) -> axum::response::Response {
    r.requests.lock().unwrap().push(serde_json::from_str(&body).unwrap());
    json_answer(StatusCode::CREATED, json!({"client_id": USER_CLIENT, "token_endpoint_auth_method": "none"}))
}

#[tokio::test]
async fn login_registers_a_client_when_none_is_given() {
    let kc = Keycloak::shared().await;
    let reg = Arc::new(Registrar {
        kc_auth: kc.authorization_endpoint(),
        kc_token: kc.token_endpoint(),
        base: Mutex::new(String::new()),
        requests: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/.well-known/oauth-authorization-server", get(registrar_meta))
        .route("/register", post(registrar_register))
        .with_state(Arc::clone(&reg));
    let base = serve(app).await;
    *reg.base.lock().unwrap() = base.clone();
    let (auth, url) = login_as_mcp(
        |c| RemoteAuthConfig { issuer: Some(base.clone()), scopes: vec!["openid".into()], ..c },
        "http://127.0.0.1:1/unused",
    )
    .await;
    let auth = auth.unwrap();
    let requests = reg.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    let q: HashMap<String, String> = url::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(r["redirect_uris"], json!([q["redirect_uri"]]));
    assert!(q["redirect_uri"].starts_with("http://127.0.0.1:"));
    assert_eq!(r["token_endpoint_auth_method"], "none");
    assert_eq!(r["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(r["scope"], "openid");
    assert_eq!(q["client_id"], USER_CLIENT, "the registered id is used");
    assert_eq!(claims(&auth.access_token().await.unwrap())["azp"], USER_CLIENT);
}

/// With endpoints and a client id configured nothing is discovered; these need no Keycloak.
fn explicit(tx: tokio::sync::mpsc::Sender<String>) -> RemoteAuthConfig {
    RemoteAuthConfig {
        authorize_url: Some("http://127.0.0.1:1/authorize".into()),
        token_url: Some("http://127.0.0.1:1/token".into()),
        client_id: Some("c".into()),
        ..config(tx)
    }
}

#[tokio::test]
async fn no_callback_within_the_timeout_is_a_timeout() {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let cfg = RemoteAuthConfig { timeout: Duration::from_millis(300), ..explicit(tx) };
    let err = RemoteAuth::login(cfg, "http://127.0.0.1:1/unused").await.unwrap_err();
    assert!(matches!(err, RemoteAuthError::Timeout(_)), "{err}");
}

#[tokio::test]
async fn a_refusal_in_the_callback_ends_the_login() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let browser = async {
        let url = url::Url::parse(&rx.recv().await.unwrap()).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let back = format!(
            "{}?error=access_denied&error_description=user%20said%20no&state={}",
            q["redirect_uri"], q["state"]
        );
        reqwest::get(back).await.unwrap().status()
    };
    let (result, status) = tokio::join!(RemoteAuth::login(explicit(tx), "http://127.0.0.1:1/unused"), browser);
    assert_eq!(status, 200);
    let err = result.unwrap_err();
    assert_eq!(
        err,
        RemoteAuthError::Denied { error: "access_denied".into(), description: Some("user said no".into()) }
    );
}

#[tokio::test]
async fn plain_http_endpoints_need_the_insecure_switch() {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let cfg = RemoteAuthConfig { insecure_allow_http: false, ..explicit(tx) };
    let err = RemoteAuth::login(cfg, "http://127.0.0.1:1/unused").await.unwrap_err();
    assert!(matches!(&err, RemoteAuthError::Config(m) if m.contains("plain HTTP")), "{err}");
}

#[tokio::test]
async fn a_remote_that_does_not_answer_401_is_a_discovery_error() {
    let base = serve(axum::Router::new().route("/mcp", post(|| async { "{}" }))).await;
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let cfg = RemoteAuthConfig { client_id: Some("c".into()), ..config(tx) };
    let err = RemoteAuth::login(cfg, &format!("{base}/mcp")).await.unwrap_err();
    assert!(matches!(&err, RemoteAuthError::Discovery(m) if m.contains("HTTP 200")), "{err}");
}
