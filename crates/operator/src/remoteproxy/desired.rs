//! The desired state of an MCPRemoteProxy's children, computed from its normalised spec alone
//! (no API calls), so every reconcile sends the complete intent and the builders are
//! unit-tested. Also lists the spec fields Apiary does not apply yet, and holds the proxy at
//! zero replicas when one of them is a protection it cannot give.

use std::collections::BTreeMap;

use apiary_config::{ProxyMode, RunConfig, Source, Transport};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceRequirements, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::names::{config_labels, proxy_labels, runner_name, service_name};
use crate::crd::common::{RemoteTransport, ResourceList};
use crate::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxySpec};
use crate::normalize::{DEFAULT_PORT, Normalize};
use crate::reconcile::apply::Children;
use crate::reconcile::desired::Settings;
use crate::reconcile::desired::apply_policy;
use crate::reconcile::features::Unapplied;
use crate::reconcile::policy::{ConfigHashes, PolicyError, Referenced, Referencing, Resolved};
use crate::reconcile::workload::{Parent, PodLayout, ProxyPod, policy_rule, sha256_hex};

/// Why no desired state can be computed; reported as `Ready=False` with reason `InvalidSpec`.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The object lacks a name, namespace or uid (never true for an object read from the API).
    #[error("the MCPRemoteProxy has no {0}")]
    MissingMeta(&'static str),
    /// Neither `remoteURL` nor `remoteUrl` is set (the schema forbids it; old objects may not).
    #[error("spec.remoteURL is not set")]
    NoRemoteUrl,
    /// A port outside 1..=65535 (the schema forbids it; old stored objects may still hold one).
    #[error("spec.proxyPort {0} is not a port (1-65535)")]
    BadPort(i32),
    /// The RunConfig built from the spec does not validate.
    #[error("the RunConfig built from the spec is invalid: {0}")]
    RunConfig(String),
}

/// Every child of one MCPRemoteProxy, as it should be.
#[derive(Clone, Debug)]
pub struct Desired {
    /// ConfigMap `<name>-runconfig`.
    pub config_map: ConfigMap,
    /// sha256 (hex) of the RunConfig text, also on the pod template.
    pub checksum: String,
    /// Deployment `<name>`.
    pub deployment: Deployment,
    /// Service `mcp-<name>-remote-proxy`.
    pub service: Service,
    /// ServiceAccount `<name>-remote-proxy-runner`.
    pub runner_account: ServiceAccount,
    /// Role `<name>-remote-proxy-runner`.
    pub runner_role: Role,
    /// RoleBinding `<name>-remote-proxy-runner`.
    pub runner_binding: RoleBinding,
    /// `proxyPort` in force.
    pub proxy_port: i32,
    /// Set fields Apiary does not apply.
    pub unapplied: Unapplied,
    /// Why a referenced protection cannot be served; the proxy is then held at zero replicas.
    pub refused: Option<PolicyError>,
    /// Hashes of the referenced configurations in force (empty when refused).
    pub hashes: ConfigHashes,
}

impl Desired {
    /// The children as [`apply_all`](crate::reconcile::apply::apply_all) writes them.
    pub fn children(&self) -> Children<'_> {
        Children {
            config_map: &self.config_map,
            deployment: &self.deployment,
            services: vec![&self.service],
            runner: (&self.runner_account, &self.runner_role, &self.runner_binding),
            mcp_account: None,
        }
    }
}

