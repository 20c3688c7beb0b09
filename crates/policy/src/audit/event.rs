//! One audit event in ToolHive's NDJSON shape, and a builder the proxy fills from what it knows
//! about a request. There is no field for headers, so a token or an `Authorization` header can
//! never end up in an event; request and response bodies appear only when the document asks.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::config::AuditConfig;
use super::stamp;
use crate::identity::Identity;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// The request was wrong (4xx other than 401/403).
    Failure,
    /// Authentication or authorization refused it (401/403).
    Denied,
    /// Apiary or the server failed (5xx).
    Error,
}

impl Outcome {
    /// ToolHive's mapping from an HTTP status.
    pub fn from_http_status(status: u16) -> Outcome {
        match status {
            401 | 403 => Outcome::Denied,
            400..=499 => Outcome::Failure,
            500.. => Outcome::Error,
            _ => Outcome::Success,
        }
    }
}

/// What kind of thing a request touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Tool,
    Resource,
    Prompt,
    Endpoint,
}

/// Maps an MCP method to ToolHive's event type. A method ToolHive does not name is
/// `mcp_request` (as in ToolHive); no method at all (not an MCP message) is `http_request`.
/// Every `notifications/*` is `mcp_notification` except `notifications/roots/list_changed`.
pub fn event_type(method: Option<&str>) -> &'static str {
    let Some(method) = method else { return "http_request" };
    match method {
        "initialize" => "mcp_initialize",
        "tools/call" => "mcp_tool_call",
        "tools/list" => "mcp_tools_list",
        "resources/read" => "mcp_resource_read",
        "resources/list" => "mcp_resources_list",
        "prompts/get" => "mcp_prompt_get",
        "prompts/list" => "mcp_prompts_list",
        "ping" => "mcp_ping",
        "logging/setLevel" => "mcp_logging",
        "completion/complete" => "mcp_completion",
        "notifications/roots/list_changed" => "mcp_roots_list_changed",
        m if m.starts_with("notifications/") => "mcp_notification",
        _ => "mcp_request",
    }
}

fn target_type(event_type: &str) -> TargetType {
    match event_type {
        "mcp_tool_call" => TargetType::Tool,
        "mcp_resource_read" => TargetType::Resource,
        "mcp_prompt_get" => TargetType::Prompt,
        _ => TargetType::Endpoint,
    }
}

/// One NDJSON line. Field names and nesting are ToolHive's (its slog JSON output, including
/// `time`, `level` and `msg`), so existing log pipelines keep working.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub time: String,
    pub level: &'static str,
    pub msg: &'static str,
    /// UUID v4.
    pub audit_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339, UTC.
    pub logged_at: String,
    pub outcome: Outcome,
    pub component: String,
    pub source: Source,
    pub subjects: Subjects,
    pub target: Target,
    pub metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// Always `network`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The peer's IP address (empty when unknown).
    pub value: String,
    pub extra: SourceExtra,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subjects {
    /// The identity's subject (`sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A display name; `anonymous` when nobody is known.
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The HTTP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The MCP method, else the HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(rename = "type")]
    pub kind: TargetType,
    /// Tool or prompt name, or resource URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub extra: MetadataExtra,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MetadataExtra {
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_size_bytes: Option<u64>,
}

/// Request and response bodies. Each is the body itself when it fits `maxDataSize`: its JSON
/// value (whitespace outside strings removed, every other byte kept, so numbers keep their
/// spelling) or, when not JSON, a JSON string. A larger body is replaced by the marker
/// `{"truncated":true,"size_bytes":<body length>}`, never a cut-off value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Data {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Box<RawValue>>,
}

impl AuditEvent {
    /// Starts an event for a request with this MCP method (`None`: not an MCP message).
    pub fn builder<'c>(cfg: &'c AuditConfig, method: Option<&str>) -> EventBuilder<'c> {
        let now = stamp::utc_micros(jiff::Timestamp::now());
        let kind = event_type(method);
        let event = AuditEvent {
            time: now.clone(),
            level: "INFO+2",
            msg: "audit_event",
            audit_id: stamp::uuid_v4(),
            event_type: kind.to_owned(),
            logged_at: now,
            outcome: Outcome::Success,
            component: cfg.component.clone(),
            source: Source { kind: "network", value: String::new(), extra: SourceExtra::default() },
            subjects: Subjects { user_id: None, user: "anonymous".to_owned(), client_name: None, client_version: None },
            target: Target { endpoint: None, method: method.map(str::to_owned), kind: target_type(kind), name: None },
            metadata: Metadata { extra: MetadataExtra::default() },
            data: None,
        };
        EventBuilder { cfg, event }
    }
}

/// Fills an [`AuditEvent`]; every setter is optional.
#[derive(Debug)]
pub struct EventBuilder<'c> {
    cfg: &'c AuditConfig,
    event: AuditEvent,
}

