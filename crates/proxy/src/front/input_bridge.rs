//! A legacy child's server→client requests, turned into 2026-07-28 `InputRequiredResult`s
//! (SEP-2322; `mcp-brief.md` §9). While a leased capable child serves a modern
//! `tools/call`, `prompts/get` or `resources/read`, a request it raises (`elicitation/create`,
//! `sampling/createMessage`, `roots/list`) is not refused: the modern client gets an
//! `InputRequiredResult` whose `inputRequests` hold the child's requests (never their ids)
//! and whose `requestState` is a sealed handle (an HMAC under a key drawn per process, bound
//! to the method, the name and the caller) to the parked call. The proxy keeps the lease,
//! the child's pending requests and the call's answer channel. The retry (same method and
//! params, plus `inputResponses` and `requestState`) answers the child's requests with the
//! response bytes as the client wrote them, then waits for the call's answer, or a further
//! request (another `InputRequiredResult`). Parked calls (`input_park`) are bounded in
//! number and time.

use std::time::Duration;

use apiary_protocol::{Message, codes, error_response, methods, modern, splice};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::Refusal;
use crate::front::capable::Lease;
use crate::front::input_park::{Asked, InputBridge, Parked, Running, refuse_asks};
use crate::front::refuse;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;

/// After a first server→client request, how long further ones raised with it (a server
/// asking several things at once) are gathered into the same `InputRequiredResult`.
const GATHER: Duration = Duration::from_millis(100);
/// Most server→client requests in one `InputRequiredResult`.
const MAX_ASKS: usize = 16;
/// The `params._meta` member in which a legacy server may name the key its request's
/// answer should have (the testkit does): used when it is short and unique in the round.
pub const INPUT_KEY_META: &str = "apiary/inputKey";
/// What a call is told, with -32603, when it would be parked but the table is full (its
/// child's requests are refused and the call is given up at the child).
pub const TOO_MANY_PARKED: &str = "too many calls wait for their client's input";
/// Longest key taken from [`INPUT_KEY_META`].
const MAX_KEY_LEN: usize = 64;

/// Whether a modern request of this method may be answered with an `InputRequiredResult`.
pub fn may_ask(method: &str) -> bool {
    matches!(method, methods::TOOLS_CALL | methods::PROMPTS_GET | methods::RESOURCES_READ)
}

/// Whether a modern request carries a `requestState` (it is a retry).
pub fn is_retry(m: &Message) -> bool {
    m.params_member(&["requestState"]).ok().flatten().is_some()
}

/// What the state of a call is bound to.
fn binding(ctx: &RequestCtx, m: &Message) -> String {
    let method = m.method().unwrap_or_default();
    let name = modern::name_member(method).and_then(|member| modern::params_string(m, member)).unwrap_or_default();
    format!("{method}\n{name}\n{}", ctx.identity.subject)
}

/// The request as a legacy child gets it: no `io.modelcontextprotocol/*` `_meta` members, no
/// `inputResponses` or `requestState` (2026-07-28 members); every other byte as it came.
fn legacy_form(m: &Message) -> Option<Message> {
    let stripped = match m.params_range() {
        Some(params) if m.bytes().get(params.start) == Some(&b'{') => {
            splice::remove_members(m.bytes(), params, |k| k == "inputResponses" || k == "requestState").ok()?
        }
        _ => m.bytes().clone(),
    };
    Message::parse(modern::legacy_request(&stripped).ok()?).ok()
}

/// The raw answer under `key` in the request's `inputResponses`, when it is an object.
fn response_for<'a>(m: &'a Message, key: &str) -> Option<&'a str> {
    let range = m.params_member(&["inputResponses", key]).ok()??;
    let raw = m.text(range)?;
    raw.starts_with('{').then_some(raw)
}

/// A call's first round: forwarded to the leased child, then answered (or parked).
pub async fn first(
    front: &StdioFront,
    ctx: &RequestCtx,
    m: Message,
    lease: Lease,
    progress: Option<mpsc::Sender<Bytes>>,
) -> Result<Bytes, Refusal> {
    let m = front.guard.admit(&ctx.identity, m)?.message;
    let id = m.id_raw().unwrap_or("null").to_owned();
    let forwarded = legacy_form(&m).ok_or_else(|| Refusal::invalid("the request cannot be forwarded"))?;
    let (tx, rx) = mpsc::channel(front.max_queued.max(8));
    let upstream = lease.conn.request(&forwarded, tx).map_err(|e| refuse::stdio_sessionless(e, m.id_raw()))?;
    let run =
        Running { lease, upstream, rx, method: m.method().unwrap_or_default().to_owned(), binding: binding(ctx, &m) };
    Ok(wait(front, run, &m, &id, progress).await)
}

