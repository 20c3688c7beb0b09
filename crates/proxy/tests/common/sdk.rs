//! Real MCP clients driven from tests: the official Python and TypeScript SDKs (scripts in
//! `tests/sdk_clients/`) and Apiary's own `McpClient`, all reporting in one JSON shape.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use apiary_testkit::env;
use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};

/// Bounds one SDK client run (start-up of the interpreter, a child per session, three requests).
pub const CLIENT_LIMIT: Duration = Duration::from_secs(120);

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("sdk_clients").join(name)
}

/// Runs a client script to completion within [`CLIENT_LIMIT`] and parses the JSON line it
/// prints. The child is killed if the limit passes (kill_on_drop).
pub async fn run_script(mut cmd: std::process::Command) -> Result<Value, String> {
    cmd.env("PATH", env::path_with_tools()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let described = format!("{cmd:?}");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("{described}: {e}"))?;
    let out = tokio::time::timeout(CLIENT_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| format!("{described} did not finish within {CLIENT_LIMIT:?}"))?
        .map_err(|e| format!("{described}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{described} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status));
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("{described} printed no JSON ({e}): {stdout}\nstderr: {stderr}"))
}

/// The official Python SDK (`mcp.client.streamable_http`) against `url`.
pub async fn python_client(url: &str, tool: &str, args: &Value) -> Result<Value, String> {
    let mut cmd = env::command("python3");
    cmd.arg(script("py_client.py")).arg(url).arg(tool).arg(args.to_string());
    run_script(cmd).await
}

/// The official TypeScript SDK (`StreamableHTTPClientTransport`) on Node 22 against `url`.
pub async fn ts_client(url: &str, tool: &str, args: &Value) -> Result<Value, String> {
    let mut cmd = env::command("node");
    cmd.env("NODE_PATH", env::ts_sdk_node_modules())
        .arg(script("ts_client.cjs"))
        .arg(url)
        .arg(tool)
        .arg(args.to_string());
    run_script(cmd).await
}

/// Apiary's own client, reporting in the scripts' shape.
pub async fn apiary_client(url: &str, tool: &str, args: &Value) -> Result<Value, String> {
    let options = ConnectOptions { timeout: Duration::from_secs(60), ..ConnectOptions::default() };
    let work = async {
        let client = McpClient::connect(url, options).await.map_err(|e| e.to_string())?;
        let tools = client.list_tools().await.map_err(|e| e.to_string())?;
        let result = client.call_tool(tool, args.clone()).await.map_err(|e| e.to_string())?;
        let out = json!({
            "server": client.server_info()["name"],
            "protocolVersion": client.protocol_version(),
            "tools": tools.iter().map(|t| t["name"].clone()).collect::<Vec<_>>(),
            "result": result,
        });
        client.close().await.map_err(|e| e.to_string())?;
        Ok(out)
    };
    tokio::time::timeout(CLIENT_LIMIT, work)
        .await
        .map_err(|_| format!("McpClient did not finish within {CLIENT_LIMIT:?}"))?
}
