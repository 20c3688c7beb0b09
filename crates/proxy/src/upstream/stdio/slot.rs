//! Keeps one child alive: launches it, learns its era (`server/discover`) and initializes
//! it before anything else reaches it, notices at once when it dies, fails its callers, and
//! restarts it with backoff until the crash-loop limit says stop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiary_config::RestartPolicy;
use apiary_protocol::{Kind, Message, Revision, methods, modern};
use apiary_transport::launch::{BoxRead, CallerHandle, ExitReason, Launch, LaunchContext};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::{ChildConn, UnsolicitedSink};
use super::error::StdioError;

/// What the slot reports to whoever keeps the proxy's status.
#[derive(Debug, Clone)]
pub enum SlotEvent {
    Started {
        pid: Option<u32>,
    },
    /// The child died (not asked to): a restart follows unless the slot gives up.
    Exited {
        pid: Option<u32>,
        reason: ExitReason,
        shared: bool,
    },
    /// The child answered `initialize` and serves: `revision` is the newest it speaks
    /// (2026-07-28 when it offered it in `server/discover`, else the version its
    /// `initialize` result names).
    Ready {
        revision: String,
        shared: bool,
    },
    /// The child was stopped on purpose.
    Stopped {
        pid: Option<u32>,
    },
    Down {
        reason: String,
        shared: bool,
    },
    /// A restart waits `backoff` (the `attempt`th failure within the restart window).
    Backoff {
        attempt: u32,
        backoff: Duration,
        shared: bool,
    },
}

#[derive(Clone)]
enum SlotState {
    Starting,
    Ready(Arc<ChildConn>),
    Restarting,
    Down(String),
}

/// How to start and keep a child.
#[derive(Clone)]
pub struct SlotOptions {
    pub launcher: Arc<dyn Launch>,
    /// `initialize` params (JSON text) sent to every new child.
    pub init_params: String,
    pub max_line: usize,
    pub queue: usize,
    pub init_timeout: Duration,
    pub restart: RestartPolicy,
    /// Supervisors run on this tracker, so the proxy can wait for its children at shutdown.
    pub tracker: TaskTracker,
    /// The child that serves requests of no session (its death is the proxy's).
    pub shared: bool,
    /// The caller of the one session a child of its own serves (a launcher that wants it).
    pub caller: Option<CallerHandle>,
}

/// One supervised child. Dropping it (or [`ChildSlot::stop`]) stops the child.
pub struct ChildSlot {
    state: watch::Receiver<SlotState>,
    /// Counts the children that became ready: tells a live child's requests from a dead one's.
    generation: Arc<std::sync::atomic::AtomicU64>,
    init_result: Arc<Mutex<Option<Bytes>>>,
    /// The live child answered `server/discover` offering 2026-07-28.
    modern: Arc<AtomicBool>,
    /// The live child offered only 2026-07-28 and was never initialized: legacy clients
    /// reach it through the bridge (`front::legacy_bridge`).
    modern_only: Arc<AtomicBool>,
    /// The live child's `server/discover` result (JSON text), when it answered one.
    discover_result: Arc<Mutex<Option<Bytes>>>,
    cancel: CancellationToken,
}

impl ChildSlot {
    /// Starts supervising a child.
    pub fn spawn(
        opts: SlotOptions,
        unsolicited: UnsolicitedSink,
        events: mpsc::UnboundedSender<SlotEvent>,
    ) -> ChildSlot {
        let (tx, rx) = watch::channel(SlotState::Starting);
        let init_result = Arc::new(Mutex::new(None));
        let cancel = CancellationToken::new();
        let tracker = opts.tracker.clone();
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let modern = Arc::new(AtomicBool::new(false));
        let modern_only = Arc::new(AtomicBool::new(false));
        let discover_result = Arc::new(Mutex::new(None));
        // Only the shared child is probed: a child of a legacy session's own serves that
        // session alone.
        let probe = opts.shared;
        let sup = Supervisor {
            opts,
            modern: Arc::clone(&modern),
            modern_only: Arc::clone(&modern_only),
            discover_result: Arc::clone(&discover_result),
            probe: AtomicBool::new(probe),
            probe_only: AtomicBool::new(false),
            generation: Arc::clone(&generation),
            state: tx,
            init_result: Arc::clone(&init_result),
            cancel: cancel.clone(),
            unsolicited,
            events,
        };
        tracker.spawn(sup.run());
        ChildSlot { state: rx, generation, init_result, modern, modern_only, discover_result, cancel }
    }

