//! MCPRemoteProxy: Apiary's proxy in front of a remote MCP server (named in seed 002).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    AuditConfig, AuthServerRef, AuthzConfig, Conditions, GroupRef, HeaderForward, NameRef, OidcConfigRef,
    RemoteTransport, ResourceOverrides, ResourceRequirements, SessionAffinity, SessionStorage, TelemetryConfigRef,
    conditions_schema, group_ref_schema, opaque_object,
};

/// Desired state of a proxy in front of a remote MCP server.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPRemoteProxy",
    plural = "mcpremoteproxies",
    singular = "mcpremoteproxy",
    namespaced,
    status = "MCPRemoteProxyStatus",
    shortname = "rp",
    shortname = "mcprp",
    category = "toolhive",
    doc = "Apiary's proxy in front of a remote MCP server.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Remote URL", type_ = "string", json_path = ".spec.remoteURL"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type=='Ready')].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.remoteURL) || has(self.remoteUrl)", "message": "remoteURL is required"},
    {"rule": "!(has(self.authzConfig) && has(self.authzConfigRef))",
     "message": "authzConfig and authzConfigRef are mutually exclusive"},
]))]
#[serde(rename_all = "camelCase")]
pub struct MCPRemoteProxySpec {
    /// URL of the remote MCP server. Canonical spelling.
    #[serde(rename = "remoteURL", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub remote_url: Option<String>,
    /// ToolHive's spelling of `remoteURL`; `remoteURL` wins when both are set.
    #[serde(rename = "remoteUrl", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub remote_url_alias: Option<String>,
    /// Allow a remote URL in a private address range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub allow_private_endpoint: Option<bool>,
    /// Port of the proxy and of Service `mcp-<name>-remote-proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("default" = 8080))]
    pub proxy_port: Option<i32>,
    /// Transport the remote server speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "streamable-http"))]
    pub transport: Option<RemoteTransport>,
    /// Incoming authentication through a shared MCPOIDCConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_ref: Option<OidcConfigRef>,
    /// Outgoing authentication through an MCPExternalAuthConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
    /// Embedded authorization server for incoming requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_server_ref: Option<AuthServerRef>,
    /// Headers added to requests to the remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_forward: Option<HeaderForward>,
    /// Authorization policy of this proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config: Option<AuthzConfig>,
    /// Authorization through a shared MCPAuthzConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_ref: Option<NameRef>,
    /// Audit logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
    /// Tool filter and overrides from an MCPToolConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_ref: Option<NameRef>,
    /// Telemetry through a shared MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_ref: Option<TelemetryConfigRef>,
    /// Resources of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// ServiceAccount of the proxy pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// A PodTemplateSpec merged into the proxy pod, kept exactly as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub pod_template_spec: Option<Value>,
    /// Honour `X-Forwarded-*` headers from the ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub trust_proxy_headers: Option<bool>,
    /// Path prefix the ingress adds in front of the proxy's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_prefix: Option<String>,
    /// Labels, annotations and more for the objects the operator creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_overrides: Option<ResourceOverrides>,
    /// The MCPGroup this proxy belongs to: a string (canonical) or `{name: ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_ref_schema")]
    pub group_ref: Option<GroupRef>,
    /// Session affinity of the proxy Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ClientIP"))]
    pub session_affinity: Option<SessionAffinity>,
    /// Proxy replicas; unset leaves scaling to an autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Where sessions live when the proxy has several replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<SessionStorage>,
}

/// Observed state of an MCPRemoteProxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPRemoteProxyStatus {
    /// Conditions (`Ready`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MCPRemoteProxyPhase>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// URL of the proxy inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// URL of the proxy from outside the cluster, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// Hash of the referenced MCPToolConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_hash: Option<String>,
    /// Hash of the referenced MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_hash: Option<String>,
    /// Hash of the referenced MCPExternalAuthConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_hash: Option<String>,
    /// Hash of the referenced authorization server configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_server_config_hash: Option<String>,
    /// Hash of the referenced MCPAuthzConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_hash: Option<String>,
    /// Hash of the referenced MCPOIDCConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_hash: Option<String>,
}

/// Phases of an MCPRemoteProxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MCPRemoteProxyPhase {
    /// Being set up.
    Pending,
    /// Serving.
    Ready,
    /// Setup failed.
    Failed,
    /// Being deleted.
    Terminating,
}
