//! The authenticator against a small fake issuer on 127.0.0.1 (discovery, JWKS that counts its
//! fetches and can be taken down, RFC 7662 introspection), with keys generated at test time.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apiary_config::OidcConfig;
use apiary_policy::authn::{Authenticator, AuthnError, AuthnOptions, InvalidReason};
use apiary_policy::identity::IdentityKind;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const AUDIENCE: &str = "mcp-test";
const CLIENT_ID: &str = "apiary-proxy";
const CLIENT_SECRET: &str = "test-secret";
const ACTIVE_OPAQUE: &str = "opaque-token-active";

// ---------------------------------------------------------------- keys

/// A private key to sign with and its public JWK.
struct TestKey {
    encoding: EncodingKey,
    jwk: Jwk,
    alg: Algorithm,
    kid: String,
    /// SubjectPublicKeyInfo PEM (what the HMAC-with-public-key attack uses as its secret).
    public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn rsa_key(kid: &str, use_: PublicKeyUse, jwk_alg: Option<KeyAlgorithm>) -> TestKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private: Pkcs8V1Der<'_> = pair.as_der().unwrap();
    let public: PublicKeyX509Der<'_> = pair.public_key().as_der().unwrap();
    let encoding = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(use_);
    jwk.common.key_algorithm = jwk_alg;
    TestKey {
        encoding,
        jwk,
        alg: Algorithm::RS256,
        kid: kid.to_owned(),
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    }
}

fn ec_key(kid: &str) -> TestKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let encoding = EncodingKey::from_ec_der(doc.as_ref());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    TestKey { encoding, jwk, alg: Algorithm::ES256, kid: kid.to_owned(), public_pem: String::new() }
}

fn ed_key(kid: &str) -> TestKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
    let encoding = EncodingKey::from_ed_der(doc.as_ref());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    TestKey { encoding, jwk, alg: Algorithm::EdDSA, kid: kid.to_owned(), public_pem: String::new() }
}

/// The keys, generated once per test binary (RSA generation is the slow part).
struct Keys {
    /// The issuer's signing key (kid "sig-1"), as Keycloak publishes it: use sig, alg RS256.
    sig: TestKey,
    /// Keycloak's encryption key (kid "enc-1", use enc, alg RSA-OAEP): published, never to verify.
    enc: TestKey,
    /// The key the issuer rotates to (kid "sig-2"), not published at first.
    next: TestKey,
    /// A key the issuer never published, signing as "sig-1" (a forged signature).
    forger: TestKey,
    ec: TestKey,
    ed: TestKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    sig: rsa_key("sig-1", PublicKeyUse::Signature, Some(KeyAlgorithm::RS256)),
    enc: rsa_key("enc-1", PublicKeyUse::Encryption, Some(KeyAlgorithm::RSA_OAEP)),
    next: rsa_key("sig-2", PublicKeyUse::Signature, None),
    forger: rsa_key("sig-1", PublicKeyUse::Signature, Some(KeyAlgorithm::RS256)),
    ec: ec_key("ec-1"),
    ed: ed_key("ed-1"),
});

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| serde_json::to_value(&k.jwk).unwrap()).collect::<Vec<_>>() })
}

// ---------------------------------------------------------------- the fake issuer

#[derive(Default)]
struct IssuerState {
    issuer: RwLock<String>,
    /// What discovery says the issuer is; the real one unless a test lies.
    discovery_issuer: RwLock<Option<String>>,
    jwks: RwLock<Value>,
    jwks_down: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    introspections: AtomicUsize,
}

struct Issuer {
    state: Arc<IssuerState>,
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Issuer {
    fn issuer(&self) -> String {
        format!("{}/realms/test", self.base)
    }
    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
    fn serve_keys(&self, keys: &[&TestKey]) {
        *self.state.jwks.write().unwrap() = jwks(keys);
    }
}

fn json_response(status: StatusCode, body: &Value) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> impl axum::response::IntoResponse {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = s.issuer.read().unwrap().clone();
    let claimed = s.discovery_issuer.read().unwrap().clone().unwrap_or_else(|| issuer.clone());
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": claimed,
            "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
            "introspection_endpoint": format!("{issuer}/protocol/openid-connect/token/introspect"),
        }),
    )
}

