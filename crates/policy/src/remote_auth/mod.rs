//! The proxy's own OAuth login to a remote MCP server (`apiary run https://… --remote-auth`,
//! ToolHive's `--remote-auth-*`): discovery from the remote's 401, dynamic client
//! registration when no client id is given, authorization code + PKCE (S256) through a
//! loopback callback, then access tokens kept fresh with the refresh token.
//!
//! Unlike ToolHive, a refresh that fails transiently (network, 5xx, 429) is retried with
//! bounded exponential backoff, and a token that is still valid keeps being used meanwhile;
//! only a refusal (`invalid_grant`: the session is gone) ends it, with "log in again".
//!
//! - [`discovery`]: RFC 9728 / RFC 8414 / OIDC metadata.
//! - [`register`]: RFC 7591.
//! - [`pkce`]: verifier, challenge, state.
//! - [`callback`]: the loopback listener.
//! - [`token`]: the token endpoint and its retry policy.
//! - [`session`]: a login's state as a 0600 file, so a later proxy resumes it.

mod callback;
mod discovery;
mod http;
mod pkce;
mod register;
mod session;
mod token;

pub use session::{RemoteAuthSnapshot, SessionFileError};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use token::{ClientAuth, Endpoint, Failure, Retry, Tokens};

/// ToolHive's default `--remote-auth-callback-port`.
pub const DEFAULT_CALLBACK_PORT: u16 = 8666;
/// ToolHive's default `--remote-auth-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// An access token is refreshed this long before it expires.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// Receives the authorization URL instead of it being printed or opened (tests, UIs).
pub type AuthorizeUrlHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Receives the new state after a login or a refresh (to persist it). Runs under the refresh
/// lock: keep it short.
pub type TokensHook = Arc<dyn Fn(&RemoteAuthSnapshot) + Send + Sync>;

/// How to log in to the remote's authorization server.
#[derive(Clone)]
pub struct RemoteAuthConfig {
    /// The authorization server; when unset it is discovered from the remote's 401.
    pub issuer: Option<String>,
    /// Overrides the discovered authorization endpoint (with `token_url`: no discovery at all).
    pub authorize_url: Option<String>,
    /// Overrides the discovered token endpoint.
    pub token_url: Option<String>,
    /// When unset, the client is registered dynamically (RFC 7591).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Requested scopes; when empty, those the remote advertises (challenge, then metadata).
    pub scopes: Vec<String>,
    /// The name of the scope parameter of the authorization request (default `scope`; some
    /// providers want e.g. `user_scope`).
    pub scope_param_name: Option<String>,
    /// RFC 8707 resource indicator; when unset, the `resource` of the remote's metadata.
    pub resource: Option<String>,
    /// The loopback callback's port on 127.0.0.1 (0: any free port).
    pub callback_port: u16,
    /// How long the login (browser to callback) may take.
    pub timeout: Duration,
    /// Print the authorization URL to stderr instead of opening a browser.
    pub skip_browser: bool,
    /// Allow plain-HTTP metadata, authorization and token endpoints (tests, loopback set-ups).
    pub insecure_allow_http: bool,
    /// When set, receives the authorization URL; nothing is printed or opened.
    pub on_authorize_url: Option<AuthorizeUrlHook>,
    /// Refresh this long before the access token expires.
    pub refresh_before: Duration,
    /// Tries per token request (at least 1) when failures are transient.
    pub retry_attempts: u32,
    /// The first wait between tries, doubled each time (at most 10 s; `Retry-After` wins).
    pub retry_backoff: Duration,
    /// Called with the new state after the login and after every refresh.
    pub on_tokens: Option<TokensHook>,
}

impl Default for RemoteAuthConfig {
    fn default() -> Self {
        RemoteAuthConfig {
            issuer: None,
            authorize_url: None,
            token_url: None,
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            scope_param_name: None,
            resource: None,
            callback_port: DEFAULT_CALLBACK_PORT,
            timeout: DEFAULT_TIMEOUT,
            skip_browser: false,
            insecure_allow_http: false,
            on_authorize_url: None,
            refresh_before: DEFAULT_REFRESH_BEFORE,
            retry_attempts: 5,
            retry_backoff: Duration::from_millis(500),
            on_tokens: None,
        }
    }
}

