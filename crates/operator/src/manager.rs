//! The operator process around the reconcilers: watch scope from `WATCH_NAMESPACE`, leader
//! election on Lease `toolhive-operator-leader-election`, `/metrics` and the health probes
//! (names.md §5), and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::FutureExt;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::reconcile::{self, Context, Metrics, Settings, WatchScope};
use crate::{entry, extauth, group, registration, remoteproxy, vmcp};

/// Name of the leader-election Lease (ToolHive's).
pub const LEASE_NAME: &str = "toolhive-operator-leader-election";
/// Default image of the proxy runner when `TOOLHIVE_RUNNER_IMAGE` is unset.
pub const DEFAULT_RUNNER_IMAGE: &str = "ghcr.io/apiary/apiary:latest";
/// How long a leader's lease lasts without renewal.
const LEASE_SECONDS: u64 = 15;
/// How long before expiry the leader renews.
const LEASE_GRACE_SECONDS: u64 = 5;
/// Bound on releasing the lease at shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the kubelet puts the pod's namespace.
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Failures that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No usable kubeconfig or in-cluster config.
    #[error("cannot reach Kubernetes: {0}")]
    Client(#[source] kube::Error),
    /// A probe or metrics port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Lease could not be set up.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took the lease while this one was leading.
    #[error("lost the leader lease {0}; exiting so that only one operator reconciles")]
    LostLease(String),
}

/// How the operator process runs.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Namespaces to watch.
    pub scope: WatchScope,
    /// Leader election: the Lease's namespace and this replica's identity; `None` runs alone.
    pub leader_election: Option<LeaderElection>,
    /// `/metrics` listener.
    pub metrics_addr: SocketAddr,
    /// `/healthz` (also `/health`) and `/readyz` listener.
    pub health_addr: SocketAddr,
    /// Settings of the children.
    pub settings: Settings,
    /// Pod name, reported on events.
    pub instance: Option<String>,
}

/// Where the Lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease (`POD_NAMESPACE`).
    pub namespace: String,
    /// Holder identity (pod name, else host name plus pid).
    pub identity: String,
}

impl ManagerConfig {
    /// Reads `WATCH_NAMESPACE`, `POD_NAMESPACE`, `POD_NAME`, `TOOLHIVE_RUNNER_IMAGE`,
    /// `VMCP_IMAGE` and `TOOLHIVE_PROXY_HOST`; `leader_elect` turns the Lease on.
    pub fn from_env(leader_elect: bool, metrics_addr: SocketAddr, health_addr: SocketAddr) -> Self {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let instance = var("POD_NAME");
        let namespace = var("POD_NAMESPACE")
            .or_else(|| std::fs::read_to_string(SA_NAMESPACE_FILE).ok().map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let identity = instance.clone().unwrap_or_else(|| {
            let host = var("HOSTNAME").unwrap_or_else(|| "apiary-operator".to_string());
            format!("{host}-{}", std::process::id())
        });
        ManagerConfig {
            scope: WatchScope::from_env_value(var("WATCH_NAMESPACE").as_deref()),
            leader_election: leader_elect.then_some(LeaderElection { namespace, identity }),
            metrics_addr,
            health_addr,
            settings: Settings {
                runner_image: var("TOOLHIVE_RUNNER_IMAGE").unwrap_or_else(|| DEFAULT_RUNNER_IMAGE.to_string()),
                proxy_host: var("TOOLHIVE_PROXY_HOST")
                    .unwrap_or_else(|| reconcile::desired::DEFAULT_PROXY_HOST.to_string()),
                vmcp_image: var("VMCP_IMAGE"),
            },
            instance,
        }
    }
}

#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    if p.ready.load(Ordering::Relaxed) { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") }
}

async fn metrics(State(p): State<Probes>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], p.metrics.render())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ManagerError> {
    TcpListener::bind(addr).await.map_err(|source| ManagerError::Bind { addr, source })
}

