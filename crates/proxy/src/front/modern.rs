//! The 2026-07-28 ("modern") front of a stdio upstream, beside the legacy one at the same
//! `/mcp`: each POST stands alone, declares its version and capabilities in `_meta`, and
//! mirrors its method and name in headers. A modern client is served from the child Apiary
//! started itself (the shared child). A child that offered 2026-07-28 in the
//! `server/discover` probe at its start gets the requests as they are; a legacy one is
//! bridged as `mcp-brief.md` §9 says: `server/discover` is synthesised from the child's
//! `initialize` result, `io.modelcontextprotocol/*` `_meta` keys are stripped and every
//! result gains `resultType`; a call declaring client capabilities runs on a child of its
//! own whose server→client requests become `InputRequiredResult`s (`capable`,
//! `input_bridge`), and `subscriptions/listen` is served from the child's notifications
//! (`legacy_listen`).

use std::sync::Arc;

use apiary_protocol::{Body as JsonBody, Kind, Message, Revision, codes, methods, modern};
use apiary_transport::sse;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::{self, Refusal};
use crate::front::call::{send_event, sse_response};
use crate::front::capable::{self, Lease};
use crate::front::dispatch::dispatch;
use crate::front::edge::Accepts;
use crate::front::input_bridge;
use crate::front::legacy_listen;
use crate::front::param_headers;
use crate::front::refuse;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;

const VERSION_HEADER: &str = "mcp-protocol-version";
const SESSION_HEADER: &str = "mcp-session-id";
/// Longest a `subscriptions/listen` stream stays open; the client opens another after.
const LISTEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Whether the header names the modern revision: such a request is modern whatever it
/// carries (a session header is then ignored, row 11).
pub fn header_is_modern(headers: &HeaderMap) -> bool {
    header_str(headers, VERSION_HEADER)
        .and_then(|v| v.parse::<Revision>().ok())
        .is_some_and(|r| r.era() == apiary_protocol::Era::Modern)
}

/// The era of one POST (`mcp-brief.md` rule 7): the modern version header, or, with no
/// session header, a request (not `initialize`) whose `_meta` declares a version, whatever
/// version that is (an unserved one is then refused as such, row 22).
pub fn is_modern(headers: &HeaderMap, body: &JsonBody) -> bool {
    if header_is_modern(headers) {
        return true;
    }
    if headers.contains_key(SESSION_HEADER) {
        return false;
    }
    match body {
        JsonBody::Single(m) if m.is_request() && m.method() != Some(methods::INITIALIZE) => {
            modern::meta_version(m.params_raw()).is_some()
        }
        _ => false,
    }
}

