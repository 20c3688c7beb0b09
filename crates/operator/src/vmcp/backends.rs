//! The backends of a VirtualMCPServer, resolved by the operator so the vMCP pod needs no API
//! access to aggregate them: in discovered mode every MCPServer, MCPRemoteProxy and *Valid*
//! MCPServerEntry of the group (sorted by name), in inline mode `spec.config.backends` only.
//! Each backend becomes an element of the config's `backends[]`, an optional outgoing-auth block
//! (ToolHive's `BackendAuthStrategy` shape), and what the pod needs for it: Secret-backed
//! environment variables (never values) and CA bundle files mounted from ConfigMaps. Pure.

use std::collections::BTreeMap;

use apiary_config::{OutgoingConfig, SubjectTokenType};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, Volume, VolumeMount,
};
use serde_json::{Value, json};

use crate::crd::common::{GroupRef, RemoteTransport};
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::mcpgroup::MCPGroup;
use crate::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyPhase};
use crate::crd::mcpserver::{MCPServer, MCPServerPhase, ProxyMode};
use crate::crd::mcpserverentry::{MCPServerEntry, MCPServerEntryPhase};
use crate::crd::virtualmcpserver::{BackendAuth, BackendAuthType, OutgoingAuth, OutgoingAuthSource};
use crate::normalize::{DEFAULT_PORT, Normalize};
use crate::reconcile::labels::{proxy_service_name, service_url};
use crate::reconcile::policy::outgoing::{self, needs_caller_token};
use crate::reconcile::workload::sha256_hex;
use crate::remoteproxy::names::service_name as remote_service_name;

/// Where the CA bundle of entry `<name>` is mounted: `<CA_DIR>/<name>/<key>`.
pub const CA_DIR: &str = "/etc/vmcp-ca";

/// Backend status values of `status.discoveredBackends[].status`.
pub const READY: &str = "ready";
/// The member exists but says it cannot serve.
pub const UNAVAILABLE: &str = "unavailable";
/// The member has not reported yet (or the backend is inline, with no object to ask).
pub const UNKNOWN: &str = "unknown";

/// The group and the objects of its namespace, as read from the API.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The MCPGroup named by the VirtualMCPServer (`None`: not found).
    pub group: Option<MCPGroup>,
    /// Every MCPServer of the namespace (members are picked by their `groupRef`).
    pub servers: Vec<MCPServer>,
    /// Every MCPRemoteProxy of the namespace.
    pub proxies: Vec<MCPRemoteProxy>,
    /// Every MCPServerEntry of the namespace.
    pub entries: Vec<MCPServerEntry>,
    /// The MCPExternalAuthConfigs of the namespace, by name.
    pub auth_configs: BTreeMap<String, MCPExternalAuthConfig>,
}

/// One backend as the vMCP is told about it and as the status reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    /// Backend name (the member's name; the tool prefix source).
    pub name: String,
    /// Kind of the member (`MCPServer`, `MCPRemoteProxy`, `MCPServerEntry`), `None` when inline.
    pub kind: Option<&'static str>,
    /// URL the vMCP reaches it at.
    pub url: String,
    /// [`READY`], [`UNAVAILABLE`] or [`UNKNOWN`], from the member's own phase.
    pub status: &'static str,
    /// Whether it is in the config (an entry that is not Valid is reported, not served).
    pub served: bool,
    /// Outgoing auth kind (`unauthenticated`, `token_exchange`, `header_injection`, `bearer_token`).
    pub auth_type: String,
    /// The MCPExternalAuthConfig used.
    pub auth_config_ref: Option<String>,
    /// Why it is not ready or not served.
    pub message: Option<String>,
    /// Its element of the config's `backends[]`.
    pub config: Value,
    /// Its `outgoingAuth.backends.<name>` block, when it authenticates.
    pub auth: Option<Value>,
}

/// Every backend of one VirtualMCPServer and what its pod needs for them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backends {
    /// The backends, sorted by name.
    pub list: Vec<Backend>,
    /// Environment of the vMCP container (Secret references only).
    pub env: Vec<EnvVar>,
    /// CA bundle volumes and their mounts.
    pub volumes: Vec<(Volume, VolumeMount)>,
}

