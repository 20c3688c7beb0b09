//! The `apiary` binary: parses flags, wires a runtime into a proxy, prints for people.
//!
//! Every subcommand lives in its own module; this file only declares the command tree, sets up
//! logging, and turns an error into one line on stderr with a non-zero exit.

mod client_cmd;
mod container_runtime;
mod detach;
mod envfile;
mod export_cmd;
mod gateway_cmd;
mod group_cmd;
mod k8s_runtime;
mod logging;
mod logs_cmd;
mod mcp_cmd;
mod operator_cmd;
mod output;
mod policy_args;
mod proxy_cmd;
mod proxyrunner_cmd;
mod remote_login;
mod run_cmd;
mod sandbox_cmd;
mod secret_cmd;
mod serve;
mod source_arg;
mod trim;
mod vmcp_cmd;
mod workload_cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogRole;

/// Apiary runs MCP servers and serves them to MCP clients through a fast local proxy.
///
/// Start one with `apiary run npx://PACKAGE`, `apiary run uvx://PACKAGE`, `apiary run URL` or
/// `apiary run --name NAME -- COMMAND ARGS`; it prints the URL to give your MCP client.
#[derive(Debug, Parser)]
#[command(name = "apiary", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Log at debug level
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an MCP server behind a proxy and print the URL for MCP clients
    Run(Box<run_cmd::RunArgs>),
    /// List workloads (running ones unless --all)
    #[command(visible_alias = "ls")]
    List(workload_cmds::ListArgs),
    /// Stop running workloads (their proxy and every server process)
    Stop(workload_cmds::StopArgs),
    /// Stop workloads and delete their configuration, status and logs
    Rm(workload_cmds::RmArgs),
    /// Start a stopped workload again from its saved configuration
    Start(workload_cmds::StartArgs),
    /// Stop a workload if it runs, then start it again
    Restart(workload_cmds::StartArgs),
    /// Show a workload's state, URL, proxy pid, restarts and last exit reason
    Status(workload_cmds::StatusArgs),
    /// Print a workload's server log (stderr), or its proxy log with --proxy
    Logs(logs_cmd::LogsArgs),
    /// Write a workload's RunConfig to a file or standard output
    Export(export_cmd::ExportArgs),
    /// Run a proxy in the foreground in front of an HTTP server (--target-uri) or a command (-- CMD)
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// Manage groups of workloads (apiary run --group G; list/stop/rm/start/restart -g G)
    Group(group_cmd::GroupArgs),
    /// Configure MCP clients (Claude Code, Cursor, VS Code, …) with workloads' URLs
    Client(client_cmd::ClientArgs),
    /// Manage secrets for servers (apiary run --secret NAME,target=ENV): setup, set, get, list, delete
    Secret(secret_cmd::SecretArgs),
    /// Talk to an MCP server: list its tools, resources and prompts, or call a tool
    Mcp(mcp_cmd::McpArgs),
    /// Run the Kubernetes operator (reconciles MCPServer resources)
    Operator(operator_cmd::OperatorArgs),
    /// What the operator's proxy pods run: create an MCP server's StatefulSet and proxy it
    Proxyrunner(proxyrunner_cmd::ProxyRunnerArgs),
    /// Serve a virtual MCP server: many MCP servers aggregated behind one endpoint
    Vmcp(vmcp_cmd::VmcpArgs),
    /// Serve the MCP servers registered with MCPServerRegistrations behind one /mcp (seed 004)
    Gateway(gateway_cmd::GatewayArgs),
    /// Print the version
    Version(VersionArgs),
    /// Serve a saved workload in this process (what `run` starts detached)
    #[command(name = "__serve", hide = true)]
    Serve(serve::ServeArgs),
    /// Build the process sandbox and run a server in it (what the process launcher starts)
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec(sandbox_cmd::SandboxExecArgs),
}

#[derive(Debug, clap::Args)]
struct VersionArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = output::Format::Text)]
    format: output::Format,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread exists: a multi-threaded process cannot enter a new user namespace.
    if let Command::SandboxExec(args) = &cli.command {
        return sandbox_cmd::run(args);
    }
    let role = match &cli.command {
        Command::Serve(_) => LogRole::Detached,
        Command::Run(r) if r.foreground() => LogRole::Foreground,
        Command::Start(s) | Command::Restart(s) if s.foreground() => LogRole::Foreground,
        Command::Proxy(_) | Command::Operator(_) | Command::Proxyrunner(_) | Command::Gateway(_) => LogRole::Foreground,
        Command::Vmcp(vmcp_cmd::VmcpArgs { command: vmcp_cmd::VmcpCommand::Serve(_) }) => LogRole::Foreground,
        _ => LogRole::Cli,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli, role));
    // Do not wait for stray blocking tasks (a log follower's read) past the command itself.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined with ": ", newlines folded.
            let text = format!("{e:#}").replace('\n', "; ");
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli, role: LogRole) -> anyhow::Result<()> {
    let debug = cli.debug;
    // The detached server sets up its own logging, into the workload's proxy log.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(role, debug, None)?;
    }
    match cli.command {
        Command::Run(args) => run_cmd::run(*args, debug).await,
        Command::List(args) => workload_cmds::list(args),
        Command::Stop(args) => workload_cmds::stop(args),
        Command::Rm(args) => workload_cmds::rm(args),
        Command::Start(args) => workload_cmds::start(args, false, debug).await,
        Command::Restart(args) => workload_cmds::start(args, true, debug).await,
        Command::Status(args) => workload_cmds::status(args),
        Command::Logs(args) => logs_cmd::logs(args).await,
        Command::Export(args) => export_cmd::export(args),
        Command::Proxy(args) => proxy_cmd::proxy(*args).await,
        Command::Group(args) => group_cmd::group(args),
        Command::Client(args) => client_cmd::client(args),
        Command::Secret(args) => secret_cmd::secret(args),
        Command::Mcp(args) => mcp_cmd::run_with_resolver(args, workload_cmds::resolve_url).await,
        Command::Operator(args) => operator_cmd::operator(args).await,
        Command::Proxyrunner(args) => proxyrunner_cmd::proxyrunner(args).await,
        Command::Vmcp(args) => vmcp_cmd::vmcp(args).await,
        Command::Gateway(args) => gateway_cmd::gateway(args).await,
        Command::Version(args) => {
            output::print_version(args.format);
            Ok(())
        }
        Command::Serve(args) => serve::serve_detached(args, debug).await,
        Command::SandboxExec(_) => anyhow::bail!("__sandbox-exec runs before the async runtime starts"),
    }
}