/// Computes the children of `proxy` from its normalised spec and the objects it references
/// (`found`, read by [`fetch`](crate::reconcile::policy::fetch)).
pub fn desired(proxy: &MCPRemoteProxy, settings: &Settings, found: &Referenced) -> Result<Desired, DesiredError> {
    let parent = Parent::of(proxy).map_err(DesiredError::MissingMeta)?;
    let name = parent.name.clone();
    let spec = proxy.spec.normalize().spec;
    let proxy_port = spec.proxy_port.unwrap_or(DEFAULT_PORT);
    let mut unapplied = unapplied(&spec);

    let mut run_config = run_config(&name, &spec, settings)?;
    let (Resolved { metrics_port, env: secret_env, hashes, ignored, .. }, refused) =
        apply_policy(&mut run_config, &proxy.policy_refs(), found, &name);
    unapplied.ignored.extend(ignored);
    let text = run_config.to_json_pretty().map_err(|e| DesiredError::RunConfig(e.to_string()))?;
    let checksum = sha256_hex(text.as_bytes());
    let config_map = parent.config_map(config_labels(&name), text, &checksum);

    let deployment = parent.deployment(ProxyPod {
        labels: proxy_labels(&name),
        runner_image: &settings.runner_image,
        layout: PodLayout::proxy_runner(&name, Vec::new()),
        kubernetes_runtime: false,
        resources: spec.resources.as_ref().and_then(|r| {
            let (limits, requests) = (quantities(r.limits.as_ref()), quantities(r.requests.as_ref()));
            (limits.is_some() || requests.is_some()).then_some(ResourceRequirements {
                limits,
                requests,
                ..Default::default()
            })
        }),
        service_account: spec.service_account.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| runner_name(&name)),
        // Zero replicas rather than a proxy that serves without the restrictions asked for.
        replicas: if refused.is_some() { Some(0) } else { unapplied.replicas(spec.replicas) },
        proxy_port,
        checksum: &checksum,
        env: secret_env,
        metrics_port,
    });
    let service =
        parent.proxy_service(service_name(&name), proxy_labels(&name), proxy_port, metrics_port, spec.session_affinity);
    let (runner_account, runner_role, runner_binding) =
        parent.runner_rbac(&runner_name(&name), &config_labels(&name), runner_rules());

    Ok(Desired {
        config_map,
        checksum,
        deployment,
        service,
        runner_account,
        runner_role,
        runner_binding,
        proxy_port,
        unapplied,
        refused,
        hashes,
    })
}

/// The set fields of `spec` that Apiary does not apply: the protections of
/// [`Protection::support`](crate::reconcile::features::Protection::support), then the
/// MCPRemoteProxy's own fields that open nothing when ignored.
pub fn unapplied(spec: &MCPRemoteProxySpec) -> Unapplied {
    Unapplied::of(
        spec,
        &[
            ("spec.headerForward", spec.header_forward.is_some()),
            ("spec.podTemplateSpec", spec.pod_template_spec.is_some()),
            ("spec.resourceOverrides", spec.resource_overrides.is_some()),
            ("spec.sessionStorage", spec.session_storage.is_some()),
        ],
    )
}

/// The RunConfig the proxy runner reads: the remote URL, its transport, the listener.
pub fn run_config(name: &str, spec: &MCPRemoteProxySpec, settings: &Settings) -> Result<RunConfig, DesiredError> {
    let url = spec.remote_url.clone().or_else(|| spec.remote_url_alias.clone()).ok_or(DesiredError::NoRemoteUrl)?;
    let proxy_port = spec.proxy_port.unwrap_or(DEFAULT_PORT);
    let port = u16::try_from(proxy_port).ok().filter(|p| *p != 0).ok_or(DesiredError::BadPort(proxy_port))?;
    let (transport, mode) = match spec.transport.unwrap_or_default() {
        RemoteTransport::StreamableHttp => (Transport::StreamableHttp, ProxyMode::StreamableHttp),
        RemoteTransport::Sse => (Transport::Sse, ProxyMode::Sse),
    };
    let mut builder = RunConfig::builder(name, Source::remote(url))
        .transport(transport)
        .proxy_host(settings.proxy_host.clone())
        .proxy_port(port)
        .proxy_mode(mode)
        .trust_proxy_headers(spec.trust_proxy_headers.unwrap_or(false));
    if let Some(prefix) = spec.endpoint_prefix.as_deref().filter(|p| !p.is_empty()) {
        builder = builder.endpoint_prefix(prefix);
    }
    if let Some(group) = spec.group_ref.as_ref().and_then(|g| g.name().ok()) {
        builder = builder.group(group);
    }
    builder.build().map_err(|e| DesiredError::RunConfig(e.to_string()))
}

fn quantities(list: Option<&ResourceList>) -> Option<BTreeMap<String, Quantity>> {
    let list = list?;
    let out: BTreeMap<String, Quantity> = [("cpu", &list.cpu), ("memory", &list.memory)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), Quantity(v.clone()?))))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// Exactly the remote proxy runner's rules (names.md §3): read ConfigMaps and Secrets, for the
/// authentication settings they hold. Nothing else.
pub fn runner_rules() -> Vec<PolicyRule> {
    vec![policy_rule("", &["configmaps", "secrets"], &["get", "list", "watch"])]
}

#[cfg(test)]
mod tests;
