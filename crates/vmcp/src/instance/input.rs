//! A legacy backend asking a 2026-07-28 client for input. A modern `tools/call`,
//! `prompts/get` or `resources/read` whose `_meta` declares `sampling`, `elicitation` or
//! `roots` goes to a legacy backend over a session of its own, initialized with those
//! capabilities (so whatever the backend asks on it can only be that call's). A
//! server→client request the backend raises while serving it becomes the client's
//! `InputRequiredResult` (SEP-2322): `inputRequests` keyed by the key the backend named in
//! `_meta["apiary/inputKey"]` (else `input-N`), holding its method and params as written
//! and never its id; `requestState` a random handle to the parked call. The retry's
//! `inputResponses` answer the backend's requests with the client's bytes, then the call
//! goes on to its answer (or the next `InputRequiredResult`). Parked calls are bounded in
//! number ([`MAX_PARKED`]) and time ([`PARK_TTL`], and the backend's request timeout); a call
//! that is answered, expires or is given up has its session closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_protocol::{Kind, Message, error_response, modern as proto, result_response, splice};
use apiary_transport::client::{ClientError, RawSession, SessionOptions};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use super::{CLOSE_LIMIT, INTERNAL_ERROR, INVALID_PARAMS, Instance, counts_as_failure, lock};

/// Calls parked at once, waiting for their client's input.
pub(crate) const MAX_PARKED: usize = 64;
/// How long a parked call waits for its retry.
pub(crate) const PARK_TTL: Duration = Duration::from_secs(300);
/// After a first server→client request, how long further ones raised with it are gathered
/// into the same `InputRequiredResult`.
const GATHER: Duration = Duration::from_millis(100);
/// Most server→client requests in one `InputRequiredResult`.
const MAX_ASKS: usize = 16;
/// Messages of one call's session waiting to be read.
const INCOMING: usize = 64;
/// The `params._meta` member in which a legacy server names the key its request's answer
/// should have (the testkit does; the proxy's front reads the same).
const INPUT_KEY_META: &str = "apiary/inputKey";
/// Longest key taken from [`INPUT_KEY_META`].
const MAX_KEY_LEN: usize = 64;
/// What the retry of a call that is not parked (any more) is told, with -32602.
pub(crate) const GONE: &str = "requestState names no call waiting for input (unknown, answered already or expired)";
/// What a call is told, with -32603, when it would be parked but the table is full.
pub(crate) const TOO_MANY_PARKED: &str = "too many calls wait for their client's input";
/// The client capabilities a legacy backend may ask with.
const ASKING_CAPABILITIES: [&str; 3] = ["sampling", "elicitation", "roots"];

/// Whether a modern request of this method may be answered with an `InputRequiredResult`.
pub(super) fn may_ask(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// Whether a modern request carries a `requestState` (it is a retry).
pub(super) fn is_retry(m: &Message) -> bool {
    m.params_member(&["requestState"]).ok().flatten().is_some()
}

/// The `initialize` params of a session for this request, when its `_meta` declares a
/// capability a backend may ask with: those capabilities (as the client wrote them) and its
/// `clientInfo`. Only `_meta` is read, never the arguments.
pub(super) fn capable_init(m: &Message) -> Option<String> {
    let caps = meta_value(m, proto::META_CAPABILITIES)?;
    let mut kept = Map::new();
    for k in ASKING_CAPABILITIES {
        if let Some(v) = caps.get(k).filter(|v| v.is_object()) {
            kept.insert(k.to_owned(), v.clone());
        }
    }
    if kept.is_empty() {
        return None;
    }
    let info = meta_value(m, proto::META_CLIENT_INFO)
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"name": "apiary-vmcp", "version": env!("CARGO_PKG_VERSION")}));
    Some(json!({"protocolVersion": "2025-11-25", "capabilities": kept, "clientInfo": info}).to_string())
}

/// The `initialize` params of a session for one request: [`capable_init`]'s, else no
/// capabilities and the request's `clientInfo`.
pub(super) fn plain_init(m: &Message) -> String {
    capable_init(m).unwrap_or_else(|| {
        let info = meta_value(m, proto::META_CLIENT_INFO)
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"name": "apiary-vmcp", "version": env!("CARGO_PKG_VERSION")}));
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": info}).to_string()
    })
}

fn meta_value(m: &Message, key: &str) -> Option<Value> {
    let range = m.params_member(&["_meta", key]).ok()??;
    serde_json::from_str(m.text(range)?).ok()
}

/// What the state of a call is bound to: its method and the name (or URI) it names.
fn binding(m: &Message) -> String {
    let method = m.method().unwrap_or_default();
    let name = proto::name_member(method).and_then(|member| m.params_string(member)).unwrap_or_default();
    format!("{method}\n{name}")
}

