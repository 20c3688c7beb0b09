//! MCPTelemetryConfig: shared OpenTelemetry and Prometheus settings that workloads reference
//! (ToolHive-only).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CaBundleRef, ConfigStatus, SecretKeyRef};

/// Desired telemetry settings.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPTelemetryConfig",
    plural = "mcptelemetryconfigs",
    singular = "mcptelemetryconfig",
    namespaced,
    status = "ConfigStatus",
    shortname = "mcpotel",
    category = "toolhive",
    doc = "OpenTelemetry and Prometheus settings that workloads reference.",
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.openTelemetry.endpoint"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type=='Valid')].status"),
    printcolumn(name = "Tracing", type_ = "boolean", json_path = ".spec.openTelemetry.tracing.enabled"),
    printcolumn(name = "Metrics", type_ = "boolean", json_path = ".spec.openTelemetry.metrics.enabled"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MCPTelemetryConfigSpec {
    /// OpenTelemetry export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<OpenTelemetry>,
    /// Prometheus scraping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<Toggle>,
}

/// OpenTelemetry export settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.headers) || !has(self.sensitiveHeaders) || self.sensitiveHeaders.all(sh, !(sh.name in self.headers))",
     "message": "a header name cannot appear in both headers and sensitiveHeaders"},
]))]
pub struct OpenTelemetry {
    /// Export at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enabled: Option<bool>,
    /// OTLP endpoint (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Plain-text OTLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub insecure: Option<bool>,
    /// Headers sent with every export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Headers whose values come from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_headers: Option<Vec<SensitiveHeader>>,
    /// Extra resource attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<BTreeMap<String, String>>,
    /// Metrics export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Toggle>,
    /// Trace export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// Also emit ToolHive's older attribute names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub use_legacy_attributes: Option<bool>,
    /// CA bundle of the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
}

/// A header whose value comes from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensitiveHeader {
    /// Header name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Secret key holding the value.
    pub secret_key_ref: SecretKeyRef,
}

/// An on/off switch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Toggle {
    /// On.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enabled: Option<bool>,
}

/// Trace export settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tracing {
    /// On.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enabled: Option<bool>,
    /// Fraction of traces sampled, as a decimal string (`0.05`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0(\.\d+)?|1(\.0+)?)$"), extend("default" = "0.05"))]
    pub sampling_rate: Option<String>,
}
