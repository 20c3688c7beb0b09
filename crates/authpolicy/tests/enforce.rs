//! The enforcer without Keycloak: the exchange cache (per caller and audience, only token answers
//! with a lifetime, single flight, bounded), per-caller tool visibility, fail-closed routes, and
//! the real OIDC verifier refusing when the issuer cannot be reached.
#![allow(clippy::unwrap_used)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use apiary_authpolicy::{
    CacheLimits, CachingFetcher, Decision, Enforcer, FetchError, HttpCall, LoadError, MetadataFetcher, OidcVerifier,
    REFUSED_STATUS,
};
use apiary_policy::authn::AuthnOptions;
use common::*;
use serde_json::{Value, json};

const ROUTE: &str = SERVER;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A token endpoint double: counts calls and answers an exchanged token for the audience asked.
struct Exchange {
    calls: AtomicUsize,
    expires_in: Option<u64>,
    with_token: bool,
}

impl Exchange {
    fn new(expires_in: Option<u64>) -> Self {
        Exchange { calls: AtomicUsize::new(0), expires_in, with_token: true }
    }
    fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl MetadataFetcher for Exchange {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let body = String::from_utf8(call.body.clone().unwrap()).unwrap();
        let form: Vec<(String, String)> = form(body.as_bytes());
        let audience = form.iter().find(|(k, _)| k == "audience").map(|(_, v)| v.clone()).unwrap();
        if !self.with_token {
            return Ok(json!({"error": "invalid_request"}));
        }
        let mut claims = exchanged_claims(&audience);
        claims["exp"] = json!(now() + self.expires_in.unwrap_or(1800));
        // Which subject token it came from, so tests can tell exchanges apart.
        let subject = form.iter().find(|(k, _)| k == "subject_token").map(|(_, v)| v.len()).unwrap();
        claims["subject_len"] = json!(subject);
        let mut reply = json!({"access_token": jwt(&claims), "token_type": "Bearer"});
        if let Some(e) = self.expires_in {
            reply["expires_in"] = json!(e);
        }
        Ok(reply)
    }
}

fn enforcer(exchange: &Arc<Exchange>, limits: CacheLimits) -> Enforcer<Verifier, Arc<Exchange>> {
    let e = Enforcer::new(Verifier, Arc::clone(exchange), limits);
    e.set_policy(ROUTE, Ok(seed()));
    e
}

fn user(name: &str) -> String {
    let mut claims = user_claims();
    claims["preferred_username"] = json!(name);
    jwt(&claims)
}

fn injected(d: &Decision) -> String {
    let Decision::Allow { headers_to_set } = d else { panic!("{d:?}") };
    assert_eq!(headers_to_set.len(), 1, "{headers_to_set:?}");
    assert_eq!(headers_to_set[0].0, "authorization");
    headers_to_set[0].1.clone()
}

#[tokio::test]
async fn the_exchange_is_reused_per_caller_token_and_audience() {
    let exchange = Arc::new(Exchange::new(Some(1800)));
    let e = enforcer(&exchange, CacheLimits::default());
    let alice = user("alice");
    let first = injected(&e.enforce(ROUTE, &request(Some(&alice), "namespaces_list")).await);
    let second = injected(&e.enforce(ROUTE, &request(Some(&alice), "pods_list")).await);
    assert_eq!(first, second);
    assert_eq!(exchange.count(), 1);
    assert_eq!(e.cache_stats().hits, 1);
    assert_eq!(e.cache_stats().fetches, 1);
    assert_eq!(e.cache_stats().entries, 1);

    // Another caller's token is another exchange.
    let bob = user("robert");
    let third = injected(&e.enforce(ROUTE, &request(Some(&bob), "namespaces_list")).await);
    assert_ne!(third, first);
    assert_eq!(exchange.count(), 2);
    // A denied tool still used the cached exchange.
    let d = e.enforce(ROUTE, &request(Some(&bob), "pods_delete")).await;
    assert!(matches!(d, Decision::Deny { status: 403, .. }), "{d:?}");
    assert_eq!(exchange.count(), 2);
}

