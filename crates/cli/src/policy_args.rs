//! The authentication and policy flags of `apiary run` and `apiary proxy` (ToolHive's names),
//! turned into `RunConfig.policy`. Every file is read and checked here, before anything runs,
//! so a bad policy, audit or override file fails with its path, line and reason.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use apiary_config::{
    AuthMode, OidcConfig, OutgoingConfig, PolicyConfig, RemoteAuthSettings, SubjectTokenType, TelemetryConfig,
    TokenExchangeConfig,
};
use apiary_policy::audit::AuditConfig;
use apiary_policy::authn::{Authenticator, AuthnOptions};
use apiary_policy::authz::Authorizer;
use apiary_policy::outgoing::Outgoing;
use apiary_policy::tools::{ToolPolicy, parse_overrides_file};
use serde_json::Value;

/// Largest policy, audit or override file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Where `--remote-auth-client-secret` may also come from, and the variable a RunConfig names
/// for it (the value itself is never saved).
pub const CLIENT_SECRET_ENV: &str = "APIARY_REMOTE_AUTH_CLIENT_SECRET";

#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Authentication and policy")]
pub struct PolicyArgs {
    /// OIDC issuer: clients must present a bearer token it issued (turns authentication on)
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// Expected audience (`aud`) of tokens
    #[arg(long, value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// JWKS URL (default: from the issuer's discovery document)
    #[arg(long, value_name = "URL")]
    pub oidc_jwks_url: Option<String>,
    /// RFC 7662 introspection endpoint, for opaque (non-JWT) tokens
    #[arg(long, value_name = "URL")]
    pub oidc_introspection_url: Option<String>,
    /// Client id for the introspection endpoint
    #[arg(long, value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// Client secret for the introspection endpoint
    #[arg(long, value_name = "SECRET", env = "APIARY_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Scopes advertised to clients (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "SCOPES")]
    pub oidc_scopes: Vec<String>,
    /// Scopes every token must grant (comma-separated; Apiary's own flag): a valid token
    /// without one gets 403 insufficient_scope. Advertised too
    #[arg(long, value_delimiter = ',', value_name = "SCOPES")]
    pub oidc_required_scopes: Vec<String>,
    /// Who callers are without --oidc-issuer: anonymous, or local (every caller is the OS user
    /// running the proxy, `Client::"<user>"` to Cedar; unchecked, as ToolHive's local mode)
    #[arg(long, value_name = "MODE", value_parser = ["anonymous", "local"])]
    pub auth_mode: Option<String>,
    /// Allow plain-HTTP issuer, JWKS and introspection URLs (for tests only)
    #[arg(long)]
    pub oidc_insecure_allow_http: bool,
    /// This server's public URL (RFC 9728 `resource`); serves /.well-known/oauth-protected-resource
    #[arg(long, value_name = "URL")]
    pub resource_url: Option<String>,
    /// Authorization policy file (ToolHive's format: cedarv1, JSON or YAML); default deny once set
    #[arg(long, value_name = "FILE")]
    pub authz_config: Option<PathBuf>,
    /// Record one audit event per MCP request (to stdout unless --audit-config names a logFile)
    #[arg(long)]
    pub enable_audit: bool,
    /// Audit configuration file (ToolHive's format); implies --enable-audit
    #[arg(long, value_name = "FILE")]
    pub audit_config: Option<PathBuf>,
    /// Only these tools are listed and callable (comma-separated server tool names)
    #[arg(long, value_delimiter = ',', value_name = "TOOLS")]
    pub tools: Vec<String>,
    /// Tool renames and descriptions (ToolHive's `{"toolsOverride": {…}}` file)
    #[arg(long, value_name = "FILE")]
    pub tools_override: Option<PathBuf>,

