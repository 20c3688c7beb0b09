//! Starting a saved workload in the background: re-executes this binary as `apiary __serve NAME`
//! (which puts itself in a session of its own) with its output going to the workload's proxy log,
//! then waits, bounded, until the status record shows the proxy serving and returns its URL.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apiary_runtime::log::open_append;
use apiary_runtime::pid::{ProcRef, wait_until};
use apiary_runtime::state::{StateDir, WorkloadRecord, WorkloadState};
use rustix::process::Signal;

/// How long `run`/`start` waits for the server: npx and uvx may download packages first.
pub const READY_LIMIT: Duration = Duration::from_secs(60);

/// Lines of each log printed when a start fails.
const TAIL_LINES: usize = 20;
/// Bytes of each log read for that tail.
const TAIL_BYTES: u64 = 64 * 1024;

/// Starts the serving process for a saved workload detached, in `runtime` (handed on to it),
/// and returns its URL once it listens. `remote_secret`, a remote-auth client secret given on
/// the command line, reaches it in its environment (the RunConfig names that variable).
pub async fn start_in(
    state: &StateDir,
    name: &str,
    debug: bool,
    runtime: crate::k8s_runtime::RuntimeKind,
    remote_secret: Option<&str>,
) -> anyhow::Result<String> {
    state.ensure()?;
    let proxy_log = state.proxy_log_path(name)?;
    let server_log = state.log_path(name)?;
    let log = open_append(&proxy_log).with_context(|| format!("{}", proxy_log.display()))?;
    let proxy_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let server_offset = std::fs::metadata(&server_log).map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the apiary executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__serve").arg(name).arg("--runtime").arg(runtime.as_str());
    if debug {
        cmd.arg("--debug");
    }
    if let Some(secret) = remote_secret {
        cmd.env(crate::policy_args::CLIENT_SECRET_ENV, secret);
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone().context("proxy log")?).stderr(log);
    let mut child = cmd.spawn().context("cannot start the proxy process")?;
    let pid = child.id();

    let deadline = Instant::now() + READY_LIMIT;
    let mut last: Option<WorkloadRecord> = None;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the proxy")? {
            print_tails(&proxy_log, proxy_offset, &server_log, server_offset);
            let why = last.and_then(|r| r.error).map(|e| format!(": {e}")).unwrap_or_default();
            bail!("the proxy for {name:?} exited ({status}) before it was ready{why}");
        }
        if let Some(rec) = state.load_record(name)?
            && rec.proxy.is_some_and(|p| p.pid == pid)
        {
            match rec.state {
                // A stdio proxy starts children per session, on demand: listening is ready.
                WorkloadState::Starting if rec.transport == "stdio" && rec.url.is_some() => {
                    return Ok(rec.url.unwrap_or_default());
                }
                WorkloadState::Running | WorkloadState::Restarting => {
                    if let Some(url) = rec.url.clone()
                        && target_listening(state, name, runtime)
                    {
                        return Ok(url);
                    }
                }
                WorkloadState::Unhealthy | WorkloadState::Error => {
                    terminate(&mut child);
                    print_tails(&proxy_log, proxy_offset, &server_log, server_offset);
                    let why = rec.error.unwrap_or_else(|| rec.state.to_string());
                    bail!("{name:?} could not start: {why}");
                }
                _ => {}
            }
            last = Some(rec);
        }
        if Instant::now() >= deadline {
            if let Some(url) = last.and_then(|r| r.url) {
                eprintln!("warning: {name:?} is listening but its server is still starting; see apiary logs {name}");
                return Ok(url);
            }
            terminate(&mut child);
            print_tails(&proxy_log, proxy_offset, &server_log, server_offset);
            bail!("the proxy for {name:?} was not ready within {} s", READY_LIMIT.as_secs());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            // Ctrl-C while waiting cancels the start rather than leaving a half-started workload.
            _ = tokio::signal::ctrl_c() => {
                terminate(&mut child);
                bail!("interrupted; {name:?} was not started");
            }
        }
    }
}

/// For a local server that speaks HTTP: true once its port accepts connections (the proxy
/// reports it running as soon as the process exists). True for everything else.
fn target_listening(state: &StateDir, name: &str, runtime: crate::k8s_runtime::RuntimeKind) -> bool {
    use apiary_config::Source;
    let Ok(config) = state.load_config(name) else {
        return true;
    };
    // In a private network namespace: only its Unix socket leads to it.
    if apiary_runtime::inbound::needs_socket(&config, runtime == crate::k8s_runtime::RuntimeKind::Local) {
        return state
            .upstream_socket_path(name)
            .is_ok_and(|p| apiary_runtime::inbound::probe_blocking(&p, Duration::from_millis(500)));
    }
    let local = matches!(config.source, Source::Package(_) | Source::Command(_));
    if !local || !config.effective_transport().is_http() || config.target_port == 0 {
        return true;
    }
    let host = config.target_host.trim_start_matches('[').trim_end_matches(']');
    let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host, config.target_port)) else {
        return true;
    };
    addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
}

/// Stops a proxy that failed to come up (it then stops its children), SIGKILL if it lingers.
fn terminate(child: &mut Child) {
    let proc_ref = ProcRef::capture(child.id());
    proc_ref.signal(Signal::TERM);
    if !wait_until(Duration::from_secs(10), || matches!(child.try_wait(), Ok(Some(_)) | Err(_))) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn print_tails(proxy_log: &Path, proxy_offset: u64, server_log: &Path, server_offset: u64) {
    for (label, path, offset) in [("proxy log", proxy_log, proxy_offset), ("server log", server_log, server_offset)] {
        let lines = tail(path, offset);
        if lines.is_empty() {
            continue;
        }
        eprintln!("--- {label} ({}) ---", path.display());
        for line in lines {
            eprintln!("  {line}");
        }
    }
}

/// The last lines written to `path` since `offset` (a rotation in between restarts from 0).
pub fn tail(path: &Path, offset: u64) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = if offset > len { 0 } else { offset };
    let from = from.max(len.saturating_sub(TAIL_BYTES));
    if file.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].iter().map(|l| (*l).to_owned()).collect()
}
