//! The egress proxy: how a sandboxed server whose profile has `allow_host` / `allow_port` reaches
//! exactly those destinations and nothing else.
//!
//! The server lives in a network namespace with only `lo`. Its `HTTP(S)_PROXY` points at
//! `127.0.0.1:`[`EGRESS_PORT`] inside that namespace, where the sandbox's pid 1 forwards each
//! connection to a Unix socket bind-mounted from the host (see `bridge`). On the host side this
//! proxy (run by the apiary process that launched the server, on its tokio runtime) listens on
//! that socket, reads one request head — `CONNECT host:port` or absolute-form `GET http://…` —
//! checks host and port against the [`AllowList`] *before* connecting, resolves the name and
//! refuses local addresses unless listed literally, then connects and splices bytes both ways.
//! Refusals are answered `403` with a one-line reason.
//!
//! The same proxy also serves on a TCP listener ([`serve_tcp`]): containers reach it on the
//! loopback of a network namespace made for them (`container::egress`).

mod allow;
mod request;
mod splice;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use allow::{AllowList, Refusal};
use request::Request;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The port the proxy answers on inside the sandbox (Squid's, as ToolHive's egress sidecar uses).
pub const EGRESS_PORT: u16 = 3128;

/// Longest Unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Bounds of one egress proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressLimits {
    /// Largest request head read.
    pub max_header_bytes: usize,
    /// Time a client has to send its request head.
    pub header_timeout: Duration,
    /// Time allowed for resolving a name.
    pub resolve_timeout: Duration,
    /// Time allowed for connecting to the destination (all its addresses together).
    pub connect_timeout: Duration,
    /// A tunnel with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            resolve_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 256,
        }
    }
}

/// The egress proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The socket path does not fit in `sun_path`.
    #[error("egress socket path {} is longer than {MAX_SOCKET_PATH} bytes", .0.display())]
    PathTooLong(PathBuf),
    /// Binding or securing the socket failed.
    #[error("egress socket {}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running egress proxy. Dropping it stops the proxy, closes every tunnel it holds and removes
/// its socket (and the private directory, when it made one).
#[derive(Debug)]
pub struct EgressProxy {
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl EgressProxy {
    /// Starts a proxy on a Unix socket at `socket` (mode 0600). Must be called on a tokio runtime.
    pub fn start(socket: &Path, allow: AllowList, limits: EgressLimits) -> Result<Self, EgressError> {
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EgressError::PathTooLong(socket.to_path_buf()));
        }
        let sock_err = |source| EgressError::Socket { path: socket.to_path_buf(), source };
        let listener = UnixListener::bind(socket).map_err(sock_err)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(sock_err)?;
        let task = tokio::spawn(serve(listener, Arc::new(allow), limits));
        Ok(EgressProxy { socket: socket.to_path_buf(), task, _dir: None })
    }

    /// Starts a proxy in a new private directory (mode 0700) under `$XDG_RUNTIME_DIR`, or the
    /// temporary directory when that is unset.
    pub fn start_private(allow: AllowList, limits: EgressLimits) -> Result<Self, EgressError> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute() && d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir_err = |source| EgressError::Socket { path: base.clone(), source };
        let dir = tempfile::Builder::new().prefix("apiary-egress-").tempdir_in(&base).map_err(dir_err)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        let mut proxy = EgressProxy::start(&dir.path().join("egress.sock"), allow, limits)?;
        proxy._dir = Some(dir);
        Ok(proxy)
    }

    /// The socket's path on the host.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves on a TCP listener until the returned task is aborted (dropping the handle does not
/// stop it). Every connection task lives in the serving task, so aborting it closes them all.
/// Must be called on a tokio runtime.
pub fn serve_tcp(listener: TcpListener, allow: AllowList, limits: EgressLimits) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve(listener, Arc::new(allow), limits))
}

/// A listener the proxy accepts clients on: the sandbox's Unix socket or a container's TCP port.
trait Acceptor: Send + 'static {
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_conn(&self) -> impl std::future::Future<Output = std::io::Result<Self::Conn>> + Send + '_;
    /// Writes what fits without blocking (the 503 to a client over the connection limit).
    fn try_write(conn: &Self::Conn, bytes: &[u8]);
}

impl Acceptor for UnixListener {
    type Conn = UnixStream;
    async fn accept_conn(&self) -> std::io::Result<UnixStream> {
        self.accept().await.map(|(c, _)| c)
    }
    fn try_write(conn: &UnixStream, bytes: &[u8]) {
        let _ = conn.try_write(bytes);
    }
}

