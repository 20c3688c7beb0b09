//! How an instance serves a 2026-07-28 request: statelessly, from the request alone. It
//! answers `server/discover` (the aggregated capabilities, the `extensions` of backends
//! that speak 2026-07-28) and the lists; forwards calls, reads and gets as they came
//! (`_meta` with the client's per-request capabilities included) to a backend that speaks
//! 2026-07-28, whose answer (an `InputRequiredResult`, a task, an error) comes back with
//! only its id changed; routes `tasks/*` to the backend that created the task; and merges
//! the backends' `subscriptions/listen` streams into one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_protocol::rewrite::with_notification_subscription_id;
use apiary_protocol::{Kind, Message, error_response, modern as proto, result_response, splice};
use apiary_transport::client::{ModernClient, ModernStream, encode_header_value};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{INTERNAL_ERROR, INVALID_PARAMS, Instance, METHOD_NOT_FOUND, Page, counts_as_failure, lock, take_page};
use crate::aggregate::Listing;
use crate::era::Era;

/// The revision served here.
const MODERN: &str = "2026-07-28";
/// Every revision the vMCP serves, newest first (`server/discover`).
const SUPPORTED: [&str; 5] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// How long `server/discover` waits for backends whose era is not known yet (the proxy's
/// own probe of the instance allows 2 s).
const DISCOVER_WAIT: Duration = Duration::from_millis(1500);
/// Task ids remembered (the oldest is forgotten first).
const MAX_TASKS: usize = 4096;
/// Listen streams open at once.
const MAX_LISTENS: usize = 64;
/// How long a listen waits for a backend's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// Notifications of one forwarded request waiting to go up.
const NOTES_QUEUE: usize = 64;
/// Pages followed per list of one backend.
const MAX_LIST_PAGES: usize = 100;

/// Whether a request is a 2026-07-28 one: its `_meta` names that revision.
pub(super) fn is_modern(msg: &Message) -> bool {
    msg.is_request() && proto::meta_version(msg.params_raw()).is_some_and(|v| v == MODERN)
}

/// What an instance keeps for its 2026-07-28 requests.
#[derive(Default)]
pub(super) struct ModernState {
    /// Client request id (JSON text) → what stops it (its stream closed: cancelled).
    inflight: Mutex<HashMap<String, CancellationToken>>,
    /// Task id → the backend that created it.
    tasks: Mutex<TaskOwners>,
    /// Open listen streams by their request id (JSON text): what each accepted.
    listens: Mutex<HashMap<String, Arc<Listen>>>,
}

impl ModernState {
    /// Stops the request `id` (JSON text), if it is one of ours.
    pub(super) fn cancel(&self, id: &str) {
        if let Some(token) = lock(&self.inflight).get(id) {
            token.cancel();
        }
    }

    pub(super) fn track(&self, id: &str) -> Tracked<'_> {
        let token = CancellationToken::new();
        lock(&self.inflight).insert(id.to_owned(), token.clone());
        Tracked { state: self, id: id.to_owned(), token }
    }
}

/// A request in flight, forgotten when dropped.
pub(super) struct Tracked<'a> {
    state: &'a ModernState,
    id: String,
    pub(super) token: CancellationToken,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        lock(&self.state.inflight).remove(&self.id);
    }
}

/// A bounded task id → backend table.
#[derive(Default)]
struct TaskOwners {
    owner: HashMap<String, String>,
    order: VecDeque<String>,
}

impl TaskOwners {
    fn insert(&mut self, task: String, backend: String) {
        if self.owner.insert(task.clone(), backend).is_none() {
            self.order.push_back(task);
        }
        while self.order.len() > MAX_TASKS {
            if let Some(old) = self.order.pop_front() {
                self.owner.remove(&old);
            }
        }
    }
}

/// What one listen stream accepted from legacy backends (whose list changes are relayed).
struct Listen {
    tools: bool,
    prompts: bool,
    resources: bool,
}

impl Instance {
    /// A 2026-07-28 request this module answers itself; `None`: routed like a legacy one
    /// (calls, reads, gets, completions), which [`Instance::forward`] sends on by era.
    pub(super) async fn on_modern_request(self: &Arc<Self>, msg: &Message, id: &str, method: &str) -> Option<Bytes> {
        Some(match method {
            "server/discover" => self.discover(id).await,
            "subscriptions/listen" => self.listen(msg, id).await,
            "tasks/get" | "tasks/update" | "tasks/cancel" => self.task_request(msg, id).await,
            m if proto::is_removed(m) || m == "notifications/initialized" => {
                error_response(Some(id), METHOD_NOT_FOUND, &format!("Method not found: {m}"), None)
            }
            _ => return None,
        })
    }

