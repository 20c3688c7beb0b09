//! One vMCP instance: what the proxy's front sees as a stdio child. It reads
//! newline-delimited JSON-RPC from its "stdin", answers `initialize`, `ping` and the lists
//! itself (built by aggregation), forwards calls, reads and gets to the owning backend
//! over that backend's own session (opened lazily, closed with the instance), and relays
//! what backends send while serving (server→client requests, progress, logging,
//! list_changed) up through its "stdout".
//!
//! Forwarded messages keep their bytes: a request reaches its backend with only its id
//! (and, when renamed, `params.name`) spliced; a response comes back with only its id
//! spliced.
//!
//! A 2026-07-28 request (its `_meta` names that revision) is served statelessly
//! (`modern`): `server/discover` and the lists are answered here, and what is routed goes to
//! a backend that speaks 2026-07-28 as it came, or to a legacy one as a 2025-11-25 request.

mod input;
mod modern;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apiary_protocol::rewrite::{IdMap, cancelled_request_id, with_cancelled_request_id};
use apiary_protocol::{Kind, Message, error_response, result_response, splice};
use apiary_transport::client::{ClientError, RawSession, SessionOptions};
use apiary_transport::launch::{CallerHandle, ExitReason};
use apiary_transport::stdio::{Line, LineReader, write_frame};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::aggregate::{Catalog, Listing, aggregate};
use crate::hub::{BackendExchange, Hub, Shared};
use crate::route_auth::{GATEWAY_TICKET_META, GatewayCaller, RouteAuth};

/// Requests one instance works on at once; the reader waits beyond that.
const MAX_IN_FLIGHT: usize = 1024;
/// Server→client requests waiting for the client's answer.
const MAX_PENDING: usize = 256;
/// Pages followed per list, so a backend that always sends `nextCursor` cannot loop us.
const MAX_LIST_PAGES: usize = 100;
/// 2026-07-28 callers whose catalogs are kept (token-exchange backends list per caller).
const MAX_CALLER_CATALOGS: usize = 64;
/// Bound on closing every backend session when the instance ends.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);
/// The revisions the instance speaks.
const REVISIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

const INVALID_PARAMS: i32 = -32602;
const METHOD_NOT_FOUND: i32 = -32601;
const INTERNAL_ERROR: i32 = -32603;
const RESOURCE_NOT_FOUND: i32 = -32002;
/// A routed request the route's authorization refused (`data.status`: the policy's HTTP status).
const ROUTE_REFUSED: i32 = -32001;

/// An open backend session of this instance.
struct Conn {
    session: RawSession,
    relayed: Arc<Relayed>,
    /// The backend's fingerprint when opened: a reload that changes it retires the session.
    fingerprint: u64,
    /// The exchanged token it was opened with (token_exchange): a new one (expiry, or the
    /// caller refreshed its token) retires the session.
    credential: Option<Arc<str>>,
}

/// How many of a session's server-initiated messages the pump has relayed: an answer
/// waits for what the backend sent before it (progress, logging) to go up first.
#[derive(Default)]
struct Relayed {
    count: AtomicU64,
    changed: tokio::sync::Notify,
}

/// Bound on an answer waiting for the messages sent before it.
const ORDER_WAIT: Duration = Duration::from_secs(5);