/// Why a backend cannot be served as the VirtualMCPServer itself asks (its `outgoingAuth`, or a
/// token exchange without authenticated callers); it is then held at zero replicas. A member
/// whose own reference cannot be resolved is only left out (reported, not served).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend}: {reason}")]
pub struct Refusal {
    /// The backend's name.
    pub backend: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

/// The backends of the group `group` in `namespace` (discovered mode), or of
/// `spec.config.backends` (`inline`, given as the spec has them). `caller_authenticated` says
/// whether incoming auth yields a token that token exchange can swap.
pub fn resolve(
    namespace: &str,
    group: &str,
    outgoing: &OutgoingAuth,
    inline: &[Value],
    found: &Found,
    caller_authenticated: bool,
) -> Result<Backends, Refusal> {
    let mut out = Backends::default();
    let mut list = match outgoing.source.unwrap_or_default() {
        OutgoingAuthSource::Inline => inline.iter().filter_map(inline_backend).collect(),
        OutgoingAuthSource::Discovered => members(namespace, group, found),
    };
    list.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    for (mut backend, own_ref, extras) in list {
        let (auth_ref, via_spec) = auth_ref(outgoing, &backend.name, own_ref.as_deref());
        if let Some(name) = auth_ref.filter(|_| backend.served) {
            let refuse = |reason: String| Refusal { backend: backend.name.clone(), reason };
            // Name the field that chose the config: the vMCP's own, or the member's.
            let whose = match (via_spec, backend.kind) {
                (true, _) | (false, None) => "spec.outgoingAuth".to_string(),
                (false, Some(kind)) => format!("{kind} spec.externalAuthConfigRef"),
            };
            let o = match outgoing::outgoing(name, found.auth_configs.get(name)) {
                Ok(o) => o,
                Err(e) if via_spec => {
                    return Err(refuse(e.to_string().replacen("spec.externalAuthConfigRef", &whose, 1)));
                }
                // A member whose own credentials cannot be resolved (its config went, the
                // member's reconciler has not said so yet) is not served; the others are.
                Err(e) => {
                    let why = e.to_string().replacen("spec.externalAuthConfigRef", &whose, 1);
                    backend.served = false;
                    backend.status = UNAVAILABLE;
                    backend.message = Some(format!("not served: {why}"));
                    out.list.push(backend);
                    continue;
                }
            };
            if needs_caller_token(&o.config) && !caller_authenticated {
                return Err(refuse(format!(
                    "MCPExternalAuthConfig {name} exchanges the caller's token, so callers must be authenticated: \
                     set spec.incomingAuth.type oidc"
                )));
            }
            let prefix = env_prefix(&backend.name);
            let rename = |var: &str| format!("{prefix}_{var}");
            out.env.extend(o.env.into_iter().map(|mut e| {
                e.name = rename(&e.name);
                e
            }));
            let (auth_type, block) = auth_block(&o.config, rename);
            backend.auth_type = auth_type.to_string();
            backend.auth = Some(block);
            backend.auth_config_ref = Some(name.to_string());
        }
        if backend.served {
            out.env.extend(extras.env);
            out.volumes.extend(extras.volumes);
        }
        out.list.push(backend);
    }
    Ok(out)
}

/// What an entry adds to the pod.
#[derive(Clone, Debug, Default)]
struct Extras {
    env: Vec<EnvVar>,
    volumes: Vec<(Volume, VolumeMount)>,
}

type Member = (Backend, Option<String>, Extras);

fn backend(name: &str, kind: Option<&'static str>, url: String, status: &'static str, config: Value) -> Backend {
    Backend {
        name: name.to_string(),
        kind,
        url,
        status,
        served: true,
        auth_type: "unauthenticated".into(),
        auth_config_ref: None,
        message: None,
        config,
        auth: None,
    }
}

fn inline_backend(v: &Value) -> Option<Member> {
    let name = v.get("name")?.as_str()?;
    let url = v.get("url").and_then(Value::as_str).unwrap_or_default().to_string();
    Some((backend(name, None, url, UNKNOWN, v.clone()), None, Extras::default()))
}

fn in_group(group: &str, r: Option<&GroupRef>) -> bool {
    r.is_some_and(|g| g.name() == Ok(group))
}

fn transport_name(t: RemoteTransport) -> &'static str {
    match t {
        RemoteTransport::Sse => "sse",
        RemoteTransport::StreamableHttp => "streamable-http",
    }
}

/// The proxy endpoint of a backend served on `base` in `transport`.
fn endpoint(base: &str, transport: RemoteTransport) -> String {
    match transport {
        RemoteTransport::Sse => format!("{base}/sse"),
        RemoteTransport::StreamableHttp => format!("{base}/mcp"),
    }
}

