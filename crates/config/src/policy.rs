//! The protections a proxy applies to every request: who the caller is (OIDC), what they may do
//! (an authorization document), what is recorded (audit), and which tools they see (filter and
//! override). The documents whose format is ToolHive's (authz, audit) are kept as JSON here and
//! parsed by the `policy` crate, which owns their meaning; this crate only carries them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How callers are authenticated: bearer tokens checked against an OIDC issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL (`iss` must equal it). Its discovery document gives the JWKS URL unless
    /// `jwksUrl` is set.
    pub issuer: String,
    /// Expected `aud` of tokens. Unset: the audience is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// JWKS URL; skips discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// RFC 7662 introspection endpoint, for tokens that are not JWTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// Client id used to authenticate to the introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret used to authenticate to the introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Name of an environment variable of the proxy that holds the client secret, so the
    /// secret stays out of this document (the operator sets it from a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// Scopes advertised in the protected-resource metadata and in `WWW-Authenticate`.
    /// Advertised only, as in ToolHive: a token without them is still accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Scopes every token must carry (in its `scope` or `scp` claim, or the introspection
    /// answer's `scope`); a valid token that lacks one gets 403 `insufficient_scope`. Apiary's
    /// own field (ToolHive only advertises `scopes`); they are advertised too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// This resource's canonical URL (RFC 9728 `resource`). Unset: the metadata endpoint is 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    /// Allow an `http://` issuer, JWKS or introspection URL (tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_http: bool,
    /// Least seconds between two fetches of the issuer's keys (an unknown `kid` triggers one
    /// fetch at most this often, so random kids cannot flood the issuer). Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_min_refresh_secs: Option<u64>,
}

impl OidcConfig {
    /// Tokens of `issuer`, every other setting at its default.
    pub fn new(issuer: impl Into<String>) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            audience: None,
            jwks_url: None,
            introspection_url: None,
            client_id: None,
            client_secret: None,
            client_secret_env: None,
            scopes: Vec::new(),
            required_scopes: Vec::new(),
            resource_url: None,
            insecure_allow_http: false,
            jwks_min_refresh_secs: None,
        }
    }
}

/// One entry of a tools-override file: the name and description clients see instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolOverride {
    /// The name clients see and call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The description clients see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which tools clients see, and under which names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Only these tools (by the server's own names) are listed and callable. Empty: all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<String>,
    /// Renames and new descriptions, keyed by the server's own tool name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, ToolOverride>,
}

impl ToolsConfig {
    /// True when neither a filter nor an override is set.
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.overrides.is_empty()
    }
}

/// Who callers are when no OIDC issuer is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every caller is the principal `anonymous` (Cedar: `Client::"anonymous"`).
    #[default]
    Anonymous,
    /// Every caller is the local OS user (ToolHive's local-user mode, its default without
    /// OIDC): `sub` = the username, so a laptop's Cedar policy can name `Client::"<user>"`.
    /// Nothing is checked: for a proxy only this user can reach.
    Local,
}

impl AuthMode {
    fn is_anonymous(&self) -> bool {
        *self == AuthMode::Anonymous
    }
}

/// Every protection of one proxy. All unset: the proxy serves anyone, as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Bearer-token authentication. Unset: every caller is anonymous, or the local user
    /// (`authMode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// Who callers are without `oidc` (which it cannot be combined with, but `anonymous`).
    #[serde(skip_serializing_if = "AuthMode::is_anonymous")]
    pub auth_mode: AuthMode,
    /// The username of `authMode: local`. Unset: the OS user running the proxy (`$USER`,
    /// `$LOGNAME`), else `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_user: Option<String>,
    /// An authorization document in ToolHive's format (`{"version":"1.0","type":"cedarv1",
    /// "cedar":{"policies":[…],"entities_json":"[]"}}`). Set: default deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authz: Option<serde_json::Value>,
    /// An audit document in ToolHive's format (`component`, `logFile`, `eventTypes`, …). Set:
    /// one event per MCP request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<serde_json::Value>,
    /// Tool filter and overrides.
    #[serde(skip_serializing_if = "ToolsConfig::is_empty")]
    pub tools: ToolsConfig,
    /// Credentials sent to an HTTP or remote upstream.
    #[serde(skip_serializing_if = "OutgoingConfig::is_empty")]
    pub outgoing: OutgoingConfig,
}

