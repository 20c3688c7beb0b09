//! `apiary proxyrunner run`: what the operator's proxy Deployment runs (ToolHive's
//! `thv-proxyrunner run`). It reads the RunConfig the operator mounted from ConfigMap
//! `<name>-runconfig`, creates the MCP server's StatefulSet `<name>` (and, for HTTP servers,
//! Services `mcp-<name>` and `mcp-<name>-headless`) in its own namespace, keeps them applied,
//! and serves the proxy on `proxy.host:proxy.port` until SIGTERM.
//!
//! A remote source needs no objects: the runner is then a reverse proxy to the URL
//! (MCPRemoteProxy).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use apiary_config::{RunConfig, Source};
use apiary_runtime::kubernetes::{StatefulSetLauncher, default_client};

/// How often the runner re-applies its objects: a deleted StatefulSet or Service comes back
/// within this. An unchanged server-side apply writes nothing, so this costs no rollouts.
const KEEP_APPLIED_EVERY: Duration = Duration::from_secs(10);

/// Where the operator mounts the RunConfig.
const DEFAULT_CONFIG: &str = "/etc/runconfig/runconfig.json";

#[derive(Debug, clap::Args)]
pub struct ProxyRunnerArgs {
    #[command(subcommand)]
    pub command: ProxyRunnerCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProxyRunnerCommand {
    /// Create the MCP server's StatefulSet from a RunConfig and proxy it until SIGTERM
    Run(RunnerArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunnerArgs {
    /// RunConfig file (JSON or YAML), as mounted from ConfigMap <name>-runconfig
    #[arg(long, default_value = DEFAULT_CONFIG, value_name = "PATH")]
    pub config: PathBuf,
    /// JSON PodTemplateSpec merged into the server's StatefulSet pod (containers, env and
    /// volumes merge by name; container `mcp` is the server). Repeatable: later ones win
    #[arg(long = "k8s-pod-patch", value_name = "JSON")]
    pub pod_patch: Vec<String>,
    /// JSON ownerReference put on the StatefulSet and Services, so deleting the owner removes them
    #[arg(long = "k8s-owner-ref", value_name = "JSON")]
    pub owner_ref: Option<String>,
    /// Image to run, overriding the RunConfig's (ToolHive passes it here)
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
}

/// `apiary proxyrunner …`.
pub async fn proxyrunner(args: ProxyRunnerArgs) -> anyhow::Result<()> {
    match args.command {
        ProxyRunnerCommand::Run(run) => run_runner(run).await,
    }
}

async fn run_runner(args: RunnerArgs) -> anyhow::Result<()> {
    let mut config = RunConfig::from_path(&args.config)
        .with_context(|| format!("cannot use the RunConfig {}", args.config.display()))?;
    let pod_patches: Vec<serde_json::Value> = args
        .pod_patch
        .iter()
        .filter_map(|p| parse_json("--k8s-pod-patch", Some(p)).transpose())
        .collect::<anyhow::Result<_>>()?;
    let owner = parse_json("--k8s-owner-ref", args.owner_ref.as_deref())?;
    if let Some(image) = args.image.filter(|i| !i.is_empty()) {
        match &mut config.source {
            Source::Image(source) => source.reference = image,
            other => bail!("IMAGE {image:?} given, but the RunConfig's source is a {} source", other.kind()),
        }
    }
    match &config.source {
        Source::Remote(_) => return crate::serve::run_standalone(config, None).await,
        Source::Image(_) => {}
        other => {
            bail!("the proxy runner runs images and remote URLs; the RunConfig's source is a {} source", other.kind())
        }
    }

    let client = default_client().await?;
    let namespace = crate::k8s_runtime::namespace();
    let mut launcher = StatefulSetLauncher::for_run_config(client, namespace, &config)?;
    for patch in pod_patches {
        launcher = launcher.pod_patch(patch)?;
    }
    if let Some(owner) = owner {
        launcher = launcher.owner(owner);
    }
    if config.effective_transport().is_http() {
        launcher = launcher.http(config.target_port);
    }
    // Create the objects now, not at the first session: `kubectl get statefulset` shows the
    // server as soon as the MCPServer does, and a bad pod patch fails here, loudly.
    launcher.apply().await.context("cannot create the MCP server's StatefulSet")?;
    launcher.remove_http_services().await?;
    tracing::info!(
        statefulset = %launcher.spec().name,
        namespace = %launcher.namespace(),
        image = %launcher.spec().image,
        "server StatefulSet applied"
    );
    let keeper = tokio::spawn(keep_applied(launcher.clone()));
    let result = crate::serve::run_standalone(config, Some(Arc::new(launcher))).await;
    keeper.abort();
    result
}

/// Re-applies the StatefulSet and Services every [`KEEP_APPLIED_EVERY`], so one deleted by hand
/// comes back even while no session is attached; a stdio server's leftover HTTP Services go.
async fn keep_applied(launcher: StatefulSetLauncher) {
    let mut tick = tokio::time::interval(KEEP_APPLIED_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = launcher.apply().await {
            tracing::warn!(error = %e, "cannot re-apply the server's StatefulSet");
        }
        // Also here, not only at start: a runner of the former HTTP transport may have been
        // re-applying its Services while this one started.
        if let Err(e) = launcher.remove_http_services().await {
            tracing::warn!(error = %e, "cannot remove the server's former Services");
        }
    }
}

fn parse_json(flag: &str, text: Option<&str>) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| format!("{flag} is not JSON"))?;
    if !value.is_object() {
        bail!("{flag} must be a JSON object");
    }
    Ok(Some(value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::parse_json;

    #[test]
    fn flag_json_must_be_an_object_and_blank_means_none() {
        assert!(parse_json("--k8s-pod-patch", None).unwrap().is_none());
        assert!(parse_json("--k8s-pod-patch", Some("  ")).unwrap().is_none());
        assert!(parse_json("--k8s-pod-patch", Some(r#"{"spec":{}}"#)).unwrap().is_some());
        let err = format!("{:#}", parse_json("--k8s-pod-patch", Some("[1]")).unwrap_err());
        assert!(err.contains("--k8s-pod-patch must be a JSON object"), "{err}");
        let err = format!("{:#}", parse_json("--k8s-owner-ref", Some("{")).unwrap_err());
        assert!(err.contains("--k8s-owner-ref is not JSON"), "{err}");
    }
}
