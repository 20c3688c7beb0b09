//! `apiary gateway`: seed 004's MCP gateway. Every MCPServerRegistration whose HTTPRoute
//! attaches to the served Gateway becomes a backend of one aggregated `/mcp` (the vMCP behind
//! the proxy's own front), its tools shown behind the registration's literal prefix and calls
//! routed with the `x-mcp-*` headers. The registrations are followed live
//! (`apiary_operator::gateway`): each change is applied with the vMCP's reload, so open
//! sessions get `list_changed` and no restart is needed.
//!
//! Seam for the route's AuthPolicy (not wired yet): a routed request is decided where the vMCP
//! forwards it to its backend (`apiary_vmcp` `Instance::forward`, which already knows the
//! backend's `x-mcp-servername`, tool and method); per-caller lists would filter in its list
//! answer the same way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use apiary_config::{RunConfig, Source, StdioMode};
use apiary_operator::gateway::{self, Snapshot};
use apiary_operator::registration::route::Key;
use apiary_transport::launch::Launch;
use apiary_vmcp::config::{CircuitBreaker, FailureHandling, Operational, StaticBackend};
use apiary_vmcp::{HealthRegistry, InstanceLimits, VmcpConfig, VmcpLaunch};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::output;
use crate::serve::StopSignals;

/// Bound on stopping the proxy.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
#[command(after_help = "The gateway serves one /mcp in front of every MCP server registered with an \
    MCPServerRegistration (mcp.kuadrant.io, v1alpha1 or v1) whose HTTPRoute names the Gateway given \
    by --gateway in its parentRefs. Each server's tools are shown behind the registration's prefix as \
    written (prefix `kube_`: kube_namespaces_list) and a call reaches the server with its own name and \
    the headers x-mcp-servername (<route namespace>/<route name>), x-mcp-toolname and x-mcp-method. \
    The route's backend Service (ExternalName included) gives the server's URL, spec.path its path \
    (/mcp) and credentialRef a bearer token. Registrations, routes and Services are watched: a change \
    reaches open sessions as notifications/tools/list_changed, without a restart.\n\n\
    A registration that is not served (route not attached, not found, …) is named with its reason \
    in the log and at GET /status.\n\n\
    Not yet: AuthPolicy evaluation, per-caller tool lists, the Helm chart's gateway.enabled and an \
    in-cluster Deployment (run it on a host with --kubeconfig). See docs/gateway.md.\n\n\
    Example:\n  apiary gateway --kubeconfig ~/.kube/config --listen 127.0.0.1:8080")]
pub struct GatewayArgs {
    /// Address to serve /mcp and /status on (HOST:PORT; port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    listen: String,
    /// Kubeconfig of the cluster (default: the in-cluster config, else KUBECONFIG or ~/.kube/config)
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The Gateway whose routes are served
    #[arg(long, default_value = "gateway-system/mcp-gateway", value_name = "NAMESPACE/NAME")]
    gateway: String,
    /// Most client sessions at once (each holds its own backend sessions)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_sessions: u32,
}

/// `--gateway NAMESPACE/NAME`.
fn gateway_key(text: &str) -> anyhow::Result<Key> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Key { namespace: ns.to_owned(), name: name.to_owned() })
        }
        _ => bail!("--gateway {text:?} must be NAMESPACE/NAME"),
    }
}

/// The client for `kubeconfig`, or the inferred one (in-cluster, then KUBECONFIG).
async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context("no in-cluster config and no usable kubeconfig")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// The vMCP config serving `snapshot`: one backend per served registration, its prefix
/// literal, its route as the server name, its credential as a bearer.
fn vmcp_config(snapshot: &Snapshot) -> VmcpConfig {
    let backends = snapshot
        .backends
        .iter()
        .map(|b| StaticBackend {
            name: b.backend_name(),
            url: b.url.clone(),
            transport: "streamable-http".into(),
            tool_prefix: Some(b.prefix.clone()),
            server_name: Some(b.server_name()),
            headers: b.token.iter().map(|t| ("Authorization".to_owned(), format!("Bearer {t}"))).collect(),
            ..StaticBackend::default()
        })
        .collect();
    VmcpConfig {
        name: "gateway".into(),
        backends,
        operational: Some(Operational {
            failure_handling: Some(FailureHandling {
                circuit_breaker: Some(CircuitBreaker { enabled: true, ..CircuitBreaker::default() }),
                ..FailureHandling::default()
            }),
            ..Operational::default()
        }),
        ..VmcpConfig::default()
    }
}

/// `GET /status`: the Gateway, what is served and what is not (with why), and the backends'
/// health. Never shows a credential.
fn status(gateway: &Key, snapshot: &Snapshot, health: &HealthRegistry) -> Value {
    let served: Vec<Value> = snapshot
        .backends
        .iter()
        .map(|b| {
            json!({"registration": b.registration.to_string(), "route": b.route.to_string(),
                "serverName": b.server_name(), "url": b.url, "prefix": b.prefix, "backend": b.backend_name(),
                "credential": b.token.is_some()})
        })
        .collect();
    let skipped: Vec<Value> = snapshot
        .skipped
        .iter()
        .map(|s| json!({"registration": s.registration.to_string(), "reason": s.reason, "message": s.message}))
        .collect();
    json!({"gateway": gateway.to_string(), "synced": snapshot.synced, "servers": served, "notServed": skipped,
        "health": health.status_report()})
}

