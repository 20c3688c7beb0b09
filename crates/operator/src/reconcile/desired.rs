//! The desired state of an MCPServer's children, computed from its normalised spec alone (no
//! API calls), so every reconcile sends the complete intent and the builders are unit-tested.

use std::collections::BTreeMap;

use apiary_config::{ProxyMode as RcProxyMode, RunConfig, Source, Transport};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use super::labels::{
    CHECKSUM_ANNOTATION, PROXY_CONTAINER, RUNCONFIG_DIR, RUNCONFIG_KEY, config_labels, mcp_service_account_name,
    proxy_labels, proxy_selector, proxy_service_name, runconfig_name, runner_name,
};
use crate::crd::common::SessionAffinity;
use crate::crd::mcpserver::{MCPServer, MCPServerSpec, ProxyMode, ServerTransport};
use crate::normalize::{DEFAULT_PORT, Normalize};

/// Listen address of the proxy inside its pod (`TOOLHIVE_PROXY_HOST`, names.md §7).
pub const DEFAULT_PROXY_HOST: &str = "0.0.0.0";

/// Why no desired state can be computed; reported as `Ready=False` with reason `InvalidSpec`.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The object lacks a name, namespace or uid (never true for an object read from the API).
    #[error("the MCPServer has no {0}")]
    MissingMeta(&'static str),
    /// A port outside 1..=65535 (the schema forbids it; old stored objects may still hold one).
    #[error("{field} {value} is not a port (1-65535)")]
    BadPort {
        /// Field path.
        field: &'static str,
        /// Value found.
        value: i32,
    },
    /// The RunConfig built from the spec does not validate.
    #[error("the RunConfig built from the spec is invalid: {0}")]
    RunConfig(String),
}

/// Settings of the operator process that shape the children.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of the proxy runner (`TOOLHIVE_RUNNER_IMAGE`).
    pub runner_image: String,
    /// Listen address written into the RunConfig (`TOOLHIVE_PROXY_HOST`).
    pub proxy_host: String,
}

/// Every child of one MCPServer, as it should be.
#[derive(Clone, Debug)]
pub struct Desired {
    /// ConfigMap `<name>-runconfig`.
    pub config_map: ConfigMap,
    /// sha256 (hex) of the RunConfig text, also on the pod template.
    pub checksum: String,
    /// Deployment `<name>`.
    pub deployment: Deployment,
    /// Service `mcp-<name>-proxy`.
    pub proxy_service: Service,
    /// Alias Service `<name>`.
    pub alias_service: Service,
    /// ServiceAccount `<name>-proxy-runner`.
    pub runner_account: ServiceAccount,
    /// Role `<name>-proxy-runner`.
    pub runner_role: Role,
    /// RoleBinding `<name>-proxy-runner`.
    pub runner_binding: RoleBinding,
    /// ServiceAccount `<name>-sa`, absent when `spec.serviceAccount` names another.
    pub mcp_account: Option<ServiceAccount>,
    /// `proxyPort` in force.
    pub proxy_port: i32,
}

/// Computes the children of `server` from its normalised spec.
pub fn desired(server: &MCPServer, settings: &Settings) -> Result<Desired, DesiredError> {
    let name = server.metadata.name.clone().ok_or(DesiredError::MissingMeta("name"))?;
    let namespace = server.metadata.namespace.clone().ok_or(DesiredError::MissingMeta("namespace"))?;
    let owner = owner_reference(server)?;
    let spec = server.spec.normalize().spec;
    let proxy_port = port("spec.proxyPort", spec.proxy_port)?;
    port("spec.mcpPort", spec.mcp_port)?;

    let run_config = run_config(&name, &spec, settings)?;
    let text = run_config.to_json_pretty().map_err(|e| DesiredError::RunConfig(e.to_string()))?;
    let checksum = sha256_hex(text.as_bytes());

    let meta = |object_name: String, labels: BTreeMap<String, String>| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };

    let mut cm_meta = meta(runconfig_name(&name), config_labels(&name));
    cm_meta.annotations = Some(BTreeMap::from([(CHECKSUM_ANNOTATION.to_string(), checksum.clone())]));
    let config_map = ConfigMap {
        metadata: cm_meta,
        data: Some(BTreeMap::from([(RUNCONFIG_KEY.to_string(), text)])),
        ..Default::default()
    };

    let deployment = Deployment {
        metadata: meta(name.clone(), proxy_labels(&name)),
        spec: Some(deployment_spec(&name, &spec, settings, proxy_port, &checksum, &owner)),
        ..Default::default()
    };

    let affinity = match spec.session_affinity.unwrap_or_default() {
        SessionAffinity::ClientIP => "ClientIP",
        SessionAffinity::None => "None",
    };
    let service = |service_name: String| Service {
        metadata: meta(service_name, proxy_labels(&name)),
        spec: Some(ServiceSpec {
            selector: Some(proxy_selector(&name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: proxy_port,
                protocol: Some("TCP".to_string()),
                target_port: Some(IntOrString::String("http".to_string())),
                ..Default::default()
            }]),
            session_affinity: Some(affinity.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };

    let runner = runner_name(&name);
    let runner_account = ServiceAccount { metadata: meta(runner.clone(), config_labels(&name)), ..Default::default() };
    let runner_role = Role { metadata: meta(runner.clone(), config_labels(&name)), rules: Some(runner_rules()) };
    let runner_binding = RoleBinding {
        metadata: meta(runner.clone(), config_labels(&name)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: runner.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: runner,
            namespace: Some(namespace.clone()),
            ..Default::default()
        }]),
    };
    let mcp_account = match spec.service_account.as_deref() {
        Some(s) if !s.is_empty() => None,
        _ => Some(ServiceAccount {
            metadata: meta(mcp_service_account_name(&name), config_labels(&name)),
            ..Default::default()
        }),
    };

    Ok(Desired {
        config_map,
        checksum,
        deployment,
        proxy_service: service(proxy_service_name(&name)),
        alias_service: service(name.clone()),
        runner_account,
        runner_role,
        runner_binding,
        mcp_account,
        proxy_port,
    })
}

