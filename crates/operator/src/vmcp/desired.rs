//! The desired children of a VirtualMCPServer, computed from its normalised spec and the objects
//! read for it (no API calls), so every reconcile sends the complete intent and the builders are
//! unit-tested: ConfigMap `<name>-vmcp-config` (the vMCP config file with the backends resolved),
//! Deployment `vmcp-<name>`, Service `vmcp-<name>`, ServiceAccount/Role/RoleBinding
//! `<name>-vmcp`.
//!
//! Live membership: the checksum on the pod template covers the whole config EXCEPT the resolved
//! backend list and the per-backend auth blocks, so a member joining or leaving the group only
//! rewrites the ConfigMap, which the running pod re-reads. A backend that brings a new Secret
//! variable or CA bundle mount changes the pod template itself (the kubelet can add neither to a
//! running container), so that one change rolls the pods.

use std::collections::BTreeMap;

use apiary_config::PolicyConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use serde_json::{Value, json};

use super::backends::{self, Backend};
use crate::crd::virtualmcpserver::VirtualMCPServerSpec;
use crate::crd::virtualmcpserver::{IncomingAuthType, OutgoingAuthSource, ServiceType, VirtualMCPServer};
use crate::normalize::Normalize;
use crate::reconcile::apply::Children;
use crate::reconcile::desired::Settings;
use crate::reconcile::features::Unapplied;
use crate::reconcile::labels::{child_labels, service_url};
use crate::reconcile::policy::{ConfigHashes, Referenced, Referencing, resolve};
use crate::reconcile::workload::{Labels, Parent, PodLayout, ProxyPod, policy_rule, sha256_hex};

/// Value of `app` and `app.kubernetes.io/name` on every child (names.md §3).
pub const APP: &str = "virtualmcpserver";
/// Port of the vMCP container and Service.
pub const PORT: i32 = 4483;
/// Name of the vMCP container.
pub const CONTAINER: &str = "vmcp";
/// Key of the config file in ConfigMap `<name>-vmcp-config`.
pub const CONFIG_KEY: &str = "config.yaml";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/vmcp-config";

/// Deployment `vmcp-<name>` (seed 002 types `deployment/vmcp-<NAME>`).
pub fn deployment_name(name: &str) -> String {
    format!("vmcp-{name}")
}

/// Service `vmcp-<name>`.
pub fn service_name(name: &str) -> String {
    format!("vmcp-{name}")
}

/// ConfigMap `<name>-vmcp-config`.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-vmcp-config")
}

/// ServiceAccount, Role and RoleBinding `<name>-vmcp`.
pub fn account_name(name: &str) -> String {
    format!("{name}-vmcp")
}

/// `status.url`: `http://vmcp-<name>.<ns>.svc.cluster.local:4483`.
pub fn url(name: &str, namespace: &str) -> String {
    service_url(&service_name(name), namespace, PORT)
}

/// Labels of every child.
pub fn labels(name: &str) -> Labels {
    child_labels(APP, name, APP)
}

/// Labels selecting the vMCP pods.
pub fn selector(name: &str) -> Labels {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), APP.to_string()),
    ])
}

/// [`selector`] as a label-selector string.
pub fn selector_string(name: &str) -> String {
    selector(name).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Label selector bounding the watches of the children.
pub fn children_selector() -> String {
    format!("app={APP}")
}

/// Why no desired state can be computed; reported as `Ready=False` with reason `InvalidSpec`.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The object lacks a name, namespace or uid (never true for an object read from the API).
    #[error("the VirtualMCPServer has no {0}")]
    MissingMeta(&'static str),
    /// Neither `spec.config.groupRef` nor `spec.groupRef.name` names a group.
    #[error("spec.config.groupRef is not set (nor spec.groupRef.name)")]
    NoGroup,
    /// `oidcConfigRef` with `type: anonymous`: which one was meant is not for Apiary to guess.
    #[error(
        "spec.incomingAuth.oidcConfigRef is set but spec.incomingAuth.type is anonymous; set type oidc or remove it"
    )]
    AnonymousWithOidc,
    /// The config could not be written as YAML.
    #[error("the vMCP config cannot be written: {0}")]
    Config(String),
}

