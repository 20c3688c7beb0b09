//! Asks a registered server for its tools as an MCP client (`initialize`, then `tools/list`
//! following cursors), with the registration's credential as a bearer token when it has one.
//! Every wait is bounded; the token never appears in a message.

use std::time::Duration;

use apiary_transport::client::{ConnectOptions, McpClient, Transport};

use super::route::Problem;

/// Bound on each wait of the session (connecting, each request, each page).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the whole probe.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The number of tools the server at `url` lists, or why it could not be asked (`Unreachable`).
pub async fn count_tools(url: &str, token: Option<&str>) -> Result<usize, Problem> {
    let headers = token.map(|t| vec![("Authorization".to_string(), format!("Bearer {t}"))]).unwrap_or_default();
    let options = ConnectOptions { transport: Transport::Auto, timeout: STEP_TIMEOUT, headers };
    let unreachable = |what: String| Problem { reason: "Unreachable", message: what };
    let probe = async {
        let client = McpClient::connect(url, options)
            .await
            .map_err(|e| unreachable(format!("cannot initialize an MCP session with {url}: {e}")))?;
        let tools = client.list_tools().await.map_err(|e| unreachable(format!("tools/list at {url} failed: {e}")));
        // Ending the session is a courtesy; its failure does not change what was found.
        let _ = client.close().await;
        tools.map(|t| t.len())
    };
    tokio::time::timeout(TOTAL_TIMEOUT, probe)
        .await
        .map_err(|_| unreachable(format!("{url} did not list its tools within {TOTAL_TIMEOUT:?}")))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;

    /// What the test server saw: the `Authorization` header of every request.
    type Seen = Arc<Mutex<Vec<Option<String>>>>;

    /// A minimal Streamable HTTP MCP server with three tools that, when `required` is set,
    /// answers 401 to any request without `Authorization: Bearer <required>`.
    async fn mcp(
        State((seen, required)): State<(Seen, Option<&'static str>)>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
        seen.lock().unwrap().push(auth.clone());
        if let Some(token) = required
            && auth.as_deref() != Some(&format!("Bearer {token}"))
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let msg: Value = serde_json::from_str(&body).unwrap();
        let Some(id) = msg.get("id").cloned() else { return StatusCode::ACCEPTED.into_response() };
        let result = match msg["method"].as_str().unwrap() {
            "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "t", "version": "1"}}),
            "tools/list" => {
                let tools: Vec<Value> =
                    ["a", "b", "c"].iter().map(|n| json!({"name": n, "inputSchema": {"type": "object"}})).collect();
                json!({ "tools": tools })
            }
            _ => json!({}),
        };
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// Serves [`mcp`] on 127.0.0.1 until the test's runtime ends; returns its URL.
    async fn serve(seen: Seen, required: Option<&'static str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/mcp", post(mcp)).with_state((seen, required));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/mcp")
    }

    #[tokio::test]
    async fn counts_the_tools_and_sends_the_credential_as_a_bearer() {
        let seen = Seen::default();
        let url = serve(Arc::clone(&seen), Some("s3cret")).await;
        assert_eq!(count_tools(&url, Some("s3cret")).await.unwrap(), 3);
        let seen = seen.lock().unwrap().clone();
        assert!(seen.len() >= 2, "initialize and tools/list at least: {seen:?}");
        assert!(seen.iter().all(|a| a.as_deref() == Some("Bearer s3cret")), "{seen:?}");
    }

    #[tokio::test]
    async fn a_refused_or_absent_server_is_unreachable_and_the_token_is_not_in_the_message() {
        let url = serve(Seen::default(), Some("s3cret")).await;
        let refused = count_tools(&url, Some("wrong")).await.unwrap_err();
        assert_eq!(refused.reason, "Unreachable");
        assert!(refused.message.contains("401") && !refused.message.contains("wrong"), "{}", refused.message);
        let no_token = count_tools(&url, None).await.unwrap_err();
        assert_eq!(no_token.reason, "Unreachable");

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = format!("http://{}/mcp", closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(count_tools(&dead, None).await.unwrap_err().reason, "Unreachable");
    }
}
