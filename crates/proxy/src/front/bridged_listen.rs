//! A bridged legacy session's one `subscriptions/listen` at its 2026-07-28 server
//! (mcp-brief.md rule 40), shared by the stdio (`legacy_bridge`) and HTTP (`http_bridge`)
//! halves: what it asks for (the session's resource URIs, and the list changes the server
//! offers once the session has a stream to receive them), when it is opened again (the URI
//! set changes, or the session's first such stream opens), and what of it reaches the legacy
//! client (`resources/updated` and the `*/list_changed` asked for, less the listen's
//! subscription id, which names nothing the client sent).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apiary_protocol::{Kind, Message, codes, error_response, methods, modern, splice};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::front::bridged::{Bridged, ListChanges, Listening, lock};
use crate::guard::RequestCtx;

/// Resource URIs one bridged session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 256;
/// Longest one `subscriptions/listen` stays open before it is opened again.
pub(crate) const LISTEN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Pause before a listen the server ended is opened again.
pub(crate) const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Where a listen's first acknowledgement (or why it failed) goes.
pub(crate) struct Ack(watch::Sender<Option<Result<(), String>>>);

impl Ack {
    pub(crate) fn send(self, outcome: Result<(), String>) {
        // Nobody waiting is no error: the listen serves the session all the same.
        let _ = self.0.send(Some(outcome));
    }
}

/// What one listen asks the server for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) uris: Vec<String>,
    pub(crate) lists: ListChanges,
}

impl Filter {
    /// What session `b`'s listen asks for now.
    fn of(b: &Bridged) -> Filter {
        let lists = if b.lists_wanted.load(Ordering::Acquire) { b.offered } else { ListChanges::default() };
        Filter { uris: lock(&b.subscriptions).iter().cloned().collect(), lists }
    }

    fn is_empty(&self) -> bool {
        self.uris.is_empty() && !self.lists.any()
    }

    /// The listen request, before its `_meta` is stamped; `id` is a JSON id.
    pub(crate) fn request(&self, id: &str) -> Bytes {
        let mut n = serde_json::Map::new();
        for (on, key) in [
            (self.lists.tools, "toolsListChanged"),
            (self.lists.prompts, "promptsListChanged"),
            (self.lists.resources, "resourcesListChanged"),
        ] {
            if on {
                n.insert(key.to_owned(), serde_json::Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            n.insert("resourceSubscriptions".to_owned(), serde_json::json!(self.uris));
        }
        let n = serde_json::Value::Object(n);
        Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"subscriptions/listen","params":{{"notifications":{n}}}}}"#
        ))
    }
}

/// What carries a bridged session's listen to its server.
pub(crate) trait Listens: Send + Sync + 'static {
    /// Opens the listen for `filter` in a task that keeps it open (again when the server
    /// ends it) while the session lives; its first acknowledgement, or why it failed, goes to
    /// `ack`. Aborting the task ends the listen at the server.
    fn open_listen(&self, ctx: &RequestCtx, b: &Arc<Bridged>, filter: Filter, ack: Ack) -> JoinHandle<()>;

    /// How long the server has to acknowledge a listen.
    fn ack_timeout(&self) -> Duration;
}

/// What one message on a listen is to the bridge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// The server accepted the listen.
    Acknowledged,
    /// A notification for the session, made a legacy one.
    Relay(Bytes),
    /// Nothing for the session.
    Ignored,
    /// The listen's own answer: it ended (an error says why).
    Ended(Result<(), String>),
}

/// What `frame`, heard on a listen that asked for `lists`, is to the bridge.
pub(crate) fn heard(frame: &Bytes, lists: ListChanges) -> Heard {
    let Ok(m) = Message::parse(frame.clone()) else { return Heard::Ignored };
    let wanted = match m.method() {
        Some(methods::RESOURCES_UPDATED) => true,
        Some("notifications/tools/list_changed") => lists.tools,
        Some("notifications/prompts/list_changed") => lists.prompts,
        Some("notifications/resources/list_changed") => lists.resources,
        _ => false,
    };
    match m.kind() {
        Kind::Notification if m.method() == Some("notifications/subscriptions/acknowledged") => Heard::Acknowledged,
        Kind::Notification if wanted => Heard::Relay(legacy_notification(frame)),
        Kind::Notification | Kind::Request => Heard::Ignored,
        Kind::Error => Heard::Ended(Err(m.payload_raw().unwrap_or("the listen failed").chars().take(300).collect())),
        Kind::Response => Heard::Ended(Ok(())),
    }
}

