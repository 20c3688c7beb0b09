//! ToolHive's vMCP configuration file (`pkg/vmcp/config`), read so that a ToolHive user's
//! YAML loads unchanged: the sections Apiary carries out are typed, the ones it does not
//! yet (composite tools, optimizer, ...) are accepted and named in a warning; the ones that
//! protect something (incoming auth, backend fields) are typed strictly, unknown fields refused. One validation whose errors name the field path.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmcpConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, rename = "groupRef", skip_serializing_if = "String::is_empty")]
    pub group_ref: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<StaticBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operational: Option<Operational>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_auth: Option<OutgoingAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_auth: Option<IncomingAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_tools: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_tool_refs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// `incomingAuth`: who may call the vMCP (ToolHive's `IncomingAuthConfig`, plus the Cedar
/// claim settings the operator carries). Unknown fields are refused: a protection misspelt
/// must not be silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncomingAuth {
    /// `anonymous`, `oidc` or `local` (every caller is the OS user running the vMCP).
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<IncomingOidc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz: Option<IncomingAuthz>,
}

/// `incomingAuth.oidc`: bearer tokens of this issuer are required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncomingOidc {
    #[serde(default)]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The environment variable holding the introspection client's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// This server's public URL (RFC 9728 `resource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_http: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// `incomingAuth.authz`: Cedar policies over the aggregated names (default deny once set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncomingAuthz {
    /// `cedar`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub policies: Vec<String>,
    /// A JSON list of Cedar entities, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_upstream_provider: Option<String>,
}

/// What a file's `incomingAuth` asks of the proxy's policy layers, in `RunConfig.policy`'s terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncomingPolicy {
    pub oidc: Option<apiary_config::OidcConfig>,
    /// `type: local`.
    pub local: bool,
    /// A ToolHive `cedarv1` authorization document.
    pub authz: Option<Value>,
}

impl IncomingPolicy {
    /// True when the file asks for no protection (anonymous callers, no Cedar).
    pub fn is_open(&self) -> bool {
        self.oidc.is_none() && !self.local && self.authz.is_none()
    }
}

/// `backends[]`: a backend reached over HTTP (static mode). Unknown fields are refused: a
/// header, CA bundle or SSRF setting misspelt must not be silently dropped.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticBackend {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
    /// `streamable-http` or `sse`.
    #[serde(default)]
    pub transport: String,
    /// `entry` for an MCPServerEntry (a remote URL): every address its host resolves to is
    /// checked against the SSRF ranges when the vMCP connects. Unset: a member the operator
    /// runs (a cluster Service) or a local workload, not checked.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For an entry: the private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) may be reached.
    /// Loopback, link-local and metadata addresses never may.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_endpoint: bool,
    /// Headers sent with every request, as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Headers sent with every request whose values are in these environment variables
    /// (header → variable; read at start).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_from_env: BTreeMap<String, String>,
    /// A PEM file of CA certificates trusted for this backend besides the built-in roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Apiary's gateway: put before each of this backend's tool and prompt names exactly as
    /// written (`kube_` + `namespaces_list`), whatever `aggregation.conflictResolution` says;
    /// a routed call reaches the backend with its own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_prefix: Option<String>,
    /// Apiary's gateway: the value of `x-mcp-servername` (`<route namespace>/<route name>`) on
    /// every request routed to this backend, which then also carries `x-mcp-method` and, on a
    /// `tools/call`, `x-mcp-toolname` (the backend's own tool name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// The gateway's wristband header (Kuadrant's): it is never sent to a backend.
pub const AUTHORIZED_HEADER: &str = "x-mcp-authorized";

impl StaticBackend {
    /// Whether this backend is an MCPServerEntry (checked against the SSRF ranges).
    pub fn is_entry(&self) -> bool {
        self.kind.as_deref() == Some("entry")
    }
}

impl std::fmt::Debug for StaticBackend {
    // Plaintext header values may be credentials: only their names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticBackend")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("kind", &self.kind)
            .field("allow_private_endpoint", &self.allow_private_endpoint)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("headers_from_env", &self.headers_from_env)
            .field("ca_bundle_path", &self.ca_bundle_path)
            .field("tool_prefix", &self.tool_prefix)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// `aggregation`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregation {
    /// `prefix` (default), `priority` or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_resolution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_resolution_config: Option<ConflictResolutionConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<WorkloadTools>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude_all_tools: bool,
}

/// `aggregation.conflictResolutionConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictResolutionConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_format: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_order: Vec<String>,
}

/// `aggregation.tools[]`: one workload's filter and overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTools {
    #[serde(default)]
    pub workload: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, ToolOverride>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude_all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_ref: Option<Value>,
}

/// `aggregation.tools[].overrides.<tool>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `operational`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operational {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling: Option<FailureHandling>,
}

/// `operational.timeouts` (Go duration strings: `30s`, `1m30s`, `500ms`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_workload: BTreeMap<String, String>,
}

/// `operational.failureHandling`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureHandling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_failure_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// `operational.failureHandling.circuitBreaker`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `outgoingAuth`: how the vMCP authenticates to backends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingAuth {
    /// `inline` or `discovered` (Kubernetes; locally the same as inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<BackendAuth>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, BackendAuth>,
}

/// One backend's auth strategy (ToolHive's `BackendAuthStrategy`). Apiary carries out
/// `unauthenticated`, `header_injection`, `token_exchange` and `bearer_token` (Apiary's own: a
/// fixed token).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendAuth {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_injection: Option<HeaderInjection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<BearerToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchange>,
}

/// `tokenExchange` (ToolHive's): the caller's token is exchanged at an STS (RFC 8693) for one
/// addressed to the backend, which gets only that one. Needs `incomingAuth.type: oidc`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchange {
    #[serde(default)]
    pub token_url: String,
    #[serde(default)]
    pub client_id: String,
    /// The client secret as text (prefer `clientSecretEnv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The environment variable holding the client secret (read at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `access_token` (default) or `id_token`, short or as the RFC 8693 URN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
    /// The header carrying the exchanged token (bare); default `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_token_header_name: Option<String>,
    /// Apiary's own, for tests: an `http://` token URL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_http: bool,
}

