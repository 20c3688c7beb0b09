//! Legacy requests that belong to no session (no `initialize` before them), when the child
//! speaks only 2026-07-28. A legacy server serves them on the shared child as they are; a
//! modern-only one refuses a request whose `_meta` declares no version. So each is bridged
//! as a session's request is (`legacy_bridge`), with what a client that never initialized
//! declared: no capabilities, no client info, no log level. Its answer leaves in the legacy
//! shape (`resultType`, `ttlMs`, `cacheScope` removed). Nothing can be asked of such a
//! client (it declared nothing), and with no stream of its own its progress is not relayed:
//! the answer comes as JSON (one SSE event for a client that accepts only SSE).

use apiary_protocol::bridge::{self, Stamp};
use apiary_protocol::{Kind, Message, ParseError, codes, error_response};
use apiary_transport::sse;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::answer::{self, Refusal};
use crate::front::call::sse_response;
use crate::front::dispatch::dispatch;
use crate::front::edge::Accepts;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;

/// What a client that never initialized declared.
const NOTHING_DECLARED: Stamp<'static> = Stamp { capabilities: "{}", client_info: None, log_level: None };

/// Whether sessionless legacy requests are bridged: the shared child is up (waited for as
/// the request itself would be) and speaks only 2026-07-28.
pub(crate) async fn applies(front: &StdioFront) -> Result<bool, Refusal> {
    let slot = &front.placement.shared.slot;
    slot.ready(front.request_timeout).await?;
    Ok(slot.is_modern_only())
}

/// A sessionless legacy POST to a modern-only child: each request stamped, sent and
/// answered in turn; notifications are accepted and go no further (2026-07-28 has none a
/// client sends: a cancellation is a closed stream); responses answer nothing of ours.
pub(crate) async fn post(
    front: &StdioFront,
    ctx: &RequestCtx,
    acc: Accepts,
    members: Vec<Result<Message, ParseError>>,
    batch: bool,
) -> Result<Response, Refusal> {
    let mut frames = Vec::new();
    for member in members {
        let m = match member {
            Ok(m) => m,
            Err(e) => {
                frames.push(e.to_response());
                continue;
            }
        };
        match m.kind() {
            Kind::Request => match one(front, ctx, &m).await {
                Ok(frame) => frames.push(frame),
                Err(refusal) if !batch => return Err(refusal),
                Err(refusal) => frames.push(refusal.echo(m.id_raw()).body()),
            },
            Kind::Notification => {}
            Kind::Response | Kind::Error if !batch => {
                return Err(Refusal::invalid("no outstanding request with this id"));
            }
            Kind::Response | Kind::Error => {}
        }
    }
    let body = match (batch, frames.as_slice()) {
        (_, []) => return Ok(answer::accepted()),
        (false, [frame]) => frame.clone(),
        _ => {
            let mut body = BytesMut::from(&b"["[..]);
            for (i, f) in frames.iter().enumerate() {
                if i > 0 {
                    body.extend_from_slice(b",");
                }
                body.extend_from_slice(f);
            }
            body.extend_from_slice(b"]");
            body.freeze()
        }
    };
    if acc.json {
        return Ok(answer::json(body));
    }
    let (tx, rx) = mpsc::channel(2);
    let _ = tx.try_send(Ok(sse::message_event(None, &body)));
    Ok(sse_response(rx))
}

/// One request, stamped, to the shared child; its answer in the legacy shape.
async fn one(front: &StdioFront, ctx: &RequestCtx, m: &Message) -> Result<Bytes, Refusal> {
    let stamped = bridge::modern_request(m.bytes(), &NOTHING_DECLARED)
        .map_err(|e| Refusal::invalid(format!("the request cannot be forwarded: {e}")))?;
    let stamped = Message::parse(stamped).map_err(Refusal::Parse)?;
    let Some((mut call, rx)) = dispatch(front, ctx, None, vec![Ok(stamped)], false).await? else {
        let id = m.id_raw().unwrap_or("null");
        return Ok(error_response(Some(id), codes::INTERNAL_ERROR, "the request was not forwarded", None));
    };
    // The POST is the request: a client that goes away ends it at the child.
    call.cancel_on_drop = true;
    Ok(bridge::legacy_result(call.into_frame(rx).await))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The stamp adds the version and empty capabilities and keeps every byte of the params.
    #[test]
    fn a_sessionless_request_is_stamped_as_declaring_nothing() {
        let frame = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1.50,"big":12345678901234567890123}}}"#,
        );
        let out = bridge::modern_request(&frame, &NOTHING_DECLARED).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains(r#""arguments":{"n":1.50,"big":12345678901234567890123}"#), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let meta = &v["params"]["_meta"];
        assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28", "{text}");
        assert_eq!(meta["io.modelcontextprotocol/clientCapabilities"], serde_json::json!({}), "{text}");
        assert!(meta.get("io.modelcontextprotocol/clientInfo").is_none(), "{text}");
    }
}
