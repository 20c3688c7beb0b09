//! The `RunConfig` document: one workload, its proxy and their bounds, as read from and written to files.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits::{Limits, RestartPolicy};
use crate::permissions::{Isolation, PermissionProfile};
use crate::policy::PolicyConfig;
use crate::proxy::ProxyConfig;
use crate::secret::SecretRef;
use crate::source::Source;
use crate::stdio::StdioConfig;
use crate::telemetry::TelemetryConfig;
use crate::transport::{Transport, transport_for_remote_url};

/// Versions of the document this build reads. The first is the one written.
pub const SUPPORTED_SCHEMA_VERSIONS: &[&str] = &["v1"];

/// What `name` and `group` must look like (validation also caps the length at 63).
pub const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$";

/// Default group of a workload.
pub const DEFAULT_GROUP: &str = "default";
/// Default address an HTTP-transport local server listens on.
pub const DEFAULT_TARGET_HOST: &str = "127.0.0.1";

/// Version tag of the document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SchemaVersion {
    /// The first version.
    #[default]
    #[serde(rename = "v1")]
    V1,
}

/// One workload and its proxy. Build it with [`RunConfig::new`] or [`RunConfig::builder`], read it
/// with [`RunConfig::from_path`] and friends, check it with [`RunConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Apiary RunConfig", description = "One MCP server workload and the proxy in front of it.")]
pub struct RunConfig {
    /// Document version; `v1`.
    pub schema_version: SchemaVersion,
    /// Workload name: 1–63 characters from `a-z`, `0-9`, `.`, `_`, `-`, starting and ending with a
    /// letter or digit.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Group the workload belongs to (same rules as `name`).
    #[serde(default = "default_group")]
    #[schemars(default = "default_group")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub group: String,
    /// The server: exactly one of `package`, `command`, `image`, `remote`.
    pub source: Source,
    /// Extra arguments appended to the server command.
    #[serde(default)]
    pub args: Vec<String>,
    /// Transport to the server. Default: `stdio` for package, command and image sources; for remote
    /// sources `sse` when the URL path ends in `/sse`, else `streamable-http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Where a local HTTP-transport server listens.
    #[serde(default = "default_target_host")]
    #[schemars(default = "default_target_host")]
    pub target_host: String,
    /// Port a local HTTP-transport server listens on; 0 picks a free port.
    #[serde(default, deserialize_with = "crate::number::port")]
    #[schemars(range(max = 65535))]
    pub target_port: u16,
    /// Environment variables for the server. Names: `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets given to a local server as environment variables (`--secret NAME,target=ENV`):
    /// only the names are stored; values are read from the secrets provider at each start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// The proxy's listener.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Session-to-child mapping for stdio servers.
    #[serde(default)]
    pub stdio: StdioConfig,
    /// Bounds on memory, sessions and time.
    #[serde(default)]
    pub limits: Limits,
    /// Crash-loop policy for child processes.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Authentication, authorization, audit and tool filtering at the proxy.
    #[serde(default, skip_serializing_if = "PolicyConfig::is_empty")]
    pub policy: PolicyConfig,
    /// Prometheus metrics and OTLP traces.
    #[serde(default, skip_serializing_if = "TelemetryConfig::is_default")]
    pub telemetry: TelemetryConfig,
    /// What a local server may read, write and reach (ToolHive's permission profile format).
    /// Default: the `network` built-in (all outbound, no host paths).
    #[serde(default, skip_serializing_if = "PermissionProfile::is_default")]
    pub permission_profile: PermissionProfile,
    /// Whether package and command servers run in the process sandbox (`sandbox`, the default) or
    /// as plain children (`none`).
    #[serde(default, skip_serializing_if = "Isolation::is_default")]
    pub isolation: Isolation,
    /// Start the server even when the kernel refuses part of the sandbox (that part is then
    /// missing, and `apiary status` says so) instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_degraded_isolation: bool,
}

fn default_group() -> String {
    DEFAULT_GROUP.to_owned()
}

fn default_target_host() -> String {
    DEFAULT_TARGET_HOST.to_owned()
}

impl RunConfig {
    /// A configuration with every optional field at its default.
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        RunConfig {
            schema_version: SchemaVersion::V1,
            name: name.into(),
            group: default_group(),
            source,
            args: Vec::new(),
            transport: None,
            target_host: default_target_host(),
            target_port: 0,
            env: BTreeMap::new(),
            secrets: Vec::new(),
            proxy: ProxyConfig::default(),
            stdio: StdioConfig::default(),
            limits: Limits::default(),
            restart: RestartPolicy::default(),
            policy: PolicyConfig::default(),
            telemetry: TelemetryConfig::default(),
            permission_profile: PermissionProfile::default(),
            isolation: Isolation::default(),
            allow_degraded_isolation: false,
        }
    }

    /// True when the server runs elsewhere and is reached over HTTP.
    pub fn is_remote(&self) -> bool {
        matches!(self.source, Source::Remote(_))
    }

    /// The transport in force: the explicit one, else the source's default.
    pub fn effective_transport(&self) -> Transport {
        if let Some(t) = self.transport {
            return t;
        }
        match &self.source {
            Source::Remote(r) => transport_for_remote_url(&r.url),
            Source::Package(_) | Source::Command(_) | Source::Image(_) => Transport::Stdio,
        }
    }

    /// The remote URL, for remote sources.
    pub fn remote_url(&self) -> Option<&str> {
        match &self.source {
            Source::Remote(r) => Some(&r.url),
            _ => None,
        }
    }

    /// The JSON Schema of the document (also checked in as `runconfig.schema.json`).
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(RunConfig)
    }
}