#[tokio::test]
async fn only_token_answers_that_outlive_the_margin_are_cached() {
    // expires_in 10 s is under the 30 s margin: not kept.
    let short = Arc::new(Exchange::new(Some(10)));
    let e = enforcer(&short, CacheLimits::default());
    for _ in 0..2 {
        injected(&e.enforce(ROUTE, &request(Some(&user("a")), "namespaces_list")).await);
    }
    assert_eq!(short.count(), 2);
    assert_eq!(e.cache_stats().entries, 0);

    // No expires_in: the token's own exp (1800 s away) gives the lifetime.
    let exp_only = Arc::new(Exchange::new(None));
    let e = enforcer(&exp_only, CacheLimits::default());
    for _ in 0..2 {
        injected(&e.enforce(ROUTE, &request(Some(&user("a")), "namespaces_list")).await);
    }
    assert_eq!(exp_only.count(), 1);

    // An error answer (no access_token) is never kept: the next request asks again.
    let refusing = Arc::new(Exchange { calls: AtomicUsize::new(0), expires_in: Some(1800), with_token: false });
    let e = enforcer(&refusing, CacheLimits::default());
    for _ in 0..2 {
        let d = e.enforce(ROUTE, &request(Some(&user("a")), "namespaces_list")).await;
        assert!(matches!(d, Decision::Deny { status: 403, .. }), "{d:?}");
    }
    assert_eq!(refusing.count(), 2);
}

#[tokio::test]
async fn the_cache_is_bounded_in_entries() {
    let exchange = Arc::new(Exchange::new(Some(1800)));
    let limits = CacheLimits { max_entries: 2, ..CacheLimits::default() };
    let e = enforcer(&exchange, limits);
    for name in ["a", "bb", "ccc", "dddd"] {
        injected(&e.enforce(ROUTE, &request(Some(&user(name)), "namespaces_list")).await);
        assert!(e.cache_stats().entries <= 2, "{:?}", e.cache_stats());
    }
    assert_eq!(exchange.count(), 4);
    // The latest caller is still cached.
    injected(&e.enforce(ROUTE, &request(Some(&user("dddd")), "namespaces_list")).await);
    assert_eq!(exchange.count(), 4);
}

/// Blocks every fetch until released, counting entries.
struct Gated {
    entered: AtomicUsize,
    open: tokio::sync::Semaphore,
}

impl MetadataFetcher for Gated {
    async fn fetch(&self, _call: &HttpCall) -> Result<Value, FetchError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self.open.acquire().await.unwrap();
        let claims = json!({"exp": now() + 1800});
        Ok(json!({"access_token": jwt(&claims), "expires_in": 1800}))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_identical_calls_make_one_request() {
    let gated = Arc::new(Gated { entered: AtomicUsize::new(0), open: tokio::sync::Semaphore::new(0) });
    let cache = Arc::new(CachingFetcher::new(Arc::clone(&gated), CacheLimits::default()));
    let call = HttpCall { method: http::Method::POST, url: "http://idp/token".into(), headers: vec![], body: None };
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, call) = (Arc::clone(&cache), call.clone());
            tokio::spawn(async move { cache.fetch(&call).await.unwrap() })
        })
        .collect();
    // Let every task run up to where it waits (one in the fetch, the others for its result).
    while gated.entered.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    gated.open.add_permits(100);
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(gated.entered.load(Ordering::SeqCst), 1);
    assert!(answers.iter().all(|a| *a == answers[0]));
    assert_eq!(cache.stats().hits, 7);
}

#[tokio::test]
async fn visible_tools_are_the_callable_ones_for_one_exchange() {
    let exchange = Arc::new(Exchange::new(Some(1800)));
    let e = enforcer(&exchange, CacheLimits::default());
    let tools: Vec<String> =
        ["namespaces_list", "pods_delete", "pods_list", "helm_install"].iter().map(|s| s.to_string()).collect();
    // The list request carries no tool headers; visible_tools sets them per tool.
    let mut list = request(Some(&user("a")), "ignored");
    list.headers.remove("x-mcp-toolname");
    list.headers.insert("x-mcp-method", "tools/list".parse().unwrap());
    assert_eq!(e.visible_tools(ROUTE, &list, &tools).await, ["namespaces_list", "pods_list"]);
    assert_eq!(exchange.count(), 1);
    // A caller without a token sees nothing; a route without a policy shows everything.
    assert!(e.visible_tools(ROUTE, &request(None, "x"), &tools).await.is_empty());
    assert_eq!(e.visible_tools("other/route", &list, &tools).await, tools);

    // An exchange the IdP refuses (never cached) is still asked once per list, not per tool.
    let refusing = Arc::new(Exchange { calls: AtomicUsize::new(0), expires_in: Some(1800), with_token: false });
    let e = enforcer(&refusing, CacheLimits::default());
    assert!(e.visible_tools(ROUTE, &list, &tools).await.is_empty());
    assert_eq!(refusing.count(), 1);
    assert!(e.visible_tools(ROUTE, &list, &tools).await.is_empty());
    assert_eq!(refusing.count(), 2);
}

