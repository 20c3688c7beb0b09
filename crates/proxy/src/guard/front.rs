//! The HTTP half of the policy, as middleware on the MCP routes: the audit record begins,
//! the caller is authenticated (before any body is read), and the client's own credentials
//! are taken off the request so no upstream ever receives them.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use apiary_policy::Identity;
use apiary_policy::authn::AuthnError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Guard;
use super::metadata::resource_metadata_url;
use crate::answer::Refusal;

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

    /// Records what the request was, for the audit record.
    pub(crate) fn noted(&self, method: Option<&str>, target: Option<&str>, request: Option<&bytes::Bytes>) {
        let Some(note) = &self.note else { return };
        let Ok(mut n) = note.lock() else { return };
        if n.method.is_none() {
            n.method = method.map(str::to_owned);
            n.target = target.map(str::to_owned);
            n.request = request.cloned();
        }
    }
}

/// What a request turned out to be, filled in by the handler that parsed it.
#[derive(Debug, Default)]
pub(crate) struct Note {
    pub method: Option<String>,
    pub target: Option<String>,
    pub request: Option<bytes::Bytes>,
}

/// The front layer: audit ─▶ authn ─▶ the route ─▶ audit.
pub(crate) async fn front_layer(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let note = guard.audit.as_ref().map(|_| Arc::new(Mutex::new(Note::default())));
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let audit_head =
        guard.audit.as_ref().map(|_| super::audit_head(req.method().as_str(), req.headers(), req.uri().path(), peer));
    let identity = match &guard.authn {
        None => Arc::clone(&ANONYMOUS),
        Some(authn) => match authn.authenticate(req.headers().get(header::AUTHORIZATION)).await {
            Ok(id) => Arc::new(id),
            Err(e) => {
                let refusal = refusal(&guard, &e);
                let res = refusal.into_response();
                if let Some(head) = audit_head {
                    guard.record(head, None, None, &res, started);
                }
                return res;
            }
        },
    };
    let mut caller_token = None;
    if guard.authn.is_some() {
        // The caller's token was for this proxy; upstreams get credentials of their own.
        let presented = req.headers_mut().remove(header::AUTHORIZATION);
        if guard.outgoing.as_ref().is_some_and(|o| o.needs_caller_token()) {
            caller_token = presented.as_ref().and_then(bearer_token).map(Arc::from);
        }
    }
    req.extensions_mut().insert(RequestCtx { identity: Arc::clone(&identity), note: note.clone(), caller_token });
    let res = next.run(req).await;
    if let Some(head) = audit_head {
        guard.record(head, Some(&identity), note.as_deref(), &res, started);
    }
    res
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
    Refusal::Unauthenticated { challenge: authn.challenge(e, metadata.as_deref()), reason: e.to_string() }
}
