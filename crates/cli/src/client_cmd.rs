//! `apiary client status|setup|register|remove|list-registered-clients` (ToolHive's `thv client`):
//! writes running workloads' URLs into MCP clients' config files, and keeps registered clients in
//! step as `run` adds workloads and `rm` removes them. Entries are named by workload name and
//! hold only the URL, never a secret.

use std::path::PathBuf;

use anyhow::{Context, bail};
use apiary_runtime::clients::edit::Outcome;
use apiary_runtime::clients::table::{self, CLIENTS, ClientSpec};
use apiary_runtime::groups::DEFAULT_GROUP;
use apiary_runtime::state::StateDir;

use crate::output::{self, Format};

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Show which MCP clients are installed and which are registered
    Status {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Register every installed client (non-interactive) for the default group
    Setup,
    /// Register a client: write running workloads into its config and keep it in sync
    Register {
        /// Client id (see: apiary client status)
        client: String,
        /// Groups whose workloads the client gets (repeatable; default: default)
        #[arg(long = "group", short = 'g')]
        groups: Vec<String>,
    },
    /// Unregister a client and take Apiary's entries out of its config
    Remove {
        /// Client id
        client: String,
    },
    /// List registered clients and their groups
    #[command(name = "list-registered-clients", visible_alias = "list-registered")]
    ListRegistered {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// `apiary client`.
pub fn client(args: ClientArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let home = home()?;
    match args.command {
        ClientCommand::Status { format } => status(&state, &home, format),
        ClientCommand::Setup => setup(&state, &home),
        ClientCommand::Register { client, groups } => {
            let spec = lookup(&client)?;
            let groups = if groups.is_empty() { vec![DEFAULT_GROUP.to_owned()] } else { groups };
            register(&state, &home, spec, &groups)
        }
        ClientCommand::Remove { client } => remove(&state, &home, lookup(&client)?),
        ClientCommand::ListRegistered { format } => list_registered(&state, format),
    }
}

fn home() -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => bail!("HOME is not set; cannot find MCP clients' config files"),
    }
}

fn lookup(id: &str) -> anyhow::Result<&'static ClientSpec> {
    if let Some(spec) = table::find(id) {
        return Ok(spec);
    }
    let ids: Vec<&str> = CLIENTS.iter().map(|c| c.id).collect();
    bail!("unknown client {id:?}; known clients: {}", ids.join(", "))
}

fn status(state: &StateDir, home: &std::path::Path, format: Format) -> anyhow::Result<()> {
    let registered = state.registered_clients()?;
    let rows: Vec<(&ClientSpec, bool, bool)> =
        CLIENTS.iter().map(|c| (c, c.installed(home), registered.iter().any(|r| r.client == c.id))).collect();
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(c, inst, reg)| {
                    serde_json::json!({
                        "client": c.id, "installed": inst, "registered": reg,
                        "config": c.config_path(home).to_string_lossy(),
                    })
                })
                .collect();
            output::print_json(&serde_json::Value::Array(v));
        }
        Format::Text => {
            let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(c, inst, reg)| {
                    vec![c.id.to_owned(), yes(*inst), yes(*reg), c.config_path(home).to_string_lossy().into_owned()]
                })
                .collect();
            output::emit(&output::table(&["CLIENT", "INSTALLED", "REGISTERED", "CONFIG"], &table));
        }
    }
    Ok(())
}

