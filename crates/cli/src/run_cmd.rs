//! `apiary run`: flags (ToolHive's names) → a validated RunConfig → saved in the state directory →
//! served detached (default) or in this process (`--foreground`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use apiary_config::{ProxyMode, RunConfig, StdioMode, Transport, ValidationErrors};
use apiary_runtime::state::StateDir;

use crate::{detach, envfile, k8s_runtime, remote_login, serve, source_arg};

/// `apiary run [flags] SOURCE [-- ARGS]`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    apiary run npx://@modelcontextprotocol/server-everything\n  \
    apiary run uvx://mcp-server-time -- --local-timezone=UTC\n  \
    apiary run --name fetch https://fetch-mcp.example.com/mcp\n  \
    apiary run --name my-server -- python3 server.py\n  \
    apiary run --secret github-token,target=GITHUB_TOKEN npx://@modelcontextprotocol/server-github\n  \
    apiary run --from-config my-server.json")]
pub struct RunArgs {
    /// What to run: npx://PACKAGE, uvx://PACKAGE, a container image (ghcr.io/org/server:tag), or
    /// the http(s):// URL of a remote MCP server. Leave it out to run the local command given after --
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,

    /// Extra arguments for the server; without SOURCE, the command to run and its arguments
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,

    /// Workload name (default: derived from the source)
    #[arg(long)]
    pub name: Option<String>,

