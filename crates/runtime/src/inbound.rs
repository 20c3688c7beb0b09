//! Reaching an HTTP-transport server that listens inside a private network namespace (the
//! sandbox's under profile `none` or an allow-list, or the namespace Apiary makes for such a
//! container): the host's network cannot reach its port, so the proxy dials a Unix socket
//! (`StateDir::upstream_socket_path`) whose other end connects to `127.0.0.1:<port>` inside the
//! namespace. This module says which workloads need that and checks that a server answers
//! through it; the sandbox's pid 1 (`sandbox::bridge`) and the container forwarder
//! (`container::inbound`) are the other ends.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use apiary_config::{Isolation, NetworkAccess, RunConfig, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request any HTTP server answers (with a 404 or 405 at worst); the probe only needs bytes.
const PROBE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// True when `config`'s server speaks HTTP from inside a private network namespace on this
/// machine, and is therefore reached through its workload's Unix socket. `local_runtime` is
/// false when an image runs elsewhere (Kubernetes), where this does not apply.
pub fn needs_socket(config: &RunConfig, local_runtime: bool) -> bool {
    if !config.effective_transport().is_http() || config.is_remote() {
        return false;
    }
    let private = config.permission_profile.network_access() != NetworkAccess::All;
    match config.source {
        Source::Package(_) | Source::Command(_) => private && config.isolation == Isolation::Sandbox,
        Source::Image(_) => private && local_runtime,
        Source::Remote(_) => false,
    }
}

/// Checks that an HTTP server answers through `socket`: a bare connection is not enough (the
/// other end accepts even while the server is not listening yet, then closes), so one request
/// is sent and any HTTP answer counts.
pub async fn probe(socket: &Path, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut conn = tokio::net::UnixStream::connect(socket).await.map_err(|e| e.to_string())?;
        conn.write_all(PROBE_REQUEST).await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 5];
        conn.read_exact(&mut head).await.map_err(|_| "the server closed the connection unanswered".to_owned())?;
        if &head == b"HTTP/" { Ok(()) } else { Err("the answer is not HTTP".to_owned()) }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(format!("the server behind {} does not answer: {why}", socket.display())),
        Err(_) => {
            Err(format!("the server behind {} did not answer within {} ms", socket.display(), timeout.as_millis()))
        }
    }
}

/// [`probe`] for synchronous callers: true when the server answers within `timeout`.
pub fn probe_blocking(socket: &Path, timeout: Duration) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut conn = std::os::unix::net::UnixStream::connect(socket)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        conn.write_all(PROBE_REQUEST)?;
        let mut head = [0u8; 5];
        conn.read_exact(&mut head)?;
        Ok(&head == b"HTTP/")
    };
    attempt().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use apiary_config::{PermissionProfile, Transport};

    fn http(source: Source, profile: PermissionProfile) -> RunConfig {
        let mut c = RunConfig::new("w", source);
        c.transport = Some(Transport::StreamableHttp);
        c.target_port = 8080;
        c.permission_profile = profile;
        c
    }

    #[test]
    fn only_http_servers_in_a_private_namespace_on_this_machine_need_the_socket() {
        let cmd = || Source::command("server", Vec::<String>::new());
        assert!(needs_socket(&http(cmd(), PermissionProfile::none()), true));
        assert!(!needs_socket(&http(cmd(), PermissionProfile::network()), true));
        let mut plain = http(cmd(), PermissionProfile::none());
        plain.isolation = Isolation::None;
        assert!(!needs_socket(&plain, true), "an unsandboxed server listens on the host");
        let mut stdio = http(cmd(), PermissionProfile::none());
        stdio.transport = Some(Transport::Stdio);
        assert!(!needs_socket(&stdio, true));
        let image = http(Source::image("localhost/x:1"), PermissionProfile::none());
        assert!(needs_socket(&image, true));
        assert!(!needs_socket(&image, false), "an image on Kubernetes is reached in the cluster");
    }

    #[tokio::test]
    async fn the_probe_wants_an_http_answer_not_just_a_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let serve = tokio::spawn(async move {
            // First connection: closed unanswered (the server is not listening yet).
            let (first, _) = listener.accept().await.unwrap();
            drop(first);
            // Second: an HTTP answer.
            let (mut second, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = second.read(&mut buf).await.unwrap();
            second.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        });
        let timeout = Duration::from_secs(5);
        assert!(probe(&path, timeout).await.unwrap_err().contains("unanswered"));
        probe(&path, timeout).await.unwrap();
        serve.await.unwrap();
        assert!(probe(&dir.path().join("none.sock"), timeout).await.is_err());
    }
}
