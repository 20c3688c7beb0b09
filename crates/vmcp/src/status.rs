//! `/status` and `/api/backends/health` (ToolHive's vMCP routes): every backend's health,
//! its circuit state and the backends the latest list had to leave out.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::health::HealthRegistry;

fn json(value: serde_json::Value) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], value.to_string())
}

/// The routes, to be served beside the proxy's `/health`.
pub fn status_routes(health: Arc<HealthRegistry>) -> axum::Router {
    let h2 = Arc::clone(&health);
    axum::Router::new()
        .route("/status", get(move || async move { json(health.status_report()) }))
        .route("/api/backends/health", get(move || async move { json(h2.health_report()) }))
}