/// The raw answer under `key` in the request's `inputResponses`, when it is an object.
fn response_for<'a>(m: &'a Message, key: &str) -> Option<&'a str> {
    let range = m.params_member(&["inputResponses", key]).ok()??;
    let raw = m.text(range)?;
    raw.starts_with('{').then_some(raw)
}

/// The request as the legacy backend gets it: no `inputResponses` or `requestState`, no
/// `io.modelcontextprotocol/*` `_meta` members, its id (and `rename`'s member) spliced;
/// every other byte as it came.
fn backend_request(m: &Message, backend_id: &str, rename: Option<(&[&str], &str)>) -> Result<Bytes, String> {
    let stripped = match m.params_range() {
        Some(params) if m.bytes().get(params.start) == Some(&b'{') => {
            splice::remove_members(m.bytes(), params, |k| k == "inputResponses" || k == "requestState")
                .map_err(|e| e.to_string())?
        }
        _ => m.bytes().clone(),
    };
    let legacy = proto::legacy_request(&stripped).map_err(|e| e.to_string())?;
    let legacy = Message::parse(legacy).map_err(|e| e.to_string())?;
    let id_range = legacy.id_range().ok_or("request without an id")?;
    let value = match rename {
        Some((_, name)) => Some(serde_json::to_string(name).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut edits: Vec<(std::ops::Range<usize>, &[u8])> = vec![(id_range, backend_id.as_bytes())];
    if let (Some((path, _)), Some(v)) = (rename, &value) {
        match legacy.params_member(path) {
            Ok(Some(r)) => edits.push((r, v.as_bytes())),
            _ => return Err("cannot find the member to rename".into()),
        }
    }
    splice::splice(legacy.bytes(), &edits).map_err(|e| e.to_string())
}

/// One call on a session of its own, waiting for its answer.
pub(super) struct Call {
    backend: String,
    session: Arc<RawSession>,
    /// The call's id at the backend (JSON text).
    backend_id: String,
    answer: JoinHandle<Result<Bytes, ClientError>>,
    incoming: mpsc::Receiver<Bytes>,
    /// Whether `incoming` may still deliver.
    open: bool,
    method: String,
}

impl Drop for Call {
    /// However the call ends, its request stops and its session closes (bounded).
    fn drop(&mut self) {
        self.answer.abort();
        let session = Arc::clone(&self.session);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_LIMIT, session.close()).await;
            });
        }
    }
}

/// One server→client request of the backend, waiting for the client's answer.
struct Asked {
    key: String,
    /// The backend's id, as JSON text (it never reaches the client).
    backend_id: String,
    /// `{"method":…,"params":…}` as it goes into `inputRequests` (params as the backend wrote them).
    request: String,
}

/// A call and the backend's requests its client is asked to answer.
struct Parked {
    call: Call,
    asked: Vec<Asked>,
    binding: String,
}

/// A parked call and the timer that expires it (stopped when the call is taken).
struct Entry {
    parked: Parked,
    expiry: AbortHandle,
}

/// The parked calls of one instance.
pub(super) struct InputState {
    parked: Arc<Mutex<HashMap<String, Entry>>>,
    keys: AtomicU64,
    max: usize,
    ttl: Duration,
}

impl Default for InputState {
    fn default() -> Self {
        InputState { parked: Arc::default(), keys: AtomicU64::new(1), max: MAX_PARKED, ttl: PARK_TTL }
    }
}

impl InputState {
    fn fresh_key(&self) -> String {
        format!("input-{}", self.keys.fetch_add(1, Ordering::Relaxed))
    }

    /// Parks `p`, returning its handle; `None` when the table is full (`p` is then
    /// dropped: its session closes).
    fn park(&self, p: Parked) -> Option<String> {
        let mut table = lock(&self.parked);
        if table.len() >= self.max {
            return None;
        }
        let handle = format!("{:032x}", rand::random::<u128>());
        let table_ref = Arc::downgrade(&self.parked);
        let key = handle.clone();
        let ttl = self.ttl;
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let gone = table_ref.upgrade().and_then(|t| lock(&t).remove(&key));
            if gone.is_some() {
                tracing::info!("a call waiting for its client's input expired; its backend session is closed");
            }
        })
        .abort_handle();
        table.insert(handle.clone(), Entry { parked: p, expiry });
        Some(handle)
    }

    /// The call `handle` names, if it is parked for `binding`.
    fn take(&self, handle: &str, binding: &str) -> Option<Parked> {
        let mut table = lock(&self.parked);
        if table.get(handle).is_none_or(|e| e.parked.binding != binding) {
            return None;
        }
        let entry = table.remove(handle)?;
        entry.expiry.abort();
        Some(entry.parked)
    }
}

