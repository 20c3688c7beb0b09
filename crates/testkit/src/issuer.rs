//! A small token issuer for tests that need tokens Keycloak would never mint: expired, not
//! yet valid, wrongly signed, `alg: none`, HS256 keyed with the public key, unknown `kid`,
//! oversized. It serves OIDC discovery and a JWKS on 127.0.0.1 (counting JWKS fetches, able
//! to go down and to rotate keys) and signs RS256 tokens with keys generated at start.
//! Keycloak (`keycloak.rs`) stays the proof against a real identity provider.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One signing key and its `kid`.
pub struct SigningKey {
    pub kid: String,
    pair: RsaKeyPair,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub fn generate(kid: &str) -> SigningKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        SigningKey { kid: kid.to_owned(), pair }
    }

    /// The key stored as PKCS#8 (v1) DER, so another process can sign with it.
    pub fn to_pkcs8(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer as _;
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = self.pair.as_der().expect("PKCS#8 encoding");
        der.as_ref().to_vec()
    }

    /// A key read back from [`SigningKey::to_pkcs8`]'s DER.
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<SigningKey, String> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?;
        Ok(SigningKey { kid: kid.to_owned(), pair })
    }

    /// The key's public JWK (`use: sig`, `alg: RS256`).
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The DER of the public key (what the HS256-with-public-key attack keys its HMAC with).
    pub fn public_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// `header.claims.signature`, RS256.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).expect("RS256 signing");
        format!("{input}.{}", B64.encode(sig))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    format!("{}.", signing_input(&json!({"alg": "none", "typ": "JWT"}), claims))
}

/// An HS256 token whose HMAC key is `secret` (for the key-confusion attack, the public key).
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "HS256", "typ": "JWT", "kid": kid}), claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

struct IssuerState {
    issuer: String,
    keys: Mutex<Vec<Arc<SigningKey>>>,
    jwks_fetches: AtomicUsize,
    down: AtomicBool,
}

/// A running test issuer. Stops when dropped.
pub struct TestIssuer {
    addr: SocketAddr,
    state: Arc<IssuerState>,
    stop: CancellationToken,
}

impl TestIssuer {
    /// Starts an issuer at `http://127.0.0.1:<port>` with one key, `k1`.
    pub async fn start() -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test issuer");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(IssuerState {
            issuer: format!("http://{addr}"),
            keys: Mutex::new(vec![Arc::new(SigningKey::generate("k1"))]),
            jwks_fetches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&state));
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        });
        TestIssuer { addr, state, stop }
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// While down, discovery and the JWKS answer 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// The newest published key.
    pub fn key(&self) -> Arc<SigningKey> {
        let keys = self.state.keys.lock().expect("keys");
        Arc::clone(keys.last().expect("a key"))
    }

    /// Publishes a new key, which signs from now on.
    pub fn rotate(&self, kid: &str) -> Arc<SigningKey> {
        let key = Arc::new(SigningKey::generate(kid));
        self.state.keys.lock().expect("keys").push(Arc::clone(&key));
        key
    }

    /// Standard claims: this issuer, `sub`, `aud`, issued now, valid for an hour.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        let now = now();
        json!({"iss": self.issuer(), "sub": sub, "aud": aud, "iat": now, "exp": now + 3600})
    }

    /// `claims` signed RS256 with the newest key.
    pub fn mint(&self, claims: &Value) -> String {
        let key = self.key();
        key.sign(&json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}), claims)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The OIDC discovery document of an issuer at `issuer` whose JWKS is at `<issuer>/jwks`.
pub fn discovery_document(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint": format!("{issuer}/token"),
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

/// A router serving OIDC discovery for `issuer` and the fixed JWK Set `jwks`
/// (`{"keys": [...]}`), for an issuer running in another process or pod, whose tokens the
/// test mints with the matching private key.
pub fn static_issuer_router(issuer: String, jwks: Value) -> Router {
    let discovery = discovery_document(&issuer);
    Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { json_response(&discovery) }))
        .route("/jwks", get(move || async move { json_response(&jwks) }))
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    json_response(&discovery_document(&s.issuer))
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys: Vec<Value> = s.keys.lock().expect("keys").iter().map(|k| k.jwk()).collect();
    json_response(&json!({ "keys": keys }))
}

fn json_response(v: &Value) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_pkcs8_and_signs_the_same_identity() {
        let key = SigningKey::generate("k1");
        let back = SigningKey::from_pkcs8("k1", &key.to_pkcs8()).unwrap();
        assert_eq!(back.jwk(), key.jwk());
        assert!(SigningKey::from_pkcs8("k1", b"not a key").is_err());
        assert_eq!(discovery_document("http://i:1")["jwks_uri"], "http://i:1/jwks");
    }
}
