//! Tests of resolving the protection fields: the policy produced for each field, secrets as
//! environment, and every reference that cannot be served.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use serde_json::{Value, json};

use super::fixtures::{authz, config_map, found, oidc, oidc_inline, spec_fields, tools};
use super::*;
use crate::crd::mcpserver::MCPServer;

/// An MCPServer with the protection fields `fields` (camelCase, as in a manifest).
fn server(fields: Value) -> MCPServer {
    let mut spec = json!({"image": "img"});
    for (k, v) in fields.as_object().unwrap() {
        spec[k] = v.clone();
    }
    MCPServer::new("fetch", serde_json::from_value(spec).unwrap())
}

fn resolved(fields: Value, found: &Referenced) -> Result<Resolved, PolicyError> {
    let s = server(fields);
    resolve(&s.policy_refs(), found, "fetch")
}

#[test]
fn nothing_asked_gives_an_empty_policy() {
    let r = resolved(json!({"audit": {"enabled": false}}), &Referenced::default()).unwrap();
    assert!(r.policy.is_empty() && r.env.is_empty() && r.ignored.is_empty());
    assert_eq!(r.hashes, ConfigHashes::default());
}

#[test]
fn oidc_comes_from_the_mcpoidcconfig_and_the_per_workload_reference() {
    let r = resolved(
        json!({"oidcConfigRef": {"name": "keycloak", "audience": "fetch", "scopes": ["openid", "mcp"],
               "resourceUrl": "https://mcp.example.com/fetch"}}),
        &found(),
    )
    .unwrap();
    let oidc = r.policy.oidc.unwrap();
    assert_eq!(oidc.issuer, "https://keycloak.example.com/realms/mcp");
    assert_eq!(oidc.audience.as_deref(), Some("fetch"));
    assert_eq!(oidc.scopes, ["openid", "mcp"]);
    assert_eq!(oidc.resource_url.as_deref(), Some("https://mcp.example.com/fetch"));
    assert_eq!(oidc.client_id.as_deref(), Some("apiary"));
    assert!(!oidc.insecure_allow_http);
    assert!(r.hashes.oidc.is_some());
}

#[test]
fn the_client_secret_is_an_env_var_from_its_secret_never_a_value() {
    let r = resolved(json!({"oidcConfigRef": {"name": "keycloak", "audience": "fetch"}}), &found()).unwrap();
    let oidc = r.policy.oidc.as_ref().unwrap();
    assert_eq!(oidc.client_secret, None);
    assert_eq!(oidc.client_secret_env.as_deref(), Some(CLIENT_SECRET_ENV));
    assert_eq!(r.env.len(), 1);
    let var = &r.env[0];
    assert_eq!((var.name.as_str(), var.value.as_deref()), (CLIENT_SECRET_ENV, None));
    let key = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("keycloak-client", "secret"));
    // Without a clientSecretRef there is neither a variable nor a name for one.
    let mut inline = oidc_inline();
    inline.as_object_mut().unwrap().remove("clientSecretRef");
    let f = Referenced { oidc: Some(super::fixtures::oidc(inline)), ..Default::default() };
    let r = resolved(json!({"oidcConfigRef": {"name": "keycloak", "audience": "fetch"}}), &f).unwrap();
    assert!(r.env.is_empty() && r.policy.oidc.unwrap().client_secret_env.is_none());
}