impl Conn {
    /// Waits until everything the backend sent before its latest answer was relayed.
    async fn relayed_before_answer(&self) {
        let target = self.session.delivered();
        let deadline = tokio::time::Instant::now() + ORDER_WAIT;
        loop {
            let changed = self.relayed.changed.notified();
            if self.relayed.count.load(Ordering::SeqCst) >= target {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;
/// One 2026-07-28 caller's catalog: its token, the epoch it was built in, the catalog.
type CallerCatalog = (Arc<str>, u64, Arc<Catalog>);
/// One era's catalog and the epoch it was built in.
type CatalogSlot = tokio::sync::Mutex<Option<(u64, Arc<Catalog>)>>;

pub(crate) struct Instance {
    /// The live config; read at every step, so a reload takes effect at once.
    shared: Arc<Shared>,
    out: mpsc::Sender<Bytes>,
    /// The client's `initialize` params, passed on to every backend session.
    init_params: Mutex<Option<String>>,
    conns: Mutex<HashMap<String, Slot>>,
    /// The catalog of each era's lists (legacy, then 2026-07-28): a backend that speaks
    /// 2026-07-28 is listed in it for a client that does.
    catalogs: [CatalogSlot; 2],
    /// The catalogs of the latest 2026-07-28 callers (caller token, epoch, catalog), oldest
    /// first: token-exchange backends list per caller.
    caller_catalogs: Mutex<VecDeque<CallerCatalog>>,
    /// Bumped by every `list_changed` from a backend: a catalog of an older epoch is stale.
    epoch: AtomicU64,
    next_id: AtomicI64,
    /// Client request id (JSON text) → (backend, the id it got there), for cancellations.
    inflight: Mutex<HashMap<String, (String, i64)>>,
    /// Our id of a server→client request → (backend, the backend's id as JSON text).
    pending: Mutex<IdMap<(String, String)>>,
    /// The client session's caller, as the proxy's front keeps it current (token_exchange).
    caller: Option<CallerHandle>,
    /// The routes' authorization (Apiary's gateway), for backends with a `serverName`.
    route_auth: Option<Arc<dyn RouteAuth>>,
    /// Why each backend missing from the latest catalog is missing (for `partialFailureMode: fail`).
    missing_why: Mutex<Vec<String>>,
    /// 2026-07-28 requests in flight, task owners and listen streams.
    modern: modern::ModernState,
    /// 2026-07-28 calls to legacy backends parked while their client provides input.
    input: input::InputState,
    stop: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs one instance until its input ends or `kill` fires, then closes its backend
/// sessions and reports on `exited`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    caller: Option<CallerHandle>,
    route_auth: Option<Arc<dyn RouteAuth>>,
    input: impl AsyncRead + Unpin + Send,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
    mut kill: oneshot::Receiver<()>,
    exited: oneshot::Sender<ExitReason>,
) {
    let hub = shared.hub();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(hub.queue);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if write_frame(&mut output, &frame).await.is_err() {
                break;
            }
        }
    });
    let inst = Arc::new(Instance {
        shared: Arc::clone(&shared),
        out: out_tx,
        init_params: Mutex::new(None),
        conns: Mutex::new(HashMap::new()),
        catalogs: [tokio::sync::Mutex::new(None), tokio::sync::Mutex::new(None)],
        caller_catalogs: Mutex::new(VecDeque::new()),
        epoch: AtomicU64::new(0),
        next_id: AtomicI64::new(1),
        inflight: Mutex::new(HashMap::new()),
        pending: Mutex::new(IdMap::default()),
        caller,
        route_auth,
        missing_why: Mutex::new(Vec::new()),
        modern: modern::ModernState::default(),
        input: input::InputState::default(),
        stop: CancellationToken::new(),
    });
    tokio::spawn(follow_reloads(Arc::downgrade(&inst), shared.subscribe(), inst.stop.clone()));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut reader = LineReader::new(input, hub.max_line);
    let reason = loop {
        let line = tokio::select! {
            l = reader.next_line() => l,
            _ = &mut kill => break "stopped by the proxy",
        };
        let frame = match line {
            Ok(Some(Line::Frame(f))) => f,
            Ok(Some(Line::Oversized { len, .. })) => {
                tracing::warn!(len, "a message longer than the line limit was dropped");
                continue;
            }
            Ok(None) => break "its input closed",
            Err(_) => break "its input failed",
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break "stopping" };
        let inst = Arc::clone(&inst);
        tokio::spawn(async move {
            inst.on_frame(frame).await;
            drop(permit);
        });
    };
    inst.stop.cancel();
    inst.close_all().await;
    drop(inst);
    // The writer ends once every task holding the sender is done; bounded like the close.
    let _ = tokio::time::timeout(CLOSE_LIMIT, writer).await;
    let _ = exited.send(ExitReason::other(format!("the vMCP instance ended: {reason}")));
}

impl Instance {
    fn hub(&self) -> Arc<Hub> {
        self.shared.hub()
    }

    /// The config changed: sessions with backends that went or changed are closed, the next
    /// list is rebuilt, and the client is told its lists changed.
    async fn on_reload(&self) {
        let hub = self.hub();
        let slots: Vec<(String, Slot)> = lock(&self.conns).iter().map(|(b, s)| (b.clone(), Arc::clone(s))).collect();
        for (backend, slot) in slots {
            let stale = {
                let mut guard = slot.lock().await;
                let current = guard
                    .as_ref()
                    .is_some_and(|c| hub.backend(&backend).is_some_and(|s| s.fingerprint == c.fingerprint));
                if current { None } else { guard.take() }
            };
            if let Some(conn) = stale {
                tracing::info!(%backend, "the backend went or changed in the config; closing its session");
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_LIMIT, conn.session.close()).await;
                });
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if lock(&self.init_params).is_some() {
            for kind in ["tools", "prompts", "resources"] {
                let note = json!({"jsonrpc": "2.0", "method": format!("notifications/{kind}/list_changed")});
                self.emit(Bytes::from(note.to_string())).await;
            }
        }
    }

    async fn emit(&self, frame: Bytes) {
        if self.out.send(frame).await.is_err() {
            tracing::debug!("the instance's output is closed");
        }
    }

