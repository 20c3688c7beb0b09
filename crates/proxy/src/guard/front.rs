//! The HTTP half of the policy, as middleware on the MCP routes: the audit record begins,
//! the caller is authenticated (before any body is read), and the client's own credentials
//! are taken off the request so no upstream ever receives them. It also keeps each
//! session's caller handle current (the token of the session's latest authenticated request),
//! for an in-process child that exchanges it for its backends (the vMCP).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use super::callers::{SESSION_HEADER, session_key};
use apiary_policy::Identity;
use apiary_policy::authn::AuthnError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Guard;
use super::metadata::resource_metadata_url;
use crate::answer::Refusal;
use crate::telemetry::RequestTelemetry;

static ANONYMOUS: LazyLock<Arc<Identity>> = LazyLock::new(|| Arc::new(Identity::anonymous()));

/// What the handlers learn from the front layer, and tell the audit record back.
#[derive(Clone)]
pub(crate) struct RequestCtx {
    pub identity: Arc<Identity>,
    pub note: Option<Arc<Mutex<Note>>>,
    /// The caller's bearer token, kept only when a token exchange needs it as its subject.
    /// Never logged, never forwarded.
    pub caller_token: Option<Arc<str>>,
}

impl RequestCtx {
    /// The context of a request that bypassed the front layer (never on a served route).
    pub(crate) fn anonymous() -> RequestCtx {
        RequestCtx { identity: Arc::clone(&ANONYMOUS), note: None, caller_token: None }
    }

    /// Records what a POST carried (its first message), for audit and telemetry.
    pub(crate) fn note_body(&self, parsed: &apiary_protocol::Body) {
        let first = match parsed {
            apiary_protocol::Body::Single(m) => Some(m),
            apiary_protocol::Body::Batch(ms) => ms.iter().find_map(|m| m.as_ref().ok()),
        };
        if let Some(m) = first {
            self.note_message(m);
        }
    }

    /// Records what the request was, for audit and telemetry. Nothing is read from the message
    /// when neither is on.
    pub(crate) fn note_message(&self, m: &apiary_protocol::Message) {
        let Some(note) = &self.note else { return };
        let Ok(mut n) = note.lock() else { return };
        if n.method.is_none() {
            let method = m.method();
            let target = super::target_name(m);
            let target = target.as_deref();
            let request = Some(m.bytes());
            n.method = method.map(str::to_owned);
            n.target = target.map(str::to_owned);
            n.request = request.cloned();
            if let Some(t) = &mut n.telemetry {
                t.begin_span(method, target, request);
            }
        }
    }

    /// The W3C `traceparent` header value of this request's span, for a call made on its
    /// behalf (an HTTP upstream): `None` when tracing is off.
    pub(crate) fn traceparent(&self) -> Option<String> {
        self.note.as_ref()?.lock().ok()?.telemetry.as_mut()?.traceparent()
    }
}

/// What a request turned out to be, filled in by the handler that parsed it.
#[derive(Default)]
pub(crate) struct Note {
    pub method: Option<String>,
    pub target: Option<String>,
    pub request: Option<bytes::Bytes>,
    /// Its metrics and span, when telemetry is on.
    pub telemetry: Option<RequestTelemetry>,
}