impl std::fmt::Debug for TokenExchange {
    // The client secret is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret_env", &self.client_secret_env)
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .field("subject_token_type", &self.subject_token_type)
            .field("external_token_header_name", &self.external_token_header_name)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// The exchange as the policy crate's [`apiary_policy::outgoing::TokenExchanger`] takes it.
    pub fn to_policy(&self) -> Result<apiary_config::TokenExchangeConfig, String> {
        let subject_token_type = match self.subject_token_type.as_deref() {
            None | Some("" | "access_token" | "urn:ietf:params:oauth:token-type:access_token") => {
                apiary_config::SubjectTokenType::AccessToken
            }
            Some("id_token" | "urn:ietf:params:oauth:token-type:id_token") => apiary_config::SubjectTokenType::IdToken,
            Some(other) => return Err(format!("subjectTokenType {other:?} is not access_token or id_token")),
        };
        Ok(apiary_config::TokenExchangeConfig {
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            client_secret_env: self.client_secret_env.clone(),
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            header_name: self.external_token_header_name.clone(),
            subject_token_type,
            insecure_allow_http: self.insecure_allow_http,
        })
    }
}

/// `bearerToken`: `Authorization: Bearer <the value of tokenEnv>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerToken {
    #[serde(default)]
    pub token_env: String,
}

/// `headerInjection`: a header sent with every request to the backend.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderInjection {
    #[serde(default)]
    pub header_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value: Option<String>,
    /// The environment variable holding the value (read at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value_env: Option<String>,
}

impl std::fmt::Debug for HeaderInjection {
    // The value is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderInjection")
            .field("header_name", &self.header_name)
            .field("header_value_env", &self.header_value_env)
            .finish_non_exhaustive()
    }
}

/// One thing wrong with a file, at a field path (`backends[1].url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}{}", position(*line, *column))]
    Parse { path: String, message: String, line: Option<u64>, column: Option<u64> },
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
}

fn position(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a config file's text, at most [`MAX_CONFIG_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read = |source| ConfigError::Read { path: path.display().to_string(), source };
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)).map_err(read)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(read(std::io::Error::other(format!("larger than {MAX_CONFIG_BYTES} bytes"))));
    }
    Ok(text)
}

/// How tool (and prompt) name conflicts are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Every name gets the backend's prefix (`{workload}_` by default).
    Prefix { format: String },
    /// The first backend in this order keeps a name; the others lose it. A clash among
    /// backends none of which is listed keeps every claimant under `{workload}_`.
    Priority { order: Vec<String> },
    /// Names stay as the overrides make them; a name still claimed twice is dropped.
    Manual,
}

/// The default prefix format, ToolHive's.
pub const DEFAULT_PREFIX_FORMAT: &str = "{workload}_";
/// ToolHive's defaults.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
pub const DEFAULT_BREAKER_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many backends in one vMCP.
pub const MAX_BACKENDS: usize = 256;

impl VmcpConfig {
    /// Reads and parses a file (YAML or JSON); does not validate.
    pub fn load(path: &Path) -> Result<VmcpConfig, ConfigError> {
        Self::parse(&read_bounded(path)?)
    }

    /// Parses YAML (JSON is YAML too); does not validate.
    pub fn parse(text: &str) -> Result<VmcpConfig, ConfigError> {
        let mut track = serde_path_to_error::Track::new();
        let mut opts = serde_saphyr::Options::default();
        opts.with_snippet = false;
        let result = serde_saphyr::with_deserializer_from_str_with_options(text, opts, |de| {
            VmcpConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
        });
        result.map_err(|err| {
            let location = err.location();
            let path = track.path().to_string();
            let path = path.trim_end_matches(['?', '.']).to_owned();
            ConfigError::Parse {
                path: if path.is_empty() { ".".into() } else { path },
                message: err.to_string().lines().next().unwrap_or_default().to_owned(),
                line: location.map(|l| l.line()),
                column: location.map(|l| l.column()),
            }
        })
    }

