//! `/health`: 200 while the proxy serves, 503 once its upstream is down. Never forwarded,
//! no auth, no middleware (names.md §5).

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::answer::Refusal;
use crate::status::{UpstreamState, UpstreamStatus};

pub async fn health(method: Method, status: watch::Receiver<UpstreamStatus>) -> Response {
    match method {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        _ => return Refusal::MethodNotAllowed { allow: "GET, HEAD" }.into_response(),
    }
    let st = status.borrow().clone();
    let code = if st.state == UpstreamState::Down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = serde_json::json!({ "status": if code == StatusCode::OK { "ok" } else { "down" }, "upstream": st });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