fn members(namespace: &str, group: &str, found: &Found) -> Vec<Member> {
    let mut out = Vec::new();
    for s in found.servers.iter().filter(|s| in_group(group, s.spec.group_ref.as_ref())) {
        let Some(name) = s.metadata.name.as_deref() else { continue };
        let spec = s.spec.normalize().spec;
        let transport = match spec.proxy_mode.unwrap_or_default() {
            ProxyMode::Sse => RemoteTransport::Sse,
            ProxyMode::StreamableHttp => RemoteTransport::StreamableHttp,
        };
        let base = service_url(&proxy_service_name(name), namespace, spec.proxy_port.unwrap_or(DEFAULT_PORT));
        let phase = s.status.as_ref().and_then(|st| st.phase);
        let status = match phase {
            None => UNKNOWN,
            Some(MCPServerPhase::Running) => READY,
            Some(_) => UNAVAILABLE,
        };
        let url = endpoint(&base, transport);
        let config = json!({"name": name, "url": url, "transport": transport_name(transport)});
        let mut b = backend(name, Some("MCPServer"), url, status, config);
        b.message = phase.filter(|p| *p != MCPServerPhase::Running).map(|p| format!("MCPServer phase {p:?}"));
        out.push((b, None, Extras::default()));
    }
    for p in found.proxies.iter().filter(|p| in_group(group, p.spec.group_ref.as_ref())) {
        let Some(name) = p.metadata.name.as_deref() else { continue };
        let spec = p.spec.normalize().spec;
        let transport = spec.transport.unwrap_or_default();
        let base = service_url(&remote_service_name(name), namespace, spec.proxy_port.unwrap_or(DEFAULT_PORT));
        let phase = p.status.as_ref().and_then(|st| st.phase);
        let status = match phase {
            None => UNKNOWN,
            Some(MCPRemoteProxyPhase::Ready) => READY,
            Some(_) => UNAVAILABLE,
        };
        let url = endpoint(&base, transport);
        let config = json!({"name": name, "url": url, "transport": transport_name(transport)});
        let mut b = backend(name, Some("MCPRemoteProxy"), url, status, config);
        b.message = phase.filter(|p| *p != MCPRemoteProxyPhase::Ready).map(|p| format!("MCPRemoteProxy phase {p:?}"));
        out.push((b, None, Extras::default()));
    }
    for e in found.entries.iter().filter(|e| in_group(group, Some(&e.spec.group_ref))) {
        let Some(name) = e.metadata.name.as_deref() else { continue };
        out.push(entry(name, e));
    }
    out
}

/// An MCPServerEntry as a backend: served only when its own reconciler found it Valid.
fn entry(name: &str, e: &MCPServerEntry) -> Member {
    let spec = e.spec.normalize().spec;
    let url = spec.remote_url.clone().or_else(|| spec.remote_url_alias.clone()).unwrap_or_default();
    let phase = e.status.as_ref().and_then(|s| s.phase);
    let status = match phase {
        Some(MCPServerEntryPhase::Valid) => READY,
        Some(MCPServerEntryPhase::Failed) => UNAVAILABLE,
        Some(MCPServerEntryPhase::Pending) | None => UNKNOWN,
    };
    let mut config = json!({
        "name": name, "url": url, "transport": transport_name(spec.transport), "type": "entry",
    });
    let mut extras = Extras::default();
    if spec.allow_private_endpoint == Some(true) {
        // The vMCP checks every resolved address again when it connects; it must know that
        // the private ranges are allowed for this backend (loopback and metadata never are).
        config["allowPrivateEndpoint"] = json!(true);
    }
    if let Some(h) = &spec.header_forward {
        if let Some(plain) = h.add_plaintext_headers.as_ref().filter(|m| !m.is_empty()) {
            config["headers"] = json!(plain);
        }
        let mut from_env = BTreeMap::new();
        for (i, s) in h.add_headers_from_secret.iter().flatten().enumerate() {
            let var = format!("{}_HEADER_{i}", env_prefix(name));
            from_env.insert(s.header_name.trim().to_string(), var.clone());
            extras.env.push(secret_env(&var, &s.value_secret_ref.name, &s.value_secret_ref.key));
        }
        if !from_env.is_empty() {
            config["headersFromEnv"] = json!(from_env);
        }
    }
    if let Some(r) = spec.ca_bundle_ref.as_ref().and_then(|c| c.config_map_ref.as_ref()) {
        let dir = format!("{CA_DIR}/{name}");
        config["caBundlePath"] = json!(format!("{dir}/{}", r.key));
        extras.volumes.push(ca_volume(name, &r.name, &r.key, dir));
    }
    let mut b = backend(name, Some("MCPServerEntry"), url, status, config);
    if status != READY {
        b.served = false;
        b.message = Some(match phase {
            Some(MCPServerEntryPhase::Failed) => {
                let why = e
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Valid").map(|c| c.message.clone()));
                format!("entry is not Valid, not served: {}", why.unwrap_or_default())
            }
            _ => "entry not validated yet, not served".to_string(),
        });
    }
    (b, spec.external_auth_config_ref.as_ref().map(|r| r.name.clone()), extras)
}

