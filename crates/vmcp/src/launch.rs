//! `VmcpLaunch`: the vMCP as a `Launch`, so the proxy's front serves it exactly as it
//! serves a stdio child. Each `launch()` wires an in-process instance to a pair of
//! in-memory pipes; the front writes its "stdin" and reads its "stdout".

use std::sync::Arc;

use apiary_transport::client::{RawSession, SessionOptions};
use apiary_transport::launch::{ChildHandle, Launch, LaunchFuture};
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, VmcpConfig};
use crate::health::{BackendHealth, HealthRegistry};
use crate::hub::{Hub, InstanceLimits};

/// Bytes buffered in each in-memory pipe.
const PIPE_BYTES: usize = 256 * 1024;

/// Starts vMCP instances for the proxy.
pub struct VmcpLaunch {
    hub: Arc<Hub>,
}

impl VmcpLaunch {
    /// Validates `config` and prepares the instances' shared state.
    pub fn new(config: &VmcpConfig, limits: InstanceLimits) -> Result<VmcpLaunch, ConfigError> {
        Ok(VmcpLaunch { hub: Arc::new(Hub::new(config, limits)?) })
    }

    /// Every backend's health (for `/status` and `/api/backends/health`).
    pub fn health(&self) -> Arc<HealthRegistry> {
        Arc::clone(&self.hub.health)
    }

    /// Checks every backend now and then every health interval, until `stop`: opens a
    /// session, pings, closes it.
    pub fn spawn_health_checks(&self, stop: CancellationToken) {
        for backend in self.hub.health.all() {
            let backend = Arc::clone(backend);
            let settings = self.hub.health_settings;
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    check(&backend, settings.check_timeout).await;
                    tokio::select! {
                        () = tokio::time::sleep(settings.interval) => {}
                        () = stop.cancelled() => return,
                    }
                }
            });
        }
    }
}

async fn check(backend: &BackendHealth, timeout: std::time::Duration) {
    let options = SessionOptions { timeout, listen: false, incoming_capacity: 16, ..backend.spec.session_options() };
    let outcome = async {
        let (session, _incoming) = RawSession::open(&backend.url, options).await?;
        let pinged = session.request(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)).await;
        let _ = session.close().await;
        pinged.map(drop)
    };
    match outcome.await {
        Ok(()) => backend.record_success(),
        Err(e) => {
            tracing::debug!(backend = %backend.name, error = %e, "health check failed");
            backend.record_failure(&e.to_string());
        }
    }
}

impl Launch for VmcpLaunch {
    fn launch(&self) -> LaunchFuture<'_> {
        let hub = Arc::clone(&self.hub);
        Box::pin(async move {
            // Two pipes, not one split duplex: dropping the front's stdin must be an EOF.
            let (front_in, inst_in) = tokio::io::duplex(PIPE_BYTES);
            let (inst_out, front_out) = tokio::io::duplex(PIPE_BYTES);
            let (kill_tx, kill_rx) = oneshot::channel();
            let (exit_tx, exit_rx) = oneshot::channel();
            tokio::spawn(crate::instance::run(hub, inst_in, inst_out, kill_rx, exit_tx));
            Ok(ChildHandle {
                pid: None,
                stdin: Box::new(front_in),
                stdout: Box::new(front_out),
                stderr: None,
                exited: exit_rx,
                kill: kill_tx,
            })
        })
    }

    fn describe(&self) -> String {
        format!("apiary vmcp ({} backends)", self.hub.backends.len())
    }
}
