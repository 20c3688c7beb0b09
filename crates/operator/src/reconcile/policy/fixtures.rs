//! Referenced objects as a manifest would declare them, for the tests of every module that
//! resolves protections.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::Referenced;
use crate::crd::authzconfig::MCPAuthzConfig;
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::oidcconfig::MCPOIDCConfig;
use crate::crd::telemetryconfig::MCPTelemetryConfig;
use crate::crd::toolconfig::MCPToolConfig;

/// An MCPOIDCConfig `keycloak` of type inline with `inline`.
pub fn oidc(inline: Value) -> MCPOIDCConfig {
    MCPOIDCConfig::new("keycloak", serde_json::from_value(json!({"type": "inline", "inline": inline})).unwrap())
}

/// The inline settings of a provider with a client secret.
pub fn oidc_inline() -> Value {
    json!({
        "issuer": "https://keycloak.example.com/realms/mcp",
        "clientId": "apiary",
        "clientSecretRef": {"name": "keycloak-client", "key": "secret"},
    })
}

/// An MCPToolConfig `tools` with `spec`.
pub fn tools(spec: Value) -> MCPToolConfig {
    MCPToolConfig::new("tools", serde_json::from_value(spec).unwrap())
}

/// An MCPAuthzConfig `policy` with `spec`.
pub fn authz(spec: Value) -> MCPAuthzConfig {
    MCPAuthzConfig::new("policy", serde_json::from_value(spec).unwrap())
}

/// An MCPExternalAuthConfig `upstream` with `spec`.
pub fn external_auth(spec: Value) -> MCPExternalAuthConfig {
    MCPExternalAuthConfig::new("upstream", serde_json::from_value(spec).unwrap())
}

/// An MCPTelemetryConfig `otel` with `spec`.
pub fn telemetry(spec: Value) -> MCPTelemetryConfig {
    MCPTelemetryConfig::new("otel", serde_json::from_value(spec).unwrap())
}

/// A ConfigMap `name` holding `data`.
pub fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect::<BTreeMap<_, _>>()),
        ..Default::default()
    }
}

/// The protection fields of a spec referencing every fixture, plus inline authz and audit.
pub fn spec_fields() -> Value {
    json!({
        "oidcConfigRef": {"name": "keycloak", "audience": "fetch", "resourceUrl": "https://mcp.example.com/fetch"},
        "authzConfig": {"type": "inline", "inline": {"policies": [
            "permit(principal, action == Action::\"call_tool\", resource == Tool::\"echo\");"
        ]}},
        "toolConfigRef": {"name": "tools"},
        "audit": {"enabled": true},
    })
}

/// Every object [`spec_fields`] references.
pub fn found() -> Referenced {
    Referenced {
        oidc: Some(oidc(oidc_inline())),
        tools: Some(tools(json!({"toolsFilter": ["echo", "add"], "toolsOverride": {"add": {"description": "Adds."}}}))),
        ..Default::default()
    }
}