    async fn on_frame(self: &Arc<Self>, frame: Bytes) {
        let msg = match Message::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                self.emit(e.to_response()).await;
                return;
            }
        };
        match msg.kind() {
            Kind::Request => {
                // A 2026-07-28 request's caller, named by the front's one-shot ticket: the
                // request is served in that caller's scope (token_exchange backends).
                let (msg, caller) = take_caller_ticket(msg);
                // The gateway's caller (route authorization), named the same way.
                let (msg, gateway) = take_ticket(msg, GATEWAY_TICKET_META, GatewayCaller::redeem);
                let serve = async {
                    match caller {
                        Some(c) => c.scope(self.on_request(&msg)).await,
                        None => self.on_request(&msg).await,
                    }
                };
                let answer = match gateway {
                    Some(g) => GatewayCaller::scope(g, serve).await,
                    None => serve.await,
                };
                self.emit(answer).await;
            }
            Kind::Notification => self.on_notification(&msg).await,
            Kind::Response | Kind::Error => self.on_client_answer(&msg).await,
        }
    }

    async fn on_request(self: &Arc<Self>, msg: &Message) -> Bytes {
        let id = msg.id_raw().unwrap_or("null");
        let method = msg.method().unwrap_or_default();
        let params: Value = msg.params_as().unwrap_or(Value::Null);
        let is_modern = modern::is_modern(msg);
        if is_modern && let Some(answer) = self.on_modern_request(msg, id, method).await {
            return answer;
        }
        match method {
            "initialize" => {
                *lock(&self.init_params) = msg.params_raw().map(str::to_owned);
                result_response(id, &initialize_result(&params).to_string())
            }
            "ping" => result_response(id, "{}"),
            "tools/list" => self.list_answer(id, "tools", |c| &c.tools, is_modern).await,
            "prompts/list" => self.list_answer(id, "prompts", |c| &c.prompts, is_modern).await,
            "resources/list" => self.list_answer(id, "resources", |c| &c.resources, is_modern).await,
            "resources/templates/list" => self.list_answer(id, "resourceTemplates", |c| &c.templates, is_modern).await,
            "tools/call" | "prompts/get" => {
                let Some(name) = params.get("name").and_then(Value::as_str) else {
                    return error_response(Some(id), INVALID_PARAMS, "params.name is required", None);
                };
                let is_tool = method == "tools/call";
                let catalog = self
                    .catalog_for(
                        |c| {
                            if is_tool { c.tool_routes.contains_key(name) } else { c.prompt_routes.contains_key(name) }
                        },
                        is_modern,
                    )
                    .await;
                let routes = if is_tool { &catalog.tool_routes } else { &catalog.prompt_routes };
                match routes.get(name) {
                    Some(route) => {
                        let rename = (route.name != name).then_some((&["name"][..], route.name.as_str()));
                        self.forward(msg, &route.backend, rename).await
                    }
                    None => {
                        let what = if method == "tools/call" { "tool" } else { "prompt" };
                        error_response(
                            Some(id),
                            INVALID_PARAMS,
                            &format!("Unknown {what}: {name}"),
                            Some(&json!({ "name": name })),
                        )
                    }
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                    return error_response(Some(id), INVALID_PARAMS, "params.uri is required", None);
                };
                let catalog = self.catalog_for(|c| c.resource_owner(uri).is_some(), is_modern).await;
                match self.resource_owner(&catalog, uri) {
                    Some(backend) => self.forward(msg, &backend, None).await,
                    None => error_response(
                        Some(id),
                        // 2026-07-28 moved resource-not-found to invalid params.
                        if is_modern { INVALID_PARAMS } else { RESOURCE_NOT_FOUND },
                        &format!("Resource not found: {uri}"),
                        Some(&json!({ "uri": uri })),
                    ),
                }
            }
            "completion/complete" => self.complete(msg, id, &params).await,
            "logging/setLevel" => {
                for backend in self.hub().backend_names() {
                    if self.admit(&backend).is_err() {
                        continue;
                    }
                    if let Ok(conn) = self.conn(&backend).await {
                        let bytes = msg.with_id(&self.next_id.fetch_add(1, Ordering::Relaxed).to_string());
                        if let Err(e) = conn.session.request(bytes).await {
                            tracing::debug!(%backend, error = %e, "logging/setLevel not passed on");
                        }
                    }
                }
                result_response(id, "{}")
            }
            _ => error_response(Some(id), METHOD_NOT_FOUND, &format!("Method not found: {method}"), None),
        }
    }

    async fn complete(self: &Arc<Self>, msg: &Message, id: &str, params: &Value) -> Bytes {
        let r = params.get("ref").cloned().unwrap_or(Value::Null);
        let catalog = self.catalog_with(false, modern::is_modern(msg)).await;
        match r.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                match catalog.prompt_routes.get(name) {
                    Some(route) => {
                        let rename = (route.name != name).then_some((&["ref", "name"][..], route.name.as_str()));
                        self.forward(msg, &route.backend, rename).await
                    }
                    None => error_response(Some(id), INVALID_PARAMS, &format!("Unknown prompt: {name}"), None),
                }
            }
            Some("ref/resource") => {
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or_default();
                match self.resource_owner(&catalog, uri) {
                    Some(backend) => self.forward(msg, &backend, None).await,
                    None => error_response(Some(id), INVALID_PARAMS, &format!("Unknown resource: {uri}"), None),
                }
            }
            _ => error_response(Some(id), INVALID_PARAMS, "params.ref must be a ref/prompt or ref/resource", None),
        }
    }

    /// The owner of a URI; with a single backend, that backend (it may serve URIs it does not list).
    fn resource_owner(&self, catalog: &Catalog, uri: &str) -> Option<String> {
        catalog.resource_owner(uri).map(str::to_owned).or_else(|| {
            let names = self.hub().backend_names();
            (names.len() == 1).then(|| names[0].clone())
        })
    }

    async fn list_answer(
        self: &Arc<Self>,
        id: &str,
        key: &str,
        pick: impl Fn(&Catalog) -> &Vec<Value>,
        is_modern: bool,
    ) -> Bytes {
        let catalog = self.catalog(is_modern).await;
        if !catalog.missing.is_empty() && self.hub().fail_partial_lists {
            // partialFailureMode: fail — all the backends' items or none.
            let why: Vec<String> = lock(&self.missing_why).clone();
            return error_response(
                Some(id),
                INTERNAL_ERROR,
                &format!(
                    "the list is incomplete and partialFailureMode is fail: {}",
                    if why.is_empty() { catalog.missing.join(", ") } else { why.join("; ") }
                ),
                Some(&json!({ "missingBackends": catalog.missing })),
            );
        }
        let mut items = pick(&catalog).clone();
        if key == "tools"
            && let Some(auth) = &self.route_auth
        {
            items = self.visible_tools(auth.as_ref(), &catalog, items).await;
        }
        let mut result = serde_json::Map::new();
        result.insert(key.to_owned(), Value::Array(items));
        if is_modern {
            // Nothing is known about how long a merged list holds or for whom.
            result.insert("resultType".into(), json!("complete"));
            result.insert("ttlMs".into(), json!(0));
            result.insert("cacheScope".into(), json!("private"));
        }
        result_response(id, &Value::Object(result).to_string())
    }

    /// `tools` without those of backends with a `serverName` that this request's gateway
    /// caller may not call ([`RouteAuth::visible_tools`]); with no gateway caller, none of them.
    async fn visible_tools(&self, auth: &dyn RouteAuth, catalog: &Catalog, tools: Vec<Value>) -> Vec<Value> {
        let hub = self.hub();
        // serverName → (advertised, the backend's own name), for each routed tool.
        let mut per_server: HashMap<&str, Vec<(&str, String)>> = HashMap::new();
        for (advertised, route) in &catalog.tool_routes {
            if let Some(server) = hub.rules.server_names.get(&route.backend) {
                per_server.entry(server.as_str()).or_default().push((advertised.as_str(), route.name.clone()));
            }
        }
        if per_server.is_empty() {
            return tools;
        }
        let caller = GatewayCaller::of_current_request();
        let mut hidden: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (server, names) in &per_server {
            let own: Vec<String> = names.iter().map(|(_, n)| n.clone()).collect();
            let visible: std::collections::HashSet<String> = match &caller {
                Some(c) => auth.visible_tools(c, server, &own).await.into_iter().collect(),
                None => std::collections::HashSet::new(),
            };
            hidden.extend(names.iter().filter(|(_, n)| !visible.contains(n)).map(|(a, _)| *a));
        }
        tools
            .into_iter()
            .filter(|t| t.get("name").and_then(Value::as_str).is_none_or(|n| !hidden.contains(n)))
            .collect()
    }

    /// Sends a client request to `backend` with only its id (and `rename`'s member)
    /// spliced, and brings the answer back with only its id spliced. A 2026-07-28 request
    /// goes as it is to a backend that speaks 2026-07-28; to a legacy one it goes without
    /// its `io.modelcontextprotocol/*` `_meta` keys and its result gains `resultType`.
    async fn forward(self: &Arc<Self>, msg: &Message, backend: &str, rename: Option<(&[&str], &str)>) -> Bytes {
        if !modern::is_modern(msg) {
            return self.forward_legacy(msg, backend, rename).await;
        }
        if let Some(era) = self.era(backend).await
            && era.client().is_some()
        {
            return self.forward_modern(msg, backend, rename, &era).await;
        }
        let method = msg.method().unwrap_or_default().to_owned();
        // A call that may be asked for input gets a session of its own, initialized with
        // the capabilities it declares; its retry finds it parked.
        if input::may_ask(&method) {
            if input::is_retry(msg) {
                return self.input_retry(msg).await;
            }
            if let Some(init) = input::capable_init(msg) {
                return self.input_first(msg, backend, rename, init).await;
            }
        }
        // A token-exchange backend is reached with this request's caller's token, over a
        // session of the request's own (the shared instance serves many callers).
        if self.hub().backend(backend).is_some_and(|b| b.exchange.is_some()) {
            return self.input_first(msg, backend, rename, input::plain_init(msg)).await;
        }
        let client_id = msg.id_raw().unwrap_or("null").to_owned();
        let legacy = apiary_protocol::modern::legacy_request(msg.bytes()).ok().and_then(|b| Message::parse(b).ok());
        let Some(legacy) = legacy else {
            return error_response(Some(&client_id), INVALID_PARAMS, "the request cannot be forwarded", None);
        };
        let answer = self.forward_legacy(&legacy, backend, rename).await;
        apiary_protocol::modern::complete_result(answer.clone(), &method).unwrap_or(answer)
    }

    /// [`Instance::forward`] over the backend's 2025-11-25 session.
    async fn forward_legacy(self: &Arc<Self>, msg: &Message, backend: &str, rename: Option<(&[&str], &str)>) -> Bytes {
        let client_id = msg.id_raw().unwrap_or("null").to_owned();
        let fail =
            |why: String| error_response(Some(&client_id), INTERNAL_ERROR, &why, Some(&json!({"backend": backend})));
        let rename_value = match rename.map(|(_, n)| serde_json::to_string(n)) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return fail("cannot encode a tool name".into()),
            None => None,
        };
        let rename_range = match rename.map(|(path, _)| msg.params_member(path)) {
            Some(Ok(Some(r))) => Some(r),
            Some(_) => return fail("cannot find the member to rename".into()),
            None => None,
        };
        let routed = match self.routed_headers(msg, backend, rename).await {
            Ok(h) => h,
            Err(refusal) => return refusal,
        };
        if let Err(why) = self.admit(backend) {
            return fail(why);
        }
        // One retry: a backend that restarted no longer knows our session (404).
        for attempt in 0..2 {
            let conn = match self.conn(backend).await {
                Ok(c) => c,
                Err(why) => return fail(why),
            };
            let backend_id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let id_text = backend_id.to_string();
            let Some(id_range) = msg.id_range() else { return fail("request without an id".into()) };
            let mut edits: Vec<(std::ops::Range<usize>, &[u8])> = vec![(id_range, id_text.as_bytes())];
            if let (Some(r), Some(v)) = (&rename_range, &rename_value) {
                edits.push((r.clone(), v.as_bytes()));
            }
            let bytes = match splice::splice(msg.bytes(), &edits) {
                Ok(b) => b,
                Err(e) => return fail(format!("cannot rewrite the request: {e}")),
            };
            lock(&self.inflight).insert(client_id.clone(), (backend.to_owned(), backend_id));
            let result = conn.session.request_with(bytes, &routed).await;
            lock(&self.inflight).remove(&client_id);
            let health = self.hub().health.get(backend);
            match result {
                Ok(answer) => {
                    if let Some(h) = health {
                        h.record_success();
                    }
                    conn.relayed_before_answer().await;
                    return match Message::parse(answer) {
                        Ok(m) => m.with_id(&client_id),
                        Err(e) => fail(format!("backend {backend:?} sent an invalid answer: {e}")),
                    };
                }
                Err(ClientError::HttpStatus { status: 404, .. }) if attempt == 0 => {
                    tracing::info!(%backend, "the backend forgot our session; opening a new one");
                    self.drop_conn(backend, &conn);
                }
                Err(e) => {
                    if counts_as_failure(&e) {
                        if let Some(h) = health {
                            h.record_failure(&e.to_string());
                        }
                        self.drop_conn(backend, &conn);
                    }
                    return fail(format!("backend {backend:?} failed: {e}"));
                }
            }
        }
        fail(format!("backend {backend:?} keeps refusing our session"))
    }

    /// The headers of `msg` routed to `backend`: the gateway's `x-mcp-*` headers, then what the
    /// route's authorization sets ([`Instance::route_grant`]); `Err` is the refusal to answer.
    pub(super) async fn routed_headers(
        &self,
        msg: &Message,
        backend: &str,
        rename: Option<(&[&str], &str)>,
    ) -> Result<Vec<(String, String)>, Bytes> {
        let hub = self.hub();
        if !hub.rules.server_names.contains_key(backend) {
            return Ok(Vec::new());
        }
        let method = msg.method().unwrap_or_default();
        let tool = routed_tool(msg, rename);
        let mut headers = hub.rules.routed_headers(backend, method, tool.as_deref());
        headers.extend(self.route_grant(msg, backend, rename).await?);
        Ok(headers)
    }

    /// What the route's authorization sets on `msg` routed to `backend` (a backend with a
    /// `serverName`, while a [`RouteAuth`] is given): the grant's headers when the gateway
    /// granted this very tool of this server, else the headers of a new decision. Refused
    /// (`Err`, a JSON-RPC error) on denial and when no gateway caller is known: nothing
    /// ungranted is forwarded.
    pub(super) async fn route_grant(
        &self,
        msg: &Message,
        backend: &str,
        rename: Option<(&[&str], &str)>,
    ) -> Result<Vec<(String, String)>, Bytes> {
        let Some(auth) = &self.route_auth else { return Ok(Vec::new()) };
        let hub = self.hub();
        let Some(server) = hub.rules.server_names.get(backend) else { return Ok(Vec::new()) };
        let id = msg.id_raw().unwrap_or("null");
        let method = msg.method().unwrap_or_default();
        let tool = routed_tool(msg, rename);
        let refuse = |status: u16, message: &str| {
            error_response(Some(id), ROUTE_REFUSED, message, Some(&json!({"status": status, "serverName": server})))
        };
        let Some(caller) = GatewayCaller::of_current_request() else {
            return Err(refuse(401, "the request did not pass the gateway's authorization"));
        };
        if let Some(headers) = tool.as_deref().and_then(|t| caller.granted(server, t)) {
            return Ok(headers.to_vec());
        }
        auth.decide(&caller, server, method, tool.as_deref()).await.map_err(|r| refuse(r.status, &r.message))
    }

    fn slot(&self, backend: &str) -> Slot {
        Arc::clone(lock(&self.conns).entry(backend.to_owned()).or_default())
    }

    /// Whether the backend's circuit lets a request through now (callers ask once per
    /// request, before [`Instance::conn`]: a half-open circuit admits one trial).
    fn admit(&self, backend: &str) -> Result<(), String> {
        self.hub().health.get(backend).map_or(Ok(()), |h| h.admit())
    }

    /// This instance's session with `backend`, opened on first use.
    async fn conn(self: &Arc<Self>, backend: &str) -> Result<Arc<Conn>, String> {
        let slot = self.slot(backend);
        let mut guard = slot.lock().await;
        let hub = self.hub();
        let Some(spec) = hub.backend(backend) else {
            return Err(format!("no backend named {backend:?}"));
        };
        let credential = match &spec.exchange {
            Some(x) => Some(self.exchanged(backend, x).await?),
            None => None,
        };
        match guard.take() {
            Some(c) if c.fingerprint == spec.fingerprint && c.credential == credential => {
                *guard = Some(Arc::clone(&c));
                return Ok(c);
            }
            // Opened under a config that has since changed: ended, and a new one opened.
            Some(stale) => {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_LIMIT, stale.session.close()).await;
                });
            }
            None => {}
        }
        if self.stop.is_cancelled() {
            return Err("the session is ending".into());
        }
        let health = hub.health.get(backend);
        let mut options = SessionOptions { incoming_capacity: MAX_PENDING, listen: true, ..spec.session_options() };
        if let Some(p) = lock(&self.init_params).clone() {
            options.initialize_params = p;
        }
        if let (Some(x), Some(token)) = (&spec.exchange, &credential) {
            options.headers.push(x.header_for(token));
        }
        let (session, incoming) = match RawSession::open(&spec.url, options).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(h) = health {
                    h.record_failure(&e.to_string());
                }
                return Err(format!("backend {backend:?} is unavailable: {e}"));
            }
        };
        if let Some(h) = health {
            h.record_success();
        }
        // The instance may have been stopped while the session was opening: `close_all` has
        // then already run and would never see this one, so end it here.
        if self.stop.is_cancelled() {
            let _ = tokio::time::timeout(CLOSE_LIMIT, session.close()).await;
            return Err("the session is ending".into());
        }
        let relayed = Arc::new(Relayed::default());
        let conn = Arc::new(Conn { session, relayed: Arc::clone(&relayed), fingerprint: spec.fingerprint, credential });
        tokio::spawn(pump(Arc::downgrade(self), backend.to_owned(), incoming, relayed, self.stop.clone()));
        *guard = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// The caller's token exchanged for `backend` (from the exchanger's cache while it lasts):
    /// the 2026-07-28 request's own caller, else the session's. Without a caller token
    /// nothing reaches the backend.
    async fn exchanged(&self, backend: &str, x: &BackendExchange) -> Result<Arc<str>, String> {
        let caller = CallerHandle::of_current_request().or_else(|| self.caller.clone());
        let Some(subject) = caller.as_ref().and_then(CallerHandle::token) else {
            return Err(format!(
                "backend {backend:?} needs the caller's token (token_exchange) and this session has none: \
                 callers must authenticate (incomingAuth oidc) over a session"
            ));
        };
        x.exchanger.exchange(&subject).await.map_err(|e| format!("backend {backend:?}: {e}"))
    }

    /// Forgets a broken session (only if it is still the current one) and ends it.
    fn drop_conn(&self, backend: &str, conn: &Arc<Conn>) {
        let slot = self.slot(backend);
        let conn = Arc::clone(conn);
        tokio::spawn(async move {
            let mut guard = slot.lock().await;
            if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                *guard = None;
            }
            drop(guard);
            let _ = tokio::time::timeout(CLOSE_LIMIT, conn.session.close()).await;
        });
    }

    async fn close_all(&self) {
        let slots: Vec<Slot> = lock(&self.conns).drain().map(|(_, s)| s).collect();
        let closes = slots.into_iter().map(|slot| async move {
            let conn = slot.lock().await.take();
            if let Some(c) = conn {
                let _ = c.session.close().await;
            }
        });
        let _ = tokio::time::timeout(CLOSE_LIMIT, futures::future::join_all(closes)).await;
    }

    /// The current catalog; built (again) when there is none, when a backend said its list
    /// changed, or (with `retry_missing`) when the last one missed a backend.
    async fn catalog_with(self: &Arc<Self>, retry_missing: bool, is_modern: bool) -> Arc<Catalog> {
        // A 2026-07-28 request's caller sees the token-exchange backends too, listed with
        // its own token: its catalog is its own.
        if is_modern
            && self.hub().wants_caller()
            && let Some(token) = CallerHandle::of_current_request().and_then(|c| c.token())
        {
            return self.caller_catalog(token, retry_missing).await;
        }
        let mut guard = self.catalogs[usize::from(is_modern)].lock().await;
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some((e, c)) = &*guard
            && *e == epoch
            && (c.missing.is_empty() || !retry_missing)
        {
            return Arc::clone(c);
        }
        let hub = self.hub();
        // Without a caller, a 2026-07-28 request never reaches a token-exchange backend.
        let names: Vec<String> =
            hub.backends.iter().filter(|b| !is_modern || b.exchange.is_none()).map(|b| b.name.clone()).collect();
        let catalog = self.build_catalog(&hub, names, is_modern).await;
        *guard = Some((epoch, Arc::clone(&catalog)));
        catalog
    }

    /// The catalog of one 2026-07-28 caller (every backend, token-exchange ones with its
    /// token), kept for the latest [`MAX_CALLER_CATALOGS`] callers until a list changes.
    async fn caller_catalog(self: &Arc<Self>, token: Arc<str>, retry_missing: bool) -> Arc<Catalog> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        {
            let cached = lock(&self.caller_catalogs);
            if let Some((_, e, c)) = cached.iter().find(|(t, _, _)| *t == token)
                && *e == epoch
                && (c.missing.is_empty() || !retry_missing)
            {
                return Arc::clone(c);
            }
        }
        let hub = self.hub();
        let catalog = self.build_catalog(&hub, hub.backend_names(), true).await;
        let mut cached = lock(&self.caller_catalogs);
        cached.retain(|(t, _, _)| *t != token);
        if cached.len() >= MAX_CALLER_CATALOGS {
            cached.pop_front();
        }
        cached.push_back((token, epoch, Arc::clone(&catalog)));
        catalog
    }

    /// Lists `names` (at most the hub's list deadline each) and aggregates them.
    async fn build_catalog(self: &Arc<Self>, hub: &Hub, names: Vec<String>, is_modern: bool) -> Arc<Catalog> {
        let deadline = hub.list_deadline;
        let lists = names.iter().map(|b| async move {
            let listed = tokio::time::timeout(deadline, self.list_backend(b, is_modern)).await;
            (b.clone(), listed)
        });
        let mut listings = Vec::new();
        let mut missing = Vec::new();
        let mut missing_why = Vec::new();
        for (backend, listed) in futures::future::join_all(lists).await {
            match listed {
                Ok(Ok(l)) => listings.push(l),
                Ok(Err(why)) => {
                    tracing::warn!(%backend, error = %why, "backend left out of the list");
                    missing_why.push(format!("backend {backend:?}: {why}"));
                    missing.push(backend);
                }
                Err(_) => {
                    tracing::warn!(%backend, ?deadline, "backend too slow; left out of the list");
                    missing_why.push(format!("backend {backend:?} did not answer within {deadline:?}"));
                    missing.push(backend);
                }
            }
        }
        *lock(&self.missing_why) = missing_why;
        hub.health.set_missing(missing.clone());
        Arc::new(aggregate(&hub.rules, listings, missing))
    }

    /// The catalog for a list: a backend missed last time is asked again.
    async fn catalog(self: &Arc<Self>, is_modern: bool) -> Arc<Catalog> {
        self.catalog_with(true, is_modern).await
    }

    /// The catalog for routing `found`: the current one when it knows the name, so a call
    /// to a healthy backend never waits on one that missed the last list.
    async fn catalog_for(self: &Arc<Self>, found: impl Fn(&Catalog) -> bool, is_modern: bool) -> Arc<Catalog> {
        let current = self.catalog_with(false, is_modern).await;
        if found(&current) || current.missing.is_empty() { current } else { self.catalog_with(true, is_modern).await }
    }

    async fn list_backend(self: &Arc<Self>, backend: &str, is_modern: bool) -> Result<Listing, String> {
        if is_modern
            && let Some(era) = self.era(backend).await
            && let Some(client) = era.client()
        {
            self.admit(backend)?;
            return self.list_modern(backend, client).await;
        }
        self.admit(backend)?;
        if is_modern && self.hub().backend(backend).is_some_and(|b| b.exchange.is_some()) {
            return self.list_for_caller(backend).await;
        }
        let conn = self.conn(backend).await?;
        self.list_session(backend, &conn.session, Some(&conn)).await
    }

    /// Every list a legacy backend's session offers (as its `initialize` result says).
    async fn list_session(
        &self,
        backend: &str,
        session: &RawSession,
        conn: Option<&Arc<Conn>>,
    ) -> Result<Listing, String> {
        let caps: Value = serde_json::from_slice::<Value>(session.initialize_result())
            .ok()
            .and_then(|v| v.get("capabilities").cloned())
            .unwrap_or(Value::Null);
        let has = |k: &str| caps.get(k).is_some_and(|v| !v.is_null());
        let mut l = Listing { backend: backend.to_owned(), ..Listing::default() };
        if has("tools") {
            l.tools = self.list_all(backend, session, conn, "tools/list", "tools").await?;
        }
        if has("prompts") {
            l.prompts = self.list_all(backend, session, conn, "prompts/list", "prompts").await?;
        }
        if has("resources") {
            l.resources = self.list_all(backend, session, conn, "resources/list", "resources").await?;
            l.templates =
                self.list_all(backend, session, conn, "resources/templates/list", "resourceTemplates").await?;
        }
        Ok(l)
    }

    /// Every page of one list over `session`; `conn` (the instance's session it is) is
    /// dropped when the backend fails.
    async fn list_all(
        &self,
        backend: &str,
        session: &RawSession,
        conn: Option<&Arc<Conn>>,
        method: &str,
        key: &str,
    ) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let params = cursor.as_ref().map(|c| json!({ "cursor": c })).unwrap_or_else(|| json!({}));
            let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
            let answer = session.request(Bytes::from(req)).await.map_err(|e| {
                if counts_as_failure(&e) {
                    if let Some(h) = self.hub().health.get(backend) {
                        h.record_failure(&e.to_string());
                    }
                    if let Some(conn) = conn {
                        self.drop_conn(backend, conn);
                    }
                }
                format!("{method}: {e}")
            })?;
            match take_page(&answer, method, key, &mut items)? {
                Page::Next(next) => cursor = Some(next),
                Page::Last | Page::Unlisted => return Ok(items),
            }
        }
        Err(format!("{method}: more than {MAX_LIST_PAGES} pages"))
    }

    async fn on_notification(self: &Arc<Self>, msg: &Message) {
        match msg.method().unwrap_or_default() {
            "notifications/cancelled" => {
                let Some(id) = cancelled_request_id(msg) else { return };
                self.modern.cancel(&id.to_json());
                let target = lock(&self.inflight).get(&id.to_json()).cloned();
                if let Some((backend, backend_id)) = target
                    && let Ok(bytes) = with_cancelled_request_id(msg, &backend_id.to_string())
                {
                    self.send_to(&backend, bytes).await;
                }
            }
            "notifications/roots/list_changed" => {
                let open: Vec<String> = lock(&self.conns).keys().cloned().collect();
                for backend in open {
                    self.send_to(&backend, msg.bytes().clone()).await;
                }
            }
            _ => {}
        }
    }

    /// The client answered a server→client request we relayed: back to its backend.
    async fn on_client_answer(self: &Arc<Self>, msg: &Message) {
        let Some(id) = msg.id() else { return };
        let Some((backend, original)) = lock(&self.pending).remove(&id) else {
            tracing::debug!("an answer to no pending request");
            return;
        };
        self.send_to(&backend, msg.with_id(&original)).await;
    }

    /// Sends a notification or response to an open backend session.
    async fn send_to(&self, backend: &str, bytes: Bytes) {
        let conn = self.slot(backend).lock().await.clone();
        if let Some(c) = conn
            && let Err(e) = c.session.send(bytes).await
        {
            tracing::debug!(%backend, error = %e, "could not pass a message on to the backend");
        }
    }

    /// Something a backend sent on its own: relayed up, or answered here (ping).
    async fn from_backend(self: &Arc<Self>, backend: &str, bytes: Bytes) {
        let Ok(msg) = Message::parse(bytes) else { return };
        match msg.kind() {
            Kind::Request if msg.method() == Some("ping") => {
                let answer = result_response(msg.id_raw().unwrap_or("null"), "{}");
                self.send_to(backend, answer).await;
            }
            Kind::Request => {
                let original = msg.id_raw().unwrap_or("null").to_owned();
                let ours = {
                    let mut p = lock(&self.pending);
                    (p.len() < MAX_PENDING).then(|| p.insert((backend.to_owned(), original.clone())))
                };
                match ours {
                    Some(id) => self.emit(msg.with_id(&id.to_string())).await,
                    None => {
                        let refusal = error_response(
                            Some(&original),
                            INTERNAL_ERROR,
                            "too many requests waiting for the client",
                            None,
                        );
                        self.send_to(backend, refusal).await;
                    }
                }
            }
            Kind::Notification => {
                let method = msg.method().unwrap_or_default();
                match method {
                    "notifications/tools/list_changed"
                    | "notifications/prompts/list_changed"
                    | "notifications/resources/list_changed" => {
                        self.epoch.fetch_add(1, Ordering::SeqCst);
                        self.relay_to_listens(&msg).await;
                        self.emit(msg.into_bytes()).await;
                    }
                    "notifications/cancelled" => {
                        let Some(theirs) = cancelled_request_id(&msg) else { return };
                        let theirs = theirs.to_json();
                        let ours = lock(&self.pending).remove_where(|(b, o)| b == backend && *o == theirs);
                        if let Some((id, _)) = ours
                            && let Ok(b) = with_cancelled_request_id(&msg, &id.to_string())
                        {
                            self.emit(b).await;
                        }
                    }
                    _ => self.emit(msg.into_bytes()).await,
                }
            }
            Kind::Response | Kind::Error => {}
        }
    }
}

