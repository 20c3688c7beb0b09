//! `apiary export NAME --format k8s`: a local workload's RunConfig as the manifests that make
//! the operator run the same server behind the same protections. It is the inverse of the
//! reconcilers' `desired`: an image becomes an MCPServer, a remote URL an MCPRemoteProxy, and
//! each protection the object the operator reads it from (MCPOIDCConfig, a ConfigMap holding
//! the Cedar document verbatim, MCPToolConfig). A protection the manifests cannot express is
//! refused, never dropped: a cluster copy must not be more open than the local original.

use std::collections::BTreeMap;

use apiary_config::{AuthMode, OidcConfig, PermissionProfile, ProxyMode as RcProxyMode, RunConfig, Source, Transport};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use serde::Serialize;

use crate::crd::common::{
    AuditConfig, AuthzConfig, AuthzConfigMapRef, AuthzSource, EnvVar, GroupRef, NameRef, OidcConfigRef,
    RemoteTransport, SecretKeyRef,
};
use crate::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxySpec};
use crate::crd::mcpserver::{
    MCPServer, MCPServerSpec, PermissionProfileRef, PermissionProfileType, ProxyMode, SecretEnv, ServerTransport,
};
use crate::crd::oidcconfig::{InlineOidc, MCPOIDCConfig, MCPOIDCConfigSpec, OidcSource};
use crate::crd::toolconfig::{MCPToolConfig, MCPToolConfigSpec, ToolOverride};
use crate::reconcile::policy::{DEFAULT_AUTHZ_KEY, Referenced};

/// The key of the client secret in the Secret the exported MCPOIDCConfig names.
pub const OIDC_SECRET_KEY: &str = "client-secret";
/// The key of the permission profile in its exported ConfigMap.
pub const PROFILE_KEY: &str = "permissions.json";
/// The local default group, which needs no `groupRef`.
const DEFAULT_GROUP: &str = "default";

/// Why a workload cannot be exported as manifests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Package and command sources have no image a cluster could pull.
    #[error(
        "workload {name:?} runs a {kind} source, which has no container image a cluster can pull; \
         only image and remote URL workloads can be exported as Kubernetes manifests"
    )]
    NoImage { name: String, kind: &'static str },
    /// The local name is not a Kubernetes object name.
    #[error(
        "workload name {0:?} is not a Kubernetes object name (lowercase letters, digits and `-`, \
         starting with a letter, at most 52 characters); run it under such a name to export it"
    )]
    BadName(String),
    /// A setting the operator's objects cannot carry; dropping it would open what it closes.
    #[error("{field} cannot be exported: {reason}")]
    Unsupported { field: &'static str, reason: String },
}

/// The server object of an export.
#[derive(Debug, Clone)]
pub enum ServerObject {
    Server(Box<MCPServer>),
    RemoteProxy(Box<MCPRemoteProxy>),
}

/// The manifests of one workload, and what the user must still do by hand.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub server: ServerObject,
    /// The Cedar document (`<name>-authz`) and the custom permission profile
    /// (`<name>-permission-profile`), when there are any.
    pub config_maps: Vec<ConfigMap>,
    pub oidc: Option<MCPOIDCConfig>,
    pub tools: Option<MCPToolConfig>,
    /// Sentences for people: Secrets to create, settings a cluster does not use.
    pub notes: Vec<String>,
}

