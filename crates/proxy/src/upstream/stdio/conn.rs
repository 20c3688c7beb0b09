//! One live child and the callers waiting on it. Every request forwarded to the child gets
//! a child-unique id (restored on the way back) and, when it asks for progress, a token
//! namespaced by that id; so any number of callers can share the child without their ids
//! or tokens colliding. The reader never blocks on a slow caller.

use std::sync::{Arc, Mutex};

use apiary_protocol::rewrite::{self, IdMap};
use apiary_protocol::{Kind, Message, ParseErrorKind, RequestId, codes, error_response, methods};
use apiary_transport::launch::{BoxRead, BoxWrite};
use apiary_transport::stdio::{Line, LineReader, push_frame};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::StdioError;

/// One message on its way to an HTTP stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub frame: Bytes,
    /// For a response (or error): the caller's id it settles, known without parsing the
    /// frame again.
    pub answers: Option<RequestId>,
}

impl Delivery {
    /// The answer to the caller's request `id`.
    pub fn answer(frame: Bytes, id: RequestId) -> Self {
        Delivery { frame, answers: Some(id) }
    }

    /// Anything that settles no request: a notification, a server→client request.
    pub fn message(frame: Bytes) -> Self {
        Delivery { frame, answers: None }
    }

    pub fn is_response(&self) -> bool {
        self.answers.is_some()
    }
}

/// Where the messages for one forwarded request go: its response, and the progress
/// notifications for its token. Bounded; the last slot is kept for the response.
pub type Reply = mpsc::Sender<Delivery>;

/// A message from the child that answers no request of ours.
#[derive(Debug)]
pub enum Unsolicited {
    Notification(Message),
    /// A server→client request (sampling, elicitation, roots, …), id as the child sent it,
    /// with a way to answer the child directly (to refuse it).
    Request(Message, mpsc::Sender<Bytes>),
}

/// Where unsolicited messages go. Called on the reader task, in stdout order, so a log line
/// or a server→client request is routed before the response that follows it; it must not
/// block.
pub type UnsolicitedSink = Arc<dyn Fn(Unsolicited) + Send + Sync>;

struct Pending {
    /// The caller's id, as JSON text.
    original_id: Box<str>,
    /// The same id as a key.
    caller: RequestId,
    /// The caller's progress token as the JSON text it wrote, if it asked for progress;
    /// restored byte for byte in its progress notifications.
    progress_token: Option<Box<str>>,
    reply: Reply,
}

/// A live child: a writer queue into its stdin, and the callers it owes answers.
pub struct ChildConn {
    writer: mpsc::Sender<Bytes>,
    pending: Mutex<IdMap<Pending>>,
    /// Cancelled when the child is gone (stdout closed or the process exited).
    closed: CancellationToken,
    /// Cancelled to end the child's input: what is queued is written, then stdin closes.
    end_input: CancellationToken,
    /// Cancelled once the writer has stopped and the child's stdin is closed.
    input_closed: CancellationToken,
    pid: Option<u32>,
}

/// The token prefix of progress tokens Apiary mints; the rest is the upstream id.
const TOKEN_PREFIX: &str = "apiary-progress-";

impl ChildConn {
    /// Starts the writer and reader tasks for a child's pipes. Unsolicited messages go to
    /// `unsolicited`; `max_line` caps a stdout line, `queue` the messages waiting for stdin.
    pub fn start(
        pid: Option<u32>,
        stdin: BoxWrite,
        stdout: BoxRead,
        max_line: usize,
        queue: usize,
        unsolicited: UnsolicitedSink,
    ) -> Arc<ChildConn> {
        let (writer, rx) = mpsc::channel(queue.max(1));
        let conn = Arc::new(ChildConn {
            writer,
            pending: Mutex::new(IdMap::default()),
            closed: CancellationToken::new(),
            end_input: CancellationToken::new(),
            input_closed: CancellationToken::new(),
            pid,
        });
        tokio::spawn(write_loop(stdin, rx, conn.closed.clone(), conn.end_input.clone(), conn.input_closed.clone()));
        tokio::spawn(read_loop(Arc::clone(&conn), LineReader::new(stdout, max_line), unsolicited));
        conn
    }