async fn certs(State(s): State<Arc<IssuerState>>) -> impl axum::response::IntoResponse {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if s.jwks_down.load(Ordering::SeqCst) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "down"}));
    }
    json_response(StatusCode::OK, &s.jwks.read().unwrap())
}

async fn introspect(
    State(s): State<Arc<IssuerState>>,
    headers: HeaderMap,
    body: String,
) -> impl axum::response::IntoResponse {
    s.introspections.fetch_add(1, Ordering::SeqCst);
    let want = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return json_response(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_client"}));
    }
    let token = url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
    let issuer = s.issuer.read().unwrap().clone();
    let answer = match token.as_deref() {
        Some(ACTIVE_OPAQUE) => json!({
            "active": true, "sub": "service-account-1", "iss": issuer, "aud": ["other", AUDIENCE],
            "exp": now() + 600, "scope": "openid mcp", "client_id": "agent",
        }),
        Some("opaque-token-other-issuer") => json!({"active": true, "sub": "x", "iss": "https://evil.example"}),
        _ => json!({"active": false}),
    };
    json_response(StatusCode::OK, &answer)
}

/// Starts the issuer on 127.0.0.1; it stops when the returned value (or the test runtime) drops.
async fn start_issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(IssuerState::default());
    *state.issuer.write().unwrap() = format!("{base}/realms/test");
    *state.jwks.write().unwrap() = jwks(&[&KEYS.sig, &KEYS.enc, &KEYS.ec, &KEYS.ed]);
    let app = Router::new()
        .route("/realms/test/.well-known/openid-configuration", get(discovery))
        .route("/realms/test/protocol/openid-connect/certs", get(certs))
        .route("/realms/test/protocol/openid-connect/token/introspect", post(introspect))
        .with_state(Arc::clone(&state));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Issuer { state, base, _stop: stop }
}

// ---------------------------------------------------------------- tokens and authenticators

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims a good token has; tests change them.
fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": AUDIENCE, "sub": "user-1", "exp": now() + 300, "iat": now(),
        "preferred_username": "alice", "resource_access": {"mcp-test": {"roles": ["reader"]}},
    })
}

fn sign(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn signed(key: &TestKey, claims: &Value) -> String {
    sign(key, Some(&key.kid), claims)
}

/// A token whose header is exactly `header` (for algorithms jsonwebtoken will not produce).
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn bearer(token: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

fn config(issuer: &Issuer) -> OidcConfig {
    OidcConfig {
        issuer: issuer.issuer(),
        audience: Some(AUDIENCE.to_owned()),
        jwks_url: Some(format!("{}/protocol/openid-connect/certs", issuer.issuer())),
        introspection_url: None,
        client_id: None,
        client_secret: None,
        client_secret_env: None,
        scopes: vec!["openid".to_owned(), "mcp".to_owned()],
        required_scopes: Vec::new(),
        resource_url: Some("https://mcp.example/mcp".to_owned()),
        insecure_allow_http: true,
        jwks_min_refresh_secs: None,
    }
}

fn options(min_refresh: Duration) -> AuthnOptions {
    AuthnOptions { jwks_min_refresh: min_refresh, http_timeout: Duration::from_secs(5), ..AuthnOptions::default() }
}

async fn authenticator(cfg: &OidcConfig, min_refresh: Duration) -> Authenticator {
    let a = Authenticator::new(cfg, options(min_refresh)).unwrap();
    a.warm_up().await;
    a
}

const METADATA: &str = "https://mcp.example/.well-known/oauth-protected-resource/mcp";

fn challenge_for(issuer: &Issuer, error: Option<&str>) -> String {
    let base = format!(r#"Bearer realm="{}", resource_metadata="{METADATA}", scope="openid mcp""#, issuer.issuer());
    match error {
        None => base,
        Some(description) => format!(r#"{base}, error="invalid_token", error_description="{description}""#),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_valid_token_gives_its_identity() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::from_secs(30)).await;
    assert_eq!(issuer.jwks_fetches(), 1, "warm-up loads the keys once");
    let id = a.authenticate(Some(&bearer(&signed(&KEYS.sig, &claims(&issuer.issuer()))))).await.unwrap();
    assert_eq!(id.subject, "user-1");
    assert_eq!(id.kind, IdentityKind::Jwt);
    assert_eq!(id.display_name(), "alice");
    assert_eq!(id.claims["resource_access"]["mcp-test"]["roles"], json!(["reader"]));
    assert_eq!(id.claims["aud"], AUDIENCE);
    // A second token is checked from the cache.
    let mut c = claims(&issuer.issuer());
    c["sub"] = json!("user-2");
    assert_eq!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.unwrap().subject, "user-2");
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn audience_as_an_array_must_contain_ours() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::from_secs(30)).await;
    let mut c = claims(&issuer.issuer());
    c["aud"] = json!(["account", AUDIENCE]);
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.is_ok());
    c["aud"] = json!(["account", "other"]);
    let err = a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::Audience });
    // No audience configured: any aud (or none) is accepted.
    let mut cfg = config(&issuer);
    cfg.audience = None;
    let a = authenticator(&cfg, Duration::from_secs(30)).await;
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.is_ok());
    c.as_object_mut().unwrap().remove("aud");
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.is_ok());
}

