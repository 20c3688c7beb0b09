//! Commands about saved workloads: `list`, `status`, `stop`, `rm`, `start`/`restart` (by name, or
//! a whole group with `-g`), and the name → URL lookup `apiary mcp --server NAME` uses.

use std::time::Duration;

use anyhow::{Context, bail};
use apiary_runtime::pid::{ProcRef, wait_until};
use apiary_runtime::state::{KubeWorkload, StateDir, StateError, WorkloadRecord, WorkloadState};
use rustix::process::Signal;

use crate::output::{self, Format};
use crate::{detach, run_cmd, serve};

/// Time a child group gets between SIGTERM and SIGKILL in the sweep after its proxy is gone.
const CHILD_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Also show workloads that are not running
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only workloads in this group
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Workload name
    pub name: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Workloads to stop
    #[arg(required_unless_present_any = ["all", "group"], conflicts_with_all = ["all", "group"])]
    pub names: Vec<String>,
    /// Stop every running workload
    #[arg(short = 'a', long, conflicts_with = "group")]
    pub all: bool,
    /// Stop every running workload in this group
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Seconds to wait for a proxy to stop before it is killed
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Workloads to remove
    #[arg(required_unless_present_any = ["all", "group"], conflicts_with_all = ["all", "group"])]
    pub names: Vec<String>,
    /// Remove every workload
    #[arg(short = 'a', long, conflicts_with = "group")]
    pub all: bool,
    /// Remove every workload in this group (the group itself stays; see apiary group rm)
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Workload to start
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    pub name: Option<String>,
    /// Every workload in this group
    #[arg(short = 'g', long, value_name = "GROUP", conflicts_with = "foreground")]
    pub group: Option<String>,
    /// Stay in this terminal and serve until Ctrl-C
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub foreground: Option<bool>,
}

impl StartArgs {
    pub fn foreground(&self) -> bool {
        self.foreground.unwrap_or(false)
    }
}

/// `apiary list`.
pub fn list(args: ListArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let names = match &args.group {
        Some(g) => group_members(&state, g)?,
        None => state.names()?,
    };
    let mut records = Vec::new();
    for name in names {
        match state.observed_record(&name) {
            Ok(rec) if args.all || rec.state.is_active() => records.push(rec),
            Ok(_) | Err(StateError::NotFound(_)) => {}
            Err(e) => tracing::warn!(workload = name, error = %e, "skipping"),
        }
    }
    match args.format {
        Format::Json => output::print_json(&serde_json::to_value(&records)?),
        Format::Text if records.is_empty() => output::emit_line("No MCP servers found"),
        Format::Text => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.source.clone(),
                        r.state.to_string(),
                        r.url.clone().filter(|_| r.state.is_active()).unwrap_or_default(),
                        port_of(r),
                        r.group.clone(),
                        r.runtime().to_owned(),
                        r.started_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::emit(&output::table(
                &["NAME", "PACKAGE", "STATUS", "URL", "PORT", "GROUP", "RUNTIME", "CREATED"],
                &rows,
            ));
        }
    }
    Ok(())
}

fn port_of(rec: &WorkloadRecord) -> String {
    rec.listen_addr.as_deref().and_then(|a| a.rsplit_once(':')).map(|(_, p)| p.to_owned()).unwrap_or_default()
}

/// `apiary status`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let rec = state.observed_record(&args.name)?;
    match args.format {
        Format::Json => output::print_json(&serde_json::to_value(&rec)?),
        Format::Text => {
            let pid = rec.proxy.filter(|_| rec.state.is_active()).map(|p| p.pid);
            let children: Vec<String> = rec.children.iter().map(|c| c.pid.to_string()).collect();
            let isolation = state.load_config(&args.name).ok().map(|c| match &rec.container {
                Some(k) => crate::container_runtime::describe(&c, &k.engine),
                None => apiary_runtime::sandbox::describe(&c),
            });
            let next_restart = rec
                .next_restart
                .as_ref()
                .filter(|_| rec.state == WorkloadState::Restarting)
                .map(|n| format!("attempt {} at {} (backoff {} ms)", n.attempt, n.at, n.backoff_ms));
            let fields: [(&str, Option<String>); 15] = [
                ("Name", Some(rec.name.clone())),
                ("Status", Some(rec.state.to_string())),
                ("URL", rec.url.clone().filter(|_| rec.state.is_active())),
                ("Proxy PID", pid.map(|p| p.to_string())),
                ("Server PIDs", (!children.is_empty()).then(|| children.join(", "))),
                ("Transport", Some(rec.transport.clone())),
                ("Source", Some(rec.source.clone())),
                ("Group", Some(rec.group.clone())),
                ("Runtime", Some(rec.runtime().to_owned())),
                ("Isolation", isolation),
                ("Restarts", Some(rec.restarts.to_string())),
                ("Last exit", rec.last_exit.clone()),
                ("Next restart", next_restart),
                ("Started", rec.started_at.clone()),
                ("Error", rec.error.clone()),
            ];
            for (label, value) in fields {
                if let Some(v) = value {
                    output::emit_line(&format!("{:<12} {v}", format!("{label}:")));
                }
            }
        }
    }
    Ok(())
}

