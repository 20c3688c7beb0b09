//! The 2024-11-05 HTTP+SSE transport: one long `GET` stream whose first `endpoint` event names
//! the URL to POST messages to; every answer arrives on that stream and is matched to its
//! caller by id. A background task owns the stream for the life of the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use reqwest::{Client, Url};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::ClientError;
use super::http::{SseReader, connection_error, has_content_type, status_error};
use super::message::{self, Incoming, RequestId};

/// Most requests one session may have waiting for an answer at once.
const MAX_PENDING: usize = 4096;

type Waiter = oneshot::Sender<Result<Value, ClientError>>;

#[derive(Default)]
struct Shared {
    pending: HashMap<RequestId, Waiter>,
    /// Why the stream ended, once it has.
    closed: Option<String>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock cannot leave the map inconsistent, so use it anyway.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct LegacySse {
    http: Client,
    endpoint: Url,
    headers: HeaderMap,
    shared: Arc<Mutex<Shared>>,
    reader: JoinHandle<()>,
}

impl LegacySse {
    /// Opens the stream at `sse_url` and waits (at most `timeout`) for the `endpoint` event.
    pub async fn open(http: Client, sse_url: Url, headers: HeaderMap, timeout: Duration) -> Result<Self, ClientError> {
        let get = http.get(sse_url.clone()).headers(headers.clone()).header(ACCEPT, "text/event-stream").send();
        let resp = tokio::time::timeout(timeout, get)
            .await
            .map_err(|_| ClientError::Timeout { after: timeout, waiting_for: format!("GET {sse_url}") })?
            .map_err(|e| connection_error(format!("GET {sse_url}"), e))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "GET").await);
        }
        if !has_content_type(&resp, "text/event-stream") {
            return Err(ClientError::Protocol(format!("GET {sse_url} did not answer with text/event-stream")));
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let task = ReaderTask {
            http: http.clone(),
            headers: headers.clone(),
            sse_url: sse_url.clone(),
            shared: shared.clone(),
            timeout,
        };
        let reader = tokio::spawn(task.run(SseReader::new(resp), endpoint_tx));
        let endpoint = match tokio::time::timeout(timeout, endpoint_rx).await {
            Ok(Ok(Ok(url))) => url,
            Ok(Ok(Err(e))) => {
                reader.abort();
                return Err(e);
            }
            Ok(Err(_)) => {
                reader.abort();
                return Err(ClientError::Closed("the SSE stream ended before the endpoint event".into()));
            }
            Err(_) => {
                reader.abort();
                return Err(ClientError::Timeout { after: timeout, waiting_for: "the endpoint event".into() });
            }
        };
        Ok(LegacySse { http, endpoint, headers, shared, reader })
    }

    /// Sends one request and waits for its answer on the stream. The caller bounds the wait;
    /// if it gives up, the guard removes the waiter.
    pub async fn request(&self, id: RequestId, method: &str, params: Option<Value>) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = lock(&self.shared);
            if let Some(why) = &s.closed {
                return Err(ClientError::Closed(why.clone()));
            }
            if s.pending.len() >= MAX_PENDING {
                return Err(ClientError::Protocol(format!(
                    "more than {MAX_PENDING} requests in flight on one session"
                )));
            }
            s.pending.insert(id, tx);
        }
        let _guard = PendingGuard { shared: &self.shared, id };
        post(&self.http, &self.endpoint, &self.headers, &message::request(id, method, params)).await?;
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => Err(ClientError::Closed("the SSE stream ended before the answer".into())),
        }
    }

    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), ClientError> {
        post(&self.http, &self.endpoint, &self.headers, &message::notification(method, params)).await
    }

    /// Drops the stream; the 2024-11-05 transport ends a session by closing it.
    pub fn close(&self) {
        self.reader.abort();
        fail_all(&self.shared, "the client closed the session");
    }
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a waiter whose caller stopped waiting (timeout or cancellation).
struct PendingGuard<'a> {
    shared: &'a Mutex<Shared>,
    id: RequestId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.shared).pending.remove(&self.id);
    }
}

