//! MCPServer: one MCP server run in the cluster behind Apiary's proxy (seeds 000, 001).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    AuditConfig, AuthServerRef, AuthzConfig, Conditions, EnvVar, GroupRef, NameRef, OidcConfigRef, ResourceOverrides,
    ResourceRequirements, SessionAffinity, SessionStorage, TelemetryConfigRef, conditions_schema, group_ref_schema,
    opaque_object,
};

/// Desired state of an MCP server and its proxy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPServer",
    plural = "mcpservers",
    singular = "mcpserver",
    namespaced,
    status = "MCPServerStatus",
    shortname = "mcpserver",
    shortname = "mcpservers",
    category = "toolhive",
    doc = "An MCP server run in the cluster behind Apiary's proxy.",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status",
        priority = 1
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.readyReplicas", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerSpec {
    /// Container image of the MCP server.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Transport the server speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "stdio"))]
    pub transport: Option<ServerTransport>,
    /// Transport the proxy reports to clients for a stdio server (both are always served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "streamable-http"))]
    pub proxy_mode: Option<ProxyMode>,
    /// Port of the proxy and of Service `mcp-<name>-proxy`. Canonical; default 8080, applied by
    /// the operator (not the schema) so that the older `port` still counts when given alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub proxy_port: Option<i32>,
    /// Older name of `proxyPort`; `proxyPort` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Port the server listens on (HTTP transports). Canonical; default 8080, applied by the
    /// operator so that the older `targetPort` still counts when given alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub mcp_port: Option<i32>,
    /// Older name of `mcpPort`; `mcpPort` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<i32>,
    /// Arguments appended to the image's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables of the MCP container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Host paths mounted into the MCP container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<HostVolume>>,
    /// Resources of the MCP container (`mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Secrets exposed to the MCP container as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretEnv>>,
    /// ServiceAccount of the MCP pod (default: `<name>-sa`, created by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// What the server may read, write and reach. Absent means builtin `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<PermissionProfileRef>,
    /// A PodTemplateSpec merged into the MCP server's pod, kept exactly as given. Container
    /// `mcp` is the MCP server; other containers are sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub pod_template_spec: Option<Value>,
    /// Labels, annotations and more for the objects the operator creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_overrides: Option<ResourceOverrides>,
    /// Incoming authentication through a shared MCPOIDCConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_ref: Option<OidcConfigRef>,
    /// Authorization policy of this server.
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
    /// Outgoing authentication through an MCPExternalAuthConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
    /// Webhooks run on each request (ToolHive's MCPWebhookConfig).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_config_ref: Option<NameRef>,
    /// Embedded authorization server for incoming requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_server_ref: Option<AuthServerRef>,
    /// Telemetry through a shared MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_ref: Option<TelemetryConfigRef>,
    /// Honour `X-Forwarded-*` headers from the ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub trust_proxy_headers: Option<bool>,
    /// Path prefix the ingress adds in front of the proxy's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_prefix: Option<String>,
    /// The MCPGroup this server belongs to: a string (canonical) or `{name: ...}`.
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
    /// MCP server (backend) replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backend_replicas: Option<i32>,
    /// Where sessions live when the proxy has several replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<SessionStorage>,
    /// Request rate limits, in ToolHive's format (`shared`, `perUser`, `tools[]`); interpreted
    /// by the proxy, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub rate_limiting: Option<Value>,
}

/// Transports an MCP server can speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServerTransport {
    /// Standard input and output.
    #[default]
    #[serde(rename = "stdio")]
    Stdio,
    /// Streamable HTTP.
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// Server-Sent Events (2024-11-05).
    #[serde(rename = "sse")]
    Sse,
}

/// Transport the proxy reports for a stdio server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProxyMode {
    /// `/sse` + `/messages`.
    #[serde(rename = "sse")]
    Sse,
    /// `/mcp`.
    #[default]
    #[serde(rename = "streamable-http")]
    StreamableHttp,
}

/// A host path mounted into the MCP container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostVolume {
    /// Volume name.
    pub name: String,
    /// Path on the node.
    pub host_path: String,
    /// Path in the container.
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub read_only: Option<bool>,
}

/// A Secret key exposed to the MCP container as an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnv {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
    /// Name of the environment variable; defaults to `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_env_name: Option<String>,
}

/// A permission profile: builtin (`none`, `network`) or a key of a ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionProfileRef {
    /// Where the profile comes from. `configmap` is canonical; `configMap` is accepted.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "builtin"))]
    pub type_: Option<PermissionProfileType>,
    /// Builtin profile name (`none`, `network`) or the ConfigMap's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Data key of the ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Sources of a permission profile. Both spellings of the ConfigMap source are kept as
/// written so that re-serialising changes nothing; normalisation maps them to one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PermissionProfileType {
    /// A profile built into Apiary.
    #[default]
    #[serde(rename = "builtin")]
    Builtin,
    /// A ConfigMap key (canonical spelling).
    #[serde(rename = "configmap")]
    Configmap,
    /// A ConfigMap key (ToolHive's other spelling).
    #[serde(rename = "configMap")]
    ConfigMapCamel,
}

/// Observed state of an MCPServer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerStatus {
    /// Conditions (`Ready`, `GroupRefValidated`, `PodTemplateValid`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MCPServerPhase>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// URL of the proxy inside the cluster (no path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Ready proxy replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Hash of the referenced MCPToolConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_hash: Option<String>,
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
    /// Hash of the referenced MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_hash: Option<String>,
    /// Hash of the referenced webhook configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_config_hash: Option<String>,
}

/// Phases of an MCPServer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MCPServerPhase {
    /// Being set up.
    Pending,
    /// The proxy answers and the server pod is ready.
    Running,
    /// Setup failed; see `message` and the conditions.
    Failed,
    /// Being deleted.
    Terminating,
    /// Scaled to zero.
    Stopped,
}