    /// The config as YAML (what `apiary vmcp init` writes).
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(self).map_err(|e| e.to_string())
    }

    /// Checks everything Apiary acts on. Returns warnings for sections accepted but not
    /// carried out yet.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |path: String, message: &str| problems.push(Problem { path, message: message.to_owned() });
        if self.backends.len() > MAX_BACKENDS {
            bad("backends".into(), &format!("more than {MAX_BACKENDS} backends"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            if !valid_name(&b.name) {
                bad(format!("backends[{i}].name"), "must be 1-63 characters from a-z, 0-9, `.`, `_`, `-`");
            } else if !seen.insert(b.name.as_str()) {
                bad(format!("backends[{i}].name"), &format!("{:?} is used by an earlier backend", b.name));
            }
            if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
                bad(format!("backends[{i}].url"), "must be an http:// or https:// URL");
            }
            if !matches!(b.transport.as_str(), "streamable-http" | "sse" | "") {
                bad(format!("backends[{i}].transport"), "must be `streamable-http` or `sse`");
            }
            match b.kind.as_deref() {
                // The CRD allows an empty type: the same as none.
                None | Some("") => {}
                Some("entry") => {
                    // A literal address is refused now; a name is checked when connecting.
                    if let Err(apiary_config::ssrf::SsrfError::Blocked { host, class }) =
                        apiary_config::ssrf::check_url(&b.url, b.allow_private_endpoint)
                        && host.parse::<std::net::IpAddr>().is_ok()
                    {
                        bad(
                            format!("backends[{i}].url"),
                            &format!("host {host} is {class}; an entry may not reach it"),
                        );
                    }
                }
                Some(other) => bad(format!("backends[{i}].type"), &format!("unknown type {other:?} (only `entry`)")),
            }
            if b.allow_private_endpoint && !b.is_entry() {
                bad(format!("backends[{i}].allowPrivateEndpoint"), "applies to `type: entry` backends only");
            }
            let named = b.headers.keys().map(|h| ("headers", h, None));
            for (field, h, var) in named.chain(b.headers_from_env.iter().map(|(h, v)| ("headersFromEnv", h, Some(v)))) {
                if !valid_header_name(h) {
                    bad(format!("backends[{i}].{field}.{h}"), "not a valid HTTP header name");
                }
                if h.eq_ignore_ascii_case(AUTHORIZED_HEADER) {
                    bad(
                        format!("backends[{i}].{field}.{h}"),
                        "the gateway's wristband header is never sent to a backend",
                    );
                }
                if var.is_some_and(|v| v.trim().is_empty()) {
                    bad(format!("backends[{i}].{field}.{h}"), "names no environment variable");
                }
            }
            if b.server_name.as_deref().is_some_and(|n| n.is_empty() || !n.bytes().all(|c| c.is_ascii_graphic())) {
                bad(format!("backends[{i}].serverName"), "must be non-empty visible ASCII (an HTTP header value)");
            }
            if b.tool_prefix.as_deref().is_some_and(|p| p.chars().any(char::is_control)) {
                bad(format!("backends[{i}].toolPrefix"), "must not contain control characters");
            }
            if b.ca_bundle_path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                bad(format!("backends[{i}].caBundlePath"), "must not be empty");
            }
        }
        let names: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
        if let Some(agg) = &self.aggregation {
            match agg.conflict_resolution.as_deref() {
                None | Some("prefix" | "priority" | "manual") => {}
                Some(_) => bad("aggregation.conflictResolution".into(), "must be `prefix`, `priority` or `manual`"),
            }
            if let Some(cfg) = &agg.conflict_resolution_config {
                if let Some(f) = &cfg.prefix_format
                    && !f.contains("{workload}")
                {
                    bad("aggregation.conflictResolutionConfig.prefixFormat".into(), "must contain `{workload}`");
                }
                for (i, w) in cfg.priority_order.iter().enumerate() {
                    if !names.contains(&w.as_str()) {
                        bad(
                            format!("aggregation.conflictResolutionConfig.priorityOrder[{i}]"),
                            &format!("{w:?} is not a backend"),
                        );
                    }
                }
            }
            if agg.conflict_resolution.as_deref() == Some("priority")
                && agg.conflict_resolution_config.as_ref().is_none_or(|c| c.priority_order.is_empty())
            {
                bad(
                    "aggregation.conflictResolutionConfig.priorityOrder".into(),
                    "the priority strategy needs the backends in order",
                );
            }
            for (i, t) in agg.tools.iter().enumerate() {
                if !names.contains(&t.workload.as_str()) {
                    bad(format!("aggregation.tools[{i}].workload"), &format!("{:?} is not a backend", t.workload));
                }
                for (tool, o) in &t.overrides {
                    if o.name.as_deref().is_some_and(str::is_empty) {
                        bad(format!("aggregation.tools[{i}].overrides.{tool}.name"), "must not be empty");
                    }
                }
            }
        }
        if let Some(out) = &self.outgoing_auth {
            match out.source.as_deref() {
                None | Some("inline" | "discovered") => {}
                Some(_) => problems.push(Problem {
                    path: "outgoingAuth.source".into(),
                    message: "must be `inline` or `discovered`".into(),
                }),
            }
            if let Some(d) = &out.default {
                check_auth(&mut problems, "outgoingAuth.default", d);
            }
            for (name, a) in &out.backends {
                if !names.contains(&name.as_str()) {
                    problems.push(Problem {
                        path: format!("outgoingAuth.backends.{name}"),
                        message: format!("{name:?} is not a backend"),
                    });
                }
                check_auth(&mut problems, &format!("outgoingAuth.backends.{name}"), a);
            }
        }
        if let Some(op) = &self.operational {
            if let Some(t) = &op.timeouts {
                check_duration(&mut problems, "operational.timeouts.default", t.default.as_deref());
                for (w, d) in &t.per_workload {
                    check_duration(&mut problems, &format!("operational.timeouts.perWorkload.{w}"), Some(d));
                }
            }
            if let Some(f) = &op.failure_handling {
                check_duration(
                    &mut problems,
                    "operational.failureHandling.healthCheckInterval",
                    f.health_check_interval.as_deref(),
                );
                if let Some(cb) = &f.circuit_breaker {
                    check_duration(
                        &mut problems,
                        "operational.failureHandling.circuitBreaker.timeout",
                        cb.timeout.as_deref(),
                    );
                }
                if let Some(m) = &f.partial_failure_mode
                    && m != "fail"
                    && m != "best_effort"
                {
                    problems.push(Problem {
                        path: "operational.failureHandling.partialFailureMode".into(),
                        message: "must be `fail` or `best_effort`".into(),
                    });
                }
            }
        }
        if let Some(incoming) = &self.incoming_auth {
            check_incoming(&mut problems, incoming);
        }
        let oidc = self.incoming_auth.as_ref().is_some_and(|i| i.kind == "oidc");
        for b in &self.backends {
            if let Some((path, _)) = self.auth_of(&b.name).filter(|(_, a)| a.kind == "token_exchange")
                && !oidc
            {
                problems.push(Problem {
                    path: format!("{path}.type"),
                    message: format!(
                        "token_exchange for backend {:?} exchanges the caller's token, so callers must be \
                         authenticated: set incomingAuth.type oidc in this file",
                        b.name
                    ),
                });
                break;
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(self.warnings())
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.backends.is_empty() {
            out.push("no backends: the vMCP serves an empty catalog until the config lists some".to_owned());
        }
        let unsupported = [
            ("compositeTools", self.composite_tools.is_some()),
            ("compositeToolRefs", self.composite_tool_refs.is_some()),
            ("optimizer", self.optimizer.is_some()),
            ("telemetry", self.telemetry.is_some()),
            ("audit", self.audit.is_some()),
        ];
        for (section, present) in unsupported {
            if present {
                out.push(format!(
                    "`{section}` is accepted but not supported by apiary vmcp yet; it is ignored \
                     (incoming auth, Cedar, audit and telemetry come from the proxy's own flags)"
                ));
            }
        }
        if let Some(agg) = &self.aggregation {
            for (i, t) in agg.tools.iter().enumerate() {
                if t.tool_config_ref.is_some() {
                    out.push(format!("aggregation.tools[{i}].toolConfigRef is Kubernetes-only and is ignored"));
                }
            }
        }
        out
    }

    /// The file's `incomingAuth` as the proxy's policy layers take it (from a validated config).
    pub fn incoming_policy(&self) -> IncomingPolicy {
        let Some(incoming) = &self.incoming_auth else { return IncomingPolicy::default() };
        let oidc = incoming.oidc.as_ref().filter(|_| incoming.kind == "oidc").map(|o| apiary_config::OidcConfig {
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            jwks_url: o.jwks_url.clone(),
            introspection_url: o.introspection_url.clone(),
            client_id: o.client_id.clone(),
            client_secret: None,
            client_secret_env: o.client_secret_env.clone(),
            scopes: o.scopes.clone(),
            required_scopes: Vec::new(),
            resource_url: o.resource.clone(),
            insecure_allow_http: o.insecure_allow_http,
            jwks_min_refresh_secs: None,
        });
        let authz = incoming.authz.as_ref().map(|a| {
            let mut cedar = serde_json::json!({
                "policies": a.policies,
                "entities_json": a.entities_json.clone().unwrap_or_else(|| "[]".to_owned()),
            });
            for (key, value) in [
                ("group_claim_name", &a.group_claim_name),
                ("role_claim_name", &a.role_claim_name),
                ("group_entity_type", &a.group_entity_type),
                ("primary_upstream_provider", &a.primary_upstream_provider),
            ] {
                if let Some(v) = value {
                    cedar[key] = Value::String(v.clone());
                }
            }
            serde_json::json!({"version": "1.0", "type": "cedarv1", "cedar": cedar})
        });
        IncomingPolicy { oidc, local: incoming.kind == "local", authz }
    }

    /// The conflict resolution strategy.
    pub fn strategy(&self) -> Strategy {
        let agg = self.aggregation.as_ref();
        let cfg = agg.and_then(|a| a.conflict_resolution_config.as_ref());
        match agg.and_then(|a| a.conflict_resolution.as_deref()) {
            Some("priority") => Strategy::Priority { order: cfg.map(|c| c.priority_order.clone()).unwrap_or_default() },
            Some("manual") => Strategy::Manual,
            _ => Strategy::Prefix {
                format: cfg.and_then(|c| c.prefix_format.clone()).unwrap_or_else(|| DEFAULT_PREFIX_FORMAT.to_owned()),
            },
        }
    }

    /// Every header to send to `backend`: its `headers`, its `headersFromEnv` and its outgoing
    /// auth (its own strategy, else the default). Values from the environment are read now; a
    /// missing variable, or one header given twice, is an error naming the field.
    pub fn headers_for(&self, backend: &str) -> Result<Vec<(String, String)>, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid(vec![Problem { path, message }]);
        let env = |path: String, var: &str| {
            std::env::var(var).map_err(|_| invalid(path, format!("the environment variable {var:?} is not set")))
        };
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |path: String, name: &str, value: String| {
            if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(invalid(path, format!("header {name} is set twice for backend {backend:?}")));
            }
            out.push((name.to_owned(), value));
            Ok(())
        };
        if let Some((i, b)) = self.backends.iter().enumerate().find(|(_, b)| b.name == backend) {
            for (name, value) in &b.headers {
                add(format!("backends[{i}].headers.{name}"), name, value.clone())?;
            }
            for (name, var) in &b.headers_from_env {
                let path = format!("backends[{i}].headersFromEnv.{name}");
                add(path.clone(), name, env(path, var)?)?;
            }
        }
        let Some((path, auth)) = self.auth_of(backend) else { return Ok(out) };
        match (auth.kind.as_str(), &auth.header_injection, &auth.bearer_token) {
            ("header_injection", Some(h), _) => {
                let value = match (&h.header_value, &h.header_value_env) {
                    (Some(v), _) => v.clone(),
                    (None, Some(var)) => env(format!("{path}.headerInjection.headerValueEnv"), var)?,
                    (None, None) => return Ok(out),
                };
                add(format!("{path}.headerInjection"), &h.header_name, value)?;
            }
            ("bearer_token", _, Some(t)) => {
                let token = env(format!("{path}.bearerToken.tokenEnv"), &t.token_env)?;
                add(format!("{path}.bearerToken"), "Authorization", format!("Bearer {}", token.trim()))?;
            }
            _ => {}
        }
        if let ("token_exchange", Some(t)) = (auth.kind.as_str(), &auth.token_exchange) {
            let name = t.external_token_header_name.as_deref().unwrap_or("Authorization");
            if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(invalid(
                    format!("{path}.tokenExchange"),
                    format!("header {name} is set twice for backend {backend:?}"),
                ));
            }
        }
        Ok(out)
    }

    /// The outgoing auth of `backend` (its own strategy, else the default) and its field path.
    pub fn auth_of(&self, backend: &str) -> Option<(String, &BackendAuth)> {
        let auth = self.outgoing_auth.as_ref()?;
        match (auth.backends.get(backend), &auth.default) {
            (Some(a), _) => Some((format!("outgoingAuth.backends.{backend}"), a)),
            (None, Some(d)) => Some(("outgoingAuth.default".to_owned(), d)),
            (None, None) => None,
        }
    }

    /// The token exchange of `backend`, when its outgoing auth is one, and its field path.
    pub fn token_exchange_for(&self, backend: &str) -> Option<(String, &TokenExchange)> {
        let (path, auth) = self.auth_of(backend)?;
        auth.token_exchange
            .as_ref()
            .filter(|_| auth.kind == "token_exchange")
            .map(|t| (format!("{path}.tokenExchange"), t))
    }

    /// The bound on one request to `backend`.
    pub fn timeout_for(&self, backend: &str) -> Duration {
        let t = self.operational.as_ref().and_then(|o| o.timeouts.as_ref());
        t.and_then(|t| t.per_workload.get(backend))
            .and_then(|d| parse_duration(d).ok())
            .or_else(|| t.and_then(|t| t.default.as_deref()).and_then(|d| parse_duration(d).ok()))
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    fn failure_handling(&self) -> Option<&FailureHandling> {
        self.operational.as_ref().and_then(|o| o.failure_handling.as_ref())
    }

    pub fn health_interval(&self) -> Duration {
        self.failure_handling()
            .and_then(|f| f.health_check_interval.as_deref())
            .and_then(|d| parse_duration(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_HEALTH_INTERVAL)
    }

    /// `partialFailureMode: fail`: a list that misses a backend fails instead of answering
    /// without it (the default, `best_effort`, answers with the others).
    pub fn partial_failure_fails(&self) -> bool {
        self.failure_handling().and_then(|f| f.partial_failure_mode.as_deref()) == Some("fail")
    }

    pub fn unhealthy_threshold(&self) -> u32 {
        self.failure_handling().and_then(|f| f.unhealthy_threshold).unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD).max(1)
    }

    /// `(failureThreshold, timeout)` when the circuit breaker is enabled.
    pub fn circuit_breaker(&self) -> Option<(u32, Duration)> {
        let cb = self.failure_handling()?.circuit_breaker.as_ref().filter(|c| c.enabled)?;
        let timeout = cb.timeout.as_deref().and_then(|d| parse_duration(d).ok()).unwrap_or(DEFAULT_BREAKER_TIMEOUT);
        Some((cb.failure_threshold.unwrap_or(DEFAULT_BREAKER_THRESHOLD).max(1), timeout))
    }
}