impl Instance {
    /// A modern call's first round to a legacy backend on a session initialized with the
    /// capabilities it declares (`init`): its answer, or an `InputRequiredResult`.
    pub(super) async fn input_first(
        self: &Arc<Self>,
        msg: &Message,
        backend: &str,
        rename: Option<(&[&str], &str)>,
        init: String,
    ) -> Bytes {
        let client_id = msg.id_raw().unwrap_or("null").to_owned();
        let fail = |why: String| fail(&client_id, backend, &why);
        let routed = match self.routed_headers(msg, backend, rename).await {
            Ok(h) => h,
            Err(refusal) => return refusal,
        };
        if let Err(why) = self.admit(backend) {
            return fail(why);
        }
        let backend_id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let bytes = match backend_request(msg, &backend_id, rename) {
            Ok(b) => b,
            Err(why) => return fail(format!("cannot rewrite the request: {why}")),
        };
        let (session, incoming) = match self.open_capable(backend, init).await {
            Ok(s) => s,
            Err(why) => return fail(why),
        };
        let session = Arc::new(session);
        let answer = {
            let session = Arc::clone(&session);
            tokio::spawn(async move { session.request_with(bytes, &routed).await })
        };
        let call = Call {
            backend: backend.to_owned(),
            session,
            backend_id,
            answer,
            incoming,
            open: true,
            method: msg.method().unwrap_or_default().to_owned(),
        };
        self.input_wait(call, msg, &client_id).await
    }

    /// A retry: its `requestState` names a parked call, whose backend's requests its
    /// `inputResponses` answer; then the call goes on.
    pub(super) async fn input_retry(self: &Arc<Self>, msg: &Message) -> Bytes {
        let client_id = msg.id_raw().unwrap_or("null").to_owned();
        let gone = || error_response(Some(&client_id), INVALID_PARAMS, GONE, None);
        let Some(state) = msg.params_string("requestState") else { return gone() };
        let binding = binding(msg);
        let Some(Parked { call, asked, .. }) = self.input.take(&state, &binding) else { return gone() };
        let mut missing = Vec::new();
        for a in asked {
            match response_for(msg, &a.key) {
                // The answer goes to the backend as the client wrote it.
                Some(raw) => {
                    if let Err(e) = call.session.send(result_response(&a.backend_id, raw)).await {
                        return fail(&client_id, &call.backend, &format!("the backend took no answer: {e}"));
                    }
                }
                None => missing.push(a),
            }
        }
        if !missing.is_empty() {
            // Asked again for what is still missing (SEP-2322: re-request, not an error).
            return self.ask_client(call, missing, &client_id, binding);
        }
        self.input_wait(call, msg, &client_id).await
    }

