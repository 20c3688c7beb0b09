//! A transparent reverse proxy for servers that speak HTTP themselves (Streamable HTTP or
//! the 2024-11-05 SSE transport), local or remote. The edge checks run first; then bytes
//! go through unchanged, streamed both ways. It is a front of its own (it answers HTTP
//! clients and applies the guard), so it lives here; what it asks of the upstream beyond
//! forwarding (a bridged sessionless request) is `upstream::stateless_bridge`. A Streamable
//! HTTP upstream that speaks only 2026-07-28 (found by `http_era`'s probe) gets its legacy
//! clients through `http_bridge` (its 2024-11-05 clients through `http_bridge_sse`, the
//! proxy's own `/sse` and `/messages`); every other one is forwarded byte for byte as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apiary_protocol::{Body as JsonBody, codes, error_response, parse_body};
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use apiary_policy::outgoing::{ExchangeError, OutgoingError};

use crate::answer::{self, Refusal};
use crate::front::edge;
use crate::front::http_bridge::{self, HttpBridge};
use crate::front::http_bridge_sse::{self, SseBridge};
use crate::front::legacy_sse;
use crate::guard::{self, Guard, RequestCtx};
use crate::upstream::stateless_bridge;

/// Where requests go.
pub struct HttpUpstream {
    client: reqwest::Client,
    /// The local path that stands for the server's MCP endpoint (`/mcp` or `/sse`).
    local_endpoint: &'static str,
    /// The server's MCP endpoint, e.g. `https://host/fetch/mcp`.
    remote_endpoint: String,
    /// `scheme://host[:port]` of the server; other paths are resolved against it.
    remote_origin: String,
    max_body: usize,
    /// Bound on a bridged sessionless request, handshake included.
    bridge_timeout: Duration,
    /// Authorization and tool filters, applied to each parsed message.
    guard: Arc<Guard>,
    /// The upstream's era and the legacy sessions bridged to it when it is modern-only
    /// (a Streamable HTTP upstream only).
    bridge: Option<Arc<HttpBridge>>,
    /// The proxy's own `/sse` streams in front of `bridge` (2024-11-05 clients).
    sse: Option<Arc<SseBridge>>,
}

/// Request headers passed on to a bridged POST (credentials and tracing context), as the
/// sessionless bridge passes them.
const PASSED_HEADERS: &[&str] = &["authorization", "traceparent", "tracestate", "baggage"];

