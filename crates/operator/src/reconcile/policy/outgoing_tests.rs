//! Tests of `externalAuthConfigRef`: the outgoing credentials of each supported type, secrets as
//! environment only, and every MCPExternalAuthConfig that cannot be served.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use apiary_config::SubjectTokenType;
use serde_json::{Value, json};

use super::fixtures::{external_auth, found};
use super::outgoing::{BEARER_TOKEN_ENV, HEADER_INJECTION_ENV, TOKEN_EXCHANGE_SECRET_ENV};
use super::*;
use crate::crd::mcpserver::MCPServer;

const REF: &str = "upstream";

/// Resolves an MCPServer referencing MCPExternalAuthConfig `upstream` (with `spec`, or missing
/// when `None`), plus the OIDC reference when `with_oidc`.
fn resolved(spec: Option<Value>, with_oidc: bool) -> Result<Resolved, PolicyError> {
    let mut fields = json!({"image": "img", "externalAuthConfigRef": {"name": REF}});
    if with_oidc {
        fields["oidcConfigRef"] = json!({"name": "keycloak", "audience": "fetch"});
    }
    let server = MCPServer::new("fetch", serde_json::from_value(fields).unwrap());
    let mut f = found();
    f.external_auth = spec.map(external_auth);
    resolve(&server.policy_refs(), &f, "fetch")
}

fn exchange() -> Value {
    json!({"type": "tokenExchange", "tokenExchange": {
        "tokenUrl": "https://sts.example.com/token",
        "clientId": "apiary",
        "clientSecretRef": {"name": "sts-client", "key": "secret"},
        "audience": "github",
        "scopes": ["repo", "read:org"],
    }})
}

/// The one variable named `name` of `env`: read from Secret key `(secret, key)`, never a value.
fn assert_secret_var(env: &[EnvVar], name: &str, secret: &str, key: &str) {
    let var = env.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name} in {env:?}"));
    assert_eq!(var.value, None, "{name} carries no value");
    let r = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((r.name.as_str(), r.key.as_str(), r.optional), (secret, key, Some(false)));
}

#[test]
fn token_exchange_is_the_proxys_exchange_with_the_client_secret_from_its_secret() {
    let mut spec = exchange();
    spec["tokenExchange"]["subjectTokenType"] = json!("urn:ietf:params:oauth:token-type:id_token");
    spec["tokenExchange"]["externalTokenHeaderName"] = json!("X-Upstream-Token");
    let r = resolved(Some(spec), true).unwrap();
    let te = r.policy.outgoing.token_exchange.as_ref().unwrap();
    assert_eq!(te.token_url, "https://sts.example.com/token");
    assert_eq!(te.client_id, "apiary");
    assert_eq!((te.client_secret.as_deref(), te.client_secret_env.as_deref()), (None, Some(TOKEN_EXCHANGE_SECRET_ENV)));
    assert_eq!(te.audience.as_deref(), Some("github"));
    assert_eq!(te.scopes, ["repo", "read:org"]);
    assert_eq!(te.header_name.as_deref(), Some("X-Upstream-Token"));
    assert_eq!(te.subject_token_type, SubjectTokenType::IdToken);
    assert!(!te.insecure_allow_http);
    assert_secret_var(&r.env, TOKEN_EXCHANGE_SECRET_ENV, "sts-client", "secret");
    assert!(r.hashes.external_auth.is_some());
    // The default subject is the caller's access token, sent in `Authorization`.
    let r = resolved(Some(exchange()), true).unwrap();
    let te = r.policy.outgoing.token_exchange.unwrap();
    assert_eq!((te.subject_token_type, te.header_name), (SubjectTokenType::AccessToken, None));
}

#[test]
fn token_exchange_without_oidc_is_refused_since_there_is_no_caller_token() {
    let e = resolved(Some(exchange()), false).unwrap_err();
    assert!(matches!(e, PolicyError::Spec { field: "spec.externalAuthConfigRef", .. }), "{e}");
    assert!(e.to_string().contains("set spec.oidcConfigRef"), "{e}");
}

#[test]
fn token_exchange_settings_the_proxy_cannot_use_are_named() {
    let cases: [(&str, Value, &str); 7] = [
        ("clientId", Value::Null, "tokenExchange.clientId is not set"),
        ("clientSecretRef", Value::Null, "tokenExchange.clientSecretRef is not set"),
        ("clientSecretRef", json!({"name": "", "key": "k"}), "needs both a Secret name and a key"),
        ("tokenUrl", json!("http://sts.example.com/token"), "is not an https URL"),
        ("subjectTokenType", json!("jwt"), "subjectTokenType jwt is not supported"),
        ("subjectProviderName", json!("github"), "subjectProviderName needs an embedded authorization server"),
        ("externalTokenHeaderName", json!("Host"), "tokenExchange.externalTokenHeaderName: header \"Host\""),
    ];
    for (field, value, expected) in cases {
        let mut spec = exchange();
        if value.is_null() {
            spec["tokenExchange"].as_object_mut().unwrap().remove(field);
        } else {
            spec["tokenExchange"][field] = value;
        }
        let e = resolved(Some(spec), true).unwrap_err().to_string();
        assert!(e.starts_with("spec.externalAuthConfigRef: MCPExternalAuthConfig upstream: "), "{field}: {e}");
        assert!(e.contains(expected), "{field}: {e}");
    }
}