    /// RFC 8693: exchange the caller's token at this STS token endpoint for the upstream's
    #[arg(long, value_name = "URL", help_heading = "Upstream credentials")]
    pub token_exchange_url: Option<String>,
    /// Client id of the exchanging party
    #[arg(long, value_name = "ID", help_heading = "Upstream credentials")]
    pub token_exchange_client_id: Option<String>,
    /// Its secret
    #[arg(
        long,
        value_name = "SECRET",
        env = "APIARY_TOKEN_EXCHANGE_CLIENT_SECRET",
        hide_env_values = true,
        help_heading = "Upstream credentials"
    )]
    pub token_exchange_client_secret: Option<String>,
    /// File holding its secret
    #[arg(long, value_name = "FILE", help_heading = "Upstream credentials")]
    pub token_exchange_client_secret_file: Option<PathBuf>,
    /// Audience of the exchanged token
    #[arg(long, value_name = "AUD", help_heading = "Upstream credentials")]
    pub token_exchange_audience: Option<String>,
    /// Scopes of the exchanged token (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "SCOPES", help_heading = "Upstream credentials")]
    pub token_exchange_scopes: Vec<String>,
    /// Header carrying the exchanged token (default Authorization, as a Bearer token)
    #[arg(long, value_name = "NAME", help_heading = "Upstream credentials")]
    pub token_exchange_header_name: Option<String>,
    /// What the caller's token is: access_token or id_token
    #[arg(long, value_name = "TYPE", value_parser = ["access_token", "id_token"], help_heading = "Upstream credentials")]
    pub token_exchange_subject_token_type: Option<String>,
    /// A fixed bearer token for the upstream
    #[arg(
        long,
        value_name = "TOKEN",
        env = "APIARY_REMOTE_AUTH_BEARER_TOKEN",
        hide_env_values = true,
        help_heading = "Upstream credentials"
    )]
    pub remote_auth_bearer_token: Option<String>,
    /// File holding a fixed bearer token for the upstream
    #[arg(long, value_name = "FILE", help_heading = "Upstream credentials")]
    pub remote_auth_bearer_token_file: Option<PathBuf>,
    /// A header added to every upstream request, Name=Value (repeatable)
    #[arg(long, value_name = "NAME=VALUE", help_heading = "Upstream credentials")]
    pub remote_forward_headers: Vec<String>,
    /// A header whose value is the secret NAME (environment variable TOOLHIVE_SECRET_<NAME>), Header=NAME (repeatable)
    #[arg(long, value_name = "HEADER=SECRET", help_heading = "Upstream credentials")]
    pub remote_forward_headers_secret: Vec<String>,

    /// Log in to the remote server's authorization server (OAuth, PKCE) before it starts, and
    /// send the remote fresh access tokens of that login. The login's URL is printed (or a
    /// browser opens) in this terminal; the session is kept in the state directory, so `apiary
    /// start`/`restart` resume it without a new login while its refresh token is valid.
    /// Implied by every other --remote-auth-* login flag
    #[arg(long, help_heading = "Remote login (OAuth)")]
    pub remote_auth: bool,
    /// Authorization server (issuer URL) [default: discovered from the remote's 401, RFC 9728]
    #[arg(long, value_name = "URL", help_heading = "Remote login (OAuth)")]
    pub remote_auth_issuer: Option<String>,
    /// Authorization endpoint [default: from the issuer's metadata]
    #[arg(long, value_name = "URL", help_heading = "Remote login (OAuth)")]
    pub remote_auth_authorize_url: Option<String>,
    /// Token endpoint [default: from the issuer's metadata]
    #[arg(long, value_name = "URL", help_heading = "Remote login (OAuth)")]
    pub remote_auth_token_url: Option<String>,
    /// OAuth client id [default: register a client dynamically, RFC 7591]
    #[arg(long, value_name = "ID", help_heading = "Remote login (OAuth)")]
    pub remote_auth_client_id: Option<String>,
    /// OAuth client secret. Never saved: a detached proxy gets it in its environment, and a
    /// later `apiary start` needs $APIARY_REMOTE_AUTH_CLIENT_SECRET set (or use the -file flag)
    #[arg(
        long,
        value_name = "SECRET",
        env = CLIENT_SECRET_ENV,
        hide_env_values = true,
        help_heading = "Remote login (OAuth)"
    )]
    pub remote_auth_client_secret: Option<String>,
    /// File holding the OAuth client secret (read again at every start)
    #[arg(long, value_name = "FILE", help_heading = "Remote login (OAuth)")]
    pub remote_auth_client_secret_file: Option<PathBuf>,
    /// Scopes to ask for (comma-separated) [default: those the remote advertises]
    #[arg(long, value_delimiter = ',', value_name = "SCOPES", help_heading = "Remote login (OAuth)")]
    pub remote_auth_scopes: Vec<String>,
    /// Name of the authorization request's scope parameter [default: scope]
    #[arg(long, value_name = "NAME", help_heading = "Remote login (OAuth)")]
    pub remote_auth_scope_param_name: Option<String>,
    /// RFC 8707 resource indicator [default: the remote's own, from its metadata]
    #[arg(long, value_name = "URI", help_heading = "Remote login (OAuth)")]
    pub remote_auth_resource: Option<String>,
    /// Port of the login's callback on 127.0.0.1 (0: any free port) [default: 8666]
    #[arg(long, value_name = "PORT", help_heading = "Remote login (OAuth)")]
    pub remote_auth_callback_port: Option<u16>,
    /// How long the login may take, e.g. 30s, 2m [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Remote login (OAuth)")]
    pub remote_auth_timeout: Option<std::time::Duration>,
    /// Print the login URL instead of opening a browser
    #[arg(long, help_heading = "Remote login (OAuth)")]
    pub remote_auth_skip_browser: bool,
    /// Allow plain-HTTP authorization server URLs (for tests only)
    #[arg(long, help_heading = "Remote login (OAuth)")]
    pub remote_auth_insecure_allow_http: bool,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// ToolHive's `--otel-*` flags, turned into `RunConfig.telemetry` by [`PolicyArgs::to_telemetry`].
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Telemetry")]
pub struct TelemetryArgs {
    /// OTLP/HTTP collector for traces: host:port[/path] (HTTPS unless --otel-insecure) or an http(s) URL
    #[arg(long, value_name = "ENDPOINT")]
    pub otel_endpoint: Option<String>,
    /// Header sent with every export, key=value (repeatable; e.g. an API key)
    #[arg(long, value_name = "KEY=VALUE")]
    pub otel_headers: Vec<String>,
    /// Plain HTTP to the collector
    #[arg(long)]
    pub otel_insecure: bool,
    /// service.name of the spans [default: apiary-<name>]
    #[arg(long, value_name = "NAME")]
    pub otel_service_name: Option<String>,
    /// Fraction of new traces sampled, 0.0–1.0 [default: 0.1]
    #[arg(long, value_name = "RATE")]
    pub otel_sampling_rate: Option<apiary_config::SamplingRate>,
    /// Export traces when --otel-endpoint is set [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub otel_tracing_enabled: Option<bool>,
    /// Export metrics over OTLP (not supported yet: only false is accepted; scrape /metrics)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub otel_metrics_enabled: Option<bool>,
    /// Serve Prometheus /metrics on the diagnostics listener [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub otel_enable_prometheus_metrics_path: Option<bool>,
    /// Address of the diagnostics listener (/metrics) [default: 127.0.0.1:9464, or a free port if busy]
    #[arg(long, value_name = "IP:PORT")]
    pub diagnostics_address: Option<String>,
}

