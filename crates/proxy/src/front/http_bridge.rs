//! Legacy clients (an `initialize`, a session) of an HTTP upstream that speaks only
//! 2026-07-28 (issue 18, part 5; mcp-brief.md §9 rule 40), the HTTP sibling of
//! `legacy_bridge`. `initialize` is answered from the upstream's `server/discover` (learnt
//! by `http_era`'s probe), the session is the proxy's (a bounded table, `bridged`), and each
//! of its requests is POSTed on its own as a 2026-07-28 one: `_meta` stamped by splice, a
//! fresh id, and the headers the era requires (`MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*` from the upstream's `x-mcp-header` annotations). The rounds,
//! `InputRequiredResult`s and cancellation are `legacy_rounds`'.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apiary_protocol::{Kind, Message, bridge, methods, modern};
use apiary_transport::sse;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::{self, Refusal};
use crate::front::bridged::{Bridged, BridgedSessions};
use crate::front::call::sse_response;
use crate::front::edge::Accepts;
use crate::front::http_era::{self, UpstreamEra};
use crate::front::legacy_rounds::{self, Opening, Upstream};
use crate::front::tool_headers::ToolHeaders;
use crate::guard::RequestCtx;

/// Where the bridge sends its POSTs, and what it keeps between them.
pub(crate) struct HttpBridge {
    client: reqwest::Client,
    endpoint: String,
    /// Bound on one answer read from the upstream.
    max_answer: usize,
    /// Bound on one round, and on the client's answer to a request put to it.
    timeout: Duration,
    write_timeout: Duration,
    max_sessions: usize,
    idle: Duration,
    pub(crate) era: UpstreamEra,
    pub(crate) sessions: BridgedSessions,
    /// The upstream's `x-mcp-header` annotations, per modern generation of the era probe.
    tool_headers: ToolHeaders,
    next_id: AtomicU64,
}

/// The bounds of a bridge.
pub(crate) struct Bounds {
    pub(crate) max_answer: usize,
    pub(crate) timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_sessions: usize,
    pub(crate) idle: Duration,
}

