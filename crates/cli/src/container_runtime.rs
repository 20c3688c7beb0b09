//! The container runtime's wiring for `apiary run IMAGE` on this machine: the launcher (engine
//! found from `DOCKER_HOST` or the usual sockets, server stderr into the workload's log, image
//! made present before the proxy reports the workload started, `--secret` values read from the
//! secrets provider into the server's environment), the removal of containers a killed proxy
//! left behind, and the line `apiary status` shows.

use std::sync::Arc;

use anyhow::Context;
use apiary_config::{NetworkAccess, RunConfig};
use apiary_runtime::container::{ContainerLauncher, remove_workload_containers};
use apiary_runtime::log::{DEFAULT_LOG_CAP, LogFile};
use apiary_runtime::secrets::{SecretsDir, SecretsEnv};
use apiary_runtime::state::StateDir;
use apiary_transport::launch::Launch;

/// The launcher for an image workload, and the endpoint of the engine it uses.
pub async fn launcher(state: &StateDir, config: &RunConfig) -> anyhow::Result<(Arc<dyn Launch>, String)> {
    let log = LogFile::open(state.log_path(&config.name)?, DEFAULT_LOG_CAP).context("opening the server log")?;
    // A restart from another shell finds the engine the workload ran in before.
    let previous = state.load_record(&config.name)?.and_then(|r| r.container).map(|c| c.engine);
    let mut launcher = ContainerLauncher::for_run_config(config, previous.as_deref())
        .await
        .with_context(|| format!("workload {:?}", config.name))?
        .stderr_to(Arc::new(log));
    if apiary_runtime::inbound::needs_socket(config, true) {
        // An HTTP server without network: nothing published, the proxy comes in through this.
        launcher = launcher.reached_through(state.upstream_socket_path(&config.name)?);
    }
    if !config.secrets.is_empty() {
        // Read at every start, never saved: the RunConfig holds the names only.
        let secrets = SecretsDir::in_state(state)
            .open(&SecretsEnv::from_process())
            .with_context(|| format!("reading the secrets of workload {:?}", config.name))?;
        for (target, value) in secrets.resolve(&config.secrets)? {
            launcher = launcher.secret_env(&target, value.as_str());
        }
    }
    let left = launcher.remove_leftovers().await?;
    if left > 0 {
        tracing::warn!(workload = config.name, containers = left, "removed containers left by an earlier run");
    }
    launcher.ensure_image().await?;
    let engine = launcher.endpoint().to_owned();
    tracing::info!(workload = config.name, engine, "{}", launcher.describe());
    Ok((Arc::new(launcher), engine))
}

/// Removes every container of `workload` still on `engine`; a failure is logged, not returned
/// (the caller is stopping anyway and has nothing better to do with it).
pub async fn remove_leftovers(engine: &str, workload: &str) -> usize {
    match remove_workload_containers(engine, workload).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(workload, engine, error = %e, "cannot remove the workload's containers");
            0
        }
    }
}

/// What `apiary status` shows as the isolation of an image workload on this machine.
pub fn describe(config: &RunConfig, engine: &str) -> String {
    let profile = config.permission_profile.name.as_deref().unwrap_or("custom");
    let network = match config.permission_profile.network_access() {
        NetworkAccess::None => "no network",
        NetworkAccess::All => "default network",
        NetworkAccess::AllowList => "allow-list through the egress proxy",
    };
    format!(
        "container via {engine} (profile {profile}: {network}; all capabilities dropped, no-new-privileges, read-only root, memory/pids/cpu limits)"
    )
}
