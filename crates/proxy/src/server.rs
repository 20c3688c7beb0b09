//! Starting and stopping one proxy: binds the listener, builds the upstream, serves until
//! told to stop, then stops every child it started and waits for them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use apiary_config::{ProxyMode, RunConfig, Transport};
use apiary_transport::launch::Launch;
use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::front::edge::EdgePolicy;
use crate::front::reverse_proxy::HttpUpstream;
use crate::front::state::StdioFront;
use crate::guard::{Guard, WELL_KNOWN};
use crate::status::{UpstreamState, UpstreamStatus};
use crate::upstream::stdio::{ChildConn, SlotEvent, SlotOptions};
use apiary_protocol::{Kind, Message};
use bytes::Bytes;

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the configuration needs a launcher for its {0} server, and none was given")]
    NoLauncher(&'static str),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Policy(#[from] crate::guard::GuardError),
    #[error("{0}")]
    Diagnostics(#[from] crate::telemetry::DiagnosticsError),
}

/// A running proxy.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    diagnostics_addr: Option<SocketAddr>,
    path: &'static str,
    status: watch::Receiver<UpstreamStatus>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    /// The stdio front, for [`ProxyHandle::ping_upstream`] (weak: the handle keeps nothing alive).
    stdio: Option<std::sync::Weak<StdioFront>>,
}

