//! Serving the fixture over newline-delimited JSON-RPC on byte streams (stdin/stdout for the
//! `--stdio` mode). Logs never go to stdout: the binary sends tracing output to stderr.
//!
//! In the `--modern-only` mode, `initialize` never reaches the SDK: it is answered here with
//! the -32022 a 2026-07-28-only server gives it (its versions listed), and the process goes
//! on serving the modern requests that follow. (The SDK would refuse it too, then end the
//! connection, which over stdio ends the server.)

use rmcp::ServiceExt as _;
use rmcp::service::ServerInitializeError;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use super::{FixtureServer, ServeError, ServerOptions};

/// Longest line the modern-only filter reads (a larger one ends the connection).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Serves one MCP connection on the process's stdin and stdout until the client closes stdin.
pub async fn serve_stdio(options: ServerOptions) -> Result<(), ServeError> {
    let (reader, writer) = rmcp::transport::io::stdio_pipes();
    serve_io(options, reader, writer).await
}

/// Serves one MCP connection on `reader`/`writer` until `reader` reaches end of file.
pub async fn serve_io<R, W>(options: ServerOptions, reader: R, writer: W) -> Result<(), ServeError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    if options.modern_only {
        let (sdk_in, sdk_out) = refuse_initialize(reader, writer);
        return serve_sdk(options, sdk_in, sdk_out).await;
    }
    serve_sdk(options, reader, writer).await
}

async fn serve_sdk<R, W>(options: ServerOptions, reader: R, writer: W) -> Result<(), ServeError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let running = match FixtureServer::new(options, None).serve((reader, writer)).await {
        Ok(running) => running,
        // A client may hang up without initializing (say after only `server/discover`):
        // that is an orderly end, not a server failure.
        Err(ServerInitializeError::ConnectionClosed(reason)) => {
            tracing::info!(%reason, "client closed the connection before initializing");
            return Ok(());
        }
        Err(error) => return Err(ServeError::Initialize(error.to_string())),
    };
    running.waiting().await.map(|_reason| ()).map_err(|error| ServeError::Task(error.to_string()))
}

/// The -32022 a 2026-07-28-only server answers `initialize` with, for the request `line`
/// (`None` when the line is not an `initialize` request).
pub(super) fn initialize_refusal(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v.get("method").and_then(Value::as_str) != Some("initialize") {
        return None;
    }
    let id = v.get("id")?;
    let requested = v.pointer("/params/protocolVersion").cloned().unwrap_or(Value::Null);
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32022,
            "message": "Unsupported protocol version: this server speaks only 2026-07-28, which has no initialize",
            "data": {"requested": requested, "supported": ["2026-07-28"]},
        },
    });
    Some(error.to_string())
}

/// Puts a filter between the client and the SDK: `initialize` requests are answered with
/// [`initialize_refusal`], every other line goes to the SDK; the SDK's lines and the
/// refusals share the one writer, a whole line at a time.
fn refuse_initialize<R, W>(reader: R, mut writer: W) -> (tokio::io::DuplexStream, tokio::io::DuplexStream)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (mut to_sdk, sdk_in) = tokio::io::duplex(64 * 1024);
    let (sdk_out, from_sdk) = tokio::io::duplex(64 * 1024);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(64);
    let refusals = out_tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.len() > MAX_LINE {
                break;
            }
            match initialize_refusal(&line) {
                Some(refusal) => {
                    if refusals.send(refusal).await.is_err() {
                        break;
                    }
                }
                None => {
                    if to_sdk.write_all(line.as_bytes()).await.is_err() || to_sdk.write_all(b"\n").await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `to_sdk` ends the SDK's input: the server stops as it would at EOF.
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(from_sdk).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if out_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            let written = async {
                writer.write_all(line.as_bytes()).await?;
                writer.write_all(b"\n").await?;
                writer.flush().await
            };
            if written.await.is_err() {
                break;
            }
        }
    });
    (sdk_in, sdk_out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_initialize_requests_are_refused_and_the_versions_listed() {
        let refusal = initialize_refusal(
            r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&refusal).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], -32022);
        assert_eq!(v["error"]["data"]["requested"], "2025-06-18");
        assert_eq!(v["error"]["data"]["supported"], serde_json::json!(["2026-07-28"]));
        assert!(initialize_refusal(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).is_none());
        assert!(initialize_refusal(r#"{"jsonrpc":"2.0","method":"initialize"}"#).is_none(), "a notification");
        assert!(initialize_refusal("not json").is_none());
    }
}