/// The request without the front's caller ticket, and the caller it names (once).
fn take_caller_ticket(msg: Message) -> (Message, Option<CallerHandle>) {
    take_ticket(msg, apiary_transport::launch::CALLER_TICKET_META, CallerHandle::redeem)
}

/// The request without the ticket at `params._meta[key]`, and what `redeem` gives for it.
fn take_ticket<T>(msg: Message, key: &str, redeem: impl Fn(&str) -> Option<T>) -> (Message, Option<T>) {
    let Ok(Some(meta)) = msg.params_member(&["_meta"]) else { return (msg, None) };
    let Ok(Some(at)) = msg.params_member(&["_meta", key]) else { return (msg, None) };
    let Some(ticket) = msg.text(at).and_then(|t| serde_json::from_str::<String>(t).ok()) else { return (msg, None) };
    match splice::remove_members(msg.bytes(), meta, |k| k == key).map(Message::parse) {
        Ok(Ok(stripped)) => {
            let value = redeem(&ticket);
            (stripped, value)
        }
        // A ticket that cannot be taken out is not honoured either.
        _ => (msg, None),
    }
}

/// A `tools/call`'s tool as its backend names it (`rename`'s value, else `params.name`).
fn routed_tool(msg: &Message, rename: Option<(&[&str], &str)>) -> Option<String> {
    if msg.method() != Some("tools/call") {
        return None;
    }
    match rename {
        Some((_, name)) => Some(name.to_owned()),
        None => msg.params_string("name"),
    }
}

