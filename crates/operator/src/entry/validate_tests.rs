//! Tests of the MCPServerEntry checks, starting from seed 002's `complete-entry.yaml` entry.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::*;
use crate::normalize::Normalize;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn spec(v: Value) -> MCPServerEntrySpec {
    serde_json::from_value::<MCPServerEntrySpec>(v).unwrap().normalize().spec
}

/// Seed 002's partner-tools entry.
fn seed() -> Value {
    json!({
        "groupRef": "engineering-tools", "remoteURL": "https://mcp.partner.example.com/mcp",
        "transport": "streamable-http", "externalAuthConfigRef": {"name": "remote-auth"},
        "caBundleRef": {"configMapRef": {"name": "partner-ca-bundle", "key": "ca.crt"}},
        "headerForward": {"addPlaintextHeaders": {"X-Tenant-ID": "engineering"}},
    })
}

fn group() -> MCPGroup {
    serde_json::from_value(json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPGroup",
        "metadata": {"name": "engineering-tools"}, "spec": {}}))
    .unwrap()
}

fn auth(spec: Value) -> MCPExternalAuthConfig {
    serde_json::from_value(json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": "MCPExternalAuthConfig",
        "metadata": {"name": "remote-auth"}, "spec": spec}))
    .unwrap()
}

fn seed_auth() -> MCPExternalAuthConfig {
    auth(json!({"type": "tokenExchange", "tokenExchange": {
        "tokenUrl": "https://auth.company.com/protocol/openid-connect/token", "clientId": "remote-mcp-client",
        "clientSecretRef": {"name": "remote-mcp-secret", "key": "client-secret"},
        "audience": "https://mcp.partner.example.com"}}))
}

fn ca(key: &str, value: &str) -> ConfigMap {
    ConfigMap { data: Some(BTreeMap::from([(key.to_string(), value.to_string())])), ..ConfigMap::default() }
}

fn all_found() -> Found {
    Found {
        group: Some(group()),
        external_auth: Some(seed_auth()),
        ca_bundle: Some(ca("ca.crt", PEM)),
        secret_keys: BTreeMap::new(),
    }
}

fn by_type<'a>(checks: &'a [Check], t: &str) -> &'a Check {
    checks.iter().find(|c| c.type_ == t).unwrap()
}

fn verdict(s: &MCPServerEntrySpec, f: &Found, t: &str) -> (bool, &'static str, String) {
    let checks = checks(s, f);
    let c = by_type(&checks, t);
    (c.ok, c.reason, c.message.clone())
}

#[test]
fn the_seed_entry_passes_every_check_when_everything_exists() {
    let checks = checks(&spec(seed()), &all_found());
    assert_eq!(checks.len(), 5);
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    assert!(by_type(&checks, REMOTE_URL_VALIDATED).message.contains("checked when vMCP connects"));
}

#[test]
fn the_minimal_seed_entry_needs_only_its_group() {
    let s = spec(
        json!({"groupRef": "my-group", "remoteURL": "https://mcp.example.com/mcp", "transport": "streamable-http"}),
    );
    let f = Found { group: Some(group()), ..Found::default() };
    assert!(checks(&s, &f).iter().all(|c| c.ok));
}

#[test]
fn a_missing_group_fails_group_ref_naming_it_in_either_spelling() {
    for g in [json!("engineering-tools"), json!({"name": "engineering-tools"})] {
        let mut v = seed();
        v["groupRef"] = g;
        let f = Found { group: None, ..all_found() };
        let (ok, reason, message) = verdict(&spec(v), &f, GROUP_REF_VALIDATED);
        assert_eq!((ok, reason), (false, "GroupNotFound"));
        assert!(message.contains("MCPGroup engineering-tools not found"), "{message}");
    }
    let mut v = seed();
    v["groupRef"] = json!(7);
    assert_eq!(verdict(&spec(v), &all_found(), GROUP_REF_VALIDATED).1, "InvalidGroupRef");
}

#[test]
fn the_external_auth_config_must_exist_and_be_carried_out() {
    let s = spec(seed());
    let missing = Found { external_auth: None, ..all_found() };
    let (ok, reason, message) = verdict(&s, &missing, EXTERNAL_AUTH_CONFIG_VALIDATED);
    assert_eq!((ok, reason), (false, "ExternalAuthConfigNotFound"));
    assert!(message.contains("remote-auth"), "{message}");
    let sts = Found { external_auth: Some(auth(json!({"type": "awsSts", "awsSts": {"region": "x"}}))), ..all_found() };
    assert_eq!(verdict(&s, &sts, EXTERNAL_AUTH_CONFIG_VALIDATED).1, "Unsupported");
    let unset = spec(json!({"groupRef": "g", "remoteURL": "https://a.example.com", "transport": "sse"}));
    assert!(verdict(&unset, &missing, EXTERNAL_AUTH_CONFIG_VALIDATED).0);
}