#[tokio::test]
async fn ec_and_ed25519_tokens_verify() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::from_secs(30)).await;
    for key in [&KEYS.ec, &KEYS.ed] {
        let id = a.authenticate(Some(&bearer(&signed(key, &claims(&issuer.issuer()))))).await;
        assert_eq!(id.map(|i| i.subject), Ok("user-1".to_owned()), "{:?}", key.alg);
    }
}

/// Each attack gives the right error and challenge, and none of them fetches keys again.
#[tokio::test]
async fn attack_table() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::ZERO).await;
    let iss = issuer.issuer();
    let good = claims(&iss);
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let without = |name: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("sig-1".to_owned());
        let key = EncodingKey::from_secret(KEYS.sig.public_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &good, &key).unwrap()
    };
    let invalid = |reason| Err(AuthnError::Invalid { reason });
    // (name, Authorization header, expected result, expected error_description)
    type Case<'a> = (&'a str, Option<http::HeaderValue>, Result<(), AuthnError>, Option<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        ("no header", None, Err(AuthnError::Missing), None),
        ("basic auth", Some(http::HeaderValue::from_static("Basic dXNlcjpwdw==")), Err(AuthnError::Missing), None),
        (
            "alg none",
            Some(bearer(&raw_token(&json!({"alg": "none", "kid": "sig-1"}), &good, b""))),
            invalid(InvalidReason::AlgorithmNotAllowed),
            Some("token algorithm not allowed"),
        ),
        (
            "HS256 signed with the RSA public key",
            Some(bearer(&hs256_with_public_key)),
            invalid(InvalidReason::AlgorithmNotAllowed),
            Some("token algorithm not allowed"),
        ),
        (
            "wrong issuer",
            Some(bearer(&signed(&KEYS.sig, &with("iss", json!("https://evil.example/realms/test"))))),
            invalid(InvalidReason::Issuer),
            Some("token issuer not accepted"),
        ),
        (
            "wrong audience",
            Some(bearer(&signed(&KEYS.sig, &with("aud", json!("someone-else"))))),
            invalid(InvalidReason::Audience),
            Some("token audience not accepted"),
        ),
        (
            "no audience",
            Some(bearer(&signed(&KEYS.sig, &without("aud")))),
            invalid(InvalidReason::MissingClaim),
            Some("token lacks a required claim"),
        ),
        (
            "expired beyond the leeway",
            Some(bearer(&signed(&KEYS.sig, &with("exp", json!(now() - 120))))),
            invalid(InvalidReason::Expired),
            Some("token expired"),
        ),
        (
            "no exp",
            Some(bearer(&signed(&KEYS.sig, &without("exp")))),
            invalid(InvalidReason::MissingClaim),
            Some("token lacks a required claim"),
        ),
        (
            "not yet valid",
            Some(bearer(&signed(&KEYS.sig, &with("nbf", json!(now() + 600))))),
            invalid(InvalidReason::NotYetValid),
            Some("token not yet valid"),
        ),
        (
            "no sub",
            Some(bearer(&signed(&KEYS.sig, &without("sub")))),
            invalid(InvalidReason::MissingClaim),
            Some("token lacks a required claim"),
        ),
        (
            "bad signature (another key, same kid)",
            Some(bearer(&signed(&KEYS.forger, &good))),
            invalid(InvalidReason::Signature),
            Some("token signature invalid"),
        ),
        (
            "signature of another token",
            Some(bearer(&{
                let real = signed(&KEYS.sig, &good);
                let forged = signed(&KEYS.sig, &with("sub", json!("admin")));
                let sig = real.rsplit('.').next().unwrap();
                format!("{}.{sig}", forged.rsplit_once('.').unwrap().0)
            })),
            invalid(InvalidReason::Signature),
            Some("token signature invalid"),
        ),
        (
            "oversized",
            Some(bearer(&format!("{}.{}.x", "e".repeat(10), "a".repeat(20 * 1024)))),
            Err(AuthnError::TooLarge),
            Some("token too large"),
        ),
        (
            "garbage (not a JWT, no introspection)",
            Some(bearer("garbage")),
            Err(AuthnError::Malformed("token is not a JWT")),
            Some("token is not a JWT"),
        ),
        (
            "garbage header",
            Some(bearer("Zm9v.YmFy.YmF6")),
            Err(AuthnError::Malformed("token header is not a JSON object")),
            Some("token header is not a JSON object"),
        ),
        (
            "garbage claims and signature under a good header",
            Some(bearer(&format!("{}.YmFy.YmF6", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"sig-1"}"#)))),
            invalid(InvalidReason::Signature),
            Some("token signature invalid"),
        ),
    ];
    for (name, header, want, description) in cases {
        let got = a.authenticate(header.as_ref()).await.map(|_| ());
        assert_eq!(got, want, "{name}");
        let err = got.unwrap_err();
        assert!(!err.is_unavailable(), "{name}");
        let challenge = a.challenge(&err, Some(METADATA));
        assert_eq!(challenge.to_str().unwrap(), challenge_for(&issuer, description), "{name}");
    }
    assert_eq!(issuer.jwks_fetches(), 1, "no attack made the keys be fetched again");
}