/// `apiary stop`.
pub fn stop(args: StopArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let timeout = Duration::from_secs(args.timeout);
    let names = match &args.group {
        Some(g) => {
            let members = group_members(&state, g)?;
            running_names(&state)?.into_iter().filter(|n| members.contains(n)).collect()
        }
        None if args.all => running_names(&state)?,
        None => args.names,
    };
    each(&names, |name| stop_workload(&state, name, timeout))
}

/// The workloads of an existing group; an unknown group is an error.
fn group_members(state: &StateDir, group: &str) -> anyhow::Result<Vec<String>> {
    state.load_group(group)?;
    Ok(state.workloads_in_group(group)?)
}

/// `apiary rm`.
pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let names = match &args.group {
        Some(g) => group_members(&state, g)?,
        None if args.all => state.names()?,
        None => args.names,
    };
    remove_workloads(&state, &names)
}

/// Stops and deletes each workload (carrying on past failures; the first one is returned).
pub fn remove_workloads(state: &StateDir, names: &[String]) -> anyhow::Result<()> {
    each(names, |name| {
        if state.load_record(name)?.is_none() && !state.has_config(name)? {
            return Err(StateError::NotFound(name.to_owned()).into());
        }
        let record = state.load_record(name)?;
        // The URL identifies the workload's entries in MCP clients' configs.
        let url = record.as_ref().and_then(|r| r.url.clone());
        let kube = record.and_then(|r| r.kubernetes);
        stop_workload(state, name, Duration::from_secs(30))?;
        if let Some(k) = &kube {
            on_cluster(delete(k)).with_context(|| format!("deleting StatefulSet {}/{}", k.namespace, k.statefulset))?;
        }
        state.remove(name)?;
        crate::client_cmd::workload_removed(state, name, url.as_deref());
        crate::remote_login::remove(state, name)?;
        Ok(())
    })
}

/// Runs a cluster call to completion from these synchronous commands (they run on the
/// multi-threaded runtime `main` builds).
fn on_cluster<T>(call: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(call))
}

async fn scale_down(k: &KubeWorkload) -> anyhow::Result<()> {
    let client = apiary_runtime::kubernetes::default_client().await?;
    apiary_runtime::kubernetes::scale_to_zero(&client, &k.namespace, &k.statefulset).await?;
    Ok(())
}

async fn delete(k: &KubeWorkload) -> anyhow::Result<()> {
    let client = apiary_runtime::kubernetes::default_client().await?;
    apiary_runtime::kubernetes::delete_server(&client, &k.namespace, &k.statefulset).await?;
    Ok(())
}