/// A modern POST: checked (rows 8, 17, 21, 22, 23), then answered here (`server/discover`)
/// or forwarded to the child.
pub async fn post(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    acc: Accepts,
    parsed: JsonBody,
) -> Result<Response, Refusal> {
    let m = match parsed {
        JsonBody::Batch(_) => return Err(Refusal::invalid("batches are not supported in 2026-07-28")),
        JsonBody::Single(m) => m,
    };
    match m.kind() {
        // Clients never answer a modern server: it sends them no requests (row 17).
        Kind::Response | Kind::Error => return Err(Refusal::invalid("no outstanding request with this id")),
        // Nothing of the modern era needs a client notification to reach the child (a
        // cancellation is a closed stream); notifications are not header-checked.
        Kind::Notification => return Ok(answer::accepted()),
        Kind::Request => {}
    }
    let method = m.method().unwrap_or_default().to_owned();
    check(headers, &m, &method)?;
    let slot = &front.placement.shared.slot;
    slot.ready(front.request_timeout).await.map_err(|e| refuse::stdio_sessionless(e, m.id_raw()))?;
    param_headers::check(front, headers, &m).await?;
    let generation = slot.generation();
    // A child that offered 2026-07-28 when it started gets modern requests as they are and
    // answers them itself; a legacy one gets them bridged (mcp-brief.md §9).
    let modern_child = slot.is_modern();
    let frame = if method == methods::SERVER_DISCOVER && !modern_child {
        discover(front, &m).await?
    } else if method == methods::SUBSCRIPTIONS_LISTEN && !modern_child {
        match legacy_listen::listen(front, &m, LISTEN_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(frame) => frame,
        }
    } else if let Some(bridged) = bridged(front, &m, &method, modern_child).await? {
        let wants_progress = apiary_protocol::rewrite::request_progress_token(&m).is_some();
        if wants_progress && acc.sse {
            return Ok(bridged_sse(Arc::clone(front), ctx.clone(), m, bridged));
        }
        bridged.run(front, ctx, m, None).await?
    } else {
        let forwarded = if modern_child {
            with_caller_ticket(m)?
        } else {
            modern::legacy_request(m.bytes())
                .ok()
                .and_then(|b| Message::parse(b).ok())
                .ok_or_else(|| Refusal::invalid("the request cannot be forwarded"))?
        };
        let wants_progress = apiary_protocol::rewrite::request_progress_token(&forwarded).is_some();
        // A listen stream is the request: its notifications come until the client closes it.
        let listen = method == methods::SUBSCRIPTIONS_LISTEN;
        let Some((mut call, rx)) = dispatch(front, ctx, None, vec![Ok(forwarded)], false).await? else {
            return Ok(answer::accepted());
        };
        // The stream (or the connection) is the request: closing it cancels the call.
        call.cancel_on_drop = true;
        if listen {
            call.timeout = LISTEN_TIMEOUT;
        }
        let lists_tools = method == methods::TOOLS_LIST;
        let finish = move |frame: Bytes| {
            if modern_child { frame } else { modern::complete_result(frame.clone(), &method).unwrap_or(frame) }
        };
        if (wants_progress || listen) && acc.sse {
            return Ok(call.into_request_sse(rx, front.write_timeout, finish));
        }
        let frame = finish(call.into_frame(rx).await);
        if lists_tools
            && let Ok(answer) = Message::parse(frame.clone())
            && let Some(result) = answer.payload_raw().filter(|_| answer.kind() == Kind::Response)
        {
            front.tool_headers.learn(generation, result);
        }
        frame
    };
    Ok(respond(frame, acc))
}

/// For a child that uses callers (the vMCP: the request runs in its caller's scope only
/// then), the request's caller named in `_meta` by a one-shot ticket, never the token; any
/// ticket the client wrote is replaced.
fn with_caller_ticket(m: Message) -> Result<Message, Refusal> {
    let Some(caller) = apiary_transport::launch::CallerHandle::of_current_request() else { return Ok(m) };
    let ticket = serde_json::Value::from(caller.lend()).to_string();
    let path = ["_meta", apiary_transport::launch::CALLER_TICKET_META];
    m.params_range()
        .and_then(|params| apiary_protocol::splice::set_path(m.bytes(), params, &path, &ticket).ok())
        .and_then(|b| Message::parse(b).ok())
        .ok_or_else(|| Refusal::invalid("the request cannot be forwarded"))
}

/// A call the bridge to a legacy child serves itself (`front::input_bridge`).
enum Bridged {
    /// A retry carrying `requestState`.
    Retry,
    /// A first call declaring client capabilities, on a child of its own (`front::capable`).
    First(Lease),
}

impl Bridged {
    async fn run(
        self,
        front: &StdioFront,
        ctx: &RequestCtx,
        m: Message,
        progress: Option<mpsc::Sender<Bytes>>,
    ) -> Result<Bytes, Refusal> {
        match self {
            Bridged::Retry => input_bridge::retry(front, ctx, m, progress).await,
            Bridged::First(lease) => input_bridge::first(front, ctx, m, lease, progress).await,
        }
    }
}

