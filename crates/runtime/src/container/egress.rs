//! The egress allow-list for containers: a network namespace with nothing but `lo`, where the
//! egress proxy (the sandbox's, `sandbox::egress`) listens on `127.0.0.1:`[`EGRESS_PORT`], and
//! which the container joins (`NetworkMode: ns:PATH`). The container then has no route anywhere
//! (no interface but loopback), cannot reach the host's loopback or any host port (its loopback
//! is not the host's), and reaches the outside only by asking the proxy, which checks host and
//! port before it connects from the host's network.
//!
//! The namespace is made by a short-lived thread (tokio's workers must stay in the host's
//! namespace): it unshares a network namespace, brings `lo` up, binds the listener there and
//! opens the namespace; a socket keeps the namespace it was made in, so the proxy serves it from
//! the host's runtime. The namespace is held by an open descriptor, handed to the engine as
//! `/proc/<pid>/fd/<n>`, and freed when the last of the descriptor and the container lets go:
//! nothing is left on the host (no bridge, no firewall rule, no mount) even if Apiary is killed.
//!
//! This needs `CAP_SYS_ADMIN` (Apiary as root, as rootful Podman needs anyway) and an engine on
//! this machine that accepts `ns:` network modes (Podman; Docker does not).

use std::os::fd::{AsRawFd, OwnedFd};

use tokio::task::JoinHandle;

use crate::sandbox::egress::{AllowList, EGRESS_PORT, EgressLimits, serve_tcp};

use super::ContainerError;

/// The proxy URL a container gets in `HTTP_PROXY`/`HTTPS_PROXY` (and the lower-case forms).
pub const PROXY_URL: &str = "http://127.0.0.1:3128";

/// Addresses that never go through the proxy: the namespace's own loopback (the proxy itself,
/// and the server talking to itself). Off-machine names all go through the proxy.
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// A network namespace with the egress proxy on its loopback. Dropping it stops the proxy (and
/// every tunnel it holds) and releases the namespace (freed once no container is in it).
/// The same namespace without a proxy ([`EgressNamespace::start_private`]) serves an
/// HTTP-transport container under profile `none`: loopback only, its port reached by
/// [`EgressNamespace::dial`] (see `super::inbound`).
#[derive(Debug)]
pub struct EgressNamespace {
    netns: OwnedFd,
    proxy: Option<JoinHandle<()>>,
}

impl EgressNamespace {
    /// Makes the namespace and starts the proxy in it. Must be called on a tokio runtime.
    pub async fn start(allow: AllowList, limits: EgressLimits) -> Result<Self, ContainerError> {
        let (listener, netns) = in_new_namespace(true).await?;
        let Some(listener) = listener else {
            return Err(ContainerError::Egress("the proxy's listener was not made".into()));
        };
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| ContainerError::Egress(format!("the proxy's listener: {e}")))?;
        let proxy = serve_tcp(listener, allow, limits);
        Ok(EgressNamespace { netns, proxy: Some(proxy) })
    }

    /// Makes a namespace with nothing but `lo` and no proxy: no way out at all.
    pub async fn start_private() -> Result<Self, ContainerError> {
        let (_, netns) = in_new_namespace(false).await?;
        Ok(EgressNamespace { netns, proxy: None })
    }

    /// The Engine API's `HostConfig.NetworkMode` that puts a container in this namespace.
    pub fn network_mode(&self) -> String {
        format!("ns:/proc/{}/fd/{}", std::process::id(), self.netns.as_raw_fd())
    }

    /// Opens a TCP connection to `127.0.0.1:port` of this namespace: a short-lived thread enters
    /// it (`setns`; tokio's threads never leave the host's namespace), connects and ends; the
    /// socket keeps the namespace it was made in. Blocking: call from a blocking context.
    pub fn dial(&self, port: u16, timeout: std::time::Duration) -> std::io::Result<std::net::TcpStream> {
        let netns = self.netns.try_clone()?;
        std::thread::Builder::new()
            .name("apiary-netns-dial".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&netns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                std::net::TcpStream::connect_timeout(&addr, timeout)
            })?
            .join()
            .map_err(|_| std::io::Error::other("the dialing thread panicked"))?
    }
}

impl Drop for EgressNamespace {
    fn drop(&mut self) {
        if let Some(proxy) = &self.proxy {
            proxy.abort();
        }
    }
}

