//! The policy layers of one proxy, assembled from its `RunConfig`: who the caller is (authn),
//! what they may call (authz and the tool filter), and what is recorded (audit).
//!
//! ```text
//! edge (host/origin) ─▶ front layer: audit begins ─▶ authn ─▶ handler: body limit ─▶ parse once
//!     ─▶ admit: tool filter/override ─▶ authz (Cedar) ─▶ router … answer ─▶ reshape lists ─▶ audit ends
//! ```
//!
//! The HTTP half ([`front::front_layer`]) runs before any handler reads a body, so an
//! unauthenticated caller never costs a body read. The message half ([`Guard::admit`]) runs in
//! the front that parsed the body, on the parsed message, so nothing is parsed twice. Audit
//! wraps authentication, as in ToolHive, so 401s are recorded too. The tool filter maps a
//! renamed tool back before authorization, so policies name the server's own tools (ToolHive's
//! order: a ToolHive user's policy file means the same here).

mod admit;
mod audit;
mod callers;
mod front;
mod metadata;
mod reshape;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apiary_config::RunConfig;
use apiary_policy::audit::{AuditConfig, Auditor};
use apiary_policy::authn::{Authenticator, AuthnOptions};
use apiary_policy::authz::Authorizer;
use apiary_policy::outgoing::Outgoing;
use apiary_policy::tools::ToolPolicy;
use bytes::Bytes;
use serde_json::{Map, Value};

pub(crate) use audit::audit_head;
pub(crate) use front::{RequestCtx, front_layer};
pub(crate) use metadata::{WELL_KNOWN, protected_resource};
pub(crate) use reshape::reshape_response;

/// Rewrites one answer (a list the policy shapes) before the client sees it.
pub(crate) type Reshape = Box<dyn FnOnce(Bytes) -> Bytes + Send>;

/// Tool annotations remembered from the server's own lists, at most this many tools.
const MAX_ANNOTATED_TOOLS: usize = 4096;

