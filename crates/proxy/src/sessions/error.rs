//! Why the session layer refused: its own type, so sessions know nothing of HTTP. The front
//! turns it into a status and a JSON-RPC error in one place (`front::refuse`).

use crate::upstream::stdio::StdioError;

/// Why a session could not be opened, or a message of a session not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The session table is full, or (per-session mode) no child of its own may be started.
    #[error("session limit reached")]
    LimitReached,
    /// The session already has as many requests waiting on its child as it may.
    #[error("queue full")]
    QueueFull,
    /// The client reused the id of a request still in flight; `id` is its JSON text.
    #[error("request id already in flight")]
    DuplicateId { id: String },
    /// The child came up but has no `initialize` result to answer from.
    #[error("the server did not initialize")]
    NotInitialized,
    #[error(transparent)]
    Stdio(#[from] StdioError),
}
