//! The desired state of an MCPServer's children, computed from its normalised spec alone (no
//! API calls), so every reconcile sends the complete intent and the builders are unit-tested.
//! Also decides which set fields Apiary does not apply, and holds the proxy at zero replicas
//! when one of them is a protection it cannot give.

use apiary_config::{ProxyMode as RcProxyMode, RunConfig, Source, Transport};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};

use super::apply::{Children, McpAccount};
use super::features::Unapplied;
use super::labels::{config_labels, mcp_service_account_name, proxy_labels, proxy_service_name, runner_name};
use super::policy::{ConfigHashes, PolicyError, PolicyRefs, Referenced, Referencing, Resolved, resolve};
pub use super::workload::sha256_hex;
use super::workload::{Parent, PodLayout, ProxyPod, policy_rule};
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
    /// Image of the VirtualMCPServer pods (`VMCP_IMAGE`); the runner image when unset, since
    /// both are the one Apiary image.
    pub vmcp_image: Option<String>,
}

impl Settings {
    /// The image of the VirtualMCPServer pods.
    pub fn vmcp_image(&self) -> &str {
        self.vmcp_image.as_deref().unwrap_or(&self.runner_image)
    }
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
    /// Set fields Apiary does not apply.
    pub unapplied: Unapplied,
    /// Why a referenced protection cannot be served; the proxy is then held at zero replicas.
    pub refused: Option<PolicyError>,
    /// Hashes of the referenced configurations in force (empty when refused).
    pub hashes: ConfigHashes,
}

impl Desired {
    /// The children as [`apply_all`](super::apply::apply_all) writes them.
    pub fn children(&self) -> Children<'_> {
        Children {
            config_map: &self.config_map,
            deployment: &self.deployment,
            services: vec![&self.proxy_service, &self.alias_service],
            runner: (&self.runner_account, &self.runner_role, &self.runner_binding),
            mcp_account: Some(match &self.mcp_account {
                Some(account) => McpAccount::Apply(account),
                // `spec.serviceAccount` names another account: drop the `<name>-sa` made earlier.
                None => McpAccount::RemoveOwned(mcp_service_account_name(
                    self.deployment.metadata.name.as_deref().unwrap_or_default(),
                )),
            }),
        }
    }
}