/// Every child of one VirtualMCPServer, and what the status reports about them.
#[derive(Clone, Debug)]
pub struct Desired {
    /// ConfigMap `<name>-vmcp-config`, annotated with the sha256 of its whole text.
    pub config_map: ConfigMap,
    /// The config file as a value (what `config_map` holds, as YAML).
    pub config: Value,
    /// sha256 of the config without its backends: the pod template's checksum.
    pub checksum: String,
    /// Deployment `vmcp-<name>`.
    pub deployment: Deployment,
    /// Service `vmcp-<name>`.
    pub service: Service,
    /// ServiceAccount `<name>-vmcp`.
    pub account: ServiceAccount,
    /// Role `<name>-vmcp`.
    pub role: Role,
    /// RoleBinding `<name>-vmcp`.
    pub binding: RoleBinding,
    /// Set fields Apiary does not apply.
    pub unapplied: Unapplied,
    /// Why the vMCP cannot serve as asked (it is then held at zero replicas), naming the field.
    pub refused: Option<String>,
    /// The group aggregated.
    pub group: String,
    /// Whether the group exists; `None` in inline mode, which does not read it.
    pub group_found: Option<bool>,
    /// Why the backends could not be resolved, when they could not.
    pub backends_refused: Option<String>,
    /// The backends, sorted by name (empty when refused).
    pub backends: Vec<Backend>,
    /// Hashes of the referenced MCPOIDCConfig and authorization document.
    pub hashes: ConfigHashes,
}

impl Desired {
    /// The children as [`apply_all`](crate::reconcile::apply::apply_all) writes them.
    pub fn children(&self) -> Children<'_> {
        Children {
            config_map: &self.config_map,
            deployment: &self.deployment,
            services: vec![&self.service],
            runner: (&self.account, &self.role, &self.binding),
            mcp_account: None,
        }
    }
}

