//! `apiary gateway`: seed 004's MCP gateway. Every MCPServerRegistration whose HTTPRoute
//! attaches to the served Gateway becomes a backend of one aggregated `/mcp` (the vMCP behind
//! the proxy's own front), its tools shown behind the registration's literal prefix and calls
//! routed with the `x-mcp-*` headers. The registrations are followed live
//! (`apiary_operator::gateway`): each change is applied with the vMCP's reload, so open
//! sessions get `list_changed` and no restart is needed.
//!
//! What is served (the vMCP, the middleware deciding each route's AuthPolicy, `/status`) is
//! `apiary_gateway::serve`; this command adds the flags, the Kubernetes client and the watches.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use apiary_authpolicy::{CacheLimits, CompiledPolicy, LoadError, OidcEnforcer, OidcVerifier, ReqwestFetcher};
use apiary_gateway::GatewayOptions;
use apiary_operator::gateway::policies::PolicySink;
use apiary_operator::gateway::{self, Snapshot};
use apiary_operator::registration::route::Key;
use apiary_policy::authn::AuthnOptions;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::output;
use crate::serve::StopSignals;

/// Bound on stopping the proxy.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// Bound on the first read of the cluster's AuthPolicies, before which nothing is served.
const POLICY_SYNC_LIMIT: Duration = Duration::from_secs(120);

/// The enforcer as the policies watch's sink, telling the command when the first pass is done.
struct SyncedSink {
    enforcer: Arc<OidcEnforcer>,
    synced: watch::Sender<bool>,
}

impl PolicySink for SyncedSink {
    fn set(&self, route: &str, policy: Result<CompiledPolicy, LoadError>) {
        self.enforcer.set_policy(route, policy);
    }

    fn remove(&self, route: &str) {
        self.enforcer.remove_policy(route);
    }

    fn synced(&self) {
        let _ = self.synced.send(true);
    }
}

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
    An AuthPolicy (kuadrant.io/v1) targeting a served HTTPRoute decides every tools/call routed to it \
    (its 401/403 answered as the policy writes them; 503 while the policy cannot be evaluated), sets \
    its response headers (the exchanged Authorization) on the call, and tools/list shows a caller only \
    the tools that policy would let it call. The caller's own Authorization never reaches a server.\n\n\
    The AuthPolicies and the Secrets they name are read from the cluster and followed; nothing is \
    served until they have been read once, so no route is ever served without its policy. In a \
    cluster, the Helm chart runs this command when gateway.enabled is true. See docs/gateway.md.\n\n\
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
    /// Most client sessions at once (each holds its own backend sessions; at most 16384)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=i64::from(apiary_config::MAX_SESSION_CHILDREN)))]
    max_sessions: u32,
    /// Accept AuthPolicy issuers (jwt.issuerUrl) on plain http:// (tests and local Keycloaks only)
    #[arg(long)]
    allow_http_issuers: bool,
    /// PEM file of CA certificates trusted, beside the system's, for AuthPolicy issuers (discovery,
    /// JWKS) and their metadata calls (the token exchange): an IdP with a private CA
    #[arg(long, value_name = "FILE")]
    issuer_ca: Option<PathBuf>,
}

/// The certificates of `--issuer-ca` (none without it).
fn issuer_roots(path: Option<&PathBuf>) -> anyhow::Result<Vec<apiary_authpolicy::Certificate>> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let pem = std::fs::read(path).with_context(|| format!("reading --issuer-ca {}", path.display()))?;
    apiary_authpolicy::pem_roots(&pem).with_context(|| format!("--issuer-ca {}", path.display()))
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

/// `apiary gateway`: serves until SIGTERM or Ctrl-C.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let gateway = gateway_key(&args.gateway)?;
    let listen: SocketAddr =
        args.listen.parse().with_context(|| format!("--listen {:?} is not HOST:PORT", args.listen))?;
    let client = client(args.kubeconfig.as_ref()).await?;
    let roots = issuer_roots(args.issuer_ca.as_ref())?;
    let fetcher = ReqwestFetcher::with_extra_roots(roots.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let authn = AuthnOptions { extra_roots: roots, ..AuthnOptions::default() };
    let verifier = OidcVerifier::new(authn, args.allow_http_issuers);
    let enforcer = Arc::new(OidcEnforcer::new(verifier, fetcher, CacheLimits::default()));
    let mut signals = StopSignals::install()?;
    // The cluster's AuthPolicies go into the enforcer before anything is served: a route must
    // never be reachable without the policy that protects it.
    let stop = CancellationToken::new();
    let (synced_tx, mut synced) = watch::channel(false);
    let sink: Arc<dyn PolicySink> = Arc::new(SyncedSink { enforcer: Arc::clone(&enforcer), synced: synced_tx });
    tokio::spawn(gateway::policies::run(client.clone(), sink, stop.clone().cancelled_owned()));
    tokio::select! {
        read = tokio::time::timeout(POLICY_SYNC_LIMIT, synced.wait_for(|s| *s)) => {
            if !matches!(read, Ok(Ok(_))) {
                stop.cancel();
                bail!("the cluster's AuthPolicies could not be read within {} s; nothing is served without them \
                    (see the log for the apiserver's answer)", POLICY_SYNC_LIMIT.as_secs());
            }
        }
        sig = signals.recv() => {
            stop.cancel();
            tracing::info!(signal = sig, "stopping before serving");
            return Ok(());
        }
    }
    let (tx, rx) = watch::channel(Snapshot::default());
    let options = GatewayOptions { listen, max_sessions: args.max_sessions, gateway: gateway.clone() };
    let handle = match apiary_gateway::serve(options, rx, Arc::clone(&enforcer)).await {
        Ok(h) => h,
        Err(e) => {
            stop.cancel();
            return Err(anyhow::Error::new(e).context("the gateway could not start"));
        }
    };
    let token = handle.shutdown_token();
    tokio::spawn(gateway::run(client, gateway.clone(), tx, token.clone().cancelled_owned()));
    drop(enforcer);
    let url = handle.url();
    tracing::info!(%url, gateway = %gateway, "gateway serving");
    output::emit_line(&url);
    tokio::select! {
        sig = signals.recv() => tracing::info!(signal = sig, "stopping"),
        () = token.cancelled() => {}
    }
    stop.cancel();
    if tokio::time::timeout(SHUTDOWN_LIMIT, handle.shutdown()).await.is_err() {
        tracing::warn!("the gateway did not stop within {} s; exiting anyway", SHUTDOWN_LIMIT.as_secs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn the_gateway_flag_is_namespace_slash_name() {
        assert_eq!(gateway_key("gateway-system/mcp-gateway").unwrap(), key("gateway-system", "mcp-gateway"));
        for bad in ["mcp-gateway", "/x", "x/", "a/b/c"] {
            assert!(gateway_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_issuer_ca_must_hold_a_certificate() {
        assert!(issuer_roots(None).unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(issuer_roots(Some(&empty)).is_err());
        assert!(issuer_roots(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