/// `none` and HS* are refused before any key lookup: a cold authenticator fetches nothing.
#[tokio::test]
async fn disallowed_algorithms_are_refused_before_any_key_lookup() {
    let issuer = start_issuer().await;
    let a = Authenticator::new(&config(&issuer), options(Duration::ZERO)).unwrap();
    let good = claims(&issuer.issuer());
    for alg in ["none", "HS256", "HS384", "HS512", "RSA-OAEP"] {
        let token = raw_token(&json!({"alg": alg, "kid": "sig-1"}), &good, b"sig");
        let err = a.authenticate(Some(&bearer(&token))).await.unwrap_err();
        assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::AlgorithmNotAllowed }, "{alg}");
    }
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn unknown_kid_costs_exactly_one_refetch_then_is_refused() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::ZERO).await;
    assert_eq!(issuer.jwks_fetches(), 1);
    let token = sign(&KEYS.sig, Some("no-such-kid"), &claims(&issuer.issuer()));
    let err = a.authenticate(Some(&bearer(&token))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::UnknownKey });
    assert_eq!(
        a.challenge(&err, Some(METADATA)).to_str().unwrap(),
        challenge_for(&issuer, Some("token signing key unknown"))
    );
    assert_eq!(issuer.jwks_fetches(), 2, "exactly one refetch");
}

#[tokio::test]
async fn unknown_kids_within_the_minimum_interval_fetch_nothing() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::from_secs(3600)).await;
    for i in 0..20 {
        let token = sign(&KEYS.sig, Some(&format!("random-{i}")), &claims(&issuer.issuer()));
        let err = a.authenticate(Some(&bearer(&token))).await.unwrap_err();
        assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::UnknownKey });
    }
    assert_eq!(issuer.jwks_fetches(), 1, "random kids cannot amplify load on the issuer");
}

