//! VirtualMCPServer: one MCP endpoint that aggregates the backends of an MCPGroup (seed 002).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    AuthzConfig, Conditions, GroupRef, LocalObjectReference, NameRef, OidcConfigRef, RemoteTransport, SessionAffinity,
    SessionStorage, TelemetryConfigRef, conditions_schema, group_ref_schema, opaque_object, opaque_object_list,
};
use super::toolconfig::ToolOverride;

/// Desired state of a virtual MCP server.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "VirtualMCPServer",
    plural = "virtualmcpservers",
    singular = "virtualmcpserver",
    namespaced,
    status = "VirtualMCPServerStatus",
    shortname = "vmcp",
    shortname = "virtualmcp",
    category = "toolhive",
    doc = "One MCP endpoint aggregating the backends of an MCPGroup.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Backends", type_ = "integer", json_path = ".status.backendCount"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type=='Ready')].status")
)]
// No CEL rule demands `config.groupRef` or `groupRef`: CEL cannot see `groupRef`, a field
// without a type, so the operator checks that one of them names a group.
#[serde(rename_all = "camelCase")]
pub struct VirtualMCPServerSpec {
    /// How clients authenticate to the virtual server.
    pub incoming_auth: IncomingAuth,
    /// How the virtual server authenticates to its backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_auth: Option<OutgoingAuth>,
    /// Request headers passed through to backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough_headers: Option<Vec<String>>,
    /// Type of Service `vmcp-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ClusterIP"))]
    pub service_type: Option<ServiceType>,
    /// Session affinity of Service `vmcp-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ClientIP"))]
    pub session_affinity: Option<SessionAffinity>,
    /// ServiceAccount of the vMCP pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// A PodTemplateSpec merged into the vMCP pod, kept exactly as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub pod_template_spec: Option<Value>,
    /// ToolHive's place for the group: `{name: ...}` (a string is accepted too).
    /// `config.groupRef` is canonical and wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_ref_schema")]
    pub group_ref: Option<GroupRef>,
    /// The aggregation configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<VmcpConfig>,
    /// Telemetry through a shared MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_ref: Option<TelemetryConfigRef>,
    /// Embedding server used by the tool optimizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_server_ref: Option<NameRef>,
    /// An embedded OAuth authorization server, in ToolHive's format; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub auth_server_config: Option<Value>,
    /// vMCP replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Where sessions live when vMCP has several replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<SessionStorage>,
    /// Pull secrets for the vMCP image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

/// Types of the vMCP Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Cluster-internal.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

/// How clients authenticate to the virtual server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'oidc' ? has(self.oidcConfigRef) : true",
     "message": "oidcConfigRef is required when type is oidc"},
    {"rule": "!(has(self.authzConfig) && has(self.authzConfigRef))",
     "message": "authzConfig and authzConfigRef are mutually exclusive"},
]))]
pub struct IncomingAuth {
    /// Authentication kind.
    #[serde(rename = "type")]
    pub type_: IncomingAuthType,
    /// The OIDC provider (type `oidc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_ref: Option<OidcConfigRef>,
    /// Authorization policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config: Option<AuthzConfig>,
    /// Authorization through a shared MCPAuthzConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_ref: Option<NameRef>,
}

/// Kinds of incoming authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncomingAuthType {
    /// No authentication.
    #[default]
    Anonymous,
    /// OIDC bearer tokens.
    Oidc,
}

/// How the virtual server authenticates to its backends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingAuth {
    /// `discovered` reads backends and their auth from the API; `inline` uses only
    /// `config.backends[]` and the settings here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "discovered"))]
    pub source: Option<OutgoingAuthSource>,
    /// Auth for backends without an entry in `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<BackendAuth>,
    /// Backend name → auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<BTreeMap<String, BackendAuth>>,
}

/// Sources of backends and their auth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutgoingAuthSource {
    /// From the API (MCPGroup members).
    #[default]
    Discovered,
    /// From this resource only.
    Inline,
}

