//! The proxy's own listener: address, reported URL, path prefix and browser-origin allow-list.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::transport::ProxyMode;

/// Default listen address: loopback only.
pub const DEFAULT_PROXY_HOST: &str = "127.0.0.1";

/// Where and how the proxy serves MCP clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address to listen on: an IP address or a host name.
    pub host: String,
    /// TCP port to listen on; 0 picks a free port.
    #[serde(deserialize_with = "crate::number::port")]
    #[schemars(range(max = 65535))]
    pub port: u16,
    /// Which URL is reported to clients (the proxy serves both `/mcp` and `/sse`).
    pub proxy_mode: ProxyMode,
    /// Path prefix in front of every route when served behind an ingress, e.g. `/team-a`. Empty for none;
    /// otherwise starts with `/` and does not end with one.
    pub endpoint_prefix: String,
    /// Trust `X-Forwarded-*` headers from a reverse proxy when building URLs.
    pub trust_proxy_headers: bool,
    /// Extra allowed browser `Origin` values, `scheme://host[:port]`. Loopback origins are always allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            host: DEFAULT_PROXY_HOST.to_owned(),
            port: 0,
            proxy_mode: ProxyMode::default(),
            endpoint_prefix: String::new(),
            trust_proxy_headers: false,
            allowed_origins: Vec::new(),
        }
    }
}
