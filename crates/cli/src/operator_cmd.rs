//! `apiary operator`: the Kubernetes operator process (what the operator Deployment runs), with
//! ToolHive's flags and environment (`WATCH_NAMESPACE`, `POD_NAMESPACE`, `TOOLHIVE_RUNNER_IMAGE`).

use std::net::SocketAddr;

use anyhow::Context as _;
use apiary_operator::manager::{self, ManagerConfig};

#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// Address of the Prometheus /metrics endpoint
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub metrics_bind_address: String,
    /// Address of the /healthz and /readyz probes
    #[arg(long, default_value = "0.0.0.0:8081", value_name = "ADDR")]
    pub health_probe_bind_address: String,
    /// Hold Lease toolhive-operator-leader-election in POD_NAMESPACE before reconciling
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
}

/// ToolHive writes `:8080`; accept that as "all interfaces".
fn addr(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    let full = if value.starts_with(':') { format!("0.0.0.0{value}") } else { value.to_string() };
    full.parse().with_context(|| format!("--{flag} {value:?} is not HOST:PORT"))
}

/// `apiary operator`: runs until SIGTERM or Ctrl-C.
pub async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let metrics = addr("metrics-bind-address", &args.metrics_bind_address)?;
    let health = addr("health-probe-bind-address", &args.health_probe_bind_address)?;
    let config = ManagerConfig::from_env(args.leader_elect, metrics, health);
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    manager::run(config, shutdown).await?;
    Ok(())
}