    /// Resolves once the child can no longer answer.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closed.cancelled()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// The first step of the stdio shutdown (MCP lifecycle, "Shutdown"): writes what is
    /// already queued (cancellations of a session's calls included), then closes the child's
    /// stdin. Resolves once stdin is closed, or at once if the child is already gone.
    pub async fn close_input(&self) {
        self.end_input.cancel();
        tokio::select! {
            () = self.input_closed.cancelled() => {}
            () = self.closed.cancelled() => {}
        }
    }

    /// Marks the child gone and answers every waiting caller with -31004.
    pub fn fail_all(&self, reason: &str) {
        self.closed.cancel();
        let drained: Vec<Pending> = match self.pending.lock() {
            Ok(mut p) => p.drain().map(|(_, v)| v).collect(),
            Err(_) => Vec::new(),
        };
        for p in drained {
            let msg = format!("upstream unavailable: {reason}");
            let frame = error_response(Some(&p.original_id), codes::UPSTREAM_UNAVAILABLE, &msg, None);
            let _ = p.reply.try_send(Delivery::answer(frame, p.caller));
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, IdMap<Pending>> {
        // A poisoned lock means a panic mid-update elsewhere; the map itself stays usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards a caller's request; its response (with the caller's id) and its progress
    /// notifications arrive on `reply`. Returns the child-side id, for cancellation.
    pub fn request(&self, msg: &Message, reply: Reply) -> Result<u64, StdioError> {
        let original_id: Box<str> = msg.id_raw().unwrap_or("null").into();
        let caller = msg.id().unwrap_or(RequestId::Int(0));
        let progress_token: Option<Box<str>> = rewrite::request_progress_token(msg).map(Into::into);
        let asks_progress = progress_token.is_some();
        let id = self.pending().insert(Pending { original_id, caller, progress_token, reply });
        // Only the id and the token change; every other byte goes to the child as it came.
        let token = asks_progress.then(|| format!("\"{TOKEN_PREFIX}{id}\""));
        let frame = match rewrite::forwarded_request(msg, &id.to_string(), token.as_deref()) {
            Ok(f) => f,
            Err(e) => {
                self.pending().remove(&RequestId::Int(id as i64));
                return Err(StdioError::Unforwardable { reason: e.to_string(), id: msg.id_raw().map(str::to_owned) });
            }
        };
        if let Err(e) = self.send(frame) {
            self.pending().remove(&RequestId::Int(id as i64));
            return Err(e);
        }
        Ok(id)
    }

    /// Forwards a notification or a response the child is owed, as it is.
    pub fn send(&self, frame: Bytes) -> Result<(), StdioError> {
        if self.is_closed() {
            return Err(StdioError::Restarting);
        }
        self.writer.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StdioError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => StdioError::Restarting,
        })
    }

    /// Gives up on a request (timeout, or its session went away): forgets it and tells the
    /// child to stop working on it.
    pub fn abandon(&self, upstream_id: u64, reason: &str) {
        if self.pending().remove(&RequestId::Int(upstream_id as i64)).is_some() {
            let _ = self.send(rewrite::cancellation(&upstream_id.to_string(), reason));
        }
    }

    /// Sends a request of Apiary's own and waits for its answer (the raw response).
    pub async fn call_own(&self, method: &str, params: &str) -> Result<Message, StdioError> {
        let rx = self.start_own(method, params)?;
        ChildConn::own_answer(rx).await
    }

    /// Sends a request of Apiary's own without waiting: [`ChildConn::own_answer`] waits
    /// for its answer. Lets two requests be written back to back.
    pub fn start_own(&self, method: &str, params: &str) -> Result<mpsc::Receiver<Delivery>, StdioError> {
        let (tx, rx) = mpsc::channel(4);
        let text = format!(r#"{{"jsonrpc":"2.0","id":0,"method":{},"params":{params}}}"#, Value::from(method));
        let msg = Message::parse(Bytes::from(text)).map_err(StdioError::BadAnswer)?;
        self.request(&msg, tx)?;
        Ok(rx)
    }

    /// The answer (the raw response) to a request started with [`ChildConn::start_own`].
    pub async fn own_answer(mut rx: mpsc::Receiver<Delivery>) -> Result<Message, StdioError> {
        loop {
            let Some(frame) = rx.recv().await else {
                return Err(StdioError::Closed);
            };
            if frame.is_response() {
                return Message::parse(frame.frame).map_err(StdioError::BadAnswer);
            }
        }
    }

    fn on_response(&self, msg: Message) {
        let Some(id) = msg.id() else {
            tracing::warn!(len = msg.bytes().len(), "dropped an error response without an id from the server");
            return;
        };
        let Some(p) = self.pending().remove(&id) else {
            tracing::debug!(%id, "dropped a response to no pending request (late answer to a cancelled call?)");
            return;
        };
        if p.reply.try_send(Delivery::answer(msg.with_id(&p.original_id), p.caller.clone())).is_err() {
            tracing::info!(id = %p.original_id, "the caller went away before its response arrived");
        }
    }

    fn on_progress(&self, msg: Message) {
        let token = rewrite::notification_progress_token(&msg).and_then(|t| serde_json::from_str::<String>(t).ok());
        let upstream = token.as_deref().and_then(|t| t.strip_prefix(TOKEN_PREFIX)).and_then(|n| n.parse::<i64>().ok());
        let Some(upstream) = upstream else {
            tracing::debug!("dropped a progress notification with a token Apiary never issued");
            return;
        };
        let target = {
            let pending = self.pending();
            pending.get(&RequestId::Int(upstream)).map(|p| (p.reply.clone(), p.progress_token.clone()))
        };
        let Some((reply, Some(original))) = target else {
            return;
        };
        // Keep the last slot for the response itself.
        if reply.capacity() > 1
            && let Ok(frame) = rewrite::with_notification_progress_token(&msg, &original)
        {
            let _ = reply.try_send(Delivery::message(frame));
        }
    }
}

impl ChildConn {
    /// A 2026-07-28 notification tagged with the subscription id of a `subscriptions/listen`
    /// request of ours goes to that request's caller, the id restored to the caller's;
    /// anything else comes back, for the unsolicited sink.
    fn on_subscription(&self, msg: Message) -> Option<Message> {
        let Some(RequestId::Int(upstream)) = rewrite::notification_subscription_id(&msg) else {
            return Some(msg);
        };
        let target = {
            let pending = self.pending();
            pending.get(&RequestId::Int(upstream)).map(|p| (p.reply.clone(), p.original_id.clone()))
        };
        let Some((reply, original)) = target else {
            return Some(msg);
        };
        // Keep the last slot for the response itself (the listen's final result).
        if reply.capacity() > 1
            && let Ok(frame) = rewrite::with_notification_subscription_id(&msg, &original)
        {
            let _ = reply.try_send(Delivery::message(frame));
        }
        None
    }
}

async fn write_loop(
    mut stdin: BoxWrite,
    mut rx: mpsc::Receiver<Bytes>,
    closed: CancellationToken,
    end_input: CancellationToken,
    input_closed: CancellationToken,
) {
    // Dropping stdin (on any way out) is the child's end of input.
    let _done = input_closed.drop_guard();
    loop {
        // Biased: queued frames go out before an end of input is honoured.
        let frame = tokio::select! {
            biased;
            () = closed.cancelled() => None,
            f = rx.recv() => f,
            () = end_input.cancelled() => None,
        };
        let Some(frame) = frame else { break };
        // What else is queued goes out in the same write (one system call, one wake-up of
        // the child), up to a bound.
        let mut out = BytesMut::with_capacity(frame.len() + 1);
        push_frame(&mut out, &frame);
        while out.len() < WRITE_BATCH_BYTES
            && let Ok(more) = rx.try_recv()
        {
            push_frame(&mut out, &more);
        }
        if let Err(e) = write_all(&mut stdin, &out).await {
            tracing::debug!(error = %e, "the server's stdin closed");
            break;
        }
    }
}

/// Bytes of queued frames gathered into one write to the child's stdin.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

async fn write_all(w: &mut BoxWrite, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(bytes).await?;
    w.flush().await
}

async fn read_loop(conn: Arc<ChildConn>, mut lines: LineReader<BoxRead>, unsolicited: UnsolicitedSink) {
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading the server's stdout failed");
                break;
            }
        };
        match line {
            Line::Frame(frame) if frame.iter().all(u8::is_ascii_whitespace) => {}
            Line::Frame(frame) => dispatch(&conn, frame, &unsolicited),
            Line::Oversized { len, head } => oversized(&conn, len, &head, lines.max_line()),
        }
    }
    conn.fail_all("the server closed its output");
}