/// A listen's notification as a legacy client gets it: without the listen's
/// `_meta.subscriptionId` (and without a `_meta` that held nothing else); every other byte
/// as the server sent it.
fn legacy_notification(frame: &Bytes) -> Bytes {
    let meta = |f: &Bytes| splice::find_path(f, 0..f.len(), &["params", "_meta"]).ok().flatten();
    let Some(range) = meta(frame).filter(|r| frame.get(r.start) == Some(&b'{')) else { return frame.clone() };
    let Ok(out) = splice::remove_members(frame, range, |k| k == modern::META_SUBSCRIPTION_ID) else {
        return frame.clone();
    };
    let empty = meta(&out).and_then(|r| splice::members(&out, r).ok()).is_some_and(|m| m.is_empty());
    let params = splice::find_member(&out, 0..out.len(), "params").ok().flatten();
    match params {
        Some(params) if empty => splice::remove_members(&out, params, |k| k == "_meta").unwrap_or(out),
        _ => out,
    }
}

/// `resources/subscribe` and `resources/unsubscribe` (removed in 2026-07-28) of session `b`:
/// its set of URIs changes, and its one listen is opened again for what it now asks (closed
/// when that is nothing). Answered once the server acknowledged the new listen.
pub(crate) async fn subscription<L: Listens>(up: &L, ctx: &RequestCtx, b: &Arc<Bridged>, m: &Message) -> Bytes {
    let id = m.id_raw().unwrap_or("null");
    let ok = || apiary_protocol::result_response(id, "{}");
    let Some(uri) = m.params_string("uri") else {
        return error_response(Some(id), codes::INVALID_PARAMS, "params.uri (a string) is required", None);
    };
    let subscribe = m.method() == Some(methods::SUBSCRIBE);
    let acked = {
        // The listen's lock is held while the set changes and its task is replaced, so
        // concurrent changes leave the listen of the newest set.
        let mut listen = lock(&b.listen);
        {
            let mut set = lock(&b.subscriptions);
            if subscribe && !set.contains(&uri) && set.len() >= MAX_SUBSCRIPTIONS {
                let msg = format!("a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources");
                return error_response(Some(id), codes::INVALID_REQUEST, &msg, None);
            }
            let changed = if subscribe { set.insert(uri) } else { set.remove(&uri) };
            if !changed {
                return ok();
            }
        }
        reopen(up, ctx, b, &mut listen)
    };
    let Some(acked) = acked else { return ok() };
    match tokio::time::timeout(up.ack_timeout(), acknowledged(b, acked)).await {
        Ok(Ok(())) => ok(),
        Ok(Err(why)) => error_response(Some(id), codes::INTERNAL_ERROR, &why, None),
        Err(_) => {
            error_response(Some(id), codes::INTERNAL_ERROR, "the server did not acknowledge the subscription", None)
        }
    }
}

/// Waits for the listen behind `acked` to be acknowledged. A listen replaced before it was
/// (a concurrent subscribe, or the session's first GET) hands the wait to its replacement,
/// which asks for at least as much; with none left (nothing is asked any more) there is
/// nothing to wait for.
async fn acknowledged(b: &Bridged, mut acked: watch::Receiver<Option<Result<(), String>>>) -> Result<(), String> {
    loop {
        if let Ok(outcome) = acked.wait_for(Option::is_some).await {
            return outcome.clone().unwrap_or(Ok(()));
        }
        let next = lock(&b.listen).as_ref().map(|l| l.acked.clone());
        match next {
            Some(next) if !next.same_channel(&acked) => acked = next,
            Some(_) => return Err("the subscription ended before the server acknowledged it".into()),
            None => return Ok(()),
        }
    }
}

