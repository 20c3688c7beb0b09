//! Why the stdio layer could not take or answer a message. Its own type, so the layer knows
//! nothing of HTTP: the front turns it into a status and a JSON-RPC error in one place
//! (`front::refuse`).

use apiary_protocol::ParseError;

/// Why a child could not be reached, or a message not forwarded to it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StdioError {
    /// The child died and its successor is not ready yet.
    #[error("the server is restarting")]
    Restarting,
    /// The child failed too often: the upstream is down (the reason says why).
    #[error("{0}")]
    Down(String),
    /// The first child did not become ready within the wait.
    #[error("the server did not start in time")]
    StartTimeout,
    /// The child closed before it answered a request of Apiary's own.
    #[error("the server closed")]
    Closed,
    /// The queue into the child's stdin is full.
    #[error("queue full")]
    QueueFull,
    /// The request could not be rewritten for the child; `id` is the caller's (JSON text).
    #[error("cannot forward the request: {reason}")]
    Unforwardable { reason: String, id: Option<String> },
    /// The child's answer to a request of Apiary's own is not JSON-RPC.
    #[error("{0}")]
    BadAnswer(ParseError),
}