impl PolicyArgs {
    /// The first policy flag given, if any (for "cannot be combined with --from-config").
    pub fn first_given(&self) -> Option<&'static str> {
        let t = &self.telemetry;
        let given: [(bool, &'static str); 51] = [
            (self.oidc_issuer.is_some(), "--oidc-issuer"),
            (self.oidc_audience.is_some(), "--oidc-audience"),
            (self.oidc_jwks_url.is_some(), "--oidc-jwks-url"),
            (self.oidc_introspection_url.is_some(), "--oidc-introspection-url"),
            (self.oidc_client_id.is_some(), "--oidc-client-id"),
            (self.oidc_client_secret.is_some(), "--oidc-client-secret"),
            (!self.oidc_scopes.is_empty(), "--oidc-scopes"),
            (!self.oidc_required_scopes.is_empty(), "--oidc-required-scopes"),
            (self.auth_mode.is_some(), "--auth-mode"),
            (self.oidc_insecure_allow_http, "--oidc-insecure-allow-http"),
            (self.resource_url.is_some(), "--resource-url"),
            (self.authz_config.is_some(), "--authz-config"),
            (self.enable_audit, "--enable-audit"),
            (self.audit_config.is_some(), "--audit-config"),
            (!self.tools.is_empty(), "--tools"),
            (self.tools_override.is_some(), "--tools-override"),
            (self.token_exchange_url.is_some(), "--token-exchange-url"),
            (self.token_exchange_client_id.is_some(), "--token-exchange-client-id"),
            (self.token_exchange_client_secret.is_some(), "--token-exchange-client-secret"),
            (self.token_exchange_client_secret_file.is_some(), "--token-exchange-client-secret-file"),
            (self.token_exchange_audience.is_some(), "--token-exchange-audience"),
            (!self.token_exchange_scopes.is_empty(), "--token-exchange-scopes"),
            (self.token_exchange_header_name.is_some(), "--token-exchange-header-name"),
            (self.token_exchange_subject_token_type.is_some(), "--token-exchange-subject-token-type"),
            (self.remote_auth_bearer_token.is_some(), "--remote-auth-bearer-token"),
            (self.remote_auth_bearer_token_file.is_some(), "--remote-auth-bearer-token-file"),
            (!self.remote_forward_headers.is_empty(), "--remote-forward-headers"),
            (!self.remote_forward_headers_secret.is_empty(), "--remote-forward-headers-secret"),
            (self.remote_auth, "--remote-auth"),
            (self.remote_auth_issuer.is_some(), "--remote-auth-issuer"),
            (self.remote_auth_authorize_url.is_some(), "--remote-auth-authorize-url"),
            (self.remote_auth_token_url.is_some(), "--remote-auth-token-url"),
            (self.remote_auth_client_id.is_some(), "--remote-auth-client-id"),
            (self.remote_auth_client_secret.is_some(), "--remote-auth-client-secret"),
            (self.remote_auth_client_secret_file.is_some(), "--remote-auth-client-secret-file"),
            (!self.remote_auth_scopes.is_empty(), "--remote-auth-scopes"),
            (self.remote_auth_scope_param_name.is_some(), "--remote-auth-scope-param-name"),
            (self.remote_auth_resource.is_some(), "--remote-auth-resource"),
            (self.remote_auth_callback_port.is_some(), "--remote-auth-callback-port"),
            (self.remote_auth_timeout.is_some(), "--remote-auth-timeout"),
            (self.remote_auth_skip_browser, "--remote-auth-skip-browser"),
            (self.remote_auth_insecure_allow_http, "--remote-auth-insecure-allow-http"),
            (t.otel_endpoint.is_some(), "--otel-endpoint"),
            (!t.otel_headers.is_empty(), "--otel-headers"),
            (t.otel_insecure, "--otel-insecure"),
            (t.otel_service_name.is_some(), "--otel-service-name"),
            (t.otel_sampling_rate.is_some(), "--otel-sampling-rate"),
            (t.otel_tracing_enabled.is_some(), "--otel-tracing-enabled"),
            (t.otel_metrics_enabled.is_some(), "--otel-metrics-enabled"),
            (t.otel_enable_prometheus_metrics_path.is_some(), "--otel-enable-prometheus-metrics-path"),
            (t.diagnostics_address.is_some(), "--diagnostics-address"),
        ];
        given.iter().find(|(set, _)| *set).map(|(_, flag)| *flag)
    }

