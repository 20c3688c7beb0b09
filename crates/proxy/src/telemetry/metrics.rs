//! The proxy's Prometheus metrics, in one explicit registry per proxy (no globals, so tests
//! can run many proxies in one process). Names are ToolHive's; every label has a bounded set
//! of values: methods from a fixed list, tool names capped, never a user, session or argument.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::status::{UpstreamState, UpstreamStatus};

/// Distinct tool names that get their own label value; later ones are counted as `other`.
pub const MAX_TOOL_LABELS: usize = 100;

/// Longest tool name used as a label value; longer ones are `other`.
const MAX_TOOL_NAME: usize = 128;

/// MCP methods that get their own `mcp_method` value; anything else is `other`.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "roots/list",
    "sampling/createMessage",
    "elicitation/create",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Label value of requests with no parsed MCP method (refused before the body was read,
/// `GET` streams, `DELETE`).
pub const NO_METHOD: &str = "unknown";

/// Histogram buckets of request durations, in seconds.
const DURATION_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    mcp_method: &'static str,
    status: &'static str,
    status_code: u16,
    server: String,
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    mcp_method: &'static str,
    status: &'static str,
    server: String,
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    server: String,
    tool: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    server: String,
    state: &'static str,
}

/// Every metric of one proxy and the registry that serves them.
pub struct Metrics {
    registry: Registry,
    server: String,
    transport: &'static str,
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    tool_calls: Family<ToolLabels, Counter>,
    active: Family<ServerLabels, Gauge>,
    upstream_state: Family<StateLabels, Gauge>,
    upstream_restarts: Family<ServerLabels, Gauge<u64, AtomicU64>>,
    tools_seen: Mutex<HashSet<String>>,
}

/// What one finished request was, for the metrics.
pub struct Outcome<'a> {
    pub method: Option<&'a str>,
    pub target: Option<&'a str>,
    pub status_code: u16,
    pub seconds: f64,
}

impl Metrics {
    pub fn new(server: &str, transport: &'static str) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("toolhive_mcp_requests", "MCP requests through the proxy", requests.clone());
        // A capture-free closure: the family's constructor type stays the default `fn() -> M`.
        let duration = Family::<DurationLabels, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register_with_unit(
            "toolhive_mcp_request_duration",
            "Time to the answer's head of MCP requests",
            Unit::Seconds,
            duration.clone(),
        );
        let tool_calls = Family::<ToolLabels, Counter>::default();
        registry.register("toolhive_mcp_tool_calls", "tools/call requests by tool", tool_calls.clone());
        let active = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "toolhive_mcp_active_connections",
            "Requests on the MCP routes whose answer (or stream) is still open",
            active.clone(),
        );
        let upstream_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "apiary_mcp_upstream_state",
            "1 for the upstream's current state (starting, running, restarting, down), 0 for the others",
            upstream_state.clone(),
        );
        let upstream_restarts = Family::<ServerLabels, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "apiary_mcp_upstream_restarts",
            "Child restarts since the proxy started",
            upstream_restarts.clone(),
        );
        let m = Metrics {
            registry,
            server: server.to_owned(),
            transport,
            requests,
            duration,
            tool_calls,
            active,
            upstream_state,
            upstream_restarts,
            tools_seen: Mutex::new(HashSet::new()),
        };
        m.active.get_or_create(&m.server_labels()).set(0);
        m
    }

    fn server_labels(&self) -> ServerLabels {
        ServerLabels { server: self.server.clone(), transport: self.transport }
    }

    /// Counts one finished request.
    pub fn record(&self, o: &Outcome<'_>) {
        let mcp_method = method_label(o.method);
        let status = status_label(o.status_code);
        self.requests
            .get_or_create(&RequestLabels {
                mcp_method,
                status,
                status_code: o.status_code,
                server: self.server.clone(),
                transport: self.transport,
            })
            .inc();
        self.duration
            .get_or_create(&DurationLabels {
                mcp_method,
                status,
                server: self.server.clone(),
                transport: self.transport,
            })
            .observe(o.seconds);
        if o.method == Some("tools/call") {
            let tool = self.tool_label(o.target.unwrap_or(""));
            self.tool_calls.get_or_create(&ToolLabels { server: self.server.clone(), tool, status }).inc();
        }
    }

    /// The label of a tool: its name while fewer than [`MAX_TOOL_LABELS`] names were seen.
    fn tool_label(&self, tool: &str) -> String {
        if tool.is_empty() || tool.len() > MAX_TOOL_NAME {
            return "other".to_owned();
        }
        let Ok(mut seen) = self.tools_seen.lock() else { return "other".to_owned() };
        if seen.contains(tool) {
            return tool.to_owned();
        }
        if seen.len() >= MAX_TOOL_LABELS {
            return "other".to_owned();
        }
        seen.insert(tool.to_owned());
        tool.to_owned()
    }

    /// One more open request; the returned guard closes it when dropped.
    pub fn open(&self) -> ActiveGuard {
        let gauge = self.active.get_or_create(&self.server_labels()).clone();
        gauge.inc();
        ActiveGuard(gauge)
    }

    /// Publishes the upstream's state.
    pub fn upstream(&self, st: &UpstreamStatus) {
        for (state, name) in [
            (UpstreamState::Starting, "starting"),
            (UpstreamState::Running, "running"),
            (UpstreamState::Restarting, "restarting"),
            (UpstreamState::Down, "down"),
        ] {
            self.upstream_state
                .get_or_create(&StateLabels { server: self.server.clone(), state: name })
                .set(i64::from(st.state == state));
        }
        self.upstream_restarts.get_or_create(&self.server_labels()).set(u64::from(st.restarts));
    }

    /// The metrics as OpenMetrics text (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Decrements the active-connections gauge when dropped.
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn method_label(method: Option<&str>) -> &'static str {
    match method {
        None => NO_METHOD,
        Some(m) => KNOWN_METHODS.iter().find(|k| **k == m).copied().unwrap_or("other"),
    }
}

/// `success` below 400, `unauthenticated` for 401, `denied` for 403, else `error`.
pub fn status_label(code: u16) -> &'static str {
    match code {
        0..=399 => "success",
        401 => "unauthenticated",
        403 => "denied",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tool_labels_are_capped() {
        let m = Metrics::new("s", "stdio");
        for i in 0..MAX_TOOL_LABELS {
            assert_eq!(m.tool_label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(m.tool_label("one-too-many"), "other");
        assert_eq!(m.tool_label("t0"), "t0");
        assert_eq!(m.tool_label(&"x".repeat(MAX_TOOL_NAME + 1)), "other");
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_label(Some("tools/call")), "tools/call");
        assert_eq!(method_label(Some("x/secret-user-data")), "other");
        assert_eq!(method_label(None), NO_METHOD);
    }
}
