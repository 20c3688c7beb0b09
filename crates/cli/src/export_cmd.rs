//! `apiary export NAME [PATH]`: writes a workload's saved RunConfig, the file `apiary run
//! --from-config` reads back, or (`--format k8s`) the manifests that run the same server behind
//! the same protections under the operator.

use std::path::{Path, PathBuf};

use anyhow::Context;
use apiary_config::RunConfig;
use apiary_runtime::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Workload name
    pub name: String,
    /// File to write (YAML when it ends in .yaml or .yml, else JSON); standard output when left out
    pub path: Option<PathBuf>,
    /// What to write: the RunConfig (json), or Kubernetes manifests (k8s): an MCPServer for an
    /// image, an MCPRemoteProxy for a remote URL, with the MCPOIDCConfig, MCPToolConfig and
    /// ConfigMaps its protections need (package and command workloads have no image to export)
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    pub format: ExportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    K8s,
}

/// `apiary export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let config = state.load_config(&args.name)?;
    if args.format == ExportFormat::K8s {
        return export_k8s(&config, args.path.as_deref());
    }
    match &args.path {
        Some(path) => config.write_atomic(path).with_context(|| format!("exporting {:?}", args.name))?,
        None => crate::output::emit(&config.to_json_pretty()?),
    }
    Ok(())
}

/// `--format k8s`: the manifests as one YAML stream; what is left to do by hand on stderr.
fn export_k8s(config: &RunConfig, path: Option<&Path>) -> anyhow::Result<()> {
    let manifests = apiary_operator::export::export(config)?;
    let yaml = manifests.to_yaml().context("rendering the manifests as YAML")?;
    match path {
        Some(path) => apiary_runtime::state::write_atomic(path, yaml.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => crate::output::emit(&yaml),
    }
    for note in &manifests.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}