impl PolicyConfig {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.oidc.is_none()
            && self.auth_mode.is_anonymous()
            && self.local_user.is_none()
            && self.authz.is_none()
            && self.audit.is_none()
            && self.tools.is_empty()
            && self.outgoing.is_empty()
    }
}

/// Which token the exchange presents as `subject_token`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectTokenType {
    /// `urn:ietf:params:oauth:token-type:access_token` (the caller's bearer token).
    #[default]
    AccessToken,
    /// `urn:ietf:params:oauth:token-type:id_token`.
    IdToken,
}

/// RFC 8693 token exchange: the caller's token is swapped at an STS for one meant for the
/// upstream, which then gets only the exchanged token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The STS token endpoint.
    pub token_url: String,
    /// Client id of the exchanging party (HTTP Basic).
    pub client_id: String,
    /// Its secret (prefer `clientSecretEnv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Name of an environment variable of the proxy holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// `audience` of the exchanged token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `scope` requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Header that carries the exchanged token to the upstream; default `Authorization`
    /// (as `Bearer <token>`). Any other header gets the bare token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// What the caller's token is.
    #[serde(default)]
    pub subject_token_type: SubjectTokenType,
    /// Allow an `http://` token URL (tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_http: bool,
}

/// Credentials the proxy sends to an HTTP or remote upstream. The caller's own token is never
/// among them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutgoingConfig {
    /// Swap the caller's token for one meant for the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchangeConfig>,
    /// A fixed bearer token for the upstream (prefer `bearerTokenEnv`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// Name of an environment variable of the proxy holding a fixed bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// Headers added to every upstream request, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Headers whose value comes from an environment variable of the proxy: name → variable.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header_env: BTreeMap<String, String>,
    /// The proxy's own OAuth login to the remote server (`--remote-auth`): it sends the remote
    /// fresh access tokens of that login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_auth: Option<RemoteAuthSettings>,
}

/// How the proxy logs in to a remote MCP server's authorization server (ToolHive's
/// `--remote-auth-*`). The login itself happens in a terminal (`apiary run`/`start`); its
/// tokens are kept in the state directory, never here. The client secret is named (a file or an
/// environment variable), never written here.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RemoteAuthSettings {
    /// The authorization server (issuer URL). Unset: discovered from the remote's 401 (RFC 9728).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Overrides the discovered authorization endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Overrides the discovered token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The OAuth client. Unset: registered dynamically (RFC 7591).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A file holding the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    /// Name of an environment variable holding the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// Scopes asked for. Empty: those the remote advertises.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Name of the authorization request's scope parameter (default `scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_param_name: Option<String>,
    /// RFC 8707 resource indicator. Unset: the remote's own (from its metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Port of the login's callback on 127.0.0.1 (default 8666; 0: any free port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_port: Option<u16>,
    /// Seconds the login (browser to callback) may take (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Print the authorization URL instead of opening a browser.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip_browser: bool,
    /// Allow plain-HTTP discovery, authorization and token URLs (tests only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_http: bool,
    /// Where this run's login session (tokens, 0600) is kept. Set by whoever starts the proxy,
    /// for that run only; never written to a RunConfig.
    #[serde(skip)]
    #[schemars(skip)]
    pub session_file: Option<std::path::PathBuf>,
    /// What a user does when the login has expired (e.g. "run `apiary restart fetch` in a
    /// terminal"). Set with `session_file`; never written.
    #[serde(skip)]
    #[schemars(skip)]
    pub relogin_hint: Option<String>,
    /// A client secret this process was given on its command line; in memory only (it wins
    /// over `clientSecretFile`/`clientSecretEnv`, and is never written).
    #[serde(skip)]
    #[schemars(skip)]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for RemoteAuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuthSettings")
            .field("issuer", &self.issuer)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file)
            .field("client_secret_env", &self.client_secret_env)
            .field("scopes", &self.scopes)
            .field("scope_param_name", &self.scope_param_name)
            .field("resource", &self.resource)
            .field("callback_port", &self.callback_port)
            .field("timeout_secs", &self.timeout_secs)
            .field("skip_browser", &self.skip_browser)
            .field("insecure_allow_http", &self.insecure_allow_http)
            .field("session_file", &self.session_file)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl OutgoingConfig {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.token_exchange.is_none()
            && self.bearer_token.is_none()
            && self.bearer_token_env.is_none()
            && self.headers.is_empty()
            && self.header_env.is_empty()
            && self.remote_auth.is_none()
    }
}
