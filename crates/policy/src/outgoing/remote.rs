//! The remote login as a source of upstream credentials: `RemoteAuthSettings` (the RunConfig's
//! view, secrets named but not held) becomes a [`RemoteAuthConfig`], and the login session the
//! CLI left in a file becomes a [`RemoteAuth`] that keeps that file current as it refreshes, so
//! a restarted proxy resumes where this one stopped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apiary_config::RemoteAuthSettings;

use super::OutgoingConfigError;
use crate::remote_auth::{
    DEFAULT_CALLBACK_PORT, DEFAULT_TIMEOUT, RemoteAuth, RemoteAuthConfig, RemoteAuthError, RemoteAuthSnapshot,
    SessionFileError,
};

/// Largest client secret file read.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// What a user is told to do when no hint was configured.
const DEFAULT_HINT: &str = "start the proxy again in a terminal to log in";

/// The login configuration of `s`, its client secret read from the named file or variable.
pub fn remote_auth_config(s: &RemoteAuthSettings) -> Result<RemoteAuthConfig, OutgoingConfigError> {
    let client_secret = match (&s.client_secret_file, &s.client_secret_env) {
        _ if s.client_secret.is_some() => s.client_secret.clone(),
        (Some(_), Some(_)) => {
            return Err(OutgoingConfigError::RemoteAuth(
                "give remoteAuth.clientSecretFile or remoteAuth.clientSecretEnv, not both".into(),
            ));
        }
        (Some(path), None) => Some(read_secret(path)?),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| OutgoingConfigError::MissingEnv {
            var: var.clone(),
            what: "the remote auth client secret".into(),
        })?),
        (None, None) => None,
    };
    if client_secret.is_some() && s.client_id.is_none() {
        return Err(OutgoingConfigError::RemoteAuth(
            "a remote auth client secret needs a client id (a registered client gets its own secret)".into(),
        ));
    }
    for (what, url) in [("issuer", &s.issuer), ("authorizeUrl", &s.authorize_url), ("tokenUrl", &s.token_url)] {
        if let Some(u) = url {
            check_url(what, u, s.insecure_allow_http)?;
        }
    }
    Ok(RemoteAuthConfig {
        issuer: s.issuer.clone(),
        authorize_url: s.authorize_url.clone(),
        token_url: s.token_url.clone(),
        client_id: s.client_id.clone(),
        client_secret,
        scopes: s.scopes.clone(),
        scope_param_name: s.scope_param_name.clone(),
        resource: s.resource.clone(),
        callback_port: s.callback_port.unwrap_or(DEFAULT_CALLBACK_PORT),
        timeout: s.timeout_secs.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        skip_browser: s.skip_browser,
        insecure_allow_http: s.insecure_allow_http,
        ..RemoteAuthConfig::default()
    })
}

fn check_url(what: &str, raw: &str, insecure: bool) -> Result<(), OutgoingConfigError> {
    let bad = |why: &str| OutgoingConfigError::RemoteAuth(format!("remoteAuth.{what} {raw:?} {why}"));
    let url = url::Url::parse(raw).map_err(|_| bad("is not a URL"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if insecure => Ok(()),
        "http" => Err(bad("is plain HTTP (allowed only with insecureAllowHttp, for tests)")),
        _ => Err(bad("is not an https URL")),
    }
}

fn read_secret(path: &str) -> Result<String, OutgoingConfigError> {
    use std::io::Read;
    let bad = |e: std::io::Error| {
        OutgoingConfigError::RemoteAuth(format!("remoteAuth.clientSecretFile: cannot read {path}: {e}"))
    };
    let mut text = String::new();
    std::fs::File::open(path).map_err(bad)?.take(MAX_SECRET_BYTES).read_to_string(&mut text).map_err(bad)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(OutgoingConfigError::RemoteAuth(format!("remoteAuth.clientSecretFile: {path} is empty")));
    }
    Ok(secret.to_owned())
}

/// The remote login of one proxy.
pub(crate) struct RemoteSource {
    pub(crate) auth: Arc<RemoteAuth>,
    /// What to do when the login has expired.
    pub(crate) hint: String,
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSource").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl RemoteSource {
    /// Resumes the session in `s.session_file`, writing it back after every refresh.
    pub(crate) fn open(s: &RemoteAuthSettings) -> Result<RemoteSource, OutgoingConfigError> {
        let hint = s.relogin_hint.clone().unwrap_or_else(|| DEFAULT_HINT.into());
        let mut cfg = remote_auth_config(s)?;
        let Some(path) = s.session_file.clone() else {
            return Err(OutgoingConfigError::RemoteAuth(format!(
                "remoteAuth needs a login first, which happens in a terminal: {hint}"
            )));
        };
        let snap = RemoteAuthSnapshot::load(&path).map_err(|e| match e {
            SessionFileError::Missing(_) => {
                OutgoingConfigError::RemoteAuth(format!("there is no remote login session yet: {hint}"))
            }
            other => OutgoingConfigError::RemoteAuth(other.to_string()),
        })?;
        cfg.on_tokens = Some(persist(path));
        let auth = RemoteAuth::resume(cfg, snap).map_err(|e| OutgoingConfigError::RemoteAuth(e.to_string()))?;
        Ok(RemoteSource { auth, hint })
    }
}

/// A hook that writes each new state to `path` (a failure is logged: the tokens in memory
/// still work; only a restart would need a new login).
pub fn persist(path: PathBuf) -> crate::remote_auth::TokensHook {
    Arc::new(move |snap: &RemoteAuthSnapshot| {
        if let Err(e) = snap.save(&path) {
            tracing::warn!(error = %e, "remote auth: cannot save the refreshed session");
        }
    })
}

/// The message a caller gets for a failed remote token: what happened and what to do.
pub(crate) fn describe(e: &RemoteAuthError, hint: &str) -> String {
    if e.needs_login() { format!("the login to the remote MCP server has expired; {hint}") } else { e.to_string() }
}
