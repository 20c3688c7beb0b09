//! A small async MCP client over HTTP: Streamable HTTP (2025-03-26 onward) and the 2024-11-05
//! HTTP+SSE transport. It powers `apiary mcp list|call` and is the reference client in tests.
//! Results stay `serde_json::Value` so nothing a server sends is lost. [`RawSession`] is the
//! raw-bytes flavour for callers that forward messages (the vMCP); [`ModernClient`] its
//! stateless 2026-07-28 counterpart.

mod error;
mod http;
mod legacy_sse;
mod message;
mod modern;
mod reach;
mod session;
mod sse;
mod streamable;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Url};
use serde_json::{Value, json};

pub use error::ClientError;
pub use modern::{MODERN_PROTOCOL_VERSION, ModernClient, ModernStream, encode_header_value};
pub use reach::{AddressGuard, Reach, check_ca_bundle};
pub use session::{RawSession, SessionOptions};

use legacy_sse::LegacySse;
use streamable::StreamableHttp;

/// The revision we offer in `initialize`.
pub const OFFERED_PROTOCOL_VERSION: &str = "2025-11-25";
/// Revisions we accept when the server answers `initialize` with another one.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// At most this many pages per list call, so a server that always sends `nextCursor`
/// cannot keep us looping.
pub const MAX_LIST_PAGES: usize = 1000;
/// At most this many items per list call, summed over its pages.
pub const MAX_LIST_ITEMS: usize = 100_000;

/// Which HTTP transport to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// SSE when the URL path ends in `/sse`; otherwise Streamable HTTP, falling back to SSE
    /// when the `initialize` POST gets 400, 404 or 405.
    #[default]
    Auto,
    /// Streamable HTTP (2025-03-26 onward).
    StreamableHttp,
    /// HTTP+SSE (2024-11-05).
    Sse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::StreamableHttp => "streamable-http",
            Transport::Sse => "sse",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Transport::Auto),
            "streamable-http" => Ok(Transport::StreamableHttp),
            "sse" => Ok(Transport::Sse),
            other => Err(format!("unknown transport {other:?}; expected auto, sse or streamable-http")),
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub transport: Transport,
    /// Bounds every wait: connecting, each request, each page of a list, closing.
    pub timeout: Duration,
    /// Extra headers sent with every HTTP request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { transport: Transport::Auto, timeout: Duration::from_secs(30), headers: Vec::new() }
    }
}

enum Wire {
    Streamable(StreamableHttp),
    Sse(LegacySse),
}

/// A connected, initialized MCP session.
pub struct McpClient {
    wire: Wire,
    timeout: Duration,
    next_id: AtomicI64,
    initialize_result: Value,
    protocol_version: String,
}

impl fmt::Debug for McpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("transport", &self.transport())
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