fn dropped(conn: &ChildConn, frame: &[u8], e: &apiary_protocol::ParseError) {
    let excerpt = String::from_utf8_lossy(&frame[..frame.len().min(256)]).escape_debug().to_string();
    let kind = if matches!(e.kind(), ParseErrorKind::InvalidRequest) { "not JSON-RPC" } else { "not JSON" };
    tracing::warn!(pid = ?conn.pid, len = frame.len(), line = %excerpt, "dropped a server stdout line: {kind}");
}

fn dispatch(conn: &ChildConn, frame: Bytes, unsolicited: &UnsolicitedSink) {
    // A 2025-03-26 child may write a batch: each member is judged alone (row 25).
    let msg = match apiary_protocol::parse_body(frame.clone()) {
        Ok(apiary_protocol::Body::Single(m)) => m,
        Ok(apiary_protocol::Body::Batch(members)) => {
            for member in members {
                match member {
                    Ok(m) => dispatch_one(conn, m, unsolicited),
                    Err(e) => dropped(conn, &frame, &e),
                }
            }
            return;
        }
        Err(e) => {
            dropped(conn, &frame, &e);
            return;
        }
    };
    dispatch_one(conn, msg, unsolicited);
}

fn dispatch_one(conn: &ChildConn, msg: Message, unsolicited: &UnsolicitedSink) {
    match msg.kind() {
        Kind::Response | Kind::Error => conn.on_response(msg),
        Kind::Notification if msg.method() == Some(methods::PROGRESS) => conn.on_progress(msg),
        Kind::Notification => {
            if let Some(msg) = conn.on_subscription(msg) {
                unsolicited(Unsolicited::Notification(msg));
            }
        }
        Kind::Request if msg.method() == Some(methods::PING) => {
            if let Some(id) = msg.id_raw() {
                let _ = conn.send(apiary_protocol::result_response(id, "{}"));
            }
        }
        Kind::Request => unsolicited(Unsolicited::Request(msg, conn.writer.clone())),
    }
}

