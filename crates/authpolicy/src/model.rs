//! Serde types for the `kuadrant.io/v1` AuthPolicy `spec`, read strictly: every struct keeps the
//! keys it does not know in `extra`, and [`AuthPolicySpec::check`] names the first one, so a field
//! Apiary cannot evaluate refuses the policy instead of being silently ignored.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::LoadError;

/// Keys a struct did not declare, kept so that `check` can refuse them by path.
type Extra = Map<String, Value>;

/// A whole AuthPolicy object (`apiVersion`, `kind`, `metadata`, `spec`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthPolicy {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: AuthPolicySpec,
}

/// The part of `metadata` the evaluator uses (where the policy's Secrets live).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthPolicySpec {
    pub target_ref: TargetRef,
    pub rules: Option<Rules>,
    #[serde(default)]
    pub when: Vec<Predicate>,
    pub defaults: Option<Section>,
    pub overrides: Option<Section>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub section_name: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `spec.defaults` / `spec.overrides`: with a single policy on a route both simply apply.
#[derive(Debug, Clone, Deserialize)]
pub struct Section {
    pub rules: Option<Rules>,
    #[serde(default)]
    pub when: Vec<Predicate>,
    pub strategy: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Rules {
    #[serde(default)]
    pub authentication: BTreeMap<String, AuthenticationRule>,
    #[serde(default)]
    pub metadata: BTreeMap<String, MetadataRule>,
    #[serde(default)]
    pub authorization: BTreeMap<String, AuthorizationRule>,
    pub response: Option<Response>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `when` entry. Only the CEL `predicate` form is evaluated; `selector`/`operator`, `any`,
/// `all` and `patternRef` land in `extra` and are refused.
#[derive(Debug, Clone, Deserialize)]
pub struct Predicate {
    pub predicate: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Fields every rule may carry besides its kind.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    #[serde(default)]
    pub when: Vec<Predicate>,
    #[serde(default)]
    pub priority: i64,
    /// Authorino's per-rule metrics switch; no effect on the decision.
    pub metrics: Option<bool>,
    /// Authorino's result cache; accepted, not applied (every request is evaluated afresh).
    pub cache: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthenticationRule {
    pub jwt: Option<Jwt>,
    pub credentials: Option<Credentials>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    pub issuer_url: Option<String>,
    /// Discovery refresh period; the verifier keeps its own JWKS cache.
    pub ttl: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where a credential is read from (authentication) or sent to (metadata).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub authorization_header: Option<Prefix>,
    pub custom_header: Option<Named>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Prefix {
    pub prefix: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    pub name: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetadataRule {
    pub http: Option<HttpMetadata>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMetadata {
    pub url: Option<String>,
    pub url_expression: Option<String>,
    pub method: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<ValueOrExpr>,
    #[serde(default)]
    pub body_parameters: BTreeMap<String, ValueOrExpr>,
    #[serde(default)]
    pub headers: BTreeMap<String, ValueOrExpr>,
    pub shared_secret_ref: Option<SecretRef>,
    pub credentials: Option<Credentials>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A static `value` or a CEL `expression` (GJSON `selector`s are refused).
#[derive(Debug, Clone, Deserialize)]
pub struct ValueOrExpr {
    pub value: Option<Value>,
    pub expression: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRule {
    pub opa: Option<Opa>,
    pub pattern_matching: Option<PatternMatching>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Opa {
    pub rego: Option<String>,
    #[serde(default)]
    pub all_values: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PatternMatching {
    #[serde(default)]
    pub patterns: Vec<Predicate>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Response {
    pub success: Option<Success>,
    pub unauthenticated: Option<DenyWith>,
    pub unauthorized: Option<DenyWith>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Success {
    #[serde(default)]
    pub headers: BTreeMap<String, SuccessHeader>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SuccessHeader {
    pub plain: Option<ValueOrExpr>,
    pub json: Option<JsonProperties>,
    /// The header name, when it differs from the entry's name.
    pub key: Option<String>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonProperties {
    #[serde(default)]
    pub properties: BTreeMap<String, ValueOrExpr>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DenyWith {
    pub code: Option<u16>,
    pub message: Option<ValueOrExpr>,
    #[serde(default)]
    pub headers: BTreeMap<String, ValueOrExpr>,
    pub body: Option<ValueOrExpr>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl AuthPolicy {
    /// Reads an AuthPolicy object (JSON, or YAML already turned into JSON), naming the path of the
    /// first field that does not fit.
    pub fn from_value(value: Value) -> Result<Self, LoadError> {
        let policy: AuthPolicy = serde_path_to_error::deserialize(value)
            .map_err(|e| LoadError::Invalid { path: e.path().to_string(), message: e.inner().to_string() })?;
        if policy.api_version != "kuadrant.io/v1" || policy.kind != "AuthPolicy" {
            return Err(LoadError::Unsupported {
                path: format!("apiVersion {}, kind {}", policy.api_version, policy.kind),
            });
        }
        Ok(policy)
    }
}

/// Refuses the first key of `extra`, if any, as `path.key`.
pub(crate) fn refuse_extra(extra: &Extra, path: &str) -> Result<(), LoadError> {
    match extra.keys().next() {
        Some(key) => Err(LoadError::Unsupported { path: format!("{path}.{key}") }),
        None => Ok(()),
    }
}
