//! MCPAuthzConfig: a shared authorization policy that workloads reference (ToolHive-only).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{ConfigStatus, opaque_object};

/// Desired authorization policy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPAuthzConfig",
    plural = "mcpauthzconfigs",
    singular = "mcpauthzconfig",
    namespaced,
    status = "ConfigStatus",
    shortname = "authzcfg",
    category = "toolhive",
    doc = "An authorization policy that workloads reference.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type=='Valid')].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MCPAuthzConfigSpec {
    /// Policy engine (`cedarv1`, `httpv1`).
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    pub type_: String,
    /// Configuration of the engine; its shape depends on `type`, so it is kept as given.
    #[schemars(schema_with = "opaque_object")]
    pub config: Value,
}
