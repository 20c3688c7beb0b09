//! The client's error type: one variant per way a call can fail, so callers (the CLI, the
//! gateway's upstream side) can tell a server's JSON-RPC refusal from a broken wire.

use std::time::Duration;

use serde_json::Value;

/// Why an MCP client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL could not be used (not absolute, not http/https, ...).
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A caller-supplied HTTP header has an invalid name or value.
    #[error("invalid HTTP header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },

    /// The server answered with an HTTP status we cannot use.
    #[error("HTTP {status} from {method} {url}{}", excerpt_suffix(body))]
    HttpStatus {
        status: u16,
        method: &'static str,
        url: String,
        /// The first bytes of the response body (lossy UTF-8), for the error message.
        body: String,
    },

    /// The server answered the request with a JSON-RPC error object.
    #[error("JSON-RPC error {code}: {message}")]
    JsonRpc { code: i64, message: String, data: Option<Value> },

    /// No answer arrived within the configured time.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout { after: Duration, waiting_for: String },

    /// The server broke the MCP or JSON-RPC rules (bad JSON, missing endpoint event, ...).
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// The server negotiated a protocol revision this client does not speak.
    #[error("server chose protocol version {0:?}, which this client does not support")]
    UnsupportedVersion(String),

    /// The connection to the server failed (DNS, refused, reset, TLS, ...).
    #[error("{context}: {source}")]
    Connection {
        context: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server's address may not be reached (an address guard refused it).
    #[error("refused to connect to {host}: {reason}")]
    Refused { host: String, reason: String },

    /// A CA bundle could not be used.
    #[error("the CA bundle cannot be used: {0}")]
    CaBundle(String),

    /// The session's stream ended, or the client was closed, while a call waited.
    #[error("connection closed: {0}")]
    Closed(String),
}

impl ClientError {
    /// The JSON-RPC error code, when the server refused the request with one.
    pub fn jsonrpc_code(&self) -> Option<i64> {
        match self {
            ClientError::JsonRpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an unusable one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::HttpStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn excerpt_suffix(body: &str) -> String {
    if body.trim().is_empty() { String::new() } else { format!(": {}", body.trim()) }
}
