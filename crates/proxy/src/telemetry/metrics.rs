//! The proxy's Prometheus metrics, in one explicit registry per proxy (no globals, so tests
//! can run many proxies in one process). Names are ToolHive's; every label has a bounded set
//! of values: methods from a fixed list, tool names capped, never a user, session or argument.
//!
//! Every request is counted, so the per-request path builds no label set: the series of a
//! (method, status code) pair and of a tool are looked up in the families once and kept, and
//! a request then costs a few atomic operations and the histogram's lock.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};

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

/// Status codes whose request series are kept once resolved; others are looked up in the
/// families on every request (rare: refusals of unusual kinds).
const KEPT_CODES: [u16; 12] = [200, 202, 204, 400, 401, 403, 404, 405, 406, 413, 415, 500];

/// The `mcp_method` label values, in slot order: [`KNOWN_METHODS`], then `other`, then
/// [`NO_METHOD`].
const METHOD_SLOTS: usize = KNOWN_METHODS.len() + 2;

/// The `status` label values, in slot order (see [`status_label`]).
const STATUS_LABELS: [&str; 4] = ["success", "unauthenticated", "denied", "error"];

/// The series one request of a (method, status code) pair adds to.
struct RequestSeries {
    requests: Counter,
    duration: Histogram,
}

/// The `tools/call` counters of one tool label, per status, resolved on first use.
struct ToolSeries {
    label: String,
    by_status: [OnceLock<Counter>; STATUS_LABELS.len()],
}

impl ToolSeries {
    fn new(label: String) -> ToolSeries {
        ToolSeries { label, by_status: Default::default() }
    }
}

/// Every metric of one proxy and the registry that serves them.
pub struct Metrics {
    registry: Registry,
    server: String,
    transport: &'static str,
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    tool_calls: Family<ToolLabels, Counter>,
    upstream_state: Family<StateLabels, Gauge>,
    upstream_restarts: Family<ServerLabels, Gauge<u64, AtomicU64>>,
    /// This proxy's one active-connections series.
    active_series: Gauge,
    /// Resolved request series, by method slot and [`KEPT_CODES`] index.
    kept: Box<[[OnceLock<RequestSeries>; KEPT_CODES.len()]; METHOD_SLOTS]>,
    /// Tools that have a label of their own, at most [`MAX_TOOL_LABELS`].
    tools: RwLock<HashMap<Box<str>, Arc<ToolSeries>>>,
    /// Every other tool.
    other_tool: Arc<ToolSeries>,
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
        let labels = ServerLabels { server: server.to_owned(), transport };
        let active_series = active.get_or_create(&labels).clone();
        active_series.set(0);
        Metrics {
            registry,
            server: server.to_owned(),
            transport,
            requests,
            duration,
            tool_calls,
            upstream_state,
            upstream_restarts,
            active_series,
            kept: Box::default(),
            tools: RwLock::new(HashMap::new()),
            other_tool: Arc::new(ToolSeries::new("other".to_owned())),
        }
    }

    fn server_labels(&self) -> ServerLabels {
        ServerLabels { server: self.server.clone(), transport: self.transport }
    }

    /// Counts one finished request.
    pub fn record(&self, o: &Outcome<'_>) {
        let slot = method_slot(o.method);
        let status = status_slot(o.status_code);
        let count = |series: &RequestSeries| {
            series.requests.inc();
            series.duration.observe(o.seconds);
        };
        match KEPT_CODES.iter().position(|c| *c == o.status_code) {
            Some(code) => count(self.kept[slot][code].get_or_init(|| self.request_series(slot, status, o.status_code))),
            None => count(&self.request_series(slot, status, o.status_code)),
        }
        if o.method == Some("tools/call") {
            let tool = self.tool_series(o.target.unwrap_or(""));
            let counter = tool.by_status[status].get_or_init(|| {
                let labels =
                    ToolLabels { server: self.server.clone(), tool: tool.label.clone(), status: STATUS_LABELS[status] };
                self.tool_calls.get_or_create(&labels).clone()
            });
            counter.inc();
        }
    }

    /// The series of one (method, status code) pair, from the families.
    fn request_series(&self, slot: usize, status: usize, status_code: u16) -> RequestSeries {
        let (mcp_method, status) = (method_label_of(slot), STATUS_LABELS[status]);
        let requests = self
            .requests
            .get_or_create(&RequestLabels {
                mcp_method,
                status,
                status_code,
                server: self.server.clone(),
                transport: self.transport,
            })
            .clone();
        let duration = self
            .duration
            .get_or_create(&DurationLabels {
                mcp_method,
                status,
                server: self.server.clone(),
                transport: self.transport,
            })
            .clone();
        RequestSeries { requests, duration }
    }

    /// The series of a tool: its own while fewer than [`MAX_TOOL_LABELS`] names were seen.
    fn tool_series(&self, tool: &str) -> Arc<ToolSeries> {
        if tool.is_empty() || tool.len() > MAX_TOOL_NAME {
            return Arc::clone(&self.other_tool);
        }
        // A poisoned lock: another thread panicked mid-insert; the map itself is whole.
        if let Some(t) = self.tools.read().unwrap_or_else(|e| e.into_inner()).get(tool) {
            return Arc::clone(t);
        }
        let mut tools = self.tools.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tools.get(tool) {
            return Arc::clone(t);
        }
        if tools.len() >= MAX_TOOL_LABELS {
            return Arc::clone(&self.other_tool);
        }
        let t = Arc::new(ToolSeries::new(tool.to_owned()));
        tools.insert(tool.into(), Arc::clone(&t));
        t
    }

    /// One more open request; the returned guard closes it when dropped.
    pub fn open(&self) -> ActiveGuard {
        self.active_series.inc();
        ActiveGuard(self.active_series.clone())
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

/// The slot of a method's label: its place in [`KNOWN_METHODS`], then `other`, then none.
fn method_slot(method: Option<&str>) -> usize {
    match method {
        None => KNOWN_METHODS.len() + 1,
        Some(m) => KNOWN_METHODS.iter().position(|k| *k == m).unwrap_or(KNOWN_METHODS.len()),
    }
}

fn method_label_of(slot: usize) -> &'static str {
    match KNOWN_METHODS.get(slot) {
        Some(m) => m,
        None if slot == KNOWN_METHODS.len() => "other",
        None => NO_METHOD,
    }
}

