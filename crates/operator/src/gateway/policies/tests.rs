//! The seed's AuthPolicy loaded the way the watch loads it (its Secret read from a Kubernetes
//! `Secret` object, handed to the enforcer through [`PolicySink`]): the `Basic` rule of names.md
//! and a missing Secret refusing the route.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use apiary_authpolicy::{
    AuthPolicy, CacheLimits, CompiledPolicy, Enforcer, FetchError, HttpCall, JwtVerifier, LoadError, MetadataFetcher,
    RequestInfo, VerifyError,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use super::PolicySink;
use super::decide::{Seen, secret_names};
use super::secrets::Secrets;
use crate::registration::route::Key;

/// Seed 004's AuthPolicy, verbatim (the authpolicy crate's fixture).
const SEED: &str = include_str!("../../../../authpolicy/tests/fixtures/seed004-authpolicy.yaml");
const ROUTE: &str = "mcp-test/kubernetes-mcp";
/// base64("mcp-gateway:secret")
const B64: &str = "bWNwLWdhdGV3YXk6c2VjcmV0";

fn seed() -> Seen {
    let value: Value = serde_saphyr::from_str(SEED).unwrap();
    let key = Key { namespace: "mcp-test".into(), name: "kubernetes-mcp-auth-policy".into() };
    Seen::read(key, Some(1), None, value)
}

/// The Secrets as the watch reads them: `token-exchange` with `oauth-client-basic-auth` = `value`.
fn secrets(value: Option<&str>) -> Secrets {
    let secret = value.map(|v| {
        let mut s: Secret = serde_json::from_value(json!({"metadata": {"name": "token-exchange"}})).unwrap();
        s.data = Some([("oauth-client-basic-auth".to_owned(), ByteString(v.as_bytes().to_vec()))].into());
        s
    });
    Secrets::new([("token-exchange".to_owned(), secret)].into())
}

/// Any token: the caller's claims, audience the gateway client (so the exchange runs).
struct Verifier;

impl JwtVerifier for Verifier {
    async fn verify(&self, issuer_url: &str, _token: &str) -> Result<Value, VerifyError> {
        Ok(json!({"iss": issuer_url, "sub": "u", "aud": "mcp-gateway"}))
    }
}

/// Records the token-exchange calls; answers with an error body.
#[derive(Default)]
struct Recorder(Mutex<Vec<HttpCall>>);

impl MetadataFetcher for Recorder {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        self.0.lock().unwrap().push(call.clone());
        Ok(json!({"error": "invalid_client"}))
    }
}

fn call_tool() -> RequestInfo {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer a.b.c".parse().unwrap());
    headers.insert("x-mcp-servername", ROUTE.parse().unwrap());
    headers.insert("x-mcp-toolname", "namespaces_list".parse().unwrap());
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

async fn exchange_authorization(secret_value: &str) -> String {
    let seen = seed();
    let policy: &AuthPolicy = seen.policy.as_ref().unwrap();
    let compiled = CompiledPolicy::load(policy, &secrets(Some(secret_value))).unwrap();
    let recorder = Recorder::default();
    compiled.evaluate(&call_tool(), &Verifier, &recorder).await;
    let calls = recorder.0.lock().unwrap();
    assert_eq!(calls.len(), 1, "one token exchange");
    calls[0].header("authorization").unwrap().to_owned()
}

#[tokio::test]
async fn the_seeds_secret_with_or_without_basic_sends_one_basic() {
    // The seed's `--from-literal=oauth-client-basic-auth="Basic <b64>"` and the policy's
    // `prefix: Basic`: one `Basic` on the wire (names.md §6), and the same without it.
    for value in [format!("Basic {B64}"), B64.to_owned(), format!("Basic {B64}\n"), format!("basic {B64}")] {
        assert_eq!(exchange_authorization(&value).await, format!("Basic {B64}"), "Secret value {value:?}");
    }
}

#[test]
fn the_seed_targets_its_route_and_reads_its_secret() {
    let seen = seed();
    assert_eq!(seen.target.as_deref().unwrap(), ROUTE);
    let names: Vec<String> = secret_names(seen.policy.as_ref().unwrap()).into_iter().collect();
    assert_eq!(names, ["token-exchange"]);
}

#[test]
fn a_missing_secret_refuses_the_route_in_the_enforcer_naming_the_field() {
    struct Never;
    impl MetadataFetcher for Never {
        async fn fetch(&self, _call: &HttpCall) -> Result<Value, FetchError> {
            Err(FetchError::Json)
        }
    }
    let enforcer = Arc::new(Enforcer::new(Verifier, Never, CacheLimits::default()));
    let sink: Arc<dyn PolicySink> = enforcer.clone();
    let seen = seed();
    let policy = seen.policy.as_ref().unwrap();

    sink.set(ROUTE, CompiledPolicy::load(policy, &secrets(Some(B64))));
    assert_eq!(enforcer.policy_status(ROUTE), Some(Ok(())));

    sink.set(ROUTE, CompiledPolicy::load(policy, &secrets(None)));
    let Some(Err(e)) = enforcer.policy_status(ROUTE) else { panic!("the route must refuse") };
    assert!(matches!(e, LoadError::MissingSecret { .. }), "{e:?}");
    assert_eq!(e.path(), "spec.rules.metadata.oauth-token-exchange.http.sharedSecretRef");

    sink.remove(ROUTE);
    assert_eq!(enforcer.policy_status(ROUTE), None);
}