    /// A token-exchange backend's lists for the request's caller, over a session of their own.
    pub(super) async fn list_for_caller(&self, backend: &str) -> Result<super::Listing, String> {
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "apiary-vmcp", "version": env!("CARGO_PKG_VERSION")}});
        let (session, _incoming) = self.open_capable(backend, init.to_string()).await?;
        let listed = self.list_session(backend, &session, None).await;
        let _ = tokio::time::timeout(CLOSE_LIMIT, session.close()).await;
        if listed.is_ok()
            && let Some(h) = self.hub().health.get(backend)
        {
            h.record_success();
        }
        listed
    }

    /// A session with `backend` for one call, initialized with `init`.
    async fn open_capable(&self, backend: &str, init: String) -> Result<(RawSession, mpsc::Receiver<Bytes>), String> {
        let hub = self.hub();
        let Some(spec) = hub.backend(backend) else { return Err(format!("no backend named {backend:?}")) };
        let mut options = SessionOptions {
            incoming_capacity: INCOMING,
            // A backend may send its requests on the session's GET stream rather than the
            // call's own (rmcp does).
            listen: true,
            initialize_params: init,
            ..spec.session_options()
        };
        if let Some(x) = &spec.exchange {
            let token = self.exchanged(backend, x).await?;
            options.headers.push(x.header_for(&token));
        }
        RawSession::open(&spec.url, options).await.map_err(|e| {
            if let Some(h) = hub.health.get(backend) {
                h.record_failure(&e.to_string());
            }
            format!("backend {backend:?} is unavailable: {e}")
        })
    }

    /// Waits for the call's answer or the backend's next requests, whichever comes first;
    /// what the backend notifies meanwhile (progress, logs) goes up.
    async fn input_wait(self: &Arc<Self>, mut call: Call, msg: &Message, client_id: &str) -> Bytes {
        let tracked = self.modern.track(client_id);
        loop {
            let first = tokio::select! {
                r = &mut call.answer => {
                    drop(tracked);
                    return self.input_done(call, r, client_id).await;
                }
                f = call.incoming.recv(), if call.open => match f {
                    Some(f) => f,
                    None => { call.open = false; continue; }
                },
                () = tracked.token.cancelled() => {
                    let note = format!(
                        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"the client went away"}}}}"#,
                        call.backend_id
                    );
                    let _ = call.session.send(Bytes::from(note)).await;
                    return fail(client_id, &call.backend, "the request was cancelled");
                }
                () = self.stop.cancelled() => return fail(client_id, &call.backend, "the session is ending"),
            };
            let mut asks = Vec::new();
            if let Some(ask) = self.sort(&call, first).await {
                asks.push(ask);
            }
            if asks.is_empty() {
                continue;
            }
            while asks.len() < MAX_ASKS {
                match tokio::time::timeout(GATHER, call.incoming.recv()).await {
                    Ok(Some(f)) => {
                        if let Some(ask) = self.sort(&call, f).await {
                            asks.push(ask);
                        }
                    }
                    Ok(None) => {
                        call.open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let mut asked: Vec<Asked> = Vec::new();
            for ask in asks {
                let (Some(backend_id), Some(method)) = (ask.id_raw(), ask.method()) else { continue };
                let hinted = ask
                    .params_member(&["_meta", INPUT_KEY_META])
                    .ok()
                    .flatten()
                    .and_then(|r| serde_json::from_slice::<String>(&ask.bytes()[r]).ok())
                    .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && !asked.iter().any(|a| &a.key == k));
                let key = hinted.unwrap_or_else(|| self.input.fresh_key());
                // Answered already by this request's own `inputResponses` (a key the backend
                // names itself, as a stateless server would read it): passed on at once.
                if let Some(raw) = response_for(msg, &key) {
                    let _ = call.session.send(result_response(backend_id, raw)).await;
                    continue;
                }
                let request =
                    format!(r#"{{"method":{},"params":{}}}"#, Value::from(method), ask.params_raw().unwrap_or("{}"));
                asked.push(Asked { key, backend_id: backend_id.to_owned(), request });
            }
            if asked.is_empty() {
                continue;
            }
            drop(tracked);
            return self.ask_client(call, asked, client_id, binding(msg));
        }
    }

    /// One message of the call's session: a server→client request is returned (to be
    /// asked of the client); a ping is answered; a notification goes up.
    async fn sort(&self, call: &Call, frame: Bytes) -> Option<Message> {
        let m = Message::parse(frame).ok()?;
        match m.kind() {
            Kind::Request if m.method() == Some("ping") => {
                let _ = call.session.send(result_response(m.id_raw().unwrap_or("null"), "{}")).await;
                None
            }
            Kind::Request => Some(m),
            Kind::Notification => {
                self.emit(m.into_bytes()).await;
                None
            }
            Kind::Response | Kind::Error => None,
        }
    }

    /// The call's answer, with the client's id, made a 2026-07-28 result.
    async fn input_done(
        &self,
        mut call: Call,
        outcome: Result<Result<Bytes, ClientError>, tokio::task::JoinError>,
        client_id: &str,
    ) -> Bytes {
        // What the backend notified before its answer goes up first.
        while let Ok(f) = call.incoming.try_recv() {
            if let Ok(m) = Message::parse(f)
                && m.kind() == Kind::Notification
            {
                self.emit(m.into_bytes()).await;
            }
        }
        let health = self.hub().health.get(&call.backend);
        match outcome {
            Ok(Ok(answer)) => {
                if let Some(h) = health {
                    h.record_success();
                }
                match Message::parse(answer) {
                    Ok(m) => {
                        let frame = m.with_id(client_id);
                        proto::complete_result(frame.clone(), &call.method).unwrap_or(frame)
                    }
                    Err(e) => fail(client_id, &call.backend, &format!("the backend sent an invalid answer: {e}")),
                }
            }
            Ok(Err(e)) => {
                if counts_as_failure(&e)
                    && let Some(h) = health
                {
                    h.record_failure(&e.to_string());
                }
                fail(client_id, &call.backend, &format!("backend {:?} failed: {e}", call.backend))
            }
            Err(e) => fail(client_id, &call.backend, &format!("the call stopped: {e}")),
        }
    }

    /// Parks the call and answers the client with an `InputRequiredResult`; when no more
    /// calls can be parked, the call is given up (its session closed).
    fn ask_client(&self, call: Call, asked: Vec<Asked>, client_id: &str, binding: String) -> Bytes {
        let mut requests = String::from("{");
        for (i, a) in asked.iter().enumerate() {
            if i > 0 {
                requests.push(',');
            }
            requests.push_str(&Value::from(a.key.as_str()).to_string());
            requests.push(':');
            requests.push_str(&a.request);
        }
        requests.push('}');
        let backend = call.backend.clone();
        match self.input.park(Parked { call, asked, binding }) {
            Some(state) => {
                let result = format!(
                    r#"{{"resultType":"input_required","inputRequests":{requests},"requestState":{}}}"#,
                    Value::from(state)
                );
                result_response(client_id, &result)
            }
            None => {
                tracing::warn!(
                    max = self.input.max,
                    "a call's input request was refused: too many calls wait for input"
                );
                fail(client_id, &backend, TOO_MANY_PARKED)
            }
        }
    }
}