/// Whether the bridge serves this request itself: a call a legacy child may answer with
/// server→client requests that is a retry, or whose request declared capabilities and got a
/// child of its own. `None`: the request goes the common way (the shared child).
async fn bridged(
    front: &StdioFront,
    m: &Message,
    method: &str,
    modern_child: bool,
) -> Result<Option<Bridged>, Refusal> {
    if modern_child || !input_bridge::may_ask(method) {
        return Ok(None);
    }
    if input_bridge::is_retry(m) {
        return Ok(Some(Bridged::Retry));
    }
    let caps = capable::declared_caps(m);
    if !caps.any() {
        return Ok(None);
    }
    let lease = front.capable.lease(&front.placement, caps, front.request_timeout).await;
    Ok(lease.map_err(|e| refuse::stdio_sessionless(e, m.id_raw()))?.map(Bridged::First))
}

/// A bridged call that asked for progress, as SSE: its progress notifications, then its
/// answer. The stream is the request: a client that closes it ends the call (and stops the
/// child it had leased).
fn bridged_sse(front: Arc<StdioFront>, ctx: RequestCtx, m: Message, bridged: Bridged) -> Response {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    let write_timeout = front.write_timeout;
    tokio::spawn(async move {
        let (ptx, mut prx) = mpsc::channel::<Bytes>(32);
        let work = bridged.run(&front, &ctx, m, Some(ptx));
        tokio::pin!(work);
        let closed = body_tx.clone();
        let mut out = Some(body_tx);
        let last = loop {
            tokio::select! {
                biased;
                () = closed.closed() => return,
                Some(p) = prx.recv() => send_event(&mut out, sse::message_event(None, &p), write_timeout).await,
                r = &mut work => break r.unwrap_or_else(|e| e.body()),
            }
        };
        while let Ok(p) = prx.try_recv() {
            send_event(&mut out, sse::message_event(None, &p), write_timeout).await;
        }
        send_event(&mut out, sse::message_event(None, &last), write_timeout).await;
    });
    sse_response(body_rx)
}

/// The checks of a modern request, in order: `_meta` (-32602), the version header against
/// `_meta` (-32020), the version itself (-32022), the method and name headers (-32020),
/// then methods the era removed (404).
fn check(headers: &HeaderMap, m: &Message, method: &str) -> Result<(), Refusal> {
    // `_meta` alone is read, from the bytes: the arguments are never decoded here, so no
    // number a `Value` cannot hold gets a request refused, and they are forwarded as sent.
    let version = modern::check_meta(m.params_raw()).map_err(|e| Refusal::InvalidParams(e.to_string()))?;
    match header_str(headers, VERSION_HEADER) {
        Some(h) if h == version => {}
        Some(h) => {
            return Err(Refusal::HeaderMismatch(format!(
                "the {} header ({h}) does not match params._meta ({version})",
                modern::VERSION_HEADER
            )));
        }
        None => return Err(Refusal::HeaderMismatch(format!("the {} header is required", modern::VERSION_HEADER))),
    }
    if !version.parse::<Revision>().is_ok_and(|r| r.era() == apiary_protocol::Era::Modern) {
        return Err(Refusal::UnservedVersion { requested: version });
    }
    mirror(headers, modern::METHOD_HEADER, Some(method))?;
    if let Some(member) = modern::name_member(method) {
        let body = modern::params_string(m, member);
        mirror(headers, modern::NAME_HEADER, body.as_deref())?;
    }
    if modern::is_removed(method) {
        return Err(Refusal::MethodNotFound { method: method.to_owned() });
    }
    Ok(())
}

/// One mirror header must be present and, decoded, equal the body's value.
fn mirror(headers: &HeaderMap, name: &str, body: Option<&str>) -> Result<(), Refusal> {
    let Some(raw) = headers.get(name) else {
        return Err(Refusal::HeaderMismatch(format!("the {name} header is required")));
    };
    let value = modern::decode_header_value(raw.as_bytes())
        .map_err(|e| Refusal::HeaderMismatch(format!("the {name} header {e}")))?;
    if Some(value.as_str()) != body {
        return Err(Refusal::HeaderMismatch(format!("the {name} header does not match the body")));
    }
    Ok(())
}

