//! Seed 004's AuthPolicy, verbatim but for its Keycloak URLs, enforced against a real Keycloak
//! with the `mcp` realm: Apiary's OIDC verifier checks the caller's token, the enforcer exchanges
//! it at Keycloak's token endpoint (RFC 8693, once per caller thanks to the cache), lets through
//! only the tools among the caller's roles and injects the exchanged token. Fails, never skips,
//! when Keycloak is not installed (`cargo xtask test-env`).
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apiary_authpolicy::{
    AuthPolicy, CacheLimits, CompiledPolicy, Decision, Enforcer, FetchError, HttpCall, JwtVerifier, MetadataFetcher,
    OidcVerifier, RequestInfo, ReqwestFetcher,
};
use apiary_policy::authn::AuthnOptions;
use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, REALM_JSON, USER_CLIENT, decode_claims,
};
use base64::Engine as _;
use common::{SEED, request, yaml};
use serde_json::{Value, json};

const ROUTE: &str = BACKEND_AUDIENCE;

/// The real fetcher, counting the requests that reach Keycloak's token endpoint.
struct Counting {
    inner: ReqwestFetcher,
    token_endpoint: String,
    hits: AtomicUsize,
}

impl MetadataFetcher for Counting {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        if call.url == self.token_endpoint {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.fetch(call).await
    }
}

/// The seed's AuthPolicy with its two Keycloak URLs pointed at this Keycloak, and the
/// `token-exchange` Secret as the seed creates it: `Basic <base64 client-id:client-secret>`.
fn seed_policy(kc: &Keycloak) -> CompiledPolicy {
    let text = SEED
        .replace("issuerUrl: https://keycloak.example.com/realms/mcp", &format!("issuerUrl: {}", kc.issuer()))
        .replace(
            "url: https://keycloak.example.com/realms/mcp/protocol/openid-connect/token",
            &format!("url: {}", kc.token_endpoint()),
        );
    assert_eq!(text.matches(&kc.issuer()).count(), 2, "both URLs substituted");
    let secret = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{GATEWAY_CLIENT}:{GATEWAY_SECRET}"))
    );
    let policy = AuthPolicy::from_value(yaml(&text)).unwrap();
    CompiledPolicy::load(&policy, &move |name: &str, key: &str| {
        (name == "token-exchange" && key == "oauth-client-basic-auth").then(|| secret.clone())
    })
    .unwrap()
}

type Setup = (Enforcer<Arc<OidcVerifier>, Arc<Counting>>, Arc<OidcVerifier>, Arc<Counting>);

fn setup(kc: &Keycloak) -> Setup {
    let verifier = Arc::new(OidcVerifier::new(AuthnOptions::default(), true));
    let counting = Arc::new(Counting {
        inner: ReqwestFetcher::new().unwrap(),
        token_endpoint: kc.token_endpoint(),
        hits: AtomicUsize::new(0),
    });
    let enforcer = Enforcer::new(Arc::clone(&verifier), Arc::clone(&counting), CacheLimits::default());
    enforcer.set_policy(ROUTE, Ok(seed_policy(kc)));
    (enforcer, verifier, counting)
}

async fn user_token(kc: &Keycloak, user: &str) -> String {
    kc.password_token(USER_CLIENT, user, user, "openid").await.unwrap().access_token
}

/// The realm's roles of `user` on the backend client: the tools it may call.
fn realm_roles(user: &str) -> BTreeSet<String> {
    let realm: Value = serde_json::from_str(REALM_JSON).unwrap();
    let users = realm["users"].as_array().unwrap();
    let found = users.iter().find(|u| u["username"] == user).unwrap();
    let roles = found["clientRoles"][BACKEND_AUDIENCE].as_array().cloned().unwrap_or_default();
    roles.iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

/// kubernetes-mcp-server's tools: the realm's 22 roles plus two the realm grants nobody.
fn server_tools() -> Vec<String> {
    let mut tools: Vec<String> = realm_roles("mcp").into_iter().collect();
    assert_eq!(tools.len(), 22);
    tools.extend(["projects_list".to_owned(), "resources_scale".to_owned()]);
    tools
}

/// A `tools/list` as the gateway presents it for visibility (no tool header).
fn list_request(token: &str) -> RequestInfo {
    let mut r = request(Some(token), "unused");
    r.headers.remove("x-mcp-toolname");
    r.headers.insert("x-mcp-method", "tools/list".parse().unwrap());
    r
}

fn assert_seed_401(d: &Decision) {
    let Decision::Deny { status, headers, body, .. } = d else { panic!("{d:?}") };
    assert_eq!(*status, 401, "{d:?}");
    let www: Vec<&(String, String)> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")).collect();
    assert_eq!(www.len(), 1, "{headers:?}");
    assert_eq!(www[0].1, "Bearer resource_metadata=https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
    let body: Value = serde_json::from_str(body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"error": "Unauthorized", "message": "MCP Tool Access denied: Authentication required."}));
}

