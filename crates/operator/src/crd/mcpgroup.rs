//! MCPGroup: a named set of MCP servers, remote proxies and entries that vMCP aggregates
//! (seed 002).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, conditions_schema};

/// Desired state of a group of MCP backends.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPGroup",
    plural = "mcpgroups",
    singular = "mcpgroup",
    namespaced,
    status = "MCPGroupStatus",
    shortname = "mcpg",
    shortname = "mcpgroup",
    category = "toolhive",
    doc = "A group of MCP backends that a VirtualMCPServer aggregates.",
    printcolumn(name = "Servers", type_ = "integer", json_path = ".status.serverCount"),
    printcolumn(name = "Proxies", type_ = "integer", json_path = ".status.remoteProxyCount"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Checked",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='MCPServersChecked')].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MCPGroupSpec {
    /// What the group is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Observed state of an MCPGroup: its members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPGroupStatus {
    /// Conditions (`MCPServersChecked`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Pending"))]
    pub phase: Option<MCPGroupPhase>,
    /// Names of the MCPServers in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Number of MCPServers in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_count: Option<i32>,
    /// Names of the MCPRemoteProxies in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_proxies: Option<Vec<String>>,
    /// Number of MCPRemoteProxies in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_proxy_count: Option<i32>,
    /// Names of the MCPServerEntries in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<String>>,
    /// Number of MCPServerEntries in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_count: Option<i32>,
}

/// Phases of an MCPGroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MCPGroupPhase {
    /// Members listed.
    Ready,
    /// Not yet reconciled.
    Pending,
    /// Listing members failed.
    Failed,
}