    /// The era of `backend`, probed once per config; `None` when it cannot be learnt now.
    pub(super) async fn era(&self, backend: &str) -> Option<Arc<Era>> {
        let hub = self.hub();
        let spec = hub.backend(backend)?;
        match hub.eras.of(spec).await {
            Ok(era) => Some(era),
            Err(why) => {
                tracing::debug!(%backend, error = %why, "the backend's era is not known");
                None
            }
        }
    }

    /// `server/discover` for the aggregate: what the vMCP serves, plus the extensions of the
    /// backends that speak 2026-07-28.
    async fn discover(self: &Arc<Self>, id: &str) -> Bytes {
        let hub = self.hub();
        let eras = &hub.eras;
        let probes = hub.backends.iter().map(|b| async move {
            let _ = tokio::time::timeout(DISCOVER_WAIT, eras.of(b)).await;
        });
        futures::future::join_all(probes).await;
        // What the aggregate honours: a list change of a legacy backend reaches listens
        // through its session (and a legacy session is always told); a 2026-07-28 backend's
        // only when it says it sends them.
        let mut extensions = Map::new();
        let mut flags = Flags::default();
        for b in &hub.backends {
            match hub.eras.known(&b.name).as_deref() {
                Some(Era::Modern { capabilities, .. }) => {
                    flags.add(capabilities);
                    if let Some(Value::Object(ext)) = capabilities.get("extensions") {
                        for (k, v) in ext {
                            extensions.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
                _ => flags = Flags { tools: true, prompts: true, resources: true, subscribe: true },
            }
        }
        let mut capabilities = json!({
            "tools": {"listChanged": flags.tools},
            "prompts": {"listChanged": flags.prompts},
            "resources": {"subscribe": flags.subscribe, "listChanged": flags.resources},
            "logging": {},
            "completions": {},
        });
        if !extensions.is_empty() {
            capabilities["extensions"] = Value::Object(extensions);
        }
        let result = json!({
            "supportedVersions": SUPPORTED,
            "capabilities": capabilities,
            "resultType": "complete",
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": {
                proto::META_SERVER_INFO: {"name": "apiary-vmcp", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        result_response(id, &result.to_string())
    }

    /// Lists one 2026-07-28 backend with the vMCP's own `_meta` (lists do not depend on
    /// the caller's capabilities).
    pub(super) async fn list_modern(&self, backend: &str, client: &ModernClient) -> Result<Listing, String> {
        let mut l = Listing { backend: backend.to_owned(), ..Listing::default() };
        l.tools = self.list_all_modern(backend, client, "tools/list", "tools").await?;
        l.prompts = self.list_all_modern(backend, client, "prompts/list", "prompts").await?;
        l.resources = self.list_all_modern(backend, client, "resources/list", "resources").await?;
        l.templates = self.list_all_modern(backend, client, "resources/templates/list", "resourceTemplates").await?;
        Ok(l)
    }

    async fn list_all_modern(
        &self,
        backend: &str,
        client: &ModernClient,
        method: &str,
        key: &str,
    ) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut params = json!({ "_meta": own_meta() });
            if let Some(c) = &cursor {
                params["cursor"] = json!(c);
            }
            let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
            let answer = client.request(Bytes::from(req), &[], None).await.map_err(|e| {
                if counts_as_failure(&e)
                    && let Some(h) = self.hub().health.get(backend)
                {
                    h.record_failure(&e.to_string());
                }
                format!("{method}: {e}")
            })?;
            match take_page(&answer, method, key, &mut items)? {
                Page::Unlisted => return Ok(items),
                Page::Next(next) => cursor = Some(next),
                Page::Last => {
                    if let Some(h) = self.hub().health.get(backend) {
                        h.record_success();
                    }
                    return Ok(items);
                }
            }
        }
        Err(format!("{method}: more than {MAX_LIST_PAGES} pages"))
    }

    /// A 2026-07-28 request to a backend that speaks it: only the id (and `rename`'s
    /// member) spliced, the `Mcp-Param-*` headers its tool declares computed from the
    /// arguments; what the backend sends before its answer goes up first; the answer comes
    /// back with only its id changed. A task it creates is remembered as the backend's.
    pub(super) async fn forward_modern(
        self: &Arc<Self>,
        msg: &Message,
        backend: &str,
        rename: Option<(&[&str], &str)>,
        era: &Era,
    ) -> Bytes {
        let client_id = msg.id_raw().unwrap_or("null").to_owned();
        let fail =
            |why: String| error_response(Some(&client_id), INTERNAL_ERROR, &why, Some(&json!({"backend": backend})));
        let Some(client) = era.client() else { return fail("the backend does not speak 2026-07-28".into()) };
        let granted = match self.route_grant(msg, backend, rename).await {
            Ok(granted) => granted,
            Err(refusal) => return refusal,
        };
        if let Err(why) = self.admit(backend) {
            return fail(why);
        }
        let backend_id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let Some(id_range) = msg.id_range() else { return fail("request without an id".into()) };
        let rename_value = match rename.map(|(_, n)| serde_json::to_string(n)) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return fail("cannot encode a tool name".into()),
            None => None,
        };
        let mut edits: Vec<(std::ops::Range<usize>, &[u8])> = vec![(id_range, backend_id.as_bytes())];
        if let (Some((path, _)), Some(v)) = (rename, &rename_value) {
            match msg.params_member(path) {
                Ok(Some(r)) => edits.push((r, v.as_bytes())),
                _ => return fail("cannot find the member to rename".into()),
            }
        }
        let bytes = match splice::splice(msg.bytes(), &edits) {
            Ok(b) => b,
            Err(e) => return fail(format!("cannot rewrite the request: {e}")),
        };
        let mut headers = self.param_headers(msg).await;
        headers.extend(granted);
        let tracked = self.modern.track(&client_id);
        let (tx, mut rx) = mpsc::channel::<Bytes>(NOTES_QUEUE);
        let outcome = {
            let call = client.request(bytes, &headers, Some(&tx));
            tokio::pin!(call);
            loop {
                tokio::select! {
                    r = &mut call => break Some(r),
                    Some(note) = rx.recv() => self.emit(note).await,
                    () = tracked.token.cancelled() => break None,
                    () = self.stop.cancelled() => break None,
                }
            }
        };
        drop(tx);
        while let Ok(note) = rx.try_recv() {
            self.emit(note).await;
        }
        drop(tracked);
        let health = self.hub().health.get(backend);
        match outcome {
            None => fail("the request was cancelled".into()),
            Some(Ok(answer)) => {
                if let Some(h) = health {
                    h.record_success();
                }
                let Ok(m) = Message::parse(answer) else {
                    return fail(format!("backend {backend:?} sent an invalid answer"));
                };
                if let Some(task) = created_task(&m) {
                    lock(&self.modern.tasks).insert(task, backend.to_owned());
                }
                m.with_id(&client_id)
            }
            Some(Err(e)) => {
                if counts_as_failure(&e)
                    && let Some(h) = health
                {
                    h.record_failure(&e.to_string());
                }
                fail(format!("backend {backend:?} failed: {e}"))
            }
        }
    }

    /// The `Mcp-Param-*` headers of a `tools/call`: the arguments its tool (as the catalog
    /// lists it) marks with `x-mcp-header`. Other methods have none.
    async fn param_headers(self: &Arc<Self>, msg: &Message) -> Vec<(String, String)> {
        if msg.method() != Some("tools/call") {
            return Vec::new();
        }
        let Some(name) = msg.params_string("name") else { return Vec::new() };
        let catalog = self.catalog_with(false, true).await;
        let Some(tool) = catalog.tools.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(&name)) else {
            return Vec::new();
        };
        let list = json!({ "tools": [tool] }).to_string();
        let mut out = Vec::new();
        for (_, params) in proto::param_headers_of_tools(&list) {
            for p in params {
                let raw = msg.params_member(&p.params_path()).ok().flatten().and_then(|r| msg.text(r));
                let value = match raw {
                    None | Some("null") => continue,
                    Some(s) if s.starts_with('"') => match serde_json::from_str::<String>(s) {
                        Ok(s) => s,
                        Err(_) => continue,
                    },
                    Some(other) => other.to_owned(),
                };
                out.push((format!("Mcp-Param-{}", p.header), encode_header_value(&value)));
            }
        }
        out
    }

    /// `tasks/get|update|cancel`: to the backend that created the task (or, for a task
    /// this instance never saw, to the one backend that has the tasks extension).
    async fn task_request(self: &Arc<Self>, msg: &Message, id: &str) -> Bytes {
        let Some(task) = msg.params_string("taskId") else {
            return error_response(Some(id), INVALID_PARAMS, "params.taskId is required", None);
        };
        let owner = lock(&self.modern.tasks).owner.get(&task).cloned();
        let owner = match owner {
            Some(o) => Some(o),
            None => {
                let hub = self.hub();
                let with_tasks: Vec<String> = hub
                    .backends
                    .iter()
                    .filter(|b| {
                        hub.eras.known(&b.name).is_some_and(|e| match e.as_ref() {
                            Era::Modern { capabilities, .. } => capabilities.get("extensions").is_some(),
                            Era::Legacy => false,
                        })
                    })
                    .map(|b| b.name.clone())
                    .collect();
                (with_tasks.len() == 1).then(|| with_tasks[0].clone())
            }
        };
        let Some(backend) = owner else {
            return error_response(
                Some(id),
                INVALID_PARAMS,
                &format!("unknown task: {task}"),
                Some(&json!({ "taskId": task })),
            );
        };
        match self.era(&backend).await {
            Some(era) if era.client().is_some() => self.forward_modern(msg, &backend, None, &era).await,
            _ => error_response(Some(id), INTERNAL_ERROR, &format!("backend {backend:?} is unavailable"), None),
        }
    }

    /// `subscriptions/listen`: one listen at each backend that speaks 2026-07-28 (the
    /// client's request as it came), acknowledged once with the union of what they
    /// accepted (and the list changes of legacy backends, relayed from their sessions);
    /// their notifications come up tagged with this listen's id. Ends when the client
    /// cancels it (its stream closed) or every backend ended its own.
    async fn listen(self: &Arc<Self>, msg: &Message, id: &str) -> Bytes {
        let asked: Value = msg
            .params_as::<Value>()
            .and_then(|mut p| p.get_mut("notifications").map(Value::take))
            .unwrap_or(Value::Null);
        if lock(&self.modern.listens).len() >= MAX_LISTENS {
            let why = format!("too many listen streams are open (at most {MAX_LISTENS})");
            return error_response(Some(id), INTERNAL_ERROR, &why, None);
        }
        let tracked = self.modern.track(id);
        let hub = self.hub();
        let mut legacy_backends = false;
        let mut opens = Vec::new();
        for b in &hub.backends {
            match self.era(&b.name).await {
                Some(era) if era.client().is_some() => {
                    if self.admit(&b.name).is_err() {
                        continue;
                    }
                    let backend_id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
                    opens.push(open_listen(era, b.name.clone(), msg.with_id(&backend_id)));
                }
                Some(_) => legacy_backends = true,
                None => {}
            }
        }
        let opened = futures::future::join_all(opens).await;
        let mut accepted = Accepted::default();
        let mut streams = Vec::new();
        for (backend, outcome) in opened {
            match outcome {
                Ok((filter, stream)) => {
                    accepted.add(&filter);
                    streams.push((backend, stream));
                }
                Err(why) => tracing::info!(%backend, error = %why, "the backend's listen is left out"),
            }
        }
        let listen = Arc::new(Listen {
            tools: legacy_backends && asked.get("toolsListChanged") == Some(&Value::Bool(true)),
            prompts: legacy_backends && asked.get("promptsListChanged") == Some(&Value::Bool(true)),
            resources: legacy_backends && asked.get("resourcesListChanged") == Some(&Value::Bool(true)),
        });
        accepted.tools |= listen.tools;
        accepted.prompts |= listen.prompts;
        accepted.resources |= listen.resources;
        lock(&self.modern.listens).insert(id.to_owned(), Arc::clone(&listen));
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": accepted.filter(), "_meta": {proto::META_SUBSCRIPTION_ID: Value::Null}},
        });
        if let Some(ack) = tag(&Bytes::from(ack.to_string()), id) {
            self.emit(ack).await;
        }
        let pumps = streams.into_iter().map(|(backend, stream)| self.pump_listen(backend, stream, id));
        let all_ended = futures::future::join_all(pumps);
        tokio::pin!(all_ended);
        let mut pumping = true;
        loop {
            tokio::select! {
                // Legacy backends' changes keep coming through their sessions after the
                // 2026-07-28 backends ended their listens.
                _ = &mut all_ended, if pumping => {
                    pumping = false;
                    if !legacy_backends {
                        break;
                    }
                }
                () = tracked.token.cancelled() => break,
                () = self.stop.cancelled() => break,
            }
        }
        lock(&self.modern.listens).remove(id);
        drop(tracked);
        let result = json!({"resultType": "complete", "_meta": {proto::META_SUBSCRIPTION_ID: Value::Null}});
        let answer = result_response(id, &result.to_string());
        tag_result(&answer, id).unwrap_or(answer)
    }