impl ProxyHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the diagnostics listener serving `/metrics`, when it is on.
    pub fn diagnostics_addr(&self) -> Option<SocketAddr> {
        self.diagnostics_addr
    }

    /// The URL a client uses: `/mcp`, or `/sse` when the proxy mode is `sse`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.path)
    }

    /// Changes to the upstream's state, restarts and exits. Clone what you read
    /// (`status().borrow().clone()`) and never hold a borrow across an `.await`: a held
    /// borrow blocks the proxy's status updates, and with them its shutdown.
    pub fn status(&self) -> watch::Receiver<UpstreamStatus> {
        self.status.clone()
    }

    /// A token that stops the proxy when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, ends open streams, stops every child, and waits for all of it.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// The health check of a stdio upstream: sends `ping` to the shared child and waits up to
    /// `timeout` for the answer. `None` when there is nothing to ping: not a stdio upstream, or
    /// no child serving right now (starting, restarting, down: the status says which).
    pub async fn ping_upstream(&self, timeout: Duration) -> Option<Result<(), String>> {
        let front = self.stdio.as_ref()?.upgrade()?;
        let conn = front.placement.shared.slot.live()?;
        drop(front);
        let ping = Message::parse(Bytes::from_static(br#"{"jsonrpc":"2.0","id":0,"method":"ping","params":{}}"#));
        let ping = match ping {
            Ok(m) => m,
            Err(e) => return Some(Err(e.to_string())),
        };
        let (tx, rx) = mpsc::channel(4);
        let id = match conn.request(&ping, tx) {
            Ok(id) => id,
            Err(e) => return Some(Err(e.to_string())),
        };
        Some(match tokio::time::timeout(timeout, ChildConn::own_answer(rx)).await {
            Ok(Ok(answer)) if answer.kind() == Kind::Response => Ok(()),
            Ok(Ok(_)) => Err("the server answered ping with an error".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                // Nothing waits for a late answer: the pending entry goes now, not with the child.
                conn.abandon(id, "health check timed out");
                Err(format!("no answer to ping within {} ms", timeout.as_millis()))
            }
        })
    }

    /// Waits until the proxy stops (its shutdown token was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts a proxy for `config`. `launcher` starts the server for local sources (stdio, or
/// a local HTTP server); remote sources need none.
pub async fn start(config: RunConfig, launcher: Option<Arc<dyn Launch>>) -> Result<ProxyHandle, StartError> {
    start_with_routes(config, launcher, Router::new()).await
}

/// [`start`] with `extra` routes served beside `/health`: outside the policy layers and
/// the edge checks, like it (the vMCP's `/status` and `/api/backends/health`).
pub async fn start_with_routes(
    config: RunConfig,
    launcher: Option<Arc<dyn Launch>>,
    extra: Router,
) -> Result<ProxyHandle, StartError> {
    start_with(config, launcher, StartExtras { routes: extra, mcp_layer: None }).await
}

/// A middleware of the MCP endpoints (`/mcp`, and `/sse` + `/messages` for a stdio server):
/// given each request as the client sent it, it answers it itself or passes it on (changed or
/// not) with `next.run(request)`.
pub type McpLayer = Arc<dyn Fn(Request, Next) -> futures::future::BoxFuture<'static, Response> + Send + Sync>;

/// What a role adds to a proxy beyond its config and launcher.
pub struct StartExtras {
    /// Served beside `/health`, outside the policy layers and the edge checks (as
    /// [`start_with_routes`]).
    pub routes: Router,
    /// Runs on every request to the MCP endpoints after the edge checks (host, origin) and
    /// BEFORE the front's own layers: it sees the request as the client sent it, the
    /// `Authorization` header included (which the front removes when the proxy authenticates
    /// callers itself). Apiary's gateway decides the routes' AuthPolicies here.
    pub mcp_layer: Option<McpLayer>,
}

impl Default for StartExtras {
    fn default() -> Self {
        StartExtras { routes: Router::new(), mcp_layer: None }
    }
}

/// [`start`] with the [`StartExtras`] of a role.
pub async fn start_with(
    config: RunConfig,
    launcher: Option<Arc<dyn Launch>>,
    extras: StartExtras,
) -> Result<ProxyHandle, StartError> {
    let StartExtras { routes: extra, mcp_layer } = extras;
    let transport = config.effective_transport();
    let (status_tx, status_rx) = watch::channel(UpstreamStatus::starting());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let limits = config.limits.clone();
    let (events_tx, events_rx) = mpsc::unbounded_channel();

    let host: IpAddr = config
        .proxy
        .host
        .parse()
        .map_err(|_| StartError::Config(format!("proxy.host `{}` is not an IP address", config.proxy.host)))?;
    let addr = SocketAddr::new(host, config.proxy.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr: addr.to_string(), source })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr: addr.to_string(), source })?;

    let edge = Arc::new(EdgePolicy {
        check_host: host.is_loopback(),
        extra_hosts: vec![config.proxy.host.clone()],
        allowed_origins: config.proxy.allowed_origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
    });

    let track_callers = launcher.as_ref().is_some_and(|l| l.may_want_caller());
    let policy = Guard::from_config(&config, track_callers).await?;
    let diagnostics = match &policy.telemetry.metrics {
        Some(metrics) => {
            let listener = crate::telemetry::bind_diagnostics(&config.telemetry).await?;
            let addr = listener.local_addr().ok();
            tracker.spawn(crate::telemetry::serve_diagnostics(listener, Arc::clone(metrics), shutdown.clone()));
            tracker.spawn(watch_upstream(Arc::clone(metrics), status_rx.clone(), shutdown.clone()));
            addr
        }
        None => None,
    };
    let mut stdio = None;
    let mcp_routes: Router = match transport {
        Transport::Stdio => {
            let launcher = launcher.ok_or(StartError::NoLauncher("stdio"))?;
            let template = SlotOptions {
                launcher,
                init_params: crate::sessions::placement::own_initialize_params(serde_json::json!({})),
                max_line: limits.max_line_bytes as usize,
                // One queue into the child's stdin serves every session on it; each session's
                // own share is bounded where its requests enter (row 16).
                queue: (limits.max_queued_per_session as usize).saturating_mul(16).clamp(256, 65_536),
                init_timeout: limits.request_timeout(),
                restart: config.restart.clone(),
                tracker: tracker.clone(),
                shared: false,
                caller: None,
            };
            let front = StdioFront::new(&config, template, events_tx.clone(), Arc::clone(&policy));
            stdio = Some(Arc::downgrade(&front));
            let reaper = Arc::downgrade(&front);
            tracker.spawn(reap_idle(reaper, shutdown.clone()));
            let stopper = Arc::clone(&front);
            let stop = shutdown.clone();
            tracker.spawn(async move {
                stop.cancelled().await;
                stopper.stop_all();
            });
            Router::new()
                .route("/mcp", any(crate::front::streamable::mcp))
                .route("/sse", any(crate::front::legacy_sse::sse))
                .route("/messages", any(crate::front::legacy_sse::messages))
                .with_state(front)
        }
        Transport::Sse | Transport::StreamableHttp => {
            let unix_socket = launcher.as_ref().and_then(|l| l.upstream_socket());
            let (endpoint, local) = match config.remote_url() {
                Some(url) => (url.to_owned(), if transport == Transport::Sse { "/sse" } else { "/mcp" }),
                None => {
                    let launcher = launcher.ok_or(StartError::NoLauncher("HTTP"))?;
                    let path = if transport == Transport::Sse { "/sse" } else { "/mcp" };
                    tracker.spawn(crate::upstream::stdio::supervise_process(
                        launcher,
                        config.restart.clone(),
                        events_tx.clone(),
                        shutdown.clone(),
                    ));
                    (format!("http://{}:{}{path}", config.target_host, config.target_port), path)
                }
            };
            if config.remote_url().is_some() {
                let _ = status_tx.send(UpstreamStatus { state: UpstreamState::Running, ..UpstreamStatus::starting() });
            }
            let up = HttpUpstream::new(
                &endpoint,
                local,
                Arc::clone(&policy),
                &limits,
                &config.proxy,
                unix_socket.filter(|_| config.remote_url().is_none()),
            )
            .map_err(StartError::Config)?;
            tracker.spawn(Arc::clone(&up).end_streams_at(shutdown.clone()));
            Router::new().fallback(crate::front::reverse_proxy::forward).with_state(up)
        }
    };
    drop(events_tx);
    tracker.spawn(track_status(events_rx, status_tx));

    let guard = Arc::clone(&edge);
    let health_status = status_rx.clone();
    let metadata_guard = Arc::clone(&policy);
    let metadata = any(move |method| crate::guard::protected_resource(Arc::clone(&metadata_guard), method));
    let mut mcp_routes =
        mcp_routes.layer(axum::middleware::from_fn_with_state(Arc::clone(&policy), crate::guard::front_layer));
    if let Some(hook) = mcp_layer {
        mcp_routes = mcp_routes.layer(axum::middleware::from_fn(move |req: Request, next: Next| hook(req, next)));
    }
    let app = mcp_routes
        .layer(axum::middleware::from_fn(move |headers: HeaderMap, req: Request, next: Next| {
            let guard = Arc::clone(&guard);
            async move { edge_layer(&guard, &headers, req, next).await }
        }))
        .route("/health", any(move |method| crate::health::health(method, health_status.clone())))
        .route(WELL_KNOWN, metadata.clone())
        .route(&format!("{WELL_KNOWN}/{{*path}}"), metadata)
        .merge(extra);

    let path = match (transport, config.proxy.proxy_mode) {
        (Transport::Sse, _) | (Transport::Stdio, ProxyMode::Sse) => "/sse",
        _ => "/mcp",
    };
    let stop = shutdown.clone();
    let audit = policy.audit.clone();
    let flush_policy = Arc::clone(&policy);
    let task = tokio::spawn(async move {
        // An answer is often written in two parts (headers, then the body or an SSE event);
        // with Nagle on, the second waits for the client's delayed ACK: ~40 ms per call.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
            }
        });
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        // Streams end when the proxy stops; a connection that still lingers after the
        // grace period is dropped rather than holding the shutdown forever.
        let grace = async {
            stop.cancelled().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        tokio::select! {
            r = serve => if let Err(e) = r {
                tracing::error!(error = %e, "the proxy listener failed");
            },
            () = grace => tracing::warn!("connections still open 10 s after shutdown were dropped"),
        }
        stop.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(15), tracker.wait()).await.is_err() {
            tracing::warn!("some children did not stop within 15 s");
        }
        if let Some(audit) = audit
            && tokio::time::timeout(Duration::from_secs(5), audit.flush()).await.is_err()
        {
            tracing::warn!("audit events were still being written 5 s after shutdown");
        }
        flush_policy.telemetry.shutdown().await;
    });
    tracing::info!(url = %format!("http://{local_addr}{path}"), "proxy listening");
    if let Some(addr) = diagnostics {
        tracing::info!(url = %format!("http://{addr}/metrics"), "metrics listening");
    }
    Ok(ProxyHandle { local_addr, diagnostics_addr: diagnostics, path, status: status_rx, shutdown, task, stdio })
}

