//! `subscriptions/listen` (SEP-2575) when the child is a legacy server, which has no such
//! method: the proxy answers it itself from the shared child's notifications. The stream
//! opens with `notifications/subscriptions/acknowledged` carrying the accepted subset (what
//! the child's `initialize` capabilities support), then carries the child's list changes the
//! caller opted in to and the `notifications/resources/updated` of the URIs it subscribed to
//! (the child is subscribed through `resources/subscribe`, once per URI whoever listens),
//! each tagged with the caller's listen id as its `subscriptionId`. Bounded: at most
//! [`MAX_LISTENERS`] streams at once, each at most the listen timeout (then the listen's
//! complete response ends it); closing the stream frees it and its subscriptions.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apiary_protocol::{Message, RequestId, codes, error_response, methods, modern, splice};
use apiary_transport::sse;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::front::call::{send_event, sse_response};
use crate::front::state::StdioFront;
use crate::upstream::mux::{Attached, ChildGroup};

/// Listen streams to a legacy child open at once.
pub const MAX_LISTENERS: usize = 64;
/// Notifications one stream may fall behind by; more are dropped for it.
const QUEUE: usize = 32;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    tools_list_changed: Option<bool>,
    prompts_list_changed: Option<bool>,
    resources_list_changed: Option<bool>,
    resource_subscriptions: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ListenParams {
    notifications: Option<Filter>,
}

