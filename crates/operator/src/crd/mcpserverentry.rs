//! MCPServerEntry: a catalog entry for a remote MCP server that vMCP discovers through its
//! MCPGroup; it creates nothing (seed 002).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CaBundleRef, Conditions, GroupRef, HeaderForward, NameRef, RemoteTransport, conditions_schema};

/// Desired state of a remote MCP server entry.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPServerEntry",
    plural = "mcpserverentries",
    singular = "mcpserverentry",
    namespaced,
    status = "MCPServerEntryStatus",
    shortname = "mcpentry",
    category = "toolhive",
    doc = "A remote MCP server that vMCP discovers through its MCPGroup; creates no workload.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Transport", type_ = "string", json_path = ".spec.transport"),
    printcolumn(name = "Remote URL", type_ = "string", json_path = ".spec.remoteURL"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.groupRef"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.remoteURL) || has(self.remoteUrl)", "message": "remoteURL is required"},
]))]
#[serde(rename_all = "camelCase")]
pub struct MCPServerEntrySpec {
    /// URL of the remote MCP server. Canonical spelling.
    #[serde(rename = "remoteURL", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub remote_url: Option<String>,
    /// ToolHive's spelling of `remoteURL`; `remoteURL` wins when both are set.
    #[serde(rename = "remoteUrl", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub remote_url_alias: Option<String>,
    /// Transport the remote server speaks.
    pub transport: RemoteTransport,
    /// The MCPGroup this entry belongs to: a string (canonical) or `{name: ...}`.
    pub group_ref: GroupRef,
    /// Outgoing authentication through an MCPExternalAuthConfig in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
    /// Headers added to requests to the remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_forward: Option<HeaderForward>,
    /// CA bundle that signs the remote server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
    /// Allow a remote URL in a private address range (loopback, link-local and cloud metadata
    /// addresses stay blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub allow_private_endpoint: Option<bool>,
}

/// Observed state of an MCPServerEntry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerEntryStatus {
    /// Conditions (`Valid`, `GroupRefValidated`, `ExternalAuthConfigValidated`,
    /// `CABundleRefValidated`, `RemoteURLValidated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Validation phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Pending"))]
    pub phase: Option<MCPServerEntryPhase>,
}

/// Phases of an MCPServerEntry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MCPServerEntryPhase {
    /// Every check passed; the entry is usable.
    Valid,
    /// Not yet reconciled.
    Pending,
    /// A reference is missing or the URL is refused.
    Failed,
}