/// 50 concurrent unknown-kid requests share one fetch. They are polled together by `join_all`
/// on this single-threaded runtime, so all of them are waiting before the fetch can complete.
#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let issuer = start_issuer().await;
    let a = Arc::new(authenticator(&config(&issuer), Duration::ZERO).await);
    let token = sign(&KEYS.sig, Some("unknown"), &claims(&issuer.issuer()));
    let header = bearer(&token);
    let results = futures::future::join_all((0..50).map(|_| a.authenticate(Some(&header)))).await;
    for r in results {
        assert_eq!(r.unwrap_err(), AuthnError::Invalid { reason: InvalidReason::UnknownKey });
    }
    assert_eq!(issuer.jwks_fetches(), 2, "the warm-up and one shared refetch");
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refetch() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::ZERO).await;
    issuer.serve_keys(&[&KEYS.sig, &KEYS.next, &KEYS.enc]);
    let token = signed(&KEYS.next, &claims(&issuer.issuer()));
    assert_eq!(a.authenticate(Some(&bearer(&token))).await.map(|i| i.subject), Ok("user-1".to_owned()));
    assert_eq!(issuer.jwks_fetches(), 2);
    // The new key is now cached, and the old one still works.
    assert!(a.authenticate(Some(&bearer(&token))).await.is_ok());
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &claims(&issuer.issuer()))))).await.is_ok());
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn the_enc_key_never_verifies() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::ZERO).await;
    let c = claims(&issuer.issuer());
    // Signed with the enc key's private key and naming it: refused, and no refetch either.
    let err = a.authenticate(Some(&bearer(&signed(&KEYS.enc, &c)))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::KeyNotUsable });
    // Signed with the enc key but naming the sig key: the signature does not verify.
    let err = a.authenticate(Some(&bearer(&sign(&KEYS.enc, Some("sig-1"), &c)))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::Signature });
    // No kid: the only RS256 signing key is the sig key, never the enc one.
    let err = a.authenticate(Some(&bearer(&sign(&KEYS.enc, None, &c)))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::Signature });
    assert!(a.authenticate(Some(&bearer(&sign(&KEYS.sig, None, &c)))).await.is_ok());
    // A token claiming ES256 with the RSA key's kid does not get that key.
    let err = a.authenticate(Some(&bearer(&sign(&KEYS.ec, Some("sig-1"), &c)))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::KeyNotUsable });
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn issuer_down_is_unavailable_until_it_recovers() {
    let issuer = start_issuer().await;
    issuer.state.jwks_down.store(true, Ordering::SeqCst);
    let a = authenticator(&config(&issuer), Duration::ZERO).await;
    let token = signed(&KEYS.sig, &claims(&issuer.issuer()));
    let err = a.authenticate(Some(&bearer(&token))).await.unwrap_err();
    assert!(matches!(err, AuthnError::Unavailable { retry_after_secs } if retry_after_secs >= 1), "{err:?}");
    assert!(err.is_unavailable());
    // The challenge of an unavailable issuer judges no token.
    assert_eq!(a.challenge(&err, Some(METADATA)).to_str().unwrap(), challenge_for(&issuer, None));
    issuer.state.jwks_down.store(false, Ordering::SeqCst);
    assert_eq!(a.authenticate(Some(&bearer(&token))).await.map(|i| i.subject), Ok("user-1".to_owned()));
}

#[tokio::test]
async fn issuer_down_is_retried_at_most_once_per_interval() {
    let issuer = start_issuer().await;
    issuer.state.jwks_down.store(true, Ordering::SeqCst);
    let a = authenticator(&config(&issuer), Duration::from_secs(60)).await;
    assert_eq!(issuer.jwks_fetches(), 1);
    let token = signed(&KEYS.sig, &claims(&issuer.issuer()));
    for _ in 0..10 {
        let err = a.authenticate(Some(&bearer(&token))).await.unwrap_err();
        assert!(matches!(err, AuthnError::Unavailable { retry_after_secs } if (1..=60).contains(&retry_after_secs)));
    }
    assert_eq!(issuer.jwks_fetches(), 1, "requests do not each hit a down issuer");
}