#[test]
fn the_ca_bundle_needs_its_config_map_its_key_and_a_certificate() {
    let s = spec(seed());
    let cases = [
        (None, "CABundleNotFound", "ConfigMap partner-ca-bundle not found"),
        (Some(ca("other.crt", PEM)), "CABundleKeyNotFound", "has no key ca.crt"),
        (Some(ca("ca.crt", "not a cert")), "CABundleInvalid", "holds no PEM certificate"),
    ];
    for (cm, want, text) in cases {
        let f = Found { ca_bundle: cm, ..all_found() };
        let (ok, reason, message) = verdict(&s, &f, CA_BUNDLE_REF_VALIDATED);
        assert_eq!((ok, reason), (false, want));
        assert!(message.contains(text), "{message}");
    }
    let binary = ConfigMap {
        binary_data: Some(BTreeMap::from([("ca.crt".to_string(), ByteString(PEM.as_bytes().to_vec()))])),
        ..ConfigMap::default()
    };
    assert!(verdict(&s, &Found { ca_bundle: Some(binary), ..all_found() }, CA_BUNDLE_REF_VALIDATED).0);
    let mut v = seed();
    v["caBundleRef"]["configMapRef"]["optional"] = json!(true);
    assert!(verdict(&spec(v), &Found { ca_bundle: None, ..all_found() }, CA_BUNDLE_REF_VALIDATED).0);
}

#[test]
fn header_names_must_be_allowed_and_secrets_hold_their_keys() {
    let mut v = seed();
    v["headerForward"] = json!({"addPlaintextHeaders": {"X-Forwarded-For": "1.2.3.4"}});
    assert_eq!(verdict(&spec(v), &all_found(), HEADER_FORWARD_VALIDATED).1, "InvalidHeaderName");

    let mut v = seed();
    v["headerForward"] = json!({"addHeadersFromSecret": [{"headerName": "X-API-Key", "valueSecretRef": {"name": "api", "key": "token"}}]});
    let s = spec(v);
    let (ok, reason, message) = verdict(&s, &all_found(), HEADER_FORWARD_VALIDATED);
    assert_eq!((ok, reason), (false, "HeaderSecretNotFound"));
    assert!(message.contains("Secret api not found"), "{message}");
    let wrong_key =
        Found { secret_keys: BTreeMap::from([("api".into(), BTreeSet::from(["other".into()]))]), ..all_found() };
    assert_eq!(verdict(&s, &wrong_key, HEADER_FORWARD_VALIDATED).1, "HeaderSecretKeyNotFound");
    let right =
        Found { secret_keys: BTreeMap::from([("api".into(), BTreeSet::from(["token".into()]))]), ..all_found() };
    assert!(verdict(&s, &right, HEADER_FORWARD_VALIDATED).0);
}

#[test]
fn literal_blocked_hosts_fail_the_remote_url_and_allow_private_lifts_only_private() {
    let cases = [
        ("http://127.0.0.1:8080/mcp", false, Some("loopback")),
        ("http://0x7f.1/mcp", false, Some("loopback")),
        ("http://[::ffff:127.0.0.1]/mcp", true, Some("loopback")),
        ("http://169.254.169.254/latest", true, Some("metadata")),
        ("http://10.0.0.5/mcp", false, Some("private")),
        ("http://10.0.0.5/mcp", true, None),
        ("https://mcp.example.com/mcp", false, None),
    ];
    for (url, allow, blocked) in cases {
        let mut v = seed();
        v["remoteURL"] = json!(url);
        v["allowPrivateEndpoint"] = json!(allow);
        let (ok, reason, message) = verdict(&spec(v), &all_found(), REMOTE_URL_VALIDATED);
        match blocked {
            None => assert!(ok, "{url}: {message}"),
            Some(word) => {
                assert_eq!((ok, reason), (false, "BlockedEndpoint"), "{url}");
                assert!(message.contains(word), "{url}: {message}");
            }
        }
    }
}

#[test]
fn remote_url_wins_over_remote_url_alias() {
    let mut v = seed();
    v["remoteUrl"] = json!("http://127.0.0.1/");
    assert!(verdict(&spec(v.clone()), &all_found(), REMOTE_URL_VALIDATED).0, "remoteURL is the one checked");
    v.as_object_mut().unwrap().remove("remoteURL");
    assert!(!verdict(&spec(v), &all_found(), REMOTE_URL_VALIDATED).0, "remoteUrl alone is checked");
}