    /// The telemetry settings these flags describe, checked as the proxy will read them.
    pub fn to_telemetry(&self) -> anyhow::Result<TelemetryConfig> {
        let a = &self.telemetry;
        let mut t = TelemetryConfig {
            diagnostics_address: a.diagnostics_address.clone(),
            endpoint: a.otel_endpoint.clone(),
            insecure: a.otel_insecure,
            service_name: a.otel_service_name.clone(),
            ..TelemetryConfig::default()
        };
        if let Some(rate) = a.otel_sampling_rate {
            t.sampling_rate = rate;
        }
        if let Some(on) = a.otel_tracing_enabled {
            t.tracing_enabled = on;
        }
        if let Some(on) = a.otel_metrics_enabled {
            t.metrics_enabled = on;
        }
        if let Some(on) = a.otel_enable_prometheus_metrics_path {
            t.prometheus_metrics_path = on;
        }
        for kv in &a.otel_headers {
            // The value may be a secret: errors name only the key.
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--otel-headers: expected key=value, got a value without '='");
            };
            if t.headers.insert(k.trim().to_owned(), v.to_owned()).is_some() {
                bail!("--otel-headers: {} given twice", k.trim());
            }
        }
        check_telemetry(&t, "--otel-* flags")?;
        Ok(t)
    }

    /// The policy these flags describe, every file read and checked (the telemetry flags too,
    /// so a bad one is refused here whatever the caller does with them).
    pub fn to_policy(&self) -> anyhow::Result<PolicyConfig> {
        self.to_telemetry()?;
        let mut policy = PolicyConfig::default();
        let oidc_detail = [
            (self.oidc_audience.is_some(), "--oidc-audience"),
            (self.oidc_jwks_url.is_some(), "--oidc-jwks-url"),
            (self.oidc_introspection_url.is_some(), "--oidc-introspection-url"),
            (self.oidc_client_id.is_some(), "--oidc-client-id"),
            (self.oidc_client_secret.is_some(), "--oidc-client-secret"),
            (!self.oidc_scopes.is_empty(), "--oidc-scopes"),
            (!self.oidc_required_scopes.is_empty(), "--oidc-required-scopes"),
            (self.oidc_insecure_allow_http, "--oidc-insecure-allow-http"),
            (self.resource_url.is_some(), "--resource-url"),
        ];
        match &self.oidc_issuer {
            Some(issuer) => {
                policy.oidc = Some(OidcConfig {
                    issuer: issuer.clone(),
                    audience: self.oidc_audience.clone(),
                    jwks_url: self.oidc_jwks_url.clone(),
                    introspection_url: self.oidc_introspection_url.clone(),
                    client_id: self.oidc_client_id.clone(),
                    client_secret: self.oidc_client_secret.clone(),
                    client_secret_env: None,
                    scopes: self.oidc_scopes.clone(),
                    required_scopes: self.oidc_required_scopes.clone(),
                    resource_url: self.resource_url.clone(),
                    insecure_allow_http: self.oidc_insecure_allow_http,
                    jwks_min_refresh_secs: None,
                });
            }
            None => {
                if let Some((_, flag)) = oidc_detail.iter().find(|(set, _)| *set) {
                    bail!("{flag} needs --oidc-issuer (authentication is off without an issuer)");
                }
            }
        }
        if self.auth_mode.as_deref() == Some("local") {
            if self.oidc_issuer.is_some() {
                bail!("--auth-mode local cannot be combined with --oidc-issuer");
            }
            policy.auth_mode = AuthMode::Local;
        }
        if let Some(path) = &self.authz_config {
            let text = read(path)?;
            Authorizer::from_text(&text, &path.display().to_string())?;
            policy.authz = Some(document(&text, path)?);
        }
        if let Some(path) = &self.audit_config {
            let text = read(path)?;
            AuditConfig::from_text(&text, &path.display().to_string())?;
            policy.audit = Some(document(&text, path)?);
        } else if self.enable_audit {
            policy.audit = Some(serde_json::json!({}));
        }
        policy.tools.filter = self.tools.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        if let Some(path) = &self.tools_override {
            let text = read(path)?;
            policy.tools.overrides = parse_overrides_file(&text, &path.display().to_string())?;
        }
        policy.outgoing = self.outgoing()?;
        if let Some(oidc) = &policy.oidc {
            Authenticator::new(oidc, AuthnOptions::default()).context("--oidc-issuer and the other --oidc-* flags")?;
        }
        if !policy.outgoing.is_empty() {
            let mut probe = policy.outgoing.clone();
            if let Some(r) = probe.remote_auth.as_mut() {
                // Given on the command line: this process has it, whatever its environment says.
                r.client_secret.clone_from(&self.remote_auth_client_secret);
            }
            Outgoing::check(&probe).context("the upstream credential flags")?;
            if policy.outgoing.token_exchange.is_some() && policy.oidc.is_none() {
                bail!("--token-exchange-url needs --oidc-issuer: only an authenticated caller's token is exchanged");
            }
        }
        if !policy.tools.is_empty() {
            ToolPolicy::new(&policy.tools).context("--tools / --tools-override")?;
        }
        Ok(policy)
    }
}