/// Why a proxy's policy could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("policy.oidc: {0}")]
    Authn(#[from] apiary_policy::authn::AuthnConfigError),
    #[error("policy.authz: {0}")]
    Authz(#[from] apiary_policy::authz::AuthzConfigError),
    #[error("policy.audit: {0}")]
    Audit(#[from] apiary_policy::audit::AuditConfigError),
    #[error("policy.tools: {0}")]
    Tools(#[from] apiary_policy::tools::ToolsConfigError),
    #[error("policy.outgoing: {0}")]
    Outgoing(#[from] apiary_policy::outgoing::OutgoingConfigError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Telemetry(#[from] crate::telemetry::TracingError),
}

/// Every policy decision of one proxy.
pub struct Guard {
    pub(crate) authn: Option<Authenticator>,
    /// Who a caller is when `authn` is off: anonymous, or the local user (`authMode: local`).
    pub(crate) unauthenticated: Arc<apiary_policy::Identity>,
    pub(crate) authz: Option<Authorizer>,
    pub(crate) tools: Option<ToolPolicy>,
    pub(crate) audit: Option<Arc<Auditor>>,
    /// Credentials for an HTTP or remote upstream.
    pub(crate) outgoing: Option<Outgoing>,
    /// `annotations` of each tool, as the server last listed it: Cedar's view of a tool comes
    /// from the server, never from the client.
    annotations: Mutex<HashMap<String, Map<String, Value>>>,
    /// `network.transport`-like label for audit events.
    pub(crate) transport: &'static str,
    /// Metrics and traces of the requests.
    pub(crate) telemetry: crate::telemetry::Telemetry,
    /// Sessions' callers, when the launcher's children may use them ([`Launch::may_want_caller`]).
    ///
    /// [`Launch::may_want_caller`]: apiary_transport::launch::Launch::may_want_caller
    pub(crate) callers: Option<callers::CallerSessions>,
}

impl Guard {
    /// Builds the policy of `cfg`. Nothing configured gives a guard that lets everything through.
    /// `track_callers`: the launcher's children may use the session's caller, so the front
    /// keeps each session's caller (only with authentication on).
    pub async fn from_config(cfg: &RunConfig, track_callers: bool) -> Result<Arc<Guard>, GuardError> {
        let policy = &cfg.policy;
        let authn = match &policy.oidc {
            Some(oidc) => {
                let oidc = with_secret_from_env(oidc)?;
                Some(Authenticator::new(&oidc, authn_options(&oidc))?)
            }
            None => None,
        };
        let unauthenticated = Arc::new(unauthenticated_identity(policy)?);
        let authz = match &policy.authz {
            Some(doc) => Some(Authorizer::from_value(doc, "policy.authz")?.with_server(&cfg.name)),
            None => None,
        };
        let tools = if policy.tools.is_empty() { None } else { Some(ToolPolicy::new(&policy.tools)?) };
        let audit = match &policy.audit {
            Some(doc) => Some(Auditor::start(AuditConfig::from_value(doc, "policy.audit")?).await?),
            None => None,
        };
        let outgoing = Outgoing::new(&policy.outgoing)?;
        if outgoing.is_some() && cfg.effective_transport() == apiary_config::Transport::Stdio {
            return Err(GuardError::Config(
                "policy.outgoing: a stdio server has no HTTP requests to carry credentials".into(),
            ));
        }
        if outgoing.as_ref().is_some_and(Outgoing::needs_caller_token) && authn.is_none() {
            return Err(GuardError::Config(
                "policy.outgoing.tokenExchange needs policy.oidc: only an authenticated caller's token is exchanged"
                    .into(),
            ));
        }
        let shapes_lists = authz.is_some() || tools.is_some();
        if shapes_lists && cfg.effective_transport() == apiary_config::Transport::Sse {
            // Answers to a 2024-11-05 SSE server's requests travel on its GET stream, which the
            // transparent proxy does not correlate with requests yet: refuse rather than serve
            // unfiltered lists.
            return Err(GuardError::Config(
                "authorization and tool filters are not supported yet in front of an SSE (2024-11-05) server; \
                 use streamable-http or stdio"
                    .into(),
            ));
        }
        if let Some(a) = &authn {
            a.warm_up().await;
        }
        let transport = match cfg.effective_transport() {
            apiary_config::Transport::Stdio => "stdio",
            apiary_config::Transport::Sse => "sse",
            apiary_config::Transport::StreamableHttp => "streamable-http",
        };
        let telemetry = crate::telemetry::Telemetry::from_config(cfg, transport)?;
        let callers = (track_callers && authn.is_some()).then(callers::CallerSessions::default);
        Ok(Arc::new(Guard {
            authn,
            unauthenticated,
            authz,
            tools,
            audit,
            outgoing,
            annotations: Mutex::new(HashMap::new()),
            callers,
            transport,
            telemetry,
        }))
    }

    /// True when the guard shapes answers or checks messages (authz or a tool filter).
    pub(crate) fn checks_messages(&self) -> bool {
        self.authz.is_some() || self.tools.is_some()
    }

    fn remember_annotations(&self, tool: &str, annotations: Option<&Map<String, Value>>) {
        let Ok(mut map) = self.annotations.lock() else { return };
        match annotations {
            Some(a) => {
                if map.len() >= MAX_ANNOTATED_TOOLS && !map.contains_key(tool) {
                    return;
                }
                map.insert(tool.to_owned(), a.clone());
            }
            None => {
                map.remove(tool);
            }
        }
    }

    fn annotations_of(&self, tool: &str) -> Option<Map<String, Value>> {
        self.annotations.lock().ok()?.get(tool).cloned()
    }
}

/// The identity of every caller when no OIDC issuer is configured.
fn unauthenticated_identity(policy: &apiary_config::PolicyConfig) -> Result<apiary_policy::Identity, GuardError> {
    use apiary_config::AuthMode;
    match (policy.auth_mode, &policy.oidc, &policy.local_user) {
        (AuthMode::Local, Some(_), _) => {
            Err(GuardError::Config("policy.authMode: local cannot be combined with policy.oidc".into()))
        }
        (AuthMode::Anonymous, _, Some(_)) => {
            Err(GuardError::Config("policy.localUser is only read with policy.authMode: local".into()))
        }
        (AuthMode::Local, None, user) => {
            let user = match user.as_deref().map(str::trim) {
                Some("") => return Err(GuardError::Config("policy.localUser is empty".into())),
                Some(u) => u.to_owned(),
                None => apiary_policy::Identity::os_username(),
            };
            // As ToolHive does: nothing is checked, so say so once.
            tracing::warn!(
                user = %user,
                "local authentication: every request is taken to come from this user, unchecked; \
                 configure OIDC to authenticate callers"
            );
            Ok(apiary_policy::Identity::local(&user))
        }
        (AuthMode::Anonymous, _, None) => Ok(apiary_policy::Identity::anonymous()),
    }
}

/// The OIDC settings with the client secret read from `clientSecretEnv`, when it names one.
fn with_secret_from_env(oidc: &apiary_config::OidcConfig) -> Result<apiary_config::OidcConfig, GuardError> {
    let mut oidc = oidc.clone();
    if oidc.client_secret.is_none()
        && let Some(var) = &oidc.client_secret_env
    {
        let secret = std::env::var(var).map_err(|_| {
            GuardError::Config(format!("policy.oidc.clientSecretEnv: the environment variable {var} is not set"))
        })?;
        oidc.client_secret = Some(secret);
    }
    Ok(oidc)
}

/// The authenticator's options: its defaults, with the configured refetch interval.
pub(crate) fn authn_options(oidc: &apiary_config::OidcConfig) -> AuthnOptions {
    let mut opts = AuthnOptions::default();
    if let Some(secs) = oidc.jwks_min_refresh_secs {
        opts.jwks_min_refresh = std::time::Duration::from_secs(secs.max(1));
    }
    opts
}

/// The name a request is about (`params.name`, or `params.uri` for resources), for the audit
/// record and telemetry.
pub(crate) fn target_name(m: &apiary_protocol::Message) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        name: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        uri: Option<std::borrow::Cow<'a, str>>,
    }
    let method = m.method()?;
    if !matches!(method, "tools/call" | "prompts/get" | "resources/read" | "resources/subscribe") {
        return None;
    }
    let p: Named<'_> = m.params_as()?;
    p.name.or(p.uri).map(std::borrow::Cow::into_owned)
}
