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
#[derive(Debug)]
pub struct EgressNamespace {
    netns: OwnedFd,
    proxy: JoinHandle<()>,
}

impl EgressNamespace {
    /// Makes the namespace and starts the proxy in it. Must be called on a tokio runtime.
    pub async fn start(allow: AllowList, limits: EgressLimits) -> Result<Self, ContainerError> {
        let made = tokio::task::spawn_blocking(|| {
            std::thread::Builder::new()
                .name("apiary-egress-netns".into())
                .spawn(make_namespace)
                .map_err(|e| format!("cannot start a thread: {e}"))?
                .join()
                .map_err(|_| "the namespace thread panicked".to_owned())?
        })
        .await
        .map_err(|e| ContainerError::Egress(e.to_string()))?;
        let (listener, netns) = made.map_err(ContainerError::Egress)?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| ContainerError::Egress(format!("the proxy's listener: {e}")))?;
        let proxy = serve_tcp(listener, allow, limits);
        Ok(EgressNamespace { netns, proxy })
    }

    /// The Engine API's `HostConfig.NetworkMode` that puts a container in this namespace.
    pub fn network_mode(&self) -> String {
        format!("ns:/proc/{}/fd/{}", std::process::id(), self.netns.as_raw_fd())
    }
}

impl Drop for EgressNamespace {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

/// Runs on its own thread, which ends right after: a new network namespace for this thread,
/// `lo` up, the proxy's listener bound there, and the namespace opened.
fn make_namespace() -> Result<(std::net::TcpListener, OwnedFd), String> {
    crate::sandbox::sys::unshare(rustix::thread::UnshareFlags::NEWNET).map_err(|e| {
        format!(
            "cannot create a network namespace ({e}); the egress allow-list for containers needs Apiary to run as root (CAP_SYS_ADMIN), as rootful Podman does"
        )
    })?;
    crate::sandbox::sys::loopback_up().map_err(|e| format!("cannot bring up lo in the new namespace: {e}"))?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", EGRESS_PORT))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{EGRESS_PORT} in the new namespace: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("the proxy's listener: {e}"))?;
    let netns = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| format!("cannot open the new network namespace: {e}"))?;
    Ok((listener, OwnedFd::from(netns)))
}