/// A retry: its `requestState` names a parked call, whose child's requests its
/// `inputResponses` answer; then the call goes on.
pub async fn retry(
    front: &StdioFront,
    ctx: &RequestCtx,
    m: Message,
    progress: Option<mpsc::Sender<Bytes>>,
) -> Result<Bytes, Refusal> {
    let m = front.guard.admit(&ctx.identity, m)?.message;
    let id = m.id_raw().unwrap_or("null").to_owned();
    let invalid = |why: &str| error_response(Some(&id), codes::INVALID_PARAMS, why, None);
    let Some(state) = m.params_string("requestState") else {
        return Ok(invalid("requestState must be a string"));
    };
    let bridge = &front.input_bridge;
    let Parked { run, asked } = match bridge.take_or_refuse(&state, &binding(ctx, &m), &id) {
        Ok(parked) => parked,
        Err(gone) => return Ok(gone),
    };
    let mut missing = Vec::new();
    for a in asked {
        match response_for(&m, &a.key) {
            // The answer goes to the child as the client wrote it.
            Some(raw) => {
                if let Err(e) = run.lease.conn.send(apiary_protocol::result_response(&a.child_id, raw)) {
                    return Err(refuse::stdio_sessionless(e, Some(&id)));
                }
            }
            None => missing.push(a),
        }
    }
    if !missing.is_empty() {
        // Asked again for what is still missing (SEP-2322: re-request, not an error).
        return Ok(ask_client(bridge, run, missing, &id));
    }
    Ok(wait(front, run, &m, &id, progress).await)
}

/// Waits for the call's answer or the child's next requests, whichever comes first; its
/// progress notifications (the caller's token restored) go to `progress`, when given.
async fn wait(
    front: &StdioFront,
    mut run: Running,
    m: &Message,
    client_id: &str,
    progress: Option<mpsc::Sender<Bytes>>,
) -> Bytes {
    let deadline = tokio::time::Instant::now() + front.request_timeout;
    loop {
        let ask = tokio::select! {
            d = run.rx.recv() => match d {
                Some(d) if d.is_response() => {
                    let frame = Message::parse(d.frame.clone()).map(|a| a.with_id(client_id)).unwrap_or(d.frame);
                    let frame = modern::complete_result(frame.clone(), &run.method).unwrap_or(frame);
                    front.capable.give_back(run.lease);
                    return frame;
                }
                Some(d) => {
                    if let Some(p) = &progress {
                        let _ = p.try_send(d.frame);
                    }
                    continue;
                }
                None => return error_response(Some(client_id), codes::UPSTREAM_UNAVAILABLE, "the server went away", None),
            },
            ask = run.lease.next_ask() => match ask {
                Some(a) => a,
                None => return error_response(Some(client_id), codes::UPSTREAM_UNAVAILABLE, "the server went away", None),
            },
            () = tokio::time::sleep_until(deadline) => {
                run.lease.conn.abandon(run.upstream, "the proxy's request timeout expired");
                let msg = format!("the server did not answer within {} s", front.request_timeout.as_secs());
                return error_response(Some(client_id), codes::INTERNAL_ERROR, &msg, None);
            }
        };
        let mut frames = vec![ask];
        while frames.len() < MAX_ASKS {
            match tokio::time::timeout(GATHER, run.lease.next_ask()).await {
                Ok(Some(a)) => frames.push(a),
                _ => break,
            }
        }
        let mut asked = Vec::new();
        for frame in frames {
            let Ok(ask) = Message::parse(frame) else { continue };
            let (Some(child_id), Some(method)) = (ask.id_raw(), ask.method()) else { continue };
            let hinted = ask
                .params_member(&["_meta", INPUT_KEY_META])
                .ok()
                .flatten()
                .and_then(|r| serde_json::from_slice::<String>(&ask.bytes()[r]).ok())
                .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && !asked.iter().any(|a: &Asked| &a.key == k));
            let key = hinted.unwrap_or_else(|| front.input_bridge.fresh_key());
            // Answered already by this request's own `inputResponses` (a key the server names
            // itself, as a stateless server would read it): the child gets it at once.
            if let Some(raw) = response_for(m, &key) {
                let _ = run.lease.conn.send(apiary_protocol::result_response(child_id, raw));
                continue;
            }
            let request = format!(
                r#"{{"method":{},"params":{}}}"#,
                serde_json::Value::from(method),
                ask.params_raw().unwrap_or("{}")
            );
            asked.push(Asked { key, child_id: child_id.into(), request });
        }
        if asked.is_empty() {
            continue;
        }
        return ask_client(&front.input_bridge, run, asked, client_id);
    }
}

