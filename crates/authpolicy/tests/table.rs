//! The AuthPolicy evaluation table: seed 004's policy verbatim, then each rule kind and response
//! field on its own, then the fail-closed cases.
#![allow(clippy::unwrap_used)]
mod common;

use apiary_authpolicy::{Decision, FetchError, LoadError};
use common::*;
use serde_json::{Value, json};

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
    let Decision::Deny { reason, .. } = &d else { panic!("{d:?}") };
    assert!(reason.contains("tool-access-check"), "{reason}");
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
    let Decision::Deny { reason, .. } = &d else { panic!("{d:?}") };
    assert!(reason.contains("scoped-audience-check"), "{reason}");
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
    let fetcher = Fetcher::replying(Err(FetchError::Transport("refused".into())));
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

// ---- each rule kind and response field on its own ----

/// A policy around `rules` (YAML), targeting the seed's route.
fn policy(rules: &str) -> Value {
    let mut v = yaml(
        "apiVersion: kuadrant.io/v1\nkind: AuthPolicy\nmetadata: {name: p, namespace: mcp-test}\nspec:\n  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: kubernetes-mcp}\n  rules: {}\n",
    );
    v["spec"]["rules"] = yaml(rules);
    v
}

const JWT_AUTHN: &str = "authentication:\n  kc:\n    jwt:\n      issuerUrl: https://keycloak.example.com/realms/mcp\n";

async fn decide(rules: &str, token: Option<&str>, tool: &str, fetcher: &Fetcher) -> Decision {
    let p = load_value(policy(rules)).unwrap();
    p.evaluate(&request(token, tool), &Verifier, fetcher).await
}

fn none() -> Fetcher {
    Fetcher::replying(Err(FetchError::Transport("down".into())))
}

#[tokio::test]
async fn authentication_jwt_default_401_names_the_rule_realm() {
    let d = decide(JWT_AUTHN, None, "t", &none()).await;
    let (status, headers, body) = deny_parts(&d);
    assert_eq!(status, 401);
    assert_eq!(headers, vec![("WWW-Authenticate".to_owned(), "Bearer realm=\"kc\"".to_owned())]);
    assert_eq!(body, None);
    let ok = decide(JWT_AUTHN, Some(&jwt(&user_claims())), "t", &none()).await;
    assert_eq!(allowed_headers(&ok), vec![]);
}

#[tokio::test]
async fn authentication_custom_header_credentials_and_identity_in_cel() {
    let rules = "authentication:\n  kc:\n    jwt: {issuerUrl: https://keycloak.example.com/realms/mcp}\n    credentials: {customHeader: {name: X-Token}}\nauthorization:\n  who:\n    patternMatching:\n      patterns:\n      - predicate: auth.identity.preferred_username == 'mcp'\n";
    let p = load_value(policy(rules)).unwrap();
    let mut req = request(None, "t");
    req.headers.insert("x-token", jwt(&user_claims()).parse().unwrap());
    assert!(matches!(p.evaluate(&req, &Verifier, &none()).await, Decision::Allow { .. }));
    let mut other = user_claims();
    other["preferred_username"] = json!("eve");
    let mut req = request(None, "t");
    req.headers.insert("x-token", jwt(&other).parse().unwrap());
    assert_eq!(deny_parts(&p.evaluate(&req, &Verifier, &none()).await).0, 403);
    // The Authorization header is not where this rule looks.
    let d = p.evaluate(&request(Some(&jwt(&user_claims())), "t"), &Verifier, &none()).await;
    assert_eq!(deny_parts(&d).0, 401);
}