impl std::fmt::Debug for RemoteAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuthConfig")
            .field("issuer", &self.issuer)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("scopes", &self.scopes)
            .field("scope_param_name", &self.scope_param_name)
            .field("resource", &self.resource)
            .field("callback_port", &self.callback_port)
            .field("timeout", &self.timeout)
            .field("skip_browser", &self.skip_browser)
            .field("insecure_allow_http", &self.insecure_allow_http)
            .field("on_authorize_url", &self.on_authorize_url.is_some())
            .field("refresh_before", &self.refresh_before)
            .field("retry_attempts", &self.retry_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("on_tokens", &self.on_tokens.is_some())
            .finish()
    }
}

/// Why the remote login or a token failed; each variant names the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteAuthError {
    #[error("remote auth configuration: {0}")]
    Config(String),
    #[error("remote auth discovery failed: {0}")]
    Discovery(String),
    #[error("remote auth dynamic client registration failed: {0}")]
    Registration(String),
    #[error("remote auth callback: {0}")]
    Callback(String),
    #[error("remote auth: no login completed within {0:?} (open the printed URL sooner, or raise the timeout)")]
    Timeout(Duration),
    #[error("remote auth: the authorization server refused the login: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied { error: String, description: Option<String> },
    #[error("remote auth: the token endpoint refused the {grant} (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { grant: &'static str, status: u16, error: String, description: Option<String> },
    #[error("remote auth: the {grant} failed: {detail}")]
    Unavailable { grant: &'static str, detail: String },
    /// The session at the authorization server is over (`invalid_grant`, or no refresh token).
    #[error("remote auth: the login has expired ({0}); log in again")]
    LoginRequired(String),
}

impl RemoteAuthError {
    /// True when only a new [`RemoteAuth::login`] can help.
    pub fn needs_login(&self) -> bool {
        matches!(self, RemoteAuthError::LoginRequired(_))
    }
}

const CODE_GRANT: &str = "authorization code exchange";
const REFRESH_GRANT: &str = "token refresh";

fn grant_error(grant: &'static str, failure: Failure) -> RemoteAuthError {
    match failure {
        Failure::Transient { detail, .. } | Failure::Invalid(detail) => RemoteAuthError::Unavailable { grant, detail },
        Failure::Refused { status, error, description } => {
            RemoteAuthError::Refused { grant, status, error, description }
        }
    }
}

/// The current tokens. No `Debug`: it holds them.
struct Current {
    access: Arc<str>,
    refresh: Option<String>,
    expires_at: Instant,
}

/// A logged-in remote: hands out fresh access tokens. Share it as `Arc`.
pub struct RemoteAuth {
    client: reqwest::Client,
    endpoint: Endpoint,
    refresh_before: Duration,
    retry: Retry,
    current: Mutex<Current>,
    /// Held while refreshing, so concurrent callers share one refresh (single flight).
    refreshing: tokio::sync::Mutex<()>,
    /// The secret of a dynamically registered client (kept in snapshots; a configured one is not).
    registered_secret: Option<String>,
    on_tokens: Option<TokensHook>,
}

impl std::fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuth")
            .field("token_url", &self.endpoint.url)
            .field("client_id", &self.endpoint.client_id)
            .finish_non_exhaustive()
    }
}

/// Endpoints and client, once discovery and registration are done.
struct Plan {
    authorize_url: url::Url,
    token_url: url::Url,
    client_id: String,
    auth: ClientAuth,
    /// Set when the client was registered here and given a secret.
    registered_secret: Option<String>,
    scopes: Vec<String>,
    resource: Option<String>,
}

