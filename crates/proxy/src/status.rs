//! What the proxy tells its owner about the upstream: state, restarts, why the child last
//! exited. The CLI writes this into the workload's status file for `apiary status`.

use apiary_transport::launch::ExitReason;
use serde::Serialize;

/// The upstream's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamState {
    /// Starting the first child.
    Starting,
    /// Serving.
    Running,
    /// A child died and is being restarted.
    Restarting,
    /// Crash-looped past the restart limit, or could not start: not serving.
    Down,
}

/// A snapshot of the upstream, published on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamStatus {
    pub state: UpstreamState,
    /// Child restarts since the proxy started (all children together).
    pub restarts: u32,
    /// Why a child last exited, if one has.
    pub last_exit: Option<String>,
    /// Process ids of the children now running (empty for HTTP upstreams).
    pub child_pids: Vec<u32>,
    /// The restart waiting for its backoff, while the state is `restarting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_restart: Option<RestartPlan>,
    /// The newest protocol revision the shared stdio child speaks (`2026-07-28` for a child
    /// that offered it, else the version its `initialize` result names); `None` until one
    /// is ready, and for HTTP upstreams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// A restart of the shared child (or the local HTTP server) waiting for its backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartPlan {
    /// Failures counted in the restart window, this one included (1 for the first restart).
    pub attempt: u32,
    /// The backoff before the restart, in milliseconds.
    pub backoff_ms: u64,
}

impl UpstreamStatus {
    pub fn starting() -> Self {
        UpstreamStatus {
            state: UpstreamState::Starting,
            restarts: 0,
            last_exit: None,
            child_pids: Vec::new(),
            next_restart: None,
            revision: None,
        }
    }

    /// A child became ready: the shared one's revision is the upstream's.
    pub(crate) fn record_ready(&mut self, revision: String, shared: bool) {
        if shared {
            self.revision = Some(revision);
        }
    }

    pub(crate) fn record_exit(&mut self, reason: &ExitReason) {
        self.last_exit = Some(reason.description.clone());
    }
}