#[test]
fn oidc_references_that_cannot_be_served_name_the_reference_and_why() {
    let field = json!({"oidcConfigRef": {"name": "keycloak", "audience": "fetch"}});
    let e = resolved(field.clone(), &Referenced::default()).unwrap_err();
    assert_eq!(e.to_string(), "spec.oidcConfigRef: MCPOIDCConfig keycloak not found");

    let sa = MCPOIDCConfig::new(
        "keycloak",
        serde_json::from_value(json!({"type": "kubernetesServiceAccount", "kubernetesServiceAccount": {}})).unwrap(),
    );
    let e = resolved(field.clone(), &Referenced { oidc: Some(sa), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("kubernetesServiceAccount is not supported"), "{e}");

    let http = json!({"issuer": "http://issuer.test-ns.svc:8080"});
    let e = resolved(field.clone(), &Referenced { oidc: Some(oidc(http.clone())), ..Default::default() }).unwrap_err();
    assert!(e.to_string().starts_with("spec.oidcConfigRef: MCPOIDCConfig keycloak: oidc issuer"), "{e}");
    assert!(e.to_string().contains("must be https"), "{e}");
    let mut allowed = http;
    allowed["insecureAllowHTTP"] = json!(true);
    let r = resolved(field.clone(), &Referenced { oidc: Some(oidc(allowed)), ..Default::default() }).unwrap();
    assert!(r.policy.oidc.unwrap().insecure_allow_http);

    let no_client = json!({"issuer": "https://i.example.com", "clientSecretRef": {"name": "s", "key": "k"}});
    let e = resolved(field, &Referenced { oidc: Some(oidc(no_client)), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("without inline.clientId"), "{e}");
}

#[test]
fn inline_authz_becomes_a_cedarv1_document_with_the_claim_settings() {
    let r = resolved(
        json!({"authzConfig": {"type": "inline", "groupClaimName": "groups",
               "inline": {"policies": ["permit(principal, action, resource);"]}}}),
        &Referenced::default(),
    )
    .unwrap();
    assert_eq!(
        r.policy.authz.unwrap(),
        json!({"version": "1.0", "type": "cedarv1", "cedar": {
            "policies": ["permit(principal, action, resource);"], "entities_json": "[]", "group_claim_name": "groups"}})
    );
    assert!(r.hashes.authz.is_some());
}

#[test]
fn a_policy_cedar_refuses_is_named_with_its_line() {
    let e = resolved(
        json!({"authzConfig": {"type": "inline", "inline": {"policies": [
            "permit(principal, action, resource);",
            "permit(principal, action, resource)\nwhen { principal.x == };"
        ]}}}),
        &Referenced::default(),
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("spec.authzConfig: inline policy of fetch: spec.authzConfig: policy 1, line 2"), "{text}");
}

#[test]
fn authz_from_a_config_map_is_read_from_its_key_json_or_yaml() {
    let field = json!({"authzConfig": {"type": "configMap", "configMap": {"name": "authz"}}});
    let doc = r#"{"version":"1.0","type":"cedarv1","cedar":{"policies":["permit(principal, action, resource);"],"entities_json":"[]"}}"#;
    let f = Referenced { authz_config_map: Some(config_map("authz", &[("authz.json", doc)])), ..Default::default() };
    let r = resolved(field.clone(), &f).unwrap();
    assert_eq!(r.policy.authz.unwrap()["cedar"]["policies"][0], "permit(principal, action, resource);");

    let yaml = "version: \"1.0\"\ntype: cedarv1\ncedar:\n  policies:\n    - \"forbid(principal, action, resource);\"\n";
    let f = Referenced { authz_config_map: Some(config_map("authz", &[("policy.yaml", yaml)])), ..Default::default() };
    let keyed = json!({"authzConfig": {"type": "configMap", "configMap": {"name": "authz", "key": "policy.yaml"}}});
    assert_eq!(resolved(keyed, &f).unwrap().policy.authz.unwrap()["type"], "cedarv1");

    let e = resolved(field.clone(), &Referenced::default()).unwrap_err();
    assert_eq!(e.to_string(), "spec.authzConfig.configMap: ConfigMap authz not found");
    let e = resolved(field.clone(), &f).unwrap_err();
    assert_eq!(e.to_string(), "spec.authzConfig.configMap: ConfigMap authz has no key authz.json");
    let f = Referenced {
        authz_config_map: Some(config_map("authz", &[("authz.json", "{not json")])),
        ..Default::default()
    };
    let e = resolved(field, &f).unwrap_err();
    assert!(e.to_string().starts_with("spec.authzConfig.configMap: ConfigMap authz: key authz.json:"), "{e}");
}

#[test]
fn an_mcpauthzconfig_gives_its_document_in_either_shape() {
    let field = json!({"authzConfigRef": {"name": "policy"}});
    let section = authz(json!({"type": "cedarv1", "config": {"policies": ["permit(principal, action, resource);"]}}));
    let r = resolved(field.clone(), &Referenced { authz: Some(section), ..Default::default() }).unwrap();
    assert_eq!(
        r.policy.authz.unwrap(),
        json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"]}})
    );
    let whole = authz(json!({"type": "cedarv1", "config": {"version": "1.0", "type": "cedarv1",
        "cedar": {"policies": ["permit(principal, action, resource);"]}}}));
    assert!(resolved(field.clone(), &Referenced { authz: Some(whole), ..Default::default() }).is_ok());

    let e = resolved(field.clone(), &Referenced::default()).unwrap_err();
    assert_eq!(e.to_string(), "spec.authzConfigRef: MCPAuthzConfig policy not found");
    let http = authz(json!({"type": "httpv1", "config": {"pdp": {}}}));
    let e = resolved(field.clone(), &Referenced { authz: Some(http), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("not supported yet"), "{e}");
    let empty = authz(json!({"type": "cedarv1", "config": {"policies": []}}));
    let e = resolved(field, &Referenced { authz: Some(empty), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("cedar.policies is empty"), "{e}");
}

#[test]
fn authz_inline_and_by_reference_together_are_refused() {
    let mut fields = json!({"authzConfigRef": {"name": "policy"}});
    fields["authzConfig"] = spec_fields()["authzConfig"].clone();
    let e = resolved(fields, &Referenced::default()).unwrap_err();
    assert!(matches!(e, PolicyError::Spec { field: "spec.authzConfigRef", .. }), "{e}");
}

#[test]
fn a_tool_config_gives_the_filter_and_overrides() {
    let f = Referenced {
        tools: Some(tools(json!({
            "toolsFilter": ["echo", "sum"],
            "toolsOverride": {
                "add": {"name": "sum", "description": "Adds two numbers."},
                "pid": {"annotations": {"readOnlyHint": true}},
            }
        }))),
        ..Default::default()
    };
    let r = resolved(json!({"toolConfigRef": {"name": "tools"}}), &f).unwrap();
    assert_eq!(r.policy.tools.filter, ["echo", "sum"]);
    let add = &r.policy.tools.overrides["add"];
    assert_eq!((add.name.as_deref(), add.description.as_deref()), (Some("sum"), Some("Adds two numbers.")));
    assert!(!r.policy.tools.overrides.contains_key("pid"), "an annotations-only override changes nothing here");
    assert_eq!(r.ignored, ["spec.toolConfigRef (toolsOverride annotations)"]);
    assert!(r.hashes.tools.is_some());

    let e = resolved(json!({"toolConfigRef": {"name": "tools"}}), &Referenced::default()).unwrap_err();
    assert_eq!(e.to_string(), "spec.toolConfigRef: MCPToolConfig tools not found");
    let twice = tools(json!({"toolsOverride": {"a": {"name": "x"}, "b": {"name": "x"}}}));
    let e =
        resolved(json!({"toolConfigRef": {"name": "tools"}}), &Referenced { tools: Some(twice), ..Default::default() })
            .unwrap_err();
    assert!(e.to_string().contains("both renamed to `x`"), "{e}");
}

#[test]
fn audit_on_is_the_default_document_on_stdout() {
    let r = resolved(json!({"audit": {"enabled": true}}), &Referenced::default()).unwrap();
    assert_eq!(r.policy.audit, Some(json!({})));
}

#[test]
fn hashes_follow_the_referenced_content_only() {
    let a = resolved(spec_fields(), &found()).unwrap();
    let b = resolved(spec_fields(), &found()).unwrap();
    assert_eq!(a.hashes, b.hashes);
    assert!(a.hashes.oidc.is_some() && a.hashes.authz.is_some() && a.hashes.tools.is_some());
    let mut changed = found();
    changed.tools = Some(tools(json!({"toolsFilter": ["echo"]})));
    let c = resolved(spec_fields(), &changed).unwrap();
    assert_ne!(c.hashes.tools, a.hashes.tools);
    assert_eq!((c.hashes.oidc, c.hashes.authz), (a.hashes.oidc, a.hashes.authz));
}