impl RemoteAuth {
    /// Discovers (from `remote_url`'s 401 / metadata, or the configured issuer), registers if
    /// needed, runs the login (prints the URL to stderr with `skip_browser`, else tries
    /// `xdg-open`), waits for the callback (bounded by `timeout`), exchanges the code. Errors
    /// say which step failed.
    pub async fn login(cfg: RemoteAuthConfig, remote_url: &str) -> Result<Arc<RemoteAuth>, RemoteAuthError> {
        let client = http::client().map_err(RemoteAuthError::Config)?;
        let callback = callback::Callback::bind(cfg.callback_port).await.map_err(RemoteAuthError::Callback)?;
        let redirect_uri = callback.redirect_uri();
        let plan = plan(&client, &cfg, remote_url, &redirect_uri).await?;

        let pkce = pkce::Pkce::new();
        let state = pkce::state();
        let mut authorize = plan.authorize_url.clone();
        {
            let mut q = authorize.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &plan.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("code_challenge", &pkce.challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state);
            if !plan.scopes.is_empty() {
                q.append_pair(cfg.scope_param_name.as_deref().unwrap_or("scope"), &plan.scopes.join(" "));
            }
            if let Some(r) = &plan.resource {
                q.append_pair("resource", r);
            }
        }
        show(&cfg, authorize.as_str());

        let outcome = tokio::time::timeout(cfg.timeout, callback.wait(&state))
            .await
            .map_err(|_| RemoteAuthError::Timeout(cfg.timeout))?;
        let code = match outcome {
            callback::Outcome::Code(code) => code,
            callback::Outcome::Denied { error, description } => {
                return Err(RemoteAuthError::Denied { error, description });
            }
        };

        let endpoint = Endpoint {
            url: plan.token_url.to_string(),
            client_id: plan.client_id,
            auth: plan.auth,
            resource: plan.resource,
        };
        let retry = Retry { attempts: cfg.retry_attempts, base: cfg.retry_backoff };
        let tokens = retry
            .run(|| endpoint.exchange_code(&client, &code, &redirect_uri, &pkce.verifier))
            .await
            .map_err(|f| grant_error(CODE_GRANT, f))?;
        tracing::info!(token_url = %endpoint.url, client_id = %endpoint.client_id, "remote auth: logged in");
        let auth = Arc::new(RemoteAuth {
            client,
            endpoint,
            refresh_before: cfg.refresh_before,
            retry,
            current: Mutex::new(current(tokens, None)),
            refreshing: tokio::sync::Mutex::new(()),
            registered_secret: plan.registered_secret,
            on_tokens: cfg.on_tokens,
        });
        auth.notify();
        Ok(auth)
    }

    /// Goes on from an earlier login's [`RemoteAuthSnapshot`] (no network I/O: the first
    /// [`RemoteAuth::access_token`] refreshes if the token is stale). Of `cfg`, the client
    /// secret, the refresh and retry settings and `on_tokens` are used.
    pub fn resume(cfg: RemoteAuthConfig, snap: RemoteAuthSnapshot) -> Result<Arc<RemoteAuth>, RemoteAuthError> {
        let client = http::client().map_err(RemoteAuthError::Config)?;
        let token_url = http::checked_url("the token endpoint", &snap.token_url, cfg.insecure_allow_http)
            .map_err(RemoteAuthError::Config)?;
        let secret = cfg.client_secret.as_deref().or(snap.registered_client_secret.as_deref());
        let auth =
            ClientAuth::from_method(&snap.client_id, &snap.client_auth, secret).map_err(RemoteAuthError::Config)?;
        let endpoint =
            Endpoint { url: token_url.to_string(), client_id: snap.client_id, auth, resource: snap.resource };
        Ok(Arc::new(RemoteAuth {
            client,
            endpoint,
            refresh_before: cfg.refresh_before,
            retry: Retry { attempts: cfg.retry_attempts, base: cfg.retry_backoff },
            current: Mutex::new(Current {
                access: Arc::from(snap.access_token),
                refresh: snap.refresh_token,
                expires_at: session::instant_at(snap.expires_at_unix),
            }),
            refreshing: tokio::sync::Mutex::new(()),
            registered_secret: snap.registered_client_secret,
            on_tokens: cfg.on_tokens,
        }))
    }

    /// The state to resume from later (holds the tokens: keep it private).
    pub fn snapshot(&self) -> Result<RemoteAuthSnapshot, RemoteAuthError> {
        let cur = self.lock()?;
        Ok(RemoteAuthSnapshot {
            token_url: self.endpoint.url.clone(),
            client_id: self.endpoint.client_id.clone(),
            client_auth: self.endpoint.auth.method().to_string(),
            registered_client_secret: self.registered_secret.clone(),
            resource: self.endpoint.resource.clone(),
            access_token: cur.access.to_string(),
            refresh_token: cur.refresh.clone(),
            expires_at_unix: session::unix_at(cur.expires_at),
        })
    }

