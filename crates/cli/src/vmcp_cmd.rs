//! `apiary vmcp serve|validate|init`: the virtual MCP server (ToolHive's `thv vmcp`). It
//! aggregates many MCP servers behind one `/mcp`, served by the proxy's own front; the
//! aggregation itself lives in `apiary-vmcp`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use apiary_config::{AuthMode, PolicyConfig, RunConfig, Source, StdioMode};
use apiary_policy::authn::{Authenticator, AuthnOptions};
use apiary_policy::authz::Authorizer;
use apiary_runtime::state::{StateDir, WorkloadState};
use apiary_transport::launch::Launch;
use apiary_vmcp::config::{CircuitBreaker, FailureHandling, IncomingPolicy, Operational, StaticBackend};
use apiary_vmcp::{InstanceLimits, VmcpConfig, VmcpLaunch};

use crate::output;
use crate::serve::StopSignals;

/// ToolHive's vMCP port.
const DEFAULT_PORT: u16 = 4483;
/// Bound on stopping the proxy.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
#[command(after_help = "A vMCP aggregates the tools, resources and prompts of many MCP servers \
    behind one endpoint served by the proxy's front. Each client session gets its own backend \
    sessions, opened lazily and closed with it. Name clashes are settled by \
    aggregation.conflictResolution: prefix (default, `{workload}_`), priority or manual.\n\n\
    Examples:\n  \
    apiary vmcp serve --group team            (every running workload of the group)\n  \
    apiary vmcp init -g team -o vmcp.yaml     (the same as a file to edit)\n  \
    apiary vmcp validate --config vmcp.yaml\n  \
    apiary vmcp serve --config vmcp.yaml\n\n\
    Backend health: GET /status and /api/backends/health on the vMCP's port. \
    Config reference: docs/vmcp.md.")]
pub struct VmcpArgs {
    #[command(subcommand)]
    pub command: VmcpCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum VmcpCommand {
    /// Serve the vMCP at http://HOST:PORT/mcp until stopped (Ctrl-C)
    Serve(Box<ServeArgs>),
    /// Check a vMCP config file; errors name the field path
    Validate {
        /// ToolHive vMCP config file (YAML or JSON)
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Write a vMCP config for the running workloads of a group
    Init {
        /// The group whose running workloads become backends
        #[arg(long, short = 'g')]
        group: String,
        /// Where to write it (default: standard output)
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// ToolHive vMCP config file (YAML or JSON) with static `backends`
    #[arg(long, short = 'c', conflicts_with = "group", required_unless_present = "group")]
    config: Option<PathBuf>,
    /// Quick mode: every running workload of this `apiary group` is a backend (loopback only)
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Most client sessions at once (each holds its own backend sessions; at most 16384)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=i64::from(apiary_config::MAX_SESSION_CHILDREN)))]
    max_sessions: u32,
    /// How long a client session may stay idle before it ends with its backend sessions
    /// (e.g. `30m`, `2h`; a client that vanished mid-handshake leaves one behind until then)
    #[arg(long, default_value = "30m", value_parser = session_ttl)]
    session_ttl: u64,
    /// Incoming authentication, Cedar, audit, tool filters and telemetry: the proxy's own
    /// layers, in front of the aggregated names (backends' credentials come from the
    /// config's `outgoingAuth`).
    #[command(flatten)]
    policy: crate::policy_args::PolicyArgs,
}

/// `--session-ttl`: a duration of one second up to the RunConfig's bound, in whole seconds.
fn session_ttl(text: &str) -> Result<u64, String> {
    let d = apiary_vmcp::config::parse_duration(text)?;
    let max = apiary_config::bounds::SESSION_IDLE_TTL_SECS.max;
    match d.as_secs() {
        s if (1..=max).contains(&s) => Ok(s),
        _ => Err(format!("must be between 1s and {max}s")),
    }
}

