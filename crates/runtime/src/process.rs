//! MCP servers as local processes: a [`Launch`] that spawns a program (npx, uvx, any command) with
//! piped stdin/stdout, in a process group of its own so that the launcher's children (npx → node,
//! uvx → python, a shell's pipeline) are stopped together with it.
//!
//! A task owns each child. When the handle's `kill` sender fires or is dropped, the task sends
//! SIGTERM to the whole group, waits a grace period, then SIGKILLs it. When the child exits on its
//! own, `exited` resolves at once and whatever the child left behind in its group is stopped the
//! same way. [`ProcessLauncher::isolated`] puts the child in the [`crate::sandbox`] (what `apiary
//! run` does unless told `--isolation none`); without it the child runs with the caller's rights.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use apiary_config::{CommandLine, Isolation, NetworkAccess, RunConfig, Transport};
use apiary_transport::launch::{BoxRead, ChildHandle, ExitReason, Launch, LaunchError, LaunchFuture};
use rustix::process::Signal;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::oneshot;

use crate::log::LogFile;
use crate::pid::{group_id_exists, signal_group_id};
use crate::sandbox::SandboxSpec;
use crate::sandbox::bridge::{EgressBridge, InboundBridge};
use crate::sandbox::egress::{AllowList, EGRESS_PORT, EgressLimits, EgressProxy};

