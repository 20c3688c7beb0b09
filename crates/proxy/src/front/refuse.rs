//! Where the errors of the layers below the front become refusals: the one mapping, so the
//! HTTP-facing [`Refusal`] is never built below the front and every status and
//! `Retry-After` a lower layer's failure gets is decided here (bad-input.md is the table).

use crate::answer::Refusal;
use crate::sessions::SessionError;
use crate::upstream::stdio::StdioError;

/// The refusal for a stdio failure. A full queue is the session's own (429); the front
/// makes it a 503 for requests of no session.
pub fn stdio(e: StdioError) -> Refusal {
    let unavailable = |retry_after| Refusal::UpstreamUnavailable { reason: e.to_string(), retry_after, id: None };
    match e {
        StdioError::Restarting | StdioError::Closed => unavailable(1),
        StdioError::StartTimeout => unavailable(5),
        StdioError::Down(_) => unavailable(30),
        StdioError::QueueFull => Refusal::QueueFull { retry_after: 1, in_session: true },
        StdioError::Unforwardable { ref id, .. } => Refusal::InvalidRequest { message: e.to_string(), id: id.clone() },
        StdioError::BadAnswer(p) => Refusal::Parse(p),
    }
}

impl From<StdioError> for Refusal {
    fn from(e: StdioError) -> Self {
        stdio(e)
    }
}

/// The same for a request of no session, whose refusal carries its id: such requests share
/// one child, so a full queue is a 503, not a 429 (row 16).
pub fn stdio_sessionless(e: StdioError, id: Option<&str>) -> Refusal {
    match stdio(e) {
        Refusal::QueueFull { retry_after, .. } => Refusal::QueueFull { retry_after, in_session: false },
        Refusal::UpstreamUnavailable { reason, retry_after, .. } => {
            Refusal::UpstreamUnavailable { reason, retry_after, id: id.map(str::to_owned) }
        }
        other => other,
    }
}

/// The refusal for a session-layer failure.
pub fn session(e: SessionError) -> Refusal {
    match e {
        SessionError::LimitReached => Refusal::LimitReached { retry_after: 5 },
        SessionError::QueueFull => Refusal::QueueFull { retry_after: 1, in_session: true },
        SessionError::DuplicateId { ref id } => Refusal::invalid_with_id(e.to_string(), Some(id)),
        SessionError::NotInitialized => {
            Refusal::UpstreamUnavailable { reason: e.to_string(), retry_after: 1, id: None }
        }
        SessionError::Stdio(e) => stdio(e),
    }
}

/// The refusal of a client's `initialize` (`id` is its id): opening a session waits for a
/// child, like a request of no session, and its failure answers that request.
pub fn opening(e: SessionError, id: Option<&str>) -> Refusal {
    match e {
        SessionError::Stdio(e) => stdio_sessionless(e, id),
        SessionError::NotInitialized => {
            Refusal::UpstreamUnavailable { reason: e.to_string(), retry_after: 1, id: id.map(str::to_owned) }
        }
        other => session(other),
    }
}

impl From<SessionError> for Refusal {
    fn from(e: SessionError) -> Self {
        session(e)
    }
}
