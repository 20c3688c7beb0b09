//! Where a new session goes (`--stdio-mode`): a child of its own, started with the
//! session's own `initialize`, or the shared child; and the `initialize` answer it gets.
//! Owns the children sessions are placed on, so the front only asks for a session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use apiary_config::{RunConfig, StdioMode};
use apiary_protocol::{Message, Revision, splice};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::error::SessionError;
use super::session::{Session, SessionTable};
use crate::client::ClientCaps;
use crate::upstream::mux::ChildGroup;
use crate::upstream::stdio::{SlotEvent, SlotOptions};

/// The children sessions are placed on: the shared one, and how children of a session's
/// own are started and counted.
pub struct Placement {
    /// The shared child: requests of no session, and sessions without a child of their own.
    pub shared: Arc<ChildGroup>,
    mode: StdioMode,
    max_own_children: usize,
    own_children: Arc<AtomicUsize>,
    /// Sessions that declared capabilities but joined the shared child (auto mode, past
    /// the child bound): their capabilities go unused.
    pub capable_on_shared: AtomicU64,
    slot_template: SlotOptions,
    events: mpsc::UnboundedSender<SlotEvent>,
    /// How long a new session waits for its child to be ready.
    ready_wait: Duration,
}

impl Placement {
    /// Starts the shared child; children of a session's own start from `template`.
    pub fn new(cfg: &RunConfig, template: SlotOptions, events: mpsc::UnboundedSender<SlotEvent>) -> Placement {
        let mode = cfg.stdio.mode;
        // In shared mode the one child may be asked for anything any client declared; in
        // the other modes it serves only clients that declared nothing.
        let init_params = if mode == StdioMode::Shared {
            own_initialize_params(
                serde_json::json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}}),
            )
        } else {
            own_initialize_params(serde_json::json!({}))
        };
        // The shared child serves many callers: it never gets one's token.
        let opts = SlotOptions { shared: true, init_params, caller: None, ..template.clone() };
        let shared = ChildGroup::start(opts, false, None, events.clone());
        Placement {
            shared,
            mode,
            max_own_children: cfg.stdio.max_session_children as usize,
            own_children: Arc::new(AtomicUsize::new(0)),
            capable_on_shared: AtomicU64::new(0),
            slot_template: template,
            events,
            ready_wait: cfg.limits.request_timeout(),
        }
    }
}

impl Placement {
    /// Starts a child of one requester's own, initialized with `init_params`, when the mode
    /// allows children of their own and the `--max-session-children` bound has room (the
    /// bound is shared with sessions' own children). Released like a session's own child:
    /// [`ChildGroup::release`] stops it and frees its place.
    pub fn start_own_child(&self, init_params: String) -> Option<Arc<ChildGroup>> {
        if self.mode == StdioMode::Shared {
            return None;
        }
        self.own_children
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max_own_children).then_some(n + 1))
            .ok()?;
        let mut opts = self.slot_template.clone();
        opts.init_params = init_params;
        Some(ChildGroup::start(opts, true, Some(Arc::clone(&self.own_children)), self.events.clone()))
    }
}

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
fn place(placement: &Placement, caps: ClientCaps) -> Result<bool, SessionError> {
    let own = match placement.mode {
        StdioMode::Shared => false,
        StdioMode::PerSession => true,
        StdioMode::Auto => caps.any(),
    };
    if !own {
        return Ok(false);
    }
    let taken = placement
        .own_children
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < placement.max_own_children).then_some(n + 1));
    match (taken, placement.mode) {
        (Ok(_), _) => Ok(true),
        (Err(_), StdioMode::PerSession) => Err(SessionError::LimitReached),
        (Err(_), _) => {
            placement.capable_on_shared.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                max = placement.max_own_children,
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
pub async fn open_session(
    placement: &Placement,
    sessions: &SessionTable,
    m: &Message,
) -> Result<(Arc<Session>, Bytes), SessionError> {
    sessions.check_capacity()?;
    let params: Value = m.params_as().unwrap_or(Value::Null);
    let caps = ClientCaps::from_initialize(&params);
    let group = if place(placement, caps)? {
        let mut opts = placement.slot_template.clone();
        opts.init_params = m.params_raw().unwrap_or("{}").to_owned();
        if opts.launcher.wants_caller() {
            // The caller of the request opening the session (the front's handle, kept current).
            opts.caller = apiary_transport::launch::CallerHandle::of_current_request();
        }
        ChildGroup::start(opts, true, Some(Arc::clone(&placement.own_children)), placement.events.clone())
    } else {
        Arc::clone(&placement.shared)
    };
    let ready = group.slot.ready(placement.ready_wait).await;
    let result =
        ready.map_err(SessionError::Stdio).and_then(|_| group.slot.init_result().ok_or(SessionError::NotInitialized));
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            if group.exclusive {
                group.slot.stop();
                placement.own_children.fetch_sub(1, Ordering::SeqCst);
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
    let session = sessions.insert(revision, Arc::clone(&group), caps)?;
    let result = String::from_utf8_lossy(&result);
    let frame = apiary_protocol::result_response(m.id_raw().unwrap_or("null"), &result);
    tracing::info!(session = %session.id, %revision, own_child = group.exclusive, "session opened");
    Ok((session, frame))
}