/// Session `b` has a stream for unsolicited messages: the first time, its listen is opened
/// again asking also for the list changes the server offers (none offered: nothing to do).
/// Returns once the server acknowledged (or failed to, which is logged: the stream is
/// served without list changes).
pub(crate) async fn stream_opened<L: Listens>(up: &L, ctx: &RequestCtx, b: &Arc<Bridged>) {
    if !b.offered.any() || b.lists_wanted.swap(true, Ordering::AcqRel) {
        return;
    }
    let acked = reopen(up, ctx, b, &mut lock(&b.listen));
    let Some(acked) = acked else { return };
    match tokio::time::timeout(up.ack_timeout(), acknowledged(b, acked)).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => tracing::info!(%why, "a bridged session's listen for list changes failed"),
        Err(_) => tracing::info!("the server did not acknowledge a bridged session's listen for list changes"),
    }
}

/// Replaces session `b`'s listen (`listen`, its lock held) with one for what it asks now:
/// where the acknowledgement will arrive, `None` when it asks for nothing.
fn reopen<L: Listens>(
    up: &L,
    ctx: &RequestCtx,
    b: &Arc<Bridged>,
    listen: &mut Option<Listening>,
) -> Option<watch::Receiver<Option<Result<(), String>>>> {
    if let Some(old) = listen.take() {
        old.task.abort();
    }
    let filter = Filter::of(b);
    if filter.is_empty() {
        return None;
    }
    let (tx, acked) = watch::channel(None);
    let task = up.open_listen(ctx, b, filter, Ack(tx));
    *listen = Some(Listening { task, acked: acked.clone() });
    Some(acked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TOOLS: ListChanges = ListChanges { tools: true, prompts: false, resources: false };

    #[test]
    fn the_request_asks_for_the_lists_and_the_uris() {
        let f = Filter {
            uris: vec!["test://a".into()],
            lists: ListChanges { tools: true, prompts: false, resources: true },
        };
        let v: serde_json::Value = serde_json::from_slice(&f.request(r#""l-1""#)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","id":"l-1","method":"subscriptions/listen","params":{"notifications":{
                "toolsListChanged":true,"resourcesListChanged":true,"resourceSubscriptions":["test://a"]}}})
        );
        assert!(Filter::default().is_empty());
        assert!(!Filter { uris: Vec::new(), lists: TOOLS }.is_empty());
    }

    #[test]
    fn a_list_change_loses_only_the_subscription_id() {
        let f = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"apiary-listen-3"}}}"#,
        );
        let Heard::Relay(out) = heard(&f, TOOLS) else { panic!("relayed") };
        assert_eq!(&out[..], br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{}}"#);
        // Other members of `_meta` and `params` keep their bytes.
        let f = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a","n":1.50,"_meta":{"x/y":1e400, "io.modelcontextprotocol/subscriptionId":7}}}"#,
        );
        let Heard::Relay(out) = heard(&f, ListChanges::default()) else { panic!("relayed") };
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a","n":1.50,"_meta":{"x/y":1e400}}}"#
        );
        let bare = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        assert_eq!(heard(&bare, TOOLS), Heard::Relay(bare.clone()));
    }

    #[test]
    fn what_was_not_asked_for_is_not_relayed() {
        let prompts = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#);
        assert_eq!(heard(&prompts, TOOLS), Heard::Ignored);
        let log = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#);
        assert_eq!(heard(&log, TOOLS), Heard::Ignored);
        let ack = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{}}}"#,
        );
        assert_eq!(heard(&ack, TOOLS), Heard::Acknowledged);
        let done = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"l","result":{"resultType":"complete"}}"#);
        assert_eq!(heard(&done, TOOLS), Heard::Ended(Ok(())));
        let err = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"l","error":{"code":-32601,"message":"no"}}"#);
        assert!(matches!(heard(&err, TOOLS), Heard::Ended(Err(why)) if why.contains("-32601")));
    }
}