#[tokio::test]
async fn metadata_json_body_headers_value_and_expression_and_result_in_auth_metadata() {
    let rules = format!(
        "{JWT_AUTHN}metadata:\n  info:\n    http:\n      urlExpression: \"'https://info.example.com/users/' + auth.identity.preferred_username\"\n      method: POST\n      contentType: application/json\n      headers:\n        x-static: {{value: one}}\n        x-tool: {{expression: \"request.headers['x-mcp-toolname']\"}}\n      bodyParameters:\n        n: {{value: 3}}\n        who: {{expression: auth.identity.sub}}\nauthorization:\n  meta:\n    patternMatching:\n      patterns:\n      - predicate: auth.metadata.info.level == 'gold'\n"
    );
    let mut claims = user_claims();
    claims["sub"] = json!("u-1");
    let fetcher = Fetcher::replying(Ok(json!({"level": "gold"})));
    let d = decide(&rules, Some(&jwt(&claims)), "pods_list", &fetcher).await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    let call = &fetcher.calls()[0];
    assert_eq!(call.method, http::Method::POST);
    assert_eq!(call.url, "https://info.example.com/users/mcp");
    assert_eq!(call.header("x-static"), Some("one"));
    assert_eq!(call.header("x-tool"), Some("pods_list"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("authorization"), None, "no credentials without sharedSecretRef");
    let body: Value = serde_json::from_slice(call.body.as_ref().unwrap()).unwrap();
    assert_eq!(body, json!({"n": 3, "who": "u-1"}));
    let silver = Fetcher::replying(Ok(json!({"level": "silver"})));
    assert_eq!(deny_parts(&decide(&rules, Some(&jwt(&claims)), "pods_list", &silver).await).0, 403);
}

#[tokio::test]
async fn metadata_credentials_prefix_with_a_secret_without_the_prefix_and_default_bearer() {
    for (credentials, expected) in [
        (
            "credentials: {authorizationHeader: {prefix: Basic}}\n        ",
            "Basic bWNwLWdhdGV3YXk6bWNwLWdhdGV3YXktdGVzdC1zZWNyZXQ=",
        ),
        ("", "Bearer Basic bWNwLWdhdGV3YXk6bWNwLWdhdGV3YXktdGVzdC1zZWNyZXQ="),
        ("credentials: {customHeader: {name: x-client}}\n        ", SECRET),
    ] {
        let rules = format!(
            "{JWT_AUTHN}metadata:\n  m:\n    http:\n        url: https://idp.example.com/x\n        {credentials}sharedSecretRef: {{name: token-exchange, key: oauth-client-basic-auth}}\n"
        );
        let fetcher = none();
        decide(&rules, Some(&jwt(&user_claims())), "t", &fetcher).await;
        let call = &fetcher.calls()[0];
        let header = if credentials.contains("x-client") { "x-client" } else { "authorization" };
        assert_eq!(call.header(header), Some(expected), "{credentials}");
        assert_eq!(call.method, http::Method::GET);
        assert_eq!(call.body, None);
        assert_eq!(call.header("content-type"), Some("text/plain"));
    }
}

#[tokio::test]
async fn metadata_priority_lets_a_later_call_use_an_earlier_result() {
    let rules = format!(
        "{JWT_AUTHN}metadata:\n  first:\n    http: {{url: 'https://a.example.com/'}}\n    priority: 0\n  second:\n    http: {{urlExpression: \"'https://b.example.com/' + auth.metadata.first.next\"}}\n    priority: 1\n"
    );
    let fetcher = Fetcher::replying(Ok(json!({"next": "hop"})));
    decide(&rules, Some(&jwt(&user_claims())), "t", &fetcher).await;
    let urls: Vec<String> = fetcher.calls().iter().map(|c| c.url.clone()).collect();
    assert_eq!(urls, vec!["https://a.example.com/", "https://b.example.com/hop"]);
}

#[tokio::test]
async fn authorization_when_false_skips_the_rule_and_when_error_denies() {
    let rules = format!(
        "{JWT_AUTHN}authorization:\n  never:\n    when:\n    - predicate: request.headers['x-mcp-toolname'] == 'admin'\n    patternMatching:\n      patterns:\n      - predicate: 'false'\n"
    );
    assert!(matches!(decide(&rules, Some(&jwt(&user_claims())), "t", &none()).await, Decision::Allow { .. }));
    assert_eq!(deny_parts(&decide(&rules, Some(&jwt(&user_claims())), "admin", &none()).await).0, 403);
    let broken = format!(
        "{JWT_AUTHN}authorization:\n  r:\n    when:\n    - predicate: request.headers['absent'] == 'x'\n    patternMatching:\n      patterns:\n      - predicate: 'false'\n"
    );
    assert_eq!(deny_parts(&decide(&broken, Some(&jwt(&user_claims())), "t", &none()).await).0, 403);
}

#[tokio::test]
async fn authorization_patterns_all_must_hold_and_errors_deny() {
    let two = format!(
        "{JWT_AUTHN}authorization:\n  r:\n    patternMatching:\n      patterns:\n      - predicate: auth.identity.azp == 'mcp-client'\n      - predicate: request.method == 'GET'\n"
    );
    assert_eq!(deny_parts(&decide(&two, Some(&jwt(&user_claims())), "t", &none()).await).0, 403);
    let error = format!(
        "{JWT_AUTHN}authorization:\n  r:\n    patternMatching:\n      patterns:\n      - predicate: auth.identity.missing.deeper == 1\n"
    );
    assert_eq!(deny_parts(&decide(&error, Some(&jwt(&user_claims())), "t", &none()).await).0, 403);
    let not_bool = format!(
        "{JWT_AUTHN}authorization:\n  r:\n    patternMatching:\n      patterns:\n      - predicate: \"'yes'\"\n"
    );
    assert_eq!(deny_parts(&decide(&not_bool, Some(&jwt(&user_claims())), "t", &none()).await).0, 403);
}

#[tokio::test]
async fn authorization_opa_allow_false_denies_and_all_values_controls_what_later_rules_see() {
    let deny =
        format!("{JWT_AUTHN}authorization:\n  r:\n    opa:\n      rego: allow {{ input.request.method == \"GET\" }}\n");
    assert_eq!(deny_parts(&decide(&deny, Some(&jwt(&user_claims())), "t", &none()).await).0, 403);
    for (all_values, expect_allow) in [(true, true), (false, false)] {
        let rules = format!(
            "{JWT_AUTHN}authorization:\n  a:\n    opa:\n      rego: |\n        user := input.auth.identity.preferred_username\n        allow {{ input.request.method == \"POST\" }}\n      allValues: {all_values}\n    priority: 0\n  b:\n    patternMatching:\n      patterns:\n      - predicate: has(auth.authorization.a.user) && auth.authorization.a.user == 'mcp'\n    priority: 1\n"
        );
        let d = decide(&rules, Some(&jwt(&user_claims())), "t", &none()).await;
        assert_eq!(matches!(d, Decision::Allow { .. }), expect_allow, "allValues {all_values}: {d:?}");
    }
}

#[tokio::test]
async fn response_success_json_header_when_and_key() {
    let rules = format!(
        "{JWT_AUTHN}response:\n  success:\n    headers:\n      identity:\n        key: x-identity\n        json:\n          properties:\n            user: {{expression: auth.identity.preferred_username}}\n            static: {{value: 1}}\n      skipped:\n        when:\n        - predicate: 'false'\n        plain: {{value: never}}\n"
    );
    let d = decide(&rules, Some(&jwt(&user_claims())), "t", &none()).await;
    let headers = allowed_headers(&d);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "x-identity");
    let v: Value = serde_json::from_str(&headers[0].1).unwrap();
    assert_eq!(v, json!({"user": "mcp", "static": 1}));
}