    /// Group the workload belongs to (default: `default`); create others with `apiary group create`
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Transport the server speaks (default: stdio for packages and commands; for URLs, sse when
    /// the path ends in /sse, else streamable-http)
    #[arg(long, value_enum)]
    pub transport: Option<TransportArg>,

    /// Which proxy URL to report for a stdio server (the proxy serves /mcp and /sse either way)
    #[arg(long, value_enum, value_name = "MODE")]
    pub proxy_mode: Option<ProxyModeArg>,

    /// Port the proxy listens on (default: a free port, kept across restarts)
    #[arg(long, value_name = "PORT")]
    pub proxy_port: Option<u16>,

    /// Old name of --proxy-port (--proxy-port wins when both are given)
    #[arg(long, hide = true, value_name = "PORT")]
    pub port: Option<u16>,

    /// Address the proxy listens on (default 127.0.0.1; 0.0.0.0 in the kubernetes runtime)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// Where the server runs: `process` (packages and commands, sandboxed), `container` (images,
    /// through Docker or Podman at $DOCKER_HOST or the usual sockets) or `kubernetes` (an image as
    /// a StatefulSet in this pod's namespace). Default: by the source, unless $TOOLHIVE_RUNTIME
    /// or $KUBERNETES_SERVICE_HOST says kubernetes
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,

    /// Port an HTTP-transport server listens on (given to it as MCP_PORT; default: a free port)
    #[arg(long, value_name = "PORT")]
    pub target_port: Option<u16>,

    /// Address an HTTP-transport server listens on (given to it as MCP_HOST)
    #[arg(long, value_name = "HOST")]
    pub target_host: Option<String>,

    /// Environment variable for the server (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// File of KEY=VALUE lines to add to the server's environment (repeatable; -e wins)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Give the server a secret from `apiary secret` as environment variable ENV (repeatable);
    /// only the name is saved, the value is read at each start
    #[arg(long = "secret", value_name = "NAME,target=ENV")]
    pub secrets: Vec<String>,

    /// Stay in this terminal and serve until Ctrl-C instead of starting in the background
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub foreground: Option<bool>,

    /// Run the workload described by a RunConfig file (as written by `apiary export`); no other
    /// configuration flags may be given with it
    #[arg(long, value_name = "FILE")]
    pub from_config: Option<PathBuf>,

    /// How client sessions map onto processes of a stdio server
    #[arg(long, value_enum, value_name = "MODE")]
    pub stdio_mode: Option<StdioModeArg>,

    /// Most processes started for individual sessions at once (stdio servers)
    #[arg(long, value_name = "N")]
    pub max_session_children: Option<u32>,

    /// Path prefix in front of every proxy route, for serving behind an ingress (e.g. /team-a)
    #[arg(long, value_name = "PREFIX")]
    pub endpoint_prefix: Option<String>,

    /// Trust X-Forwarded-* headers from a reverse proxy in front of this one
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub trust_proxy_headers: Option<bool>,

    /// Browser origins allowed besides loopback, scheme://host[:port] (comma-separated, repeatable)
    #[arg(long, value_delimiter = ',', value_name = "ORIGINS")]
    pub allowed_origins: Vec<String>,

    /// What a local server may read, write and reach: `none` (no network, no host paths),
    /// `network` (all outbound, no host paths; the default) or a ToolHive profile JSON FILE
    #[arg(long, value_name = "none|network|FILE")]
    pub permission_profile: Option<String>,

    /// How a package or command server is isolated: `sandbox` (namespaces, a read-only view of the
    /// host, Landlock, seccomp, rlimits; the default) or `none` (a plain child with your rights)
    #[arg(long, value_enum, value_name = "MODE")]
    pub isolation: Option<IsolationArg>,

    /// Start the server even when the kernel refuses part of the sandbox (`apiary status` shows
    /// what is missing) instead of failing
    #[arg(long)]
    pub allow_degraded_isolation: bool,

    #[command(flatten)]
    pub policy: crate::policy_args::PolicyArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The proxy's bounds; each defaults to the RunConfig default (crates/proxy/README.md, Bounds).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Bounds")]
pub struct LimitArgs {
    /// Largest request body, in bytes [default: 8388608]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Longest line a stdio server may write, in bytes [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub max_line_bytes: Option<u64>,
    /// Most live client sessions [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u32>,
    /// Seconds an idle session lives [default: 7200]
    #[arg(long, value_name = "SECS")]
    pub session_idle_ttl: Option<u64>,
    /// Most requests one session may have waiting on the server [default: 256]
    #[arg(long, value_name = "N")]
    pub max_queued_per_session: Option<u32>,
    /// Bytes of SSE events kept per session for Last-Event-ID resumption [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub event_buffer_bytes: Option<u64>,
    /// Seconds to wait for a server's answer [default: 300]
    #[arg(long, value_name = "SECS")]
    pub request_timeout: Option<u64>,
    /// Seconds a client may stall an SSE stream before it is closed [default: 30]
    #[arg(long, value_name = "SECS")]
    pub write_timeout: Option<u64>,
}

impl LimitArgs {
    fn any(&self) -> bool {
        self.max_body_bytes.is_some()
            || self.max_line_bytes.is_some()
            || self.max_sessions.is_some()
            || self.session_idle_ttl.is_some()
            || self.max_queued_per_session.is_some()
            || self.event_buffer_bytes.is_some()
            || self.request_timeout.is_some()
            || self.write_timeout.is_some()
    }

    fn apply(&self, l: &mut apiary_config::Limits) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut l.max_body_bytes, self.max_body_bytes);
        set(&mut l.max_line_bytes, self.max_line_bytes);
        set(&mut l.session_idle_ttl_secs, self.session_idle_ttl);
        set(&mut l.event_buffer_bytes, self.event_buffer_bytes);
        set(&mut l.request_timeout_secs, self.request_timeout);
        set(&mut l.write_timeout_secs, self.write_timeout);
        if let Some(v) = self.max_sessions {
            l.max_sessions = v;
        }
        if let Some(v) = self.max_queued_per_session {
            l.max_queued_per_session = v;
        }
    }
}

