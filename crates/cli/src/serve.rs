//! Serving one workload in this process: what `apiary __serve NAME` does after `apiary run`
//! started it detached, and what `run --foreground` does in the terminal.
//!
//! It holds the workload's lock, loads the saved RunConfig, starts the proxy with a process
//! launcher, and keeps the status record current from the proxy's status watch until SIGTERM,
//! SIGINT or SIGHUP; then it shuts the proxy down (which stops every child) and records `stopped`.
//! Meanwhile it checks the server's health (ToolHive's intervals, `apiary_runtime::health`): a
//! stdio child must answer `ping`, a local HTTP server accept a connection; past the failure
//! threshold the record says `unhealthy`, and `running` again once a check passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use apiary_config::{RunConfig, Source};
use apiary_proxy::{ProxyHandle, UpstreamState, UpstreamStatus};
use apiary_runtime::clock::{now_rfc3339, rfc3339_from_unix};
use apiary_runtime::health::{HealthSettings, HealthTracker, Verdict, tcp_probe};
use apiary_runtime::log::{DEFAULT_LOG_CAP, LogFile};
use apiary_runtime::pid::ProcRef;
use apiary_runtime::process::ProcessLauncher;
use apiary_runtime::state::{KubeWorkload, NextRestart, StateDir, StateError, WorkloadRecord, WorkloadState};
use apiary_transport::launch::Launch;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::k8s_runtime::RuntimeKind;
use crate::logging::{self, LogRole};

/// Longest wait for the proxy to stop its children and close; past it the process exits anyway
/// (children then get SIGKILL from `kill_on_drop` and `apiary stop`'s sweep).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(20);

/// A health check in flight (see [`check_once`]).
type HealthCheck<'a> = Pin<Box<dyn Future<Output = Option<Result<(), String>>> + Send + 'a>>;

/// `apiary __serve NAME` (hidden).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Workload to serve
    pub name: String,
    /// Where an image runs (as `apiary run --runtime`)
    #[arg(long)]
    pub runtime: Option<String>,
}

