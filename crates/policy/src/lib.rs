//! Who may do what at the proxy. Each module decides one thing and knows nothing of HTTP
//! routing or upstreams; the proxy runs them (in the order `crates/proxy/src/guard` documents)
//! and turns their typed refusals into HTTP answers in one place.
//!
//! - [`authn`]: who the caller is (OIDC/JWT with a JWKS cache, RFC 7662 introspection).
//! - [`authz`]: what they may do (Cedar, in ToolHive's `cedarv1` document format).
//! - [`audit`]: what is recorded (NDJSON events in ToolHive's shape).
//! - [`tools`]: which tools are seen, and under which names (filter and override).
//! - [`document`]: reading those JSON or YAML files with errors that name file and line.
//! - [`outgoing`]: which credentials an upstream gets (token exchange, bearer, headers).
//! - [`remote_auth`]: the proxy's own OAuth login to a remote MCP server (PKCE, refresh).

pub mod audit;
pub mod authn;
pub mod authz;
pub mod document;
pub mod identity;
pub mod outgoing;
pub mod remote_auth;
pub mod tools;

pub use identity::Identity;