/// What one listen stream was granted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Accepted {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Accepted {
    /// What was asked, narrowed to what the child's `initialize` result advertises.
    fn of(asked: &Filter, init: &Value) -> Accepted {
        let caps = &init["capabilities"];
        let on = |asked: Option<bool>, cap: &str, flag: &str| asked == Some(true) && caps[cap][flag] == json!(true);
        let subscribe = caps["resources"]["subscribe"] == json!(true);
        let mut uris: Vec<String> =
            if subscribe { asked.resource_subscriptions.clone().unwrap_or_default() } else { Vec::new() };
        uris.sort();
        uris.dedup();
        Accepted {
            tools: on(asked.tools_list_changed, "tools", "listChanged"),
            prompts: on(asked.prompts_list_changed, "prompts", "listChanged"),
            resources: on(asked.resources_list_changed, "resources", "listChanged"),
            uris,
        }
    }

    fn wants(&self, method: &str) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            // The multiplexer delivers an update only for a URI this stream subscribed to.
            methods::RESOURCES_UPDATED => !self.uris.is_empty(),
            _ => false,
        }
    }

    /// The accepted subset, as the acknowledgement's `notifications`.
    fn filter(&self) -> Value {
        let mut f = serde_json::Map::new();
        for (on, key) in [
            (self.tools, "toolsListChanged"),
            (self.prompts, "promptsListChanged"),
            (self.resources, "resourcesListChanged"),
        ] {
            if on {
                f.insert(key.to_owned(), Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            f.insert("resourceSubscriptions".to_owned(), json!(self.uris));
        }
        Value::Object(f)
    }
}

/// One listen stream, attached to the shared child like a session: it gets the
/// notifications every session gets (list changes, updates of its URIs), never a
/// server→client request or another caller's log.
struct Listener {
    accepted: Accepted,
    tx: mpsc::Sender<Bytes>,
}

impl Attached for Listener {
    fn has_in_flight(&self) -> bool {
        false
    }
    fn may_be_asked(&self, _method: &str) -> bool {
        false
    }
    fn is_subscribed(&self, uri: &str) -> bool {
        self.accepted.uris.iter().any(|u| u == uri)
    }
    fn subscriptions(&self) -> Vec<String> {
        self.accepted.uris.clone()
    }
    fn wants_log(&self, _m: &Message) -> bool {
        false
    }
    fn deliver(&self, frame: Bytes, server_request: Option<(RequestId, u64)>, _request_scoped: bool) -> bool {
        if server_request.is_some() {
            return false;
        }
        let wanted =
            Message::parse(frame.clone()).ok().is_some_and(|m| m.method().is_some_and(|k| self.accepted.wants(k)));
        if wanted && self.tx.try_send(frame).is_err() {
            tracing::debug!("a listen stream fell behind: a notification was dropped for it");
        }
        true
    }
}

/// The notification tagged with the listen's id as `_meta.subscriptionId`.
fn tagged(frame: &Bytes, id: &str) -> Option<Bytes> {
    splice::set_path(frame, 0..frame.len(), &["params", "_meta", modern::META_SUBSCRIPTION_ID], id).ok()
}

/// Frees a stream's place, its attachment and the subscriptions only it held.
struct Release {
    front: Arc<StdioFront>,
    group: Arc<ChildGroup>,
    listener: Arc<Listener>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let last = self.group.release(self.listener.as_ref());
        if let Some(conn) = self.group.slot.live() {
            for uri in last {
                let _ = conn.start_own(methods::UNSUBSCRIBE, &json!({ "uri": uri }).to_string());
            }
        }
        self.front.legacy_listeners.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a `subscriptions/listen` for a legacy child: the stream, or (too many streams
/// are open) the error frame.
pub fn listen(front: &Arc<StdioFront>, m: &Message, timeout: Duration) -> Result<Response, Bytes> {
    let id = m.id_raw().unwrap_or("null").to_owned();
    let taken = front
        .legacy_listeners
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_LISTENERS).then_some(n + 1));
    if taken.is_err() {
        let msg = format!("too many listen streams are open (at most {MAX_LISTENERS})");
        return Err(error_response(Some(&id), codes::INTERNAL_ERROR, &msg, None));
    }
    let group = Arc::clone(&front.placement.shared);
    let asked = m.params_as::<ListenParams>().and_then(|p| p.notifications).unwrap_or_default();
    let init: Value = group.slot.init_result().and_then(|r| serde_json::from_slice(&r).ok()).unwrap_or(Value::Null);
    let accepted = Accepted::of(&asked, &init);
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": { "notifications": accepted.filter() },
    });
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let listener = Arc::new(Listener { accepted, tx });
    let weak: std::sync::Weak<dyn Attached> = Arc::downgrade(&(Arc::clone(&listener) as Arc<dyn Attached>));
    group.attach(weak);
    let first_subscribers: Vec<String> =
        listener.accepted.uris.iter().filter(|u| group.subscribe(u)).cloned().collect();
    let release = Release { front: Arc::clone(front), group, listener };
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(QUEUE);
    let write_timeout = front.write_timeout;
    let request_timeout = front.request_timeout;
    tokio::spawn(async move {
        let release = release;
        // The child is subscribed before the acknowledgement: what changes after it is seen.
        if let Some(conn) = release.group.slot.live() {
            for uri in first_subscribers {
                let params = json!({ "uri": uri }).to_string();
                let _ = tokio::time::timeout(request_timeout, conn.call_own(methods::SUBSCRIBE, &params)).await;
            }
        }
        let closed = body_tx.clone();
        let mut out = Some(body_tx);
        let ack = Bytes::from(ack.to_string());
        if let Some(ack) = tagged(&ack, &id) {
            send_event(&mut out, sse::message_event(None, &ack), write_timeout).await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while out.is_some() {
            tokio::select! {
                () = closed.closed() => break,
                n = rx.recv() => match n.and_then(|n| tagged(&n, &id)) {
                    Some(frame) => send_event(&mut out, sse::message_event(None, &frame), write_timeout).await,
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    // A graceful end: the listen's own (complete) response.
                    let result = format!(
                        r#"{{"resultType":"complete","_meta":{{{}:{id}}}}}"#,
                        Value::from(modern::META_SUBSCRIPTION_ID)
                    );
                    send_event(&mut out, sse::message_event(None, &apiary_protocol::result_response(&id, &result)), write_timeout).await;
                    break;
                }
            }
        }
        drop(release);
    });
    Ok(sse_response(body_rx))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_what_the_child_supports_is_accepted() {
        let asked = Filter {
            tools_list_changed: Some(true),
            prompts_list_changed: Some(true),
            resources_list_changed: None,
            resource_subscriptions: Some(vec!["test://b".into(), "test://a".into(), "test://b".into()]),
        };
        let init = json!({"capabilities": {"tools": {"listChanged": true}, "prompts": {}, "resources": {"subscribe": true, "listChanged": true}}});
        let accepted = Accepted::of(&asked, &init);
        assert_eq!(
            accepted,
            Accepted {
                tools: true,
                prompts: false,
                resources: false,
                uris: vec!["test://a".into(), "test://b".into()]
            }
        );
        assert_eq!(
            accepted.filter(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["test://a", "test://b"]})
        );
        assert!(
            accepted.wants("notifications/tools/list_changed") && !accepted.wants("notifications/prompts/list_changed")
        );
        assert!(!accepted.wants("notifications/message"), "logs never go on a listen stream");
        let no_subscribe = Accepted::of(&asked, &json!({"capabilities": {"resources": {}}}));
        assert!(no_subscribe.uris.is_empty() && !no_subscribe.tools);
    }

    #[test]
    fn notifications_are_tagged_keeping_every_other_byte() {
        let bare = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        assert_eq!(
            tagged(&bare, r#""listen-1""#).unwrap(),
            Bytes::from_static(
                br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"listen-1"}}}"#
            )
        );
        let with = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a","n":1e400}}"#,
        );
        let out = tagged(&with, "7").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a","n":1e400,"_meta":{"io.modelcontextprotocol/subscriptionId":7}}}"#
        );
    }
}
