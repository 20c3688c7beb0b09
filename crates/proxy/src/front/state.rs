//! What the handlers of a stdio upstream share (`/mcp`, `/sse`, `/messages`): the session
//! tables, the placement of sessions onto children, the bounds and the guard. Its own module
//! so that each transport's handlers import it and never each other.

use std::sync::Arc;
use std::time::Duration;

use apiary_config::RunConfig;
use tokio::sync::mpsc;

use crate::front::bridged::BridgedSessions;
use crate::front::capable::CapablePool;
use crate::front::input_park::InputBridge;
use crate::front::tool_headers::ToolHeaders;
use crate::guard::Guard;
use crate::sessions::placement::Placement;
use crate::sessions::session::SessionTable;
use crate::sessions::sse::SseSessions;
use crate::upstream::stdio::{SlotEvent, SlotOptions};

/// Everything the `/mcp` handlers of a stdio upstream share.
pub struct StdioFront {
    pub sessions: SessionTable,
    /// The children sessions (and requests of none) are placed on.
    pub placement: Placement,
    pub(crate) request_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_queued: usize,
    pub(crate) max_body: usize,
    /// 2024-11-05 sessions (`/sse` + `/messages`).
    pub(crate) sse: SseSessions,
    pub(crate) endpoint_prefix: String,
    pub(crate) trust_proxy_headers: bool,
    /// Authorization and tool filters, applied to each parsed message.
    pub(crate) guard: Arc<Guard>,
    /// The shared child's `x-mcp-header` annotations, for 2026-07-28 calls.
    pub(crate) tool_headers: ToolHeaders,
    /// Children leased to 2026-07-28 requests that declare client capabilities.
    pub capable: CapablePool,
    /// Calls on those children parked while their client provides input.
    pub(crate) input_bridge: InputBridge,
    /// `subscriptions/listen` streams the proxy serves for a legacy child (`legacy_listen`).
    pub(crate) legacy_listeners: std::sync::atomic::AtomicUsize,
    /// Legacy sessions of a 2026-07-28-only child, kept by the bridge.
    pub(crate) bridged: BridgedSessions,
}

impl StdioFront {
    pub fn new(
        cfg: &RunConfig,
        template: SlotOptions,
        events: mpsc::UnboundedSender<SlotEvent>,
        guard: Arc<Guard>,
    ) -> Arc<StdioFront> {
        let limits = &cfg.limits;
        Arc::new(StdioFront {
            sessions: SessionTable::new(
                limits.max_sessions as usize,
                limits.session_idle_ttl(),
                limits.event_buffer_bytes as usize,
            ),
            placement: Placement::new(cfg, template, events),
            max_body: limits.max_body_bytes as usize,
            request_timeout: limits.request_timeout(),
            write_timeout: limits.write_timeout(),
            sse: Default::default(),
            endpoint_prefix: cfg.proxy.endpoint_prefix.trim_end_matches('/').to_owned(),
            trust_proxy_headers: cfg.proxy.trust_proxy_headers,
            max_queued: limits.max_queued_per_session as usize,
            guard,
            tool_headers: ToolHeaders::default(),
            capable: CapablePool::default(),
            input_bridge: InputBridge::default(),
            legacy_listeners: Default::default(),
            bridged: BridgedSessions::default(),
        })
    }
}

impl StdioFront {
    /// Stops every child: the shared one and each session's.
    pub fn stop_all(&self) {
        self.placement.shared.slot.stop();
        self.capable.clear();
        self.sessions.clear();
        self.sse.clear();
    }
}
