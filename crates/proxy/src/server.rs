//! Starting and stopping one proxy: binds the listener, builds the upstream, serves until
//! told to stop, then stops every child it started.

use std::net::SocketAddr;
use std::sync::Arc;

use apiary_config::RunConfig;
use apiary_transport::launch::Launch;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::status::UpstreamStatus;

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the configuration needs a launcher for its {0} server, and none was given")]
    NoLauncher(&'static str),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running proxy.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    path: &'static str,
    status: watch::Receiver<UpstreamStatus>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl ProxyHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL a client uses: `/mcp`, or `/sse` when the proxy mode is `sse`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.path)
    }

    /// Changes to the upstream's state, restarts and exits.
    pub fn status(&self) -> watch::Receiver<UpstreamStatus> {
        self.status.clone()
    }

    /// A token that stops the proxy when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, ends open streams, stops every child, and waits for all of it.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the proxy stops (its shutdown token was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts a proxy for `config`. `launcher` starts the server for local sources (stdio, or
/// a local HTTP server); remote sources need none.
pub async fn start(
    config: RunConfig,
    launcher: Option<Arc<dyn Launch>>,
) -> Result<ProxyHandle, StartError> {
    let _ = (config, launcher);
    Err(StartError::Config("not implemented yet".into()))
}
