//! `apiary gateway` against the REAL test cluster: the Gateway API objects its tests apply (a
//! GatewayClass and a Gateway as the chart makes them, a server on this host registered through
//! an HTTPRoute) and the gateway itself, started on a free port and answering `/status`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use super::Running;
use super::cluster::{eventually, kubeconfig, kubectl};

/// The GatewayClass the chart makes (cluster-scoped: a test creates it only when absent).
pub const GATEWAY_CLASS: &str = "apiary";
/// The controller name the chart's GatewayClass names.
const CONTROLLER: &str = "apiary.dev/gateway";

/// The GatewayClass [`GATEWAY_CLASS`] as the chart makes it.
pub fn gateway_class() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": CONTROLLER}})
}

/// True when the cluster has no GatewayClass [`GATEWAY_CLASS`] yet.
pub fn gateway_class_absent() -> bool {
    !kubectl(&["get", "gatewayclass", "--ignore-not-found", "-o", "name"], None)
        .lines()
        .any(|l| l == format!("gatewayclass.gateway.networking.k8s.io/{GATEWAY_CLASS}"))
}

/// Gateway `ns/name` of class [`GATEWAY_CLASS`] as the chart makes it: one HTTP listener `mcp`
/// on port 8080 (for `hostname` when given) admitting routes from every namespace.
pub fn gateway(ns: &str, name: &str, hostname: Option<&str>) -> Value {
    let mut listener = json!({"name": "mcp", "port": 8080, "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": "All"}}});
    if let Some(hostname) = hostname {
        listener["hostname"] = json!(hostname);
    }
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [listener]}})
}

/// An MCP server on this host registered with the gateway: an ExternalName Service
/// `<route>-external` to `localhost:port`, HTTPRoute `route` (path `/mcp`) attached to
/// `gateway`, and MCPServerRegistration `name` targeting that route.
pub struct Registration<'a> {
    pub namespace: &'a str,
    /// The MCPServerRegistration's name.
    pub name: &'a str,
    pub route: &'a str,
    /// The server's port on this host.
    pub port: u16,
    /// The parent Gateway: namespace and name.
    pub gateway: (&'a str, &'a str),
    /// The parent listener (`sectionName`), if the route names one.
    pub section: Option<&'a str>,
    /// The route's hostname.
    pub hostname: &'a str,
    /// The prefix field (`prefix` or `toolPrefix`) and its value.
    pub prefix: (&'a str, &'a str),
}

impl Registration<'_> {
    /// The Service, the HTTPRoute and the registration, in that order.
    pub fn docs(&self) -> Vec<Value> {
        let (ns, route, port) = (self.namespace, self.route, self.port);
        let svc = format!("{route}-external");
        let mut parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": self.gateway.1, "namespace": self.gateway.0});
        if let Some(section) = self.section {
            parent["sectionName"] = json!(section);
        }
        vec![
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
                "spec": {"type": "ExternalName", "externalName": "localhost",
                    "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP", "appProtocol": "http"}]}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": route, "namespace": ns},
                "spec": {"parentRefs": [parent], "hostnames": [self.hostname],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                        "backendRefs": [{"group": "", "kind": "Service", "name": svc, "port": port}]}]}}),
            json!({"apiVersion": "mcp.kuadrant.io/v1alpha1", "kind": "MCPServerRegistration",
                "metadata": {"name": self.name, "namespace": ns},
                "spec": {self.prefix.0: self.prefix.1,
                    "targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route}}}),
        ]
    }
}

/// The port of a `http://127.0.0.1:PORT/...` URL (a fixture server's).
pub fn port_of(url: &str) -> u16 {
    url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap()
}

/// A running `apiary gateway`, stopped when dropped.
pub struct Gateway {
    pub process: Running,
    /// Its MCP endpoint (`http://127.0.0.1:PORT/mcp`).
    pub url: String,
    /// Its `/status` endpoint.
    pub status_url: String,
}

impl Gateway {
    /// `apiary gateway` for Gateway `gateway` (`ns/name`) on a free loopback port, with the
    /// test cluster's kubeconfig; returns once its `/status` answers.
    pub async fn start(gateway: &str) -> Gateway {
        Gateway::start_with(gateway, &[], None).await
    }

    /// [`Gateway::start`] with `args` added (e.g. `--issuer-ca PATH`) and, when `log` is given,
    /// its stderr at `RUST_LOG=info` kept in that file.
    pub async fn start_with(gateway: &str, args: &[&OsStr], log: Option<&Path>) -> Gateway {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_apiary"));
        cmd.args(["gateway", "--listen", "127.0.0.1:0", "--kubeconfig", &kubeconfig(), "--gateway", gateway]);
        cmd.args(args);
        let stderr = match log {
            Some(log) => {
                cmd.env("RUST_LOG", "info");
                Stdio::from(std::fs::File::create(log).unwrap())
            }
            None => Stdio::null(),
        };
        let process = super::start_printing_url_logging(cmd, stderr).await;
        let url = process.url.clone();
        let status_url = url.trim_end_matches("/mcp").to_owned() + "/status";
        let gateway = Gateway { process, url, status_url };
        eventually("the gateway's /status", || gateway.status()).await;
        gateway
    }

    /// Its `/status` document, or `None` when it does not answer with one.
    pub async fn status(&self) -> Option<Value> {
        reqwest::get(&self.status_url).await.ok()?.json().await.ok()
    }
}