/// Computes the children of `vmcp` from its normalised spec, the objects its incoming auth
/// references (`policy`) and the group with its namespace's members (`found`).
pub fn desired(
    vmcp: &VirtualMCPServer,
    settings: &Settings,
    policy: &Referenced,
    found: &backends::Found,
) -> Result<Desired, DesiredError> {
    let parent = Parent::of(vmcp).map_err(DesiredError::MissingMeta)?;
    let name = parent.name.clone();
    let spec = vmcp.spec.normalize().spec;
    let config = spec.config.clone().unwrap_or_default();
    let group = config.group_ref.clone().filter(|g| !g.is_empty()).ok_or(DesiredError::NoGroup)?;
    let incoming = &spec.incoming_auth;
    if incoming.type_ == IncomingAuthType::Anonymous && incoming.oidc_config_ref.is_some() {
        return Err(DesiredError::AnonymousWithOidc);
    }
    let unapplied = unapplied(&spec);
    let outgoing = spec.outgoing_auth.clone().unwrap_or_default();
    let mode = outgoing.source.unwrap_or_default();

    // Incoming auth through the proxy's own resolver; its messages name the proxy kinds' fields,
    // which sit under `spec.incomingAuth` here.
    let (resolved, mut refused) = match resolve(&vmcp.policy_refs(), policy, &name) {
        Ok(r) => (r, None),
        Err(e) => (Default::default(), Some(e.to_string().replacen("spec.", "spec.incomingAuth.", 1))),
    };
    let group_found = (mode == OutgoingAuthSource::Discovered).then_some(found.group.is_some());
    if group_found == Some(false) {
        refused.get_or_insert_with(|| format!("spec.config.groupRef: MCPGroup {group} not found"));
    }
    let inline: Vec<Value> = config.backends.iter().flatten().filter_map(|b| serde_json::to_value(b).ok()).collect();
    let caller_authenticated = resolved.policy.oidc.is_some();
    let (backends, backends_refused) =
        match backends::resolve(&parent.namespace, &group, &outgoing, &inline, found, caller_authenticated) {
            Ok(b) => (b, None),
            Err(e) => (backends::Backends::default(), Some(e.to_string())),
        };
    if let Some(why) = &backends_refused {
        refused.get_or_insert_with(|| why.clone());
    }

    let mut file = serde_json::to_value(&config).map_err(|e| DesiredError::Config(e.to_string()))?;
    file["name"] = json!(config.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| name.clone()));
    file["groupRef"] = json!(group);
    file["backends"] = backends.list.iter().filter(|b| b.served).map(|b| b.config.clone()).collect();
    file["incomingAuth"] = incoming_block(&resolved.policy);
    let auth: serde_json::Map<String, Value> =
        backends.list.iter().filter_map(|b| Some((b.name.clone(), b.auth.clone()?))).collect();
    let source = match mode {
        OutgoingAuthSource::Discovered => "discovered",
        OutgoingAuthSource::Inline => "inline",
    };
    file["outgoingAuth"] = json!({"source": source});
    if !auth.is_empty() {
        file["outgoingAuth"]["backends"] = Value::Object(auth);
    }
    let text = serde_saphyr::to_string(&file).map_err(|e| DesiredError::Config(e.to_string()))?;
    let checksum = template_checksum(&file);
    let config_map = parent.config_map_at(
        config_map_name(&name),
        CONFIG_KEY,
        labels(&name),
        text.clone(),
        &sha256_hex(text.as_bytes()),
    );

    let mut layout = PodLayout {
        deployment: deployment_name(&name),
        container: CONTAINER.to_string(),
        args: ["vmcp", "serve", "--config", &format!("{CONFIG_DIR}/{CONFIG_KEY}"), "--host", "0.0.0.0", "--port"]
            .into_iter()
            .map(str::to_string)
            .chain([PORT.to_string()])
            .collect(),
        config_map: config_map_name(&name),
        config_dir: CONFIG_DIR.to_string(),
        selector: selector(&name),
        volumes: backends.volumes.clone(),
    };
    let mut env = resolved.env.clone();
    env.extend(backends.env.iter().cloned());
    // The provider's private CA, trusted for discovery, the JWKS and token exchanges.
    if let Some((volume, mount, var)) = super::oidc_ca::trust(policy.oidc.as_ref()) {
        layout.volumes.push((volume, mount));
        env.push(var);
    }
    let deployment = parent.deployment(ProxyPod {
        labels: labels(&name),
        runner_image: settings.vmcp_image(),
        layout,
        kubernetes_runtime: false,
        resources: None,
        service_account: spec.service_account.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| account_name(&name)),
        // Zero replicas rather than a vMCP that serves without what was asked for.
        replicas: if refused.is_some() { Some(0) } else { unapplied.replicas(spec.replicas) },
        proxy_port: PORT,
        checksum: &checksum,
        env,
        metrics_port: None,
    });
    let mut service = parent.service(
        service_name(&name),
        labels(&name),
        selector(&name),
        &[("http", Some(PORT))],
        spec.session_affinity,
    );
    if let Some(s) = service.spec.as_mut() {
        s.type_ = Some(
            match spec.service_type.unwrap_or_default() {
                ServiceType::ClusterIP => "ClusterIP",
                ServiceType::NodePort => "NodePort",
                ServiceType::LoadBalancer => "LoadBalancer",
            }
            .to_string(),
        );
    }
    let (account, role, binding) = parent.runner_rbac(&account_name(&name), &labels(&name), rules(mode));

    Ok(Desired {
        config_map,
        config: file,
        checksum,
        deployment,
        service,
        account,
        role,
        binding,
        unapplied,
        refused,
        group,
        group_found,
        backends_refused,
        backends: backends.list,
        hashes: resolved.hashes,
    })
}

/// sha256 of the config without `backends` and `outgoingAuth.backends`: what the pod template
/// carries, so that membership alone never rolls the pods.
pub fn template_checksum(file: &Value) -> String {
    let mut rest = file.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("backends");
    }
    if let Some(o) = rest.get_mut("outgoingAuth").and_then(Value::as_object_mut) {
        o.remove("backends");
    }
    sha256_hex(rest.to_string().as_bytes())
}