impl Acceptor for TcpListener {
    type Conn = TcpStream;
    async fn accept_conn(&self) -> std::io::Result<TcpStream> {
        self.accept().await.map(|(c, _)| c)
    }
    fn try_write(conn: &TcpStream, bytes: &[u8]) {
        let _ = conn.try_write(bytes);
    }
}

/// Accepts until aborted; every connection task lives in the set, so aborting this task (its
/// set dropped) closes them all.
async fn serve<L: Acceptor>(listener: L, allow: Arc<AllowList>, limits: EgressLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept_conn() => {
                let Ok(conn) = accepted else {
                    // EMFILE and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // Best effort and non-blocking: no task is spent on a refused client.
                    L::try_write(&conn, &response(503, "too many connections"));
                    continue;
                };
                let allow = Arc::clone(&allow);
                tasks.spawn(async move {
                    handle(conn, &allow, &limits).await;
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Serves one client connection: one request head, a check, a connection, a splice.
pub async fn handle<C: AsyncRead + AsyncWrite + Unpin>(mut client: C, allow: &AllowList, limits: &EgressLimits) {
    let read = tokio::time::timeout(limits.header_timeout, request::read(&mut client, limits.max_header_bytes)).await;
    let (req, rest) = match read {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(bad)) => return refuse(&mut client, bad.status, bad.reason).await,
        Err(_) => return refuse(&mut client, 408, "request head not received in time").await,
    };
    let (host, port) = match &req {
        Request::Connect { host, port } | Request::Forward { host, port, .. } => (host.clone(), *port),
    };
    if let Err(refusal) = allow.check(&host, port) {
        tracing::info!(%host, port, reason = %refusal, "egress refused");
        return refuse(&mut client, 403, &refusal.to_string()).await;
    }
    let mut upstream = match dial(&host, port, allow, limits).await {
        Ok(s) => s,
        Err(Dial::Refused(refusal)) => {
            tracing::info!(%host, port, reason = %refusal, "egress refused");
            return refuse(&mut client, 403, &refusal.to_string()).await;
        }
        Err(Dial::Failed(status, reason)) => return refuse(&mut client, status, &reason).await,
    };
    let sent = match &req {
        Request::Connect { .. } => client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await,
        Request::Forward { head, .. } => upstream.write_all(head).await,
    };
    if sent.is_err() || (!rest.is_empty() && upstream.write_all(&rest).await.is_err()) {
        return;
    }
    splice::splice(client, upstream, limits.idle_timeout).await;
}

enum Dial {
    Refused(Refusal),
    Failed(u16, String),
}

/// Resolves and connects, skipping addresses the allow-list may not dial.
async fn dial(host: &str, port: u16, allow: &AllowList, limits: &EgressLimits) -> Result<TcpStream, Dial> {
    let resolved = tokio::time::timeout(limits.resolve_timeout, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<SocketAddr> = match resolved {
        Ok(Ok(addrs)) => addrs.take(16).collect(),
        Ok(Err(_)) => return Err(Dial::Failed(502, format!("cannot resolve {host}"))),
        Err(_) => return Err(Dial::Failed(504, format!("resolving {host} timed out"))),
    };
    let usable: Vec<SocketAddr> = addrs.iter().copied().filter(|a| allow.may_dial(a.ip())).collect();
    if usable.is_empty() {
        return Err(if addrs.is_empty() {
            Dial::Failed(502, format!("{host} has no address"))
        } else {
            Dial::Refused(Refusal::LocalAddress(host.to_owned()))
        });
    }
    let connect = async {
        let mut last = None;
        for addr in usable {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(limits.connect_timeout, connect).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(_)) => Err(Dial::Failed(502, format!("cannot connect to {host}:{port}"))),
        Err(_) => Err(Dial::Failed(504, format!("connecting to {host}:{port} timed out"))),
    }
}

async fn refuse<C: AsyncWrite + Unpin>(client: &mut C, status: u16, reason: &str) {
    let _ = client.write_all(&response(status, reason)).await;
    let _ = client.shutdown().await;
}

/// A complete short plain-text response.
fn response(status: u16, reason: &str) -> Vec<u8> {
    let phrase = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    // The reason may echo a host name the client sent: keep it to one printable line.
    let reason: String = reason.chars().filter(|c| !c.is_control()).take(200).collect();
    let body = format!("apiary egress: {reason}\n");
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
