//! MCPOIDCConfig: a shared OIDC provider definition that workloads reference for incoming
//! authentication (ToolHive-only).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CaBundleRef, ConfigStatus, SecretKeyRef};

/// Desired OIDC provider configuration.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPOIDCConfig",
    plural = "mcpoidcconfigs",
    singular = "mcpoidcconfig",
    namespaced,
    status = "ConfigStatus",
    shortname = "mcpoidc",
    category = "toolhive",
    doc = "An OIDC provider that workloads reference for incoming authentication.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type=='Valid')].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'kubernetesServiceAccount' ? has(self.kubernetesServiceAccount) : !has(self.kubernetesServiceAccount)",
     "message": "kubernetesServiceAccount must be set if and only if type is kubernetesServiceAccount"},
    {"rule": "self.type == 'inline' ? has(self.inline) : !has(self.inline)",
     "message": "inline must be set if and only if type is inline"},
]))]
#[serde(rename_all = "camelCase")]
pub struct MCPOIDCConfigSpec {
    /// Where the provider's settings come from.
    #[serde(rename = "type")]
    pub type_: OidcSource,
    /// Kubernetes service-account tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_service_account: Option<KubernetesServiceAccountOidc>,
    /// Any OIDC provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineOidc>,
}

/// Sources of OIDC settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OidcSource {
    /// The cluster's service-account issuer.
    KubernetesServiceAccount,
    /// Settings written in the resource.
    #[default]
    Inline,
}

/// Service-account token validation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesServiceAccountOidc {
    /// Accept only this service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Accept only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Issuer of the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "https://kubernetes.default.svc"))]
    pub issuer: Option<String>,
    /// JWKS endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Token introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// Use the pod's own credentials to fetch the JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cluster_auth: Option<bool>,
}

/// An OIDC provider's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineOidc {
    /// Issuer URL.
    pub issuer: String,
    /// JWKS endpoint (default: discovered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Token introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// Client id used for introspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Secret key holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// CA bundle of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
    /// File holding a token for fetching the JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_auth_token_path: Option<String>,
    /// Allow a JWKS endpoint in a private address range.
    #[serde(rename = "jwksAllowPrivateIP", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub jwks_allow_private_ip: Option<bool>,
    /// Allow a protected-resource URL in a private address range.
    #[serde(rename = "protectedResourceAllowPrivateIP", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub protected_resource_allow_private_ip: Option<bool>,
    /// Allow a plain-HTTP issuer.
    #[serde(rename = "insecureAllowHTTP", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub insecure_allow_http: Option<bool>,
}