async fn edge_layer(edge: &EdgePolicy, headers: &HeaderMap, req: Request, next: Next) -> Response {
    if let Err(r) = edge.check(headers) {
        return r.into_response();
    }
    next.run(req).await
}

async fn reap_idle(front: std::sync::Weak<StdioFront>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match front.upgrade() {
            Some(f) => f.sessions.reap(),
            None => return,
        }
    }
}

/// Mirrors the upstream's status into the metrics until the proxy stops.
async fn watch_upstream(
    metrics: Arc<crate::telemetry::Metrics>,
    mut status: watch::Receiver<UpstreamStatus>,
    stop: CancellationToken,
) {
    loop {
        let now = status.borrow_and_update().clone();
        metrics.upstream(&now);
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// Folds child events into the published status.
async fn track_status(mut events: mpsc::UnboundedReceiver<SlotEvent>, status: watch::Sender<UpstreamStatus>) {
    while let Some(ev) = events.recv().await {
        status.send_modify(|st| match ev {
            SlotEvent::Started { pid, .. } => {
                if let Some(p) = pid {
                    st.child_pids.push(p);
                }
                if st.state != UpstreamState::Down {
                    st.state = UpstreamState::Running;
                }
                st.next_restart = None;
            }
            SlotEvent::Exited { pid, reason, shared } => {
                st.child_pids.retain(|p| Some(*p) != pid);
                st.restarts += 1;
                st.record_exit(&reason);
                if shared {
                    st.state = UpstreamState::Restarting;
                }
            }
            SlotEvent::Ready { revision, shared } => st.record_ready(revision, shared),
            SlotEvent::Stopped { pid } => st.child_pids.retain(|p| Some(*p) != pid),
            SlotEvent::Down { reason, shared } => {
                st.last_exit = Some(reason);
                if shared {
                    st.state = UpstreamState::Down;
                    st.next_restart = None;
                }
            }
            SlotEvent::Backoff { attempt, backoff, shared } => {
                if shared {
                    // The local HTTP server's supervisor reports no Restarting of its own.
                    st.state = UpstreamState::Restarting;
                    let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                    st.next_restart = Some(crate::status::RestartPlan { attempt, backoff_ms });
                }
            }
        });
    }
}