fn check_auth(problems: &mut Vec<Problem>, path: &str, auth: &BackendAuth) {
    match auth.kind.as_str() {
        "unauthenticated" => {}
        "header_injection" => match &auth.header_injection {
            None => problems.push(Problem {
                path: format!("{path}.headerInjection"),
                message: "required for the header_injection type".into(),
            }),
            Some(h) => {
                if h.header_name.is_empty() {
                    problems.push(Problem {
                        path: format!("{path}.headerInjection.headerName"),
                        message: "required".into(),
                    });
                }
                if h.header_value.is_some() == h.header_value_env.is_some() {
                    problems.push(Problem {
                        path: format!("{path}.headerInjection"),
                        message: "set exactly one of headerValue and headerValueEnv".into(),
                    });
                }
            }
        },
        "bearer_token" => match &auth.bearer_token {
            Some(t) if !t.token_env.trim().is_empty() => {}
            _ => problems.push(Problem {
                path: format!("{path}.bearerToken.tokenEnv"),
                message: "required for the bearer_token type: the environment variable holding the token".into(),
            }),
        },
        "token_exchange" => match &auth.token_exchange {
            None => problems.push(Problem {
                path: format!("{path}.tokenExchange"),
                message: "required for the token_exchange type (at least tokenUrl, clientId and a secret)".into(),
            }),
            Some(t) => {
                let mut bad = |field: &str, message: String| {
                    problems.push(Problem { path: format!("{path}.tokenExchange{field}"), message });
                };
                if t.token_url.trim().is_empty() {
                    bad(".tokenUrl", "required".into());
                }
                if t.client_id.trim().is_empty() {
                    bad(".clientId", "required".into());
                }
                if t.client_secret.is_some() == t.client_secret_env.is_some() {
                    bad("", "set exactly one of clientSecret and clientSecretEnv".into());
                }
                if let Err(why) = t.to_policy() {
                    bad(".subjectTokenType", why);
                }
                if let Some(h) = &t.external_token_header_name
                    && !valid_header_name(h)
                {
                    bad(".externalTokenHeaderName", "not a valid HTTP header name".into());
                }
            }
        },
        "upstream_inject" | "aws_sts" | "obo" | "xaa" => problems.push(Problem {
            path: format!("{path}.type"),
            message: format!(
                "{:?} is not supported by apiary vmcp yet (unauthenticated, header_injection, token_exchange, \
                 bearer_token are)",
                auth.kind
            ),
        }),
        other => problems.push(Problem { path: format!("{path}.type"), message: format!("unknown type {other:?}") }),
    }
}