impl HttpUpstream {
    /// `limits` bound bodies (`maxBodyBytes`) and bridged requests (`requestTimeoutSecs`);
    /// `proxy` says the public path the 2024-11-05 `endpoint` event names.
    pub fn new(
        remote_endpoint: &str,
        local_endpoint: &'static str,
        guard: Arc<Guard>,
        limits: &apiary_config::Limits,
        proxy: &apiary_config::ProxyConfig,
        unix_socket: Option<std::path::PathBuf>,
    ) -> Result<Arc<Self>, String> {
        let max_body = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
        let bridge_timeout = limits.request_timeout();
        let url =
            reqwest::Url::parse(remote_endpoint).map_err(|e| format!("bad upstream URL {remote_endpoint}: {e}"))?;
        let origin = url.origin().ascii_serialization();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = unix_socket {
            // A server in a private network namespace: every connection dials this socket.
            builder = builder.unix_socket(path);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        let bridge = (local_endpoint == "/mcp").then(|| {
            let bounds = http_bridge::Bounds {
                max_answer: max_body,
                timeout: bridge_timeout,
                write_timeout: limits.write_timeout(),
                max_sessions: limits.max_sessions as usize,
                idle: limits.session_idle_ttl(),
            };
            Arc::new(HttpBridge::new(client.clone(), remote_endpoint, bounds))
        });
        let up = Arc::new(HttpUpstream {
            client,
            local_endpoint,
            remote_endpoint: remote_endpoint.to_owned(),
            remote_origin: origin,
            max_body,
            bridge_timeout,
            guard,
            sse: bridge.as_ref().map(|_| Arc::new(SseBridge::new(&proxy.endpoint_prefix, proxy.trust_proxy_headers))),
            bridge,
        });
        if let Some(bridge) = &up.bridge {
            // The proxy's own credentials, when they need no caller (a fixed header, a
            // remote login); else the first `initialize` probes with its caller's.
            let up2 = Arc::clone(&up);
            let bridge = Arc::clone(bridge);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let creds = credentials(&up2, &RequestCtx::anonymous(), None).await.unwrap_or_default();
                    bridge.probe_at_start(creds);
                });
            }
        }
        Ok(up)
    }

    /// Ends the proxy's own 2024-11-05 streams when `stop` is cancelled (the proxy is
    /// stopping): a client's open stream would otherwise hold the shutdown's grace period.
    pub async fn end_streams_at(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        stop.cancelled().await;
        if let Some(sse) = &self.sse {
            sse.clear();
        }
    }

    /// The bridged session a request names, if any (a lock-free miss until the first one).
    fn bridged(&self, headers: &HeaderMap) -> Option<(&Arc<HttpBridge>, Arc<crate::front::bridged::Bridged>)> {
        let bridge = self.bridge.as_ref()?;
        let id = headers.get("mcp-session-id")?.to_str().ok()?;
        Some((bridge, bridge.sessions.get(id)?))
    }

    fn target(&self, uri: &Uri) -> String {
        let path = uri.path();
        let mut target = if path == self.local_endpoint || path == format!("{}/", self.local_endpoint) {
            self.remote_endpoint.clone()
        } else {
            format!("{}{}", self.remote_origin, path)
        };
        if let Some(q) = uri.query() {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(q);
        }
        target
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Forwards any request (the fallback route).
pub async fn forward(
    State(up): State<Arc<HttpUpstream>>,
    ctx: Option<Extension<RequestCtx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = ctx.map_or_else(RequestCtx::anonymous, |Extension(c)| c);
    match forward_inner(&up, &ctx, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn forward_inner(
    up: &HttpUpstream,
    ctx: &RequestCtx,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    // The MCP routes answer unsupported methods here, as they do for stdio servers (row 7).
    let allow = match uri.path() {
        "/mcp" => Some(("GET, POST, DELETE", &[Method::GET, Method::POST, Method::DELETE][..])),
        "/sse" => Some(("GET", &[Method::GET][..])),
        "/messages" => Some(("POST", &[Method::POST][..])),
        _ => None,
    };
    if let Some((allow, methods)) = allow {
        if method == Method::OPTIONS {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(axum::http::header::ALLOW, axum::http::HeaderValue::from_static(allow));
            return Ok(r);
        }
        if !methods.contains(&method) {
            return Err(Refusal::MethodNotAllowed { allow });
        }
    }
    let body = match own_sse(up, ctx, &method, uri, headers, body).await? {
        Ok(res) => return Ok(res),
        Err(body) => body,
    };
    let target = up.target(uri);
    let on_endpoint = up.local_endpoint == "/mcp" && target == up.remote_endpoint;
    let in_bridge = if on_endpoint { up.bridged(headers) } else { None };
    if let Some((bridge, b)) = &in_bridge {
        // A bridged session: the proxy's own, on a modern-only upstream.
        if method == Method::DELETE {
            bridge.sessions.remove(headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).unwrap_or_default());
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        b.touch();
        if method == Method::GET {
            if !edge::accepts_event_stream(headers) {
                return Err(Refusal::NotAcceptable("Accept must include text/event-stream"));
            }
            return Ok(http_bridge::stream(bridge, b));
        }
    }
    let mut request_id: Option<String> = None;
    let mut reshape = None;
    let payload = if method == Method::POST {
        edge::check_post_headers(headers, up.max_body)?;
        let bytes = edge::read_body(body, up.max_body).await?;
        // Refuse what is not JSON-RPC here (rows 1, 2, 4); forward the original bytes.
        match parse_body(bytes.clone()).map_err(Refusal::Parse)? {
            JsonBody::Single(m) => {
                ctx.note_message(&m);
                let echo = m.id_raw().map(str::to_owned);
                let admitted = up.guard.admit(&ctx.identity, m).map_err(|e| e.echo(echo.as_deref()))?;
                let m = admitted.message;
                reshape = admitted.reshape;
                if let Some((bridge, b)) = in_bridge {
                    let accepts = edge::accepts(headers);
                    let id = m.id_raw().map(str::to_owned);
                    let passed = passed_headers(up, ctx, headers, m.id_raw()).await?;
                    let res = http_bridge::post(bridge, ctx, b, vec![Ok(m)], false, accepts, passed).await?;
                    return Ok(match (reshape, id) {
                        (Some(r), Some(id)) => guard::reshape_response(res, id, r, up.max_body).await,
                        _ => res,
                    });
                }
                // A legacy client's `initialize` to a modern-only upstream is the bridge's.
                if on_endpoint
                    && m.method() == Some("initialize")
                    && m.is_request()
                    && !headers.contains_key("mcp-session-id")
                    && let Some(bridge) = &up.bridge
                {
                    let mut creds = credentials(up, ctx, m.id_raw()).await?;
                    creds.extend(trace_context(ctx));
                    if let Some(discover) = bridge.modern_only(&creds).await {
                        return http_bridge::open(bridge, &m, &discover, edge::accepts(headers));
                    }
                }
                // A legacy request outside any session gets a session of its own upstream (row 12).
                // Modern (2026-07-28) requests carry `Mcp-Method` and are stateless by design.
                // Cheapest tests first: a request inside a session fails the first one.
                if stateless_bridge::needs_bridge(headers, &m)
                    && !headers.contains_key("mcp-method")
                    && up.local_endpoint == "/mcp"
                    && target == up.remote_endpoint
                {
                    let accepts = edge::accepts(headers);
                    let mut creds = credentials(up, ctx, m.id_raw()).await?;
                    creds.extend(trace_context(ctx));
                    let frame = stateless_bridge::serve(
                        &up.client,
                        &up.remote_endpoint,
                        headers,
                        &creds,
                        &m,
                        up.bridge_timeout,
                    )
                    .await;
                    let res = bridged(frame, accepts);
                    return Ok(match (reshape, m.id_raw()) {
                        (Some(r), Some(id)) => guard::reshape_response(res, id.to_owned(), r, up.max_body).await,
                        _ => res,
                    });
                }
                if m.is_request() {
                    request_id = m.id_raw().map(str::to_owned);
                }
                Some(m.into_bytes())
            }
            batch @ JsonBody::Batch(_) => {
                ctx.note_body(&batch);
                if up.guard.checks_messages() {
                    // Each member would need its own check and its own reshape; batches (2025-03-26
                    // only) are refused rather than let through unchecked.
                    return Err(Refusal::invalid(
                        "batches are not supported when authorization or tool filters are on",
                    ));
                }
                if let (Some((bridge, b)), JsonBody::Batch(members)) = (in_bridge, batch) {
                    let passed = passed_headers(up, ctx, headers, None).await?;
                    return http_bridge::post(bridge, ctx, b, members, true, edge::accepts(headers), passed).await;
                }
                Some(bytes)
            }
        }
    } else {
        None
    };
    let mut creds = credentials(up, ctx, request_id.as_deref()).await?;
    // Login-token bookkeeping below looks only at `Authorization`; the trace header rides along.
    creds.extend(trace_context(ctx));
    let mut req = up.client.request(method, &target);
    for (name, value) in headers {
        // A header the proxy sets itself replaces the client's (its Authorization above all).
        if !hop_by_hop(name) && !creds.iter().any(|(n, _)| n == name) {
            req = req.header(name, value);
        }
    }
    // The login's token as sent, to report it if the remote refuses it.
    let sent_login = up
        .guard
        .outgoing
        .as_ref()
        .filter(|o| o.has_remote_auth())
        .and_then(|_| creds.iter().find(|(n, _)| *n == axum::http::header::AUTHORIZATION))
        .map(|(_, v)| v.clone());
    for (name, value) in creds {
        req = req.header(name, value);
    }
    if let Some(p) = payload {
        req = req.body(p);
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(target = %target, error = %e, "the upstream server is not reachable");
            let msg = format!("upstream unavailable: {}", short_error(&e));
            return Ok(match request_id {
                // A request gets its answer as a normal JSON-RPC error (row 27).
                Some(id) => answer::json(error_response(Some(&id), codes::UPSTREAM_UNAVAILABLE, &msg, None)),
                None => {
                    Refusal::UpstreamUnavailable { reason: short_error(&e), retry_after: 1, id: None }.into_response()
                }
            });
        }
    };
    if res.status() == reqwest::StatusCode::UNAUTHORIZED
        && let (Some(out), Some(sent)) = (&up.guard.outgoing, &sent_login)
    {
        // Refreshed for the next request; this one is not replayed (POSTs need not be idempotent).
        out.remote_rejected(sent);
    }
    // A request whose upstream answered with a server error, or with a JSON body that is
    // not JSON-RPC, gets -31004 as its normal answer (row 27). SSE and other bodies stream.
    if let Some(id) = &request_id {
        let status = res.status().as_u16();
        let is_json = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if status >= 500 {
            tracing::warn!(target = %target, status, "the upstream server failed");
            let msg = format!("upstream unavailable: the server answered HTTP {status}");
            return Ok(answer::json(error_response(Some(id), codes::UPSTREAM_UNAVAILABLE, &msg, None)));
        }
        if is_json && (200..300).contains(&status) {
            let res = json_answer(res, id, up.max_body).await;
            return Ok(match reshape {
                Some(r) => guard::reshape_response(res, id.clone(), r, up.max_body).await,
                None => res,
            });
        }
    }
    let mut out =
        Response::builder().status(StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in res.headers() {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let stream = res.bytes_stream().map(|r| r.map_err(std::io::Error::other));
    let out = out.body(Body::from_stream(stream)).map_err(|e| Refusal::invalid(e.to_string()))?;
    Ok(match (reshape, request_id) {
        (Some(r), Some(id)) => guard::reshape_response(out, id, r, up.max_body).await,
        _ => out,
    })
}

/// `GET /sse` and `POST /messages` of a 2024-11-05 client when the upstream speaks only
/// 2026-07-28 (so has no `/sse` of its own): the proxy's own streams (`http_bridge_sse`),
/// refused as the stdio front refuses them (a missing `session_id` 400, an unknown one
/// 404, bodies as any POST's). `Err(body)` when they are the upstream's to answer.
async fn own_sse(
    up: &HttpUpstream,
    ctx: &RequestCtx,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Result<Response, Body>, Refusal> {
    let (Some(bridge), Some(sse)) = (&up.bridge, &up.sse) else { return Ok(Err(body)) };
    match (uri.path(), method) {
        ("/sse", &Method::GET) => {
            let mut creds = credentials(up, ctx, None).await?;
            creds.extend(trace_context(ctx));
            if bridge.modern_only(&creds).await.is_none() {
                return Ok(Err(body));
            }
            Ok(Ok(sse.open(bridge, headers)?))
        }
        ("/messages", &Method::POST) => {
            let query = Query::<HashMap<String, String>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
            let id = query.get("session_id").map(String::as_str);
            let stream = match id.filter(|id| !id.is_empty()).and_then(|id| sse.stream(id)) {
                Some(stream) => stream,
                // Not a stream of the proxy's: the upstream's, unless it has no `/sse`.
                None if bridge.era.known().modern_only().is_none() => return Ok(Err(body)),
                None => {
                    legacy_sse::session_param(id)?;
                    return Err(Refusal::SessionNotFound);
                }
            };
            let m = legacy_sse::read_message(ctx, headers, body, up.max_body).await?;
            let echo = m.id_raw().map(str::to_owned);
            let admitted = up.guard.admit(&ctx.identity, m).map_err(|e| e.echo(echo.as_deref()))?;
            let passed = passed_headers(up, ctx, headers, echo.as_deref()).await?;
            http_bridge_sse::message(bridge, ctx, &stream, admitted.message, admitted.reshape, passed).await.map(Ok)
        }
        _ => Ok(Err(body)),
    }
}

/// What each POST of a bridged session carries upstream: the proxy's credentials and trace
/// context, and the caller's own credentials and tracing headers where the proxy sets none.
async fn passed_headers(
    up: &HttpUpstream,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    id: Option<&str>,
) -> Result<Vec<(HeaderName, HeaderValue)>, Refusal> {
    let mut creds = credentials(up, ctx, id).await?;
    creds.extend(trace_context(ctx));
    for name in PASSED_HEADERS {
        if let Some(value) = headers.get(*name)
            && !creds.iter().any(|(n, _)| n.as_str() == *name)
        {
            creds.push((HeaderName::from_static(name), value.clone()));
        }
    }
    Ok(creds)
}

/// The `traceparent` that makes the upstream's span a child of this request's span, when
/// tracing is on: it replaces the caller's header (whose trace it continues, as does
/// `params._meta.traceparent`, which wins). With tracing off there is no span of the proxy's,
/// so nothing is added and the caller's own header, if any, passes through unchanged: the
/// upstream's span then hangs off the caller's, as if the proxy were not there. `tracestate`
/// and `baggage` always pass through as the caller sent them.
fn trace_context(ctx: &RequestCtx) -> Option<(HeaderName, HeaderValue)> {
    let value = HeaderValue::from_str(&ctx.traceparent()?).ok()?;
    Some((HeaderName::from_static("traceparent"), value))
}

/// The headers this request's upstream gets from the proxy (an exchanged, fixed or remote-login
/// token, configured headers). A refused exchange is the caller's 403; an unreachable STS or
/// an expired remote login is a 503 whose message says what to do.
async fn credentials(
    up: &HttpUpstream,
    ctx: &RequestCtx,
    id: Option<&str>,
) -> Result<Vec<(HeaderName, axum::http::HeaderValue)>, Refusal> {
    let Some(out) = &up.guard.outgoing else { return Ok(Vec::new()) };
    out.headers(ctx.caller_token.as_deref()).await.map_err(|e| match e {
        OutgoingError::RemoteAuth { message, needs_login } => {
            if needs_login {
                tracing::warn!(%message, "remote auth: the login has expired");
            } else {
                tracing::warn!(%message, "remote auth: no access token for the remote");
            }
            // A 503 with the JSON-RPC error naming what to do; not a 401, which would send the
            // client into an OAuth flow against this proxy, which cannot fix the remote login.
            Refusal::UpstreamUnavailable {
                reason: message,
                retry_after: if needs_login { 60 } else { 1 },
                id: id.map(str::to_owned),
            }
        }
        OutgoingError::Exchange(e @ ExchangeError::Refused { .. }) => {
            tracing::info!(error = %e, "token exchange refused");
            Refusal::ExchangeRefused { reason: e.to_string(), id: id.map(str::to_owned) }
        }
        OutgoingError::Exchange(ExchangeError::Unavailable(why)) => {
            tracing::warn!(%why, "token exchange failed");
            Refusal::UpstreamUnavailable {
                reason: format!("token exchange failed: {why}"),
                retry_after: 1,
                id: id.map(str::to_owned),
            }
        }
    })
}

/// Reads a JSON answer (bounded) and passes it on unchanged if it is JSON-RPC; otherwise
/// the caller gets -31004.
async fn json_answer(res: reqwest::Response, id: &str, max: usize) -> Response {
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::OK);
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in res.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if body.len() + c.len() <= max => body.extend_from_slice(&c),
            Ok(_) => {
                failed = Some(format!("the server's answer exceeded {max} bytes"));
                break;
            }
            Err(e) => {
                failed = Some(short_error(&e));
                break;
            }
        }
    }
    let body = bytes::Bytes::from(body);
    if failed.is_none() && parse_body(body.clone()).is_err() {
        failed = Some("the server's answer is not JSON-RPC".into());
    }
    if let Some(why) = failed {
        tracing::warn!(%why, "the upstream server's answer cannot be used");
        let msg = format!("upstream unavailable: {why}");
        return answer::json(error_response(Some(id), codes::UPSTREAM_UNAVAILABLE, &msg, None));
    }
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn short_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    text.chars().take(300).collect()
}

/// A bridged request's answer: JSON, or one SSE event for a client that admits only SSE.
fn bridged(frame: bytes::Bytes, accepts: edge::Accepts) -> Response {
    if accepts.json {
        return answer::json(frame);
    }
    let mut r = Response::new(Body::from(apiary_transport::sse::message_event(None, &frame)));
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r
}
