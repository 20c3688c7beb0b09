//! The workload the MCPServer, MCPRemoteProxy and VirtualMCPServer reconcilers build: one
//! Deployment whose container reads its configuration from a mounted ConfigMap, the Services in
//! front of it, and its ServiceAccount, Role and RoleBinding. Parameterised by names, labels,
//! arguments ([`PodLayout`]) and rules, so the kinds differ only where their contracts do.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use super::labels::{
    CHECKSUM_ANNOTATION, PROXY_CONTAINER, RUNCONFIG_DIR, RUNCONFIG_KEY, proxy_selector, runconfig_name,
};
use crate::crd::common::SessionAffinity;

/// Name of the container and Service port serving Prometheus `/metrics`.
pub const METRICS_PORT_NAME: &str = "metrics";

/// Labels of one child object.
pub type Labels = BTreeMap<String, String>;

/// The custom resource whose children are built: its name, namespace and the controller owner
/// reference every child carries.
#[derive(Clone, Debug)]
pub struct Parent {
    /// `metadata.name`, also the name of the Deployment.
    pub name: String,
    /// `metadata.namespace`, where every child lives.
    pub namespace: String,
    /// Controller owner reference, with `blockOwnerDeletion` so foreground deletion waits for
    /// the children.
    pub owner: OwnerReference,
}