impl McpClient {
    /// Connects to `url`, runs the `initialize` handshake and sends `notifications/initialized`.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<McpClient, ClientError> {
        let parsed = parse_url(url)?;
        let headers = header_map(&options.headers)?;
        let http = Client::builder()
            .connect_timeout(options.timeout)
            .user_agent(concat!("apiary/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| http::connection_error("building the HTTP client", e))?;
        let timeout = options.timeout;
        match options.transport {
            Transport::Sse => Self::connect_sse(http, parsed, headers, timeout).await,
            Transport::StreamableHttp => Self::connect_streamable(http, parsed, headers, timeout).await,
            Transport::Auto if parsed.path().ends_with("/sse") => {
                Self::connect_sse(http, parsed, headers, timeout).await
            }
            Transport::Auto => {
                match Self::connect_streamable(http.clone(), parsed.clone(), headers.clone(), timeout).await {
                    Err(ClientError::HttpStatus { status: 400 | 404 | 405, .. }) => {
                        Self::connect_sse(http, parsed, headers, timeout).await
                    }
                    other => other,
                }
            }
        }
    }

    async fn connect_streamable(
        http: Client,
        url: Url,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<McpClient, ClientError> {
        let wire = Wire::Streamable(StreamableHttp::new(http, url, headers));
        Self::handshake(wire, timeout).await
    }

    async fn connect_sse(
        http: Client,
        url: Url,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<McpClient, ClientError> {
        let wire = Wire::Sse(LegacySse::open(http, url, headers, timeout).await?);
        Self::handshake(wire, timeout).await
    }

    async fn handshake(wire: Wire, timeout: Duration) -> Result<McpClient, ClientError> {
        let mut client = McpClient {
            wire,
            timeout,
            next_id: AtomicI64::new(1),
            initialize_result: Value::Null,
            protocol_version: String::new(),
        };
        let params = json!({
            "protocolVersion": OFFERED_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "apiary", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = client.request("initialize", params).await?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("initialize result has no protocolVersion".into()))?
            .to_owned();
        if !SUPPORTED_PROTOCOL_VERSIONS.contains(&version.as_str()) {
            // Be polite: end the session the server just opened. Its outcome changes nothing.
            let _ = client.close_wire().await;
            return Err(ClientError::UnsupportedVersion(version));
        }
        if let Wire::Streamable(s) = &client.wire {
            s.set_protocol_version(&version)?;
        }
        client.protocol_version = version;
        client.initialize_result = result;
        client.notify("notifications/initialized", Value::Null).await?;
        Ok(client)
    }

    /// Changes the bound on every later wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The whole `initialize` result (serverInfo, capabilities, instructions, protocolVersion).
    pub fn initialize_result(&self) -> &Value {
        &self.initialize_result
    }

    /// The server's `serverInfo` (name, version, ...), or `Null` if it sent none.
    pub fn server_info(&self) -> &Value {
        self.initialize_result.get("serverInfo").unwrap_or(&Value::Null)
    }

    /// The server's declared capabilities, or `Null`.
    pub fn capabilities(&self) -> &Value {
        self.initialize_result.get("capabilities").unwrap_or(&Value::Null)
    }

    /// The negotiated protocol revision.
    pub fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    /// The transport in use (never `Auto`).
    pub fn transport(&self) -> Transport {
        match self.wire {
            Wire::Streamable(_) => Transport::StreamableHttp,
            Wire::Sse(_) => Transport::Sse,
        }
    }

    /// The session id the server assigned (Streamable HTTP only).
    pub fn session_id(&self) -> Option<&str> {
        match &self.wire {
            Wire::Streamable(s) => s.session_id(),
            Wire::Sse(_) => None,
        }
    }

    /// Sends a raw request and returns its `result`. `params` of `Null` sends none.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = (!params.is_null()).then_some(params);
        let call = async {
            match &self.wire {
                Wire::Streamable(s) => s.request(id, method, params).await,
                Wire::Sse(s) => s.request(id, method, params).await,
            }
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| ClientError::Timeout {
            after: self.timeout,
            waiting_for: format!("the answer to {method:?}"),
        })?
    }

    /// Sends a notification. `params` of `Null` sends none.
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), ClientError> {
        let params = (!params.is_null()).then_some(params);
        let send = async {
            match &self.wire {
                Wire::Streamable(s) => s.notify(method, params).await,
                Wire::Sse(s) => s.notify(method, params).await,
            }
        };
        tokio::time::timeout(self.timeout, send).await.map_err(|_| ClientError::Timeout {
            after: self.timeout,
            waiting_for: format!("the server to accept {method:?}"),
        })?
    }

    /// All tools, following `nextCursor`.
    pub async fn list_tools(&self) -> Result<Vec<Value>, ClientError> {
        self.list_all("tools/list", "tools").await
    }

    /// All resources, following `nextCursor`.
    pub async fn list_resources(&self) -> Result<Vec<Value>, ClientError> {
        self.list_all("resources/list", "resources").await
    }

    /// All resource templates, following `nextCursor`.
    pub async fn list_resource_templates(&self) -> Result<Vec<Value>, ClientError> {
        self.list_all("resources/templates/list", "resourceTemplates").await
    }

    /// All prompts, following `nextCursor`.
    pub async fn list_prompts(&self) -> Result<Vec<Value>, ClientError> {
        self.list_all("prompts/list", "prompts").await
    }

    /// Calls a tool. `arguments` of `Null` sends none. A tool failure is a normal result with
    /// `isError: true`, not an `Err`.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        let mut params = json!({ "name": name });
        if !arguments.is_null() {
            params["arguments"] = arguments;
        }
        self.request("tools/call", params).await
    }

    /// Reads one resource.
    pub async fn read_resource(&self, uri: &str) -> Result<Value, ClientError> {
        self.request("resources/read", json!({ "uri": uri })).await
    }

    /// Renders a prompt. `arguments` of `Null` sends none.
    pub async fn get_prompt(&self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        let mut params = json!({ "name": name });
        if !arguments.is_null() {
            params["arguments"] = arguments;
        }
        self.request("prompts/get", params).await
    }

    async fn list_all(&self, method: &str, key: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_LIST_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => Value::Null,
            };
            let mut page = self.request(method, params).await?;
            match page.get_mut(key).map(Value::take) {
                Some(Value::Array(batch)) => items.extend(batch),
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(ClientError::Protocol(format!("{method} result member {key:?} is not an array")));
                }
            }
            if items.len() > MAX_LIST_ITEMS {
                return Err(ClientError::Protocol(format!("{method} returned more than {MAX_LIST_ITEMS} items")));
            }
            match page.get_mut("nextCursor").map(Value::take) {
                Some(Value::String(next)) => {
                    if !seen.insert(next.clone()) {
                        return Err(ClientError::Protocol(format!("{method} repeated cursor {next:?}")));
                    }
                    cursor = Some(next);
                }
                _ => return Ok(items),
            }
        }
        Err(ClientError::Protocol(format!("{method} returned more than {MAX_LIST_PAGES} pages")))
    }

    async fn close_wire(&self) -> Result<(), ClientError> {
        match &self.wire {
            Wire::Streamable(s) => tokio::time::timeout(self.timeout, s.close()).await.map_err(|_| {
                ClientError::Timeout { after: self.timeout, waiting_for: "the server to end the session".into() }
            })?,
            Wire::Sse(s) => {
                s.close();
                Ok(())
            }
        }
    }

    /// Ends the session: `DELETE` for Streamable HTTP, closing the stream for SSE.
    pub async fn close(self) -> Result<(), ClientError> {
        self.close_wire().await
    }
}