#[tokio::test]
async fn a_policy_that_fails_to_load_refuses_its_route() {
    let exchange = Arc::new(Exchange::new(Some(1800)));
    let e = Enforcer::new(Verifier, Arc::clone(&exchange), CacheLimits::default());
    let text = SEED.replace("        jwt:\n", "        jwt:\n          jwksUrl: https://x/certs\n");
    assert_ne!(text, SEED);
    let loaded = load_value(yaml(&text));
    e.set_policy(ROUTE, loaded);
    let path = "spec.rules.authentication.keycloak.jwt.jwksUrl";
    let status = e.policy_status(ROUTE).unwrap().unwrap_err();
    assert_eq!(status, LoadError::Unsupported { path: path.into() });
    let d = e.enforce(ROUTE, &request(Some(&user("a")), "namespaces_list")).await;
    let Decision::Deny { status, body, reason, .. } = &d else { panic!("{d:?}") };
    assert_eq!(*status, REFUSED_STATUS);
    assert!(reason.contains(path) && body.as_deref().unwrap().contains(path), "{d:?}");
    assert!(e.visible_tools(ROUTE, &request(Some(&user("a")), "x"), &["namespaces_list".into()]).await.is_empty());
    assert_eq!(exchange.count(), 0);

    // A fixed policy replaces the refusal; removing it leaves the route unprotected.
    e.set_policy(ROUTE, Ok(seed()));
    assert_eq!(e.policy_status(ROUTE), Some(Ok(())));
    injected(&e.enforce(ROUTE, &request(Some(&user("a")), "namespaces_list")).await);
    e.remove_policy(ROUTE);
    assert_eq!(e.policy_status(ROUTE), None);
    let d = e.enforce(ROUTE, &request(None, "namespaces_list")).await;
    assert_eq!(d, Decision::Allow { headers_to_set: vec![] });
}

/// The seed's 401: its header and body, whatever made authentication fail.
fn assert_seed_401(d: &Decision) {
    let Decision::Deny { status, headers, body, .. } = d else { panic!("{d:?}") };
    assert_eq!(*status, 401, "{d:?}");
    assert_eq!(
        headers,
        &[(
            "WWW-Authenticate".to_owned(),
            "Bearer resource_metadata=https://mcp.example.com/.well-known/oauth-protected-resource/mcp".to_owned()
        )]
    );
    let body: Value = serde_json::from_str(body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"error": "Unauthorized", "message": "MCP Tool Access denied: Authentication required."}));
}

#[tokio::test]
async fn the_oidc_verifier_refuses_when_the_issuer_is_unreachable_or_not_https() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer = format!("http://127.0.0.1:{port}/realms/mcp");
    let text = SEED.replace("issuerUrl: https://keycloak.example.com/realms/mcp", &format!("issuerUrl: {issuer}"));
    let mut claims = user_claims();
    claims["iss"] = json!(issuer);
    claims["sub"] = json!("u1");
    claims["exp"] = json!(now() + 600);
    let token = jwt(&claims);
    for allow_http in [true, false] {
        let exchange = Arc::new(Exchange::new(Some(1800)));
        let e = Enforcer::new(
            OidcVerifier::new(AuthnOptions::default(), allow_http),
            Arc::clone(&exchange),
            CacheLimits::default(),
        );
        e.set_policy(ROUTE, load_value(yaml(&text)));
        assert_seed_401(&e.enforce(ROUTE, &request(Some(&token), "namespaces_list")).await);
        assert_eq!(exchange.count(), 0);
    }
}

/// The gateway holds the enforcer in shared state and awaits it inside Send handlers.
#[test]
fn the_real_enforcer_is_shareable_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let e = apiary_authpolicy::OidcEnforcer::new(
        OidcVerifier::new(AuthnOptions::default(), false),
        apiary_authpolicy::ReqwestFetcher::new().unwrap(),
        CacheLimits::default(),
    );
    send_sync(&e);
    let r = request(None, "x");
    send(e.enforce(ROUTE, &r));
    send(e.visible_tools(ROUTE, &r, &[]));
}

#[test]
fn the_seed_policy_targets_its_route_and_other_targets_are_named() {
    let policy = apiary_authpolicy::AuthPolicy::from_value(yaml(SEED)).unwrap();
    assert_eq!(apiary_authpolicy::target_route(&policy).unwrap(), ROUTE);
    for (from, to, path) in [
        ("kind: HTTPRoute", "kind: Gateway", "spec.targetRef.kind"),
        ("name: kubernetes-mcp\n", "name: kubernetes-mcp\n    sectionName: rule-1\n", "spec.targetRef.sectionName"),
        ("  namespace: mcp-test\n", "", "metadata.namespace"),
    ] {
        let text = SEED.replacen(from, to, 1);
        assert_ne!(text, SEED);
        let policy = apiary_authpolicy::AuthPolicy::from_value(yaml(&text)).unwrap();
        assert_eq!(apiary_authpolicy::target_route(&policy).unwrap_err().path(), path);
    }
}