fn status_routes(gateway: Key, snapshots: watch::Receiver<Snapshot>, health: Arc<HealthRegistry>) -> axum::Router {
    let h2 = Arc::clone(&health);
    let answer = move || {
        let body = status(&gateway, &snapshots.borrow(), &health).to_string();
        async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
    };
    axum::Router::new().route("/status", get(answer)).route(
        "/api/backends/health",
        get(move || {
            let body = h2.health_report().to_string();
            async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
        }),
    )
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

/// `apiary gateway`: serves until SIGTERM or Ctrl-C.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let gateway = gateway_key(&args.gateway)?;
    let listen: SocketAddr =
        args.listen.parse().with_context(|| format!("--listen {:?} is not HOST:PORT", args.listen))?;
    let client = client(args.kubeconfig.as_ref()).await?;
    let limits = apiary_config::Limits::default();
    let launch = Arc::new(
        VmcpLaunch::new(
            &vmcp_config(&Snapshot::default()),
            InstanceLimits {
                max_line: usize::try_from(limits.max_line_bytes).unwrap_or(usize::MAX),
                ..InstanceLimits::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let run_config = RunConfig::builder("gateway", Source::command("apiary", ["gateway"]))
        .proxy_host(listen.ip().to_string())
        .proxy_port(listen.port())
        .stdio_mode(StdioMode::PerSession)
        .max_session_children(args.max_sessions)
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (tx, rx) = watch::channel(Snapshot::default());
    let mut signals = StopSignals::install()?;
    let launcher: Arc<dyn Launch> = Arc::clone(&launch) as Arc<dyn Launch>;
    let routes = status_routes(gateway.clone(), rx.clone(), launch.health());
    let handle = apiary_proxy::start_with_routes(run_config, Some(launcher), routes)
        .await
        .context("the gateway could not start")?;
    let token = handle.shutdown_token();
    launch.spawn_health_checks(token.clone());
    tokio::spawn(follow(Arc::clone(&launch), rx));
    tokio::spawn(gateway::run(client, gateway.clone(), tx, token.clone().cancelled_owned()));
    let url = handle.url();
    tracing::info!(%url, gateway = %gateway, "gateway serving");
    output::emit_line(&url);
    tokio::select! {
        sig = signals.recv() => tracing::info!(signal = sig, "stopping"),
        () = token.cancelled() => {}
    }
    if tokio::time::timeout(SHUTDOWN_LIMIT, handle.shutdown()).await.is_err() {
        tracing::warn!("the gateway did not stop within {} s; exiting anyway", SHUTDOWN_LIMIT.as_secs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use apiary_operator::gateway::{Backend, Skipped};

    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            backends: vec![Backend {
                registration: key("mcp-test", "kubernetes-mcp-server"),
                route: key("mcp-test", "kubernetes-mcp"),
                url: "http://localhost:9999/mcp".into(),
                prefix: "kube_".into(),
                token: Some("s3cret".into()),
            }],
            skipped: vec![Skipped {
                registration: key("other", "r"),
                reason: "NotAttached",
                message: "HTTPRoute other/r has no parentRef to Gateway gateway-system/mcp-gateway".into(),
            }],
            synced: true,
        }
    }

    #[test]
    fn a_snapshot_becomes_a_valid_vmcp_config_with_the_gateway_fields() {
        let c = vmcp_config(&snapshot());
        c.validate().unwrap();
        let b = &c.backends[0];
        assert_eq!(b.name, "mcp-test.kubernetes-mcp-server");
        assert_eq!(b.tool_prefix.as_deref(), Some("kube_"));
        assert_eq!(b.server_name.as_deref(), Some("mcp-test/kubernetes-mcp"));
        assert_eq!(b.headers.get("Authorization").map(String::as_str), Some("Bearer s3cret"));
        assert!(vmcp_config(&Snapshot::default()).backends.is_empty());
    }

    #[test]
    fn status_lists_served_and_skipped_without_the_credential() {
        let s = status(&key("gateway-system", "mcp-gateway"), &snapshot(), &HealthRegistry::default());
        assert_eq!(s["gateway"], "gateway-system/mcp-gateway");
        assert_eq!(s["servers"][0]["serverName"], "mcp-test/kubernetes-mcp");
        assert_eq!(s["servers"][0]["credential"], true);
        assert_eq!(s["notServed"][0]["reason"], "NotAttached");
        assert!(!s.to_string().contains("s3cret"), "{s}");
    }

    #[test]
    fn the_gateway_flag_is_namespace_slash_name() {
        assert_eq!(gateway_key("gateway-system/mcp-gateway").unwrap(), key("gateway-system", "mcp-gateway"));
        for bad in ["mcp-gateway", "/x", "x/", "a/b/c"] {
            assert!(gateway_key(bad).is_err(), "{bad}");
        }
    }
}