/// How long a child gets between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// A RunConfig cannot be turned into a local process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The source is not something this machine runs as a process.
    #[error("a {0} source has no local command; only package (npx://, uvx://) and command sources run as processes")]
    NoCommand(&'static str),
    /// The program is not there to run.
    #[error("cannot find `{0}`: {1}")]
    NotFound(String, &'static str),
    /// An HTTP-transport server needs a concrete port to be told about.
    #[error("targetPort is 0: choose the port a {0} server listens on before launching it")]
    UnresolvedPort(Transport),
}

/// Starts local processes for the proxy.
#[derive(Clone)]
pub struct ProcessLauncher {
    command: CommandLine,
    env: Vec<(String, String)>,
    /// Inherited variables the child must not see (applied before `env`).
    unset: Vec<String>,
    cwd: Option<PathBuf>,
    grace: Duration,
    stderr: StderrTarget,
    sandbox: Option<Sandboxing>,
    /// The port an HTTP-transport server listens on (`None` for stdio).
    http_port: Option<u16>,
    /// Where the proxy reaches an HTTP server sandboxed without the host's network
    /// ([`ProcessLauncher::reached_through`]).
    upstream_socket: Option<PathBuf>,
}

impl std::fmt::Debug for ProcessLauncher {
    // Environment values may be secrets (`--secret`): Debug shows the variable names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessLauncher")
            .field("command", &self.command)
            .field("env", &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("unset", &self.unset)
            .field("cwd", &self.cwd)
            .field("grace", &self.grace)
            .field("stderr", &self.stderr)
            .field("sandbox", &self.sandbox)
            .field("http_port", &self.http_port)
            .field("upstream_socket", &self.upstream_socket)
            .finish()
    }
}

/// How to start a child inside the sandbox.
#[derive(Debug, Clone)]
struct Sandboxing {
    /// The binary with the hidden `__sandbox-exec` subcommand (the `apiary` binary).
    helper: PathBuf,
    spec: SandboxSpec,
    /// For an allow-list profile: what the egress proxy started with each child lets through.
    egress: Option<AllowList>,
}

/// Where a child's stderr goes.
#[derive(Debug, Clone)]
enum StderrTarget {
    /// Piped and handed to the caller in [`ChildHandle::stderr`], who must keep reading it.
    Pipe,
    /// Copied into a log file by the launcher.
    Log(Arc<LogFile>),
    /// Shared with this process's stderr (a proxy in the foreground).
    Inherit,
}

impl ProcessLauncher {
    /// Runs `command` with this process's environment.
    pub fn new(command: CommandLine) -> Self {
        ProcessLauncher {
            command,
            env: Vec::new(),
            unset: Vec::new(),
            cwd: None,
            grace: DEFAULT_GRACE,
            stderr: StderrTarget::Pipe,
            sandbox: None,
            http_port: None,
            upstream_socket: None,
        }
    }

    /// The launcher for a package or command RunConfig: its command line, its `env`, and the
    /// variables MCP servers read to pick their transport (`MCP_TRANSPORT`, and for HTTP
    /// transports `MCP_PORT`, `FASTMCP_PORT`, `MCP_HOST`). The config's own `env` comes last, so a
    /// user can override them.
    pub fn for_run_config(config: &RunConfig) -> Result<Self, ProcessError> {
        let command = config.command_line().ok_or(ProcessError::NoCommand(config.source.kind()))?;
        let mut launcher = ProcessLauncher::new(command);
        let transport = config.effective_transport();
        launcher = launcher.env("MCP_TRANSPORT", transport.as_str());
        if transport.is_http() {
            if config.target_port == 0 {
                return Err(ProcessError::UnresolvedPort(transport));
            }
            launcher.http_port = Some(config.target_port);
            let port = config.target_port.to_string();
            launcher = launcher.env("MCP_PORT", &port).env("FASTMCP_PORT", &port).env("MCP_HOST", &config.target_host);
        }
        for (k, v) in &config.env {
            launcher = launcher.env(k, v);
        }
        Ok(launcher)
    }

    /// Runs every child in the process sandbox that `config` asks for (its `isolation`,
    /// `permissionProfile` and `allowDegradedIsolation`), through `helper`: a binary whose
    /// `__sandbox-exec` subcommand calls [`crate::sandbox::exec::run`] (the `apiary` binary).
    /// With `isolation: none` the launcher is returned unchanged.
    #[must_use]
    pub fn isolated(mut self, config: &RunConfig, helper: impl Into<PathBuf>) -> Self {
        if config.isolation == Isolation::Sandbox {
            let path = self.path_var();
            let profile = &config.permission_profile;
            let egress = match (profile.network_access(), profile.network.as_ref().and_then(|n| n.outbound.as_ref())) {
                (NetworkAccess::AllowList, Some(out)) => Some(AllowList::from_outbound(out)),
                _ => None,
            };
            self.sandbox = Some(Sandboxing {
                helper: helper.into(),
                spec: SandboxSpec::for_run_config(config, path.as_deref()),
                egress,
            });
        }
        self
    }

    /// Lets the proxy reach an HTTP-transport server that the sandbox gives no host network
    /// (profile `none` or an allow-list) through the Unix socket `socket`: the sandbox's pid 1
    /// listens there and forwards each connection to the server's port inside its namespace.
    /// Nothing is published on the host's network. Ignored for stdio servers and for servers that
    /// share the host's network (they are reached on their port as before).
    #[must_use]
    pub fn reached_through(mut self, socket: impl Into<PathBuf>) -> Self {
        self.upstream_socket = Some(socket.into());
        self
    }

    /// The inbound bridge each sandbox gets, when the server needs one.
    fn inbound(&self) -> Option<InboundBridge> {
        let sandbox = self.sandbox.as_ref()?;
        if sandbox.spec.host_network {
            return None;
        }
        Some(InboundBridge { socket: self.upstream_socket.clone()?, port: self.http_port? })
    }

    /// True when children start in the sandbox.
    pub fn is_sandboxed(&self) -> bool {
        self.sandbox.is_some()
    }

    /// Removes one inherited environment variable from the child's environment (a variable set
    /// with [`ProcessLauncher::env`] is still set).
    #[must_use]
    pub fn env_remove(mut self, name: impl Into<String>) -> Self {
        self.unset.push(name.into());
        self
    }

    /// Sets one environment variable on top of the inherited environment (later values win).
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the child in `dir`.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Time between SIGTERM and SIGKILL when stopping a child.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Copies every child's stderr into `log` instead of handing it to the caller (the handle's
    /// `stderr` is then `None`).
    #[must_use]
    pub fn stderr_to(mut self, log: Arc<LogFile>) -> Self {
        self.stderr = StderrTarget::Log(log);
        self
    }

    /// Lets every child write to this process's stderr (the handle's `stderr` is then `None`).
    #[must_use]
    pub fn stderr_inherit(mut self) -> Self {
        self.stderr = StderrTarget::Inherit;
        self
    }

    /// Checks that the program can be found (in `PATH` when it has no `/`) and is executable, so a
    /// typo is reported when the workload starts rather than when its first client connects.
    pub fn check_program(&self) -> Result<PathBuf, ProcessError> {
        find_program(&self.command.program, self.path_var().as_deref())
    }

    /// The `PATH` the child gets.
    fn path_var(&self) -> Option<std::ffi::OsString> {
        let env_path = self.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| std::ffi::OsString::from(v));
        env_path.or_else(|| std::env::var_os("PATH"))
    }

    /// The command to spawn: the server itself, or the sandbox helper with the server after `--`
    /// (and, for an allow-list profile, the egress proxy that must live as long as the child).
    fn base_command(&self) -> Result<(Command, Option<EgressProxy>), LaunchError> {
        let Some(sandbox) = &self.sandbox else {
            let mut cmd = Command::new(&self.command.program);
            cmd.args(&self.command.args);
            return Ok((cmd, None));
        };
        // Resolved here, on the host: inside the sandbox only what the spec shares is visible.
        let program = self.check_program().map_err(|e| LaunchError::Other(e.to_string()))?;
        let program = std::path::absolute(&program).unwrap_or(program);
        let mut spec = sandbox.spec.clone();
        spec.add_program(&program);
        if let Some(dir) = &self.cwd {
            spec.cwd = Some(dir.clone());
        }
        spec.inbound = self.inbound();
        let egress = match &sandbox.egress {
            Some(allow) => {
                let proxy = EgressProxy::start_private(allow.clone(), EgressLimits::default())
                    .map_err(|e| LaunchError::Other(e.to_string()))?;
                spec.egress = Some(EgressBridge { socket: proxy.socket().to_path_buf(), port: EGRESS_PORT });
                Some(proxy)
            }
            None => None,
        };
        let json = serde_json::to_string(&spec).map_err(|e| LaunchError::Other(format!("sandbox spec: {e}")))?;
        let mut cmd = Command::new(&sandbox.helper);
        cmd.arg(crate::sandbox::SUBCOMMAND).arg("--spec").arg(json).arg("--").arg(&program).args(&self.command.args);
        Ok((cmd, egress))
    }

    /// The command this launcher runs.
    pub fn command(&self) -> &CommandLine {
        &self.command
    }

    /// The variables set on top of the inherited environment, in order.
    pub fn env_vars(&self) -> &[(String, String)] {
        &self.env
    }

    fn spawn(&self) -> Result<ChildHandle, LaunchError> {
        let (mut cmd, egress) = self.base_command()?;
        for name in &self.unset {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if egress.is_some() {
            // Last, so they win over the config's env: the proxy is the only way out anyway.
            // The sandbox's own loopback stays direct, as ToolHive's NO_PROXY does.
            let url = format!("http://127.0.0.1:{EGRESS_PORT}");
            for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                cmd.env(name, &url);
            }
            for name in ["NO_PROXY", "no_proxy"] {
                cmd.env(name, "localhost,127.0.0.1,::1");
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match self.stderr {
                StderrTarget::Inherit => Stdio::inherit(),
                StderrTarget::Pipe | StderrTarget::Log(_) => Stdio::piped(),
            })
            // Its own group, so the whole tree can be signalled at once, and a Ctrl-C in the
            // proxy's terminal reaches the proxy only (which then stops the child in order).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child =
            cmd.spawn().map_err(|source| LaunchError::Spawn { program: self.command.program.clone(), source })?;
        let pid = child.id();
        let missing = |what: &str| LaunchError::Other(format!("the child's {what} was not piped"));
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stderr: Option<BoxRead> = match (child.stderr.take(), &self.stderr) {
            (Some(err), StderrTarget::Log(log)) => {
                tokio::spawn(copy_to_log(err, Arc::clone(log)));
                None
            }
            (Some(err), StderrTarget::Pipe) => Some(Box::new(err)),
            (_, StderrTarget::Inherit) | (None, _) => None,
        };
        let (exit_tx, exited) = oneshot::channel();
        let (kill, kill_rx) = oneshot::channel();
        let socket = self.inbound().map(|b| b.socket);
        tokio::spawn(supervise(child, pid, kill_rx, exit_tx, self.grace, egress, socket));
        tracing::debug!(pid, command = %self.describe(), "started child");
        Ok(ChildHandle { pid, stdin: Box::new(stdin), stdout: Box::new(stdout), stderr, exited, kill })
    }
}

impl Launch for ProcessLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move { self.spawn() })
    }

    fn upstream_socket(&self) -> Option<PathBuf> {
        self.inbound().map(|b| b.socket)
    }

    fn describe(&self) -> String {
        let mut text = self.command.program.clone();
        for a in &self.command.args {
            text.push(' ');
            text.push_str(a);
        }
        text
    }
}

