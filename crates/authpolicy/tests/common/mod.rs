//! Test doubles (a JWT verifier, a recording metadata fetcher) and builders shared by the table.
#![allow(clippy::unwrap_used, dead_code)]
use std::sync::Mutex;

use apiary_authpolicy::{
    AuthPolicy, CompiledPolicy, FetchError, HttpCall, JwtVerifier, LoadError, MetadataFetcher, RequestInfo, VerifyError,
};
use base64::Engine as _;
use serde_json::{Value, json};

pub const SEED: &str = include_str!("../fixtures/seed004-authpolicy.yaml");
pub const ISSUER: &str = "https://keycloak.example.com/realms/mcp";
pub const SERVER: &str = "mcp-test/kubernetes-mcp";
/// The Secret value as the seed creates it: already `Basic <b64>`.
pub const SECRET: &str = "Basic bWNwLWdhdGV3YXk6bWNwLWdhdGV3YXktdGVzdC1zZWNyZXQ=";

pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

pub fn load_value(v: Value) -> Result<CompiledPolicy, LoadError> {
    let policy = AuthPolicy::from_value(v)?;
    CompiledPolicy::load(&policy, &|name: &str, key: &str| {
        (name == "token-exchange" && key == "oauth-client-basic-auth").then(|| SECRET.to_owned())
    })
}

pub fn seed() -> CompiledPolicy {
    load_value(yaml(SEED)).unwrap()
}

/// An unsigned JWT with these claims (the verifier double and io.jwt.decode only decode).
pub fn jwt(claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(claims.to_string()),
        b64.encode(b"sig")
    )
}

pub fn user_claims() -> Value {
    json!({"iss": ISSUER, "aud": "mcp-gateway", "azp": "mcp-client", "preferred_username": "mcp",
           "resource_access": {SERVER: {"roles": ["namespaces_list", "pods_list"]}}})
}

pub fn exchanged_claims(aud: &str) -> Value {
    json!({"iss": ISSUER, "aud": aud, "azp": "mcp-gateway", "preferred_username": "mcp",
           "resource_access": {aud: {"roles": ["namespaces_list", "pods_list"]}}})
}

/// Accepts a token whose `iss` is the issuer asked for and that is not marked `bad`.
pub struct Verifier;

impl JwtVerifier for Verifier {
    async fn verify(&self, issuer_url: &str, token: &str) -> Result<Value, VerifyError> {
        let payload = token.split('.').nth(1).ok_or_else(|| VerifyError("not a JWT".into()))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| VerifyError("bad base64".into()))?;
        let claims: Value = serde_json::from_slice(&bytes).map_err(|_| VerifyError("bad json".into()))?;
        if claims["iss"] != issuer_url || claims.get("bad").is_some() {
            return Err(VerifyError("invalid token".into()));
        }
        Ok(claims)
    }
}

/// Records every call and answers each with `reply`.
pub struct Fetcher {
    pub calls: Mutex<Vec<HttpCall>>,
    pub reply: Result<Value, FetchError>,
}

impl Fetcher {
    pub fn replying(reply: Result<Value, FetchError>) -> Self {
        Fetcher { calls: Mutex::new(Vec::new()), reply }
    }
    pub fn exchange_to(aud: &str) -> Self {
        Self::replying(Ok(json!({"access_token": jwt(&exchanged_claims(aud)), "token_type": "Bearer"})))
    }
    pub fn calls(&self) -> Vec<HttpCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl MetadataFetcher for Fetcher {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        self.calls.lock().unwrap().push(call.clone());
        self.reply.clone()
    }
}

/// A routed `tools/call` as the gateway would present it.
pub fn request(token: Option<&str>, tool: &str) -> RequestInfo {
    let mut headers = http::HeaderMap::new();
    if let Some(token) = token {
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    headers.insert("x-mcp-servername", SERVER.parse().unwrap());
    headers.insert("x-mcp-toolname", tool.parse().unwrap());
    headers.insert("x-mcp-method", "tools/call".parse().unwrap());
    RequestInfo {
        method: http::Method::POST,
        scheme: "http".into(),
        host: "kubernetes-mcp.example.com".into(),
        path: "/mcp".into(),
        headers,
        body: None,
    }
}

/// A form body decoded into pairs.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}