#[tokio::test]
async fn response_deny_code_message_headers_and_expression_body() {
    let rules = format!(
        "{JWT_AUTHN}authorization:\n  no:\n    patternMatching:\n      patterns:\n      - predicate: 'false'\nresponse:\n  unauthorized:\n    code: 302\n    message: {{value: go away}}\n    headers:\n      location: {{expression: \"'https://login.example.com/?tool=' + request.headers['x-mcp-toolname']\"}}\n    body: {{expression: \"{{'user': auth.identity.preferred_username}}\"}}\n  unauthenticated:\n    code: 418\n"
    );
    let d = decide(&rules, Some(&jwt(&user_claims())), "pods_list", &none()).await;
    let (status, headers, body) = deny_parts(&d);
    assert_eq!(status, 302);
    assert_eq!(
        headers,
        vec![
            ("location".to_owned(), "https://login.example.com/?tool=pods_list".to_owned()),
            ("x-ext-auth-reason".to_owned(), "go away".to_owned()),
        ]
    );
    assert_eq!(serde_json::from_str::<Value>(&body.unwrap()).unwrap(), json!({"user": "mcp"}));
    assert_eq!(deny_parts(&decide(&rules, None, "t", &none()).await).0, 418);
}

#[tokio::test]
async fn top_level_when_false_leaves_the_request_alone() {
    let mut v = policy(JWT_AUTHN);
    v["spec"]["when"] = json!([{"predicate": "request.headers['x-mcp-method'] == 'tools/list'"}]);
    let p = load_value(v).unwrap();
    let d = p.evaluate(&request(None, "t"), &Verifier, &none()).await;
    assert_eq!(d, Decision::Allow { headers_to_set: vec![] });
}

#[tokio::test]
async fn defaults_section_is_applied_like_rules() {
    let mut v = policy("{}");
    v["spec"].as_object_mut().unwrap().remove("rules");
    v["spec"]["defaults"] = json!({"strategy": "atomic", "rules": yaml(JWT_AUTHN)});
    let p = load_value(v).unwrap();
    assert_eq!(deny_parts(&p.evaluate(&request(None, "t"), &Verifier, &none()).await).0, 401);
}

// ---- fail closed: what Apiary cannot evaluate refuses the policy, by path ----

fn load_err(rules: &str) -> LoadError {
    load_value(policy(rules)).expect_err("the policy must not load")
}

#[test]
fn unknown_authentication_kind_is_unsupported() {
    let e = load_err("authentication:\n  keys:\n    apiKey: {selector: {matchLabels: {a: b}}}\n");
    assert_eq!(e, LoadError::Unsupported { path: "spec.rules.authentication.keys.apiKey".into() });
}

