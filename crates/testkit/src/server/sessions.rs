//! Streamable HTTP session manager of the fixture server: rmcp's in-memory
//! [`LocalSessionManager`] plus the bookkeeping `test_reconnection` needs to close its own POST
//! SSE stream mid-call and to learn when the client has resumed it with `Last-Event-ID`
//! (SEP-1699, the `server-sse-polling` conformance scenario).
//!
//! rmcp numbers each POST stream of a session (its "HTTP request id") but does not tell a tool
//! handler which stream carries its request. This manager opens request streams itself (the
//! same three steps as [`LocalSessionManager::create_stream`]) so it can remember which
//! JSON-RPC request rides which stream, for as long as that stream is open.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionHandle, LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{ServerSseMessage, SessionId, SessionManager};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Which open POST stream (rmcp HTTP request id) carries a JSON-RPC request of a session.
type StreamMap = HashMap<(SessionId, RequestId), u64>;
/// Who waits for a client to resume a closed stream, by session and HTTP request id.
type ResumeMap = HashMap<(SessionId, u64), Arc<Notify>>;

/// Name of the HTTP header carrying the session id.
const SESSION_ID_HEADER: &str = "mcp-session-id";

/// The session id an HTTP request carried in its `Mcp-Session-Id` header.
#[derive(Debug, Clone)]
pub struct SessionIdHeader(pub SessionId);

impl SessionIdHeader {
    /// Reads the header from the request parts rmcp attaches to each request it dispatches.
    pub fn from_parts(parts: &http::request::Parts) -> Option<Self> {
        let value = parts.headers.get(SESSION_ID_HEADER)?.to_str().ok()?;
        Some(Self(SessionId::from(value)))
    }
}

/// The fixture's session manager; see the module docs.
#[derive(Debug, Default)]
pub struct FixtureSessions {
    inner: LocalSessionManager,
    streams: Arc<Mutex<StreamMap>>,
    resumes: Arc<Mutex<ResumeMap>>,
}

/// Why a request stream could not be closed for a reconnection test.
#[derive(Debug, thiserror::Error)]
pub enum CloseStreamError {
    /// The session is gone (deleted or expired).
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    /// The request is not riding an open POST stream (for example it was already closed).
    #[error("request {request} of session {session} has no open stream")]
    NoStream {
        /// The session.
        session: SessionId,
        /// The JSON-RPC request id.
        request: RequestId,
    },
    /// rmcp refused to close the stream.
    #[error("closing the stream failed: {0}")]
    Session(String),
}

/// A pending wait for the client to resume a stream closed by
/// [`FixtureSessions::close_request_stream`]; dropping it forgets the wait.
#[derive(Debug)]
pub struct ResumeWait {
    key: (SessionId, u64),
    notify: Arc<Notify>,
    resumes: Arc<Mutex<ResumeMap>>,
}

impl ResumeWait {
    /// Waits until the client resumes the stream or `timeout` passes; returns whether it resumed.
    pub async fn resumed_within(&self, timeout: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            resumed = tokio::time::timeout(timeout, self.notify.notified()) => resumed.is_ok(),
            () = cancel.cancelled() => false,
        }
    }
}

impl Drop for ResumeWait {
    fn drop(&mut self) {
        lock(&self.resumes).remove(&self.key);
    }
}

impl FixtureSessions {
    /// Closes the POST SSE stream that carries `request` of `session`, after a priming event
    /// telling the client to reconnect after `retry`. The session and its message cache stay,
    /// so the client can resume the stream with a GET carrying `Last-Event-ID`.
    pub async fn close_request_stream(
        &self,
        session: &SessionId,
        request: &RequestId,
        retry: Duration,
    ) -> Result<ResumeWait, CloseStreamError> {
        let http_request_id = lock(&self.streams)
            .get(&(session.clone(), request.clone()))
            .copied()
            .ok_or_else(|| CloseStreamError::NoStream { session: session.clone(), request: request.clone() })?;
        let handle = self.handle(session).await.ok_or_else(|| CloseStreamError::SessionNotFound(session.clone()))?;
        // Register before closing: the client may resume before this function returns.
        let key = (session.clone(), http_request_id);
        let notify = Arc::new(Notify::new());
        lock(&self.resumes).insert(key.clone(), notify.clone());
        let wait = ResumeWait { key, notify, resumes: self.resumes.clone() };
        handle
            .close_sse_stream(http_request_id, Some(retry))
            .await
            .map_err(|error| CloseStreamError::Session(error.to_string()))?;
        Ok(wait)
    }

    async fn handle(&self, session: &SessionId) -> Option<LocalSessionHandle> {
        self.inner.sessions.read().await.get(session).cloned()
    }
}

/// A request's SSE stream that forgets its stream-map entry once the HTTP response ends.
struct TrackedStream<S> {
    inner: S,
    _entry: StreamEntry,
}

impl<S: futures::Stream + Unpin> futures::Stream for TrackedStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Removes one stream-map entry when dropped.
struct StreamEntry {
    key: Option<(SessionId, RequestId)>,
    streams: Arc<Mutex<StreamMap>>,
}

impl Drop for StreamEntry {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.streams).remove(&key);
        }
    }
}

impl SessionManager for FixtureSessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let handle = self.handle(id).await.ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        let receiver = handle.establish_request_wise_channel().await?;
        let key = match (&message, receiver.http_request_id) {
            (ClientJsonRpcMessage::Request(request), Some(http_request_id)) => {
                let key = (id.clone(), request.id.clone());
                lock(&self.streams).insert(key.clone(), http_request_id);
                Some(key)
            }
            _ => None,
        };
        // Built before pushing the message so a failed push still forgets the entry.
        let entry = StreamEntry { key, streams: self.streams.clone() };
        handle.push_message(message, receiver.http_request_id).await?;
        Ok(TrackedStream { inner: tokio_stream::wrappers::ReceiverStream::new(receiver.inner), _entry: entry })
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // rmcp's local event ids read `<index>/<http request id>` on request streams.
        let http_request_id = last_event_id.split_once('/').and_then(|(_, stream)| stream.parse::<u64>().ok());
        let stream = self.inner.resume(id, last_event_id).await?;
        // The session worker has swapped in the new stream by now, so whatever the waiting
        // tool sends next reaches the resumed connection.
        if let Some(http_request_id) = http_request_id
            && let Some(notify) = lock(&self.resumes).get(&(id.clone(), http_request_id))
        {
            notify.notify_one();
        }
        Ok(stream)
    }
}

/// Locks a bookkeeping map; a poisoned map is still consistent (entries are inserted and
/// removed whole), so recover it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