/// The detached role: a session of its own, logs into the workload's proxy log.
pub async fn serve_detached(args: ServeArgs, debug: bool) -> anyhow::Result<()> {
    // A new session has no controlling terminal: closing the terminal `apiary run` ran in sends
    // nothing here, and a Ctrl-C there never reaches this process or its children.
    let _ = rustix::process::setsid();
    let state = StateDir::from_env()?;
    state.ensure()?;
    let log = LogFile::open(state.proxy_log_path(&args.name)?, DEFAULT_LOG_CAP).context("opening the proxy log")?;
    logging::init(LogRole::Detached, debug, Some(Arc::new(log)))?;
    let result = match crate::k8s_runtime::select(args.runtime.as_deref()) {
        Ok(runtime) => serve_workload(&state, &args.name, false, runtime, None).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    result
}

/// The foreground role: serve in this terminal until Ctrl-C, printing the URL once listening,
/// in `runtime` (`apiary run --runtime`, or the one a workload ran in before). `secret` is a
/// remote-auth client secret given on the command line.
pub async fn serve_foreground_in(
    state: &StateDir,
    name: &str,
    runtime: RuntimeKind,
    secret: Option<&str>,
) -> anyhow::Result<()> {
    serve_workload(state, name, true, runtime, secret).await
}

/// SIGTERM, SIGINT and SIGHUP, installed before anything starts so that none of them can end the
/// process without the children being stopped and the record written.
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl StopSignals {
    pub fn install() -> anyhow::Result<Self> {
        let make = |kind| signal(kind).context("installing a signal handler");
        Ok(StopSignals {
            term: make(SignalKind::terminate())?,
            int: make(SignalKind::interrupt())?,
            hup: make(SignalKind::hangup())?,
        })
    }

    /// The name of the next stop signal received.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

async fn serve_workload(
    state: &StateDir,
    name: &str,
    foreground: bool,
    runtime: RuntimeKind,
    secret: Option<&str>,
) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let _lock = match state.lock(name) {
        Ok(l) => l,
        Err(StateError::Locked(_)) => {
            bail!("workload {name:?} is already being served by another apiary process")
        }
        Err(e) => return Err(e.into()),
    };
    let mut config = state.load_config(name)?;
    // A hand-written RunConfig may leave ports at 0; pick them for this run only.
    crate::run_cmd::resolve_ports(&mut config)?;
    let settings = HealthSettings::from_env().context("the health check settings")?;
    let http_target = http_check_target(state, &config, runtime)?;
    // The remote login's session, left by `apiary run`/`start` in the terminal.
    let session = crate::remote_login::session_path(state, name)?;
    crate::remote_login::attach(&mut config, session, crate::remote_login::workload_hint(name), secret);
    // A workload started before in a cluster keeps its namespace.
    let namespace =
        state.load_record(name)?.and_then(|r| r.kubernetes).map_or_else(crate::k8s_runtime::namespace, |k| k.namespace);
    let (launcher, engine) = launcher_for(state, &config, runtime, &namespace).await?;

    let mut rec = WorkloadRecord::stopped(&config);
    if runtime == RuntimeKind::Kubernetes && matches!(config.source, Source::Image(_)) {
        // Kept after the stop: `apiary stop` scales this StatefulSet down, `apiary rm` deletes it.
        rec.kubernetes = Some(KubeWorkload { namespace, statefulset: config.name.clone() });
    }
    rec.container = engine.clone().map(|engine| apiary_runtime::state::ContainerWorkload { engine });
    rec.state = WorkloadState::Starting;
    rec.proxy = Some(ProcRef::capture(std::process::id()));
    rec.started_at = Some(now_rfc3339());
    state.save_record(&rec)?;

    let handle = match apiary_proxy::start(config, launcher).await {
        Ok(h) => h,
        Err(e) => {
            rec.state = WorkloadState::Error;
            rec.error = Some(format!("the proxy could not start: {e}"));
            rec.proxy = None;
            let _ = state.save_record(&rec);
            return Err(anyhow::Error::new(e).context("the proxy could not start"));
        }
    };
    let url = handle.url();
    rec.listen_addr = Some(handle.local_addr().to_string());
    rec.url = Some(url.clone());
    let mut status = handle.status();
    let mut health = HealthTracker::new(settings);
    let mut verdict = Verdict::Healthy;
    apply_status(&mut rec, &status.borrow_and_update(), &verdict);
    state.save_record(&rec)?;
    tracing::info!(workload = name, %url, "serving");
    if foreground {
        crate::output::emit_line(&url);
    }
    // Serving from here on: what only starting needed can leave this process's memory.
    crate::trim::after_start();

    let token = handle.shutdown_token();
    // A remote server's status is published once (running) and its sender then dropped: a
    // closed status channel is not a reason to stop serving, only to stop watching it.
    let mut publishing = true;
    let mut next_check = tokio::time::Instant::now() + settings.interval;
    // The check in flight, polled beside the signals so that it never delays a stop.
    let mut check: Option<HealthCheck<'_>> = None;
    loop {
        tokio::select! {
            changed = status.changed(), if publishing => {
                if changed.is_err() {
                    tracing::debug!("the proxy publishes no more status changes");
                    publishing = false;
                    continue;
                }
                let now = status.borrow_and_update().clone();
                if now.state != UpstreamState::Running {
                    // A restarted child starts with a clean slate; a down one is shown as down.
                    health.reset();
                    verdict = Verdict::Healthy;
                }
                apply_status(&mut rec, &now, &verdict);
                if let Err(e) = state.save_record(&rec) {
                    tracing::warn!(error = %e, "cannot update the status record");
                }
            }
            () = tokio::time::sleep_until(next_check), if check.is_none() => {
                check = Some(Box::pin(check_once(&handle, http_target.as_ref(), settings.ping_timeout)));
            }
            result = async {
                match check.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            } => {
                check = None;
                let after = match result {
                    Some(r) => {
                        if let Err(why) = &r {
                            tracing::warn!(workload = name, reason = %why, "health check failed");
                        }
                        health.record(r)
                    }
                    None => {
                        health.reset();
                        Verdict::Healthy
                    }
                };
                next_check = tokio::time::Instant::now() + health.next_delay();
                if after != verdict {
                    match &after {
                        Verdict::Healthy => tracing::info!(workload = name, "the server is healthy again"),
                        Verdict::Unhealthy { failures, reason } => {
                            tracing::error!(workload = name, failures, reason = %reason, "the server is unhealthy");
                        }
                    }
                    verdict = after;
                    apply_status(&mut rec, &status.borrow().clone(), &verdict);
                    if let Err(e) = state.save_record(&rec) {
                        tracing::warn!(error = %e, "cannot update the status record");
                    }
                }
            }
            sig = signals.recv() => {
                tracing::info!(signal = sig, "stopping");
                break;
            }
            () = token.cancelled() => break,
        }
    }
    drop(check);
    rec.state = WorkloadState::Stopping;
    let _ = state.save_record(&rec);
    shutdown(handle).await;
    if let Some(engine) = &engine {
        crate::container_runtime::remove_leftovers(engine, name).await;
    }
    rec.mark_stopped();
    state.save_record(&rec)?;
    tracing::info!(workload = name, "stopped");
    Ok(())
}

async fn shutdown(handle: ProxyHandle) {
    if tokio::time::timeout(SHUTDOWN_LIMIT, handle.shutdown()).await.is_err() {
        tracing::warn!("the proxy did not stop within {} s; exiting anyway", SHUTDOWN_LIMIT.as_secs());
    }
}

/// The launcher for a workload's local server (`None` for remote servers), and the container
/// engine's endpoint when the server runs in containers.
async fn launcher_for(
    state: &StateDir,
    config: &RunConfig,
    runtime: RuntimeKind,
    namespace: &str,
) -> anyhow::Result<(Option<Arc<dyn Launch>>, Option<String>)> {
    if matches!(config.source, Source::Image(_)) && runtime == RuntimeKind::Local {
        let (launcher, engine) = crate::container_runtime::launcher(state, config).await?;
        return Ok((Some(launcher), Some(engine)));
    }
    let launcher: anyhow::Result<Option<Arc<dyn Launch>>> = match &config.source {
        Source::Package(_) | Source::Command(_) => {
            let log =
                LogFile::open(state.log_path(&config.name)?, DEFAULT_LOG_CAP).context("opening the server log")?;
            let helper = std::env::current_exe().context("finding the apiary binary for the sandbox")?;
            let mut launcher =
                ProcessLauncher::for_run_config(config)?.isolated(config, helper).stderr_to(Arc::new(log));
            if apiary_runtime::inbound::needs_socket(config, true) {
                launcher = launcher.reached_through(state.upstream_socket_path(&config.name)?);
            }
            let launcher = crate::secret_cmd::with_secrets(launcher, state, config)?;
            launcher.check_program()?;
            Ok(Some(Arc::new(launcher)))
        }
        Source::Remote(_) => Ok(None),
        Source::Image(_) if runtime == RuntimeKind::Kubernetes => {
            Ok(Some(crate::k8s_runtime::launcher(state, config, namespace).await?))
        }
        Source::Image(i) => bail!("workload {:?}: image {} has no runtime to run in", config.name, i.reference),
    };
    Ok((launcher?, None))
}

/// Where a local HTTP server's health is checked: its port, or the Unix socket it is reached
/// through from its private network namespace.
enum HttpTarget {
    Port(String, u16),
    Socket(std::path::PathBuf),
}

/// Where a local HTTP server's health is checked, `None` when the check is a `ping`
/// (stdio) or there is none (remote servers: ToolHive checks those only when asked).
fn http_check_target(state: &StateDir, config: &RunConfig, runtime: RuntimeKind) -> anyhow::Result<Option<HttpTarget>> {
    if apiary_runtime::inbound::needs_socket(config, runtime == RuntimeKind::Local) {
        return Ok(Some(HttpTarget::Socket(state.upstream_socket_path(&config.name)?)));
    }
    let local = matches!(config.source, Source::Package(_) | Source::Command(_));
    Ok((local && config.effective_transport().is_http() && config.target_port != 0)
        .then(|| HttpTarget::Port(config.target_host.clone(), config.target_port)))
}

/// One health check: `ping` through the proxy for stdio, a connection for a local HTTP server.
/// `None` when there is nothing to check now (no child serving: the status says why).
async fn check_once(
    handle: &ProxyHandle,
    http_target: Option<&HttpTarget>,
    timeout: Duration,
) -> Option<Result<(), String>> {
    match http_target {
        Some(target) => {
            let running = handle.status().borrow().state == UpstreamState::Running;
            if !running {
                return None;
            }
            Some(match target {
                HttpTarget::Port(host, port) => tcp_probe(host, *port, timeout).await,
                HttpTarget::Socket(path) => apiary_runtime::inbound::probe(path, timeout).await,
            })
        }
        None => handle.ping_upstream(timeout).await,
    }
}

/// Copies the proxy's view of the upstream, and the health checks' verdict, into the record.
fn apply_status(rec: &mut WorkloadRecord, status: &UpstreamStatus, verdict: &Verdict) {
    let failing = match verdict {
        Verdict::Unhealthy { failures, reason } if status.state == UpstreamState::Running => {
            Some(format!("the health check failed {failures} times in a row: {reason}"))
        }
        _ => None,
    };
    rec.state = match status.state {
        UpstreamState::Starting => WorkloadState::Starting,
        UpstreamState::Running if failing.is_some() => WorkloadState::Unhealthy,
        UpstreamState::Running => WorkloadState::Running,
        UpstreamState::Restarting => WorkloadState::Restarting,
        UpstreamState::Down => WorkloadState::Unhealthy,
    };
    rec.restarts = status.restarts;
    rec.last_exit.clone_from(&status.last_exit);
    rec.error = match status.state {
        UpstreamState::Down => Some(match &status.last_exit {
            Some(why) => format!("the server is down (last exit: {why})"),
            None => "the server is down".to_owned(),
        }),
        _ => failing,
    };
    rec.next_restart = status.next_restart.map(|plan| {
        // Unchanged plan, unchanged due time: later status changes must not push it back.
        match &rec.next_restart {
            Some(old) if old.attempt == plan.attempt && old.backoff_ms == plan.backoff_ms => old.clone(),
            _ => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                let due = now.saturating_add(Duration::from_millis(plan.backoff_ms));
                NextRestart { attempt: plan.attempt, backoff_ms: plan.backoff_ms, at: rfc3339_from_unix(due.as_secs()) }
            }
        }
    });
    // Keep start times captured earlier: a pid read again later could already be someone else's.
    let old = std::mem::take(&mut rec.children);
    rec.children = status
        .child_pids
        .iter()
        .map(|&pid| old.iter().find(|c| c.pid == pid).copied().unwrap_or_else(|| ProcRef::capture(pid)))
        .collect();
}

/// Runs a proxy that is not a saved workload (`apiary proxy`) until a stop signal.
pub async fn run_standalone(config: RunConfig, launcher: Option<Arc<dyn Launch>>) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let handle = apiary_proxy::start(config, launcher).await.context("the proxy could not start")?;
    let url = handle.url();
    tracing::info!(%url, "serving");
    crate::output::emit_line(&url);
    crate::trim::after_start();
    let token = handle.shutdown_token();
    tokio::select! {
        sig = signals.recv() => tracing::info!(signal = sig, "stopping"),
        () = token.cancelled() => {}
    }
    shutdown(handle).await;
    Ok(())
}