/// A line over the cap: if its head names a pending id, that caller hears why.
fn oversized(conn: &ChildConn, len: usize, head: &[u8], cap: usize) {
    tracing::warn!(pid = ?conn.pid, len, "dropped a server stdout line over the line cap");
    let Some(id) = find_top_level_id(head) else {
        return;
    };
    let Some(p) = conn.pending().remove(&id) else {
        return;
    };
    let msg = format!("upstream message exceeded {cap} bytes");
    let frame = error_response(Some(&p.original_id), codes::INTERNAL_ERROR, &msg, None);
    let _ = p.reply.try_send(Delivery::answer(frame, p.caller));
}

/// Finds `"id": <int>` at depth 1 of a (truncated) JSON object.
fn find_top_level_id(head: &[u8]) -> Option<RequestId> {
    let mut depth = 0i32;
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < head.len() && head[j] != b'"' {
                    j += if head[j] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && head.get(start..j) == Some(b"id") {
                    let rest = head.get(j + 1..)?;
                    let rest = std::str::from_utf8(rest)
                        .ok()
                        .or_else(|| std::str::from_utf8(&rest[..rest.len().min(64)]).ok())?;
                    let after = rest.trim_start().strip_prefix(':')?.trim_start();
                    let end = after.find([',', '}']).unwrap_or(after.len());
                    return RequestId::from_json(after[..end].trim());
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_id_is_found_in_a_truncated_head() {
        assert_eq!(find_top_level_id(br#"{"jsonrpc":"2.0","id":17,"result":{"x":"#), Some(RequestId::Int(17)));
        assert_eq!(find_top_level_id(br#"{"result":{"id":3},"id":4}"#), Some(RequestId::Int(4)));
        assert_eq!(find_top_level_id(br#"{"result":{"id":3,"content":"#), None);
    }

    #[tokio::test]
    async fn requests_are_rewritten_and_answers_restored() {
        let (child_in, mut test_reads) = tokio::io::duplex(64 * 1024);
        let (mut test_writes, child_out) = tokio::io::duplex(64 * 1024);
        let tx: UnsolicitedSink = Arc::new(|_| {});
        let conn = ChildConn::start(None, Box::new(child_in), Box::new(child_out), 1 << 20, 16, tx);
        let (reply, mut answers) = mpsc::channel(8);
        let client_sent = r#"{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"arguments":{"z":1.50,"a":12345678901234567890123,"e":"\u00e9\/","_meta":{"progressToken":1}}, "_meta":{"progressToken":"p"}}}"#;
        let msg = Message::parse(Bytes::from_static(client_sent.as_bytes())).unwrap();
        let id = conn.request(&msg, reply).unwrap();

        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let mut lines = BufReader::new(&mut test_reads).lines();
        let sent = lines.next_line().await.unwrap().unwrap();
        // Byte for byte what the client sent, but for the id and the token.
        let expected = client_sent
            .replace(r#""id":"abc""#, &format!(r#""id":{id}"#))
            .replace(r#""p""#, &format!(r#""{TOKEN_PREFIX}{id}""#));
        assert_eq!(sent, expected);
        let sent = Message::parse(Bytes::from(sent)).unwrap();
        assert_eq!(sent.id(), Some(RequestId::Int(id as i64)));
        let token = format!("\"{TOKEN_PREFIX}{id}\"");
        assert_eq!(rewrite::request_progress_token(&sent), Some(token.as_str()));

        let progress = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"{TOKEN_PREFIX}{id}\",\"progress\":1}}}}\n"
        );
        test_writes.write_all(progress.as_bytes()).await.unwrap();
        test_writes.write_all(b"Server banner line\n").await.unwrap();
        test_writes
            .write_all(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"b\":1.50,\"a\":\"\\u00e9\"}}}}\n").as_bytes(),
            )
            .await
            .unwrap();

        let p = Message::parse(answers.recv().await.unwrap().frame).unwrap();
        assert_eq!(rewrite::notification_progress_token(&p), Some("\"p\""));
        let r = answers.recv().await.unwrap().frame;
        assert_eq!(&r[..], br#"{"jsonrpc":"2.0","id":"abc","result":{"b":1.50,"a":"\u00e9"}}"#);

        drop(test_writes);
        conn.closed().await;
    }

    #[tokio::test]
    async fn callers_hear_when_the_child_dies() {
        let (child_in, _keep) = tokio::io::duplex(1024);
        let (test_writes, child_out) = tokio::io::duplex(1024);
        let tx: UnsolicitedSink = Arc::new(|_| {});
        let conn = ChildConn::start(Some(1), Box::new(child_in), Box::new(child_out), 1 << 20, 16, tx);
        let (reply, mut answers) = mpsc::channel(8);
        let msg = Message::parse(Bytes::from_static(br#"{"jsonrpc":"2.0","id":9,"method":"x"}"#)).unwrap();
        conn.request(&msg, reply).unwrap();
        drop(test_writes);
        let err = Message::parse(answers.recv().await.unwrap().frame).unwrap();
        assert_eq!(err.kind(), Kind::Error);
        assert_eq!(err.id_raw(), Some("9"));
        assert!(err.payload_raw().unwrap().contains("-31004"));
        assert!(matches!(conn.send(Bytes::from_static(b"{}")), Err(StdioError::Restarting)));
    }
}