#[test]
fn unknown_authorization_kind_is_unsupported() {
    let e =
        load_err("authorization:\n  x:\n    kubernetesSubjectAccessReview: {user: {expression: auth.identity.sub}}\n");
    assert_eq!(e.path(), "spec.rules.authorization.x.kubernetesSubjectAccessReview");
    assert!(matches!(e, LoadError::Unsupported { .. }));
}

#[test]
fn unsupported_fields_anywhere_are_named() {
    for (rules, path) in [
        (
            "authorization:\n  x:\n    patternMatching:\n      patterns:\n      - {selector: auth.identity.sub, operator: eq, value: a}\n",
            "spec.rules.authorization.x.patternMatching.patterns[0].selector",
        ),
        ("metadata:\n  m:\n    userInfo: {identitySource: kc}\n", "spec.rules.metadata.m.userInfo"),
        (
            "metadata:\n  m:\n    http: {url: 'https://x/{auth.identity.sub}'}\n",
            "spec.rules.metadata.m.http.url (interpolation)",
        ),
        (
            "response:\n  success:\n    headers:\n      w:\n        wristband: {issuer: x}\n",
            "spec.rules.response.success.headers.w.wristband",
        ),
        ("response:\n  success:\n    filters: {x: {json: {properties: {}}}}\n", "spec.rules.response.success.filters"),
        ("callbacks: {}\n", "spec.rules.callbacks"),
        ("authentication:\n  kc:\n    jwt: {jwksUrl: 'https://x/certs'}\n", "spec.rules.authentication.kc.jwt.jwksUrl"),
    ] {
        let e = load_err(rules);
        assert_eq!(e.path(), path, "{e}");
        assert!(matches!(e, LoadError::Unsupported { .. }), "{e}");
    }
}

#[test]
fn a_cel_syntax_error_refuses_the_policy() {
    let e = load_err(
        "authorization:\n  x:\n    patternMatching:\n      patterns:\n      - predicate: 'auth.identity.sub =='\n",
    );
    assert!(
        matches!(&e, LoadError::Invalid { path, .. } if path == "spec.rules.authorization.x.patternMatching.patterns[0].predicate"),
        "{e}"
    );
    let e = load_err("metadata:\n  m:\n    when:\n    - predicate: '(('\n    http: {url: 'https://x/'}\n");
    assert_eq!(e.path(), "spec.rules.metadata.m.when[0].predicate");
}

#[test]
fn a_rego_compile_error_refuses_the_policy() {
    let e = load_err("authorization:\n  x:\n    opa:\n      rego: 'allow { input.a == }'\n");
    assert!(matches!(&e, LoadError::Invalid { path, .. } if path == "spec.rules.authorization.x.opa.rego"), "{e}");
    // A builtin this build does not have is a compile error too, never a silent allow.
    let e = load_err(
        "authorization:\n  x:\n    opa:\n      rego: 'allow { http.send({\"method\": \"get\", \"url\": \"http://x\"}) }'\n",
    );
    assert_eq!(e.path(), "spec.rules.authorization.x.opa.rego", "{e}");
}

#[test]
fn a_missing_secret_refuses_the_policy() {
    let e =
        load_err("metadata:\n  m:\n    http:\n      url: https://x/\n      sharedSecretRef: {name: nope, key: k}\n");
    assert_eq!(
        e,
        LoadError::MissingSecret {
            path: "spec.rules.metadata.m.http.sharedSecretRef".into(),
            name: "nope".into(),
            key: "k".into()
        }
    );
}

#[test]
fn wrong_types_and_versions_are_invalid_or_unsupported() {
    let e =
        load_err("authorization:\n  x:\n    priority: high\n    patternMatching: {patterns: [{predicate: 'true'}]}\n");
    assert!(matches!(e, LoadError::Invalid { .. }), "{e}");
    let mut v = policy("{}");
    v["apiVersion"] = json!("kuadrant.io/v1beta2");
    assert!(matches!(load_value(v), Err(LoadError::Unsupported { .. })));
    let mut v = policy("{}");
    v["spec"]["defaults"] = json!({"rules": {}});
    assert!(matches!(load_value(v), Err(LoadError::Unsupported { .. })));
}

#[test]
fn a_compiled_policy_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<apiary_authpolicy::CompiledPolicy>();
}

#[tokio::test]
async fn evaluation_runs_on_spawned_tasks() {
    let p = std::sync::Arc::new(seed());
    let user = jwt(&user_claims());
    let task = tokio::spawn(async move {
        p.evaluate(&request(Some(&user), "namespaces_list"), &Verifier, &Fetcher::exchange_to(SERVER)).await
    });
    assert!(matches!(task.await.unwrap(), Decision::Allow { .. }));
}
