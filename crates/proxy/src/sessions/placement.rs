//! Where a new session goes (`--stdio-mode`): a child of its own, started with the
//! session's own `initialize`, or the shared child; and the `initialize` answer it gets.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use apiary_config::StdioMode;
use apiary_protocol::{Message, Revision, splice};
use bytes::Bytes;
use serde_json::Value;

use super::error::SessionError;
use crate::client::ClientCaps;
use crate::front::streamable::StdioFront;
use crate::sessions::session::Session;
use crate::upstream::mux::ChildGroup;

/// The `initialize` params Apiary sends to a child it initializes itself.
pub fn own_initialize_params(capabilities: Value) -> String {
    serde_json::json!({
        "protocolVersion": Revision::LATEST_LEGACY.as_str(),
        "capabilities": capabilities,
        "clientInfo": { "name": "apiary", "version": env!("CARGO_PKG_VERSION") },
    })
    .to_string()
}

/// Where a new session's requests go, by `--stdio-mode` (DESIGN.md): a child of its own,
/// or the shared child.
fn place(front: &StdioFront, caps: ClientCaps) -> Result<bool, SessionError> {
    let own = match front.mode {
        StdioMode::Shared => false,
        StdioMode::PerSession => true,
        StdioMode::Auto => caps.any(),
    };
    if !own {
        return Ok(false);
    }
    let taken = front
        .own_children
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < front.max_own_children).then_some(n + 1));
    match (taken, front.mode) {
        (Ok(_), _) => Ok(true),
        (Err(_), StdioMode::PerSession) => Err(SessionError::LimitReached),
        (Err(_), _) => {
            front.capable_on_shared.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                max = front.max_own_children,
                "a client that declared capabilities joins the shared child: the child bound is reached; \
                 its server→client requests will be refused"
            );
            Ok(false)
        }
    }
}

/// The version a session on the shared child gets: what it asked for if Apiary serves it
/// and it is not newer than the child's, otherwise the child's (DESIGN.md).
fn negotiate(asked: Option<&str>, child: Revision) -> Revision {
    match asked.and_then(|a| a.parse::<Revision>().ok()) {
        Some(r) if r.era() == apiary_protocol::Era::Legacy && r <= child => r,
        _ => child,
    }
}

/// Places a new session on a child (its own, started with the client's own `initialize`,
/// or the shared one) and builds the `initialize` answer from that child's result.
pub(crate) async fn open_session(front: &StdioFront, m: &Message) -> Result<(Arc<Session>, Bytes), SessionError> {
    front.sessions.check_capacity()?;
    let params: Value = m.params_as().unwrap_or(Value::Null);
    let caps = ClientCaps::from_initialize(&params);
    let group = if place(front, caps)? {
        let mut opts = front.slot_template.clone();
        opts.init_params = m.params_raw().unwrap_or("{}").to_owned();
        ChildGroup::start(opts, true, Some(Arc::clone(&front.own_children)), front.events.clone())
    } else {
        Arc::clone(&front.shared)
    };
    let ready = group.slot.ready(front.request_timeout).await;
    let result =
        ready.map_err(SessionError::Stdio).and_then(|_| group.slot.init_result().ok_or(SessionError::NotInitialized));
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            if group.exclusive {
                group.slot.stop();
                front.own_children.fetch_sub(1, Ordering::SeqCst);
            }
            return Err(e);
        }
    };
    // The child's result goes out as the child wrote it; only `protocolVersion` may change.
    let version_at = splice::find_member(&result, 0..result.len(), "protocolVersion").ok().flatten();
    let child_rev = version_at
        .clone()
        .and_then(|r| serde_json::from_slice::<String>(&result[r]).ok())
        .and_then(|v| v.parse::<Revision>().ok())
        .unwrap_or(Revision::HTTP_DEFAULT);
    let revision = if group.exclusive {
        child_rev
    } else {
        negotiate(params.get("protocolVersion").and_then(Value::as_str), child_rev)
    };
    let result = if group.exclusive || (version_at.is_some() && revision == child_rev) {
        result
    } else {
        let version = Value::from(revision.as_str()).to_string();
        splice::set_path(&result, 0..result.len(), &["protocolVersion"], &version).unwrap_or(result)
    };
    let session = front.sessions.insert(revision, Arc::clone(&group), caps)?;
    let result = String::from_utf8_lossy(&result);
    let frame = apiary_protocol::result_response(m.id_raw().unwrap_or("null"), &result);
    tracing::info!(session = %session.id, %revision, own_child = group.exclusive, "session opened");
    Ok((session, frame))
}