/// Runs the operator until `shutdown` resolves (or the lease is lost). The listeners are bound
/// before anything else so a port clash fails at once.
pub async fn run(
    config: ManagerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ManagerError> {
    let metrics_listener = bind(config.metrics_addr).await?;
    let health_listener = bind(config.health_addr).await?;
    let client = Client::try_default().await.map_err(ManagerError::Client)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let metrics_state = Arc::new(Metrics::default());
    let probes = Probes { metrics: Arc::clone(&metrics_state), ready: Arc::new(AtomicBool::new(false)) };
    let metrics_app = Router::new().route("/metrics", get(metrics)).with_state(probes.clone());
    // `/health` is the name the issue and the proxy use; `/healthz` is what the chart probes.
    let health_app = Router::new()
        .route("/healthz", get(healthz))
        .route("/health", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probes.clone());
    let servers = tokio::spawn({
        let stopped = stopped.clone();
        async move {
            let m = axum::serve(metrics_listener, metrics_app).with_graceful_shutdown(stopped());
            let h = axum::serve(health_listener, health_app).with_graceful_shutdown(stopped());
            let (a, b) = tokio::join!(m, h);
            for r in [a, b] {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "probe server stopped");
                }
            }
        }
    });

    let ctx = Arc::new(Context::new(client.clone(), config.settings.clone(), config.instance.clone(), metrics_state));
    let result = match &config.leader_election {
        None => {
            probes.ready.store(true, Ordering::Relaxed);
            tracing::info!(scope = ?config.scope, "operator started (no leader election)");
            run_controllers(ctx, config.scope.clone(), stopped().shared()).await;
            Ok(())
        }
        Some(le) => lead(client, le, ctx, &config, &probes, stopped).await,
    };
    tracing::info!("operator stopping");
    let _ = servers.await;
    result
}

/// Runs every controller (MCPServer, MCPRemoteProxy, MCPServerEntry, MCPGroup,
/// MCPExternalAuthConfig, VirtualMCPServer, MCPServerRegistration) side by side on the same scope until `stop` resolves.
async fn run_controllers<S>(ctx: Arc<Context>, scope: WatchScope, stop: S)
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    tokio::join!(
        reconcile::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        remoteproxy::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        entry::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        group::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        vmcp::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        registration::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        extauth::run(ctx, scope, stop),
    );
}

/// Waits for the lease, reconciles while holding it, and releases it at shutdown.
async fn lead<F, Fut>(
    client: Client,
    le: &LeaderElection,
    ctx: Arc<Context>,
    config: &ManagerConfig,
    probes: &Probes,
    stopped: F,
) -> Result<(), ManagerError>
where
    F: Fn() -> Fut + Clone,
    Fut: Future<Output = ()> + Send + Sync + 'static,
{
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .with_field_manager(format!("{}-lease", reconcile::FIELD_MANAGER))
        .build()
        .await?;
    let (mut leader, handle) = manager.watch().await;
    // A standby replica is healthy and ready; it just does not reconcile.
    probes.ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = LEASE_NAME, namespace = %le.namespace, identity = %le.identity, "waiting for leadership");

    let acquired = tokio::select! {
        r = leader.wait_for(|l| *l) => r.is_ok(),
        () = stopped() => false,
    };
    let mut result = Ok(());
    if acquired {
        ctx.metrics.set_leader(true);
        tracing::info!(scope = ?config.scope, "became leader; reconciling");
        let mut lost_rx = leader.clone();
        let lost = async move {
            let _ = lost_rx.wait_for(|l| !*l).await;
        }
        .shared();
        let stop = {
            let lost = lost.clone();
            let stopped = stopped();
            async move {
                tokio::select! { () = lost => {}, () = stopped => {} }
            }
        }
        .shared();
        run_controllers(Arc::clone(&ctx), config.scope.clone(), stop).await;
        ctx.metrics.set_leader(false);
        if lost.now_or_never().is_some() && !*leader.borrow() {
            result = Err(ManagerError::LostLease(LEASE_NAME.to_string()));
        }
    }
    // Dropping the receiver makes the lease task release the lease and end.
    drop(leader);
    match tokio::time::timeout(RELEASE_TIMEOUT, handle).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
        Err(_) => tracing::warn!("releasing the leader lease timed out"),
    }
    result
}