    /// Relays one backend's listen stream until it ends: its notifications retagged with
    /// the client's listen id (a list change also makes the lists be built again).
    async fn pump_listen(&self, backend: String, mut stream: ModernStream, id: &str) {
        loop {
            let next = match stream.next().await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%backend, error = %e, "the backend's listen stream ended");
                    return;
                }
            };
            let Ok(m) = Message::parse(next) else { continue };
            if m.kind() != Kind::Notification {
                return; // the listen's own answer: the backend ended it
            }
            if m.method().is_some_and(apiary_protocol::methods::is_list_changed) {
                self.epoch.fetch_add(1, Ordering::SeqCst);
            }
            if let Ok(frame) = with_notification_subscription_id(&m, id) {
                self.emit(frame).await;
            }
        }
    }

    /// A legacy backend's list change, to every listen stream that accepted that kind.
    pub(super) async fn relay_to_listens(&self, msg: &Message) {
        let method = msg.method().unwrap_or_default();
        let targets: Vec<String> = lock(&self.modern.listens)
            .iter()
            .filter(|(_, l)| match method {
                "notifications/tools/list_changed" => l.tools,
                "notifications/prompts/list_changed" => l.prompts,
                "notifications/resources/list_changed" => l.resources,
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in targets {
            let note = json!({"jsonrpc": "2.0", "method": method, "params": {"_meta": {proto::META_SUBSCRIPTION_ID: Value::Null}}});
            if let Some(frame) = tag(&Bytes::from(note.to_string()), &id) {
                self.emit(frame).await;
            }
        }
    }
}

/// Opens `backend`'s listen stream and waits (bounded) for its acknowledgement: what it
/// accepted and the stream.
async fn open_listen(
    era: Arc<Era>,
    backend: String,
    request: Bytes,
) -> (String, Result<(Value, ModernStream), String>) {
    let Some(client) = era.client() else { return (backend, Err("not a 2026-07-28 backend".into())) };
    let opened = async {
        let mut stream = client.open(request, &[]).await.map_err(|e| e.to_string())?;
        let first = stream.next().await.map_err(|e| e.to_string())?.ok_or("the stream ended at once")?;
        let m = Message::parse(first).map_err(|e| e.to_string())?;
        if m.method() != Some("notifications/subscriptions/acknowledged") {
            return Err(format!("the listen was answered with {}", m.payload_raw().unwrap_or("nothing")));
        }
        let filter =
            m.params_as::<Value>().and_then(|mut p| p.get_mut("notifications").map(Value::take)).unwrap_or(Value::Null);
        Ok((filter, stream))
    };
    let outcome = match tokio::time::timeout(ACK_WAIT, opened).await {
        Ok(r) => r,
        Err(_) => Err(format!("no acknowledgement within {ACK_WAIT:?}")),
    };
    (backend, outcome)
}

/// Which notifications the aggregate can deliver (`server/discover`'s capabilities).
#[derive(Default)]
struct Flags {
    tools: bool,
    prompts: bool,
    resources: bool,
    subscribe: bool,
}

impl Flags {
    fn add(&mut self, capabilities: &Value) {
        let on = |kind: &str, flag: &str| capabilities.get(kind).and_then(|k| k.get(flag)) == Some(&Value::Bool(true));
        self.tools |= on("tools", "listChanged");
        self.prompts |= on("prompts", "listChanged");
        self.resources |= on("resources", "listChanged");
        self.subscribe |= on("resources", "subscribe");
    }
}

/// The union of what the backends' listens accepted.
#[derive(Default)]
struct Accepted {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Accepted {
    fn add(&mut self, filter: &Value) {
        let on = |k: &str| filter.get(k) == Some(&Value::Bool(true));
        self.tools |= on("toolsListChanged");
        self.prompts |= on("promptsListChanged");
        self.resources |= on("resourcesListChanged");
        if let Some(Value::Array(uris)) = filter.get("resourceSubscriptions") {
            let seen: HashSet<String> = self.uris.iter().cloned().collect();
            for u in uris.iter().filter_map(Value::as_str) {
                if !seen.contains(u) {
                    self.uris.push(u.to_owned());
                }
            }
        }
    }

    fn filter(&self) -> Value {
        let mut f = Map::new();
        if self.tools {
            f.insert("toolsListChanged".into(), Value::Bool(true));
        }
        if self.prompts {
            f.insert("promptsListChanged".into(), Value::Bool(true));
        }
        if self.resources {
            f.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !self.uris.is_empty() {
            f.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(f)
    }
}

/// A notification of ours whose `_meta` subscription id (a placeholder) is set to `id`.
fn tag(frame: &Bytes, id: &str) -> Option<Bytes> {
    let m = Message::parse(frame.clone()).ok()?;
    with_notification_subscription_id(&m, id).ok()
}

/// The listen's final result with its `_meta` subscription id set to `id`.
fn tag_result(frame: &Bytes, id: &str) -> Option<Bytes> {
    let m = Message::parse(frame.clone()).ok()?;
    let result = m.payload_range()?;
    splice::replace_path(frame, result, &["_meta", proto::META_SUBSCRIPTION_ID], id).ok()
}

/// The `_meta` of the vMCP's own 2026-07-28 requests.
fn own_meta() -> Value {
    json!({
        proto::META_VERSION: MODERN,
        proto::META_CAPABILITIES: {},
        proto::META_CLIENT_INFO: {"name": "apiary-vmcp", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// The id of the task a `CreateTaskResult` (`resultType: "task"`) creates.
fn created_task(answer: &Message) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "resultType")]
        result_type: Option<String>,
        #[serde(rename = "taskId")]
        task_id: Option<String>,
        task: Option<TaskHead>,
    }
    #[derive(serde::Deserialize)]
    struct TaskHead {
        #[serde(rename = "taskId")]
        task_id: Option<String>,
    }
    if answer.kind() != Kind::Response {
        return None;
    }
    let head: Head = serde_json::from_str(answer.payload_raw()?).ok()?;
    if head.result_type.as_deref() != Some("task") {
        return None;
    }
    head.task_id.or(head.task.and_then(|t| t.task_id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_created_task_is_read_flat_or_nested_and_only_from_a_task_result() {
        let parse = |text: &str| Message::parse(Bytes::from(text.to_owned())).unwrap();
        let flat =
            parse(r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t-1","status":"working"}}"#);
        assert_eq!(created_task(&flat).as_deref(), Some("t-1"));
        let nested = parse(r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","task":{"taskId":"t-2"}}}"#);
        assert_eq!(created_task(&nested).as_deref(), Some("t-2"));
        let complete = parse(r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","taskId":"t-3"}}"#);
        assert_eq!(created_task(&complete), None);
    }

    #[test]
    fn the_task_table_forgets_the_oldest_past_its_bound() {
        let mut t = TaskOwners::default();
        for i in 0..=MAX_TASKS {
            t.insert(format!("t{i}"), "b".into());
        }
        assert_eq!(t.owner.len(), MAX_TASKS);
        assert!(!t.owner.contains_key("t0") && t.owner.contains_key("t1"));
    }

    #[test]
    fn listens_are_tagged_with_the_clients_id() {
        let ack = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{},"_meta":{"io.modelcontextprotocol/subscriptionId":null}}}"#,
        );
        let tagged = tag(&ack, "7").unwrap();
        let v: Value = serde_json::from_slice(&tagged).unwrap();
        assert_eq!(v["params"]["_meta"][proto::META_SUBSCRIPTION_ID], json!(7));
        let done = result_response(
            "7",
            r#"{"resultType":"complete","_meta":{"io.modelcontextprotocol/subscriptionId":null}}"#,
        );
        let v: Value = serde_json::from_slice(&tag_result(&done, "7").unwrap()).unwrap();
        assert_eq!(v["result"]["_meta"][proto::META_SUBSCRIPTION_ID], json!(7));
    }
}