/// Computes the children of `server` from its normalised spec and the objects it references
/// (`found`, read by [`fetch`](super::policy::fetch)).
pub fn desired(server: &MCPServer, settings: &Settings, found: &Referenced) -> Result<Desired, DesiredError> {
    let parent = Parent::of(server).map_err(DesiredError::MissingMeta)?;
    let name = parent.name.clone();
    let spec = server.spec.normalize().spec;
    let proxy_port = port("spec.proxyPort", spec.proxy_port)?;
    port("spec.mcpPort", spec.mcp_port)?;
    let mut unapplied = unapplied(&spec);

    let mut run_config = run_config(&name, &spec, settings)?;
    let (Resolved { metrics_port, env: secret_env, hashes, ignored, .. }, refused) =
        apply_policy(&mut run_config, &server.policy_refs(), found, &name);
    unapplied.ignored.extend(ignored);
    let text = run_config.to_json_pretty().map_err(|e| DesiredError::RunConfig(e.to_string()))?;
    let checksum = sha256_hex(text.as_bytes());
    let config_map = parent.config_map(config_labels(&name), text, &checksum);

    // A stdio server has one child process per proxy; more proxies would split its sessions.
    let replicas = match (spec.transport.unwrap_or_default(), spec.replicas) {
        (ServerTransport::Stdio, Some(n)) => Some(n.min(1)),
        (_, r) => r,
    };
    // Zero replicas rather than a proxy that serves without the protection asked for.
    let replicas = if refused.is_some() { Some(0) } else { unapplied.replicas(replicas) };
    let deployment = parent.deployment(ProxyPod {
        labels: proxy_labels(&name),
        runner_image: &settings.runner_image,
        layout: PodLayout::proxy_runner(&name, pod::runner_args(&name, &spec, &parent.owner)),
        kubernetes_runtime: true,
        resources: None,
        service_account: runner_name(&name),
        replicas,
        proxy_port,
        checksum: &checksum,
        env: secret_env,
        metrics_port,
    });

    let service = |service_name| {
        parent.proxy_service(service_name, proxy_labels(&name), proxy_port, metrics_port, spec.session_affinity)
    };
    let (runner_account, runner_role, runner_binding) =
        parent.runner_rbac(&runner_name(&name), &config_labels(&name), runner_rules());
    let mcp_account = match spec.service_account.as_deref() {
        Some(s) if !s.is_empty() => None,
        _ => Some(ServiceAccount {
            metadata: parent.meta(mcp_service_account_name(&name), config_labels(&name)),
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
        unapplied,
        refused,
        hashes,
    })
}

/// Resolves the protection references of a parent and writes the policy and telemetry into its
/// `run_config`; when a reference or the transport refuses, nothing is written. Returns the rest
/// of the resolution (runner env, metrics port, hashes, ignored parts) and why it was refused.
pub fn apply_policy(
    run_config: &mut RunConfig,
    refs: &PolicyRefs<'_>,
    found: &Referenced,
    parent: &str,
) -> (Resolved, Option<PolicyError>) {
    let (resolved, refused) = match resolve(refs, found, parent) {
        Ok(resolved) => (resolved, None),
        Err(e) => (Resolved::default(), Some(e)),
    };
    let refused = refused.or_else(|| transport_refusal(run_config, &resolved));
    let mut resolved = if refused.is_some() { Resolved::default() } else { resolved };
    run_config.policy = std::mem::take(&mut resolved.policy);
    if let Some(t) = resolved.telemetry.take() {
        run_config.telemetry = t;
    }
    (resolved, refused)
}

/// What the proxy refuses to start with on this transport, said on the parent instead of a
/// crash-looping pod: it cannot reshape the lists of an SSE (2024-11-05) upstream, so no
/// authorization document or tool filter there; and a stdio server gets no HTTP requests to
/// carry upstream credentials.
pub fn transport_refusal(run_config: &RunConfig, resolved: &Resolved) -> Option<PolicyError> {
    let shapes_lists = resolved.policy.authz.is_some() || !resolved.policy.tools.is_empty();
    match run_config.effective_transport() {
        Transport::Sse if shapes_lists => Some(PolicyError::Spec {
            field: "spec.transport",
            reason: "authorization and tool filters are not supported yet in front of an SSE (2024-11-05) server; \
                     use streamable-http or stdio"
                .into(),
        }),
        Transport::Stdio if !resolved.policy.outgoing.is_empty() => Some(PolicyError::Spec {
            field: "spec.externalAuthConfigRef",
            reason: "a stdio server is not reached over HTTP, so it has no requests to carry upstream credentials; \
                     remove the reference or use an HTTP transport"
                .into(),
        }),
        _ => None,
    }
}

/// The set fields of `spec` that Apiary does not apply: the protections of
/// [`Protection::support`](super::features::Protection::support), then the MCPServer's own
/// fields that open nothing when ignored.
pub fn unapplied(spec: &MCPServerSpec) -> Unapplied {
    Unapplied::of(
        spec,
        &[
            ("spec.backendReplicas", spec.backend_replicas.is_some()),
            ("spec.resourceOverrides", spec.resource_overrides.is_some()),
            ("spec.sessionStorage", spec.session_storage.is_some()),
        ],
    )
}

fn port(field: &'static str, value: Option<i32>) -> Result<i32, DesiredError> {
    let value = value.unwrap_or(DEFAULT_PORT);
    if (1..=65535).contains(&value) { Ok(value) } else { Err(DesiredError::BadPort { field, value }) }
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

/// Exactly the proxy runner's rules of names.md §3.
fn runner_rules() -> Vec<PolicyRule> {
    let crud = ["get", "list", "watch", "create", "update", "patch", "delete"];
    vec![
        policy_rule("apps", &["statefulsets"], &crud),
        policy_rule("", &["services"], &crud),
        policy_rule("", &["pods"], &["get", "list", "watch"]),
        policy_rule("", &["pods/log"], &["get"]),
        policy_rule("", &["pods/attach"], &["create", "get"]),
        policy_rule("", &["configmaps"], &["get", "list", "watch"]),
    ]
}

pub mod pod;
#[cfg(test)]
mod tests;
