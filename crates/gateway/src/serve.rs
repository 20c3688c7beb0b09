//! Starting the gateway: the vMCP (one in-process instance per client session, its backends
//! the snapshot's registrations, its routes authorized by their AuthPolicies) behind the
//! proxy's front, with the gateway's middleware on `/mcp` and `/status` beside it; then every
//! new snapshot applied with the vMCP's live reload.

use std::net::SocketAddr;
use std::sync::Arc;

use apiary_authpolicy::{Enforcer, JwtVerifier, MetadataFetcher};
use apiary_config::{RunConfig, Source, StdioMode};
use apiary_operator::gateway::Snapshot;
use apiary_operator::registration::route::Key;
use apiary_proxy::{ProxyHandle, StartExtras};
use apiary_transport::launch::Launch;
use apiary_vmcp::{InstanceLimits, VmcpLaunch};
use tokio::sync::watch;

use crate::auth::PolicyAuth;
use crate::backends::vmcp_config;
use crate::middleware::Middleware;

/// How the gateway serves.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Where `/mcp` and `/status` are served (port 0 picks one).
    pub listen: SocketAddr,
    /// Most client sessions at once (each holds its own backend sessions).
    pub max_sessions: u32,
    /// The Gateway served (for `/status`).
    pub gateway: Key,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway's vMCP config is refused: {0}")]
    Vmcp(#[from] apiary_vmcp::ConfigError),
    #[error("the gateway's proxy config is refused: {0}")]
    Config(String),
    #[error("the gateway could not start: {0}")]
    Start(#[from] apiary_proxy::StartError),
}

/// Serves the registrations of `snapshots` (the current one at once, each new one as it comes,
/// until the sender is dropped) with the routes' AuthPolicies in `enforcer` (set and removed by
/// whoever follows the cluster's AuthPolicies). Stop it with the handle's shutdown.
pub async fn serve<V: JwtVerifier + 'static, F: MetadataFetcher + 'static>(
    options: GatewayOptions,
    snapshots: watch::Receiver<Snapshot>,
    enforcer: Arc<Enforcer<V, F>>,
) -> Result<ProxyHandle, GatewayError> {
    let limits = apiary_config::Limits::default();
    let launch = VmcpLaunch::new(
        &vmcp_config(&snapshots.borrow()),
        InstanceLimits {
            max_line: usize::try_from(limits.max_line_bytes).unwrap_or(usize::MAX),
            ..InstanceLimits::default()
        },
    )?
    .with_route_auth(Arc::new(PolicyAuth::new(Arc::clone(&enforcer))));
    let launch = Arc::new(launch);
    let mut run_config = RunConfig::builder("gateway", Source::command("apiary", ["gateway"]))
        .proxy_host(options.listen.ip().to_string())
        .proxy_port(options.listen.port())
        .stdio_mode(StdioMode::PerSession)
        .max_session_children(options.max_sessions)
        .build()
        .map_err(|e| GatewayError::Config(e.to_string()))?;
    // Every client session is one in-process child: the session table holds as many.
    run_config.limits.max_sessions = options.max_sessions;
    let max_body = usize::try_from(run_config.limits.max_body_bytes).unwrap_or(usize::MAX);
    let middleware = Arc::new(Middleware::new(enforcer.clone(), snapshots.clone(), max_body));
    let routes = crate::status::routes(options.gateway.clone(), snapshots.clone(), launch.health(), enforcer);
    let launcher: Arc<dyn Launch> = Arc::clone(&launch) as Arc<dyn Launch>;
    let extras = StartExtras { routes, mcp_layer: Some(middleware.layer()) };
    let handle = apiary_proxy::start_with(run_config, Some(launcher), extras).await?;
    launch.spawn_health_checks(handle.shutdown_token());
    tokio::spawn(follow(launch, snapshots));
    Ok(handle)
}

/// Applies every new snapshot to the running vMCP until the snapshots end.
async fn follow(launch: Arc<VmcpLaunch>, mut snapshots: watch::Receiver<Snapshot>) {
    while snapshots.changed().await.is_ok() {
        let config = vmcp_config(&snapshots.borrow_and_update());
        match launch.reload(&config) {
            Ok(()) => tracing::info!(backends = config.backends.len(), "gateway: aggregation updated"),
            Err(e) => {
                tracing::error!(error = %e, "gateway: the registrations' config is refused; the running one is kept")
            }
        }
    }
}
