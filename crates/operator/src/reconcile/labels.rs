//! Names and labels of the objects the operator creates for an MCPServer (names.md §3), in one
//! place so the builders, the status and the tests agree; the label and URL shapes are shared
//! with the MCPRemoteProxy's names.

use std::collections::BTreeMap;

/// The one field manager every write of the operator goes through.
pub const FIELD_MANAGER: &str = "apiary-operator";
/// Annotation holding the sha256 of the RunConfig, on the ConfigMap and the proxy pod template.
pub const CHECKSUM_ANNOTATION: &str = "toolhive.stacklok.dev/content-checksum";
/// Key of the RunConfig document inside ConfigMap `<name>-runconfig` (ToolHive's key).
pub const RUNCONFIG_KEY: &str = "runconfig.json";
/// Name of the proxy container in Deployment `<name>`.
pub const PROXY_CONTAINER: &str = "toolhive";
/// Where the RunConfig ConfigMap is mounted in the proxy container.
pub const RUNCONFIG_DIR: &str = "/etc/runconfig";
/// Label selecting every object that belongs to some MCPServer (used to bound the watches).
pub const TOOLHIVE_LABEL: &str = "toolhive";

/// ConfigMap holding the RunConfig.
pub fn runconfig_name(name: &str) -> String {
    format!("{name}-runconfig")
}

/// The proxy Service seeds 000/001 type.
pub fn proxy_service_name(name: &str) -> String {
    format!("mcp-{name}-proxy")
}

/// ServiceAccount, Role and RoleBinding of the proxy runner.
pub fn runner_name(name: &str) -> String {
    format!("{name}-proxy-runner")
}

/// ServiceAccount of the MCP pod when the spec names none.
pub fn mcp_service_account_name(name: &str) -> String {
    format!("{name}-sa")
}

/// In-cluster URL of the proxy (no path), as `status.url` reports it.
pub fn proxy_url(name: &str, namespace: &str, proxy_port: i32) -> String {
    service_url(&proxy_service_name(name), namespace, proxy_port)
}

/// In-cluster URL of Service `service` on `port` (no path).
pub fn service_url(service: &str, namespace: &str, port: i32) -> String {
    format!("http://{service}.{namespace}.svc.cluster.local:{port}")
}

/// Labels every operator object of a custom resource `name` carries: `app` is the kind's app
/// label (`mcpserver`, `mcpremoteproxy`), `app_name` the value of `app.kubernetes.io/name`.
pub fn child_labels(app: &str, name: &str, app_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), app.to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), app_name.to_string()),
        (TOOLHIVE_LABEL.to_string(), "true".to_string()),
        ("toolhive-name".to_string(), name.to_string()),
    ])
}

/// Labels of the proxy Deployment, its pods and the two proxy Services.
pub fn proxy_labels(name: &str) -> BTreeMap<String, String> {
    child_labels("mcpserver", name, "toolhive-proxy")
}

/// Labels of the ConfigMap and the RBAC objects.
pub fn config_labels(name: &str) -> BTreeMap<String, String> {
    child_labels("mcpserver", name, "mcpserver")
}

/// Selector of the proxy pods (Deployment selector and both Services).
pub fn proxy_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), "toolhive-proxy".to_string()),
    ])
}

/// The same selector as a label-selector string for list calls.
pub fn proxy_selector_string(name: &str) -> String {
    proxy_selector(name).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}
