//! Every bound the proxy enforces, and the crash-loop policy, with defaults, units and accepted ranges.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const DAY_SECS: u64 = 24 * 60 * 60;

/// Accepted range of one numeric setting, used by validation and documentation alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value; caps keep later arithmetic (timers, allocations) from overflowing.
    pub max: u64,
    /// Unit word for messages.
    pub unit: &'static str,
}

/// Ranges of `limits.*` in field order.
pub mod bounds {
    use super::*;
    /// `limits.maxBodyBytes`.
    pub const MAX_BODY_BYTES: Bound = Bound { min: 1, max: GIB, unit: "bytes" };
    /// `limits.maxLineBytes`.
    pub const MAX_LINE_BYTES: Bound = Bound { min: 1, max: GIB, unit: "bytes" };
    /// `limits.maxSessions`.
    pub const MAX_SESSIONS: Bound = Bound { min: 1, max: 1_000_000, unit: "sessions" };
    /// `limits.sessionIdleTtlSecs` (up to 30 days).
    pub const SESSION_IDLE_TTL_SECS: Bound = Bound { min: 1, max: 30 * DAY_SECS, unit: "seconds" };
    /// `limits.maxQueuedPerSession`.
    pub const MAX_QUEUED_PER_SESSION: Bound = Bound { min: 1, max: 65_536, unit: "messages" };
    /// `limits.eventBufferBytes`.
    pub const EVENT_BUFFER_BYTES: Bound = Bound { min: 1, max: GIB, unit: "bytes" };
    /// `limits.requestTimeoutSecs` (up to 1 day).
    pub const REQUEST_TIMEOUT_SECS: Bound = Bound { min: 1, max: DAY_SECS, unit: "seconds" };
    /// `limits.writeTimeoutSecs` (up to 1 day).
    pub const WRITE_TIMEOUT_SECS: Bound = Bound { min: 1, max: DAY_SECS, unit: "seconds" };
    /// `restart.maxRestarts` (0 = never restart).
    pub const MAX_RESTARTS: Bound = Bound { min: 0, max: 10_000, unit: "restarts" };
    /// `restart.windowSecs` (up to 1 day).
    pub const WINDOW_SECS: Bound = Bound { min: 1, max: DAY_SECS, unit: "seconds" };
    /// `restart.backoffInitialMs` (up to 1 hour).
    pub const BACKOFF_INITIAL_MS: Bound = Bound { min: 1, max: 3_600_000, unit: "milliseconds" };
    /// `restart.backoffMaxMs` (up to 1 hour; at least `backoffInitialMs`).
    pub const BACKOFF_MAX_MS: Bound = Bound { min: 1, max: 3_600_000, unit: "milliseconds" };
}

/// Bounds on memory, sessions and time. Every value is greater than 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Largest HTTP request body accepted, in bytes (1 B – 1 GiB).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::MAX_BODY_BYTES.min, max = bounds::MAX_BODY_BYTES.max))]
    pub max_body_bytes: u64,
    /// Longest line read from a stdio child, in bytes (1 B – 1 GiB).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::MAX_LINE_BYTES.min, max = bounds::MAX_LINE_BYTES.max))]
    pub max_line_bytes: u64,
    /// Most concurrent client sessions (1 – 1,000,000).
    #[serde(deserialize_with = "crate::number::u32")]
    #[schemars(range(min = bounds::MAX_SESSIONS.min, max = bounds::MAX_SESSIONS.max))]
    pub max_sessions: u32,
    /// A session unused this long is closed, in seconds (1 s – 30 days).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::SESSION_IDLE_TTL_SECS.min, max = bounds::SESSION_IDLE_TTL_SECS.max))]
    pub session_idle_ttl_secs: u64,
    /// Most messages waiting for one session's client, per session (1 – 65,536).
    #[serde(deserialize_with = "crate::number::u32")]
    #[schemars(range(min = bounds::MAX_QUEUED_PER_SESSION.min, max = bounds::MAX_QUEUED_PER_SESSION.max))]
    pub max_queued_per_session: u32,
    /// Bytes of past events kept per stream for resumption (1 B – 1 GiB).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::EVENT_BUFFER_BYTES.min, max = bounds::EVENT_BUFFER_BYTES.max))]
    pub event_buffer_bytes: u64,
    /// How long one request may wait for its response, in seconds (1 s – 1 day).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::REQUEST_TIMEOUT_SECS.min, max = bounds::REQUEST_TIMEOUT_SECS.max))]
    pub request_timeout_secs: u64,
    /// How long one write to a client or child may block, in seconds (1 s – 1 day).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::WRITE_TIMEOUT_SECS.min, max = bounds::WRITE_TIMEOUT_SECS.max))]
    pub write_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * MIB,
            max_line_bytes: 16 * MIB,
            max_sessions: 1000,
            session_idle_ttl_secs: 2 * 60 * 60,
            max_queued_per_session: 256,
            event_buffer_bytes: MIB,
            request_timeout_secs: 300,
            write_timeout_secs: 30,
        }
    }
}

impl Limits {
    /// `sessionIdleTtlSecs` as a duration.
    pub fn session_idle_ttl(&self) -> Duration {
        Duration::from_secs(self.session_idle_ttl_secs)
    }

    /// `requestTimeoutSecs` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `writeTimeoutSecs` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}

/// What happens when a child process exits unexpectedly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Restarts allowed within `windowSecs` before the workload is declared crash-looping
    /// (0 – 10,000; 0 never restarts).
    #[serde(deserialize_with = "crate::number::u32")]
    #[schemars(range(min = bounds::MAX_RESTARTS.min, max = bounds::MAX_RESTARTS.max))]
    pub max_restarts: u32,
    /// Length of the crash-loop window, in seconds (1 s – 1 day).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::WINDOW_SECS.min, max = bounds::WINDOW_SECS.max))]
    pub window_secs: u64,
    /// Delay before the first restart, in milliseconds; doubles per restart (1 ms – 1 h).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::BACKOFF_INITIAL_MS.min, max = bounds::BACKOFF_INITIAL_MS.max))]
    pub backoff_initial_ms: u64,
    /// Longest delay between restarts, in milliseconds (at least `backoffInitialMs`, at most 1 h).
    #[serde(deserialize_with = "crate::number::u64")]
    #[schemars(range(min = bounds::BACKOFF_MAX_MS.min, max = bounds::BACKOFF_MAX_MS.max))]
    pub backoff_max_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy { max_restarts: 10, window_secs: 300, backoff_initial_ms: 200, backoff_max_ms: 30_000 }
    }
}

impl RestartPolicy {
    /// `windowSecs` as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// `backoffInitialMs` as a duration.
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms)
    }

    /// `backoffMaxMs` as a duration.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }
}
