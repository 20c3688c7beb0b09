//! One audit event per request on the MCP routes, built from what the front layer saw (path,
//! peer, user agent, outcome, duration) and what the handler noted (method, target, body).
//! The `Authorization` header is never read here: events hold no credentials.

use std::net::IpAddr;
use std::time::Instant;

use apiary_policy::Identity;
use apiary_policy::audit::Outcome;
use axum::http::{HeaderMap, header};
use axum::response::Response;

use super::Guard;
use super::front::Note;

/// What is known of a request before it runs.
pub(crate) struct AuditHead {
    path: String,
    http_method: String,
    peer: Option<IpAddr>,
    user_agent: Option<String>,
    request_id: Option<String>,
}

/// Captures the request's head for its audit event.
pub(crate) fn audit_head(method: &str, headers: &HeaderMap, path: &str, peer: Option<IpAddr>) -> AuditHead {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(256).collect());
    AuditHead {
        path: path.to_owned(),
        http_method: method.to_owned(),
        peer,
        user_agent: text(header::USER_AGENT.as_str()),
        request_id: text("x-request-id"),
    }
}

impl Guard {
    /// Records the event of one finished request (its answer's head is known; a streamed body
    /// is still flowing, so the duration is the time to the answer's head).
    pub(crate) fn record(
        &self,
        head: AuditHead,
        who: Option<&Identity>,
        note: Option<&std::sync::Mutex<Note>>,
        res: &Response,
        started: Instant,
    ) {
        let Some(auditor) = &self.audit else { return };
        let note = note.and_then(|n| n.lock().ok());
        let method = note.as_ref().and_then(|n| n.method.clone());
        let event_type = apiary_policy::audit::event_type(method.as_deref());
        if !auditor.wants(event_type) {
            return;
        }
        let mut b = auditor
            .event(method.as_deref())
            .identity(who)
            .endpoint(&head.path)
            .http_method(&head.http_method)
            .outcome(Outcome::from_http_status(res.status().as_u16()))
            .duration(started.elapsed())
            .transport(self.transport);
        if let Some(n) = &note {
            if let Some(t) = &n.target {
                b = b.target_name(t);
            }
            if let Some(body) = &n.request {
                b = b.request_data(body);
            }
        }
        if let Some(ip) = head.peer {
            b = b.peer(ip);
        }
        if let Some(ua) = &head.user_agent {
            b = b.user_agent(ua);
        }
        if let Some(id) = &head.request_id {
            b = b.request_id(id);
        }
        if let Some(len) = res.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()) {
            b = b.response_size(len);
        }
        auditor.record(b.build());
    }
}