impl Manifests {
    /// Every object as one multi-document YAML stream, referenced objects first so that
    /// `kubectl apply -f` creates them before the server that needs them.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        let mut docs = Vec::new();
        for cm in &self.config_maps {
            docs.push(document(cm)?);
        }
        if let Some(o) = &self.oidc {
            docs.push(document(o)?);
        }
        if let Some(t) = &self.tools {
            docs.push(document(t)?);
        }
        docs.push(match &self.server {
            ServerObject::Server(s) => document(s.as_ref())?,
            ServerObject::RemoteProxy(p) => document(p.as_ref())?,
        });
        Ok(docs.join("---\n"))
    }

    /// The referenced objects as the reconcilers read them from the API.
    pub fn referenced(&self) -> Referenced {
        Referenced {
            oidc: self.oidc.clone(),
            authz_config_map: self
                .config_maps
                .iter()
                .find(|c| c.metadata.name == Some(authz_name(self.name())))
                .cloned(),
            tools: self.tools.clone(),
            ..Referenced::default()
        }
    }

    fn name(&self) -> &str {
        let meta = match &self.server {
            ServerObject::Server(s) => &s.metadata,
            ServerObject::RemoteProxy(p) => &p.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

/// A resource with its `apiVersion` and `kind` as YAML.
fn document<T: Serialize>(object: &T) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(object)
}

fn authz_name(name: &str) -> String {
    format!("{name}-authz")
}

/// The manifests for `config`.
pub fn export(config: &RunConfig) -> Result<Manifests, ExportError> {
    let name = config.name.as_str();
    if !is_object_name(name) {
        return Err(ExportError::BadName(name.to_owned()));
    }
    refuse_unexpressible(config)?;
    let mut out = Manifests {
        server: ServerObject::Server(Box::new(MCPServer::new(name, MCPServerSpec::default()))),
        config_maps: Vec::new(),
        oidc: None,
        tools: None,
        notes: Vec::new(),
    };
    let oidc_ref = config.policy.oidc.as_ref().map(|o| oidc(name, o, &mut out)).transpose()?;
    let authz = config.policy.authz.as_ref().map(|doc| {
        out.config_maps.push(config_map(authz_name(name), DEFAULT_AUTHZ_KEY, pretty(doc)));
        AuthzConfig {
            type_: AuthzSource::ConfigMap,
            config_map: Some(AuthzConfigMapRef { name: authz_name(name), key: Some(DEFAULT_AUTHZ_KEY.into()) }),
            ..AuthzConfig::default()
        }
    });
    let audit = config.policy.audit.as_ref().map(|doc| {
        if doc.as_object().is_some_and(|o| !o.is_empty()) {
            out.notes.push(
                "audit: the operator writes audit events to the proxy's standard output with ToolHive's \
                 defaults; the local audit settings (file, event types) are not carried"
                    .into(),
            );
        }
        AuditConfig { enabled: Some(true) }
    });
    let tool_ref = (!config.policy.tools.is_empty()).then(|| {
        out.tools = Some(tools(name, config));
        NameRef { name: format!("{name}-tools") }
    });
    if !config.telemetry.is_default() {
        out.notes.push("telemetry: not exported; create an MCPTelemetryConfig and set spec.telemetryConfigRef".into());
    }
    let group_ref = (config.group != DEFAULT_GROUP).then(|| GroupRef::from_object_name(config.group.clone()));

    out.server = match &config.source {
        Source::Image(image) => {
            let transport = config.effective_transport();
            let spec = MCPServerSpec {
                image: image.reference.clone(),
                transport: Some(match transport {
                    Transport::Stdio => ServerTransport::Stdio,
                    Transport::StreamableHttp => ServerTransport::StreamableHttp,
                    Transport::Sse => ServerTransport::Sse,
                }),
                proxy_mode: (config.proxy.proxy_mode == RcProxyMode::Sse).then_some(ProxyMode::Sse),
                mcp_port: (transport.is_http() && config.target_port != 0).then_some(i32::from(config.target_port)),
                args: (!config.args.is_empty()).then(|| config.args.clone()),
                env: (!config.env.is_empty())
                    .then(|| config.env.iter().map(|(k, v)| EnvVar { name: k.clone(), value: v.clone() }).collect()),
                secrets: secrets(config, &mut out)?,
                permission_profile: permission_profile(name, &config.permission_profile, &mut out),
                oidc_config_ref: oidc_ref,
                authz_config: authz,
                audit,
                tool_config_ref: tool_ref,
                group_ref,
                trust_proxy_headers: config.proxy.trust_proxy_headers.then_some(true),
                endpoint_prefix: Some(config.proxy.endpoint_prefix.clone()).filter(|p| !p.is_empty()),
                ..MCPServerSpec::default()
            };
            ServerObject::Server(Box::new(MCPServer { metadata: meta(name), spec, status: None }))
        }
        Source::Remote(remote) => {
            let spec = MCPRemoteProxySpec {
                remote_url: Some(remote.url.clone()),
                transport: Some(match config.effective_transport() {
                    Transport::Sse => RemoteTransport::Sse,
                    _ => RemoteTransport::StreamableHttp,
                }),
                oidc_config_ref: oidc_ref,
                authz_config: authz,
                audit,
                tool_config_ref: tool_ref,
                group_ref,
                trust_proxy_headers: config.proxy.trust_proxy_headers.then_some(true),
                ..MCPRemoteProxySpec::default()
            };
            ServerObject::RemoteProxy(Box::new(MCPRemoteProxy { metadata: meta(name), spec, status: None }))
        }
        Source::Package(_) | Source::Command(_) => {
            return Err(ExportError::NoImage { name: name.to_owned(), kind: config.source.kind() });
        }
    };
    Ok(out)
}

/// Settings that would leave the cluster copy more open than the local workload.
fn refuse_unexpressible(config: &RunConfig) -> Result<(), ExportError> {
    let policy = &config.policy;
    if policy.auth_mode != AuthMode::Anonymous || policy.local_user.is_some() {
        return Err(ExportError::Unsupported {
            field: "policy.authMode",
            reason: "`--auth-mode local` makes every caller the local user, and a cluster has no local user; \
                     authenticate callers with OIDC (--oidc-issuer …) instead"
                .into(),
        });
    }
    if !policy.outgoing.is_empty() {
        return Err(ExportError::Unsupported {
            field: "policy.outgoing",
            reason: "outgoing credentials are not exported yet; create an MCPExternalAuthConfig and set \
                     spec.externalAuthConfigRef"
                .into(),
        });
    }
    if let Some(o) = &policy.oidc {
        if !o.required_scopes.is_empty() {
            return Err(ExportError::Unsupported {
                field: "policy.oidc.requiredScopes",
                reason: "an MCPOIDCConfig has no required scopes, so the cluster copy would accept tokens the \
                         local proxy refuses; enforce the scopes with a Cedar policy instead"
                    .into(),
            });
        }
        if o.audience.as_deref().unwrap_or_default().is_empty() {
            return Err(ExportError::Unsupported {
                field: "policy.oidc.audience",
                reason: "spec.oidcConfigRef needs an audience; run the workload with --oidc-audience".into(),
            });
        }
    }
    Ok(())
}

/// The MCPOIDCConfig `<name>-oidc` and the reference to it.
fn oidc(name: &str, o: &OidcConfig, out: &mut Manifests) -> Result<OidcConfigRef, ExportError> {
    let config_name = format!("{name}-oidc");
    let secret = (o.client_secret.is_some() || o.client_secret_env.is_some()).then(|| {
        let secret_name = format!("{name}-oidc-client");
        out.notes.push(format!(
            "create Secret {secret_name} with the OIDC client secret under key {OIDC_SECRET_KEY} \
             (kubectl create secret generic {secret_name} --from-literal={OIDC_SECRET_KEY}=…)"
        ));
        SecretKeyRef { name: secret_name, key: OIDC_SECRET_KEY.into() }
    });
    if o.jwks_min_refresh_secs.is_some() {
        out.notes.push("oidc: the JWKS minimum refresh interval is not carried; the proxy's default applies".into());
    }
    let inline = InlineOidc {
        issuer: o.issuer.clone(),
        jwks_url: o.jwks_url.clone(),
        introspection_url: o.introspection_url.clone(),
        client_id: o.client_id.clone(),
        client_secret_ref: secret,
        insecure_allow_http: o.insecure_allow_http.then_some(true),
        ..InlineOidc::default()
    };
    let spec = MCPOIDCConfigSpec { type_: OidcSource::Inline, inline: Some(inline), ..MCPOIDCConfigSpec::default() };
    out.oidc = Some(MCPOIDCConfig { metadata: meta(&config_name), spec, status: None });
    Ok(OidcConfigRef {
        name: config_name,
        audience: o.audience.clone().unwrap_or_default(),
        scopes: (!o.scopes.is_empty()).then(|| o.scopes.clone()),
        resource_url: o.resource_url.clone(),
    })
}

/// The MCPToolConfig `<name>-tools`.
fn tools(name: &str, config: &RunConfig) -> MCPToolConfig {
    let t = &config.policy.tools;
    let spec = MCPToolConfigSpec {
        tools_filter: (!t.filter.is_empty()).then(|| t.filter.clone()),
        tools_override: (!t.overrides.is_empty()).then(|| {
            t.overrides
                .iter()
                .map(|(tool, o)| {
                    (
                        tool.clone(),
                        ToolOverride { name: o.name.clone(), description: o.description.clone(), annotations: None },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        }),
    };
    MCPToolConfig { metadata: meta(&format!("{name}-tools")), spec, status: None }
}

/// `--secret NAME,target=ENV` as `spec.secrets`: key `NAME` of the Kubernetes Secret whose name
/// is `NAME` in lowercase with `_` and `.` as `-` (`GITHUB_TOKEN` → Secret `github-token`).
fn secrets(config: &RunConfig, out: &mut Manifests) -> Result<Option<Vec<SecretEnv>>, ExportError> {
    let mut list = Vec::new();
    for s in &config.secrets {
        let object = secret_object_name(&s.name);
        if !is_object_name(&object) {
            return Err(ExportError::Unsupported {
                field: "secrets",
                reason: format!(
                    "secret {:?} gives no Kubernetes Secret name ({object:?}); store it under a name of letters, \
                     digits, `-` and `_` that starts with a letter",
                    s.name
                ),
            });
        }
        out.notes.push(format!(
            "create Secret {object} holding secret {name} under key {name} (kubectl create secret generic \
             {object} --from-literal={name}=…)",
            name = s.name
        ));
        list.push(SecretEnv { name: object, key: s.name.clone(), target_env_name: Some(s.target.clone()) });
    }
    Ok((!list.is_empty()).then_some(list))
}

/// The Kubernetes Secret name for local secret `name`.
pub fn secret_object_name(name: &str) -> String {
    name.chars().map(|c| if c == '_' || c == '.' { '-' } else { c.to_ascii_lowercase() }).collect()
}

/// The built-ins by name; another profile as ConfigMap `<name>-permission-profile`.
fn permission_profile(name: &str, profile: &PermissionProfile, out: &mut Manifests) -> Option<PermissionProfileRef> {
    if profile.is_default() {
        return None;
    }
    out.notes.push(
        "permissionProfile: exported as ToolHive writes it; the operator does not enforce permission profiles \
         yet (the pod's own isolation applies)"
            .into(),
    );
    for builtin in [PermissionProfile::none(), PermissionProfile::network()] {
        if *profile == builtin {
            return Some(PermissionProfileRef {
                type_: Some(PermissionProfileType::Builtin),
                name: builtin.name.unwrap_or_default(),
                key: None,
            });
        }
    }
    let cm_name = format!("{name}-permission-profile");
    out.config_maps.push(config_map(cm_name.clone(), PROFILE_KEY, pretty(profile)));
    Some(PermissionProfileRef {
        type_: Some(PermissionProfileType::Configmap),
        name: cm_name,
        key: Some(PROFILE_KEY.into()),
    })
}

fn config_map(name: String, key: &str, text: String) -> ConfigMap {
    ConfigMap { metadata: meta(&name), data: Some(BTreeMap::from([(key.to_owned(), text)])), ..ConfigMap::default() }
}

fn pretty<T: Serialize>(value: &T) -> String {
    // Serialising a JSON value or a plain struct cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }
}

/// A name usable for the server and the Services derived from it (`mcp-<name>-proxy` must be a
/// DNS-1035 label of at most 63 characters).
fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=52).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