fn fail_all(shared: &Mutex<Shared>, why: &str) {
    let waiters: Vec<Waiter> = {
        let mut s = lock(shared);
        if s.closed.is_none() {
            s.closed = Some(why.to_owned());
        }
        s.pending.drain().map(|(_, w)| w).collect()
    };
    for w in waiters {
        let _ = w.send(Err(ClientError::Closed(why.to_owned())));
    }
}

async fn post(http: &Client, endpoint: &Url, headers: &HeaderMap, msg: &Value) -> Result<(), ClientError> {
    let body = serde_json::to_vec(msg).map_err(|e| ClientError::Protocol(format!("cannot encode message: {e}")))?;
    let resp = http
        .post(endpoint.clone())
        .headers(headers.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| connection_error(format!("POST {endpoint}"), e))?;
    if resp.status().is_success() { Ok(()) } else { Err(status_error(resp, "POST").await) }
}

/// Owns the SSE stream: announces the endpoint, routes answers, replies to server pings.
struct ReaderTask {
    http: Client,
    headers: HeaderMap,
    sse_url: Url,
    shared: Arc<Mutex<Shared>>,
    timeout: Duration,
}

impl ReaderTask {
    async fn run(self, mut reader: SseReader, endpoint_tx: oneshot::Sender<Result<Url, ClientError>>) {
        let mut endpoint_tx = Some(endpoint_tx);
        let mut endpoint: Option<Url> = None;
        let why = loop {
            let ev = match reader.next_event().await {
                Ok(Some(ev)) => ev,
                Ok(None) => break "the server closed the SSE stream".to_owned(),
                Err(e) => break e.to_string(),
            };
            match ev.kind() {
                "endpoint" if endpoint.is_none() => match self.resolve_endpoint(&ev.data) {
                    Ok(url) => {
                        endpoint = Some(url.clone());
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(Ok(url));
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(Err(e));
                        }
                        break why;
                    }
                },
                "message" if !ev.data.trim().is_empty() => match serde_json::from_str(&ev.data) {
                    Ok(value) => {
                        for msg in message::split_batch(value) {
                            self.route(msg, endpoint.as_ref()).await;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "ignoring a non-JSON SSE message"),
                },
                _ => {}
            }
        };
        if let Some(tx) = endpoint_tx.take() {
            let _ = tx.send(Err(ClientError::Closed(why.clone())));
        }
        fail_all(&self.shared, &why);
    }

    /// The endpoint is a URI reference relative to the SSE URL. It must stay on the same
    /// origin, so a hostile stream cannot make us POST (with our headers) somewhere else.
    fn resolve_endpoint(&self, data: &str) -> Result<Url, ClientError> {
        let url = self
            .sse_url
            .join(data.trim())
            .map_err(|e| ClientError::Protocol(format!("bad endpoint event {data:?}: {e}")))?;
        if url.origin() != self.sse_url.origin() {
            return Err(ClientError::Protocol(format!("endpoint event points to another origin: {url}")));
        }
        Ok(url)
    }

    async fn route(&self, msg: Value, endpoint: Option<&Url>) {
        match message::classify(msg) {
            Incoming::Response { id: Some(id), outcome } => {
                let waiter = lock(&self.shared).pending.remove(&id);
                match waiter {
                    Some(w) => {
                        let _ = w.send(outcome);
                    }
                    None => tracing::debug!(id, "ignoring an answer nobody waits for"),
                }
            }
            Incoming::Response { id: None, .. } => {
                tracing::debug!("ignoring an answer with a foreign id");
            }
            Incoming::Request { id, method } => {
                let Some(endpoint) = endpoint else { return };
                let answer = message::answer_server_request(id, &method);
                let send = post(&self.http, endpoint, &self.headers, &answer);
                match tokio::time::timeout(self.timeout, send).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%method, error = %e, "could not answer"),
                    Err(_) => tracing::debug!(%method, "answering a server request timed out"),
                }
            }
            Incoming::Notification { method } => tracing::trace!(%method, "server notification"),
            Incoming::Invalid(why) => tracing::debug!(%why, "ignoring an invalid message"),
        }
    }
}
