//! `VmcpLaunch`: the vMCP as a `Launch`, so the proxy's front serves it exactly as it
//! serves a stdio child. Each `launch()` wires an in-process instance to a pair of
//! in-memory pipes; the front writes its "stdin" and reads its "stdout".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apiary_transport::client::{ClientError, RawSession, SessionOptions};
use apiary_transport::launch::{ChildHandle, Launch, LaunchContext, LaunchFuture};
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Problem, VmcpConfig};
use crate::health::{BackendHealth, HealthRegistry};
use crate::hub::{Hub, InstanceLimits, Shared};
use crate::route_auth::RouteAuth;

/// Bytes buffered in each in-memory pipe.
const PIPE_BYTES: usize = 256 * 1024;

/// Starts vMCP instances for the proxy.
pub struct VmcpLaunch {
    shared: Arc<Shared>,
    limits: InstanceLimits,
    /// The health check task of each backend: its record and the token that stops it.
    checks: Mutex<HashMap<String, (Arc<BackendHealth>, CancellationToken)>>,
    /// Set by [`VmcpLaunch::spawn_health_checks`]: the checks run until it fires.
    stop: Mutex<Option<CancellationToken>>,
    /// The routes' authorization every instance applies (`crate::route_auth`).
    route_auth: Option<Arc<dyn RouteAuth>>,
}

impl VmcpLaunch {
    /// Validates `config` and prepares the instances' shared state.
    pub fn new(config: &VmcpConfig, limits: InstanceLimits) -> Result<VmcpLaunch, ConfigError> {
        Ok(VmcpLaunch {
            shared: Arc::new(Shared::new(Hub::new(config, limits, None)?)),
            limits,
            checks: Mutex::default(),
            stop: Mutex::default(),
            route_auth: None,
        })
    }

    /// Every instance authorizes what it lists and routes to backends with a `serverName`
    /// with `auth` (Apiary's gateway: the routes' AuthPolicies; see `crate::route_auth`).
    pub fn with_route_auth(mut self, auth: Arc<dyn RouteAuth>) -> VmcpLaunch {
        self.route_auth = Some(auth);
        self
    }

    /// Every backend's health (for `/status` and `/api/backends/health`); the same registry
    /// across reloads.
    pub fn health(&self) -> Arc<HealthRegistry> {
        Arc::clone(&self.shared.hub().health)
    }

    /// How many backends the live config has.
    pub fn backend_count(&self) -> usize {
        self.shared.hub().backends.len()
    }

    /// Replaces the backends, rules and settings with those of `config` (validated here): new
    /// sessions see them at once; every running instance closes its sessions with backends
    /// that went or changed, rebuilds its lists and tells its client (`list_changed`). On an
    /// error nothing changes. A changed `incomingAuth` is refused: the proxy's policy layers
    /// were built from it at start.
    pub fn reload(&self, config: &VmcpConfig) -> Result<(), ConfigError> {
        let live = self.shared.hub();
        let hub = Hub::new(config, self.limits, Some(Arc::clone(&live.health)))?;
        if hub.incoming != live.incoming {
            return Err(ConfigError::Invalid(vec![Problem {
                path: "incomingAuth".into(),
                message: "changed; incoming authentication and Cedar are applied at start: restart the vMCP".into(),
            }]));
        }
        self.shared.swap(hub);
        self.sync_health_checks();
        Ok(())
    }

    /// Checks every backend now and then every health interval, until `stop`: opens a
    /// session, pings, closes it. Backends a reload adds are checked too.
    pub fn spawn_health_checks(&self, stop: CancellationToken) {
        *lock(&self.stop) = Some(stop);
        self.sync_health_checks();
    }

    /// One check task per live backend: kept for a record that did not change, replaced for
    /// one that did, stopped for a backend that went.
    fn sync_health_checks(&self) {
        let Some(stop) = lock(&self.stop).clone() else { return };
        let hub = self.shared.hub();
        let settings = hub.health_settings;
        let mut checks = lock(&self.checks);
        let live: std::collections::HashSet<&str> = hub.health_records.iter().map(|b| b.name.as_str()).collect();
        checks.retain(|name, (_, token)| {
            let keep = live.contains(name.as_str());
            if !keep {
                token.cancel();
            }
            keep
        });
        for backend in &hub.health_records {
            if let Some((running, token)) = checks.get(&backend.name) {
                if Arc::ptr_eq(running, backend) {
                    continue;
                }
                token.cancel();
            }
            let token = stop.child_token();
            checks.insert(backend.name.clone(), (Arc::clone(backend), token.clone()));
            let backend = Arc::clone(backend);
            tokio::spawn(async move {
                loop {
                    check(&backend, settings.check_timeout).await;
                    tokio::select! {
                        () = tokio::time::sleep(settings.interval) => {}
                        () = token.cancelled() => return,
                    }
                }
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        // A backend that wants each caller's exchanged token answers a check without one
        // with 401 or 403: it is up.
        Err(ClientError::HttpStatus { status: 401 | 403, .. }) if backend.spec.exchange.is_some() => {
            backend.record_success();
        }
        Err(e) => {
            tracing::debug!(backend = %backend.name, error = %e, "health check failed");
            backend.record_failure(&e.to_string());
        }
    }
}

impl Launch for VmcpLaunch {
    fn launch(&self) -> LaunchFuture<'_> {
        self.launch_with(LaunchContext::default())
    }

    /// An instance with the session's caller: backends with `token_exchange` get that caller's
    /// token, exchanged. Without one (the shared instance, or no incoming auth) they are refused.
    fn launch_with(&self, context: LaunchContext) -> LaunchFuture<'_> {
        let shared = Arc::clone(&self.shared);
        let route_auth = self.route_auth.clone();
        Box::pin(async move {
            // Two pipes, not one split duplex: dropping the front's stdin must be an EOF.
            let (front_in, inst_in) = tokio::io::duplex(PIPE_BYTES);
            let (inst_out, front_out) = tokio::io::duplex(PIPE_BYTES);
            let (kill_tx, kill_rx) = oneshot::channel();
            let (exit_tx, exit_rx) = oneshot::channel();
            tokio::spawn(crate::instance::run(shared, context.caller, route_auth, inst_in, inst_out, kill_rx, exit_tx));
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
        format!("apiary vmcp ({} backends)", self.backend_count())
    }

    fn wants_caller(&self) -> bool {
        self.shared.hub().wants_caller()
    }

    /// A live reload may add a backend that exchanges the caller's token.
    fn may_want_caller(&self) -> bool {
        true
    }
}