/// Calls [`Instance::on_reload`] at every config swap until the instance ends.
async fn follow_reloads(
    inst: Weak<Instance>,
    mut generation: tokio::sync::watch::Receiver<u64>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = generation.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let Some(inst) = inst.upgrade() else { return };
        inst.on_reload().await;
    }
}

/// Relays what one backend session sends on its own until the session or instance ends.
async fn pump(
    inst: Weak<Instance>,
    backend: String,
    mut incoming: mpsc::Receiver<Bytes>,
    relayed: Arc<Relayed>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            n = incoming.recv() => n,
            () = stop.cancelled() => return,
        };
        let Some(bytes) = next else { return };
        let Some(inst) = inst.upgrade() else { return };
        inst.from_backend(&backend, bytes).await;
        relayed.count.fetch_add(1, Ordering::SeqCst);
        relayed.changed.notify_waiters();
    }
}

/// Failures that say the backend (not the request) is in trouble.
fn counts_as_failure(e: &ClientError) -> bool {
    match e {
        ClientError::Connection { .. } | ClientError::Timeout { .. } | ClientError::Closed(_) => true,
        ClientError::HttpStatus { status, .. } => *status >= 500 || *status == 404,
        _ => false,
    }
}

/// The instance's own `initialize` result.
fn initialize_result(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
    let version = if REVISIONS.contains(&asked) { asked } else { REVISIONS[REVISIONS.len() - 1] };
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "logging": {},
            "completions": {},
        },
        "serverInfo": {"name": "apiary-vmcp", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// What one page of a backend's list answer said.
enum Page {
    /// Another page follows, from this cursor.
    Next(String),
    /// The list is whole.
    Last,
    /// The backend does not implement this kind of list (`-32601`): it has none of it.
    Unlisted,
}

/// Appends the `key` items of one list `answer` (to `method`) to `items`, and says whether
/// another page follows.
fn take_page(answer: &[u8], method: &str, key: &str, items: &mut Vec<Value>) -> Result<Page, String> {
    let mut v: Value = serde_json::from_slice(answer).map_err(|e| format!("{method}: not JSON: {e}"))?;
    if let Some(err) = v.get("error") {
        if err.get("code").and_then(Value::as_i64) == Some(i64::from(METHOD_NOT_FOUND)) {
            return Ok(Page::Unlisted);
        }
        return Err(format!("{method}: {err}"));
    }
    let mut result = v.get_mut("result").map(Value::take).unwrap_or(Value::Null);
    if let Some(Value::Array(batch)) = result.get_mut(key).map(Value::take) {
        items.extend(batch);
    }
    Ok(match result.get("nextCursor").and_then(Value::as_str) {
        Some(next) if !next.is_empty() => Page::Next(next.to_owned()),
        _ => Page::Last,
    })
}