fn check_incoming(problems: &mut Vec<Problem>, incoming: &IncomingAuth) {
    let mut bad = |path: &str, message: &str| problems.push(Problem { path: path.into(), message: message.into() });
    match incoming.kind.as_str() {
        "anonymous" | "local" => {
            if incoming.oidc.is_some() {
                bad("incomingAuth.oidc", "set only with `type: oidc`");
            }
        }
        "oidc" => match &incoming.oidc {
            None => bad("incomingAuth.oidc", "required for `type: oidc` (at least its issuer)"),
            Some(o) if o.issuer.trim().is_empty() => bad("incomingAuth.oidc.issuer", "required"),
            Some(_) => {}
        },
        "" => bad("incomingAuth.type", "required: `anonymous`, `oidc` or `local`"),
        other => bad("incomingAuth.type", &format!("unknown type {other:?} (`anonymous`, `oidc` or `local`)")),
    }
    if let Some(a) = &incoming.authz {
        if a.kind != "cedar" {
            bad("incomingAuth.authz.type", &format!("must be `cedar`, not {:?}", a.kind));
        }
        if a.policies.is_empty() {
            bad("incomingAuth.authz.policies", "at least one Cedar policy (none would deny every request)");
        }
    }
}

fn check_duration(problems: &mut Vec<Problem>, path: &str, value: Option<&str>) {
    if let Some(v) = value
        && let Err(why) = parse_duration(v)
    {
        problems.push(Problem { path: path.to_owned(), message: why });
    }
}