#[tokio::test]
async fn discovery_finds_the_keys() {
    let issuer = start_issuer().await;
    let mut cfg = config(&issuer);
    cfg.jwks_url = None;
    let a = Authenticator::new(&cfg, options(Duration::ZERO)).unwrap();
    let token = signed(&KEYS.sig, &claims(&issuer.issuer()));
    assert!(a.authenticate(Some(&bearer(&token))).await.is_ok());
    assert_eq!(issuer.state.discovery_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_fetches(), 1);
    // A refetch (unknown kid) reuses the discovered jwks_uri.
    let err = a.authenticate(Some(&bearer(&sign(&KEYS.sig, Some("x"), &claims(&issuer.issuer()))))).await;
    assert_eq!(err.unwrap_err(), AuthnError::Invalid { reason: InvalidReason::UnknownKey });
    assert_eq!(issuer.state.discovery_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_fetches(), 2);
    assert!(a.resource_metadata().unwrap().get("jwks_uri").is_none());
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let issuer = start_issuer().await;
    *issuer.state.discovery_issuer.write().unwrap() = Some("https://evil.example/realms/test".to_owned());
    let mut cfg = config(&issuer);
    cfg.jwks_url = None;
    let a = authenticator(&cfg, Duration::ZERO).await;
    let err = a.authenticate(Some(&bearer(&signed(&KEYS.sig, &claims(&issuer.issuer()))))).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(issuer.jwks_fetches(), 0, "keys are not loaded from a discovery document of another issuer");
}

fn introspecting(issuer: &Issuer) -> OidcConfig {
    let mut cfg = config(issuer);
    cfg.introspection_url = Some(format!("{}/protocol/openid-connect/token/introspect", issuer.issuer()));
    cfg.client_id = Some(CLIENT_ID.to_owned());
    cfg.client_secret = Some(CLIENT_SECRET.to_owned());
    cfg
}

#[tokio::test]
async fn introspection_accepts_active_and_refuses_inactive_tokens() {
    let issuer = start_issuer().await;
    let a = authenticator(&introspecting(&issuer), Duration::ZERO).await;
    let id = a.authenticate(Some(&bearer(ACTIVE_OPAQUE))).await.unwrap();
    assert_eq!((id.subject.as_str(), id.kind), ("service-account-1", IdentityKind::Introspected));
    assert_eq!(id.claim_str("scope"), Some("openid mcp"));
    // Cached: asking again does not call the endpoint.
    assert_eq!(a.authenticate(Some(&bearer(ACTIVE_OPAQUE))).await.unwrap(), id);
    assert_eq!(issuer.state.introspections.load(Ordering::SeqCst), 1);

    let err = a.authenticate(Some(&bearer("opaque-token-revoked"))).await.unwrap_err();
    assert_eq!(err, AuthnError::Inactive);
    assert_eq!(
        a.challenge(&err, Some(METADATA)).to_str().unwrap(),
        challenge_for(&issuer, Some("token is not active"))
    );
    let err = a.authenticate(Some(&bearer("opaque-token-other-issuer"))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::Issuer });
    // Negative answers are not cached.
    let _ = a.authenticate(Some(&bearer("opaque-token-revoked"))).await;
    assert_eq!(issuer.state.introspections.load(Ordering::SeqCst), 4);
    // JWTs are still verified locally, never introspected.
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &claims(&issuer.issuer()))))).await.is_ok());
    assert_eq!(issuer.state.introspections.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn introspection_with_wrong_client_credentials_is_unavailable_not_accepted() {
    let issuer = start_issuer().await;
    let mut cfg = introspecting(&issuer);
    cfg.client_secret = Some("wrong".to_owned());
    let a = Authenticator::new(&cfg, options(Duration::ZERO)).unwrap();
    let err = a.authenticate(Some(&bearer(ACTIVE_OPAQUE))).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn leeway_applies_and_is_capped_at_five_minutes() {
    let issuer = start_issuer().await;
    let a = authenticator(&config(&issuer), Duration::from_secs(30)).await;
    let mut c = claims(&issuer.issuer());
    c["exp"] = json!(now() - 20);
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.is_ok(), "within the default 60 s");
    let generous = AuthnOptions { leeway: Duration::from_secs(3600), ..options(Duration::from_secs(30)) };
    let a = Authenticator::new(&config(&issuer), generous).unwrap();
    c["exp"] = json!(now() - 200);
    assert!(a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.is_ok(), "within the 300 s cap");
    c["exp"] = json!(now() - 400);
    let err = a.authenticate(Some(&bearer(&signed(&KEYS.sig, &c)))).await.unwrap_err();
    assert_eq!(err, AuthnError::Invalid { reason: InvalidReason::Expired }, "an hour of leeway is cut to 300 s");
}