impl HttpBridge {
    pub(crate) fn new(client: reqwest::Client, endpoint: &str, bounds: Bounds) -> HttpBridge {
        HttpBridge {
            client,
            endpoint: endpoint.to_owned(),
            max_answer: bounds.max_answer,
            timeout: bounds.timeout,
            write_timeout: bounds.write_timeout,
            max_sessions: bounds.max_sessions,
            idle: bounds.idle,
            era: UpstreamEra::default(),
            sessions: BridgedSessions::default(),
            tool_headers: ToolHeaders::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The upstream's `server/discover` result when it is modern-only (probed now, with
    /// `headers`, when its era is not known).
    pub(crate) async fn modern_only(&self, headers: &[(HeaderName, HeaderValue)]) -> Option<Bytes> {
        let probe = http_era::probe(&self.client, &self.endpoint, headers, self.timeout);
        self.era.learn(probe).await.modern_only().cloned()
    }

    /// Probes the upstream in the background (at start, with the proxy's own credentials).
    pub(crate) fn probe_at_start(self: &Arc<Self>, headers: Vec<(HeaderName, HeaderValue)>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let me = Arc::clone(self);
        rt.spawn(async move {
            let probe = http_era::probe(&me.client, &me.endpoint, &headers, me.timeout);
            me.era.learn(probe).await;
        });
    }
}

/// `initialize` of a legacy client of a modern-only upstream: a session of the proxy's, and
/// the answer made from `discover` (JSON, or one SSE event for a client that takes only SSE).
pub(crate) fn open(bridge: &HttpBridge, m: &Message, discover: &[u8], acc: Accepts) -> Result<Response, Refusal> {
    let id = m.id_raw().unwrap_or("null");
    let o = Opening::of(m)?;
    let b = Arc::new(Bridged::standalone(o.caps, &o.capabilities, o.client_info.as_deref()));
    let session: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    bridge.sessions.insert_bounded(Arc::clone(&session), b, bridge.max_sessions, bridge.idle)?;
    let result = without_subscribe(&bridge::initialize_from_discover(discover, o.revision.as_str()));
    let frame = apiary_protocol::result_response(id, &result);
    tracing::info!(%session, revision = %o.revision, "session opened on a 2026-07-28-only HTTP server (bridged)");
    let mut res = if acc.json {
        answer::json(frame)
    } else {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Ok(sse::message_event(None, &frame)));
        sse_response(rx)
    };
    if let Ok(v) = HeaderValue::from_str(&session) {
        res.headers_mut().insert("mcp-session-id", v);
    }
    Ok(res)
}

/// An `initialize` result (made by the proxy) without `resources.subscribe`: subscriptions
/// are not bridged to an HTTP upstream, so they are not advertised.
fn without_subscribe(result: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(result) else { return result.to_owned() };
    if let Some(resources) = v.pointer_mut("/capabilities/resources").and_then(serde_json::Value::as_object_mut) {
        resources.remove("subscribe");
    }
    v.to_string()
}

/// A POST of a bridged session; `headers` are what each of its POSTs upstream carries
/// (the proxy's credentials, the caller's passed headers).
pub(crate) async fn post(
    bridge: &Arc<HttpBridge>,
    ctx: &RequestCtx,
    b: Arc<Bridged>,
    members: Vec<Result<Message, apiary_protocol::ParseError>>,
    batch: bool,
    acc: Accepts,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<Response, Refusal> {
    b.touch();
    let up = Arc::new(Rounds { bridge: Arc::clone(bridge), headers });
    legacy_rounds::post(&up, ctx, b, members, batch, acc).await
}

/// One request's POSTs to the upstream.
struct Rounds {
    bridge: Arc<HttpBridge>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rounds {
    /// POSTs `request` (a 2026-07-28 request) with a fresh id: the answer, with the
    /// request's own id back.
    async fn send(&self, request: &Message, out: Option<&mpsc::Sender<Bytes>>) -> Result<Bytes, Refusal> {
        let params =
            if request.method() == Some(methods::TOOLS_CALL) { self.param_headers(request).await } else { Vec::new() };
        self.post(request, out, params).await
    }

    /// [`Rounds::send`] with the `Mcp-Param-*` headers given.
    async fn post(
        &self,
        request: &Message,
        out: Option<&mpsc::Sender<Bytes>>,
        params: Vec<(String, String)>,
    ) -> Result<Bytes, Refusal> {
        let method = request.method().unwrap_or_default();
        let n = self.bridge.next_id.fetch_add(1, Ordering::Relaxed);
        let body = request.with_id(&format!("\"apiary-{n}\""));
        let mut req = http_era::modern_post(&self.bridge.client, &self.bridge.endpoint, method, &self.headers);
        if let Some(member) = modern::name_member(method)
            && let Some(name) = modern::params_string(request, member)
        {
            req = req.header("mcp-name", bridge::header_value(&name));
        }
        for (header, value) in params {
            req = req.header(header, value);
        }
        let unavailable = |reason: String| Refusal::UpstreamUnavailable { reason, retry_after: 1, id: None };
        let res = req.body(body).send().await.map_err(|e| unavailable(format!("the server is not reachable: {e}")))?;
        let status = res.status().as_u16();
        let frame = match http_era::read_answer(res, out, self.bridge.max_answer).await {
            Ok(frame) => frame,
            Err(why) => {
                if (400..500).contains(&status) {
                    // Not an error of the era (those are JSON-RPC): the server may no
                    // longer be the one probed.
                    self.bridge.era.forget();
                }
                return Err(unavailable(format!("the server answered HTTP {status}: {why}")));
            }
        };
        let answer = Message::parse(frame).map_err(|_| unavailable("the server's answer is not JSON-RPC".into()))?;
        Ok(match request.id_raw() {
            Some(id) => answer.with_id(id),
            None => answer.into_bytes(),
        })
    }

    /// The `Mcp-Param-*` headers of a `tools/call`, from the upstream's annotations (its
    /// tools listed first when nothing is known about them).
    async fn param_headers(&self, request: &Message) -> Vec<(String, String)> {
        let Some(tool) = modern::params_string(request, "name") else { return Vec::new() };
        let generation = self.bridge.era.generation();
        let params = match self.bridge.tool_headers.of(generation, &tool) {
            Some(params) => params,
            None => {
                self.fetch_tools(generation).await;
                self.bridge.tool_headers.of(generation, &tool).unwrap_or_default()
            }
        };
        params
            .iter()
            .filter_map(|p| Some((format!("mcp-param-{}", p.header), bridge::param_header_value(request, p)?)))
            .collect()
    }

    /// Lists the upstream's tools (first page) to learn their annotations; a failure leaves
    /// nothing known, and the call goes without the headers.
    async fn fetch_tools(&self, generation: u64) {
        let params = modern::probe_params("apiary", env!("CARGO_PKG_VERSION"));
        let frame = format!(r#"{{"jsonrpc":"2.0","id":0,"method":"tools/list","params":{params}}}"#);
        let Ok(list) = Message::parse(Bytes::from(frame)) else { return };
        match tokio::time::timeout(self.bridge.timeout, self.post(&list, None, Vec::new())).await {
            Ok(Ok(answer)) => self.learn(generation, &answer),
            _ => tracing::debug!("could not list the upstream's tools for its Mcp-Param-* headers"),
        }
    }

    fn learn(&self, generation: u64, answer: &Bytes) {
        if let Ok(m) = Message::parse(answer.clone())
            && m.kind() == Kind::Response
            && let Some(result) = m.payload_raw()
        {
            self.bridge.tool_headers.learn(generation, result);
        }
    }
}

impl Upstream for Rounds {
    async fn round(
        &self,
        _ctx: &RequestCtx,
        request: Bytes,
        out: Option<&mpsc::Sender<Bytes>>,
    ) -> Result<Bytes, Refusal> {
        let request = Message::parse(request).map_err(Refusal::Parse)?;
        let generation = self.bridge.era.generation();
        let answer = tokio::time::timeout(self.bridge.timeout, self.send(&request, out)).await.map_err(|_| {
            Refusal::UpstreamUnavailable {
                reason: "the server did not answer in time".into(),
                retry_after: 1,
                id: None,
            }
        })??;
        if request.method() == Some(methods::TOOLS_LIST) {
            self.learn(generation, &answer);
        }
        Ok(answer)
    }

    async fn subscription(&self, _ctx: &RequestCtx, _b: &Arc<Bridged>, m: &Message) -> Bytes {
        let msg = "resource subscriptions are not bridged to an HTTP server that speaks only 2026-07-28";
        apiary_protocol::error_response(m.id_raw(), apiary_protocol::codes::METHOD_NOT_FOUND, msg, None)
    }

    fn answer_timeout(&self) -> Duration {
        self.bridge.timeout
    }

    fn write_timeout(&self) -> Duration {
        self.bridge.write_timeout
    }
}