impl EventBuilder<'_> {
    /// Replaces the event type derived from the method (e.g. `sse_connection`).
    pub fn event_type(mut self, event_type: &str) -> Self {
        self.event.event_type = event_type.to_owned();
        self.event.target.kind = target_type(event_type);
        self
    }

    /// `user_id` = subject, `user` = display name; `None` leaves `user` = `anonymous`. Client
    /// name and version come from `client_name` / `client_version` claims unless [`Self::client`] sets them.
    pub fn identity(mut self, identity: Option<&Identity>) -> Self {
        if let Some(id) = identity {
            self.event.subjects.user_id = Some(id.subject.clone());
            self.event.subjects.user = id.display_name().to_owned();
            let s = &mut self.event.subjects;
            s.client_name = s.client_name.take().or_else(|| id.claim_str("client_name").map(str::to_owned));
            s.client_version = s.client_version.take().or_else(|| id.claim_str("client_version").map(str::to_owned));
        }
        self
    }

    /// The MCP client's `clientInfo` from `initialize`.
    pub fn client(mut self, name: Option<&str>, version: Option<&str>) -> Self {
        self.event.subjects.client_name = name.map(str::to_owned);
        self.event.subjects.client_version = version.map(str::to_owned);
        self
    }

    /// The tool or prompt name, or the resource URI.
    pub fn target_name(mut self, name: &str) -> Self {
        self.event.target.name = Some(name.to_owned());
        self
    }

    /// The HTTP path (`/mcp`).
    pub fn endpoint(mut self, path: &str) -> Self {
        self.event.target.endpoint = Some(path.to_owned());
        self
    }

    /// The HTTP method, used as `target.method` when there is no MCP method.
    pub fn http_method(mut self, method: &str) -> Self {
        if self.event.target.method.is_none() {
            self.event.target.method = Some(method.to_owned());
        }
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.event.outcome = outcome;
        self
    }

    pub fn duration(mut self, d: Duration) -> Self {
        self.event.metadata.extra.duration_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn peer(mut self, ip: IpAddr) -> Self {
        self.event.source.value = match ip {
            // Dotted decimal by hand: `Display` goes through the formatter, per request.
            IpAddr::V4(v4) => {
                let mut text = String::with_capacity(15);
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push('.');
                    }
                    if octet >= 100 {
                        text.push(char::from(b'0' + octet / 100));
                    }
                    if octet >= 10 {
                        text.push(char::from(b'0' + octet / 10 % 10));
                    }
                    text.push(char::from(b'0' + octet % 10));
                }
                text
            }
            IpAddr::V6(_) => ip.to_string(),
        };
        self
    }

    pub fn user_agent(mut self, ua: &str) -> Self {
        self.event.source.extra.user_agent = Some(ua.to_owned());
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.event.source.extra.request_id = Some(id.to_owned());
        self
    }

    /// `streamable-http`, `sse`, `stdio`, …
    pub fn transport(mut self, transport: &str) -> Self {
        self.event.metadata.extra.transport = Some(transport.to_owned());
        self
    }

    pub fn response_size(mut self, bytes: u64) -> Self {
        self.event.metadata.extra.response_size_bytes = Some(bytes);
        self
    }

    /// The request body; kept only when `includeRequestData` is on, capped at `maxDataSize`.
    pub fn request_data(mut self, body: &[u8]) -> Self {
        if self.cfg.include_request_data && !body.is_empty() {
            let v = capped(body, self.cfg.max_data_size);
            self.event.data.get_or_insert_with(Data::default).request = v;
        }
        self
    }

    /// The response body; kept only when `includeResponseData` is on, capped at `maxDataSize`.
    pub fn response_data(mut self, body: &[u8]) -> Self {
        if self.cfg.include_response_data && !body.is_empty() {
            let v = capped(body, self.cfg.max_data_size);
            self.event.data.get_or_insert_with(Data::default).response = v;
        }
        self
    }

    pub fn build(self) -> AuditEvent {
        self.event
    }
}

/// The body as it goes into `data` (see [`Data`]).
fn capped(body: &[u8], max: usize) -> Option<Box<RawValue>> {
    let text = if body.len() > max {
        format!(r#"{{"truncated":true,"size_bytes":{}}}"#, body.len())
    } else if serde_json::from_slice::<IgnoredAny>(body).is_ok() {
        // Valid JSON is UTF-8; pretty-printed bodies must not break the one-line-per-event format.
        compact(std::str::from_utf8(body).ok()?)
    } else {
        serde_json::to_string(&String::from_utf8_lossy(body)).ok()?
    };
    RawValue::from_string(text).ok()
}

/// Valid JSON text without the whitespace outside strings.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_numbers() {
        let text = "{ \"a b\" : [1.50 ,\n 12345678901234567890123],\t\"c\":\"x\\\" y\\\\\" }";
        assert_eq!(compact(text), r#"{"a b":[1.50,12345678901234567890123],"c":"x\" y\\"}"#);
    }

    #[test]
    fn capped_forms() {
        assert_eq!(capped(b"{ \"x\": 1 }", 100).unwrap().get(), r#"{"x":1}"#);
        assert_eq!(capped(b"not json\n", 100).unwrap().get(), r#""not json\n""#);
        assert_eq!(capped(b"[1,2,3]", 3).unwrap().get(), r#"{"truncated":true,"size_bytes":7}"#);
        assert_eq!(capped(b"[1,2,3]", 7).unwrap().get(), "[1,2,3]");
    }

    #[test]
    fn peers_are_written_as_display_writes_them() {
        let cfg = AuditConfig::default();
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.100.255", "9.99.100.109", "::1", "::ffff:1.2.3.4", "fe80::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(AuditEvent::builder(&cfg, None).peer(ip).build().source.value, ip.to_string());
        }
    }

    #[test]
    fn outcomes_from_status() {
        assert_eq!(Outcome::from_http_status(200), Outcome::Success);
        assert_eq!(Outcome::from_http_status(202), Outcome::Success);
        assert_eq!(Outcome::from_http_status(401), Outcome::Denied);
        assert_eq!(Outcome::from_http_status(403), Outcome::Denied);
        assert_eq!(Outcome::from_http_status(404), Outcome::Failure);
        assert_eq!(Outcome::from_http_status(502), Outcome::Error);
    }
}
