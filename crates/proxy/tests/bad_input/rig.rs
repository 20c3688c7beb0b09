//! What the bad-input tests run against: a real proxy in front of the fixture server (or of
//! the deliberately broken fake child) over stdio, with every byte the proxy writes to any
//! child recorded; a real proxy in front of the fixture over HTTP, through a relay that
//! records what reaches the upstream; and tiny fake HTTP upstreams that fail on purpose.
//! Each proxy runs on a runtime of its own, apart from the test's clients.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apiary_config::{CommandSource, RunConfig, Source, StdioMode, Transport};
use apiary_proxy::{ProxyHandle, UpstreamStatus};
use apiary_transport::launch::{BoxWrite, Launch, LaunchFuture};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::common::CommandLauncher;

/// Bounds starting and stopping a proxy.
const PROXY_LIMIT: Duration = Duration::from_secs(60);

/// Every byte written to a child's stdin (or to an HTTP upstream), in order.
pub type Seen = Arc<Mutex<Vec<u8>>>;

fn seen_contains(seen: &Seen, needle: &str) -> bool {
    let bytes = seen.lock().unwrap();
    let n = needle.as_bytes();
    !n.is_empty() && bytes.windows(n.len()).any(|w| w == n)
}

/// The recorded lines that parse as JSON (what the proxy wrote to children).
fn seen_lines(seen: &Seen) -> Vec<serde_json::Value> {
    let bytes = seen.lock().unwrap().clone();
    bytes.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice(l).ok()).collect()
}

/// A child's stdin that keeps a copy of what is written to it.
struct Tap {
    inner: BoxWrite,
    seen: Seen,
}

impl AsyncWrite for Tap {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.seen.lock().unwrap().extend_from_slice(&buf[..*n]);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Starts a real child process and records its stdin.
struct Tapped {
    inner: CommandLauncher,
    seen: Seen,
}

impl Launch for Tapped {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move {
            let mut handle = self.inner.launch().await?;
            handle.stdin = Box::new(Tap { inner: handle.stdin, seen: Arc::clone(&self.seen) });
            Ok(handle)
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The config every stdio rig starts from: the fixture over stdio, a child per session (so
/// a witness session's child is its own and its pid tells whether it survived), and a
/// request timeout short enough that nothing in a test waits minutes.
pub fn config(name: &str) -> RunConfig {
    let mut cfg = crate::common::testkit_config(name);
    cfg.stdio.mode = StdioMode::PerSession;
    cfg.limits.request_timeout_secs = 60;
    cfg
}

pub fn fake_child_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("bad_input").join("fake_child.py")
}

/// A runtime of the proxy's own: a proxy bug that blocks its threads (a deadlock) then
/// cannot freeze the test's client side, whose time-outs still fire and fail the test.
fn proxy_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Starts a proxy on `rt`.
async fn start_on(rt: &Runtime, cfg: RunConfig, launcher: Option<Arc<dyn Launch>>) -> ProxyHandle {
    let started = rt.spawn(async move { tokio::time::timeout(PROXY_LIMIT, apiary_proxy::start(cfg, launcher)).await });
    started.await.unwrap().expect("the proxy starts in time").expect("the proxy starts")
}

/// A running proxy over stdio, on a runtime of its own. Dropping it (a failed test) stops
/// the proxy and kills the children it reported.
pub struct Rig {
    proxy: Option<ProxyHandle>,
    rt: Option<Runtime>,
    seen: Seen,
}

impl Rig {
    /// The proxy in front of the fixture server over stdio.
    pub async fn fixture(cfg: RunConfig) -> Rig {
        let program = apiary_testkit::binaries::testkit_server();
        Rig::start(cfg, program, vec!["--stdio".into()]).await
    }

