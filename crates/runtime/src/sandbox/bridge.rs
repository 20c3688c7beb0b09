//! The bridges pid 1 of the sandbox (the reaper, which is not confined and outlives the server)
//! keeps between the sandbox's private network namespace and the host, both over Unix sockets
//! (a filesystem path reaches across network namespaces; a TCP port does not):
//!
//! - **egress**: `lo` is brought up, pid 1 listens on `127.0.0.1:<port>` inside and forwards
//!   each connection to the egress proxy's Unix socket, bind-mounted at [`SOCKET_INSIDE`];
//! - **inbound** (an HTTP-transport server): pid 1 listens on a Unix socket at a host path
//!   (bound before the new root hides the host) and forwards each connection to the server's
//!   `127.0.0.1:<port>` inside. The proxy is the only one that dials that socket (it sits in the
//!   workload's 0700 state directory); nothing is published on the host's network.
//!
//! Plain threads: pid 1 has no async runtime, and the listeners are bound before the server is
//! forked (so they are there when it starts) while the threads start only after that fork (a
//! fork of a threaded process may deadlock).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::exec::SetupError;
use super::sys;

/// Where the proxy's socket appears inside the sandbox.
pub const SOCKET_INSIDE: &str = "/run/apiary/egress.sock";

/// Connections forwarded at once; more are closed at once (the proxy has its own, equal cap).
const MAX_FORWARDED: usize = 256;

/// Stack of each copying thread: they only shuttle a fixed buffer.
const THREAD_STACK: usize = 64 * 1024;

/// Bytes copied per read.
const COPY_BUFFER: usize = 16 * 1024;

/// How the sandbox reaches the egress proxy (part of the spec the helper gets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressBridge {
    /// The proxy's Unix socket on the host.
    pub socket: std::path::PathBuf,
    /// The port pid 1 listens on inside (`HTTP_PROXY=http://127.0.0.1:<port>`).
    pub port: u16,
}

/// How the host reaches an HTTP-transport server inside the sandbox (part of the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundBridge {
    /// The Unix socket pid 1 listens on, a host path (the proxy dials it).
    pub socket: PathBuf,
    /// The port the server listens on inside (`127.0.0.1:<port>` of the sandbox's namespace).
    pub port: u16,
}

/// Binds the inbound socket (replacing a stale one a killed sandbox left) and brings `lo` up.
/// Call in pid 1 before the new root hides the host's paths, and before forking the server.
pub fn listen_inbound(bridge: &InboundBridge) -> Result<UnixListener, SetupError> {
    use std::os::unix::fs::FileTypeExt;
    sys::loopback_up().map_err(|source| SetupError { step: "bring lo up in the sandbox".into(), source })?;
    // Only a socket is replaced: a mistaken path never deletes a regular file.
    if std::fs::symlink_metadata(&bridge.socket).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(&bridge.socket);
    }
    UnixListener::bind(&bridge.socket)
        .map_err(|source| SetupError { step: format!("listen on {} for the proxy", bridge.socket.display()), source })
}

/// Forwards each connection to the inbound socket to `127.0.0.1:<port>` in this namespace, in a
/// background thread until the process ends. Call after the fork.
pub fn serve_inbound(listener: UnixListener, port: u16) {
    let spawned = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || {
        accept_each(
            || listener.accept().map(|(conn, _)| conn),
            move |conn| {
                // Not listening (yet): the proxy sees the connection closed with no answer.
                if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) {
                    splice(tcp, conn);
                }
            },
        )
    });
    if let Err(e) = spawned {
        eprintln!("apiary sandbox: cannot start the inbound bridge: {e}");
    }
}

/// Brings `lo` up and binds the inside listener. Call in pid 1 before forking the server.
pub fn listen(bridge: &EgressBridge) -> Result<TcpListener, SetupError> {
    sys::loopback_up().map_err(|source| SetupError { step: "bring lo up in the sandbox".into(), source })?;
    TcpListener::bind(("127.0.0.1", bridge.port)).map_err(|source| SetupError {
        step: format!("listen on 127.0.0.1:{} for the egress proxy", bridge.port),
        source,
    })
}

/// Forwards connections in a background thread until the process ends. Call after the fork.
pub fn serve(listener: TcpListener) {
    let spawned = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || accept_loop(&listener));
    if let Err(e) = spawned {
        eprintln!("apiary sandbox: cannot start the egress bridge: {e}");
    }
}

fn accept_loop(listener: &TcpListener) {
    accept_each(|| listener.accept().map(|(conn, _)| conn), |conn| forward(conn, Path::new(SOCKET_INSIDE)));
}

/// Accepts connections forever and hands each to `handle` on a thread of its own, at most
/// `MAX_FORWARDED` at once (one past the bound is closed at once). Both bridges, egress and
/// inbound, forward this way.
fn accept_each<C: Send + 'static>(
    mut accept: impl FnMut() -> std::io::Result<C>,
    handle: impl Fn(C) + Send + Sync + Clone + 'static,
) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match accept() {
            Ok(conn) => conn,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDED {
            active.fetch_sub(1, Ordering::AcqRel);
            continue; // dropped: closed
        }
        let guard = Active(Arc::clone(&active));
        let handle = handle.clone();
        let spawned = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || {
            let _guard = guard;
            handle(conn);
        });
        // On failure the closure (and its guard) is dropped, which decrements the count.
        drop(spawned);
    }
}

/// Decrements the active count when a forwarded connection ends.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies both ways between `tcp` and a new connection to the proxy's socket.
fn forward(tcp: TcpStream, socket: &Path) {
    let Ok(unix) = UnixStream::connect(socket) else { return };
    splice(tcp, unix);
}

/// Copies both ways between `tcp` and `unix` until the Unix side is done.
fn splice(tcp: TcpStream, unix: UnixStream) {
    let (Ok(tcp_r), Ok(unix_w)) = (tcp.try_clone(), unix.try_clone()) else { return };
    let up = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || {
        copy(tcp_r, &unix_w);
        let _ = unix_w.shutdown(Shutdown::Write);
    });
    let Ok(up) = up else { return };
    copy(&unix, &tcp);
    // The proxy is done (it closes only when both directions ended or the tunnel idled out):
    // close the client fully too, which also ends the other thread's read.
    let _ = tcp.shutdown(Shutdown::Both);
    let _ = up.join();
}

fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
