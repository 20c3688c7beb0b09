//! Wire transports between the proxy and the server, and which proxy URL is reported.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the proxy talks to the MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// JSON-RPC lines over the child's stdin/stdout.
    Stdio,
    /// The legacy HTTP+SSE transport (`GET /sse` + `POST /messages`).
    Sse,
    /// Streamable HTTP (`/mcp`).
    StreamableHttp,
}

impl Transport {
    /// The word used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Sse => "sse",
            Transport::StreamableHttp => "streamable-http",
        }
    }

    /// True for the two HTTP transports.
    pub fn is_http(self) -> bool {
        !matches!(self, Transport::Stdio)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the proxy's URLs is reported to clients; the proxy serves both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyMode {
    /// Report `http://host:port/mcp`.
    #[default]
    StreamableHttp,
    /// Report `http://host:port/sse`.
    Sse,
}

impl ProxyMode {
    /// The word used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::StreamableHttp => "streamable-http",
            ProxyMode::Sse => "sse",
        }
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport a remote URL implies: a path ending in `/sse` (optionally with one trailing `/`)
/// means the legacy SSE transport, anything else Streamable HTTP.
pub fn transport_for_remote_url(url: &str) -> Transport {
    let path = match url::Url::parse(url) {
        Ok(u) => u.path().to_owned(),
        // Unparsable URLs are refused by validation; still answer something sensible.
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_owned(),
    };
    let trimmed = path.strip_suffix('/').unwrap_or(&path);
    if trimmed.ends_with("/sse") { Transport::Sse } else { Transport::StreamableHttp }
}
