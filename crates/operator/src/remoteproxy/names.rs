//! Names and labels of the objects the operator creates for an MCPRemoteProxy (names.md §3
//! "Other kinds"), in one place so the builders, the watches, the status and the tests agree.

use std::collections::BTreeMap;

use crate::reconcile::labels::{child_labels, service_url};

/// Value of `app` on every child; the controller's watches select on it, so the MCPServer
/// controller's children never wake this one.
pub const APP: &str = "mcpremoteproxy";

/// Label selector bounding the watches of the children.
pub fn children_selector() -> String {
    format!("app={APP}")
}

/// The proxy Service.
pub fn service_name(name: &str) -> String {
    format!("mcp-{name}-remote-proxy")
}

/// ServiceAccount, Role and RoleBinding of the remote proxy runner.
pub fn runner_name(name: &str) -> String {
    format!("{name}-remote-proxy-runner")
}

/// In-cluster URL of the proxy (no path), as `status.url` reports it.
pub fn proxy_url(name: &str, namespace: &str, proxy_port: i32) -> String {
    service_url(&service_name(name), namespace, proxy_port)
}

/// Labels of the Deployment, its pods and the Service: the pods are proxies like an
/// MCPServer's, so seed 000's NetworkPolicy on `toolhive-proxy` selects them too.
pub fn proxy_labels(name: &str) -> BTreeMap<String, String> {
    child_labels(APP, name, "toolhive-proxy")
}

/// Labels of the ConfigMap and the RBAC objects.
pub fn config_labels(name: &str) -> BTreeMap<String, String> {
    child_labels(APP, name, APP)
}
