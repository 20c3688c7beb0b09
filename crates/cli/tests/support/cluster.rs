//! Reaching the REAL test cluster (`cargo xtask cluster up`) from the CLI's tests: the cached
//! kubectl, the kubeconfig, kubectl runs and applies, the CRDs the gateway tests need, polling,
//! and what a test made removed when it ends. One copy for every cluster test of this crate.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Bound on each wait for the cluster (or what runs against it) to catch up.
pub const WAIT: Duration = Duration::from_secs(90);
/// Bound on one kubectl run, in seconds (`timeout` kills it past that).
const KUBECTL_LIMIT_SECS: &str = "150";

/// The cached kubectl of the test cluster (`$APIARY_CACHE/k8s/<version>/kubectl`, the newest).
pub fn kubectl_bin() -> PathBuf {
    apiary_testkit::env::cluster_tool("kubectl")
}

/// `KUBECONFIG`, which must name the test cluster's kubeconfig file.
pub fn kubeconfig() -> String {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG must name the test cluster's kubeconfig");
    assert!(std::path::Path::new(&path).is_file(), "KUBECONFIG {path} is not a file");
    path
}

/// Runs kubectl with `args`, `stdin` piped in; panics with its stderr when it fails.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", KUBECTL_LIMIT_SECS])
        .arg(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Applies `docs` (JSON manifests, each naming its namespace if it has one) with kubectl.
pub fn apply(docs: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
}

/// The third-party CRDs seed 004 applies (Gateway API, Istio, Kuadrant; `cargo xtask crds`,
/// cached) and the registration CRD, established.
pub fn install_crds() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Its own target dir: the one running this test may be locked by cargo.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|t| format!("{t}-xtask"))
        .unwrap_or_else(|_| workspace.join("target/xtask-cluster").display().to_string());
    let out = Command::new(env!("CARGO"))
        .args(["xtask", "crds"])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo xtask crds: {}", String::from_utf8_lossy(&out.stderr));
    let dir = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &dir], None);
    let ours = workspace.join("deploy/crds/mcpserverregistrations.mcp.kuadrant.io.yaml");
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", ours.to_str().unwrap()], None);
    kubectl(
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/httproutes.gateway.networking.k8s.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/gatewayclasses.gateway.networking.k8s.io",
            "crd/serviceentries.networking.istio.io",
            "crd/authpolicies.kuadrant.io",
            "crd/mcpserverregistrations.mcp.kuadrant.io",
        ],
        None,
    );
}

/// Polls `probe` every 300 ms until it gives `Some`, failing after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes what a test made in the cluster when the test ends, passed or failed: its
/// namespaces and the cluster-scoped objects (`kind`, `name`) it created.
#[derive(Default)]
pub struct Cleanup {
    pub namespaces: Vec<String>,
    pub cluster_scoped: Vec<(&'static str, String)>,
}

impl Cleanup {
    /// Deletes `namespaces` at the end.
    pub fn namespaces(namespaces: &[&str]) -> Self {
        Cleanup { namespaces: namespaces.iter().map(|ns| (*ns).to_owned()).collect(), cluster_scoped: Vec::new() }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let delete = |args: &[&str]| {
            let _ = Command::new(kubectl_bin()).arg("--kubeconfig").arg(kubeconfig()).args(args).output();
        };
        for ns in &self.namespaces {
            delete(&["delete", "namespace", ns, "--wait=false", "--ignore-not-found"]);
        }
        for (kind, name) in &self.cluster_scoped {
            delete(&["delete", kind, name, "--wait=false", "--ignore-not-found"]);
        }
    }
}