/// The controller owner reference to `server`, with `blockOwnerDeletion` so foreground
/// deletion waits for the children.
fn owner_reference(server: &MCPServer) -> Result<OwnerReference, DesiredError> {
    let mut owner = server.controller_owner_ref(&()).ok_or(DesiredError::MissingMeta("name or uid"))?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

fn port(field: &'static str, value: Option<i32>) -> Result<i32, DesiredError> {
    let value = value.unwrap_or(DEFAULT_PORT);
    if (1..=65535).contains(&value) { Ok(value) } else { Err(DesiredError::BadPort { field, value }) }
}

/// Lower-case hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The RunConfig the proxy runner reads: image source, transport, ports, args, env.
pub fn run_config(name: &str, spec: &MCPServerSpec, settings: &Settings) -> Result<RunConfig, DesiredError> {
    let transport = match spec.transport.unwrap_or_default() {
        ServerTransport::Stdio => Transport::Stdio,
        ServerTransport::StreamableHttp => Transport::StreamableHttp,
        ServerTransport::Sse => Transport::Sse,
    };
    let proxy_port = port("spec.proxyPort", spec.proxy_port)?;
    let mcp_port = port("spec.mcpPort", spec.mcp_port)?;
    let mut builder = RunConfig::builder(name, Source::image(spec.image.clone()))
        .transport(transport)
        .args(spec.args.clone().unwrap_or_default())
        .proxy_host(settings.proxy_host.clone())
        .proxy_port(
            u16::try_from(proxy_port)
                .map_err(|_| DesiredError::BadPort { field: "spec.proxyPort", value: proxy_port })?,
        )
        .proxy_mode(match spec.proxy_mode.unwrap_or_default() {
            ProxyMode::StreamableHttp => RcProxyMode::StreamableHttp,
            ProxyMode::Sse => RcProxyMode::Sse,
        })
        .trust_proxy_headers(spec.trust_proxy_headers.unwrap_or(false));
    if transport.is_http() {
        // The runner reaches an HTTP server through Service `mcp-<name>` (names.md §3).
        builder = builder.target_host(format!("mcp-{name}")).target_port(
            u16::try_from(mcp_port).map_err(|_| DesiredError::BadPort { field: "spec.mcpPort", value: mcp_port })?,
        );
    }
    if let Some(prefix) = spec.endpoint_prefix.as_deref().filter(|p| !p.is_empty()) {
        builder = builder.endpoint_prefix(prefix);
    }
    if let Some(group) = spec.group_ref.as_ref().and_then(|g| g.name().ok()) {
        builder = builder.group(group);
    }
    for var in spec.env.iter().flatten() {
        builder = builder.env(var.name.clone(), var.value.clone());
    }
    builder.build().map_err(|e| DesiredError::RunConfig(e.to_string()))
}

fn deployment_spec(
    name: &str,
    spec: &MCPServerSpec,
    settings: &Settings,
    proxy_port: i32,
    checksum: &str,
    owner: &OwnerReference,
) -> DeploymentSpec {
    // A stdio server has one child process per proxy; more proxies would split its sessions.
    let replicas = match (spec.transport.unwrap_or_default(), spec.replicas) {
        (ServerTransport::Stdio, Some(n)) => Some(n.min(1)),
        (_, r) => r,
    };
    let container = Container {
        name: PROXY_CONTAINER.to_string(),
        image: Some(settings.runner_image.clone()),
        args: Some(
            ["proxyrunner".to_string(), "run".to_string(), "--config".to_string()]
                .into_iter()
                .chain([format!("{RUNCONFIG_DIR}/{RUNCONFIG_KEY}")])
                .chain(pod::runner_args(name, spec, owner))
                .collect(),
        ),
        env: Some(vec![
            EnvVar {
                name: "POD_NAMESPACE".to_string(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.namespace".to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvVar {
                name: "TOOLHIVE_RUNTIME".to_string(),
                value: Some("kubernetes".to_string()),
                ..Default::default()
            },
            EnvVar { name: "UNSTRUCTURED_LOGS".to_string(), value: Some("false".to_string()), ..Default::default() },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: proxy_port,
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".to_string()),
                port: IntOrString::String("http".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "runconfig".to_string(),
            mount_path: RUNCONFIG_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    DeploymentSpec {
        replicas,
        selector: LabelSelector { match_labels: Some(proxy_selector(name)), ..Default::default() },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(proxy_labels(name)),
                annotations: Some(BTreeMap::from([(CHECKSUM_ANNOTATION.to_string(), checksum.to_string())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(runner_name(name)),
                containers: vec![container],
                volumes: Some(vec![Volume {
                    name: "runconfig".to_string(),
                    config_map: Some(ConfigMapVolumeSource { name: runconfig_name(name), ..Default::default() }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        },
        ..Default::default()
    }
}

/// Exactly the proxy runner's rules of names.md §3.
fn runner_rules() -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(|v| (*v).to_string()).collect(),
        ..Default::default()
    };
    let crud = ["get", "list", "watch", "create", "update", "patch", "delete"];
    vec![
        rule("apps", "statefulsets", &crud),
        rule("", "services", &crud),
        rule("", "pods", &["get", "list", "watch"]),
        rule("", "pods/log", &["get"]),
        rule("", "pods/attach", &["create", "get"]),
        rule("", "configmaps", &["get", "list", "watch"]),
    ]
}

pub mod pod;
#[cfg(test)]
mod tests;
