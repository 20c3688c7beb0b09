//! One run: starts the sessions, lets them warm up, samples the CPU time of the target process
//! trees and of the load tool at the start and end of the measured window, stops the sessions at
//! the end and assembles the report.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::affinity::{self, AffinityError};
use crate::cli::{self, Args, BearerError};
use crate::procfs::{self, ProcError, Stat};
use crate::session::{self, Session, Target, TargetError};
use crate::stats::{Cpu, PidReport, Report, Tally, TargetReport};

const PROC: &str = "/proc";
/// Pause after a failed call or handshake, so a server that is down is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long the sessions get to notice the end of the window before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Most handshakes at once: 8,192 sessions starting together would overflow the target's
/// listen backlog (SYNs dropped, retried a second later) and open all their upstream sessions
/// in one burst; a bounded ramp opens them as fast as the target takes them instead.
pub const MAX_OPENING: usize = 64;
/// Above this many sessions the load tool raises its open-file limit to the hard limit.
const NOFILE_HEADROOM: u32 = 512;

/// Why a run could not be done (errors of single calls are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("cannot pin the target: {0}")]
    Affinity(#[from] AffinityError),
    #[error(transparent)]
    Bearer(#[from] BearerError),
}

/// The headers sent with every request: each `--request-header`, then the `--bearer-file`'s.
pub fn request_headers(args: &Args) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, BearerError> {
    let mut headers = args.request_headers.clone();
    if let Some(path) = &args.bearer_file {
        headers.push(cli::bearer_header(path)?);
    }
    Ok(headers)
}

/// Shared by the sessions of a run: the handshake ramp and how many sessions are open.
struct Opening {
    permits: Semaphore,
    /// Sessions whose handshake is done and not lost since (a 404, a failed re-handshake, a close).
    ready: AtomicU32,
}

impl Opening {
    fn track(&self, was_ready: bool, is_ready: bool) {
        match (was_ready, is_ready) {
            (false, true) => {
                self.ready.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.ready.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    // A session that panicked mid-update leaves counts that are still usable.
    tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One session's closed loop until `end`. Calls that start before `measure_start` are warm-up;
/// a call still running at `end` is abandoned and not counted.
async fn drive(
    mut session: Session,
    tally: Arc<Mutex<Tally>>,
    opening: Arc<Opening>,
    measure_start: Instant,
    end: Instant,
    calls_per_session: u64,
) {
    // Churning sessions, nothing is abandoned at `end`: a handshake cut short would leave the
    // server a session nobody can close (it lingers until its idle TTL) and skew what a memory
    // check sees. The step in flight finishes (bounded by the request timeout), then the
    // session is closed.
    let churn = calls_per_session > 0;
    let end_tokio = tokio::time::Instant::from_std(end);
    loop {
        if churn && session.calls_done() >= calls_per_session {
            let closed = session.close().await;
            opening.track(true, session.is_ready());
            let mut t = lock(&tally);
            match closed {
                Ok(()) => t.sessions_closed += 1,
                Err(e) => t.record_error(e.kind()),
            }
        }
        let started = Instant::now();
        if started >= end {
            break;
        }
        let measured = started >= measure_start;
        let was_ready = session.is_ready();
        let step = async {
            if session.is_ready() {
                session.call_echo().await.map(|()| true)
            } else {
                // The semaphore is never closed; without a permit the handshake just goes ahead.
                let _permit = opening.permits.acquire().await.ok();
                session.handshake().await.map(|()| false)
            }
        };
        let result = if churn {
            step.await
        } else {
            tokio::select! {
                r = step => r,
                _ = sleep_until(end_tokio) => break,
            }
        };
        let elapsed = started.elapsed();
        opening.track(was_ready, session.is_ready());
        match result {
            Ok(true) => {
                let mut t = lock(&tally);
                if measured && Instant::now() <= end {
                    t.record_call(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
                } else if !measured {
                    t.warmup_calls += 1;
                }
            }
            Ok(false) => {}
            Err(error) => {
                {
                    let mut t = lock(&tally);
                    if measured {
                        t.record_error(error.kind());
                    } else {
                        t.warmup_errors += 1;
                    }
                }
                let resume = (tokio::time::Instant::now() + ERROR_PAUSE).min(end_tokio);
                sleep_until(resume).await;
            }
        }
    }
    if churn && session.is_ready() && session.close().await.is_ok() {
        opening.track(true, false);
        lock(&tally).sessions_closed += 1;
    }
}

/// CPU counters at one instant.
struct Sample {
    /// Every process (only read when there are targets).
    all: Vec<Stat>,
    me: Stat,
}

fn sample(root: &Path, with_targets: bool) -> Result<Sample, ProcError> {
    let all = if with_targets { procfs::all_stats(root)? } else { Vec::new() };
    Ok(Sample { all, me: procfs::read_stat(root, std::process::id())? })
}

fn target_report(root: &Path, pids: &[u32], start: &Sample, end: &Sample, tps: u64, calls: u64) -> TargetReport {
    let union_end = procfs::tree(&end.all, pids);
    let union_start = procfs::tree(&start.all, pids);
    let per_pid = pids
        .iter()
        .map(|&pid| {
            let tree_end = procfs::tree(&end.all, &[pid]);
            let tree_start = procfs::tree(&start.all, &[pid]);
            let only = |v: &[Stat]| v.iter().filter(|s| s.pid == pid).copied().collect::<Vec<_>>();
            PidReport {
                pid,
                process: Cpu::new(procfs::cpu_ticks_between(&only(&tree_start), &only(&tree_end)), tps, calls),
                process_rss_kib: procfs::rss_kib(root, [pid]),
                tree: Cpu::new(procfs::cpu_ticks_between(&tree_start, &tree_end), tps, calls),
                tree_rss_kib: procfs::rss_kib(root, tree_end.iter().map(|s| s.pid)),
                tree_pids: tree_end.iter().map(|s| s.pid).collect(),
            }
        })
        .collect();
    TargetReport {
        cpu: Cpu::new(procfs::cpu_ticks_between(&union_start, &union_end), tps, calls),
        rss_kib: procfs::rss_kib(root, union_end.iter().map(|s| s.pid)),
        pids: union_end.iter().map(|s| s.pid).collect(),
        per_pid,
    }
}

/// Runs the load described by `args` and measures it.
pub async fn run(args: &Args, command_line: Vec<String>) -> Result<Report, RunError> {
    let root = Path::new(PROC);
    let headers = request_headers(args)?;
    let target = Arc::new(Target::resolve(&args.url).await?.with_headers(headers).with_tool(&args.tool));
    // One socket per session: thousands need more than the usual soft limit of 1,024 files.
    let nofile_limit =
        if args.sessions > NOFILE_HEADROOM { crate::hold::raise_nofile_limit().ok().flatten() } else { None };
    for &pid in &args.pids {
        procfs::read_stat(root, pid)?;
    }
    if let Some(cpus) = &args.pin_target {
        let tree: Vec<u32> = procfs::tree(&procfs::all_stats(root)?, &args.pids).iter().map(|s| s.pid).collect();
        affinity::pin_processes(root, &tree, cpus)?;
    }

    let payload: Arc<str> = session::payload(args.payload_bytes).into();
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let tally = Arc::new(Mutex::new(Tally::new()));
    let measure_start = Instant::now() + Duration::from_secs(args.warmup);
    let end = measure_start + Duration::from_secs(args.duration);
    let opening = Arc::new(Opening { permits: Semaphore::new(MAX_OPENING), ready: AtomicU32::new(0) });
    let mut sessions = JoinSet::new();
    for _ in 0..args.sessions {
        let session = Session::new(target.clone(), timeout, args.quick_ack, payload.clone());
        sessions.spawn(drive(session, tally.clone(), opening.clone(), measure_start, end, args.calls_per_session));
    }

    let with_targets = !args.pids.is_empty();
    sleep_until(tokio::time::Instant::from_std(measure_start)).await;
    let ready_at_start = opening.ready.load(Ordering::Relaxed);
    let first = sample(root, with_targets)?;
    sleep_until(tokio::time::Instant::from_std(end)).await;
    let last = sample(root, with_targets)?;
    let ready_at_end = opening.ready.load(Ordering::Relaxed);

    // Each session stops by itself at `end`; the grace only guards against a stuck one.
    // Churning sessions finish their step and close (each bounded by the request timeout).
    let grace = if args.calls_per_session > 0 { STOP_GRACE + timeout * 2 } else { STOP_GRACE };
    let drained = tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        sessions.abort_all();
    }

    let tps = procfs::ticks_per_second();
    let t = lock(&tally);
    let target = with_targets.then(|| target_report(root, &args.pids, &first, &last, tps, t.calls));
    Ok(Report {
        command_line,
        label: args.label.clone().unwrap_or_else(|| args.url.clone()),
        url: args.url.clone(),
        protocol_version: session::PROTOCOL_VERSION,
        sessions: args.sessions,
        sessions_ready_at_start: ready_at_start,
        sessions_ready_at_end: ready_at_end,
        nofile_limit,
        tool: args.tool.clone(),
        threads: args.threads,
        quick_ack: args.quick_ack,
        payload_bytes: args.payload_bytes,
        warmup_s: args.warmup,
        duration_s: args.duration,
        request_timeout_ms: args.request_timeout_ms,
        calls: t.calls,
        calls_per_s: t.calls as f64 / args.duration as f64,
        errors: t.errors_total(),
        errors_by_kind: t.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        warmup_calls: t.warmup_calls,
        warmup_errors: t.warmup_errors,
        sessions_closed: t.sessions_closed,
        latency_us: t.latency(),
        self_cpu: Cpu::new(last.me.cpu_ticks().saturating_sub(first.me.cpu_ticks()), tps, t.calls),
        target,
        pin_self: args.pin_self.as_ref().map(ToString::to_string),
        pin_target: args.pin_target.as_ref().map(ToString::to_string),
        clock_ticks_per_s: tps,
    })
}
