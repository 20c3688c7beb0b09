//! Serving the fixture over newline-delimited JSON-RPC on byte streams (stdin/stdout for the
//! `--stdio` mode). Logs never go to stdout: the binary sends tracing output to stderr.

use rmcp::ServiceExt as _;
use rmcp::service::ServerInitializeError;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{FixtureServer, ServeError, ServerOptions};

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