/// `apiary vmcp`.
pub async fn vmcp(args: VmcpArgs) -> anyhow::Result<()> {
    match args.command {
        VmcpCommand::Serve(a) => serve(*a).await,
        VmcpCommand::Validate { config } => validate(&config),
        VmcpCommand::Init { group, output } => init(&group, output.as_deref()),
    }
}

/// Reads, parses and checks a config file; also returns the hash of its text (the baseline
/// of the live reload).
fn load(path: &Path) -> anyhow::Result<(VmcpConfig, Vec<String>, u64)> {
    let text = apiary_vmcp::config::read_bounded(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = VmcpConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let warnings = config.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    check_incoming(path, &config.incoming_policy())?;
    Ok((config, warnings, apiary_vmcp::content_hash(&text)))
}

/// The file's incoming auth checked as the proxy will build it: the issuer's settings and
/// every Cedar policy, so a bad one fails here with the file's name, not in the proxy.
fn check_incoming(path: &Path, incoming: &IncomingPolicy) -> anyhow::Result<()> {
    if let Some(oidc) = &incoming.oidc {
        Authenticator::new(oidc, AuthnOptions::default())
            .with_context(|| format!("{}: incomingAuth.oidc", path.display()))?;
    }
    if let Some(doc) = &incoming.authz {
        Authorizer::from_value(doc, &format!("{}: incomingAuth.authz", path.display()))?;
    }
    Ok(())
}

/// Puts the file's incoming auth into the proxy's policy, unless the flags set some too:
/// two sources of one protection would leave the user guessing which one holds.
fn merge_incoming(policy: &mut PolicyConfig, incoming: IncomingPolicy) -> anyhow::Result<()> {
    if incoming.is_open() {
        return Ok(());
    }
    if policy.oidc.is_some() || policy.auth_mode != AuthMode::Anonymous || policy.authz.is_some() {
        bail!(
            "the config file's incomingAuth sets incoming authentication or Cedar, and so do the \
             --oidc-*/--auth-mode/--authz-config flags: give them in one place"
        );
    }
    policy.oidc = incoming.oidc;
    if incoming.local {
        policy.auth_mode = AuthMode::Local;
    }
    policy.authz = incoming.authz;
    Ok(())
}

fn validate(path: &Path) -> anyhow::Result<()> {
    let (config, warnings, _) = load(path)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    output::emit_line(&format!("{}: valid ({} backends)", path.display(), config.backends.len()));
    Ok(())
}

fn init(group: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let config = group_config(group)?;
    let text = serde_saphyr_string(&config)?;
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} ({} backends)", path.display(), config.backends.len());
        }
        None => output::emit(&text),
    }
    Ok(())
}

fn serde_saphyr_string(config: &VmcpConfig) -> anyhow::Result<String> {
    let yaml = config.to_yaml().map_err(|e| anyhow::anyhow!("encoding the config: {e}"))?;
    Ok(format!("# apiary vmcp config (ToolHive's vMCP format); check it with: apiary vmcp validate -c FILE\n{yaml}"))
}

/// A config whose backends are the running workloads of `group`, reached on loopback.
fn group_config(group: &str) -> anyhow::Result<VmcpConfig> {
    let state = StateDir::from_env()?;
    if !state.group_exists(group)? {
        bail!("no group {group:?}; create it with: apiary group create {group}");
    }
    let mut backends = Vec::new();
    for name in state.workloads_in_group(group)? {
        let rec = state.observed_record(&name)?;
        let url = match &rec.url {
            Some(u) if rec.state.is_active() && rec.state != WorkloadState::Stopping => {
                u.split('#').next().unwrap_or(u).to_owned()
            }
            _ => {
                tracing::warn!(workload = %name, state = %rec.state, "not running; left out");
                continue;
            }
        };
        if !is_loopback_url(&url) {
            bail!("workload {name:?} is at {url}, not on loopback: quick mode serves local workloads only");
        }
        // A workload proxied in `--proxy-mode sse` speaks the 2024-11-05 transport.
        let transport = if url.trim_end_matches('/').ends_with("/sse") { "sse" } else { "streamable-http" };
        backends.push(StaticBackend { name, url, transport: transport.into(), ..StaticBackend::default() });
    }
    if backends.is_empty() {
        bail!("group {group:?} has no running workloads; start some with: apiary run --group {group} …");
    }
    Ok(VmcpConfig {
        name: group.to_owned(),
        group_ref: group.to_owned(),
        backends,
        operational: Some(Operational {
            failure_handling: Some(FailureHandling {
                circuit_breaker: Some(CircuitBreaker { enabled: true, ..CircuitBreaker::default() }),
                ..FailureHandling::default()
            }),
            ..Operational::default()
        }),
        ..VmcpConfig::default()
    })
}

fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else { return false };
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut baseline = None;
    let config = match (&args.config, &args.group) {
        (Some(path), _) => {
            let (config, warnings, hash) = load(path)?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            baseline = Some(hash);
            config
        }
        (None, Some(group)) => {
            let host: IpAddr =
                args.host.parse().with_context(|| format!("--host {:?} is not an IP address", args.host))?;
            if !host.is_loopback() {
                bail!("--group (quick mode) listens on loopback only; --host {host} is not");
            }
            group_config(group)?
        }
        (None, None) => bail!("give --config FILE or --group NAME"),
    };
    if let Some(flag) = args.policy.remote_auth_flag() {
        bail!("{flag} logs in to one remote server; a vMCP's backends authenticate with the config's outgoingAuth");
    }
    let mut policy = args.policy.to_policy()?;
    merge_incoming(&mut policy, config.incoming_policy())?;
    if !policy.outgoing.is_empty() {
        bail!("upstream credential flags do not apply to a vMCP: set outgoingAuth per backend in the config");
    }
    let telemetry = args.policy.to_telemetry()?;
    let limits = apiary_config::Limits::default();
    let launch = Arc::new(
        VmcpLaunch::new(
            &config,
            InstanceLimits {
                max_line: usize::try_from(limits.max_line_bytes).unwrap_or(usize::MAX),
                ..InstanceLimits::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let name = if apiary_runtime::state::is_valid_name(&config.name) { config.name.clone() } else { "vmcp".into() };
    let mut run_config = RunConfig::builder(name, Source::command("apiary", ["vmcp", "serve"]))
        .proxy_host(args.host.clone())
        .proxy_port(args.port)
        .stdio_mode(StdioMode::PerSession)
        .max_session_children(args.max_sessions)
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    run_config.policy = policy;
    run_config.telemetry = telemetry;
    run_config.limits.session_idle_ttl_secs = args.session_ttl;
    // Every client session is one in-process child: the session table holds as many.
    run_config.limits.max_sessions = args.max_sessions;
    let mut signals = StopSignals::install()?;
    let launcher: Arc<dyn Launch> = Arc::clone(&launch) as Arc<dyn Launch>;
    let handle =
        apiary_proxy::start_with_routes(run_config, Some(launcher), apiary_vmcp::status_routes(launch.health()))
            .await
            .context("the vMCP could not start")?;
    launch.spawn_health_checks(handle.shutdown_token());
    if let (Some(path), Some(hash)) = (&args.config, baseline) {
        // The file is watched for changes (a Kubernetes ConfigMap is updated in place).
        apiary_vmcp::spawn_config_watch(
            Arc::clone(&launch),
            path.clone(),
            hash,
            apiary_vmcp::POLL_INTERVAL,
            handle.shutdown_token(),
        );
    }
    let url = handle.url();
    tracing::info!(%url, backends = config.backends.len(), "vMCP serving");
    output::emit_line(&url);
    let token = handle.shutdown_token();
    tokio::select! {
        sig = signals.recv() => tracing::info!(signal = sig, "stopping"),
        () = token.cancelled() => {}
    }
    if tokio::time::timeout(SHUTDOWN_LIMIT, handle.shutdown()).await.is_err() {
        tracing::warn!("the vMCP did not stop within {} s; exiting anyway", SHUTDOWN_LIMIT.as_secs());
    }
    Ok(())
}
