//! MCPServerRegistration (`mcp.kuadrant.io`): registers a server behind an HTTPRoute with the
//! MCP gateway, which shows its tools with a prefix (seed 004). Same schema as Kuadrant's CRD so
//! the two can stand in for each other.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, conditions_schema};

/// Desired registration of an MCP server with the gateway.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mcp.kuadrant.io",
    version = "v1",
    kind = "MCPServerRegistration",
    plural = "mcpserverregistrations",
    singular = "mcpserverregistration",
    namespaced,
    status = "MCPServerRegistrationStatus",
    shortname = "mcpsr",
    doc = "Registers an MCP server behind an HTTPRoute with the MCP gateway.",
    printcolumn(name = "Prefix", type_ = "string", json_path = ".spec.prefix"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.path"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type=='Ready')].status"),
    printcolumn(name = "Tools", type_ = "integer", json_path = ".status.discoveredTools"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerRegistrationSpec {
    /// Prepended literally to every tool name of this server (`kube_` + `namespaces_list`).
    /// Canonical spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Another spelling of `prefix`; `prefix` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_prefix: Option<String>,
    /// The HTTPRoute in front of the server.
    pub target_ref: TargetRef,
    /// Path of the server's MCP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "/mcp"))]
    pub path: Option<String>,
    /// Secret key with a credential the gateway uses to list the server's tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<SecretRefWithDefaultKey>,
    /// `Disabled` removes the server's tools and stops connecting to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Enabled"))]
    pub state: Option<EnabledState>,
    /// Secret key with the PEM CA bundle of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_secret_ref: Option<SecretRefWithDefaultKey>,
    /// Per-user token collection through URL elicitation.
    #[serde(rename = "tokenURLElicitation", default, skip_serializing_if = "Option::is_none")]
    pub token_url_elicitation: Option<TokenUrlElicitation>,
    /// `Enabled` when the server lists different tools per user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_specific_list: Option<EnabledState>,
    /// Categories for tool discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 3))]
    pub category: Option<Vec<String>>,
    /// Free labels for tool discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub tags: Option<Vec<String>>,
    /// A short description of what the server offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub hint: Option<String>,
}

/// The HTTPRoute a registration targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API group of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["gateway.networking.k8s.io"], "default" = "gateway.networking.k8s.io"))]
    pub group: Option<String>,
    /// Kind of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["HTTPRoute"], "default" = "HTTPRoute"))]
    pub kind: Option<String>,
    /// Name of the HTTPRoute.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace of the HTTPRoute (default: the registration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Secret key whose key name has a default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefWithDefaultKey {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret (default `token` for credentials, `ca.crt` for CA bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An on/off state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EnabledState {
    /// On.
    #[default]
    Enabled,
    /// Off.
    Disabled,
}

/// URL elicitation settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenUrlElicitation {
    /// External page users are sent to instead of the gateway's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
}

/// Observed state of a registration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerRegistrationStatus {
    /// Conditions (`Ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of tools the gateway found on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_tools: Option<i32>,
}