fn assert_seed_403(d: &Decision) {
    let Decision::Deny { status, headers, body, .. } = d else { panic!("{d:?}") };
    assert_eq!(*status, 403, "{d:?}");
    assert!(!headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")), "{headers:?}");
    let body: Value = serde_json::from_str(body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"error": "Forbidden", "message": "MCP Tool Access denied: Insufficient permissions for this tool."})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_policy_exchanges_once_and_lets_through_only_the_callers_tools() {
    let kc = Keycloak::shared().await;
    let (enforcer, verifier, counting) = setup(kc);
    let caller = user_token(kc, "mcp").await;
    assert_eq!(decode_claims(&caller).unwrap()["aud"], GATEWAY_CLIENT, "the user token is for the gateway only");

    // A tool among its roles: allowed, with an exchanged token for the server injected.
    let d = enforcer.enforce(ROUTE, &request(Some(&caller), "namespaces_list")).await;
    let Decision::Allow { headers_to_set } = &d else { panic!("{d:?}") };
    assert_eq!(headers_to_set.len(), 1, "{headers_to_set:?}");
    assert_eq!(headers_to_set[0].0, "authorization");
    let injected = headers_to_set[0].1.strip_prefix("Bearer ").unwrap().to_owned();
    assert_ne!(injected, caller, "the caller's own token would reach the server");
    let claims = decode_claims(&injected).unwrap();
    assert_eq!(claims["aud"], BACKEND_AUDIENCE, "{claims}");
    assert_eq!(claims["azp"], GATEWAY_CLIENT, "{claims}");
    assert_eq!(claims["preferred_username"], "mcp", "{claims}");
    // It is a real Keycloak token: Apiary's verifier accepts it for the issuer.
    let verified = verifier.verify(&kc.issuer(), &injected).await.unwrap();
    assert_eq!(verified["aud"], BACKEND_AUDIENCE);
    assert_eq!(counting.hits.load(Ordering::SeqCst), 1);

    // A second call (another allowed tool) reuses the exchange and injects the same token.
    let d = enforcer.enforce(ROUTE, &request(Some(&caller), "pods_list")).await;
    let Decision::Allow { headers_to_set } = &d else { panic!("{d:?}") };
    assert_eq!(headers_to_set[0].1, format!("Bearer {injected}"));
    assert_eq!(counting.hits.load(Ordering::SeqCst), 1, "the second call exchanged again");

    // A kubernetes-mcp-server tool outside its roles: the seed's 403.
    assert_seed_403(&enforcer.enforce(ROUTE, &request(Some(&caller), "projects_list")).await);
    assert_eq!(counting.hits.load(Ordering::SeqCst), 1);
    assert_eq!(enforcer.cache_stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_a_bad_token_gets_the_seeds_401_and_no_exchange() {
    let kc = Keycloak::shared().await;
    let (enforcer, _, counting) = setup(kc);
    assert_seed_401(&enforcer.enforce(ROUTE, &request(None, "namespaces_list")).await);
    assert_seed_401(&enforcer.enforce(ROUTE, &request(Some("garbage"), "namespaces_list")).await);
    // A real token with its signature altered.
    let caller = user_token(kc, "mcp").await;
    let (head, sig) = caller.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &sig[1..]);
    assert_seed_401(&enforcer.enforce(ROUTE, &request(Some(&forged), "namespaces_list")).await);
    // Not a Bearer credential at all.
    let mut basic = request(None, "namespaces_list");
    basic.headers.insert("authorization", "Basic bWNwOm1jcA==".parse().unwrap());
    assert_seed_401(&enforcer.enforce(ROUTE, &basic).await);
    assert_eq!(counting.hits.load(Ordering::SeqCst), 0, "nothing unauthenticated is exchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_exactly_the_callers_roles_for_one_exchange_each() {
    let kc = Keycloak::shared().await;
    let (enforcer, _, counting) = setup(kc);
    let tools = server_tools();
    for (user, exchanges) in [("mcp", 1), ("mcp-limited", 2)] {
        let token = user_token(kc, user).await;
        let visible: BTreeSet<String> =
            enforcer.visible_tools(ROUTE, &list_request(&token), &tools).await.into_iter().collect();
        assert_eq!(visible, realm_roles(user), "{user}");
        assert_eq!(counting.hits.load(Ordering::SeqCst), exchanges, "{user}: one exchange per caller");
    }
    assert_eq!(realm_roles("mcp-limited").len(), 2);

    // A list again costs nothing; a call after the list reuses the same exchange.
    let token = user_token(kc, "mcp-limited").await;
    let visible = enforcer.visible_tools(ROUTE, &list_request(&token), &tools).await;
    assert_eq!(visible.len(), 2);
    assert_eq!(counting.hits.load(Ordering::SeqCst), 3, "a new token is a new exchange");
    let visible = enforcer.visible_tools(ROUTE, &list_request(&token), &tools).await;
    assert_eq!(visible.len(), 2);
    assert!(matches!(enforcer.enforce(ROUTE, &request(Some(&token), "pods_list")).await, Decision::Allow { .. }));
    assert_seed_403(&enforcer.enforce(ROUTE, &request(Some(&token), "pods_delete")).await);
    assert_eq!(counting.hits.load(Ordering::SeqCst), 3);

    // A user without roles on the server: Keycloak refuses the exchange, nothing is visible.
    let norole = user_token(kc, "mcp-norole").await;
    assert!(enforcer.visible_tools(ROUTE, &list_request(&norole), &tools).await.is_empty());
    assert_eq!(counting.hits.load(Ordering::SeqCst), 4, "a refused exchange is asked once per list");
    assert_seed_403(&enforcer.enforce(ROUTE, &request(Some(&norole), "namespaces_list")).await);
    // And without a token nothing is visible either.
    let mut anonymous = list_request("x");
    anonymous.headers.remove("authorization");
    assert!(enforcer.visible_tools(ROUTE, &anonymous, &tools).await.is_empty());
}