impl PolicyArgs {
    /// The upstream credentials these flags describe.
    fn outgoing(&self) -> anyhow::Result<OutgoingConfig> {
        let mut out = OutgoingConfig::default();
        let exchange_detail = [
            (self.token_exchange_client_id.is_some(), "--token-exchange-client-id"),
            (self.token_exchange_client_secret.is_some(), "--token-exchange-client-secret"),
            (self.token_exchange_client_secret_file.is_some(), "--token-exchange-client-secret-file"),
            (self.token_exchange_audience.is_some(), "--token-exchange-audience"),
            (!self.token_exchange_scopes.is_empty(), "--token-exchange-scopes"),
            (self.token_exchange_header_name.is_some(), "--token-exchange-header-name"),
            (self.token_exchange_subject_token_type.is_some(), "--token-exchange-subject-token-type"),
        ];
        match &self.token_exchange_url {
            Some(url) => {
                let client_id = self
                    .token_exchange_client_id
                    .clone()
                    .context("--token-exchange-url needs --token-exchange-client-id")?;
                let client_secret = given_or_read(
                    self.token_exchange_client_secret.as_deref(),
                    self.token_exchange_client_secret_file.as_deref(),
                    "--token-exchange-client-secret",
                )?;
                out.token_exchange = Some(TokenExchangeConfig {
                    token_url: url.clone(),
                    client_id,
                    client_secret,
                    client_secret_env: None,
                    audience: self.token_exchange_audience.clone(),
                    scopes: self.token_exchange_scopes.clone(),
                    header_name: self.token_exchange_header_name.clone(),
                    subject_token_type: match self.token_exchange_subject_token_type.as_deref() {
                        Some("id_token") => SubjectTokenType::IdToken,
                        _ => SubjectTokenType::AccessToken,
                    },
                    insecure_allow_http: self.oidc_insecure_allow_http,
                });
            }
            None => {
                if let Some((_, flag)) = exchange_detail.iter().find(|(set, _)| *set) {
                    bail!("{flag} needs --token-exchange-url");
                }
            }
        }
        out.bearer_token = given_or_read(
            self.remote_auth_bearer_token.as_deref(),
            self.remote_auth_bearer_token_file.as_deref(),
            "--remote-auth-bearer-token",
        )?;
        for pair in &self.remote_forward_headers {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--remote-forward-headers {pair:?}: expected Name=Value"))?;
            out.headers.insert(name.trim().to_owned(), value.to_owned());
        }
        for pair in &self.remote_forward_headers_secret {
            let (name, secret) = pair
                .split_once('=')
                .with_context(|| format!("--remote-forward-headers-secret {pair:?}: expected Header=SECRET"))?;
            // The environment secrets provider (names.md §7).
            out.header_env.insert(name.trim().to_owned(), format!("TOOLHIVE_SECRET_{}", secret.trim()));
        }
        out.remote_auth = self.remote_auth_settings()?;
        Ok(out)
    }