fn fail(client_id: &str, backend: &str, why: &str) -> Bytes {
    error_response(Some(client_id), INTERNAL_ERROR, why, Some(&json!({"backend": backend})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Message {
        Message::parse(Bytes::from(text.to_owned())).unwrap()
    }

    /// A call on a real session (a fixture over HTTP) whose answer never comes.
    async fn waiting_call(url: &str) -> Call {
        let (session, incoming) = RawSession::open(url, SessionOptions::default()).await.unwrap();
        Call {
            backend: "b".into(),
            session: Arc::new(session),
            backend_id: "1".into(),
            answer: tokio::spawn(std::future::pending()),
            incoming,
            open: true,
            method: "tools/call".into(),
        }
    }

    fn parked(call: Call, binding: &str) -> Parked {
        Parked { call, asked: Vec::new(), binding: binding.into() }
    }

    #[tokio::test]
    async fn the_park_table_is_bounded_bound_to_the_call_and_expires() {
        let server = apiary_testkit::server::serve_http(
            "127.0.0.1:0".parse().unwrap(),
            apiary_testkit::server::ServerOptions::default(),
        )
        .await
        .unwrap();
        let state = InputState { max: 1, ttl: Duration::from_secs(300), ..InputState::default() };
        let first = state.park(parked(waiting_call(server.url()).await, "tools/call\na")).unwrap();
        // Full: the next call is not parked (and is dropped, its session closed).
        assert!(state.park(parked(waiting_call(server.url()).await, "tools/call\nb")).is_none());
        // Another tool's retry cannot take it; its own can, once.
        assert!(state.take(&first, "tools/call\nb").is_none());
        assert!(state.take(&first, "tools/call\na").is_some());
        assert!(state.take(&first, "tools/call\na").is_none());

        // A call never retried is forgotten once its time is up (a zero bound here).
        let quick = InputState { ttl: Duration::ZERO, ..InputState::default() };
        let late = quick.park(parked(waiting_call(server.url()).await, "tools/call\na")).unwrap();
        for _ in 0..1000 {
            if lock(&quick.parked).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(quick.take(&late, "tools/call\na").is_none());
        assert!(lock(&quick.parked).is_empty());
        assert!(lock(&state.parked).is_empty());
    }

    #[test]
    fn only_the_capabilities_a_backend_may_ask_with_make_a_session_of_its_own() {
        let m = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1e400},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{},"roots":{"listChanged":true},"extensions":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"2"}}}}"#,
        );
        let init: Value = serde_json::from_str(&capable_init(&m).unwrap()).unwrap();
        assert_eq!(init["capabilities"], json!({"sampling": {}, "roots": {"listChanged": true}}));
        assert_eq!(init["clientInfo"]["name"], "c");
        assert_eq!(init["protocolVersion"], "2025-11-25");
        let none = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/clientCapabilities":{"extensions":{}}}}}"#,
        );
        assert!(capable_init(&none).is_none());
    }

    #[test]
    fn the_backend_gets_the_request_without_the_modern_members_and_with_its_own_id_and_name() {
        let m = parse(
            r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"old_t","arguments":{"n":1.50},"inputResponses":{"k":{}},"requestState":"s","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":7}}}"#,
        );
        let out = backend_request(&m, "42", Some((&["name"], "t"))).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"t","arguments":{"n":1.50},"_meta":{"progressToken":7}}}"#
        );
        assert!(is_retry(&m));
        assert_eq!(response_for(&m, "k"), Some("{}"));
        assert_eq!(binding(&m), "tools/call\nold_t");
        assert!(may_ask("resources/read") && !may_ask("tools/list"));
    }
}