/// Owns the child until it is gone: reports its exit and stops its group.
async fn supervise(
    mut child: Child,
    pid: Option<u32>,
    mut kill_rx: oneshot::Receiver<()>,
    exit_tx: oneshot::Sender<ExitReason>,
    grace: Duration,
    egress: Option<EgressProxy>,
    inbound_socket: Option<PathBuf>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        // Fires on send and on drop alike: either way the owner wants the child gone.
        _ = &mut kill_rx => {
            if let Some(pgid) = pid {
                signal_group_id(pgid, Signal::TERM);
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    if let Some(pgid) = pid {
                        signal_group_id(pgid, Signal::KILL);
                    }
                    // SIGKILL cannot be ignored; kill the leader directly in case it changed group.
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    };
    let reason = match status {
        Ok(status) => exit_reason(status),
        Err(e) => ExitReason::other(format!("cannot wait for the child: {e}")),
    };
    tracing::debug!(pid, reason = %reason, "child exited");
    // Before the exit is reported: the next child (a restart) binds the path anew.
    if let Some(path) = inbound_socket {
        let _ = std::fs::remove_file(path);
    }
    let _ = exit_tx.send(reason);
    if let Some(pgid) = pid {
        stop_leftovers(pgid, grace).await;
    }
    // The child's way out goes with it.
    drop(egress);
}

/// Stops processes the exited leader left in its group (its pgid stays reserved while any member
/// lives, so the id cannot name someone else's group).
async fn stop_leftovers(pgid: u32, grace: Duration) {
    if !group_id_exists(pgid) {
        return;
    }
    signal_group_id(pgid, Signal::TERM);
    let step = Duration::from_millis(25);
    let mut waited = Duration::ZERO;
    while waited < grace {
        tokio::time::sleep(step).await;
        waited += step;
        if !group_id_exists(pgid) {
            return;
        }
    }
    signal_group_id(pgid, Signal::KILL);
}

/// Resolves `program` the way `execvp` would: a path as given (relative to the working
/// directory), a bare name through `path`.
pub fn find_program(program: &str, path: Option<&std::ffi::OsStr>) -> Result<PathBuf, ProcessError> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.is_empty() {
        return Err(ProcessError::NotFound(String::new(), "the program name is empty"));
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(ProcessError::NotFound(program.to_owned(), "it is not an executable file"))
        } else {
            Err(ProcessError::NotFound(program.to_owned(), "no such file"))
        };
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(path) {
            let candidate = dir.join(program);
            if executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(ProcessError::NotFound(program.to_owned(), "it is not on PATH"))
}

/// What an exit status means, for people.
pub fn exit_reason(status: ExitStatus) -> ExitReason {
    if let Some(code) = status.code() {
        ExitReason::from_code(code)
    } else if let Some(signal) = status.signal() {
        ExitReason::from_signal(signal)
    } else {
        ExitReason::other(format!("ended: {status}"))
    }
}

/// Copies a child's stderr into the log in chunks (never a whole line in memory, however long).
async fn copy_to_log(mut stderr: ChildStderr, log: Arc<LogFile>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buf[..n];
                if let Err(e) = log.append(chunk) {
                    tracing::warn!(path = %log.path().display(), error = %e, "cannot write the server log");
                }
            }
        }
    }
}
