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
