//! The inside half of the egress path: in the sandbox's network namespace, `lo` is brought up and
//! pid 1 (the reaper, which is not confined and outlives the server) listens on
//! `127.0.0.1:<port>` and forwards each connection to the egress proxy's Unix socket,
//! bind-mounted at [`SOCKET_INSIDE`]. Plain threads: pid 1 has no async runtime, and the
//! listener is bound before the server is forked (so it is there when the server starts) while
//! the threads start only after that fork (a fork of a threaded process may deadlock).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
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
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
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
        let spawned = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || {
            let _guard = guard;
            forward(conn, Path::new(SOCKET_INSIDE));
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