fn parse_url(url: &str) -> Result<Url, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl { url: url.to_owned(), reason };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if parsed.host().is_none() {
        return Err(invalid("no host".into()));
    }
    Ok(parsed)
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, ClientError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = |reason: &str| ClientError::InvalidHeader { name: name.clone(), reason: reason.to_owned() };
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("bad name"))?;
        let v = HeaderValue::from_str(value).map_err(|_| invalid("bad value"))?;
        map.append(n, v);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_names_round_trip() {
        for t in [Transport::Auto, Transport::StreamableHttp, Transport::Sse] {
            assert_eq!(t.as_str().parse::<Transport>(), Ok(t));
        }
        assert!("stdio".parse::<Transport>().is_err());
    }

    #[test]
    fn refuses_unusable_urls_and_headers() {
        assert!(matches!(parse_url("ftp://x/y"), Err(ClientError::InvalidUrl { .. })));
        assert!(matches!(parse_url("not a url"), Err(ClientError::InvalidUrl { .. })));
        assert!(parse_url("http://127.0.0.1:9/mcp").is_ok());
        assert!(matches!(header_map(&[("bad name".into(), "v".into())]), Err(ClientError::InvalidHeader { .. })));
        assert!(matches!(header_map(&[("x-a".into(), "line\nbreak".into())]), Err(ClientError::InvalidHeader { .. })));
    }
}