    /// Marks `token` as no longer good (the remote refused it), so the next
    /// [`RemoteAuth::access_token`] refreshes. A token already replaced is left alone.
    pub fn reject(&self, token: &str) {
        if let Ok(mut cur) = self.lock()
            && &*cur.access == token
        {
            cur.expires_at = Instant::now();
        }
    }

    /// Hands the current state to `on_tokens`, if set.
    fn notify(&self) {
        if let Some(hook) = &self.on_tokens {
            match self.snapshot() {
                Ok(snap) => hook(&snap),
                Err(e) => tracing::warn!(error = %e, "remote auth: cannot take a snapshot of the tokens"),
            }
        }
    }

    /// A valid access token, refreshed when within `refresh_before` (60 s) of expiry (single
    /// flight), retrying transient errors.
    pub async fn access_token(&self) -> Result<Arc<str>, RemoteAuthError> {
        if let Some(t) = self.fresh()? {
            return Ok(t);
        }
        let _turn = self.refreshing.lock().await;
        // Whoever refreshed before us may have left a fresh token.
        if let Some(t) = self.fresh()? {
            return Ok(t);
        }
        let (refresh, still_valid) = {
            let cur = self.lock()?;
            let valid = (cur.expires_at > Instant::now()).then(|| Arc::clone(&cur.access));
            (cur.refresh.clone(), valid)
        };
        let Some(refresh) = refresh else {
            return match still_valid {
                Some(t) => Ok(t),
                None => Err(RemoteAuthError::LoginRequired(
                    "the access token expired and the authorization server gave no refresh token".into(),
                )),
            };
        };
        match self.retry.run(|| self.endpoint.refresh(&self.client, &refresh)).await {
            Ok(tokens) => {
                let token = {
                    let mut cur = self.lock()?;
                    *cur = current(tokens, Some(refresh));
                    Arc::clone(&cur.access)
                };
                self.notify();
                Ok(token)
            }
            Err(Failure::Refused { error, description, .. }) if error == "invalid_grant" => {
                // The refresh token is dead: forget it, so later calls fail without a request.
                let mut cur = self.lock()?;
                cur.refresh = None;
                cur.expires_at = Instant::now();
                Err(RemoteAuthError::LoginRequired(format!(
                    "the refresh token was refused: invalid_grant{}",
                    description.map(|d| format!(" ({d})")).unwrap_or_default()
                )))
            }
            Err(Failure::Transient { detail, .. }) => match still_valid {
                // Not expired yet: keep serving it; the next call tries again.
                Some(token) => {
                    tracing::warn!(%detail, "remote auth: refresh failed after retries; the current token is still valid");
                    Ok(token)
                }
                None => Err(RemoteAuthError::Unavailable { grant: REFRESH_GRANT, detail }),
            },
            Err(f) => Err(grant_error(REFRESH_GRANT, f)),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Current>, RemoteAuthError> {
        self.current
            .lock()
            .map_err(|_| RemoteAuthError::Unavailable { grant: REFRESH_GRANT, detail: "lock poisoned".into() })
    }

    fn fresh(&self) -> Result<Option<Arc<str>>, RemoteAuthError> {
        let cur = self.lock()?;
        let deadline = cur.expires_at.checked_sub(self.refresh_before);
        Ok(deadline.filter(|d| *d > Instant::now()).map(|_| Arc::clone(&cur.access)))
    }
}

/// Tokens from an answer; a refresh answer without a new refresh token keeps the old one.
fn current(tokens: Tokens, previous_refresh: Option<String>) -> Current {
    Current {
        access: Arc::from(tokens.access_token),
        refresh: tokens.refresh_token.or(previous_refresh),
        expires_at: Instant::now() + tokens.lifetime,
    }
}

/// Shows the authorization URL: to the hook, or on stderr, opening a browser unless told not to.
fn show(cfg: &RemoteAuthConfig, url: &str) {
    if let Some(hook) = &cfg.on_authorize_url {
        hook(url);
        return;
    }
    if cfg.skip_browser {
        eprintln!("Open this URL in a browser to log in to the remote MCP server:\n\n  {url}\n");
        return;
    }
    eprintln!("Opening a browser to log in to the remote MCP server. If none opens, visit:\n\n  {url}\n");
    match tokio::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // Reaped in the background; xdg-open hands the URL over and exits.
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
            });
        }
        Err(e) => tracing::info!(error = %e, "remote auth: cannot run xdg-open; use the printed URL"),
    }
}