/// Makes a namespace on a thread of its own (see [`make_namespace`]).
async fn in_new_namespace(proxy: bool) -> Result<(Option<std::net::TcpListener>, OwnedFd), ContainerError> {
    let made = tokio::task::spawn_blocking(move || {
        std::thread::Builder::new()
            .name("apiary-egress-netns".into())
            .spawn(move || make_namespace(proxy))
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .map_err(|_| "the namespace thread panicked".to_owned())?
    })
    .await
    .map_err(|e| ContainerError::Egress(e.to_string()))?;
    made.map_err(ContainerError::Egress)
}

/// Runs on its own thread, which ends right after: a new network namespace for this thread,
/// `lo` up, the proxy's listener bound there (when asked), and the namespace opened.
fn make_namespace(proxy: bool) -> Result<(Option<std::net::TcpListener>, OwnedFd), String> {
    crate::sandbox::sys::unshare(rustix::thread::UnshareFlags::NEWNET).map_err(|e| {
        format!(
            "cannot create a network namespace ({e}); a container in a namespace of Apiary's (an allow-list, or an HTTP server without network) needs Apiary to run as root (CAP_SYS_ADMIN), as rootful Podman does"
        )
    })?;
    crate::sandbox::sys::loopback_up().map_err(|e| format!("cannot bring up lo in the new namespace: {e}"))?;
    let listener = if proxy {
        let listener = std::net::TcpListener::bind(("127.0.0.1", EGRESS_PORT))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{EGRESS_PORT} in the new namespace: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("the proxy's listener: {e}"))?;
        Some(listener)
    } else {
        None
    };
    let netns = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| format!("cannot open the new network namespace: {e}"))?;
    Ok((listener, OwnedFd::from(netns)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use apiary_config::OutboundPermissions;

    use super::*;

    /// From a thread moved into the namespace at `path`: its interfaces, and what each request
    /// sent to the proxy got back (or the connect error).
    fn inside(path: String, requests: Vec<String>, direct_port: u16) -> (String, Vec<String>, String) {
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                .unwrap();
            let devices = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
            let answers = requests
                .iter()
                .map(|r| {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", EGRESS_PORT)).unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
                    s.write_all(r.as_bytes()).unwrap();
                    let mut buf = [0u8; 512];
                    let n = s.read(&mut buf).unwrap();
                    String::from_utf8_lossy(&buf[..n]).into_owned()
                })
                .collect();
            let direct = match std::net::TcpStream::connect(("127.0.0.1", direct_port)) {
                Ok(_) => "connected".to_owned(),
                Err(e) => e.to_string(),
            };
            (devices, answers, direct)
        })
        .join()
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_namespace_has_only_lo_and_the_proxy_checks_before_it_connects() {
        // A host service on the host's loopback: listed, so the proxy may dial it.
        let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = host.local_addr().unwrap().port();
        let allow = AllowList::from_outbound(&OutboundPermissions {
            allow_host: vec!["127.0.0.1".into()],
            allow_port: vec![port],
            ..OutboundPermissions::default()
        });
        let ns = EgressNamespace::start(allow, EgressLimits::default()).await.unwrap();
        let mode = ns.network_mode();
        let path = mode.strip_prefix("ns:").unwrap().to_owned();
        assert_ne!(std::fs::read_link(&path).unwrap(), std::fs::read_link("/proc/self/ns/net").unwrap());
        let requests = vec![
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
            format!("CONNECT evil.test:{port} HTTP/1.1\r\n\r\n"),
            "CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n".to_owned(),
        ];
        let (devices, answers, direct) =
            tokio::task::spawn_blocking(move || inside(path, requests, port)).await.unwrap();
        assert!(devices.lines().skip(2).all(|l| l.trim_start().starts_with("lo:")), "{devices}");
        assert!(answers[0].starts_with("HTTP/1.1 200"), "{answers:?}");
        assert!(answers[1].starts_with("HTTP/1.1 403") && answers[1].contains("host evil.test"), "{answers:?}");
        assert!(answers[2].starts_with("HTTP/1.1 403") && answers[2].contains("port 1 "), "{answers:?}");
        // The host's loopback port is not reachable from the namespace's loopback.
        assert!(direct.contains("refused"), "{direct}");
        drop(ns);
    }
}