/// Auth toward one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendAuth {
    /// `discovered` uses the backend's own reference; `externalAuthConfigRef` names one.
    #[serde(rename = "type")]
    pub type_: BackendAuthType,
    /// The MCPExternalAuthConfig to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
}

/// Kinds of backend auth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackendAuthType {
    /// What the backend resource references.
    #[default]
    #[serde(rename = "discovered")]
    Discovered,
    /// The referenced MCPExternalAuthConfig.
    #[serde(rename = "externalAuthConfigRef")]
    ExternalAuthConfigRef,
}

/// The aggregation configuration of a virtual server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmcpConfig {
    /// Name reported to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Name of the MCPGroup to aggregate. Canonical place; wins over `spec.groupRef.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub group_ref: Option<String>,
    /// Static backends (used with `outgoingAuth.source: inline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<StaticBackend>>,
    /// How backends' capabilities are merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    /// Workflows built from backend tools, in ToolHive's format; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object_list")]
    pub composite_tools: Option<Vec<Value>>,
    /// VirtualMCPCompositeToolDefinitions to include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_tool_refs: Option<Vec<NameRef>>,
    /// Timeouts and failure handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operational: Option<Operational>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Telemetry settings in ToolHive's vMCP format; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub telemetry: Option<Value>,
    /// Audit settings in ToolHive's vMCP format; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub audit: Option<Value>,
    /// Tool search instead of the full tool list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    /// Code mode (tools called from a script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_mode: Option<CodeMode>,
    /// Where sessions live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<SessionStorage>,
    /// Request rate limits in ToolHive's format; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub rate_limiting: Option<Value>,
    /// Request headers passed through to backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough_headers: Option<Vec<String>>,
}

/// A backend given by URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticBackend {
    /// Backend name (tool prefix source).
    pub name: String,
    /// URL of the backend's MCP endpoint.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Transport the backend speaks.
    pub transport: RemoteTransport,
    /// `entry` for a backend that came from an MCPServerEntry.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["entry", ""]))]
    pub type_: Option<String>,
    /// CA bundle file inside the vMCP pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_path: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// How backends' capabilities are merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Aggregation {
    /// What to do when two backends offer the same tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "prefix"))]
    pub conflict_resolution: Option<ConflictResolution>,
    /// Settings of the chosen strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_resolution_config: Option<ConflictResolutionConfig>,
    /// Per-backend tool settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<WorkloadTools>>,
    /// Hide every backend tool (composite tools only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_all_tools: Option<bool>,
    /// Whether tools not named anywhere are shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tool_visibility: Option<ToolVisibility>,
}

/// Tool-name conflict strategies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConflictResolution {
    /// Prefix every tool with its backend (`prefixFormat`).
    #[default]
    Prefix,
    /// The first backend in `priorityOrder` wins.
    Priority,
    /// Conflicts must be resolved by overrides.
    Manual,
}

/// Settings of the conflict strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictResolutionConfig {
    /// Prefix template; `{workload}` is the backend name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "{workload}_"))]
    pub prefix_format: Option<String>,
    /// Backends in priority order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_order: Option<Vec<String>>,
}

/// Tool settings of one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTools {
    /// Backend name.
    pub workload: String,
    /// Filter and overrides from an MCPToolConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_ref: Option<NameRef>,
    /// Only these tools are shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Vec<String>>,
    /// Tool name → changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<BTreeMap<String, ToolOverride>>,
    /// Hide all of this backend's tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_all: Option<bool>,
}

/// Default visibility of tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolVisibility {
    /// Shown unless excluded.
    #[default]
    Allow,
    /// Hidden unless included.
    Deny,
}

/// Timeouts and failure handling (durations such as `30s`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operational {
    /// `debug` for verbose logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["debug"]))]
    pub log_level: Option<String>,
    /// Request timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Health checks and circuit breaking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling: Option<FailureHandling>,
}

