//! The one place where refusals become HTTP statuses and JSON-RPC error bodies
//! (bad-input.md is the table). Handlers return a [`Refusal`]; nothing else builds an
//! error response.

use apiary_protocol::{ParseError, Revision, codes, error_response};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Why the proxy refused a request, with what it needs to answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("host not allowed")]
    HostNotAllowed,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    NotAcceptable(&'static str),
    #[error("{0}")]
    Parse(ParseError),
    #[error("{message}")]
    InvalidRequest { message: String, id: Option<String> },
    #[error("session not found")]
    SessionNotFound,
    #[error("events after this id were evicted")]
    ResumeGap,
    #[error("unsupported MCP-Protocol-Version")]
    UnsupportedVersion,
    #[error("session limit reached")]
    LimitReached { retry_after: u64 },
    #[error("queue full")]
    QueueFull { retry_after: u64, in_session: bool },
    #[error("upstream unavailable: {reason}")]
    UpstreamUnavailable { reason: String, retry_after: u64, id: Option<String> },
    /// No valid credentials (HTTP 401). `challenge` is the `WWW-Authenticate` value.
    #[error("authentication required: {reason}")]
    Unauthenticated { challenge: HeaderValue, reason: String },
    /// A valid token that lacks a required scope (HTTP 403, RFC 6750 `insufficient_scope`).
    /// `challenge` is the `WWW-Authenticate` value; `missing` the scopes it lacks.
    #[error("insufficient scope: the token lacks {missing}")]
    InsufficientScope { challenge: HeaderValue, missing: String },
    /// The identity provider's keys cannot be loaded: nobody is let in until they are (503).
    #[error("authentication is unavailable: the identity provider cannot be reached")]
    AuthUnavailable { retry_after: u64 },
    /// The authorization policy denies the request (403). `action` is Cedar's action name.
    #[error("access denied: {reason}")]
    Forbidden { action: &'static str, reason: &'static str, id: Option<String> },
    /// The STS refused to exchange the caller's token for the upstream's (403).
    #[error("{reason}")]
    ExchangeRefused { reason: String, id: Option<String> },
    /// A tool the tool filter hides: answered as the server answers a tool it does not have.
    #[error("unknown tool: {name}")]
    UnknownTool { name: String, id: Option<String> },
    /// 2026-07-28: an HTTP mirror header disagrees with the body or is missing (row 21).
    #[error("{0}")]
    HeaderMismatch(String),
    /// 2026-07-28: the request's `_meta` lacks what every request carries (row 22).
    #[error("{0}")]
    InvalidParams(String),
    /// 2026-07-28: the request's `_meta` names a version Apiary does not serve (row 22).
    #[error("unsupported protocol version: {requested}")]
    UnservedVersion { requested: String },
    /// 2026-07-28: a method the modern era does not have (row 23).
    #[error("method not found: {method}")]
    MethodNotFound { method: String },
    /// Another refusal, made after the body was read: its error carries the request's id
    /// (bad-input.md, rule 2).
    #[error("{0}")]
    Echo(Box<Refusal>, String),
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal::InvalidRequest { message: message.into(), id: None }
    }

    pub fn invalid_with_id(message: impl Into<String>, id: Option<&str>) -> Self {
        Refusal::InvalidRequest { message: message.into(), id: id.map(str::to_owned) }
    }

    /// This refusal, answering the request whose id (JSON text) is `id`, if any.
    pub fn echo(self, id: Option<&str>) -> Refusal {
        match (self, id) {
            (r @ (Refusal::Parse(_) | Refusal::Echo(..)), _) | (r, None) => r,
            (Refusal::InvalidRequest { message, id: None }, Some(id)) => {
                Refusal::InvalidRequest { message, id: Some(id.to_owned()) }
            }
            (Refusal::UpstreamUnavailable { reason, retry_after, id: None }, Some(id)) => {
                Refusal::UpstreamUnavailable { reason, retry_after, id: Some(id.to_owned()) }
            }
            (r @ (Refusal::InvalidRequest { .. } | Refusal::UpstreamUnavailable { .. }), _) => r,
            (r, Some(id)) => Refusal::Echo(Box::new(r), id.to_owned()),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::Echo(inner, _) => inner.status(),
            Refusal::OriginNotAllowed | Refusal::HostNotAllowed => StatusCode::FORBIDDEN,
            Refusal::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Refusal::Parse(_)
            | Refusal::InvalidRequest { .. }
            | Refusal::UnsupportedVersion
            | Refusal::HeaderMismatch(_)
            | Refusal::InvalidParams(_)
            | Refusal::UnservedVersion { .. } => StatusCode::BAD_REQUEST,
            Refusal::MethodNotFound { .. } => StatusCode::NOT_FOUND,
            Refusal::SessionNotFound => StatusCode::NOT_FOUND,
            Refusal::ResumeGap => StatusCode::CONFLICT,
            Refusal::LimitReached { .. } | Refusal::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::QueueFull { in_session: true, .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::QueueFull { in_session: false, .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Refusal::AuthUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Forbidden { .. } | Refusal::ExchangeRefused { .. } | Refusal::InsufficientScope { .. } => {
                StatusCode::FORBIDDEN
            }
            // A JSON-RPC error from "the server": the HTTP exchange itself went well.
            Refusal::UnknownTool { .. } => StatusCode::OK,
        }
    }

    /// The JSON-RPC error body.
    pub fn body(&self) -> Bytes {
        self.body_for(None)
    }

    fn body_for(&self, echo: Option<&str>) -> Bytes {
        match self {
            Refusal::Echo(inner, id) => inner.body_for(Some(id)),
            Refusal::Parse(e) => e.to_response(),
            Refusal::InvalidRequest { message, id } => {
                error_response(id.as_deref(), codes::INVALID_REQUEST, message, None)
            }
            Refusal::UnsupportedVersion => {
                let data = serde_json::json!({ "supported": Revision::legacy_names() });
                error_response(echo, codes::INVALID_REQUEST, "unsupported MCP-Protocol-Version", Some(&data))
            }
            Refusal::HeaderMismatch(message) => error_response(echo, codes::HEADER_MISMATCH, message, None),
            Refusal::InvalidParams(message) => error_response(echo, codes::INVALID_PARAMS, message, None),
            Refusal::UnservedVersion { requested } => {
                let data = serde_json::json!({ "supported": Revision::modern_names(), "requested": requested });
                error_response(echo, codes::UNSUPPORTED_PROTOCOL_VERSION, &self.to_string(), Some(&data))
            }
            Refusal::MethodNotFound { .. } => error_response(echo, codes::METHOD_NOT_FOUND, &self.to_string(), None),
            Refusal::BodyTooLarge { limit } => {
                let data = serde_json::json!({ "limit": limit });
                error_response(echo, codes::INVALID_REQUEST, &self.to_string(), Some(&data))
            }
            Refusal::SessionNotFound => error_response(echo, codes::SESSION_NOT_FOUND, "session not found", None),
            Refusal::ResumeGap => error_response(echo, codes::RESUME_GAP, &self.to_string(), None),
            Refusal::LimitReached { .. } => error_response(echo, codes::LIMIT_REACHED, "session limit reached", None),
            Refusal::QueueFull { .. } => error_response(echo, codes::QUEUE_FULL, "queue full", None),
            Refusal::UpstreamUnavailable { id, .. } => {
                error_response(id.as_deref(), codes::UPSTREAM_UNAVAILABLE, &self.to_string(), None)
            }
            Refusal::Unauthenticated { reason, .. } => {
                let data = serde_json::json!({ "reason": reason });
                error_response(echo, codes::UNAUTHENTICATED, "authentication required", Some(&data))
            }
            Refusal::AuthUnavailable { .. } => error_response(echo, codes::UNAUTHENTICATED, &self.to_string(), None),
            Refusal::InsufficientScope { missing, .. } => {
                let data = serde_json::json!({ "error": "insufficient_scope", "scope": missing });
                error_response(echo, codes::FORBIDDEN, "access denied: the token lacks a required scope", Some(&data))
            }
            Refusal::Forbidden { action, reason, id } => {
                let data = serde_json::json!({ "action": action, "reason": reason });
                error_response(id.as_deref().or(echo), codes::FORBIDDEN, "access denied by policy", Some(&data))
            }
            Refusal::ExchangeRefused { reason, id } => {
                let data = serde_json::json!({ "action": "token_exchange", "reason": reason });
                error_response(
                    id.as_deref().or(echo),
                    codes::FORBIDDEN,
                    "access denied: the upstream's token could not be obtained",
                    Some(&data),
                )
            }
            Refusal::UnknownTool { name, id } => {
                error_response(id.as_deref().or(echo), codes::INVALID_PARAMS, &format!("Unknown tool: {name}"), None)
            }
            Refusal::OriginNotAllowed
            | Refusal::HostNotAllowed
            | Refusal::MethodNotAllowed { .. }
            | Refusal::UnsupportedMediaType
            | Refusal::NotAcceptable(_) => error_response(echo, codes::INVALID_REQUEST, &self.to_string(), None),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::LimitReached { retry_after }
            | Refusal::QueueFull { retry_after, .. }
            | Refusal::UpstreamUnavailable { retry_after, .. }
            | Refusal::AuthUnavailable { retry_after } => Some(*retry_after),
            Refusal::Echo(inner, _) => inner.retry_after(),
            _ => None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::info!(status = self.status().as_u16(), reason = %self, "request refused");
        let mut res = Response::new(Body::from(self.body()));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Refusal::MethodNotAllowed { allow } = &self {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Refusal::Unauthenticated { challenge, .. } | Refusal::InsufficientScope { challenge, .. } = &self {
            h.insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        if let Some(secs) = self.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// Why an answer the policy must filter could not be: it is replaced, never passed on unfiltered.
#[derive(Debug, Clone, Copy)]
pub enum Unfilterable {
    /// The server's list is not the shape the filter reads.
    Malformed,
    /// The server's answer is over the size the proxy reads whole.
    TooLarge,
}

/// The JSON-RPC error frame that replaces an answer the policy could not filter.
pub fn unfilterable(id: Option<&str>, why: Unfilterable) -> Bytes {
    let message = match why {
        Unfilterable::Malformed => "the server's list could not be filtered",
        Unfilterable::TooLarge => "the server's answer was too large to be filtered",
    };
    error_response(id, codes::INTERNAL_ERROR, message, None)
}

/// A 200 JSON response carrying `body` as it is.
pub fn json(body: Bytes) -> Response {
    let mut res = Response::new(Body::from(body));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// 202 Accepted with no body: the POST carried only notifications or responses.
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}
