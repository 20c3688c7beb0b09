//! `RunConfig`: the one versioned description of a workload and its proxy, read from and written to
//! JSON or YAML, validated in one place with errors that name the field path.
//!
//! The CLI builds it from flags, `apiary run --from-config FILE` reads it, `apiary export` writes it,
//! and the proxy and operator consume it. Apart from [`RunConfig::from_path`] and
//! [`RunConfig::write_atomic`] this crate does no I/O.
//!
//! ```
//! use apiary_config::{RunConfig, Transport};
//!
//! let cfg = RunConfig::from_yaml_str(
//!     "schemaVersion: v1\nname: fetch\nsource:\n  remote:\n    url: https://fetch-mcp.example.com/sse\n",
//! )?;
//! assert_eq!(cfg.effective_transport(), Transport::Sse);
//!
//! let err = RunConfig::from_yaml_str("schemaVersion: v1\nname: x\nsource:\n  image:\n    ref: a\nproxy:\n  port: 70000\n")
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "proxy.port: 70000 is not a port (0–65535) (line 7, column 9)");
//! # Ok::<(), apiary_config::ConfigError>(())
//! ```

mod builder;
mod command;
mod error;
mod limits;
mod number;
mod parse;
mod permissions;
mod policy;
mod proxy;
mod run_config;
mod secret;
mod source;
pub mod ssrf;
mod stdio;
mod telemetry;
mod transport;
mod validate;
mod write;

pub use builder::RunConfigBuilder;
pub use command::CommandLine;
pub use error::{ConfigError, Format, ValidationError, ValidationErrors};
pub use limits::{Bound, Limits, RestartPolicy, bounds};
pub use parse::MAX_FILE_BYTES;
pub use permissions::{
    InboundPermissions, Isolation, MAX_PROFILE_BYTES, NetworkAccess, NetworkPermissions, OutboundPermissions,
    PROFILE_NETWORK, PROFILE_NONE, PathGrant, PermissionProfile, ProfileError,
};
pub use policy::{
    AuthMode, OidcConfig, OutgoingConfig, PolicyConfig, RemoteAuthSettings, SubjectTokenType, TokenExchangeConfig,
    ToolOverride, ToolsConfig,
};
pub use proxy::{DEFAULT_PROXY_HOST, ProxyConfig};
pub use run_config::{
    DEFAULT_GROUP, DEFAULT_TARGET_HOST, NAME_PATTERN, RunConfig, SUPPORTED_SCHEMA_VERSIONS, SchemaVersion,
};
pub use secret::{MAX_SECRET_NAME_LEN, SecretRef, SecretRefParseError, is_secret_name};
pub use source::{CommandSource, Ecosystem, ImageSource, PackageSource, RemoteSource, Source};
pub use stdio::{DEFAULT_MAX_SESSION_CHILDREN, MAX_SESSION_CHILDREN, StdioConfig, StdioMode};
pub use telemetry::{
    DEFAULT_DIAGNOSTICS_ADDRESS, DEFAULT_SAMPLING_RATE, MAX_OTEL_HEADERS, SamplingRate, TelemetryConfig,
};
pub use transport::{ProxyMode, Transport, transport_for_remote_url};
pub use validate::MAX_ARG_BYTES;