fn setup(state: &StateDir, home: &std::path::Path) -> anyhow::Result<()> {
    let installed: Vec<&ClientSpec> = CLIENTS.iter().filter(|c| c.installed(home)).collect();
    if installed.is_empty() {
        output::emit_line("No supported MCP client is installed; nothing to register");
        return Ok(());
    }
    let ids: Vec<&str> = installed.iter().map(|c| c.id).collect();
    output::emit_line(&format!(
        "Non-interactive setup: registering every installed client for group {DEFAULT_GROUP:?}: {}",
        ids.join(", ")
    ));
    let groups = [DEFAULT_GROUP.to_owned()];
    let mut first_err = None;
    for spec in installed {
        if let Err(e) = register(state, home, spec, &groups) {
            eprintln!("warning: {}: {e:#}", spec.id);
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Running workloads of `groups` with their URLs, sorted by name.
fn running_in(state: &StateDir, groups: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in state.names()? {
        if let Some(rec) = state.load_record(&name)?
            && rec.state.is_active()
            && groups.contains(&rec.group)
            && let Some(url) = rec.url
        {
            out.push((name, url));
        }
    }
    Ok(out)
}

fn register(state: &StateDir, home: &std::path::Path, spec: &ClientSpec, groups: &[String]) -> anyhow::Result<()> {
    for g in groups {
        if !state.group_exists(g)? {
            return Err(apiary_runtime::groups::GroupError::NotFound(g.clone()).into());
        }
    }
    let _lock = state.lock_clients()?;
    let path = spec.config_path(home);
    let workloads = running_in(state, groups)?;
    // Written before the registration is saved: a config Apiary cannot edit registers nothing.
    for (name, url) in &workloads {
        apiary_runtime::clients::upsert(spec, &path, name, url)
            .with_context(|| format!("writing workload {name:?} into {}'s config", spec.id))?;
    }
    state.register_client(spec.id, groups)?;
    output::emit_line(&format!(
        "Registered client {} (groups: {}); {} running workload(s) written to {}",
        spec.id,
        groups.join(", "),
        workloads.len(),
        path.display()
    ));
    Ok(())
}

fn remove(state: &StateDir, home: &std::path::Path, spec: &ClientSpec) -> anyhow::Result<()> {
    let _lock = state.lock_clients()?;
    if !state.registered_clients()?.iter().any(|r| r.client == spec.id) {
        bail!("client {} is not registered (see: apiary client list-registered-clients)", spec.id);
    }
    let path = spec.config_path(home);
    let mut removed = 0;
    for name in state.names()? {
        let url = state.load_record(&name)?.and_then(|r| r.url);
        if apiary_runtime::clients::remove(spec, &path, &name, url.as_deref())? == Outcome::Changed {
            removed += 1;
        }
    }
    state.unregister_client(spec.id)?;
    output::emit_line(&format!("Removed client {}; {removed} entr(ies) taken out of {}", spec.id, path.display()));
    Ok(())
}

fn list_registered(state: &StateDir, format: Format) -> anyhow::Result<()> {
    let all = state.registered_clients()?;
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> =
                all.iter().map(|r| serde_json::json!({ "client": r.client, "groups": r.groups })).collect();
            output::print_json(&serde_json::Value::Array(v));
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = all.iter().map(|r| vec![r.client.clone(), r.groups.join(",")]).collect();
            output::emit(&output::table(&["CLIENT", "GROUPS"], &rows));
        }
    }
    Ok(())
}

/// Writes a just-started workload into every registered client that wants its group. A
/// failure warns; it never fails the run.
pub fn workload_started(state: &StateDir, name: &str, group: &str, url: &str) {
    each_registered(state, |spec, home, reg| {
        if reg.wants(group) {
            apiary_runtime::clients::upsert(spec, &spec.config_path(home), name, url)?;
        }
        Ok(())
    });
}

/// Takes a removed workload out of every registered client (only entries pointing at its `url`,
/// when known). A failure warns.
pub fn workload_removed(state: &StateDir, name: &str, url: Option<&str>) {
    each_registered(state, |spec, home, _| {
        apiary_runtime::clients::remove(spec, &spec.config_path(home), name, url)?;
        Ok(())
    });
}

fn each_registered(
    state: &StateDir,
    mut f: impl FnMut(&ClientSpec, &std::path::Path, &apiary_runtime::clients::Registration) -> anyhow::Result<()>,
) {
    // Most installations register no client: look before taking (and creating) the lock.
    if state.registered_clients().is_ok_and(|r| r.is_empty()) {
        return;
    }
    let _lock = match state.lock_clients() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: not updating MCP clients: {e}");
            return;
        }
    };
    let registered = match state.registered_clients() {
        Ok(r) if r.is_empty() => return,
        Ok(r) => r,
        Err(e) => {
            eprintln!("warning: cannot read registered MCP clients: {e}");
            return;
        }
    };
    let home = match home() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("warning: not updating MCP clients: {e:#}");
            return;
        }
    };
    for reg in &registered {
        let Some(spec) = table::find(&reg.client) else {
            eprintln!("warning: registered client {:?} is not known to this apiary; skipped", reg.client);
            continue;
        };
        if let Err(e) = f(spec, &home, reg) {
            eprintln!("warning: not updating MCP client {}: {e:#}", spec.id);
        }
    }
}