/// Discovery and registration: which endpoints, which client.
async fn plan(
    client: &reqwest::Client,
    cfg: &RemoteAuthConfig,
    remote_url: &str,
    redirect_uri: &str,
) -> Result<Plan, RemoteAuthError> {
    let insecure = cfg.insecure_allow_http;
    let check = |what: &str, raw: &str| http::checked_url(what, raw, insecure).map_err(RemoteAuthError::Config);
    let explicit = cfg.authorize_url.is_some() && cfg.token_url.is_some();

    // The remote's hints: only needed when something is left to discover.
    let hints = if cfg.issuer.is_none() && !explicit {
        Some(discovery::discover_resource(client, remote_url, insecure).await.map_err(RemoteAuthError::Discovery)?)
    } else {
        None
    };
    let issuer = cfg.issuer.clone().or_else(|| hints.as_ref().map(|h| h.issuer.clone()));
    let needs_metadata = !explicit || cfg.client_id.is_none();
    let meta = match (&issuer, needs_metadata) {
        (Some(issuer), true) => {
            discovery::fetch_as_metadata(client, issuer, insecure).await.map_err(RemoteAuthError::Discovery)?
        }
        _ => discovery::AsMetadata::default(),
    };
    if let Some(methods) = &meta.code_challenge_methods_supported
        && !methods.iter().any(|m| m == "S256")
    {
        return Err(RemoteAuthError::Discovery(format!(
            "the authorization server does not support PKCE S256 (code_challenge_methods_supported: {methods:?})"
        )));
    }
    let authorize_raw = cfg.authorize_url.clone().or(meta.authorization_endpoint.clone()).ok_or_else(|| {
        RemoteAuthError::Discovery("the authorization server metadata has no authorization_endpoint".into())
    })?;
    let token_raw =
        cfg.token_url.clone().or(meta.token_endpoint.clone()).ok_or_else(|| {
            RemoteAuthError::Discovery("the authorization server metadata has no token_endpoint".into())
        })?;
    let authorize_url = check("the authorization endpoint", &authorize_raw)?;
    let token_url = check("the token endpoint", &token_raw)?;

    let scopes = if cfg.scopes.is_empty() {
        hints.as_ref().map(|h| h.scopes.clone()).unwrap_or_default()
    } else {
        cfg.scopes.clone()
    };
    let resource = cfg.resource.clone().or_else(|| hints.and_then(|h| h.resource));

    let methods = meta.token_endpoint_auth_methods_supported.as_deref();
    let (client_id, auth, registered_secret) = match &cfg.client_id {
        Some(id) => (id.clone(), ClientAuth::choose(id, cfg.client_secret.as_deref(), methods), None),
        None => {
            let Some(endpoint) = &meta.registration_endpoint else {
                return Err(RemoteAuthError::Registration(
                    "no client id is configured and the authorization server offers no registration_endpoint".into(),
                ));
            };
            let endpoint = check("the registration endpoint", endpoint)?;
            let reg = register::register(client, &endpoint, redirect_uri, &scopes)
                .await
                .map_err(RemoteAuthError::Registration)?;
            let registered_method = reg.token_endpoint_auth_method.map(|m| vec![m]);
            let auth = ClientAuth::choose(
                &reg.client_id,
                reg.client_secret.as_deref(),
                registered_method.as_deref().or(methods),
            );
            (reg.client_id, auth, reg.client_secret)
        }
    };
    Ok(Plan { authorize_url, token_url, client_id, auth, registered_secret, scopes, resource })
}

/// `login` runs inside async tasks that must be `Send`.
#[allow(dead_code)]
fn assert_send(cfg: RemoteAuthConfig, r: &RemoteAuth) -> (impl Send + '_, impl Send + '_) {
    (RemoteAuth::login(cfg, ""), r.access_token())
}

#[allow(dead_code)]
fn assert_sync() {
    fn is<T: Send + Sync>() {}
    is::<RemoteAuth>();
}