/// `server/discover`, synthesised from the `initialize` result of the child Apiary
/// initialized itself: its capabilities, instructions and server info.
async fn discover(front: &StdioFront, m: &Message) -> Result<Bytes, Refusal> {
    let group = &front.placement.shared;
    group.slot.ready(front.request_timeout).await.map_err(|e| refuse::stdio_sessionless(e, m.id_raw()))?;
    let init = group.slot.init_result().unwrap_or_default();
    let result = modern::discover_from_initialize(&init);
    Ok(apiary_protocol::result_response(m.id_raw().unwrap_or("null"), &result))
}

/// The answer as JSON (or one SSE event for a client that accepts only SSE), with the
/// status this era gives an error, whoever said it: method-not-found is a 404 (row 23); a
/// header mismatch, a missing client capability and an unserved version are 400s.
fn respond(frame: Bytes, acc: Accepts) -> Response {
    let status = match error_code(&frame).and_then(|c| i32::try_from(c).ok()) {
        Some(codes::METHOD_NOT_FOUND) => Some(StatusCode::NOT_FOUND),
        Some(
            codes::HEADER_MISMATCH | codes::MISSING_REQUIRED_CLIENT_CAPABILITY | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => Some(StatusCode::BAD_REQUEST),
        _ => None,
    };
    let mut res = if acc.json {
        answer::json(frame)
    } else {
        let (tx, rx) = mpsc::channel(2);
        let _ = tx.try_send(Ok(sse::message_event(None, &frame)));
        sse_response(rx)
    };
    if let Some(status) = status {
        *res.status_mut() = status;
    }
    res
}

/// The `error.code` of an error frame, read alone (the rest of the error, its `data`
/// included, is never decoded).
fn error_code(frame: &Bytes) -> Option<i64> {
    let m = Message::parse(frame.clone()).ok().filter(|m| m.kind() == Kind::Error)?;
    let payload = m.payload_range()?;
    let code = apiary_protocol::splice::find_member(frame, payload, "code").ok()??;
    m.text(code)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The code is read alone: an error whose `data` holds a number a `Value` cannot
    /// (`1e400`) is still seen as method-not-found (it was not, and got 200, not 404).
    #[test]
    fn the_error_code_is_read_past_what_a_value_cannot_hold() {
        let frame = |error: &str| Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":1,"error":{error}}}"#));
        assert_eq!(error_code(&frame(r#"{"data":{"n":1e400},"code" : -32601,"message":"x"}"#)), Some(-32601));
        assert_eq!(error_code(&frame(r#"{"code":-32602,"message":"x"}"#)), Some(-32602));
        assert_eq!(error_code(&frame(r#"{"code":"x","message":"x"}"#)), None);
        assert_eq!(error_code(&Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"code":-32601}}"#)), None);
        let acc = Accepts { json: true, sse: true, sse_named: false };
        let res = respond(frame(r#"{"code":-32601,"message":"x","data":[1e400]}"#), acc);
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    /// A missing client capability is a 400 whoever said it (the child, here); an
    /// in-band error such as invalid params stays a 200.
    #[test]
    fn era_errors_get_their_http_status() {
        let frame = |error: &str| Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":1,"error":{error}}}"#));
        let acc = Accepts { json: true, sse: true, sse_named: false };
        let status = |error: &str| respond(frame(error), acc).status();
        assert_eq!(
            status(r#"{"code":-32021,"message":"x","data":{"requiredCapabilities":{"sampling":{}}}}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(r#"{"code":-32020,"message":"x"}"#), StatusCode::BAD_REQUEST);
        assert_eq!(status(r#"{"code":-32602,"message":"x"}"#), StatusCode::OK);
        assert_eq!(
            respond(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), acc).status(),
            StatusCode::OK
        );
    }
}