impl Parent {
    /// The parent view of `object`, or the metadata field it lacks (never missing for an
    /// object read from the API).
    pub fn of<K: Resource<DynamicType = ()>>(object: &K) -> Result<Self, &'static str> {
        let name = object.meta().name.clone().ok_or("name")?;
        let namespace = object.meta().namespace.clone().ok_or("namespace")?;
        let mut owner = object.controller_owner_ref(&()).ok_or("name or uid")?;
        owner.block_owner_deletion = Some(true);
        Ok(Parent { name, namespace, owner })
    }

    /// Metadata of a child named `name`.
    pub fn meta(&self, name: String, labels: Labels) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// ConfigMap `<name>-runconfig` holding the RunConfig `text`, annotated with its `checksum`.
    pub fn config_map(&self, labels: Labels, text: String, checksum: &str) -> ConfigMap {
        self.config_map_at(runconfig_name(&self.name), RUNCONFIG_KEY, labels, text, checksum)
    }

    /// ConfigMap `name` holding `text` under `key`, annotated with its `checksum`.
    pub fn config_map_at(&self, name: String, key: &str, labels: Labels, text: String, checksum: &str) -> ConfigMap {
        let mut metadata = self.meta(name, labels);
        metadata.annotations = Some(checksum_annotation(checksum));
        ConfigMap { metadata, data: Some(BTreeMap::from([(key.to_string(), text)])), ..Default::default() }
    }

    /// A Service named `service_name` sending port `port` to the proxy pods' `http` port, and
    /// `metrics_port` (when set) to their `metrics` port.
    pub fn proxy_service(
        &self,
        service_name: String,
        labels: Labels,
        port: i32,
        metrics_port: Option<i32>,
        affinity: Option<SessionAffinity>,
    ) -> Service {
        let ports = [("http", Some(port)), (METRICS_PORT_NAME, metrics_port)];
        self.service(service_name, labels, proxy_selector(&self.name), &ports, affinity)
    }

    /// A Service named `service_name` sending each `(name, port)` of `ports` that is set to the
    /// container port of that name on the pods matching `selector`.
    pub fn service(
        &self,
        service_name: String,
        labels: Labels,
        selector: Labels,
        ports: &[(&str, Option<i32>)],
        affinity: Option<SessionAffinity>,
    ) -> Service {
        let affinity = match affinity.unwrap_or_default() {
            SessionAffinity::ClientIP => "ClientIP",
            SessionAffinity::None => "None",
        };
        Service {
            metadata: self.meta(service_name, labels),
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(
                    ports
                        .iter()
                        .copied()
                        .filter_map(|(name, port)| {
                            Some(ServicePort {
                                name: Some(name.to_string()),
                                port: port?,
                                protocol: Some("TCP".to_string()),
                                target_port: Some(IntOrString::String(name.to_string())),
                                ..Default::default()
                            })
                        })
                        .collect(),
                ),
                session_affinity: Some(affinity.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// ServiceAccount, Role (with `rules`) and RoleBinding, all named `runner`, for the runner.
    pub fn runner_rbac(
        &self,
        runner: &str,
        labels: &Labels,
        rules: Vec<PolicyRule>,
    ) -> (ServiceAccount, Role, RoleBinding) {
        let account = ServiceAccount { metadata: self.meta(runner.to_string(), labels.clone()), ..Default::default() };
        let role = Role { metadata: self.meta(runner.to_string(), labels.clone()), rules: Some(rules) };
        let binding = RoleBinding {
            metadata: self.meta(runner.to_string(), labels.clone()),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_string(),
                kind: "Role".to_string(),
                name: runner.to_string(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: runner.to_string(),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            }]),
        };
        (account, role, binding)
    }

    /// The Deployment of `pod.layout`: one container reading the mounted configuration.
    pub fn deployment(&self, pod: ProxyPod<'_>) -> Deployment {
        let layout = pod.layout;
        let mut env = vec![EnvVar {
            name: "POD_NAMESPACE".to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }];
        if pod.kubernetes_runtime {
            env.push(EnvVar {
                name: "TOOLHIVE_RUNTIME".to_string(),
                value: Some("kubernetes".to_string()),
                ..Default::default()
            });
        }
        env.push(EnvVar {
            name: "UNSTRUCTURED_LOGS".to_string(),
            value: Some("false".to_string()),
            ..Default::default()
        });
        env.extend(pod.env);
        let (volumes, mounts): (Vec<Volume>, Vec<VolumeMount>) = [(
            Volume {
                name: CONFIG_VOLUME.to_string(),
                config_map: Some(ConfigMapVolumeSource { name: layout.config_map.clone(), ..Default::default() }),
                ..Default::default()
            },
            VolumeMount {
                name: CONFIG_VOLUME.to_string(),
                mount_path: layout.config_dir.clone(),
                read_only: Some(true),
                ..Default::default()
            },
        )]
        .into_iter()
        .chain(layout.volumes)
        .unzip();
        let container = Container {
            name: layout.container.clone(),
            image: Some(pod.runner_image.to_string()),
            args: Some(layout.args),
            env: Some(env),
            ports: Some(
                [("http", Some(pod.proxy_port)), (METRICS_PORT_NAME, pod.metrics_port)]
                    .into_iter()
                    .filter_map(|(name, port)| {
                        Some(ContainerPort {
                            name: Some(name.to_string()),
                            container_port: port?,
                            protocol: Some("TCP".to_string()),
                            ..Default::default()
                        })
                    })
                    .collect(),
            ),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/health".to_string()),
                    port: IntOrString::String("http".to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: pod.resources,
            volume_mounts: Some(mounts),
            ..Default::default()
        };
        // A runner owns its server's StatefulSet and re-applies it; during a rolling update the
        // old and new runner would apply different specs in turn. One runner at a time.
        let strategy = pod
            .kubernetes_runtime
            .then(|| DeploymentStrategy { type_: Some("Recreate".to_string()), ..Default::default() });
        let spec = DeploymentSpec {
            replicas: pod.replicas,
            strategy,
            selector: LabelSelector { match_labels: Some(layout.selector), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod.labels.clone()),
                    annotations: Some(checksum_annotation(pod.checksum)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(pod.service_account),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        };
        Deployment { metadata: self.meta(layout.deployment, pod.labels), spec: Some(spec), ..Default::default() }
    }
}

/// Name of the pod volume holding the configuration ConfigMap.
const CONFIG_VOLUME: &str = "runconfig";

/// The names and arguments of a kind's pod: which Deployment, container, command line,
/// configuration ConfigMap and mount, pod selector, and any more read-only volumes.
#[derive(Clone, Debug)]
pub struct PodLayout {
    /// Name of the Deployment.
    pub deployment: String,
    /// Name of its one container.
    pub container: String,
    /// The container's whole argument list.
    pub args: Vec<String>,
    /// The ConfigMap mounted read-only at `config_dir`.
    pub config_map: String,
    /// Where it is mounted.
    pub config_dir: String,
    /// Labels selecting the pods (the Deployment's selector).
    pub selector: Labels,
    /// More volumes, each with its mount in the container.
    pub volumes: Vec<(Volume, VolumeMount)>,
}

impl PodLayout {
    /// The proxy runner of `name`: Deployment `<name>`, container `toolhive` running
    /// `proxyrunner run --config /etc/runconfig/runconfig.json` then `extra_args`.
    pub fn proxy_runner(name: &str, extra_args: Vec<String>) -> Self {
        let args = ["proxyrunner", "run", "--config"]
            .into_iter()
            .map(str::to_string)
            .chain([format!("{RUNCONFIG_DIR}/{RUNCONFIG_KEY}")])
            .chain(extra_args)
            .collect();
        PodLayout {
            deployment: name.to_string(),
            container: PROXY_CONTAINER.to_string(),
            args,
            config_map: runconfig_name(name),
            config_dir: RUNCONFIG_DIR.to_string(),
            selector: proxy_selector(name),
            volumes: Vec::new(),
        }
    }
}

/// What differs between the pods of the kinds.
#[derive(Clone, Debug)]
pub struct ProxyPod<'a> {
    /// Labels of the Deployment and its pods.
    pub labels: Labels,
    /// Image of the container.
    pub runner_image: &'a str,
    /// Names, arguments and mounts of the pod.
    pub layout: PodLayout,
    /// Whether the runner starts the MCP server itself as Kubernetes workloads
    /// (`TOOLHIVE_RUNTIME=kubernetes`).
    pub kubernetes_runtime: bool,
    /// Resources of the runner container.
    pub resources: Option<ResourceRequirements>,
    /// ServiceAccount of the pods.
    pub service_account: String,
    /// `spec.replicas` of the Deployment.
    pub replicas: Option<i32>,
    /// Port the runner listens on.
    pub proxy_port: i32,
    /// sha256 of the RunConfig, on the pod template so a new config rolls the pods.
    pub checksum: &'a str,
    /// More environment of the runner container (secrets, as `secretKeyRef`s only).
    pub env: Vec<EnvVar>,
    /// Port serving Prometheus `/metrics` (the diagnostics listener), exposed as `metrics`.
    pub metrics_port: Option<i32>,
}

/// One RBAC rule: `verbs` on `resources` of API group `group`.
pub fn policy_rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn checksum_annotation(checksum: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CHECKSUM_ANNOTATION.to_string(), checksum.to_string())])
}
