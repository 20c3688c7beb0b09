//! One OTLP server span per MCP request. The span starts once the handler knows what the
//! request is (its parsed method, target and `params._meta`), backdated to when the request
//! arrived, so its name and its parent (`_meta.traceparent` wins over the HTTP header) are
//! right from the start; a request refused before its body was read gets an HTTP-named span
//! when it ends. Spans go through a bounded batch processor; nothing here is global.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use apiary_config::TelemetryConfig;
use axum::http::HeaderMap;
use bytes::Bytes;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};

/// Spans waiting for export at most; more are dropped (and counted by the SDK).
const MAX_QUEUED_SPANS: usize = 2048;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last spans to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest attribute value taken from a request (names, ids, URIs).
const MAX_ATTR: usize = 256;

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: cannot set up the OTLP exporter: {0}")]
pub struct TracingError(String);

/// The tracer of one proxy.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    server: String,
}

impl Tracing {
    /// The tracer `cfg` asks for, or `None` when traces are not exported.
    pub fn new(cfg: &TelemetryConfig, name: &str) -> Result<Option<Tracing>, TracingError> {
        if !cfg.exports_traces() {
            return Ok(None);
        }
        let Some(url) = cfg.traces_url() else { return Ok(None) };
        let headers = export_headers(cfg, |var| std::env::var(var).ok())?;
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers)
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        let batch = BatchConfigBuilder::default().with_max_queue_size(MAX_QUEUED_SPANS).build();
        let service = cfg.service_name.clone().unwrap_or_else(|| default_service_name(name));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sampling_rate.get()))))
            .with_resource(opentelemetry_sdk::Resource::builder_empty().with_service_name(service).build())
            .build();
        let tracer = provider.tracer("apiary-proxy");
        Ok(Some(Tracing { provider, tracer, server: name.to_owned() }))
    }

    /// Sends what is still queued and stops the exporter (bounded by [`FLUSH_TIMEOUT`]).
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT));
        match tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_secs(1), flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the last spans could not be exported"),
            _ => {
                tracing::warn!("the last spans were still being exported {} s after shutdown", FLUSH_TIMEOUT.as_secs())
            }
        }
    }
}

