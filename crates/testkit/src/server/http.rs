//! Serving the fixture over Streamable HTTP at `/mcp` (the `--http` mode), with sessions,
//! resumable SSE streams, and Host-header checks against DNS rebinding (only loopback names are
//! accepted unless [`ServerOptions::allow_any_host`] is set).

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sessions::FixtureSessions;
use super::{FixtureServer, ServeError, ServerOptions};

/// Path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// A running Streamable HTTP fixture server; see [`serve_http`].
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    url: String,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MCP endpoint, `http://<addr>/mcp`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting connections, ends every session and waits for the server task.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after [`HttpServer::shutdown`] or a fatal error).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => result.map_err(ServeError::Io),
            Err(error) => Err(ServeError::Task(error.to_string())),
        }
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the fixture at `/mcp` in a background task.
pub async fn serve_http(addr: SocketAddr, options: ServerOptions) -> Result<HttpServer, ServeError> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let sessions = Arc::new(FixtureSessions::default());
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    if options.allow_any_host {
        config = config.disable_allowed_hosts();
    }
    let handler_sessions = sessions.clone();
    let service = StreamableHttpService::new(
        move || Ok(FixtureServer::new(options, Some(handler_sessions.clone()))),
        sessions,
        config,
    );
    // The SDK does not check SEP-2243 `Mcp-Param-*` headers: the fixture's one annotated tool
    // is checked before it.
    let router = axum::Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(super::param_headers::check));
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        // No Nagle: answers go out in more than one write, and a direct baseline must not wait
        // ~40 ms on delayed ACKs that the proxy does not (see crates/bench).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    Ok(HttpServer { local_addr, url: format!("http://{local_addr}{MCP_PATH}"), shutdown, task })
}
