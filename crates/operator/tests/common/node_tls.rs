//! A TLS endpoint on the test cluster's node, for backends that must be reached over HTTPS
//! with a CA made by the test: no image the cluster holds can terminate TLS, so `socat`
//! (Debian's, built with OpenSSL) listens on the node's address inside the cluster's network
//! namespace with a certificate signed by a throwaway CA (openssl CLI) and forwards the
//! decrypted stream to an in-cluster address (a Service's ClusterIP). Pods reach it through a
//! selector-less Service whose EndpointSlice names the node's address, so the certificate is
//! checked against a cluster DNS name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

/// `socat` terminating TLS on `NODE_IP:port` inside the node's namespace; stopped when dropped.
pub struct NodeTls {
    /// The port it listens on at [`NODE_IP`].
    pub port: u16,
    /// The `timeout` wrapper; SIGTERM to it reaches socat.
    child: Child,
}

impl NodeTls {
    /// Listens on `NODE_IP:<a port>` with the server certificate of `pki` and forwards every
    /// connection to `upstream` (`IP:PORT`, reachable from the node). Fails when the cluster's
    /// namespace is missing.
    pub fn start(pki: &TestPki, upstream: &str) -> NodeTls {
        assert!(Path::new(NODE_NETNS).exists(), "no {NODE_NETNS}: is the cluster up (cargo xtask cluster up)?");
        // A port per test process, away from the ranges the node's daemons use.
        let port = 30_000 + u16::try_from(std::process::id() % 20_000).unwrap();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind={NODE_IP},reuseaddr,fork,cert={},key={},verify=0",
            pki.path("server.crt").display(),
            pki.path("server.key").display()
        );
        let child = Command::new("timeout")
            .args(["--kill-after=5", "540", "nsenter", &format!("--net={NODE_NETNS}"), "socat", &listen])
            .arg(format!("TCP:{upstream}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        NodeTls { port, child }
    }
}

impl Drop for NodeTls {
    fn drop(&mut self) {
        // SIGKILL would leave socat running until its `timeout`; SIGTERM is passed on to it.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
