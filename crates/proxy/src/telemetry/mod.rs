//! What a proxy reports about itself: Prometheus metrics (served on the diagnostics listener)
//! and OTLP traces, one span per MCP request. The front layer feeds both through
//! [`Telemetry::begin`] and [`RequestTelemetry`]; nothing here is process-global.

mod diagnostics;
mod metrics;
mod trace;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use apiary_config::RunConfig;
use axum::http::HeaderMap;
use bytes::Bytes;

pub(crate) use diagnostics::{DiagnosticsError, bind_diagnostics, serve_diagnostics};
pub(crate) use metrics::{ActiveGuard, Metrics, Outcome};
pub use metrics::{MAX_TOOL_LABELS, NO_METHOD};
pub(crate) use trace::{RequestSpan, SpanStart, Tracing};
pub use trace::{TracingError, default_service_name};

/// The metrics and tracer of one proxy; either may be off.
pub(crate) struct Telemetry {
    pub metrics: Option<Arc<Metrics>>,
    pub tracing: Option<Arc<Tracing>>,
}

impl Telemetry {
    /// Builds what `cfg.telemetry` asks for.
    pub fn from_config(cfg: &RunConfig, transport: &'static str) -> Result<Telemetry, TracingError> {
        let t = &cfg.telemetry;
        let metrics = t.prometheus_metrics_path.then(|| Arc::new(Metrics::new(&cfg.name, transport)));
        let tracing = Tracing::new(t, &cfg.name)?.map(Arc::new);
        Ok(Telemetry { metrics, tracing })
    }

    /// True when requests are measured or traced.
    pub fn is_on(&self) -> bool {
        self.metrics.is_some() || self.tracing.is_some()
    }

    /// Starts following one request, as it enters the front layer.
    pub fn begin(&self, method: &str, path: &str, headers: &HeaderMap, peer: Option<IpAddr>) -> RequestTelemetry {
        RequestTelemetry {
            started: Instant::now(),
            active: self.metrics.as_ref().map(|m| m.open()),
            span: self
                .tracing
                .as_ref()
                .map(|t| SpanState::Pending(SpanStart::new(Arc::clone(t), method, path, headers, peer))),
        }
    }

    /// Flushes the spans still queued.
    pub async fn shutdown(&self) {
        if let Some(t) = &self.tracing {
            t.shutdown().await;
        }
    }
}

enum SpanState {
    Pending(SpanStart),
    Started(RequestSpan),
    Done,
}

/// One request's telemetry, from the front layer's start to the answer's head.
pub(crate) struct RequestTelemetry {
    started: Instant,
    active: Option<ActiveGuard>,
    span: Option<SpanState>,
}

impl RequestTelemetry {
    /// Starts the span now that the request is known to be `method` on `target`.
    pub fn begin_span(&mut self, method: Option<&str>, target: Option<&str>, request: Option<&Bytes>) {
        if let Some(SpanState::Pending(_)) = &self.span
            && let Some(SpanState::Pending(start)) = self.span.replace(SpanState::Done)
        {
            self.span = Some(SpanState::Started(start.begin(method, target, request)));
        }
    }

    /// The `traceparent` value for calls made on this request's behalf (starting the span
    /// under its HTTP name if the request was never identified).
    pub fn traceparent(&mut self) -> Option<String> {
        self.begin_span(None, None, None);
        match &self.span {
            Some(SpanState::Started(s)) => s.traceparent(),
            _ => None,
        }
    }

    /// Records the finished request and hands back what keeps the active-connections gauge
    /// up until the answer's body is done.
    pub fn finish(
        &mut self,
        metrics: Option<&Metrics>,
        method: Option<&str>,
        target: Option<&str>,
        status: u16,
        answer: &HeaderMap,
    ) -> Option<ActiveGuard> {
        if let Some(m) = metrics {
            m.record(&Outcome { method, target, status_code: status, seconds: self.started.elapsed().as_secs_f64() });
        }
        self.begin_span(None, None, None);
        if let Some(SpanState::Started(s)) = self.span.replace(SpanState::Done) {
            s.finish(status, answer);
        }
        self.active.take()
    }
}