/// An HTTP header name (RFC 9110 token).
fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Workload names: 1–63 characters from `a-z`, `0-9`, `.`, `_`, `-`, starting and ending
/// with a letter or digit (the RunConfig's rule).
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Parses a Go duration (`300ms`, `30s`, `1m30s`, `1.5h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like `30s`, `1m30s` or `500ms`");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TOOLHIVE_FILE: &str = r#"
name: my-vmcp
groupRef: engineering
incomingAuth:
  type: anonymous
outgoingAuth:
  source: inline
  default:
    type: unauthenticated
backends:
  - name: github
    url: http://127.0.0.1:8080/mcp
    transport: streamable-http
  - name: fetch
    url: http://127.0.0.1:8081/mcp
    transport: streamable-http
aggregation:
  conflictResolution: priority
  conflictResolutionConfig:
    priorityOrder: [github, fetch]
  tools:
    - workload: github
      filter: [create_issue]
      overrides:
        create_issue:
          name: gh_create_issue
          description: Make an issue
compositeTools:
  - name: deploy
    steps: [{id: a, tool: github.create_issue}]
optimizer:
  enabled: false
operational:
  timeouts:
    default: 45s
    perWorkload:
      fetch: 1m30s
  failureHandling:
    healthCheckInterval: 10s
    unhealthyThreshold: 2
    partialFailureMode: best_effort
    circuitBreaker:
      enabled: true
      failureThreshold: 4
      timeout: 20s
"#;

    #[test]
    fn a_toolhive_file_loads_with_warnings_for_what_is_not_supported() {
        let c = VmcpConfig::parse(TOOLHIVE_FILE).unwrap();
        let warnings = c.validate().unwrap();
        assert!(warnings.iter().any(|w| w.contains("compositeTools")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("optimizer")), "{warnings:?}");
        assert_eq!(c.strategy(), Strategy::Priority { order: vec!["github".into(), "fetch".into()] });
        assert_eq!(c.timeout_for("github"), Duration::from_secs(45));
        assert_eq!(c.timeout_for("fetch"), Duration::from_secs(90));
        assert_eq!(c.health_interval(), Duration::from_secs(10));
        assert_eq!(c.unhealthy_threshold(), 2);
        assert_eq!(c.circuit_breaker(), Some((4, Duration::from_secs(20))));
    }

    #[test]
    fn errors_name_the_field_path() {
        let text = "backends:\n  - name: a\n    url: ftp://x\n    transport: sse\n  - name: a\n    url: http://x/mcp\n    transport: carrier-pigeon\naggregation:\n  conflictResolution: random\n  tools:\n    - workload: nope\n";
        let err = VmcpConfig::parse(text).unwrap().validate().unwrap_err();
        let ConfigError::Invalid(problems) = err else { panic!("not a validation error") };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "backends[0].url",
                "backends[1].name",
                "backends[1].transport",
                "aggregation.conflictResolution",
                "aggregation.tools[0].workload"
            ]
        );
    }

    #[test]
    fn type_errors_name_the_field_path_too() {
        let err = VmcpConfig::parse("backends:\n  - name: a\n    url: [1, 2]\n").unwrap_err();
        let ConfigError::Parse { path, .. } = err else { panic!("not a parse error") };
        assert_eq!(path, "backends[0].url");
    }

    #[test]
    fn prefix_is_the_default() {
        let c = VmcpConfig::parse("backends: [{name: a, url: 'http://x/mcp', transport: streamable-http}]").unwrap();
        assert!(c.validate().unwrap().is_empty());
        assert_eq!(c.strategy(), Strategy::Prefix { format: "{workload}_".into() });
        assert_eq!(c.circuit_breaker(), None);
    }

    #[test]
    fn incoming_auth_maps_to_the_proxy_policy_and_bad_blocks_are_refused() {
        let base = "backends:\n  - {name: a, url: 'http://x/mcp', transport: streamable-http}\n";
        let ok = format!("{base}incomingAuth: {{type: anonymous}}\n");
        let c = VmcpConfig::parse(&ok).unwrap();
        assert!(c.validate().unwrap().is_empty());
        assert!(c.incoming_policy().is_open());

        let oidc = format!(
            "{base}incomingAuth:\n  type: oidc\n  oidc: {{issuer: 'https://idp.example', audience: vmcp, resource: 'https://vmcp.example/mcp', clientSecretEnv: SECRET_VAR, scopes: [openid]}}\n  authz:\n    type: cedar\n    policies: ['permit(principal, action, resource);']\n    groupClaimName: groups\n"
        );
        let c = VmcpConfig::parse(&oidc).unwrap();
        c.validate().unwrap();
        let p = c.incoming_policy();
        let o = p.oidc.as_ref().unwrap();
        assert_eq!((o.issuer.as_str(), o.audience.as_deref()), ("https://idp.example", Some("vmcp")));
        assert_eq!(o.resource_url.as_deref(), Some("https://vmcp.example/mcp"));
        assert_eq!(o.client_secret_env.as_deref(), Some("SECRET_VAR"));
        let doc = p.authz.unwrap();
        assert_eq!(doc["type"], "cedarv1");
        assert_eq!(doc["cedar"]["policies"][0], "permit(principal, action, resource);");
        assert_eq!(doc["cedar"]["entities_json"], "[]");
        assert_eq!(doc["cedar"]["group_claim_name"], "groups");

        let local = VmcpConfig::parse(&format!("{base}incomingAuth: {{type: local}}\n")).unwrap();
        local.validate().unwrap();
        assert!(local.incoming_policy().local);

        for (bad, path) in [
            ("incomingAuth: {type: oidc}\n", "incomingAuth.oidc"),
            ("incomingAuth: {type: oidc, oidc: {audience: x}}\n", "incomingAuth.oidc.issuer"),
            ("incomingAuth: {type: kerberos}\n", "incomingAuth.type"),
            ("incomingAuth: {type: anonymous, authz: {type: opa, policies: [x]}}\n", "incomingAuth.authz.type"),
            ("incomingAuth: {type: anonymous, authz: {type: cedar}}\n", "incomingAuth.authz.policies"),
        ] {
            let err = VmcpConfig::parse(&format!("{base}{bad}")).unwrap().validate().unwrap_err();
            let ConfigError::Invalid(p) = err else { panic!("{bad}: not a validation error") };
            assert_eq!(p[0].path, path, "{bad}");
        }
        // An unknown field is refused at parse time, with its path.
        for unknown in [
            "incomingAuth: {type: oidc, oidc: {issuer: 'https://i', audiance: x}}\n",
            "incomingAuth: {type: anonymous, authz: {type: cedar, policies: [x], polices: [y]}}\n",
        ] {
            let err = VmcpConfig::parse(&format!("{base}{unknown}")).unwrap_err();
            let ConfigError::Parse { path, message, .. } = err else { panic!("{unknown}: not a parse error") };
            assert!(path.starts_with("incomingAuth."), "{unknown}: {path}");
            assert!(message.contains("unknown field"), "{unknown}: {message}");
        }
    }

    #[test]
    fn outgoing_auth_header_injection_and_unsupported_types() {
        let base = "backends:\n  - {name: a, url: 'http://x/mcp', transport: streamable-http}\n  - {name: b, url: 'http://y/mcp', transport: streamable-http}\n";
        let good = format!(
            "{base}outgoingAuth:\n  source: inline\n  default: {{type: unauthenticated}}\n  backends:\n    b:\n      type: header_injection\n      headerInjection: {{headerName: X-Api-Key, headerValue: s3cret}}\n"
        );
        let c = VmcpConfig::parse(&good).unwrap();
        assert!(c.validate().unwrap().is_empty());
        assert!(c.headers_for("a").unwrap().is_empty());
        assert_eq!(c.headers_for("b").unwrap(), [("X-Api-Key".to_owned(), "s3cret".to_owned())]);
        assert!(!format!("{c:?}").contains("s3cret"), "the value is never printed");

        let env = format!(
            "{base}outgoingAuth:\n  default:\n    type: header_injection\n    headerInjection: {{headerName: X, headerValueEnv: APIARY_TEST_SURELY_UNSET_VAR}}\n"
        );
        let err = VmcpConfig::parse(&env).unwrap().headers_for("a").unwrap_err();
        assert!(err.to_string().contains("outgoingAuth.default.headerInjection.headerValueEnv"), "{err}");

        let bad =
            format!("{base}outgoingAuth:\n  backends:\n    b: {{type: aws_sts}}\n    zz: {{type: unauthenticated}}\n");
        let ConfigError::Invalid(p) = VmcpConfig::parse(&bad).unwrap().validate().unwrap_err() else { panic!() };
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["outgoingAuth.backends.b.type", "outgoingAuth.backends.zz"]);
    }

    #[test]
    fn token_exchange_is_read_and_needs_authenticated_callers() {
        let base = "backends:\n  - {name: a, url: 'http://x/mcp'}\n  - {name: b, url: 'http://y/mcp'}\n";
        let te = "outgoingAuth:\n  backends:\n    a:\n      type: token_exchange\n      tokenExchange: {tokenUrl: 'https://sts.example.com/token', clientId: gw, clientSecretEnv: PATH, audience: backend, scopes: [openid], subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token'}\n";
        for incoming in ["", "incomingAuth: {type: anonymous}\n", "incomingAuth: {type: local}\n"] {
            let err = VmcpConfig::parse(&format!("{base}{te}{incoming}")).unwrap().validate().unwrap_err();
            let text = err.to_string();
            assert!(text.contains("outgoingAuth.backends.a.type") && text.contains("incomingAuth.type oidc"), "{text}");
        }
        let oidc = "incomingAuth: {type: oidc, oidc: {issuer: 'https://idp.example.com'}}\n";
        let c = VmcpConfig::parse(&format!("{base}{te}{oidc}")).unwrap();
        assert!(c.validate().unwrap().is_empty());
        let (path, t) = c.token_exchange_for("a").unwrap();
        assert_eq!(path, "outgoingAuth.backends.a.tokenExchange");
        assert!(c.token_exchange_for("b").is_none());
        let p = t.to_policy().unwrap();
        assert_eq!(
            (p.audience.as_deref(), p.client_secret_env.as_deref(), p.subject_token_type, p.header_name),
            (Some("backend"), Some("PATH"), apiary_config::SubjectTokenType::AccessToken, None)
        );
        assert!(c.headers_for("a").unwrap().is_empty(), "the exchanged token is per caller, never a fixed header");

        // A header given twice (the exchange's and a plain one) is refused.
        let twice = format!(
            "backends:\n  - {{name: a, url: 'http://x/mcp', headers: {{authorization: x}}}}\n  - {{name: b, url: 'http://y/mcp'}}\n{te}{oidc}"
        );
        let err = VmcpConfig::parse(&twice).unwrap().headers_for("a").unwrap_err();
        assert!(err.to_string().contains("set twice"), "{err}");

        // Incomplete blocks name the field.
        for (block, path) in [
            ("{type: token_exchange}", "outgoingAuth.backends.a.tokenExchange"),
            (
                "{type: token_exchange, tokenExchange: {tokenUrl: 'https://s/t', clientId: gw}}",
                "outgoingAuth.backends.a.tokenExchange",
            ),
            (
                "{type: token_exchange, tokenExchange: {clientId: gw, clientSecret: s}}",
                "outgoingAuth.backends.a.tokenExchange.tokenUrl",
            ),
            (
                "{type: token_exchange, tokenExchange: {tokenUrl: 'https://s/t', clientId: gw, clientSecret: s, subjectTokenType: jwt}}",
                "outgoingAuth.backends.a.tokenExchange.subjectTokenType",
            ),
        ] {
            let text = format!("{base}outgoingAuth:\n  backends:\n    a: {block}\n{oidc}");
            let ConfigError::Invalid(p) = VmcpConfig::parse(&text).unwrap().validate().unwrap_err() else { panic!() };
            assert_eq!(p[0].path, path, "{block}: {p:?}");
        }
        let err = VmcpConfig::parse(&format!(
            "{base}outgoingAuth:\n  default: {{type: token_exchange, tokenExchange: {{tokenUrl: x, nope: 1}}}}\n"
        ));
        assert!(err.is_err(), "unknown fields of the block are refused");
    }

    #[test]
    fn backend_fields_headers_and_bearer_token() {
        // Tests may not set variables (no unsafe); PATH is set wherever tests run.
        let path = std::env::var("PATH").unwrap();
        let text = "backends:\n  - name: e\n    url: 'https://mcp.example.com/mcp'\n    transport: sse\n    type: entry\n    allowPrivateEndpoint: true\n    headers: {X-Plain: one}\n    headersFromEnv: {X-Env: PATH}\n    caBundlePath: /etc/vmcp-ca/e/ca.crt\noutgoingAuth:\n  backends:\n    e: {type: bearer_token, bearerToken: {tokenEnv: PATH}}\n";
        let c = VmcpConfig::parse(text).unwrap();
        assert!(c.validate().unwrap().is_empty());
        let b = &c.backends[0];
        assert!(b.is_entry() && b.allow_private_endpoint);
        assert_eq!(b.ca_bundle_path.as_deref(), Some("/etc/vmcp-ca/e/ca.crt"));
        assert_eq!(
            c.headers_for("e").unwrap(),
            [
                ("X-Plain".to_owned(), "one".to_owned()),
                ("X-Env".to_owned(), path.clone()),
                ("Authorization".to_owned(), format!("Bearer {}", path.trim()))
            ]
        );
        assert!(!format!("{c:?}").contains("one\""), "plaintext header values are not printed: {c:?}");

        // A header given twice (here by the backend and by its auth) is refused, naming the field.
        let twice = "backends:\n  - {name: a, url: 'http://x/mcp', headers: {authorization: x}}\noutgoingAuth:\n  default: {type: header_injection, headerInjection: {headerName: Authorization, headerValue: y}}\n";
        let err = VmcpConfig::parse(twice).unwrap().headers_for("a").unwrap_err();
        assert!(err.to_string().contains("outgoingAuth.default.headerInjection"), "{err}");
        // A missing variable names the field.
        let unset =
            "backends:\n  - {name: a, url: 'http://x/mcp', headersFromEnv: {X-A: APIARY_TEST_SURELY_UNSET_VAR}}\n";
        let err = VmcpConfig::parse(unset).unwrap().headers_for("a").unwrap_err();
        assert!(err.to_string().contains("backends[0].headersFromEnv.X-A"), "{err}");
    }

    #[test]
    fn bad_backend_fields_are_refused_with_their_path() {
        // Unknown fields: at parse time.
        for (text, path) in [
            ("backends:\n  - {name: a, url: 'http://x/mcp', allowPrivateEndpoints: true}\n", "backends[0]"),
            (
                "backends:\n  - {name: a, url: 'http://x/mcp'}\noutgoingAuth:\n  backends:\n    a: {type: bearer_token, bearer: {tokenEnv: X}}\n",
                "outgoingAuth.backends.a",
            ),
        ] {
            let ConfigError::Parse { path: p, message, .. } = VmcpConfig::parse(text).unwrap_err() else {
                panic!("{text}: not a parse error")
            };
            assert!(p.starts_with(path) && message.contains("unknown field"), "{text}: {p}: {message}");
        }
        // Bad values: at validation.
        let text = "backends:\n  - {name: a, url: 'http://127.0.0.1:9/mcp', type: entry}\n  - {name: b, url: 'http://10.0.0.1/mcp', type: entry}\n  - {name: c, url: 'http://x/mcp', type: remote}\n  - {name: d, url: 'http://x/mcp', allowPrivateEndpoint: true}\n  - {name: e, url: 'http://x/mcp', headers: {'Bad Header': x}}\noutgoingAuth:\n  backends:\n    e: {type: bearer_token}\n";
        let ConfigError::Invalid(p) = VmcpConfig::parse(text).unwrap().validate().unwrap_err() else { panic!() };
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "backends[0].url",
                "backends[1].url",
                "backends[2].type",
                "backends[3].allowPrivateEndpoint",
                "backends[4].headers.Bad Header",
                "outgoingAuth.backends.e.bearerToken.tokenEnv"
            ]
        );
        assert!(p[0].message.contains("loopback"), "{}", p[0]);
        // A private literal address is fine once allowed.
        let ok = "backends:\n  - {name: b, url: 'http://10.0.0.1/mcp', type: entry, allowPrivateEndpoint: true}\n";
        VmcpConfig::parse(ok).unwrap().validate().unwrap();
    }

    #[test]
    fn zero_backends_serve_an_empty_catalog_with_a_warning() {
        let c = VmcpConfig::parse("name: empty\ngroupRef: g\n").unwrap();
        let warnings = c.validate().unwrap();
        assert!(warnings.iter().any(|w| w.contains("no backends")), "{warnings:?}");
    }

    #[test]
    fn gateway_fields_are_read_and_checked() {
        let text =
            "backends:\n  - {name: a, url: 'http://x/mcp', toolPrefix: kube_, serverName: mcp-test/kubernetes-mcp}\n";
        let c = VmcpConfig::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.backends[0].tool_prefix.as_deref(), Some("kube_"));
        assert_eq!(c.backends[0].server_name.as_deref(), Some("mcp-test/kubernetes-mcp"));
        let bad = "backends:\n  - {name: a, url: 'http://x/mcp', serverName: 'a b', headers: {X-MCP-Authorized: 'true'}}\n  - {name: b, url: 'http://x/mcp', serverName: '', toolPrefix: \"p\\n\"}\n";
        let ConfigError::Invalid(p) = VmcpConfig::parse(bad).unwrap().validate().unwrap_err() else { panic!() };
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "backends[0].headers.X-MCP-Authorized",
                "backends[0].serverName",
                "backends[1].serverName",
                "backends[1].toolPrefix"
            ]
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