    /// The first flag that asks for the remote login, if any (each implies `--remote-auth`).
    pub fn remote_auth_flag(&self) -> Option<&'static str> {
        let given = [
            (self.remote_auth, "--remote-auth"),
            (self.remote_auth_issuer.is_some(), "--remote-auth-issuer"),
            (self.remote_auth_authorize_url.is_some(), "--remote-auth-authorize-url"),
            (self.remote_auth_token_url.is_some(), "--remote-auth-token-url"),
            (self.remote_auth_client_id.is_some(), "--remote-auth-client-id"),
            (self.remote_auth_client_secret.is_some(), "--remote-auth-client-secret"),
            (self.remote_auth_client_secret_file.is_some(), "--remote-auth-client-secret-file"),
            (!self.remote_auth_scopes.is_empty(), "--remote-auth-scopes"),
            (self.remote_auth_scope_param_name.is_some(), "--remote-auth-scope-param-name"),
            (self.remote_auth_resource.is_some(), "--remote-auth-resource"),
            (self.remote_auth_callback_port.is_some(), "--remote-auth-callback-port"),
            (self.remote_auth_timeout.is_some(), "--remote-auth-timeout"),
            (self.remote_auth_skip_browser, "--remote-auth-skip-browser"),
            (self.remote_auth_insecure_allow_http, "--remote-auth-insecure-allow-http"),
        ];
        given.iter().find(|(set, _)| *set).map(|(_, flag)| *flag)
    }

    /// The remote login these flags ask for (as ToolHive, any `--remote-auth-*` login flag
    /// implies `--remote-auth`).
    fn remote_auth_settings(&self) -> anyhow::Result<Option<RemoteAuthSettings>> {
        let Some(flag) = self.remote_auth_flag() else { return Ok(None) };
        if self.remote_auth_bearer_token.is_some() || self.remote_auth_bearer_token_file.is_some() {
            bail!(
                "{flag} logs in for the remote's token; it cannot be combined with --remote-auth-bearer-token(-file)"
            );
        }
        if self.token_exchange_url.is_some() && self.token_exchange_header_name.is_none() {
            bail!(
                "{flag} and --token-exchange-url would both set the remote's Authorization header; \
                 give the exchange another --token-exchange-header-name or drop one"
            );
        }
        let client_secret_env = match (&self.remote_auth_client_secret, &self.remote_auth_client_secret_file) {
            (Some(_), Some(_)) => {
                bail!("give --remote-auth-client-secret or --remote-auth-client-secret-file, not both")
            }
            (Some(_), None) => Some(CLIENT_SECRET_ENV.to_owned()),
            _ => None,
        };
        if (client_secret_env.is_some() || self.remote_auth_client_secret_file.is_some())
            && self.remote_auth_client_id.is_none()
        {
            bail!("--remote-auth-client-secret(-file) needs --remote-auth-client-id");
        }
        let client_secret_file = match &self.remote_auth_client_secret_file {
            // Absolute: a detached proxy, or a later `apiary start`, reads it from elsewhere.
            Some(f) => Some(
                std::path::absolute(f)
                    .with_context(|| format!("--remote-auth-client-secret-file {}", f.display()))?
                    .display()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Some(RemoteAuthSettings {
            issuer: self.remote_auth_issuer.clone(),
            authorize_url: self.remote_auth_authorize_url.clone(),
            token_url: self.remote_auth_token_url.clone(),
            client_id: self.remote_auth_client_id.clone(),
            client_secret_file,
            client_secret_env,
            scopes: self.remote_auth_scopes.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            scope_param_name: self.remote_auth_scope_param_name.clone(),
            resource: self.remote_auth_resource.clone(),
            callback_port: self.remote_auth_callback_port,
            timeout_secs: self.remote_auth_timeout.map(|d| d.as_secs().max(1)),
            skip_browser: self.remote_auth_skip_browser,
            insecure_allow_http: self.remote_auth_insecure_allow_http,
            session_file: None,
            relogin_hint: None,
            client_secret: None,
        }))
    }
}