const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Request timeouts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Timeout of a backend request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "30s"))]
    pub default: Option<String>,
    /// Backend name → timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_workload: Option<BTreeMap<String, String>>,
}

/// Health checks and circuit breaking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureHandling {
    /// Interval between health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "30s"))]
    pub health_check_interval: Option<String>,
    /// Failed checks before a backend counts as unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 3))]
    pub unhealthy_threshold: Option<i32>,
    /// Timeout of one health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "10s"))]
    pub health_check_timeout: Option<String>,
    /// Interval between status updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "30s"))]
    pub status_reporting_interval: Option<String>,
    /// `fail` or `best_effort` when some backends fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "fail"))]
    pub partial_failure_mode: Option<PartialFailureMode>,
    /// Circuit breaker per backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// Behaviour when some backends fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PartialFailureMode {
    /// The request fails.
    #[default]
    #[serde(rename = "fail")]
    Fail,
    /// Answer with what the healthy backends gave.
    #[serde(rename = "best_effort")]
    BestEffort,
}

/// Circuit breaker settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// On.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enabled: Option<bool>,
    /// Failures that open the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 5))]
    pub failure_threshold: Option<i32>,
    /// How long the circuit stays open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "60s"))]
    pub timeout: Option<String>,
}

/// Tool search settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Optimizer {
    /// URL of the embedding service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_service: Option<String>,
    /// Timeout of an embedding request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "30s"))]
    pub embedding_service_timeout: Option<String>,
    /// `tei` or `openai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["tei", "openai"], "default" = "tei"))]
    pub embedding_provider: Option<String>,
    /// Embedding model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// Headers sent to the embedding service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_headers: Option<BTreeMap<String, String>>,
    /// Tools returned per search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub max_tools_to_return: Option<i32>,
    /// Weight of semantic search, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]*[.])?[0-9]+$"))]
    pub hybrid_search_semantic_ratio: Option<String>,
    /// Largest semantic distance kept, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]*[.])?[0-9]+$"))]
    pub semantic_distance_threshold: Option<String>,
}

/// Code mode settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeMode {
    /// On.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Interpreter steps per script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 100000))]
    pub step_limit: Option<i64>,
    /// Tool calls run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 10))]
    pub parallel_max_concurrency: Option<i32>,
    /// Timeout of one tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), extend("default" = "30s"))]
    pub tool_call_timeout: Option<String>,
}

/// Observed state of a VirtualMCPServer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMCPServerStatus {
    /// Conditions (`Ready`, `BackendsDiscovered`, `GroupRefValidated`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Pending"))]
    pub phase: Option<VirtualMCPServerPhase>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// URL of Service `vmcp-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The backends found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_backends: Option<Vec<DiscoveredBackend>>,
    /// Number of backends found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_count: Option<i32>,
    /// Hash of the referenced MCPAuthzConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_hash: Option<String>,
    /// Hash of the referenced MCPOIDCConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_hash: Option<String>,
    /// Hash of the referenced MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_hash: Option<String>,
}

/// Phases of a VirtualMCPServer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VirtualMCPServerPhase {
    /// Being set up.
    Pending,
    /// Serving every backend.
    Ready,
    /// Serving, some backends unhealthy.
    Degraded,
    /// Not serving.
    Failed,
}

/// One backend as vMCP sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredBackend {
    /// Backend name.
    pub name: String,
    /// URL vMCP reaches it at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Health (`ready`, `degraded`, `unavailable`, `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Outgoing auth kind used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    /// The MCPExternalAuthConfig used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_config_ref: Option<String>,
    /// Time of the last health check (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_check: Option<String>,
    /// Failed checks in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// `closed`, `open` or `half-open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["closed", "open", "half-open"]))]
    pub circuit_breaker_state: Option<String>,
    /// When the circuit last changed state (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_last_changed: Option<String>,
    /// MCP revision the backend negotiated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_revision: Option<String>,
    /// Detail of the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
