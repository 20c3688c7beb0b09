//! JSON-RPC error codes: the standard ones, the 2026-07-28 ones, and Apiary's own
//! (bad-input.md, rule 4, plus the two of the policy layers), which sit outside the range
//! JSON-RPC reserves.

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;

/// 2026-07-28: an HTTP mirror header disagrees with the body.
pub const HEADER_MISMATCH: i32 = -32020;
/// 2026-07-28: the request needs a client capability its `_meta` did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i32 = -32021;
/// 2026-07-28: the requested protocol version is not served.
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;

/// Apiary: the session named by the client does not exist (any more).
pub const SESSION_NOT_FOUND: i32 = -31001;
/// Apiary: the session or child limit is reached.
pub const LIMIT_REACHED: i32 = -31002;
/// Apiary: the queue toward the child is full.
pub const QUEUE_FULL: i32 = -31003;
/// Apiary: the upstream server is not reachable or has died.
pub const UPSTREAM_UNAVAILABLE: i32 = -31004;
/// Apiary: events after a Last-Event-ID were evicted.
pub const RESUME_GAP: i32 = -31005;

/// Apiary: the caller is not authenticated (HTTP 401), or authentication could not be
/// completed because the identity provider's keys are unavailable (HTTP 503).
pub const UNAUTHENTICATED: i32 = -31006;
/// Apiary: the authorization policy does not permit this request (HTTP 403).
pub const FORBIDDEN: i32 = -31007;
