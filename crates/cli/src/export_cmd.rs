//! `apiary export NAME [PATH]`: writes a workload's saved RunConfig, the file `apiary run
//! --from-config` reads back.

use std::path::PathBuf;

use anyhow::{Context, bail};
use apiary_runtime::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Workload name
    pub name: String,
    /// File to write (YAML when it ends in .yaml or .yml, else JSON); standard output when left out
    pub path: Option<PathBuf>,
    /// What to write: the RunConfig (json), or a Kubernetes MCPServer manifest (k8s)
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
        bail!("--format k8s is not supported yet; use --format json");
    }
    match &args.path {
        Some(path) => config.write_atomic(path).with_context(|| format!("exporting {:?}", args.name))?,
        None => crate::output::emit(&config.to_json_pretty()?),
    }
    Ok(())
}