/// Runs `f` for every name, carrying on past failures, and fails with the first error.
fn each(names: &[String], mut f: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut first: Option<anyhow::Error> = None;
    for name in names {
        if let Err(e) = f(name) {
            if first.is_some() {
                eprintln!("error: {e:#}");
            } else {
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

fn running_names(state: &StateDir) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for name in state.names()? {
        if let Some(rec) = state.load_record(&name)?
            && rec.state.is_active()
        {
            out.push(name);
        }
    }
    Ok(out)
}

/// Stops a workload's proxy (SIGTERM, SIGKILL after `timeout`), then makes sure none of its server
/// processes remain, and records it as stopped. Stopping a stopped workload succeeds.
pub fn stop_workload(state: &StateDir, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let Some(rec) = state.load_record(name)? else {
        if state.has_config(name)? {
            return Ok(());
        }
        return Err(StateError::NotFound(name.to_owned()).into());
    };
    if let Some(proxy) = rec.proxy.filter(|p| rec.state.is_active() && p.is_alive()) {
        proxy.signal(Signal::TERM);
        if !wait_until(timeout, || !proxy.is_alive()) {
            tracing::warn!(workload = name, pid = proxy.pid, "the proxy did not stop in time; killing it");
            proxy.signal(Signal::KILL);
            wait_until(Duration::from_secs(5), || !proxy.is_alive());
        }
        if proxy.is_alive() {
            bail!("the proxy of {name:?} (pid {}) does not stop", proxy.pid);
        }
    }
    // The proxy may have recorded children after `rec` was read; sweep both lists.
    let after = state.load_record(name)?.unwrap_or_else(|| rec.clone());
    let mut children: Vec<ProcRef> = rec.children.clone();
    for c in &after.children {
        if !children.iter().any(|k| k.pid == c.pid) {
            children.push(*c);
        }
    }
    sweep(&children);
    if let Some(c) = &after.container {
        // A proxy that was killed could not remove its containers; they go here.
        let removed = on_cluster(async { Ok(crate::container_runtime::remove_leftovers(&c.engine, name).await) })?;
        if removed > 0 {
            tracing::info!(workload = name, containers = removed, "removed containers the proxy left");
        }
    }
    if let Some(k) = &after.kubernetes {
        // The proxy only detached from the pod; the server itself stops here.
        on_cluster(scale_down(k)).with_context(|| format!("stopping StatefulSet {}/{}", k.namespace, k.statefulset))?;
    }
    if after.state.is_active() {
        let mut stopped = after;
        stopped.mark_stopped();
        state.save_record(&stopped)?;
    }
    if let Some(left) = children.iter().find(|c| c.is_alive()) {
        bail!("server process {} of {name:?} is still running after SIGKILL", left.pid);
    }
    Ok(())
}

/// Stops whatever is left of the children's process groups: SIGTERM, then SIGKILL.
fn sweep(children: &[ProcRef]) {
    let live: Vec<&ProcRef> = children.iter().filter(|c| c.group_exists()).collect();
    if live.is_empty() {
        return;
    }
    for c in &live {
        c.signal_group(Signal::TERM);
    }
    if wait_until(CHILD_GRACE, || live.iter().all(|c| !c.group_exists())) {
        return;
    }
    for c in &live {
        c.signal_group(Signal::KILL);
    }
    wait_until(CHILD_GRACE, || live.iter().all(|c| !c.group_exists()));
}

/// `apiary start` / `apiary restart`.
pub async fn start(args: StartArgs, restart: bool, debug: bool) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    let foreground = args.foreground();
    let names = match (&args.group, args.name) {
        (Some(g), _) => group_members(&state, g)?,
        (None, Some(name)) => vec![name],
        (None, None) => bail!("give a workload name or -g GROUP"),
    };
    let mut first: Option<anyhow::Error> = None;
    for name in &names {
        match start_one(&state, name, restart, foreground, debug).await {
            // With -g several URLs print, so each says whose it is.
            Ok(Some(url)) if args.group.is_some() => output::emit_line(&format!("{name} {url}")),
            Ok(Some(url)) => output::emit_line(&url),
            Ok(None) => {}
            Err(e) if first.is_some() => eprintln!("error: {name}: {e:#}"),
            Err(e) if args.group.is_some() => first = Some(e.context(name.clone())),
            Err(e) => first = Some(e),
        }
    }
    first.map_or(Ok(()), Err)
}

/// Starts (or restarts) one workload; returns the URL to print, if any.
async fn start_one(
    state: &StateDir,
    name: &str,
    restart: bool,
    foreground: bool,
    debug: bool,
) -> anyhow::Result<Option<String>> {
    let mut config = state.load_config(name)?;
    let previous = state.load_record(name)?;
    // A workload that ran in a cluster starts there again, whatever this shell's environment says.
    let runtime = if previous.as_ref().is_some_and(|r| r.kubernetes.is_some()) {
        crate::k8s_runtime::RuntimeKind::Kubernetes
    } else {
        crate::k8s_runtime::select(None)?
    };
    if let Some(rec) = previous
        && rec.is_alive()
    {
        if !restart {
            return Ok(rec.url);
        }
        stop_workload(state, name, Duration::from_secs(30))?;
    }
    let before = (config.proxy.port, config.target_port);
    run_cmd::resolve_ports(&mut config)?;
    if before != (config.proxy.port, config.target_port) {
        state.save_config(&config)?;
    }
    // A saved remote login is resumed; an expired one is done again here, in the terminal.
    let session = crate::remote_login::session_path(state, name)?;
    crate::remote_login::ensure(&config, &session, crate::remote_login::Login::Resume, None).await?;
    if foreground {
        serve::serve_foreground_in(state, name, runtime, None).await?;
        Ok(None)
    } else {
        let url = detach::start_in(state, name, debug, runtime, None).await?;
        // A port chosen afresh, or a client registered while the workload was stopped.
        crate::client_cmd::workload_started(state, name, &config.group, &url);
        Ok(Some(url))
    }
}

/// `apiary mcp --server NAME`: the URL of a running workload.
pub fn resolve_url(name: &str) -> anyhow::Result<String> {
    let state = StateDir::from_env()?;
    let rec =
        state.observed_record(name).with_context(|| format!("--server {name:?} is neither a URL nor a workload"))?;
    match &rec.url {
        Some(url) if rec.state.is_active() && rec.state != WorkloadState::Stopping => Ok(url.clone()),
        _ => bail!("workload {name:?} is not running ({}); start it with: apiary start {name}", rec.state),
    }
}