#[cfg(test)]
fn method_label(method: Option<&str>) -> &'static str {
    method_label_of(method_slot(method))
}

/// The slot in [`STATUS_LABELS`]: `success` below 400, `unauthenticated` for 401, `denied`
/// for 403, else `error`.
fn status_slot(code: u16) -> usize {
    match code {
        0..=399 => 0,
        401 => 1,
        403 => 2,
        _ => 3,
    }
}

/// `success` below 400, `unauthenticated` for 401, `denied` for 403, else `error`.
pub fn status_label(code: u16) -> &'static str {
    STATUS_LABELS[status_slot(code)]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tool_labels_are_capped() {
        let m = Metrics::new("s", "stdio");
        let label = |t: &str| m.tool_series(t).label.clone();
        for i in 0..MAX_TOOL_LABELS {
            assert_eq!(label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(label("one-too-many"), "other");
        assert_eq!(label("t0"), "t0");
        assert_eq!(label(&"x".repeat(MAX_TOOL_NAME + 1)), "other");
        assert_eq!(label(""), "other");
    }

    fn call<'a>(method: Option<&'a str>, target: Option<&'a str>, status_code: u16) -> Outcome<'a> {
        Outcome { method, target, status_code, seconds: 0.002 }
    }

    /// Kept series and those looked up each time add to the same exported lines.
    #[test]
    fn kept_series_count_in_the_registry() {
        let m = Metrics::new("srv", "stdio");
        for _ in 0..3 {
            m.record(&call(Some("tools/call"), Some("echo"), 200));
        }
        m.record(&call(Some("tools/call"), Some("echo"), 403));
        m.record(&call(Some("x/private"), None, 418));
        m.record(&call(Some("x/private"), None, 418));
        m.record(&call(None, None, 202));
        let text = m.encode();
        let line = |prefix: &str| {
            text.lines().find(|l| l.starts_with(prefix) && l.contains("server=\"srv\"")).map(str::to_owned)
        };
        let requests = |method: &str, code: u16| {
            text.lines()
                .find(|l| {
                    l.starts_with("toolhive_mcp_requests_total{")
                        && l.contains(&format!("mcp_method=\"{method}\""))
                        && l.contains(&format!("status_code=\"{code}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(requests("tools/call", 200).as_deref(), Some("3"), "{text}");
        assert_eq!(requests("tools/call", 403).as_deref(), Some("1"), "{text}");
        assert_eq!(requests("other", 418).as_deref(), Some("2"), "{text}");
        assert_eq!(requests(NO_METHOD, 202).as_deref(), Some("1"), "{text}");
        let tools: Vec<&str> = text.lines().filter(|l| l.starts_with("toolhive_mcp_tool_calls_total{")).collect();
        assert_eq!(tools.len(), 2, "{text}");
        assert!(tools.iter().any(|l| l.contains("status=\"success\"") && l.ends_with(" 3")), "{text}");
        assert!(tools.iter().any(|l| l.contains("status=\"denied\"") && l.ends_with(" 1")), "{text}");
        assert!(line("toolhive_mcp_request_duration_seconds_count{").is_some(), "{text}");
        let active = |m: &Metrics| {
            m.encode().lines().find(|l| l.starts_with("toolhive_mcp_active_connections{")).map(str::to_owned)
        };
        let open = m.open();
        assert!(active(&m).is_some_and(|l| l.ends_with(" 1")), "{:?}", active(&m));
        drop(open);
        assert!(active(&m).is_some_and(|l| l.ends_with(" 0")), "{:?}", active(&m));
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_label(Some("tools/call")), "tools/call");
        assert_eq!(method_label(Some("x/secret-user-data")), "other");
        assert_eq!(method_label(None), NO_METHOD);
    }
}