/// Parks the call and answers the client with an `InputRequiredResult`; when no more calls
/// can be parked, the child's requests are refused and the call is given up.
fn ask_client(bridge: &InputBridge, run: Running, asked: Vec<Asked>, client_id: &str) -> Bytes {
    let mut requests = String::from("{");
    for (i, a) in asked.iter().enumerate() {
        if i > 0 {
            requests.push(',');
        }
        requests.push_str(&serde_json::Value::from(a.key.as_str()).to_string());
        requests.push(':');
        requests.push_str(&a.request);
    }
    requests.push('}');
    match bridge.park(Parked { run, asked }) {
        Ok(state) => {
            let result = format!(
                r#"{{"resultType":"input_required","inputRequests":{requests},"requestState":{}}}"#,
                serde_json::Value::from(state)
            );
            apiary_protocol::result_response(client_id, &result)
        }
        Err(p) => {
            let max = bridge.bounds().max;
            tracing::warn!(max, "refused a server→client request: too many calls wait for input");
            refuse_asks(&p.run, &p.asked, "the proxy holds too many calls waiting for input");
            p.run.lease.conn.abandon(p.run.upstream, "too many calls wait for input");
            error_response(Some(client_id), codes::INTERNAL_ERROR, TOO_MANY_PARKED, None)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_legacy_form_drops_the_modern_members_and_keeps_every_other_byte() {
        let m = Message::parse(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1.50,"big":12345678901234567890123},"inputResponses":{"k":{"action":"accept"}},"requestState":"s","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":7}}}"#,
        ))
        .unwrap();
        let out = legacy_form(&m).unwrap();
        assert_eq!(
            std::str::from_utf8(out.bytes()).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1.50,"big":12345678901234567890123},"_meta":{"progressToken":7}}}"#
        );
        assert_eq!(response_for(&m, "k"), Some(r#"{"action":"accept"}"#));
        assert_eq!(response_for(&m, "other"), None);
        assert!(is_retry(&m));
    }

    /// A call whose child asks something when the park table is full is not parked: the
    /// client gets -32603 (never an `InputRequiredResult` it could not retry), the child's
    /// request is answered with an error and the call is cancelled at the child.
    #[tokio::test]
    async fn a_call_that_finds_the_park_table_full_is_refused() {
        use crate::front::input_park::ParkBounds;
        use crate::front::input_park::fake::{FakeChild, asked};

        let bridge = InputBridge::with_bounds(ParkBounds { max: 1, ttl: Duration::from_secs(300) });
        let mut child = FakeChild::start();
        let waiting = child.call("a", "tools/call\na\nalice").await;
        let first = ask_client(&bridge, waiting, vec![asked("k", "1")], "10");
        let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(first["result"]["resultType"], "input_required", "{first}");

        let over = child.call("b", "tools/call\nb\nalice").await;
        let upstream = over.upstream;
        let refused = ask_client(&bridge, over, vec![asked("k", r#""ask-2""#)], "11");
        let refused: serde_json::Value = serde_json::from_slice(&refused).unwrap();
        assert_eq!(refused["id"], 11, "{refused}");
        assert_eq!(refused["error"]["code"], codes::INTERNAL_ERROR, "{refused}");
        assert_eq!(refused["error"]["message"], TOO_MANY_PARKED, "{refused}");
        assert_eq!(bridge.parked(), 1);
        let told = child.next().await;
        assert_eq!((told["id"].as_str(), told["error"]["code"].as_i64()), (Some("ask-2"), Some(-32603)), "{told}");
        let cancelled = child.next().await;
        assert_eq!(cancelled["method"], "notifications/cancelled", "{cancelled}");
        assert_eq!(cancelled["params"]["requestId"], upstream, "{cancelled}");
    }

    #[test]
    fn only_object_answers_are_taken() {
        let m = Message::parse(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","inputResponses":{"a":12345,"b":null}}}"#,
        ))
        .unwrap();
        assert_eq!(response_for(&m, "a"), None);
        assert_eq!(response_for(&m, "b"), None);
        assert!(!is_retry(&m));
        assert!(may_ask("tools/call") && may_ask("prompts/get") && !may_ask("tools/list"));
    }
}
