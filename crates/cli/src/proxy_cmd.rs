//! `apiary proxy NAME --target-uri URL` (a transparent proxy in front of an HTTP MCP server) and
//! `apiary proxy NAME -- COMMAND ARGS` (a stdio server behind the proxy), both in the foreground
//! until Ctrl-C. Nothing is saved: these are not workloads.

use std::sync::Arc;

use anyhow::bail;
use apiary_config::{RunConfig, Source};
use apiary_runtime::process::ProcessLauncher;
use apiary_transport::launch::Launch;

use crate::run_cmd::describe;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    apiary proxy fetch --target-uri http://127.0.0.1:8081/mcp --port 8080\n  \
    apiary proxy time -- uvx mcp-server-time")]
pub struct ProxyArgs {
    /// Name of the proxied server (used in logs)
    pub name: String,
    /// URL of the HTTP MCP server to proxy to
    #[arg(long, value_name = "URL")]
    pub target_uri: Option<String>,
    /// Port to listen on (default: a free port)
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Address to listen on
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Browser origins allowed besides loopback, scheme://host[:port] (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "ORIGINS")]
    pub allowed_origins: Vec<String>,
    /// A stdio MCP server to run behind the proxy, instead of --target-uri
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub policy: crate::policy_args::PolicyArgs,
}

/// `apiary proxy`.
pub async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let policy = args.policy.to_policy()?;
    let source = match (&args.target_uri, args.command.split_first()) {
        (Some(_), Some(_)) => bail!("give either --target-uri URL or -- COMMAND, not both"),
        (None, None) => bail!("nothing to proxy: give --target-uri URL or -- COMMAND ARGS"),
        (Some(url), None) => Source::remote(url),
        (None, Some((program, rest))) => Source::command(program.clone(), rest.iter().cloned()),
    };
    let mut b = RunConfig::builder(&args.name, source);
    if let Some(p) = args.port {
        b = b.proxy_port(p);
    }
    if let Some(h) = &args.host {
        b = b.proxy_host(h);
    }
    for o in &args.allowed_origins {
        b = b.allowed_origin(o);
    }
    let mut config = b.build().map_err(|e| anyhow::anyhow!("invalid configuration: {}", describe(&e)))?;
    config.policy = policy;
    config.telemetry = args.policy.to_telemetry()?;
    if let Some(flag) = args.policy.remote_auth_flag() {
        if !config.is_remote() {
            bail!("{flag} logs in to a remote MCP server: give its URL with --target-uri (not -- COMMAND)");
        }
        return proxy_with_login(config, &args).await;
    }
    let launcher: Option<Arc<dyn Launch>> = if config.is_remote() {
        None
    } else {
        let launcher = ProcessLauncher::for_run_config(&config)?.stderr_inherit();
        launcher.check_program()?;
        Some(Arc::new(launcher))
    };
    crate::serve::run_standalone(config, launcher).await
}

/// `apiary proxy --target-uri URL --remote-auth`: logs in here, then serves with that session
/// (kept in a private file of the state directory while this runs, deleted after).
async fn proxy_with_login(mut config: RunConfig, args: &ProxyArgs) -> anyhow::Result<()> {
    let state = apiary_runtime::state::StateDir::from_env()?;
    state.ensure()?;
    let session = crate::remote_login::proxy_session_path(&state, &args.name)?;
    let secret = args.policy.remote_auth_client_secret.as_deref();
    let result = async {
        crate::remote_login::ensure(&config, &session, crate::remote_login::Login::Fresh, secret).await?;
        let hint = format!("restart `apiary proxy {}` in a terminal to log in again", args.name);
        crate::remote_login::attach(&mut config, session.clone(), hint, secret);
        crate::serve::run_standalone(config, None).await
    }
    .await;
    // Nothing is saved for `apiary proxy`: the session goes with it.
    let _ = std::fs::remove_file(&session);
    result
}
