//! Endpoints on the test cluster's node, for what pods must reach over HTTPS with a CA made by
//! the test, or on the host: no image the cluster holds can terminate TLS, and the node's
//! network namespace has no route to the host. So `socat` (Debian's, built with OpenSSL)
//! listens on the node's address inside that namespace, with a certificate signed by a
//! throwaway CA (openssl CLI) or in plain TCP, and forwards each connection to an in-cluster
//! address (a Service's ClusterIP) or, through a unix socket, to a port on the host's loopback
//! (Keycloak). Pods reach it through a selector-less Service whose EndpointSlice names the
//! node's address, so a certificate is checked against a cluster DNS name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

/// The cluster node's network namespace (`cargo xtask cluster up`).
pub const NODE_NETNS: &str = "/run/netns/apiary-k8s";
/// The node's address inside it, reachable from every pod.
pub const NODE_IP: &str = "10.250.0.10";

/// A CA and a server certificate for one DNS name, in a temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// A CA, a server certificate for `dns_name` signed by it, and a second, unrelated CA.
    pub fn new(dns_name: &str) -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for ca in ["ca", "other-ca"] {
            openssl(p, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
                .args([format!("/CN=apiary-test-{ca}"), "-keyout".into(), format!("{ca}.key")])
                .args(["-out".to_string(), format!("{ca}.crt")])
                .run();
        }
        openssl(p, &["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", &format!("/CN={dns_name}")])
            .run();
        let ext = p.join("server.ext");
        std::fs::write(
            &ext,
            format!("subjectAltName=DNS:{dns_name}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"),
        )
        .unwrap();
        openssl(p, &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-days", "1", "-out", "server.crt", "-extfile", ext.to_str().unwrap()])
            .run();
        TestPki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.path("ca.crt")).unwrap()
    }

    /// The PEM of a CA that signed nothing the server shows.
    pub fn other_ca_pem(&self) -> String {
        std::fs::read_to_string(self.path("other-ca.crt")).unwrap()
    }
}

struct Openssl(Command);

fn openssl(dir: &Path, args: &[&str]) -> Openssl {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    Openssl(cmd)
}

impl Openssl {
    fn args<I, S>(mut self, args: I) -> Openssl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.0.args(args);
        self
    }

    fn run(mut self) {
        let out = self.0.output().unwrap();
        assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// How a [`NodeListener`] accepts connections.
pub enum Listen<'a> {
    /// TLS with the server certificate of the PKI.
    Tls(&'a TestPki),
    /// Plain TCP.
    Plain,
}

/// `socat` listening on `NODE_IP:port` inside the node's namespace; stopped when dropped.
pub struct NodeListener {
    /// The port it listens on at [`NODE_IP`].
    pub port: u16,
    /// The `timeout` wrapper; SIGTERM to it reaches socat.
    child: Child,
}

impl NodeListener {
    /// Listens on `NODE_IP:<a port>` as `listen` says and forwards every connection to
    /// `upstream`, a socat address (`TCP:IP:PORT` reachable from the node, or a
    /// [`HostSocket::address`]). Fails when the cluster's namespace is missing.
    pub fn start(listen: Listen<'_>, upstream: &str) -> NodeListener {
        assert!(Path::new(NODE_NETNS).exists(), "no {NODE_NETNS}: is the cluster up (cargo xtask cluster up)?");
        let port = next_port();
        let listen = match listen {
            Listen::Tls(pki) => format!(
                "OPENSSL-LISTEN:{port},bind={NODE_IP},reuseaddr,fork,cert={},key={},verify=0",
                pki.path("server.crt").display(),
                pki.path("server.key").display()
            ),
            Listen::Plain => format!("TCP-LISTEN:{port},bind={NODE_IP},reuseaddr,fork"),
        };
        let child = bounded(&["nsenter", &format!("--net={NODE_NETNS}"), "socat", &listen, upstream]);
        NodeListener { port, child }
    }
}

impl Drop for NodeListener {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A unix socket forwarding to a port on the host's loopback: socket paths are not
/// per-namespace, so a [`NodeListener`] reaches a host service (Keycloak) through it, the way
/// the cluster's apiserver forwarder works the other way round.
pub struct HostSocket {
    dir: tempfile::TempDir,
    child: Child,
}

impl HostSocket {
    /// Forwards every connection to the socket to `127.0.0.1:port`.
    pub fn to_loopback(port: u16) -> HostSocket {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("UNIX-LISTEN:{},fork,mode=600", dir.path().join("s.sock").display());
        let child = bounded(&["socat", &listen, &format!("TCP:127.0.0.1:{port}")]);
        HostSocket { dir, child }
    }

    /// The socat address connecting to it.
    pub fn address(&self) -> String {
        format!("UNIX-CONNECT:{}", self.dir.path().join("s.sock").display())
    }
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A port per listener of this test process, away from the ranges the node's daemons use.
fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % 8;
    30_000 + u16::try_from(std::process::id() % 4_000).unwrap() * 8 + slot
}

/// `argv` under `timeout`, so it cannot outlive the test run.
fn bounded(argv: &[&str]) -> Child {
    Command::new("timeout")
        .args(["--kill-after=5", "540"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL would leave socat running until its `timeout`; SIGTERM is passed on to it.
fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
