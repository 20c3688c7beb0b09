//! A chained builder for code that assembles a RunConfig field by field (the CLI from flags).

use crate::error::ValidationErrors;
use crate::limits::{Limits, RestartPolicy};
use crate::permissions::{Isolation, PermissionProfile};
use crate::run_config::RunConfig;
use crate::source::Source;
use crate::stdio::StdioMode;
use crate::transport::{ProxyMode, Transport};

/// Builds a [`RunConfig`]; [`RunConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct RunConfigBuilder {
    config: RunConfig,
}

impl RunConfig {
    /// Starts a builder with every optional field at its default.
    pub fn builder(name: impl Into<String>, source: Source) -> RunConfigBuilder {
        RunConfigBuilder { config: RunConfig::new(name, source) }
    }
}

impl RunConfigBuilder {
    /// Sets `group`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.config.group = group.into();
        self
    }

    /// Appends to `args`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `transport`.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = Some(transport);
        self
    }

    /// Sets `targetHost`.
    pub fn target_host(mut self, host: impl Into<String>) -> Self {
        self.config.target_host = host.into();
        self
    }

    /// Sets `targetPort`.
    pub fn target_port(mut self, port: u16) -> Self {
        self.config.target_port = port;
        self
    }

    /// Sets one environment variable (a later value for the same name wins).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.env.insert(name.into(), value.into());
        self
    }

    /// Adds a secret the server gets as an environment variable.
    pub fn secret(mut self, secret: crate::secret::SecretRef) -> Self {
        self.config.secrets.push(secret);
        self
    }

    /// Sets `proxy.host`.
    pub fn proxy_host(mut self, host: impl Into<String>) -> Self {
        self.config.proxy.host = host.into();
        self
    }

    /// Sets `proxy.port`.
    pub fn proxy_port(mut self, port: u16) -> Self {
        self.config.proxy.port = port;
        self
    }

    /// Sets `proxy.proxyMode`.
    pub fn proxy_mode(mut self, mode: ProxyMode) -> Self {
        self.config.proxy.proxy_mode = mode;
        self
    }

    /// Sets `proxy.endpointPrefix`.
    pub fn endpoint_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.proxy.endpoint_prefix = prefix.into();
        self
    }

    /// Sets `proxy.trustProxyHeaders`.
    pub fn trust_proxy_headers(mut self, trust: bool) -> Self {
        self.config.proxy.trust_proxy_headers = trust;
        self
    }

    /// Appends to `proxy.allowedOrigins`.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.config.proxy.allowed_origins.push(origin.into());
        self
    }

    /// Sets `stdio.mode`.
    pub fn stdio_mode(mut self, mode: StdioMode) -> Self {
        self.config.stdio.mode = mode;
        self
    }

    /// Sets `stdio.maxSessionChildren`.
    pub fn max_session_children(mut self, n: u32) -> Self {
        self.config.stdio.max_session_children = n;
        self
    }

    /// Replaces `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Replaces `permissionProfile`.
    pub fn permission_profile(mut self, profile: PermissionProfile) -> Self {
        self.config.permission_profile = profile;
        self
    }

    /// Sets `isolation`.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.config.isolation = isolation;
        self
    }

    /// Sets `allowDegradedIsolation`.
    pub fn allow_degraded_isolation(mut self, allow: bool) -> Self {
        self.config.allow_degraded_isolation = allow;
        self
    }

    /// Replaces `restart`.
    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.config.restart = restart;
        self
    }

    /// The configuration as built so far, unvalidated.
    pub fn build_unchecked(self) -> RunConfig {
        self.config
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<RunConfig, ValidationErrors> {
        self.config.validate()?;
        Ok(self.config)
    }
}
