//! The host's way to an HTTP-transport container that runs in a network namespace of Apiary's
//! (profile `none` or an allow-list: loopback only, nothing published): a Unix socket in the
//! workload's state directory, served by the apiary process that holds the namespace, where each
//! connection is forwarded to the server's `127.0.0.1:<port>` inside the namespace
//! ([`EgressNamespace::dial`]). The proxy dials that socket (`Launch::upstream_socket`); no TCP
//! port of the host leads to the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::ContainerError;
use super::egress::EgressNamespace;

/// Connections forwarded at once; more wait for a free one (the listener's backlog bounds them).
const MAX_FORWARDED: usize = 256;

/// A connection to the server's port inside the namespace is local: refused or made at once.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The forwarder of one container. Dropping it stops forwarding (connections in flight end with
/// the container) and removes the socket.
#[derive(Debug)]
pub struct InboundForwarder {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl InboundForwarder {
    /// Binds `path` (replacing a stale socket a killed apiary left) and forwards every
    /// connection to `127.0.0.1:port` of `netns`.
    pub fn start(path: &Path, netns: Arc<EgressNamespace>, port: u16) -> Result<Self, ContainerError> {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| ContainerError::Invalid(format!("cannot listen on {} for the proxy: {e}", path.display())))?;
        let task = tokio::spawn(serve(listener, netns, port));
        Ok(InboundForwarder { path: path.to_path_buf(), task })
    }
}

impl Drop for InboundForwarder {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(listener: UnixListener, netns: Arc<EgressNamespace>, port: u16) {
    let slots = Arc::new(Semaphore::new(MAX_FORWARDED));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "inbound accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let netns = Arc::clone(&netns);
        tokio::spawn(async move {
            let _permit = permit;
            let dialed = tokio::task::spawn_blocking(move || netns.dial(port, DIAL_TIMEOUT)).await;
            let tcp = match dialed {
                Ok(Ok(tcp)) => tcp,
                // Not listening (yet): the proxy sees the connection closed unanswered.
                Ok(Err(e)) => {
                    tracing::debug!(port, error = %e, "the server's port in its namespace");
                    return;
                }
                Err(_) => return,
            };
            let tcp = match tcp.set_nonblocking(true).and_then(|()| tokio::net::TcpStream::from_std(tcp)) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "inbound socket");
                    return;
                }
            };
            let mut tcp = tcp;
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut tcp).await;
        });
    }
}