    /// The live child, waiting up to `wait` while the first one starts. During a restart
    /// or when the upstream is down, refuses at once (bad-input.md, row 27).
    pub async fn ready(&self, wait: Duration) -> Result<Arc<ChildConn>, StdioError> {
        let mut rx = self.state.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                SlotState::Ready(conn) if !conn.is_closed() => return Ok(conn),
                SlotState::Ready(_) | SlotState::Restarting => return Err(StdioError::Restarting),
                SlotState::Down(reason) => return Err(StdioError::Down(reason)),
                SlotState::Starting => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(StdioError::StartTimeout),
            }
        }
    }

    /// The child serving now, if one is (never waits).
    pub fn live(&self) -> Option<Arc<ChildConn>> {
        match &*self.state.borrow() {
            SlotState::Ready(conn) if !conn.is_closed() => Some(Arc::clone(conn)),
            _ => None,
        }
    }

    /// Whether the child serving now speaks 2026-07-28 (it offered it in `server/discover`):
    /// modern requests then reach it as they are.
    pub fn is_modern(&self) -> bool {
        self.modern.load(Ordering::SeqCst)
    }

    /// Whether the child serving now speaks only 2026-07-28 (it was never initialized).
    pub fn is_modern_only(&self) -> bool {
        self.modern_only.load(Ordering::SeqCst)
    }

    /// The child's `server/discover` result (JSON text), when it answered the probe.
    pub fn discover_result(&self) -> Option<Bytes> {
        self.discover_result.lock().ok().and_then(|g| g.clone())
    }

    /// The child's `initialize` result (JSON text), once a child has answered it.
    pub fn init_result(&self) -> Option<Bytes> {
        self.init_result.lock().ok().and_then(|g| g.clone())
    }

    /// The generation of the newest child that became ready.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The generation of the child serving now; `None` while none is (restarting, down).
    pub fn live_generation(&self) -> Option<u64> {
        match &*self.state.borrow() {
            SlotState::Ready(conn) if !conn.is_closed() => Some(self.generation()),
            _ => None,
        }
    }

    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for ChildSlot {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Bound on writing what is queued for a stopping child before its stdin closes: a child
/// that stopped reading must not hold the stop.
const INPUT_CLOSE_LIMIT: Duration = Duration::from_secs(1);
/// How long a stopping child may take to exit after its stdin closed, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long the `server/discover` probe may stay unanswered after `initialize` was: a
/// child reading in order answered it already; one that ignores requests before
/// `initialize` (some legacy SDKs) costs only this.
const PROBE_GRACE: Duration = Duration::from_secs(2);

struct Supervisor {
    opts: SlotOptions,
    generation: Arc<std::sync::atomic::AtomicU64>,
    modern: Arc<AtomicBool>,
    modern_only: Arc<AtomicBool>,
    discover_result: Arc<Mutex<Option<Bytes>>>,
    /// Whether the next child gets the probe alone, no `initialize`: the last one offered
    /// only 2026-07-28 and refused `initialize`.
    probe_only: AtomicBool,
    /// Whether the next child is probed with `server/discover`: off after a probed child
    /// could not be brought up, in case the probe is what broke it.
    probe: AtomicBool,
    state: watch::Sender<SlotState>,
    init_result: Arc<Mutex<Option<Bytes>>>,
    cancel: CancellationToken,
    unsolicited: UnsolicitedSink,
    events: mpsc::UnboundedSender<SlotEvent>,
}

enum Ended {
    /// The proxy asked the child to stop.
    Stopped,
    /// The child died or could not be brought up.
    Failed(ExitReason),
    /// Start the child again at once, without the probe (not a failure).
    Again,
}

impl Supervisor {
    async fn run(self) {
        let mut recent: VecDeque<Instant> = VecDeque::new();
        loop {
            match self.one_child().await {
                Ended::Stopped => return,
                Ended::Again => {}
                Ended::Failed(reason) => {
                    let now = Instant::now();
                    recent.push_back(now);
                    while recent.front().is_some_and(|t| now.duration_since(*t) > self.opts.restart.window()) {
                        recent.pop_front();
                    }
                    if recent.len() > self.opts.restart.max_restarts as usize {
                        let why = format!(
                            "the server failed {} times within {:?}; last: {reason}",
                            recent.len(),
                            self.opts.restart.window()
                        );
                        tracing::error!(server = %self.opts.launcher.describe(), "{why}; giving up");
                        let _ = self.state.send(SlotState::Down(why.clone()));
                        let _ = self.events.send(SlotEvent::Down { reason: why, shared: self.opts.shared });
                        return;
                    }
                    let _ = self.state.send(SlotState::Restarting);
                    let backoff = backoff(&self.opts.restart, recent.len());
                    tracing::warn!(reason = %reason, ?backoff, "the server stopped; restarting");
                    let attempt = u32::try_from(recent.len()).unwrap_or(u32::MAX);
                    let _ = self.events.send(SlotEvent::Backoff { attempt, backoff, shared: self.opts.shared });
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Runs one child from launch to death.
    async fn one_child(&self) -> Ended {
        let handle = tokio::select! {
            h = self.opts.launcher.launch_with(LaunchContext { caller: self.opts.caller.clone() }) => h,
            () = self.cancel.cancelled() => return Ended::Stopped,
        };
        let handle = match handle {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the server");
                return Ended::Failed(ExitReason::other(e.to_string()));
            }
        };
        let pid = handle.pid;
        if let Some(stderr) = handle.stderr {
            tokio::spawn(pump_stderr(stderr, pid));
        }
        let kill = handle.kill;
        let mut exited = handle.exited;
        let conn = ChildConn::start(
            pid,
            handle.stdin,
            handle.stdout,
            self.opts.max_line,
            self.opts.queue,
            self.unsolicited.clone(),
        );
        let _ = self.events.send(SlotEvent::Started { pid });

        if self.probe_only.load(Ordering::SeqCst) {
            return self.modern_only_child(conn, pid, kill, exited).await;
        }
        // The probe is written just before `initialize`, so a legacy child costs no round
        // trip: it refuses (or ignores) the one and answers the other.
        let probing = self.probe.load(Ordering::SeqCst);
        let probe = probing.then(|| conn.start_own(methods::SERVER_DISCOVER, &probe_params()).ok()).flatten();
        let init = tokio::select! {
            r = tokio::time::timeout(self.opts.init_timeout, initialize(&conn, &self.opts.init_params)) => Some(r),
            () = self.cancel.cancelled() => None,
            r = &mut exited => {
                let reason = r.unwrap_or_else(|_| ExitReason::other("the server vanished"));
                let _ = kill;
                self.probe.store(false, Ordering::SeqCst);
                conn.fail_all(&reason.description);
                let _ = self.events.send(SlotEvent::Exited { pid, reason: reason.clone(), shared: self.opts.shared });
                return Ended::Failed(reason);
            }
        };
        let Some(init) = init else {
            drop(kill);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
            conn.fail_all("the proxy is stopping");
            let _ = self.events.send(SlotEvent::Stopped { pid });
            return Ended::Stopped;
        };
        let discovered = match probe {
            Some(rx) => discover_result(tokio::time::timeout(PROBE_GRACE, ChildConn::own_answer(rx)).await),
            None => None,
        };
        let modern = discovered.as_deref().is_some_and(modern::offers_modern);
        self.modern.store(modern, Ordering::SeqCst);
        self.modern_only.store(false, Ordering::SeqCst);
        self.set_discover_result(discovered.clone());
        let init = match init {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) | Err(_) if modern && !discovered.as_deref().is_some_and(modern::offers_legacy) => {
                // It offers 2026-07-28 alone and refuses `initialize`, as a modern-only
                // server does: the next child gets the probe alone, and legacy clients are
                // bridged to it (issue 18, part 5).
                tracing::info!(pid, "the server speaks only 2026-07-28; starting it again without initialize");
                self.probe_only.store(true, Ordering::SeqCst);
                drop(kill);
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
                conn.fail_all("the server is restarting");
                let _ = self.events.send(SlotEvent::Stopped { pid });
                return Ended::Again;
            }
            Ok(Err(_)) | Err(_) if modern => {
                // It offers both eras but serves only the one it was first spoken to in (the
                // Python SDK does): it is started again without the probe, initialized, and
                // modern clients are bridged to it.
                tracing::info!(
                    pid,
                    "the server speaks 2026-07-28 but then refuses initialize; starting it again \
                     without the probe so that legacy clients keep working"
                );
                self.probe.store(false, Ordering::SeqCst);
                self.modern.store(false, Ordering::SeqCst);
                drop(kill);
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
                conn.fail_all("the server is restarting");
                let _ = self.events.send(SlotEvent::Stopped { pid });
                return Ended::Again;
            }
            Ok(Err(e)) => Err(format!("initialize failed: {e}")),
            Err(_) => Err(format!("initialize got no answer within {:?}", self.opts.init_timeout)),
        };
        let failed = match init {
            Ok(result) => {
                let revision =
                    if modern { Some(Revision::V2026_07_28.as_str().to_owned()) } else { protocol_version(&result) };
                if let Some(revision) = revision {
                    let _ = self.events.send(SlotEvent::Ready { revision, shared: self.opts.shared });
                }
                if let Ok(mut g) = self.init_result.lock() {
                    *g = Some(result);
                }
                let _ = conn.send(Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#));
                tracing::info!(
                    pid,
                    era = if modern { "2026-07-28 and legacy" } else { "legacy" },
                    "the server is ready"
                );
                self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = self.state.send(SlotState::Ready(Arc::clone(&conn)));
                None
            }
            Err(why) => {
                if probing {
                    self.probe.store(false, Ordering::SeqCst);
                }
                Some(why)
            }
        };
        if let Some(why) = failed {
            tracing::error!(pid, "{why}");
            drop(kill);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
            conn.fail_all(&why);
            return Ended::Failed(ExitReason::other(why));
        }

        self.serve_until_end(conn, pid, kill, exited).await
    }
}

impl Supervisor {
    /// Serves a ready child until it dies or the proxy stops it.
    async fn serve_until_end(
        &self,
        conn: Arc<ChildConn>,
        pid: Option<u32>,
        kill: tokio::sync::oneshot::Sender<()>,
        mut exited: tokio::sync::oneshot::Receiver<ExitReason>,
    ) -> Ended {
        let reason = tokio::select! {
            r = &mut exited => {
                // Let the reader drain what the child wrote just before it died.
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.closed()).await;
                r.unwrap_or_else(|_| ExitReason::other("the server vanished"))
            }
            () = conn.closed() => {
                drop(kill);
                match tokio::time::timeout(Duration::from_secs(5), &mut exited).await {
                    Ok(Ok(r)) => ExitReason::other(format!("closed its output, then {}", r.description)),
                    _ => ExitReason::other("closed its output"),
                }
            }
            () = self.cancel.cancelled() => {
                // The spec's stdio shutdown: what is queued (a session's cancellations) is
                // written, stdin closes, the child gets a moment to exit on its own, then the kill.
                let _ = tokio::time::timeout(INPUT_CLOSE_LIMIT, conn.close_input()).await;
                // (A finished `exited` must not be polled again.)
                let gone = tokio::time::timeout(EXIT_GRACE, &mut exited).await.is_ok();
                drop(kill);
                if !gone {
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
                }
                conn.fail_all("the proxy is stopping");
                let _ = self.events.send(SlotEvent::Stopped { pid });
                return Ended::Stopped;
            }
        };
        conn.fail_all(&reason.description);
        let _ = self.events.send(SlotEvent::Exited { pid, reason: reason.clone(), shared: self.opts.shared });
        Ended::Failed(reason)
    }

    fn set_discover_result(&self, result: Option<Bytes>) {
        if let Ok(mut g) = self.discover_result.lock() {
            *g = result;
        }
    }

    /// A child known to speak only 2026-07-28: probed, never initialized, then served
    /// until it dies or the proxy stops.
    async fn modern_only_child(
        &self,
        conn: Arc<ChildConn>,
        pid: Option<u32>,
        kill: tokio::sync::oneshot::Sender<()>,
        mut exited: tokio::sync::oneshot::Receiver<ExitReason>,
    ) -> Ended {
        let answer = match conn.start_own(methods::SERVER_DISCOVER, &probe_params()) {
            Ok(rx) => tokio::select! {
                a = tokio::time::timeout(self.opts.init_timeout, ChildConn::own_answer(rx)) => discover_result(a),
                () = self.cancel.cancelled() => {
                    drop(kill);
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
                    conn.fail_all("the proxy is stopping");
                    let _ = self.events.send(SlotEvent::Stopped { pid });
                    return Ended::Stopped;
                }
            },
            Err(_) => None,
        };
        let Some(result) = answer.filter(|r| modern::offers_modern(r)) else {
            // Not the server it was: the next child is probed and initialized again.
            self.probe_only.store(false, Ordering::SeqCst);
            drop(kill);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
            let why = "server/discover got no 2026-07-28 answer from a server that offered it before";
            conn.fail_all(why);
            return Ended::Failed(ExitReason::other(why));
        };
        self.modern.store(true, Ordering::SeqCst);
        self.modern_only.store(true, Ordering::SeqCst);
        self.set_discover_result(Some(result));
        if let Ok(mut g) = self.init_result.lock() {
            *g = None;
        }
        tracing::info!(pid, era = "2026-07-28 only", "the server is ready");
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self.state.send(SlotState::Ready(Arc::clone(&conn)));
        self.serve_until_end(conn, pid, kill, exited).await
    }
}

/// The `protocolVersion` an `initialize` result names, read alone.
fn protocol_version(result: &[u8]) -> Option<String> {
    let at = apiary_protocol::splice::find_member(result, 0..result.len(), "protocolVersion").ok()??;
    serde_json::from_slice(&result[at]).ok()
}

/// The `server/discover` params of Apiary's probe.
fn probe_params() -> String {
    modern::probe_params("apiary", env!("CARGO_PKG_VERSION"))
}

/// The probe's result (JSON text), if a result came in time.
fn discover_result(answer: Result<Result<Message, StdioError>, tokio::time::error::Elapsed>) -> Option<Bytes> {
    match answer {
        Ok(Ok(m)) if m.kind() == Kind::Response => m.payload_raw().map(|r| Bytes::copy_from_slice(r.as_bytes())),
        _ => None,
    }
}

/// Sends Apiary's own `initialize` and returns the result's JSON text.
async fn initialize(conn: &ChildConn, params: &str) -> Result<Bytes, String> {
    let answer = conn.call_own(methods::INITIALIZE, params).await.map_err(|e| e.to_string())?;
    match (answer.kind(), answer.payload_raw()) {
        (Kind::Response, Some(result)) => Ok(Bytes::copy_from_slice(result.as_bytes())),
        (_, payload) => Err(payload.unwrap_or("no result").chars().take(300).collect()),
    }
}

/// Keeps a local HTTP server process running (it speaks HTTP itself; the proxy only
/// forwards to it): restarts it with backoff, logs its output, stops it at shutdown.
pub async fn supervise_process(
    launcher: Arc<dyn Launch>,
    policy: RestartPolicy,
    events: mpsc::UnboundedSender<SlotEvent>,
    stop: CancellationToken,
) {
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        let handle = tokio::select! {
            h = launcher.launch() => h,
            () = stop.cancelled() => return,
        };
        let reason = match handle {
            Err(e) => ExitReason::other(e.to_string()),
            Ok(h) => {
                let pid = h.pid;
                let _ = events.send(SlotEvent::Started { pid });
                tokio::spawn(pump_stderr(h.stdout, pid));
                if let Some(err) = h.stderr {
                    tokio::spawn(pump_stderr(err, pid));
                }
                let kill = h.kill;
                let mut exited = h.exited;
                tokio::select! {
                    r = &mut exited => {
                        let reason = r.unwrap_or_else(|_| ExitReason::other("the server vanished"));
                        let _ = events.send(SlotEvent::Exited { pid, reason: reason.clone(), shared: true });
                        reason
                    }
                    () = stop.cancelled() => {
                        drop(kill);
                        let _ = tokio::time::timeout(Duration::from_secs(5), &mut exited).await;
                        let _ = events.send(SlotEvent::Stopped { pid });
                        return;
                    }
                }
            }
        };
        let now = Instant::now();
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.duration_since(*t) > policy.window()) {
            recent.pop_front();
        }
        if recent.len() > policy.max_restarts as usize {
            let why = format!("the server failed {} times within {:?}; last: {reason}", recent.len(), policy.window());
            let _ = events.send(SlotEvent::Down { reason: why, shared: true });
            return;
        }
        let delay = backoff(&policy, recent.len());
        let attempt = u32::try_from(recent.len()).unwrap_or(u32::MAX);
        let _ = events.send(SlotEvent::Backoff { attempt, backoff: delay, shared: true });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn backoff(policy: &RestartPolicy, failures: usize) -> Duration {
    let exp = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
    policy.backoff_initial().saturating_mul(1 << exp).min(policy.backoff_max())
}

/// The child's stderr is its log: each line goes to the workload log, never parsed.
async fn pump_stderr(stderr: BoxRead, pid: Option<u32>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "apiary::server", pid, "{}", line.chars().take(4096).collect::<String>());
    }
}