    /// The proxy in front of `fake_child.py` with `args`.
    pub async fn fake(mut cfg: RunConfig, args: &[&str]) -> Rig {
        let python = apiary_testkit::env::tool("python3");
        let mut all = vec![fake_child_script().display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        cfg.source = Source::Command(CommandSource { program: python.display().to_string(), args: all.clone() });
        Rig::start(cfg, python, all).await
    }

    async fn start(cfg: RunConfig, program: PathBuf, args: Vec<String>) -> Rig {
        let seen: Seen = Arc::default();
        let launcher = Tapped { inner: CommandLauncher { program, args }, seen: Arc::clone(&seen) };
        let rt = proxy_runtime();
        let proxy = start_on(&rt, cfg, Some(Arc::new(launcher))).await;
        Rig { proxy: Some(proxy), rt: Some(rt), seen }
    }

    fn proxy(&self) -> &ProxyHandle {
        self.proxy.as_ref().unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy().local_addr()
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The `/mcp` URL.
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    pub fn status(&self) -> UpstreamStatus {
        self.proxy().status().borrow().clone()
    }

    pub fn child_pids(&self) -> Vec<u32> {
        self.status().child_pids
    }

    /// Whether any child ever received `needle` on its stdin.
    pub fn child_saw(&self, needle: &str) -> bool {
        seen_contains(&self.seen, needle)
    }

    /// Waits until some child received `needle` (how a test knows a request is in flight).
    pub async fn wait_child_saw(&self, needle: &str) {
        let wait = async {
            while !self.child_saw(needle) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no child received {needle:?}"));
    }

    /// Every JSON line any child received, in order.
    pub fn child_lines(&self) -> Vec<serde_json::Value> {
        seen_lines(&self.seen)
    }

    pub async fn stop(mut self) {
        let proxy = self.proxy.take().unwrap();
        let pids = proxy.status().borrow().child_pids.clone();
        let stopped = tokio::time::timeout(PROXY_LIMIT, proxy.shutdown()).await;
        if stopped.is_err() {
            kill(&pids);
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        assert!(stopped.is_ok(), "the proxy did not stop within {PROXY_LIMIT:?}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            let pids = proxy.status().borrow().child_pids.clone();
            proxy.shutdown_token().cancel();
            kill(&pids);
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

pub fn kill(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
    }
}

/// A running proxy in front of an HTTP upstream. The fixture (when there is one) is killed
/// on drop.
pub struct HttpRig {
    proxy: Option<ProxyHandle>,
    rt: Option<Runtime>,
    upstream: Option<tokio::process::Child>,
    seen: Seen,
}

impl HttpRig {
    /// The proxy in front of `apiary-testkit-server --http`, reached through a recording
    /// relay; `tune` adjusts the proxy's config.
    pub async fn fixture(name: &str, tune: impl FnOnce(&mut RunConfig)) -> HttpRig {
        let apiary_testkit::http_fixture::HttpFixture { child, url } = apiary_testkit::http_fixture::start(&[]).await;
        let parsed = reqwest::Url::parse(&url).unwrap();
        let upstream: SocketAddr =
            format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap()).parse().unwrap();
        let seen: Seen = Arc::default();
        let relay = relay(upstream, Arc::clone(&seen)).await;
        let mut rig = HttpRig::in_front_of(name, &format!("http://{relay}{}", parsed.path()), tune).await;
        rig.upstream = Some(child);
        rig.seen = seen;
        rig
    }

    /// The proxy in front of whatever listens at `url` (or nothing).
    pub async fn in_front_of(name: &str, url: &str, tune: impl FnOnce(&mut RunConfig)) -> HttpRig {
        let mut cfg = RunConfig::new(name, Source::remote(url.to_owned()));
        cfg.transport = Some(Transport::StreamableHttp);
        tune(&mut cfg);
        let rt = proxy_runtime();
        let proxy = start_on(&rt, cfg, None).await;
        HttpRig { proxy: Some(proxy), rt: Some(rt), upstream: None, seen: Arc::default() }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.as_ref().unwrap().local_addr()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    /// Whether `needle` ever reached the upstream.
    pub fn upstream_saw(&self, needle: &str) -> bool {
        seen_contains(&self.seen, needle)
    }

    pub async fn stop(mut self) {
        let proxy = self.proxy.take().unwrap();
        let stopped = tokio::time::timeout(PROXY_LIMIT, proxy.shutdown()).await;
        if let Some(mut c) = self.upstream.take() {
            let _ = c.kill().await;
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        assert!(stopped.is_ok(), "the proxy did not stop within {PROXY_LIMIT:?}");
    }
}

impl Drop for HttpRig {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown_token().cancel();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A TCP relay to `upstream` that records every byte sent towards it.
async fn relay(upstream: SocketAddr, seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = up.into_split();
                let to_upstream = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown().await;
                };
                let to_client = async {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(to_upstream, to_client);
            });
        }
    });
    addr
}

/// How a fake HTTP upstream misbehaves (row 27).
#[derive(Debug, Clone, Copy)]
pub enum Broken {
    /// Accepts, then resets the connection without answering.
    Reset,
    /// Answers every request with this raw HTTP response.
    Answer(&'static str),
}

/// A fake HTTP upstream on a free loopback port; returns its `/mcp` URL.
pub async fn broken_upstream(how: Broken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head (and whatever body came with it) first.
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                match how {
                    Broken::Reset => {
                        let _ = conn.set_zero_linger();
                        drop(conn);
                    }
                    Broken::Answer(text) => {
                        let _ = conn.write_all(text.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                }
            });
        }
    });
    format!("http://{addr}/mcp")
}

/// A loopback URL where nothing listens.
pub async fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/mcp")
}
