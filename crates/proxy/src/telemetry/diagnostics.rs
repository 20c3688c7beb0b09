//! The diagnostics listener: `GET /metrics` as Prometheus (OpenMetrics) text, unauthenticated
//! and without the MCP middleware, on its own port so scraping never touches the MCP routes.

use std::net::SocketAddr;
use std::sync::Arc;

use apiary_config::{DEFAULT_DIAGNOSTICS_ADDRESS, TelemetryConfig};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Why the diagnostics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiagnosticsError {
    #[error("telemetry.diagnosticsAddress `{0}` is not an ip:port address")]
    Address(String),
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Binds the listener `cfg` asks for. The default address falls back to a free loopback port
/// when it is busy (a second proxy on the machine must still start); a configured one does not.
pub(crate) async fn bind_diagnostics(cfg: &TelemetryConfig) -> Result<TcpListener, DiagnosticsError> {
    if let Some(addr) = &cfg.diagnostics_address {
        let sock: SocketAddr = addr.parse().map_err(|_| DiagnosticsError::Address(addr.clone()))?;
        return TcpListener::bind(sock).await.map_err(|source| DiagnosticsError::Bind { addr: addr.clone(), source });
    }
    match TcpListener::bind(DEFAULT_DIAGNOSTICS_ADDRESS).await {
        Ok(l) => Ok(l),
        Err(e) => {
            let fallback = "127.0.0.1:0";
            let l = TcpListener::bind(fallback)
                .await
                .map_err(|source| DiagnosticsError::Bind { addr: fallback.to_owned(), source })?;
            let got = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(error = %e, "{DEFAULT_DIAGNOSTICS_ADDRESS} is not free; /metrics is on {got} instead");
            Ok(l)
        }
    }
}

/// Serves `/metrics` until `stop` is cancelled.
pub(crate) async fn serve_diagnostics(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    metrics.encode(),
                )
                    .into_response()
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::warn!(error = %e, "the diagnostics listener failed");
    }
}