#[test]
fn header_injection_names_a_variable_read_from_the_secret() {
    let spec = json!({"type": "headerInjection", "headerInjection": {
        "headerName": "X-API-Key", "valueSecretRef": {"name": "upstream-key", "key": "value"}}});
    let r = resolved(Some(spec), false).unwrap();
    let out = &r.policy.outgoing;
    assert_eq!(out.header_env.get("X-API-Key").map(String::as_str), Some(HEADER_INJECTION_ENV));
    assert!(out.headers.is_empty() && out.token_exchange.is_none() && out.bearer_token_env.is_none());
    assert_secret_var(&r.env, HEADER_INJECTION_ENV, "upstream-key", "value");
    assert!(!serde_json::to_string(&r.policy).unwrap().contains("upstream-key"), "the Secret is not in the policy");

    for (header, expected) in [("X-Forwarded-For", "cannot be configured"), ("bad header", "not a valid header name")] {
        let spec = json!({"type": "headerInjection", "headerInjection": {
            "headerName": header, "valueSecretRef": {"name": "upstream-key", "key": "value"}}});
        let e = resolved(Some(spec), false).unwrap_err().to_string();
        assert!(e.contains("headerInjection.headerName") && e.contains(expected), "{e}");
    }
}

#[test]
fn a_bearer_token_names_a_variable_read_from_the_secret() {
    let spec = json!({"type": "bearerToken", "bearerToken": {"tokenSecretRef": {"name": "pat", "key": "token"}}});
    let r = resolved(Some(spec), false).unwrap();
    assert_eq!(r.policy.outgoing.bearer_token_env.as_deref(), Some(BEARER_TOKEN_ENV));
    assert_eq!(r.policy.outgoing.bearer_token, None);
    assert_secret_var(&r.env, BEARER_TOKEN_ENV, "pat", "token");
    let spec = json!({"type": "bearerToken", "bearerToken": {"tokenSecretRef": {"name": "pat", "key": ""}}});
    assert!(resolved(Some(spec), false).unwrap_err().to_string().contains("needs both a Secret name and a key"));
}

#[test]
fn unauthenticated_sends_nothing_but_is_hashed() {
    let r = resolved(Some(json!({"type": "unauthenticated"})), false).unwrap();
    assert!(r.policy.outgoing.is_empty());
    assert!(!r.env.iter().any(|e| e.name.starts_with("TOOLHIVE_")));
    assert!(r.hashes.external_auth.is_some());
}

#[test]
fn unsupported_types_fail_closed_naming_the_field_and_the_type() {
    let cases = [
        ("embeddedAuthServer", json!({"issuer": "https://auth.example.com"})),
        ("awsSts", json!({"region": "eu-west-1"})),
        ("upstreamInject", json!({"providerName": "github"})),
        ("obo", json!({"tenantId": "t"})),
        (
            "xaa",
            json!({"idpTokenUrl": "https://idp.example.com/token", "targetTokenUrl": "https://t.example.com/token",
                       "targetAudience": "a"}),
        ),
    ];
    for (type_, block) in cases {
        let spec = json!({"type": type_, type_: block});
        let e = resolved(Some(spec), true).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "spec.externalAuthConfigRef: MCPExternalAuthConfig upstream: type {type_} is not supported by \
                 Apiary yet; use tokenExchange, headerInjection, bearerToken or unauthenticated"
            )
        );
    }
}

#[test]
fn a_missing_config_or_a_type_without_its_section_is_named() {
    let e = resolved(None, false).unwrap_err();
    assert_eq!(e.to_string(), "spec.externalAuthConfigRef: MCPExternalAuthConfig upstream not found");
    let e = resolved(Some(json!({"type": "bearerToken"})), false).unwrap_err();
    assert!(e.to_string().contains("type bearerToken without a bearerToken section"), "{e}");
}

#[test]
fn the_hash_follows_the_config() {
    let a = resolved(Some(exchange()), true).unwrap().hashes;
    let mut changed = exchange();
    changed["tokenExchange"]["audience"] = json!("gitlab");
    let b = resolved(Some(changed), true).unwrap().hashes;
    assert_ne!(a.external_auth, b.external_auth);
    assert_eq!(a.oidc, b.oidc);
}
