//! The egress proxy against real sockets: tiny servers on 127.0.0.1, the proxy on a Unix socket,
//! a client speaking HTTP to it. Each refusal has a control showing the destination is up.

#![allow(clippy::unwrap_used)] // tests may unwrap

use apiary_config::OutboundPermissions;
use apiary_runtime::sandbox::egress::{AllowList, EgressLimits, EgressProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// Answers every connection with `200` and a body naming its port; stops with the test runtime.
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let body = format!("hello from {port}");
                let reply =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// Echoes bytes back (a plain TCP service to tunnel to).
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

fn allow(hosts: &[&str], ports: &[u16]) -> AllowList {
    AllowList::from_outbound(&OutboundPermissions {
        insecure_allow_all: false,
        allow_host: hosts.iter().map(|h| (*h).to_owned()).collect(),
        allow_port: ports.to_vec(),
    })
}

/// Sends `head` through the proxy and returns everything it answers.
async fn ask(proxy: &EgressProxy, head: &str) -> String {
    let mut conn = UnixStream::connect(proxy.socket()).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(proxy: &EgressProxy, host: &str, port: u16) -> String {
    ask(proxy, &format!("GET http://{host}:{port}/x HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")).await
}

#[tokio::test]
async fn plain_http_reaches_exactly_the_listed_host_and_port() {
    let (a, b) = (http_server().await, http_server().await);
    let dir = tempfile::tempdir().unwrap();
    let proxy =
        EgressProxy::start(&dir.path().join("e.sock"), allow(&["127.0.0.1"], &[a]), EgressLimits::default()).unwrap();

    let ok = get(&proxy, "127.0.0.1", a).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with(&format!("hello from {a}")), "{ok}");

    let other_port = get(&proxy, "127.0.0.1", b).await;
    assert!(other_port.starts_with("HTTP/1.1 403"), "{other_port}");
    assert!(other_port.contains(&format!("port {b} is not on the allow-list")), "{other_port}");
    // Control: port B is up and answers when asked directly.
    let mut direct = TcpStream::connect(("127.0.0.1", b)).await.unwrap();
    direct.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = String::new();
    direct.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"));

    let unlisted = get(&proxy, "127.0.0.2", a).await;
    assert!(unlisted.starts_with("HTTP/1.1 403"), "{unlisted}");
    let name = get(&proxy, "not-listed.test", a).await;
    assert!(name.starts_with("HTTP/1.1 403") && name.contains("not-listed.test"), "{name}");
}

#[tokio::test]
async fn a_listed_name_that_resolves_to_loopback_is_refused() {
    let a = http_server().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy =
        EgressProxy::start(&dir.path().join("e.sock"), allow(&["localhost"], &[a]), EgressLimits::default()).unwrap();
    let refused = get(&proxy, "localhost", a).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("resolves to a local address"), "{refused}");
    // Control: listing the address literally opts in.
    let proxy2 = EgressProxy::start(
        &dir.path().join("f.sock"),
        allow(&["localhost", "127.0.0.1", "::1"], &[a]),
        EgressLimits::default(),
    )
    .unwrap();
    let ok = get(&proxy2, "localhost", a).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test]
async fn connect_tunnels_to_the_listed_port_only() {
    let (echo, other) = (echo_server().await, echo_server().await);
    let dir = tempfile::tempdir().unwrap();
    let proxy = EgressProxy::start(&dir.path().join("e.sock"), allow(&["127.0.0.1"], &[echo]), EgressLimits::default())
        .unwrap();

    let mut conn = UnixStream::connect(proxy.socket()).await.unwrap();
    conn.write_all(format!("CONNECT 127.0.0.1:{echo} HTTP/1.1\r\n\r\n").as_bytes()).await.unwrap();
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut head = vec![0u8; established.len()];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(head, established);
    conn.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    conn.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"ping through the tunnel");

    let refused = ask(&proxy, &format!("CONNECT 127.0.0.1:{other} HTTP/1.1\r\n\r\n")).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
}

#[tokio::test]
async fn the_socket_is_private_and_goes_away_with_the_proxy() {
    use std::os::unix::fs::PermissionsExt;
    let proxy = EgressProxy::start_private(allow(&["a.test"], &[]), EgressLimits::default()).unwrap();
    let path = proxy.socket().to_path_buf();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let bad = ask(&proxy, "GET /relative HTTP/1.1\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    drop(proxy);
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}
