//! The protections an MCPServer or MCPRemoteProxy asks for, turned into the RunConfig's
//! `policy`: the OIDC settings of its MCPOIDCConfig, the Cedar document of `authzConfig` (inline
//! or from a ConfigMap) or of its MCPAuthzConfig, the tool filter and overrides of its
//! MCPToolConfig, audit, the upstream credentials of its MCPExternalAuthConfig ([`outgoing`])
//! and the telemetry of its MCPTelemetryConfig ([`telemetry`]). The referenced objects are read by [`fetch`]; turning them into a
//! policy ([`resolve`]) is pure and validates every document as the proxy will, so a reference
//! that cannot be served is a condition on the parent rather than a proxy that crashes or serves
//! open. Secrets never enter the policy: a client secret becomes an environment variable of the
//! runner, read from its Secret by the kubelet.

pub mod fetch;
pub mod outgoing;
pub mod refs;
pub mod telemetry;

use std::collections::BTreeMap;

use apiary_config::{OidcConfig, PolicyConfig, TelemetryConfig, ToolOverride, ToolsConfig};
use apiary_policy::authn::{Authenticator, AuthnOptions};
use apiary_policy::authz::Authorizer;
use apiary_policy::tools::ToolPolicy;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, EnvVarSource, SecretKeySelector};
use serde_json::{Value, json};

pub use fetch::fetch;
pub use refs::{PolicyRefs, Referencing};

use super::workload::sha256_hex;
use crate::crd::authzconfig::MCPAuthzConfig;
use crate::crd::common::{AuthzConfig, AuthzSource, SecretKeyRef};
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::oidcconfig::{MCPOIDCConfig, OidcSource};
use crate::crd::telemetryconfig::MCPTelemetryConfig;
use crate::crd::toolconfig::MCPToolConfig;

/// Environment variable of the runner holding the OIDC client secret (`oidc.clientSecretEnv`).
pub const CLIENT_SECRET_ENV: &str = "TOOLHIVE_OIDC_CLIENT_SECRET";
/// Key of an authorization ConfigMap when `authzConfig.configMap.key` is unset (ToolHive's).
pub const DEFAULT_AUTHZ_KEY: &str = "authz.json";
/// The largest authorization document read from a ConfigMap (a ConfigMap holds 1 MiB at most).
const MAX_AUTHZ_DOCUMENT: usize = 1024 * 1024;

/// The objects a parent references, as read from the API; `None` where the reference is unset
/// or the object does not exist.
#[derive(Clone, Debug, Default)]
pub struct Referenced {
    /// The MCPOIDCConfig of `spec.oidcConfigRef`.
    pub oidc: Option<MCPOIDCConfig>,
    /// The MCPAuthzConfig of `spec.authzConfigRef`.
    pub authz: Option<MCPAuthzConfig>,
    /// The ConfigMap of `spec.authzConfig.configMap`.
    pub authz_config_map: Option<ConfigMap>,
    /// The MCPToolConfig of `spec.toolConfigRef`.
    pub tools: Option<MCPToolConfig>,
    /// The MCPExternalAuthConfig of `spec.externalAuthConfigRef`.
    pub external_auth: Option<MCPExternalAuthConfig>,
    /// The MCPTelemetryConfig of `spec.telemetryConfigRef`.
    pub telemetry: Option<MCPTelemetryConfig>,
}

/// Hashes of the referenced configurations, for `status.*ConfigHash` (as ToolHive reports).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigHashes {
    /// sha256 of the MCPOIDCConfig's spec.
    pub oidc: Option<String>,
    /// sha256 of the authorization document in force (inline, ConfigMap or MCPAuthzConfig).
    pub authz: Option<String>,
    /// sha256 of the MCPToolConfig's spec.
    pub tools: Option<String>,
    /// sha256 of the MCPExternalAuthConfig's spec.
    pub external_auth: Option<String>,
    /// sha256 of the MCPTelemetryConfig's spec.
    pub telemetry: Option<String>,
}

/// The policy of one proxy and what its runner container needs for it.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// `RunConfig.policy`.
    pub policy: PolicyConfig,
    /// `RunConfig.telemetry`, when a telemetry configuration is referenced.
    pub telemetry: Option<TelemetryConfig>,
    /// Port of the proxy pod serving `/metrics`, to expose on the pod and the Service.
    pub metrics_port: Option<i32>,
    /// Environment of the runner container: secrets, as `secretKeyRef`s only.
    pub env: Vec<EnvVar>,
    /// Hashes for the status.
    pub hashes: ConfigHashes,
    /// Parts of referenced objects Apiary does not apply and whose absence opens nothing.
    pub ignored: Vec<&'static str>,
}