/// A Go-style duration as ToolHive takes it: `30s`, `2m`, `1m30s`, `1h`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() {
            digits.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, len) = if rest.starts_with("ms") {
            (0, 2)
        } else {
            match c {
                'h' => (3600, 1),
                'm' => (60, 1),
                's' => (1, 1),
                _ => return Err(format!("{text:?} is not a duration (e.g. 30s, 2m)")),
            }
        };
        let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 2m)"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
        rest = &rest[len..];
    }
    if !digits.is_empty() || total == 0 {
        return Err(format!("{text:?} is not a duration of at least a second (e.g. 30s, 2m)"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// Checks a RunConfig's policy the way the proxy will build it (no network I/O), so a bad one
/// is refused before anything starts. `origin` names the file it came from.
pub fn check(policy: &PolicyConfig, origin: &str) -> anyhow::Result<()> {
    if let Some(oidc) = &policy.oidc {
        Authenticator::new(oidc, AuthnOptions::default()).with_context(|| format!("{origin}: policy.oidc"))?;
    }
    if let Some(doc) = &policy.authz {
        Authorizer::from_value(doc, "policy.authz").with_context(|| format!("{origin}: policy.authz"))?;
    }
    if let Some(doc) = &policy.audit {
        AuditConfig::from_value(doc, "policy.audit").with_context(|| format!("{origin}: policy.audit"))?;
    }
    if !policy.tools.is_empty() {
        ToolPolicy::new(&policy.tools).with_context(|| format!("{origin}: policy.tools"))?;
    }
    if !policy.outgoing.is_empty() {
        // The remote login's session does not exist yet: it is made when the workload starts.
        Outgoing::check(&policy.outgoing).with_context(|| format!("{origin}: policy.outgoing"))?;
    }
    Ok(())
}

/// Checks telemetry settings the way `RunConfig::validate` does, before anything starts.
pub fn check_telemetry(t: &TelemetryConfig, origin: &str) -> anyhow::Result<()> {
    let mut probe = apiary_config::RunConfig::new(
        "probe",
        apiary_config::Source::Remote(apiary_config::RemoteSource { url: "https://probe.invalid/mcp".into() }),
    );
    probe.telemetry = t.clone();
    if let Err(errs) = probe.validate() {
        bail!("{origin}: {errs}");
    }
    Ok(())
}

/// A credential given by `flag` itself, or read (trimmed) from the file `flag`-file names; not
/// both.
fn given_or_read(given: Option<&str>, file: Option<&Path>, flag: &str) -> anyhow::Result<Option<String>> {
    match (given, file) {
        (Some(_), Some(_)) => bail!("give {flag} or {flag}-file, not both"),
        (Some(value), None) => Ok(Some(value.to_owned())),
        (None, Some(f)) => Ok(Some(read(f)?.trim().to_owned())),
        (None, None) => Ok(None),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!("{}: larger than {} bytes", path.display(), MAX_FILE_BYTES);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A checked JSON or YAML document, as the JSON value the RunConfig carries (read the way the
/// policy crate reads it).
fn document(text: &str, path: &Path) -> anyhow::Result<Value> {
    Ok(apiary_policy::document::parse_document(text, &path.display().to_string())?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn parse(args: &[&str]) -> Result<PolicyArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("apiary").chain(args.iter().copied())).map(|c| c.policy)
    }

    #[test]
    fn auth_mode_local_is_refused_with_an_issuer() {
        assert_eq!(parse(&["--auth-mode", "local"]).unwrap().to_policy().unwrap().auth_mode, AuthMode::Local);
        assert_eq!(parse(&["--auth-mode", "anonymous"]).unwrap().to_policy().unwrap().auth_mode, AuthMode::Anonymous);
        assert!(parse(&["--auth-mode", "other"]).is_err());
        let a = parse(&["--auth-mode", "local", "--oidc-issuer", "https://idp"]).unwrap();
        assert!(format!("{:#}", a.to_policy().unwrap_err()).contains("--auth-mode local cannot be combined"));
    }

    #[test]
    fn required_scopes_need_an_issuer_and_are_checked() {
        let a = parse(&["--oidc-issuer", "https://idp", "--oidc-required-scopes", "mcp:tools,mcp:read"]).unwrap();
        let oidc = a.to_policy().unwrap().oidc.unwrap();
        assert_eq!(oidc.required_scopes, vec!["mcp:tools", "mcp:read"]);
        assert!(oidc.scopes.is_empty(), "advertised scopes stay as given");
        let e = format!("{:#}", parse(&["--oidc-required-scopes", "a"]).unwrap().to_policy().unwrap_err());
        assert!(e.contains("--oidc-required-scopes needs --oidc-issuer"), "{e}");
        let a = parse(&["--oidc-issuer", "https://idp", "--oidc-required-scopes", "a b"]).unwrap();
        let e = format!("{:#}", a.to_policy().unwrap_err());
        assert!(e.contains("not a scope"), "{e}");
    }

    #[test]
    fn otel_flags_make_the_telemetry_section() {
        let a = parse(&[
            "--otel-endpoint",
            "127.0.0.1:4318",
            "--otel-insecure",
            "--otel-headers",
            "x-api-key=s3cret=x",
            "--otel-sampling-rate",
            "1",
            "--otel-service-name",
            "svc",
            "--otel-enable-prometheus-metrics-path=false",
        ])
        .unwrap();
        assert_eq!(a.first_given(), Some("--otel-endpoint"));
        let t = a.to_telemetry().unwrap();
        assert_eq!(t.traces_url().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(t.headers.get("x-api-key").map(String::as_str), Some("s3cret=x"));
        assert_eq!(t.sampling_rate.get(), 1.0);
        assert!(!t.prometheus_metrics_path && t.tracing_enabled && !t.metrics_enabled);
        assert_eq!(parse(&[]).unwrap().to_telemetry().unwrap(), TelemetryConfig::default());
    }

    #[test]
    fn bad_otel_values_are_refused_before_anything_runs() {
        assert!(parse(&["--otel-sampling-rate", "1.5"]).is_err());
        assert!(parse(&["--otel-tracing-enabled=maybe"]).is_err());
        for args in [
            &["--otel-metrics-enabled"][..],
            &["--otel-endpoint", "http://collector:4318"],
            &["--otel-endpoint", "c:4318", "--otel-headers", "novalue"],
            &["--otel-headers", "k=v"],
            &["--diagnostics-address", "localhost"],
        ] {
            let a = parse(args).unwrap();
            assert!(a.to_telemetry().is_err(), "{args:?}");
            assert!(a.to_policy().is_err(), "{args:?}");
        }
        let err = parse(&["--otel-endpoint", "c:4318", "--otel-headers", "bad key=s3cret"])
            .unwrap()
            .to_telemetry()
            .unwrap_err();
        assert!(!format!("{err:#}").contains("s3cret"));
    }

    #[test]
    fn remote_auth_conflicts_are_refused_before_anything_runs() {
        let err = |args: &[&str]| format!("{:#}", parse(args).unwrap().to_policy().unwrap_err());
        let e = err(&["--remote-auth", "--remote-auth-bearer-token", "t"]);
        assert!(e.contains("--remote-auth ") && e.contains("--remote-auth-bearer-token"), "{e}");
        let e = err(&["--remote-auth-client-id", "c", "--remote-auth-bearer-token-file", "/dev/null"]);
        assert!(e.contains("--remote-auth-client-id"), "{e}");
        let e = err(&["--remote-auth-client-secret", "s3cret"]);
        assert!(e.contains("needs --remote-auth-client-id") && !e.contains("s3cret"), "{e}");
        let e = err(&[
            "--remote-auth-client-id",
            "c",
            "--remote-auth-client-secret",
            "s",
            "--remote-auth-client-secret-file",
            "/f",
        ]);
        assert!(e.contains("not both"), "{e}");
        let e = err(&["--remote-auth", "--remote-forward-headers", "Authorization=Basic x"]);
        assert!(e.contains("remoteAuth") && e.contains("authorization"), "{e}");
        let e = err(&[
            "--remote-auth",
            "--oidc-issuer",
            "https://idp.example",
            "--token-exchange-url",
            "https://sts.example/token",
            "--token-exchange-client-id",
            "x",
        ]);
        assert!(e.contains("Authorization"), "{e}");
        let e = err(&["--remote-auth-issuer", "http://as.example"]);
        assert!(e.contains("plain HTTP"), "{e}");
        assert!(parse(&["--remote-auth-timeout", "soon"]).is_err());
        assert!(parse(&["--remote-auth-timeout", "0s"]).is_err());
    }

    #[test]
    fn an_upstream_credential_is_given_or_read_trimmed_from_its_file_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credential");
        std::fs::write(&file, "from-file\n").unwrap();
        let file = file.to_str().unwrap();
        let outgoing = |args: &[&str]| parse(args).unwrap().to_policy().map(|p| p.outgoing);
        let exchange = ["--oidc-issuer", "https://idp.example", "--token-exchange-url", "https://sts.example/token"];
        let exchange = [&exchange[..], &["--token-exchange-client-id", "c"]].concat();

        let o = outgoing(&["--remote-auth-bearer-token-file", file]).unwrap();
        assert_eq!(o.bearer_token.as_deref(), Some("from-file"));
        let o = outgoing(&["--remote-auth-bearer-token", "given"]).unwrap();
        assert_eq!(o.bearer_token.as_deref(), Some("given"));
        let e = format!(
            "{:#}",
            outgoing(&["--remote-auth-bearer-token", "t", "--remote-auth-bearer-token-file", file]).unwrap_err()
        );
        assert!(e.contains("give --remote-auth-bearer-token or --remote-auth-bearer-token-file, not both"), "{e}");

        let o = outgoing(&[&exchange[..], &["--token-exchange-client-secret-file", file]].concat()).unwrap();
        assert_eq!(o.token_exchange.unwrap().client_secret.as_deref(), Some("from-file"));
        let both = ["--token-exchange-client-secret", "s", "--token-exchange-client-secret-file", file];
        let e = format!("{:#}", outgoing(&[&exchange[..], &both[..]].concat()).unwrap_err());
        assert!(
            e.contains("give --token-exchange-client-secret or --token-exchange-client-secret-file, not both"),
            "{e}"
        );
    }

    #[test]
    fn a_client_secret_is_named_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "file-s3cret\n").unwrap();
        let p = parse(&["--remote-auth-client-id", "c", "--remote-auth-client-secret-file", file.to_str().unwrap()])
            .unwrap()
            .to_policy()
            .unwrap();
        let r = p.outgoing.remote_auth.as_ref().unwrap();
        assert_eq!(r.client_secret_file.as_deref(), file.to_str());
        let p = parse(&["--remote-auth-client-id", "c", "--remote-auth-client-secret", "argv-s3cret"])
            .unwrap()
            .to_policy()
            .unwrap();
        let r = p.outgoing.remote_auth.as_ref().unwrap();
        assert_eq!(r.client_secret_env.as_deref(), Some(CLIENT_SECRET_ENV));
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        // The flag is --remote-auth (implied) with every default.
        let p = parse(&["--remote-auth"]).unwrap().to_policy().unwrap();
        assert_eq!(p.outgoing.remote_auth, Some(RemoteAuthSettings::default()));
    }

    #[test]
    fn durations_read_like_toolhives() {
        let d = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(d("30s"), Ok(30));
        assert_eq!(d("2m"), Ok(120));
        assert_eq!(d("1m30s"), Ok(90));
        assert_eq!(d("1h"), Ok(3600));
        assert_eq!(d("45"), Ok(45));
        assert!(d("1x").is_err() && d("s").is_err() && d("500ms").is_err());
    }
}
