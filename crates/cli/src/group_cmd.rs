//! `apiary group create|list|rm`: named sets of workloads (ToolHive's `thv group`). A workload
//! joins one with `apiary run --group G`; `list`, `stop`, `rm`, `start` and `restart` take `-g G`.

use anyhow::bail;
use apiary_runtime::groups::DEFAULT_GROUP;
use apiary_runtime::state::StateDir;

use crate::output::{self, Format};
use crate::workload_cmds;

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create a group (then: apiary run --group NAME …)
    Create {
        /// Group name (same rules as workload names)
        name: String,
    },
    /// List groups with how many workloads each holds
    #[command(visible_alias = "ls")]
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove a group; refused while workloads are in it unless --with-workloads
    #[command(visible_alias = "delete")]
    Rm {
        /// Group to remove (not `default`)
        name: String,
        /// Also stop and remove every workload in the group
        #[arg(long)]
        with_workloads: bool,
    },
}

/// `apiary group`.
pub fn group(args: GroupArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    match args.command {
        GroupCommand::Create { name } => {
            state.create_group(&name)?;
            output::emit_line(&format!("Group {name:?} created"));
            Ok(())
        }
        GroupCommand::List { format } => list(&state, format),
        GroupCommand::Rm { name, with_workloads } => rm(&state, &name, with_workloads),
    }
}

fn list(state: &StateDir, format: Format) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for g in state.groups()? {
        let count = state.workloads_in_group(&g.name)?.len();
        rows.push((g, count));
    }
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(g, n)| serde_json::json!({ "name": g.name, "workloads": n, "createdAt": g.created_at }))
                .collect();
            output::print_json(&serde_json::Value::Array(v));
        }
        Format::Text => {
            let table: Vec<Vec<String>> =
                rows.iter().map(|(g, n)| vec![g.name.clone(), n.to_string(), g.created_at.clone()]).collect();
            output::emit(&output::table(&["NAME", "WORKLOADS", "CREATED"], &table));
        }
    }
    Ok(())
}

fn rm(state: &StateDir, name: &str, with_workloads: bool) -> anyhow::Result<()> {
    // Validates the name and refuses `default` before looking at workloads.
    if name == DEFAULT_GROUP {
        return Err(apiary_runtime::groups::GroupError::Default.into());
    }
    state.load_group(name)?;
    let members = state.workloads_in_group(name)?;
    if !members.is_empty() {
        if !with_workloads {
            bail!(
                "group {name:?} still holds {} workload(s) ({}); remove them first or use: apiary group rm {name} --with-workloads",
                members.len(),
                members.join(", ")
            );
        }
        workload_cmds::remove_workloads(state, &members)?;
    }
    state.remove_group(name)?;
    output::emit_line(&format!("Group {name:?} removed"));
    Ok(())
}