/// Why a reference cannot be served. Each message names the spec field and the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The referenced object does not exist.
    #[error("{field}: {kind} {name} not found")]
    Missing {
        /// Spec field holding the reference.
        field: &'static str,
        /// Kind of the missing object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The ConfigMap exists but lacks the key.
    #[error("spec.authzConfig.configMap: ConfigMap {name} has no key {key}")]
    MissingKey {
        /// ConfigMap name.
        name: String,
        /// The key looked for.
        key: String,
    },
    /// The referenced object's content cannot be used.
    #[error("{field}: {kind} {name}: {reason}")]
    Invalid {
        /// Spec field holding the reference (or the inline field).
        field: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// Its name (the parent's for inline settings).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The spec itself is inconsistent (e.g. `authzConfig.type: inline` without `inline`).
    #[error("{field}: {reason}")]
    Spec {
        /// Spec field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The policy asked for by `refs`, built from the objects in `found` and validated as the proxy
/// will validate it. `parent` names the object whose inline settings are checked (in errors).
pub fn resolve(refs: &PolicyRefs<'_>, found: &Referenced, parent: &str) -> Result<Resolved, PolicyError> {
    let mut out = Resolved::default();
    if let Some(r) = refs.oidc_config_ref {
        let (oidc, env, hash) = oidc(r, found.oidc.as_ref())?;
        out.policy.oidc = Some(oidc);
        out.env.extend(env);
        out.hashes.oidc = Some(hash);
    }
    if refs.authz_config.is_some() && refs.authz_config_ref.is_some() {
        return Err(PolicyError::Spec {
            field: "spec.authzConfigRef",
            reason: "set together with spec.authzConfig; set one of them".into(),
        });
    }
    if let Some(a) = refs.authz_config {
        let doc = authz_document(a, found.authz_config_map.as_ref(), parent)?;
        out.hashes.authz = Some(hash_json(&doc));
        out.policy.authz = Some(doc);
    }
    if let Some(r) = refs.authz_config_ref {
        let doc = authz_from_ref(&r.name, found.authz.as_ref())?;
        out.hashes.authz = Some(hash_json(&doc));
        out.policy.authz = Some(doc);
    }
    if let Some(r) = refs.tool_config_ref {
        let (tools, hash, annotations_ignored) = tools(&r.name, found.tools.as_ref())?;
        out.policy.tools = tools;
        out.hashes.tools = Some(hash);
        if annotations_ignored {
            out.ignored.push("spec.toolConfigRef (toolsOverride annotations)");
        }
    }
    if refs.audit {
        // ToolHive's audit document with every default: NDJSON events on the runner's stdout.
        out.policy.audit = Some(json!({}));
    }
    if let Some(r) = refs.external_auth_config_ref {
        let o = outgoing::outgoing(&r.name, found.external_auth.as_ref())?;
        if outgoing::needs_caller_token(&o.config) && out.policy.oidc.is_none() {
            return Err(PolicyError::Spec {
                field: "spec.externalAuthConfigRef",
                reason: format!(
                    "MCPExternalAuthConfig {} exchanges the caller's token, so callers must be authenticated: \
                     set spec.oidcConfigRef",
                    r.name
                ),
            });
        }
        out.policy.outgoing = o.config;
        out.env.extend(o.env);
        out.hashes.external_auth = Some(o.hash);
    }
    if let Some(r) = refs.telemetry_config_ref {
        let t = telemetry::telemetry(r, found.telemetry.as_ref(), parent)?;
        out.telemetry = Some(t.config);
        out.metrics_port = t.metrics_port;
        out.env.extend(t.env);
        out.hashes.telemetry = Some(t.hash);
        out.ignored.extend(t.ignored);
    }
    Ok(out)
}

/// sha256 (hex) of a JSON value's compact text.
fn hash_json(value: &Value) -> String {
    sha256_hex(value.to_string().as_bytes())
}

/// sha256 (hex) of a spec's compact JSON, reported as a config hash.
pub(crate) fn hash_spec<T: serde::Serialize>(spec: &T) -> String {
    sha256_hex(serde_json::to_string(spec).unwrap_or_default().as_bytes())
}

/// The OIDC settings of `oidcConfigRef`, the runner's secret env var, and the config's hash.
fn oidc(
    r: &crate::crd::common::OidcConfigRef,
    found: Option<&MCPOIDCConfig>,
) -> Result<(OidcConfig, Option<EnvVar>, String), PolicyError> {
    const FIELD: &str = "spec.oidcConfigRef";
    const KIND: &str = "MCPOIDCConfig";
    let config = found.ok_or_else(|| PolicyError::Missing { field: FIELD, kind: KIND, name: r.name.clone() })?;
    let invalid = |reason: String| PolicyError::Invalid { field: FIELD, kind: KIND, name: r.name.clone(), reason };
    let inline = match (config.spec.type_, config.spec.inline.as_ref()) {
        (OidcSource::KubernetesServiceAccount, _) => {
            return Err(invalid(
                "type kubernetesServiceAccount is not supported by Apiary yet; use type inline".into(),
            ));
        }
        (OidcSource::Inline, None) => return Err(invalid("type inline without an inline section".into())),
        (OidcSource::Inline, Some(inline)) => inline,
    };
    if inline.client_secret_ref.is_some() && inline.client_id.as_deref().unwrap_or_default().is_empty() {
        return Err(invalid("inline.clientSecretRef is set without inline.clientId".into()));
    }
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let oidc = OidcConfig {
        issuer: inline.issuer.clone(),
        audience: Some(r.audience.clone()),
        jwks_url: nonempty(&inline.jwks_url),
        introspection_url: nonempty(&inline.introspection_url),
        client_id: nonempty(&inline.client_id),
        client_secret: None,
        client_secret_env: inline.client_secret_ref.as_ref().map(|_| CLIENT_SECRET_ENV.to_string()),
        scopes: r.scopes.clone().unwrap_or_default(),
        required_scopes: Vec::new(),
        resource_url: nonempty(&r.resource_url),
        insecure_allow_http: inline.insecure_allow_http.unwrap_or(false),
        jwks_min_refresh_secs: None,
    };
    // The proxy's own check (https unless insecureAllowHTTP, URLs that parse), with a stand-in
    // for the secret, which the operator never reads.
    let mut check = oidc.clone();
    if check.client_secret_env.is_some() {
        check.client_secret = Some("(from the Secret)".into());
    }
    Authenticator::new(&check, AuthnOptions::default()).map_err(|e| invalid(e.to_string()))?;
    let env = inline.client_secret_ref.as_ref().map(|s| secret_env(CLIENT_SECRET_ENV, s));
    Ok((oidc, env, hash_spec(&config.spec)))
}

/// Environment variable `name` of the runner, read by the kubelet from the Secret key `secret`
/// (never optional: a missing Secret keeps the pod from starting rather than starting it open).
fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The cedarv1 document of `authzConfig`: built from `inline`, or read from the ConfigMap.
fn authz_document(a: &AuthzConfig, config_map: Option<&ConfigMap>, parent: &str) -> Result<Value, PolicyError> {
    let mut doc = match a.type_ {
        AuthzSource::Inline => {
            let inline = a.inline.as_ref().ok_or_else(|| PolicyError::Spec {
                field: "spec.authzConfig",
                reason: "type inline without an inline section".into(),
            })?;
            let mut cedar = json!({
                "policies": inline.policies,
                "entities_json": inline.entities_json.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| "[]".into()),
            });
            if let Some(p) = &inline.primary_upstream_provider {
                cedar["primary_upstream_provider"] = json!(p);
            }
            json!({"version": "1.0", "type": "cedarv1", "cedar": cedar})
        }
        AuthzSource::ConfigMap => config_map_document(a, config_map)?,
    };
    // The claim settings of the spec apply to either source.
    if let Some(cedar) = doc.get_mut("cedar").and_then(Value::as_object_mut) {
        for (key, value) in [
            ("group_claim_name", &a.group_claim_name),
            ("role_claim_name", &a.role_claim_name),
            ("group_entity_type", &a.group_entity_type),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                cedar.insert(key.to_string(), json!(v));
            }
        }
    }
    let (kind, name) = match a.type_ {
        AuthzSource::Inline => ("inline policy of", parent.to_string()),
        AuthzSource::ConfigMap => ("ConfigMap", a.config_map.as_ref().map(|c| c.name.clone()).unwrap_or_default()),
    };
    Authorizer::from_value(&doc, "spec.authzConfig").map_err(|e| PolicyError::Invalid {
        field: "spec.authzConfig",
        kind,
        name,
        reason: e.to_string(),
    })?;
    Ok(doc)
}

fn config_map_document(a: &AuthzConfig, found: Option<&ConfigMap>) -> Result<Value, PolicyError> {
    let r = a.config_map.as_ref().ok_or_else(|| PolicyError::Spec {
        field: "spec.authzConfig",
        reason: "type configMap without a configMap section".into(),
    })?;
    let cm = found.ok_or_else(|| PolicyError::Missing {
        field: "spec.authzConfig.configMap",
        kind: "ConfigMap",
        name: r.name.clone(),
    })?;
    let key = r.key.clone().filter(|k| !k.is_empty()).unwrap_or_else(|| DEFAULT_AUTHZ_KEY.to_string());
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .ok_or_else(|| PolicyError::MissingKey { name: r.name.clone(), key: key.clone() })?;
    let invalid = |reason: String| PolicyError::Invalid {
        field: "spec.authzConfig.configMap",
        kind: "ConfigMap",
        name: r.name.clone(),
        reason: format!("key {key}: {reason}"),
    };
    if text.len() > MAX_AUTHZ_DOCUMENT {
        return Err(invalid(format!("the document is larger than {MAX_AUTHZ_DOCUMENT} bytes")));
    }
    parse_document(text).map_err(invalid)
}

/// A JSON document, or YAML when it does not start with `{` (as the proxy reads files).
fn parse_document(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

/// The document of an MCPAuthzConfig: its `config` is either a whole ToolHive document
/// (`{version, type, cedar}`) or the engine's section (`{policies, entities_json, …}`).
fn authz_from_ref(name: &str, found: Option<&MCPAuthzConfig>) -> Result<Value, PolicyError> {
    const FIELD: &str = "spec.authzConfigRef";
    const KIND: &str = "MCPAuthzConfig";
    let config = found.ok_or_else(|| PolicyError::Missing { field: FIELD, kind: KIND, name: name.to_string() })?;
    let spec = &config.spec;
    let doc = if spec.config.get("cedar").is_some() || spec.config.get("version").is_some() {
        let mut doc = spec.config.clone();
        if let Some(obj) = doc.as_object_mut() {
            obj.entry("type").or_insert_with(|| json!(spec.type_));
            obj.entry("version").or_insert_with(|| json!("1.0"));
        }
        doc
    } else {
        json!({"version": "1.0", "type": spec.type_, "cedar": spec.config})
    };
    Authorizer::from_value(&doc, "spec.authzConfigRef").map_err(|e| PolicyError::Invalid {
        field: FIELD,
        kind: KIND,
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(doc)
}

/// The filter and overrides of an MCPToolConfig, its hash, and whether override annotations
/// (which the proxy does not apply) were left out.
fn tools(name: &str, found: Option<&MCPToolConfig>) -> Result<(ToolsConfig, String, bool), PolicyError> {
    const FIELD: &str = "spec.toolConfigRef";
    const KIND: &str = "MCPToolConfig";
    let config = found.ok_or_else(|| PolicyError::Missing { field: FIELD, kind: KIND, name: name.to_string() })?;
    let spec = &config.spec;
    let mut annotations_ignored = false;
    let mut overrides = BTreeMap::new();
    for (tool, o) in spec.tools_override.iter().flatten() {
        annotations_ignored |= o.annotations.is_some();
        let set = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let (new_name, description) = (set(&o.name), set(&o.description));
        if new_name.is_none() && description.is_none() && o.annotations.is_some() {
            // Only annotations: nothing the proxy changes.
            continue;
        }
        overrides.insert(tool.clone(), ToolOverride { name: new_name, description });
    }
    let tools = ToolsConfig { filter: spec.tools_filter.clone().unwrap_or_default(), overrides };
    ToolPolicy::new(&tools).map_err(|e| PolicyError::Invalid {
        field: FIELD,
        kind: KIND,
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok((tools, hash_spec(spec), annotations_ignored))
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod outgoing_tests;
#[cfg(test)]
mod telemetry_tests;
#[cfg(test)]
mod tests;