impl RunArgs {
    /// True with `-f`, `--foreground` or `--foreground=true`.
    pub fn foreground(&self) -> bool {
        self.foreground.unwrap_or(false)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    Stdio,
    Sse,
    StreamableHttp,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Stdio => Transport::Stdio,
            TransportArg::Sse => Transport::Sse,
            TransportArg::StreamableHttp => Transport::StreamableHttp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyModeArg {
    StreamableHttp,
    Sse,
}

impl From<ProxyModeArg> for ProxyMode {
    fn from(m: ProxyModeArg) -> Self {
        match m {
            ProxyModeArg::StreamableHttp => ProxyMode::StreamableHttp,
            ProxyModeArg::Sse => ProxyMode::Sse,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    Sandbox,
    None,
}

impl From<IsolationArg> for apiary_config::Isolation {
    fn from(m: IsolationArg) -> Self {
        match m {
            IsolationArg::Sandbox => apiary_config::Isolation::Sandbox,
            IsolationArg::None => apiary_config::Isolation::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StdioModeArg {
    Auto,
    Shared,
    PerSession,
}

impl From<StdioModeArg> for StdioMode {
    fn from(m: StdioModeArg) -> Self {
        match m {
            StdioModeArg::Auto => StdioMode::Auto,
            StdioModeArg::Shared => StdioMode::Shared,
            StdioModeArg::PerSession => StdioMode::PerSession,
        }
    }
}

/// `apiary run`.
pub async fn run(args: RunArgs, debug: bool) -> anyhow::Result<()> {
    let foreground = args.foreground();
    let mut config = build_config(&args)?;
    let state = StateDir::from_env()?;
    // `default` always exists; any other group must have been created (ToolHive does the same).
    if !state.group_exists(&config.group)? {
        return Err(apiary_runtime::groups::GroupError::NotFound(config.group.clone()).into());
    }
    if let Some(rec) = state.load_record(&config.name)?
        && rec.is_alive()
    {
        let at = rec.url.map(|u| format!(" at {u}")).unwrap_or_default();
        bail!(
            "workload {:?} is already running{at}; stop it first (apiary stop {}) or choose another --name",
            config.name,
            config.name
        );
    }
    if state.is_locked(&config.name)? {
        bail!("workload {:?} is already being started or served by another apiary process", config.name);
    }
    resolve_ports(&mut config)?;
    state.save_config(&config)?;
    let runtime = k8s_runtime::select(args.runtime.as_deref())?;
    // The remote login happens here, in the user's terminal, before anything is reported started.
    let secret = args.policy.remote_auth_client_secret.as_deref();
    let session = remote_login::session_path(&state, &config.name)?;
    remote_login::ensure(&config, &session, remote_login::Login::Fresh, secret).await?;
    if foreground {
        serve::serve_foreground_in(&state, &config.name, runtime, secret).await
    } else {
        let url = detach::start_in(&state, &config.name, debug, runtime, secret).await?;
        crate::client_cmd::workload_started(&state, &config.name, &config.group, &url);
        crate::output::emit_line(&url);
        Ok(())
    }
}

/// The validated RunConfig the flags describe.
pub fn build_config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    if let Some(path) = &args.from_config {
        if let Some(flag) = config_flag_given(args) {
            bail!("--from-config takes the whole workload from {}; {flag} cannot be combined with it", path.display());
        }
        let config = RunConfig::from_path(path).with_context(|| format!("--from-config {}", path.display()))?;
        crate::policy_args::check(&config.policy, &path.display().to_string())?;
        if config.policy.outgoing.remote_auth.is_some() && !config.is_remote() {
            bail!(
                "{}: policy.outgoing.remoteAuth logs in to a remote server; this workload runs a local one",
                path.display()
            );
        }
        return Ok(config);
    }
    // Policy and profile files are read and checked before anything else happens.
    let policy = args.policy.to_policy()?;
    let profile = match &args.permission_profile {
        Some(arg) => Some(apiary_config::PermissionProfile::from_arg(arg)?),
        None => None,
    };
    let in_cluster = k8s_runtime::select(args.runtime.as_deref())? == k8s_runtime::RuntimeKind::Kubernetes;
    let parsed = match args.source.as_deref() {
        // In the cluster a bare reference (`docker.io/mcp/fetch`) is an image to run as a pod.
        Some(text) if in_cluster && k8s_runtime::is_image_reference(text) => {
            source_arg::Parsed { source: apiary_config::Source::image(text), args: args.args.clone() }
        }
        other => source_arg::parse(other, &args.args)?,
    };
    let is_image = matches!(parsed.source, apiary_config::Source::Image(_));
    check_runtime_fits(args.runtime.as_deref(), &parsed.source)?;
    if let Some(flag) = args.policy.remote_auth_flag()
        && !matches!(parsed.source, apiary_config::Source::Remote(_))
    {
        bail!("{flag} logs in to a remote MCP server: give its http(s):// URL as SOURCE (not a local server)");
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => source_arg::default_name(&parsed.source)
            .context("cannot derive a workload name from the source; give one with --name")?,
    };
    let mut b = RunConfig::builder(name, parsed.source).args(parsed.args);
    if let Some(g) = &args.group {
        b = b.group(g);
    }
    if let Some(t) = args.transport {
        b = b.transport(t.into());
    }
    if let Some(m) = args.proxy_mode {
        b = b.proxy_mode(m.into());
    }
    if let Some(p) = args.proxy_port.or(args.port) {
        b = b.proxy_port(p);
    }
    if let Some(h) = &args.host {
        b = b.proxy_host(h);
    } else if in_cluster {
        // A Service in front of the pod must reach the proxy (names.md §4).
        b = b.proxy_host("0.0.0.0");
    }
    if let Some(p) = args.target_port {
        b = b.target_port(p);
    }
    if let Some(h) = &args.target_host {
        b = b.target_host(h);
    }
    for file in &args.env_file {
        for (k, v) in envfile::read(file)? {
            b = b.env(k, v);
        }
    }
    for pair in &args.env {
        let (k, v) = envfile::parse_pair(pair)?;
        b = b.env(k, v);
    }
    for text in &args.secrets {
        b = b.secret(text.parse::<apiary_config::SecretRef>()?);
    }
    if let Some(m) = args.stdio_mode {
        b = b.stdio_mode(m.into());
    } else if in_cluster || is_image {
        // One pod or container, one stdin: every session shares it (a child per session would be
        // a second attach to the same process, or a container started per session).
        b = b.stdio_mode(StdioMode::Shared);
    }
    if let Some(n) = args.max_session_children {
        b = b.max_session_children(n);
    }
    if let Some(p) = &args.endpoint_prefix {
        b = b.endpoint_prefix(p);
    }
    if let Some(t) = args.trust_proxy_headers {
        b = b.trust_proxy_headers(t);
    }
    for o in &args.allowed_origins {
        b = b.allowed_origin(o);
    }
    if let Some(p) = profile {
        b = b.permission_profile(p);
    }
    if let Some(i) = args.isolation {
        b = b.isolation(i.into());
    }
    b = b.allow_degraded_isolation(args.allow_degraded_isolation);
    let mut limits = apiary_config::Limits::default();
    args.limits.apply(&mut limits);
    b = b.limits(limits);
    let mut config = b.build().map_err(|e| anyhow::anyhow!("invalid configuration: {}", describe(&e)))?;
    config.policy = policy;
    config.telemetry = args.policy.to_telemetry()?;
    Ok(config)
}

/// Refuses `--runtime container` for a source that is not an image and `--runtime process` for
/// one that is, with the fix in the message.
fn check_runtime_fits(runtime: Option<&str>, source: &apiary_config::Source) -> anyhow::Result<()> {
    let is_image = matches!(source, apiary_config::Source::Image(_));
    match runtime.map(str::to_ascii_lowercase).as_deref() {
        Some(r @ ("container" | "docker" | "podman")) if !is_image => bail!(
            "--runtime {r} runs container images, and this {} source is not one; leave --runtime out (or use --runtime process) to run it as a sandboxed process",
            source.kind()
        ),
        Some("process") if is_image => bail!(
            "--runtime process runs packages and commands, and this source is a container image; use --runtime container (the default for images)"
        ),
        _ => Ok(()),
    }
}

/// The first configuration flag given alongside `--from-config`, if any.
fn config_flag_given(a: &RunArgs) -> Option<&'static str> {
    let given: [(bool, &'static str); 23] = [
        (a.source.is_some(), "SOURCE"),
        (!a.args.is_empty(), "-- ARGS"),
        (a.name.is_some(), "--name"),
        (a.group.is_some(), "--group"),
        (a.transport.is_some(), "--transport"),
        (a.proxy_mode.is_some(), "--proxy-mode"),
        (a.proxy_port.is_some(), "--proxy-port"),
        (a.port.is_some(), "--port"),
        (a.host.is_some(), "--host"),
        (a.target_port.is_some(), "--target-port"),
        (a.target_host.is_some(), "--target-host"),
        (!a.env.is_empty(), "--env"),
        (!a.env_file.is_empty(), "--env-file"),
        (!a.secrets.is_empty(), "--secret"),
        (a.stdio_mode.is_some(), "--stdio-mode"),
        (a.max_session_children.is_some(), "--max-session-children"),
        (a.endpoint_prefix.is_some(), "--endpoint-prefix"),
        (a.trust_proxy_headers.is_some(), "--trust-proxy-headers"),
        (!a.allowed_origins.is_empty(), "--allowed-origins"),
        (a.permission_profile.is_some(), "--permission-profile"),
        (a.isolation.is_some(), "--isolation"),
        (a.allow_degraded_isolation, "--allow-degraded-isolation"),
        (a.limits.any(), "a bound (--max-sessions, --max-body-bytes, …)"),
    ];
    given.iter().find(|(set, _)| *set).map(|(_, flag)| *flag).or_else(|| a.policy.first_given())
}

/// Validation errors on one line, each with the flag that sets the field.
pub fn describe(errors: &ValidationErrors) -> String {
    errors
        .errors()
        .iter()
        .map(|e| match flag_for(&e.path) {
            Some(flag) => format!("{} ({flag}): {}", e.path, e.message),
            None => e.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn flag_for(path: &str) -> Option<&'static str> {
    let head = path.split(['.', '[']).next().unwrap_or(path);
    Some(match path {
        "name" => "--name",
        "group" => "--group",
        "transport" => "--transport",
        "targetHost" => "--target-host",
        "targetPort" => "--target-port",
        "proxy.host" => "--host",
        "proxy.port" => "--proxy-port",
        "proxy.endpointPrefix" => "--endpoint-prefix",
        "stdio.maxSessionChildren" => "--max-session-children",
        "limits.maxBodyBytes" => "--max-body-bytes",
        "limits.maxLineBytes" => "--max-line-bytes",
        "limits.maxSessions" => "--max-sessions",
        "limits.sessionIdleTtlSecs" => "--session-idle-ttl",
        "limits.maxQueuedPerSession" => "--max-queued-per-session",
        "limits.eventBufferBytes" => "--event-buffer-bytes",
        "limits.requestTimeoutSecs" => "--request-timeout",
        "limits.writeTimeoutSecs" => "--write-timeout",
        "permissionProfile" => "--permission-profile",
        _ if path.starts_with("proxy.allowedOrigins") => "--allowed-origins",
        _ if head == "env" => "--env",
        _ if head == "secrets" => "--secret",
        _ if head == "source" => "SOURCE",
        _ if head == "args" => "-- ARGS",
        _ => return None,
    })
}

/// Fixes port 0 to a concrete free port, so the URL (and a local HTTP server's port) stays the
/// same across restarts of the workload.
pub fn resolve_ports(config: &mut RunConfig) -> anyhow::Result<()> {
    use apiary_config::Source;
    if config.proxy.port == 0 {
        config.proxy.port = apiary_runtime::ports::free_port(&config.proxy.host)
            .with_context(|| format!("cannot find a free port on {}", config.proxy.host))?;
    }
    let local = matches!(config.source, Source::Package(_) | Source::Command(_) | Source::Image(_));
    if local && config.effective_transport().is_http() && config.target_port == 0 {
        // Never hand out the proxy's own port (the OS could return it again once freed).
        for _ in 0..8 {
            let port = apiary_runtime::ports::free_port(&config.target_host)
                .with_context(|| format!("cannot find a free port on {}", config.target_host))?;
            if port != config.proxy.port {
                config.target_port = port;
                break;
            }
        }
        if config.target_port == 0 {
            bail!("cannot find a free port for the server; give one with --target-port");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_config::Source;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(argv: &[&str]) -> RunArgs {
        T::try_parse_from(std::iter::once("run").chain(argv.iter().copied())).unwrap().run
    }

    fn config(argv: &[&str]) -> RunConfig {
        build_config(&args(argv)).unwrap()
    }

    fn error(argv: &[&str]) -> String {
        format!("{:#}", build_config(&args(argv)).unwrap_err())
    }

    #[test]
    fn every_flag_lands_in_its_field() {
        let c = config(&[
            "--name=fetch",
            "--group",
            "team",
            "--transport",
            "streamable-http",
            "--proxy-mode",
            "sse",
            "--proxy-port",
            "8080",
            "--host",
            "0.0.0.0",
            "--target-port",
            "9000",
            "--target-host",
            "127.0.0.2",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--stdio-mode",
            "per-session",
            "--max-session-children",
            "7",
            "--endpoint-prefix",
            "/team",
            "--trust-proxy-headers",
            "--allowed-origins",
            "https://a.example,https://b.example",
            "--allowed-origins=http://c.example:8080",
            "--max-sessions",
            "12",
            "--max-queued-per-session=3",
            "--event-buffer-bytes",
            "4096",
            "--session-idle-ttl",
            "60",
            "npx://@scope/server@1.0",
            "--",
            "--flag",
            "value",
        ]);
        assert_eq!(c.name, "fetch");
        assert_eq!(c.group, "team");
        assert_eq!(c.source, Source::npx("@scope/server@1.0"));
        assert_eq!(c.args, vec!["--flag".to_owned(), "value".to_owned()]);
        assert_eq!(c.transport, Some(Transport::StreamableHttp));
        assert_eq!(c.proxy.proxy_mode, ProxyMode::Sse);
        assert_eq!(c.proxy.port, 8080);
        assert_eq!(c.proxy.host, "0.0.0.0");
        assert_eq!(c.target_port, 9000);
        assert_eq!(c.target_host, "127.0.0.2");
        assert_eq!(c.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(c.env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(c.stdio.mode, StdioMode::PerSession);
        assert_eq!(c.stdio.max_session_children, 7);
        assert_eq!(
            (c.limits.max_sessions, c.limits.max_queued_per_session, c.limits.event_buffer_bytes),
            (12, 3, 4096)
        );
        assert_eq!(c.limits.session_idle_ttl_secs, 60);
        assert_eq!(c.limits.max_body_bytes, apiary_config::Limits::default().max_body_bytes);
        assert_eq!(c.proxy.endpoint_prefix, "/team");
        assert!(c.proxy.trust_proxy_headers);
        assert_eq!(
            c.proxy.allowed_origins,
            vec!["https://a.example".to_owned(), "https://b.example".to_owned(), "http://c.example:8080".to_owned()]
        );
    }

    #[test]
    fn defaults_and_derived_names() {
        let c = config(&["uvx://mcp-server-time"]);
        assert_eq!(c.name, "mcp-server-time");
        assert_eq!(c.group, "default");
        assert_eq!(c.proxy.port, 0);
        assert_eq!(c.transport, None);
        let c = config(&["--name", "t", "--", "python3", "server.py", "--x"]);
        assert_eq!(c.source, Source::command("python3", ["server.py", "--x"]));
        assert!(c.args.is_empty());
        let c = config(&["https://mcp.example.com/fetch/sse"]);
        assert_eq!(c.name, "fetch");
        assert_eq!(c.effective_transport(), Transport::Sse);
    }

    #[test]
    fn proxy_port_wins_over_the_old_port_flag() {
        assert_eq!(config(&["--port=8080", "npx://x"]).proxy.port, 8080);
        assert_eq!(config(&["--port", "8080", "--proxy-port", "9090", "npx://x"]).proxy.port, 9090);
    }

    #[test]
    fn the_kubernetes_runtime_runs_images_on_all_interfaces_with_one_shared_stdin() {
        let c = config(&["--runtime", "kubernetes", "--name", "mcp-fetch", "docker.io/mcp/fetch"]);
        assert_eq!(c.source, Source::image("docker.io/mcp/fetch"));
        assert_eq!(c.proxy.host, "0.0.0.0");
        assert_eq!(c.stdio.mode, StdioMode::Shared);
        let c = config(&["--runtime", "kubernetes", "--host", "127.0.0.1", "--name", "f", "docker.io/mcp/fetch"]);
        assert_eq!(c.proxy.host, "127.0.0.1");
        // On this machine an image runs in a container, its sessions sharing one.
        let c = config(&["--runtime", "docker", "--name", "f", "docker.io/mcp/fetch"]);
        assert_eq!(
            (c.source, c.proxy.host.as_str(), c.stdio.mode),
            (Source::image("docker.io/mcp/fetch"), "127.0.0.1", StdioMode::Shared)
        );
    }

    #[test]
    fn the_runtime_must_fit_the_source() {
        assert_eq!(config(&["--runtime", "container", "ghcr.io/a/b:1"]).source, Source::image("ghcr.io/a/b:1"));
        assert_eq!(config(&["--runtime", "process", "npx://x"]).source, Source::npx("x"));
        let e = error(&["--runtime", "container", "--name", "t", "--", "python3", "s.py"]);
        assert!(e.contains("--runtime container runs container images") && e.contains("command"), "{e}");
        let e = error(&["--runtime", "process", "ghcr.io/a/b:1"]);
        assert!(e.contains("--runtime container"), "{e}");
        let e = error(&["--runtime", "vm", "npx://x"]);
        assert!(e.contains("unknown runtime"), "{e}");
    }

    #[test]
    fn foreground_takes_an_optional_value_without_eating_the_source() {
        assert!(args(&["-f", "npx://x"]).foreground());
        assert!(args(&["--foreground", "npx://x"]).foreground());
        assert!(args(&["--foreground=true", "npx://x"]).foreground());
        assert!(!args(&["--foreground=false", "npx://x"]).foreground());
        assert!(!args(&["npx://x"]).foreground());
        assert_eq!(args(&["--foreground", "npx://x"]).source.as_deref(), Some("npx://x"));
        assert!(T::try_parse_from(["run", "--foreground=maybe", "npx://x"]).is_err());
    }

    #[test]
    fn errors_name_the_field_and_the_flag() {
        let e = error(&["--name", "Bad_Name", "npx://x"]);
        assert!(e.contains("name (--name):"), "{e}");
        let e = error(&["-e", "1BAD=x", "npx://x"]);
        assert!(e.contains("env.1BAD (--env):"), "{e}");
        let e = error(&["--endpoint-prefix", "noslash", "npx://x"]);
        assert!(e.contains("proxy.endpointPrefix (--endpoint-prefix):"), "{e}");
        let e = error(&["--allowed-origins", "not an origin", "npx://x"]);
        assert!(e.contains("proxy.allowedOrigins[0] (--allowed-origins):"), "{e}");
        let e = error(&["--transport", "stdio", "https://x.example/mcp"]);
        assert!(e.contains("transport (--transport):"), "{e}");
        let e = error(&["-e", "novalue", "npx://x"]);
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = error(&["--from-config", "x.json", "--name", "y"]);
        assert!(e.contains("--name cannot be combined"), "{e}");
    }

    #[test]
    fn env_file_values_lose_to_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vars.env");
        std::fs::write(&file, "A=from-file\nB=file\n").unwrap();
        let c = config(&["--env-file", file.to_str().unwrap(), "-e", "A=flag", "npx://x"]);
        assert_eq!(c.env.get("A").map(String::as_str), Some("flag"));
        assert_eq!(c.env.get("B").map(String::as_str), Some("file"));
    }

    #[test]
    fn resolving_ports_fills_zeros_only() {
        let mut c = config(&["--transport", "sse", "--name", "t", "--", "srv"]);
        resolve_ports(&mut c).unwrap();
        assert_ne!(c.proxy.port, 0);
        assert_ne!(c.target_port, 0);
        assert_ne!(c.target_port, c.proxy.port);
        let mut fixed = config(&["--proxy-port", "8080", "npx://x"]);
        resolve_ports(&mut fixed).unwrap();
        assert_eq!(fixed.proxy.port, 8080);
        assert_eq!(fixed.target_port, 0, "stdio servers get no target port");
    }

    #[test]
    fn remote_auth_flags_make_settings_for_remote_urls_only() {
        let c = config(&[
            "--name=r",
            "--remote-auth-issuer",
            "https://as.example/realms/x",
            "--remote-auth-client-id",
            "cli",
            "--remote-auth-scopes",
            "openid,profile",
            "--remote-auth-callback-port",
            "0",
            "--remote-auth-timeout",
            "1m30s",
            "--remote-auth-skip-browser",
            "https://remote.example/mcp",
        ]);
        // --remote-auth is implied by the other login flags.
        let r = c.policy.outgoing.remote_auth.as_ref().unwrap();
        assert_eq!(r.issuer.as_deref(), Some("https://as.example/realms/x"));
        assert_eq!(r.client_id.as_deref(), Some("cli"));
        assert_eq!(r.scopes, ["openid", "profile"]);
        assert_eq!((r.callback_port, r.timeout_secs, r.skip_browser), (Some(0), Some(90), true));
        // Exported and read back (`apiary export` / `--from-config`): the same settings.
        let back: RunConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.policy, c.policy);

        let e = error(&["--remote-auth", "--", "python3", "server.py"]);
        assert!(e.contains("--remote-auth ") && e.contains("http(s)://"), "{e}");
        let e = error(&["--remote-auth-skip-browser", "npx://pkg"]);
        assert!(e.contains("--remote-auth-skip-browser"), "{e}");
    }

    #[test]
    fn from_config_refuses_remote_auth_for_a_local_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let mut c = RunConfig::new("w", Source::command("python3", ["s.py".to_string()]));
        c.policy.outgoing.remote_auth = Some(apiary_config::RemoteAuthSettings::default());
        std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
        let e = error(&["--from-config", path.to_str().unwrap()]);
        assert!(e.contains("remoteAuth"), "{e}");
        // A remote one is accepted although nobody has logged in yet.
        c.source = Source::remote("https://remote.example/mcp");
        std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
        assert!(config(&["--from-config", path.to_str().unwrap()]).policy.outgoing.remote_auth.is_some());
    }
}