/// The MCPExternalAuthConfig a backend uses, and whether `spec.outgoingAuth` chose it:
/// `outgoingAuth.backends.<name>`, else `outgoingAuth.default`, else the backend's own reference
/// (`type: discovered`, or nothing set).
fn auth_ref<'a>(outgoing: &'a OutgoingAuth, backend: &str, own: Option<&'a str>) -> (Option<&'a str>, bool) {
    let chosen: Option<&BackendAuth> =
        outgoing.backends.as_ref().and_then(|m| m.get(backend)).or(outgoing.default.as_ref());
    match chosen {
        Some(BackendAuth { type_: BackendAuthType::ExternalAuthConfigRef, external_auth_config_ref: Some(r) }) => {
            (Some(r.name.as_str()), true)
        }
        _ => (own, false),
    }
}

/// The ToolHive `BackendAuthStrategy` of resolved credentials, with the variable names renamed.
fn auth_block(o: &OutgoingConfig, rename: impl Fn(&str) -> String) -> (&'static str, Value) {
    if let Some(te) = &o.token_exchange {
        let mut block = json!({
            "tokenUrl": te.token_url,
            "clientId": te.client_id,
            "subjectTokenType": match te.subject_token_type {
                SubjectTokenType::AccessToken => "urn:ietf:params:oauth:token-type:access_token",
                SubjectTokenType::IdToken => "urn:ietf:params:oauth:token-type:id_token",
            },
        });
        if let Some(env) = &te.client_secret_env {
            block["clientSecretEnv"] = json!(rename(env));
        }
        if let Some(a) = &te.audience {
            block["audience"] = json!(a);
        }
        if !te.scopes.is_empty() {
            block["scopes"] = json!(te.scopes);
        }
        if let Some(h) = &te.header_name {
            block["externalTokenHeaderName"] = json!(h);
        }
        return ("token_exchange", json!({"type": "token_exchange", "tokenExchange": block}));
    }
    if let Some((header, env)) = o.header_env.iter().next() {
        return (
            "header_injection",
            json!({"type": "header_injection", "headerInjection": {"headerName": header, "headerValueEnv": rename(env)}}),
        );
    }
    if let Some(env) = &o.bearer_token_env {
        // Apiary's own strategy: ToolHive has no static bearer token for vMCP backends.
        return ("bearer_token", json!({"type": "bearer_token", "bearerToken": {"tokenEnv": rename(env)}}));
    }
    ("unauthenticated", json!({"type": "unauthenticated"}))
}

/// Prefix of the environment variables of backend `name`: readable, and unique per name (two
/// names that spell the same in upper case with `_` still differ in the hash).
pub fn env_prefix(name: &str) -> String {
    let readable: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("VMCP_{readable}_{}", &sha256_hex(name.as_bytes())[..6])
}

fn secret_env(var: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                // A missing Secret keeps the pod from starting rather than sending no header.
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ConfigMap key `key` of `config_map` as file `<dir>/<key>`.
pub(crate) fn ca_volume(entry: &str, config_map: &str, key: &str, dir: String) -> (Volume, VolumeMount) {
    // Entry names may be longer than a volume name may be: a hash keeps it a DNS label.
    let name = format!("ca-{}", &sha256_hex(entry.as_bytes())[..12]);
    let volume = Volume {
        name: name.clone(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            items: Some(vec![KeyToPath { key: key.to_string(), path: key.to_string(), mode: None }]),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    (volume, VolumeMount { name, mount_path: dir, read_only: Some(true), ..Default::default() })
}