/// The config's `incomingAuth` in ToolHive's vMCP shape: `{type: anonymous}` or
/// `{type: oidc, oidc: {...}}`, plus `authz: {type: cedar, policies, entitiesJson}`.
pub fn incoming_block(policy: &PolicyConfig) -> Value {
    let mut block = json!({"type": "anonymous"});
    if let Some(o) = &policy.oidc {
        let mut oidc = json!({"issuer": o.issuer, "insecureAllowHttp": o.insecure_allow_http});
        for (key, value) in [
            ("audience", &o.audience),
            ("clientId", &o.client_id),
            ("clientSecretEnv", &o.client_secret_env),
            ("resource", &o.resource_url),
            ("jwksUrl", &o.jwks_url),
            ("introspectionUrl", &o.introspection_url),
        ] {
            if let Some(v) = value {
                oidc[key] = json!(v);
            }
        }
        if !o.scopes.is_empty() {
            oidc["scopes"] = json!(o.scopes);
        }
        block = json!({"type": "oidc", "oidc": oidc});
    }
    if let Some(doc) = &policy.authz {
        let cedar = doc.get("cedar").cloned().unwrap_or(Value::Null);
        let mut authz = json!({
            "type": "cedar",
            "policies": cedar.get("policies").cloned().unwrap_or_else(|| json!([])),
            "entitiesJson": cedar.get("entities_json").cloned().unwrap_or_else(|| json!("[]")),
        });
        // The claim settings decide who is in which Cedar group; dropped, a `forbid` on a group
        // would stop matching. Carried under their ToolHive config names.
        for (from, to) in [
            ("group_claim_name", "groupClaimName"),
            ("role_claim_name", "roleClaimName"),
            ("group_entity_type", "groupEntityType"),
            ("primary_upstream_provider", "primaryUpstreamProvider"),
        ] {
            if let Some(v) = cedar.get(from) {
                authz[to] = v.clone();
            }
        }
        block["authz"] = authz;
    }
    block
}

/// The set fields Apiary does not apply. Blocking: an embedded authorization server and rate
/// limits (serving without them opens what they close). Ignored: the rest, whose absence opens
/// nothing.
pub fn unapplied(spec: &VirtualMCPServerSpec) -> Unapplied {
    let c = spec.config.as_ref();
    let set = |f: &dyn Fn(&crate::crd::virtualmcpserver::VmcpConfig) -> bool| c.is_some_and(f);
    let blocking = [
        ("spec.authServerConfig", spec.auth_server_config.is_some()),
        ("spec.config.rateLimiting", set(&|c| c.rate_limiting.is_some())),
    ];
    let ignored = [
        ("spec.config.compositeTools", set(&|c| c.composite_tools.is_some())),
        ("spec.config.compositeToolRefs", set(&|c| c.composite_tool_refs.is_some())),
        ("spec.config.optimizer", set(&|c| c.optimizer.is_some())),
        ("spec.config.codeMode", set(&|c| c.code_mode.is_some())),
        ("spec.config.sessionStorage", set(&|c| c.session_storage.is_some())),
        ("spec.config.passthroughHeaders", set(&|c| c.passthrough_headers.is_some())),
        ("spec.embeddingServerRef", spec.embedding_server_ref.is_some()),
        ("spec.telemetryConfigRef", spec.telemetry_config_ref.is_some()),
        ("spec.sessionStorage", spec.session_storage.is_some()),
        ("spec.passthroughHeaders", spec.passthrough_headers.is_some()),
        ("spec.podTemplateSpec", spec.pod_template_spec.is_some()),
        ("spec.imagePullSecrets", spec.image_pull_secrets.is_some()),
    ];
    let pick = |list: &[(&'static str, bool)]| list.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    Unapplied { blocking: pick(&blocking), ignored: pick(&ignored) }
}

/// The rules of Role `<name>-vmcp`: in discovered mode, read the MCP kinds of the group and the
/// ConfigMaps and Secrets they reference, in the namespace; in inline mode nothing.
pub fn rules(mode: OutgoingAuthSource) -> Vec<PolicyRule> {
    match mode {
        OutgoingAuthSource::Inline => Vec::new(),
        OutgoingAuthSource::Discovered => vec![
            policy_rule(
                "toolhive.stacklok.dev",
                &["mcpservers", "mcpremoteproxies", "mcpserverentries", "mcpgroups", "mcpexternalauthconfigs"],
                &["get", "list", "watch"],
            ),
            policy_rule("", &["configmaps", "secrets"], &["get", "list", "watch"]),
        ],
    }
}

#[cfg(test)]
mod tests;