/// The front layer: audit ─▶ authn ─▶ the route ─▶ audit.
pub(crate) async fn front_layer(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let telemetry = guard
        .telemetry
        .is_on()
        .then(|| guard.telemetry.begin(req.method().as_str(), req.uri().path(), req.headers(), peer));
    let note = (guard.audit.is_some() || telemetry.is_some())
        .then(|| Arc::new(Mutex::new(Note { telemetry, ..Note::default() })));
    let audit_head =
        guard.audit.as_ref().map(|_| super::audit_head(req.method().as_str(), req.headers(), req.uri().path(), peer));
    let identity = match &guard.authn {
        None => Arc::clone(&guard.unauthenticated),
        Some(authn) => match authn.authenticate_shared(req.headers().get(header::AUTHORIZATION)).await {
            Ok(id) => id,
            Err(e) => {
                let refusal = refusal(&guard, &e);
                let res = refusal.into_response();
                if let Some(head) = audit_head {
                    guard.record(head, None, None, &res, started);
                }
                return finish_telemetry(&guard, note.as_deref(), res);
            }
        },
    };
    let mut caller_token = None;
    let mut session_caller = None;
    if guard.authn.is_some() {
        // The caller's token was for this proxy; upstreams get credentials of their own.
        let presented = req.headers_mut().remove(header::AUTHORIZATION);
        let token = || presented.as_ref().and_then(bearer_token).map(Arc::<str>::from);
        if guard.outgoing.as_ref().is_some_and(|o| o.needs_caller_token()) {
            caller_token = token();
        }
        // Only a proxy whose children may take the caller (the vMCP) tracks sessions' callers.
        if let Some(callers) = &guard.callers {
            let key = session_key(&req);
            match callers.for_request(key.as_deref(), &identity.subject, token()) {
                Some(handle) => session_caller = Some((handle, key)),
                None => {
                    // A session whose child holds its caller's token is that caller's alone.
                    let res = Refusal::SessionNotFound.into_response();
                    if let Some(head) = audit_head {
                        guard.record(head, Some(&identity), None, &res, started);
                    }
                    return finish_telemetry(&guard, note.as_deref(), res);
                }
            }
        }
    }
    req.extensions_mut().insert(RequestCtx { identity: Arc::clone(&identity), note: note.clone(), caller_token });
    let res = match &session_caller {
        // A session's own child started while serving this request takes the handle.
        Some((handle, _)) => handle.clone().scope(next.run(req)).await,
        None => next.run(req).await,
    };
    if let (Some((handle, key)), Some(callers)) = (session_caller, &guard.callers) {
        let opened = res.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok());
        if let Some(key) = opened.or(key.as_deref()) {
            callers.register(key, &identity.subject, &handle);
        }
    }
    if let Some(head) = audit_head {
        guard.record(head, Some(&identity), note.as_deref(), &res, started);
    }
    finish_telemetry(&guard, note.as_deref(), res)
}

/// Counts the request, ends its span, and keeps it in the active-connections gauge until the
/// answer's body (a stream, perhaps) is done.
fn finish_telemetry(guard: &Guard, note: Option<&Mutex<Note>>, res: Response) -> Response {
    let Some(mut n) = note.and_then(|n| n.lock().ok()) else { return res };
    let Note { method, target, telemetry, .. } = &mut *n;
    let Some(t) = telemetry else { return res };
    let active = t.finish(
        guard.telemetry.metrics.as_deref(),
        method.as_deref(),
        target.as_deref(),
        res.status().as_u16(),
        res.headers(),
    );
    drop(n);
    match active {
        None => res,
        Some(open) => res.map(|inner| axum::body::Body::new(Tracked { inner, _open: open })),
    }
}

/// An answer's body that keeps the request counted as open until it is done or dropped.
/// Size and end are the inner body's, so `Content-Length` answers stay as they were.
struct Tracked {
    inner: axum::body::Body,
    _open: crate::telemetry::ActiveGuard,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The token of a `Bearer` header (scheme matched case-insensitively).
fn bearer_token(v: &axum::http::HeaderValue) -> Option<&str> {
    let text = v.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn refusal(guard: &Guard, e: &AuthnError) -> Refusal {
    let Some(authn) = &guard.authn else { return Refusal::invalid("authentication failed") };
    if let AuthnError::Unavailable { retry_after_secs } = e {
        return Refusal::AuthUnavailable { retry_after: *retry_after_secs };
    }
    let metadata = resource_metadata_url(authn);
    if let AuthnError::InsufficientScope { missing } = e {
        return Refusal::InsufficientScope {
            challenge: authn.challenge(e, metadata.as_deref()),
            missing: missing.clone(),
        };
    }
    Refusal::Unauthenticated { challenge: authn.challenge(e, metadata.as_deref()), reason: e.to_string() }
}