/// The headers sent with every export: `headers`, then those of `headersEnv` read through `env`
/// (a variable that is unset is an error: the collector would refuse every export).
fn export_headers(
    cfg: &TelemetryConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, TracingError> {
    let mut headers: HashMap<String, String> = cfg.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (name, var) in &cfg.headers_env {
        let value = env(var).ok_or_else(|| {
            TracingError(format!("the environment variable {var} (telemetry header {name}) is not set"))
        })?;
        headers.insert(name.clone(), value.trim().to_owned());
    }
    Ok(headers)
}

/// `service.name` when none is configured: `apiary-<workload>` (ToolHive: `thv-<workload>`).
pub fn default_service_name(workload: &str) -> String {
    format!("apiary-{workload}")
}

/// What the front layer saw of a request, kept until its span can be named.
pub struct SpanStart {
    tracing: Arc<Tracing>,
    started: SystemTime,
    http_method: String,
    path: String,
    peer: Option<IpAddr>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    session: Option<String>,
    protocol_version: Option<String>,
}

/// The span of one request, started.
pub struct RequestSpan {
    span: opentelemetry_sdk::trace::Span,
    has_session: bool,
}

impl SpanStart {
    pub fn new(
        tracing: Arc<Tracing>,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> SpanStart {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| clip(v.trim()));
        SpanStart {
            tracing,
            started: SystemTime::now(),
            http_method: method.to_owned(),
            path: clip(path),
            peer,
            traceparent: text("traceparent"),
            tracestate: text("tracestate"),
            session: text("mcp-session-id"),
            protocol_version: text("mcp-protocol-version"),
        }
    }

    /// Starts the span of a request that turned out to be `method` on `target`, carrying the
    /// JSON-RPC message `request` (read for its id and `params._meta`).
    pub fn begin(self, method: Option<&str>, target: Option<&str>, request: Option<&Bytes>) -> RequestSpan {
        let head = request.and_then(|b| serde_json::from_slice::<MessageHead>(b).ok());
        let meta = head.as_ref().and_then(|h| h.params.as_ref()).and_then(|p| p.meta.as_ref());
        let parent = meta
            .and_then(|m| parent_from(m.traceparent.as_deref(), m.tracestate.as_deref()))
            .or_else(|| parent_from(self.traceparent.as_deref(), self.tracestate.as_deref()))
            .unwrap_or_default();
        let target = target.map(clip);
        let name = match (method, &target) {
            (Some(m), Some(t)) => format!("{m} {t}"),
            (Some(m), None) => m.to_owned(),
            (None, _) => format!("{} {}", self.http_method, self.path),
        };
        let mut attrs = vec![
            KeyValue::new("network.transport", "tcp"),
            KeyValue::new("http.request.method", self.http_method.clone()),
            KeyValue::new("url.path", self.path.clone()),
            KeyValue::new("mcp.server.name", self.tracing.server.clone()),
        ];
        if let Some(ip) = self.peer {
            attrs.push(KeyValue::new("client.address", ip.to_string()));
        }
        if let Some(s) = &self.session {
            attrs.push(KeyValue::new("mcp.session.id", s.clone()));
        }
        if let Some(v) = &self.protocol_version {
            attrs.push(KeyValue::new("mcp.protocol.version", v.clone()));
        }
        if let Some(m) = method {
            attrs.push(KeyValue::new("mcp.method.name", clip(m)));
            attrs.push(KeyValue::new("rpc.system.name", "jsonrpc"));
            attrs.push(KeyValue::new("jsonrpc.protocol.version", "2.0"));
            if let Some(id) = head.as_ref().and_then(|h| h.id.as_ref()).and_then(id_text) {
                attrs.push(KeyValue::new("jsonrpc.request.id", id));
            }
            match (m, &target) {
                ("tools/call", Some(t)) => {
                    attrs.push(KeyValue::new("gen_ai.tool.name", t.clone()));
                    attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                }
                ("prompts/get", Some(t)) => attrs.push(KeyValue::new("gen_ai.prompt.name", t.clone())),
                (m, Some(t)) if m.starts_with("resources/") => attrs.push(KeyValue::new("mcp.resource.uri", t.clone())),
                _ => {}
            }
        }
        let span = self
            .tracing
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(self.started)
            .with_attributes(attrs)
            .start_with_context(&self.tracing.tracer, &parent);
        RequestSpan { span, has_session: self.session.is_some() }
    }
}

impl RequestSpan {
    /// The W3C `traceparent` header value that makes a callee's span a child of this one.
    pub fn traceparent(&self) -> Option<String> {
        let cx = self.span.span_context();
        cx.is_valid().then(|| format!("00-{}-{}-{:02x}", cx.trace_id(), cx.span_id(), cx.trace_flags().to_u8()))
    }

    /// Ends the span with the answer's status (and the session it opened, for `initialize`).
    pub fn finish(mut self, status: u16, answer: &HeaderMap) {
        self.span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        if !self.has_session
            && let Some(s) = answer.get("mcp-session-id").and_then(|v| v.to_str().ok())
        {
            self.span.set_attribute(KeyValue::new("mcp.session.id", clip(s)));
        }
        if status >= 400 {
            self.span.set_attribute(KeyValue::new("error.type", status.to_string()));
            self.span.set_status(Status::error(super::metrics::status_label(status)));
        }
        self.span.end();
    }
}

/// The remote parent named by a `traceparent` (and `tracestate`), if it is valid.
fn parent_from(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent?.to_owned());
    if let Some(s) = tracestate {
        carrier.insert("tracestate".to_owned(), s.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The fields of a JSON-RPC message the span needs; everything else is skipped unread.
#[derive(serde::Deserialize)]
struct MessageHead {
    id: Option<serde_json::Value>,
    params: Option<Params>,
}

#[derive(serde::Deserialize)]
struct Params {
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
}

#[derive(serde::Deserialize)]
struct Meta {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

fn id_text(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::String(s) => Some(clip(s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_ATTR).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn export_headers_read_the_named_variables_and_refuse_an_unset_one() {
        let mut cfg = TelemetryConfig { endpoint: Some("collector:4318".into()), ..TelemetryConfig::default() };
        cfg.headers.insert("x-team".into(), "blue".into());
        cfg.headers_env.insert("authorization".into(), "OTEL_AUTH".into());
        let env = |var: &str| (var == "OTEL_AUTH").then(|| "Bearer s3cret\n".to_string());
        let headers = export_headers(&cfg, env).unwrap();
        assert_eq!(headers.get("x-team").map(String::as_str), Some("blue"));
        assert_eq!(headers.get("authorization").map(String::as_str), Some("Bearer s3cret"));

        cfg.headers_env.insert("x-other".into(), "UNSET_VAR".into());
        let err = export_headers(&cfg, env).unwrap_err().to_string();
        assert!(err.contains("UNSET_VAR") && err.contains("x-other"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
