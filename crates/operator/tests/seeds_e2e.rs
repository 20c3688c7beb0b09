//! Seeds 000 and 001 end to end on the REAL test cluster, the way their reader does it: the chart
//! installed with helm as release `toolhive-operator` in `toolhive-system` (so the operator runs
//! in a pod, under the chart's ServiceAccount and RBAC), the seeds' manifests applied unchanged
//! with kubectl, then the seeds' own checks: `kubectl get mcpservers`, `port-forward` + `/health`,
//! their label selectors, seed 000's `kubectl run … curlimages/curl … curl -X POST …/mcp` from
//! another namespace, and its NetworkPolicy. Then drift of the runner-made StatefulSet, deletion,
//! and the chart in namespace scope.
//!
//! Needs `cargo xtask cluster up` and `cargo xtask image --push` (the images the seeds name are
//! stand-ins built from this checkout). Runs only with `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{kubeconfig, workspace};
use serde_json::Value;

const RELEASE: &str = "toolhive-operator";
const OPERATOR_NS: &str = "toolhive-system";
/// Bound on each wait for the cluster to converge.
const WAIT: Duration = Duration::from_secs(150);

fn enabled() -> bool {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 (and run `cargo xtask cluster up`) to run this test");
        return false;
    }
    true
}

/// A binary the cluster build cached: `$APIARY_CACHE/k8s/<version>/<name>`, newest version.
struct Kube {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
    helm_home: tempfile::TempDir,
}

impl Kube {
    fn new() -> Self {
        Kube {
            kubeconfig: kubeconfig(),
            kubectl: apiary_testkit::env::cluster_tool("kubectl"),
            helm: apiary_testkit::env::cluster_tool("helm"),
            helm_home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, bin: &Path, secs: u64, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", &secs.to_string()]).arg(bin).args(args);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.helm_home.path())
            .env("HELM_CACHE_HOME", self.helm_home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.helm_home.path().join("config"))
            .env("HELM_DATA_HOME", self.helm_home.path().join("data"));
        cmd
    }

    /// kubectl, bounded; the output whatever the exit status.
    fn try_kubectl(&self, args: &[&str]) -> Output {
        self.command(&self.kubectl, 60, args).stdin(Stdio::null()).output().unwrap()
    }

    /// kubectl that must succeed; its stdout.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.try_kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).unwrap()
    }

    /// [`Kube::kubectl_json`] for objects that may not exist yet.
    fn try_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.try_kubectl(&all);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// `kubectl apply -f -` of `yaml`.
    fn apply(&self, yaml: &str) {
        let mut child = self
            .command(&self.kubectl, 60, &["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply failed: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
    }

    fn helm(&self, args: &[&str]) -> String {
        let out = self.command(&self.helm, 240, args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Installs (or reconfigures) the chart with `sets`, waiting for the operator to be ready.
    fn install_chart(&self, sets: &[&str]) {
        let chart = workspace().join("deploy/helm/apiary-operator");
        let mut args = vec![
            "upgrade",
            "--install",
            RELEASE,
            chart.to_str().unwrap(),
            "-n",
            OPERATOR_NS,
            "--create-namespace",
            // Other cluster tests may have applied the CRDs without helm.
            "--take-ownership",
            "--wait",
            "--timeout",
            "180s",
        ];
        // The images are rebuilt under the same tags on every run; make the node pull them.
        args.extend(["--set", "operator.imagePullPolicy=Always"]);
        for s in sets {
            args.extend(["--set", s]);
        }
        self.helm(&args);
    }

    fn uninstall_chart(&self) {
        let _ = self
            .command(&self.helm, 120, &["uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--ignore-not-found"])
            .output();
    }

    /// Deletes namespaces and waits until they are gone.
    fn delete_namespaces(&self, names: &[&str]) {
        let mut args = vec!["delete", "namespace", "--ignore-not-found", "--wait=true", "--timeout=120s"];
        args.extend(names);
        let _ = self.try_kubectl(&args);
    }
}

/// Polls `probe` until it returns `Some`, failing after [`WAIT`] with `what` and the last note.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(note) => {
                assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {note}");
                std::thread::sleep(Duration::from_millis(1000));
            }
        }
    }
}

fn seed(file: &str) -> String {
    std::fs::read_to_string(workspace().join("crates/operator/tests/seeds").join(file)).unwrap()
}

/// The phase and URL `kubectl get mcpserver` prints, from the object.
fn phase_and_url(kube: &Kube, ns: &str, name: &str) -> Result<(String, String), String> {
    let v = kube.try_json(&["get", "mcpserver", name, "-n", ns])?;
    let phase = v["status"]["phase"].as_str().unwrap_or_default().to_string();
    let url = v["status"]["url"].as_str().unwrap_or_default().to_string();
    if phase == "Running" { Ok((phase, url)) } else { Err(format!("{ns}/{name}: {}", v["status"])) }
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

/// A pod run to completion with `kubectl run`, its logs returned, the pod deleted.
fn run_pod(kube: &Kube, ns: &str, name: &str, image: &str, argv: &[&str]) -> String {
    let mut args = vec!["run", name, "-n", ns, "--image", image, "--restart=Never", "--"];
    args.extend(argv);
    kube.kubectl(&args);
    eventually(&format!("pod {ns}/{name} to finish"), || {
        let v = kube.kubectl_json(&["get", "pod", name, "-n", ns]);
        match v["status"]["phase"].as_str() {
            Some("Succeeded") => Ok(()),
            Some("Failed") => panic!(
                "pod {name} failed: {}",
                String::from_utf8_lossy(&kube.try_kubectl(&["logs", name, "-n", ns]).stdout)
            ),
            other => Err(format!("{other:?}")),
        }
    });
    let logs = kube.kubectl(&["logs", name, "-n", ns]);
    kube.kubectl(&["delete", "pod", name, "-n", ns, "--wait=false"]);
    logs
}

/// The tool names in a `tools/list` answer; the pod's log may also hold curl's progress meter
/// (stderr), so the answer is the line that starts a JSON object.
fn tool_names(logs: &str) -> Vec<String> {
    let answer = logs.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON answer in: {logs}"));
    let v: Value = serde_json::from_str(answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Seed 000's URL of the fetch proxy, and its bare `tools/list`.
const FETCH_URL: &str = "http://mcp-fetch-proxy.toolhive-system.svc.cluster.local:8080/mcp";
const LIST: &str = r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#;

const SEED_NAMESPACES: &[&str] = &["development", "production", "data-processing", "my-namespace", "my-app"];

#[test]
fn seeds_000_and_001_through_the_helm_chart() {
    if !enabled() {
        return;
    }
    let kube = Kube::new();
    let _cleanup = Cleanup(&kube);
    // A release left by an interrupted run would keep its old pods (and images).
    kube.uninstall_chart();
    kube.delete_namespaces(SEED_NAMESPACES);
    kube.install_chart(&[]);

    // The operator runs in a pod under the chart's ServiceAccount, which is not an admin.
    let pods = kube.kubectl_json(&["get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=toolhive-operator"]);
    let pod = &pods["items"][0];
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    let account = pod["spec"]["serviceAccountName"].as_str().unwrap().to_string();
    assert_eq!(account, RELEASE);
    let operator_pod = pod["metadata"]["name"].as_str().unwrap();
    for (port, path) in [("8081", "health"), ("8081", "readyz"), ("8080", "metrics")] {
        let raw = format!("/api/v1/namespaces/{OPERATOR_NS}/pods/{operator_pod}:{port}/proxy/{path}");
        let body = kube.kubectl(&["get", "--raw", &raw]);
        assert!(!body.trim().is_empty(), "{path} answered nothing");
    }
    let subject = format!("system:serviceaccount:{OPERATOR_NS}:{account}");
    for (verb, resource) in [("create", "clusterrolebindings"), ("delete", "nodes"), ("create", "pods/exec")] {
        let out = kube.try_kubectl(&["auth", "can-i", verb, resource, "--all-namespaces", "--as", &subject]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "the operator may {verb} {resource}");
    }

    // What the seeds assume exists: their namespaces, the GitHub token Secret, the data PVC.
    for ns in SEED_NAMESPACES {
        kube.kubectl(&["create", "namespace", ns]);
    }
    kube.kubectl(&["create", "secret", "generic", "github-token", "-n", "production", "--from-literal=token=ghp-test"]);
    kube.apply(&format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: apiary-e2e-data\nspec:\n  capacity:\n    storage: 1Mi\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Delete\n  storageClassName: \"\"\n  hostPath:\n    path: {}\n  claimRef:\n    namespace: data-processing\n    name: my-mcp-data-claim\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: my-mcp-data-claim\n  namespace: data-processing\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: apiary-e2e-data\n  resources:\n    requests:\n      storage: 1Mi\n",
        std::env::temp_dir().join("apiary-e2e-data").display()
    ));

    // The seeds' manifests, unchanged.
    for file in [
        "000-fetch.yaml",
        "001-my-mcpserver.yaml",
        "001-my-mcpserver-with-secrets.yaml",
        "001-my-mcpserver-custom-pod.yaml",
        "001-my-mcpserver-with-volume.yaml",
    ] {
        kube.apply(&seed(file));
    }
    let servers = [
        ("toolhive-system", "fetch"),
        ("my-namespace", "osv"),
        ("production", "github"),
        ("development", "fetch"),
        ("data-processing", "filesystem"),
    ];
    for (ns, name) in servers {
        let (_, url) = eventually(&format!("MCPServer {ns}/{name} Running"), || phase_and_url(&kube, ns, name));
        assert_eq!(url, format!("http://mcp-{name}-proxy.{ns}.svc.cluster.local:8080"));
        eventually(&format!("StatefulSet {ns}/{name} ready"), || {
            let sts = kube.try_json(&["get", "statefulset", name, "-n", ns])?;
            (sts["status"]["readyReplicas"] == 1).then_some(()).ok_or_else(|| sts["status"].to_string())
        });
    }
    // The printer columns a user reads.
    let table = kube.kubectl(&["get", "mcpservers", "-n", "development"]);
    assert!(table.contains("STATUS") && table.contains("URL") && table.contains("AGE"), "{table}");
    assert!(table.contains("Running") && table.contains("http://mcp-fetch-proxy.development.svc.cluster.local:8080"));

    // Seed 001's pods: the secret as a secretKeyRef on container mcp (never its value), the
    // podTemplateSpec's resources winning over spec.resources, the PVC mounted read-only.
    let github = kube.kubectl_json(&["get", "pod", "github-0", "-n", "production"]);
    assert_eq!(github["spec"]["serviceAccountName"], "github-sa");
    let env = container(&github, "mcp")["env"].as_array().unwrap().clone();
    let token = env.iter().find(|e| e["name"] == "GITHUB_PERSONAL_ACCESS_TOKEN").unwrap();
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], "github-token");
    assert_eq!(token["valueFrom"]["secretKeyRef"]["key"], "token");
    assert!(!github.to_string().contains("ghp-test"), "the secret's value must not appear in the pod spec");
    let fetch = kube.kubectl_json(&["get", "pod", "fetch-0", "-n", "development"]);
    let limits = &container(&fetch, "mcp")["resources"]["limits"];
    assert_eq!((limits["cpu"].as_str(), limits["memory"].as_str()), (Some("500m"), Some("512Mi")));
    let osv = kube.kubectl_json(&["get", "pod", "osv-0", "-n", "my-namespace"]);
    assert_eq!(container(&osv, "mcp")["resources"]["limits"]["memory"], "128Mi");
    let fs = kube.kubectl_json(&["get", "pod", "filesystem-0", "-n", "data-processing"]);
    let mount = &container(&fs, "mcp")["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "my-mcp-data");
    assert_eq!(mount.unwrap()["mountPath"], "/projects/my-mcp-data");
    assert_eq!(mount.unwrap()["readOnly"], true);

    // Seed 001: port-forward to the proxy Service and curl /health.
    let port = free_port();
    let mut forward = kube
        .command(
            &kube.kubectl,
            120,
            &["-n", "development", "port-forward", "service/mcp-fetch-proxy", &format!("{port}:8080")],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = eventually("/health through port-forward", || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://127.0.0.1:{port}/health")])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("\"ok\"") { Ok(text) } else { Err(text) }
    });
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    // Seed 001's label selectors.
    let all = kube.kubectl(&["-n", "development", "get", "all", "-l", "app.kubernetes.io/instance=fetch"]);
    for what in ["deployment.apps/fetch", "statefulset.apps/fetch", "service/mcp-fetch-proxy", "pod/fetch-0"] {
        assert!(all.contains(what), "{what} not selected:\n{all}");
    }
    let logs = kube.kubectl(&["-n", OPERATOR_NS, "logs", "-l", "app.kubernetes.io/name=toolhive-operator"]);
    assert!(!logs.trim().is_empty(), "the operator's logs are found by the seed's selector");

    // Seed 000: the bare curl from a pod in another namespace, and the short form from inside.
    let full = run_pod(
        &kube,
        "my-app",
        "test-curl",
        "curlimages/curl",
        &[
            "curl",
            "-sS",
            "-X",
            "POST",
            "http://mcp-fetch-proxy.toolhive-system.svc.cluster.local:8080/mcp",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#,
        ],
    );
    let tools = tool_names(&full);
    assert!(tools.iter().any(|t| t == "echo"), "{tools:?}");
    let short = run_pod(
        &kube,
        OPERATOR_NS,
        "test-curl",
        "curlimages/curl",
        &[
            "curl",
            "-X",
            "POST",
            "http://mcp-fetch-proxy:8080/mcp",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#,
        ],
    );
    assert_eq!(tool_names(&short), tools);

    // An MCPRemoteProxy in front of that proxy's URL: Ready, and the same tools through it.
    kube.apply(
        "apiVersion: toolhive.stacklok.dev/v1alpha1\nkind: MCPRemoteProxy\nmetadata:\n  name: fetch-remote\n  namespace: my-app\nspec:\n  remoteURL: http://mcp-fetch-proxy.toolhive-system.svc.cluster.local:8080/mcp\n  transport: streamable-http\n  proxyPort: 8080\n",
    );
    eventually("MCPRemoteProxy my-app/fetch-remote Ready", || {
        let v = kube.try_json(&["get", "mcpremoteproxy", "fetch-remote", "-n", "my-app"])?;
        (v["status"]["phase"] == "Ready").then_some(()).ok_or_else(|| v["status"].to_string())
    });
    let remote = run_pod(
        &kube,
        "my-app",
        "test-remote",
        "curlimages/curl",
        &[
            "curl",
            "-sS",
            "-X",
            "POST",
            "http://mcp-fetch-remote-remote-proxy:8080/mcp",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#,
        ],
    );
    assert_eq!(tool_names(&remote), tools);

    // Seed 000's NetworkPolicy selects the proxy pods, and only them.
    kube.kubectl(&["label", "namespace", "my-app", "name=my-app", "--overwrite"]);
    kube.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-app-to-mcp\n  namespace: toolhive-system\nspec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: toolhive-proxy\n  policyTypes:\n  - Ingress\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          name: my-app\n",
    );
    let policy = kube.kubectl_json(&["get", "networkpolicy", "allow-app-to-mcp", "-n", OPERATOR_NS]);
    let selector = policy["spec"]["podSelector"]["matchLabels"].as_object().unwrap();
    let selector = selector.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect::<Vec<_>>().join(",");
    let selected = kube.kubectl_json(&["get", "pods", "-n", OPERATOR_NS, "-l", &selector]);
    let names: Vec<&str> =
        selected["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("fetch-") && names[0] != "fetch-0", "the proxy pod, not the MCP pod: {names:?}");

    // Drift: the runner brings back a deleted StatefulSet, and the server answers again.
    let uid = kube.kubectl_json(&["get", "statefulset", "fetch", "-n", OPERATOR_NS])["metadata"]["uid"].clone();
    kube.kubectl(&["delete", "statefulset", "fetch", "-n", OPERATOR_NS, "--wait=true"]);
    eventually("the deleted StatefulSet recreated and ready", || {
        let sts = kube.try_json(&["get", "statefulset", "fetch", "-n", OPERATOR_NS])?;
        (sts["metadata"]["uid"] != uid && sts["status"]["readyReplicas"] == 1)
            .then_some(())
            .ok_or_else(|| sts["status"].to_string())
    });

    // A transport change converges: streamable-http to stdio. The runner rolls, the server's
    // pod now takes stdin (the image reads MCP_TRANSPORT), its HTTP Services go, and the same
    // tools come back over the attach.
    kube.kubectl(&[
        "patch",
        "mcpserver",
        "fetch",
        "-n",
        OPERATOR_NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"transport":"stdio"}}"#,
    ]);
    eventually("the StatefulSet switched to stdio and ready", || {
        let sts = kube.try_json(&["get", "statefulset", "fetch", "-n", OPERATOR_NS])?;
        let mcp = &sts["spec"]["template"]["spec"]["containers"][0];
        let switched = mcp["stdin"] == true && mcp["env"].to_string().contains(r#""value":"stdio""#);
        (switched && sts["status"]["readyReplicas"] == 1 && sts["status"]["updatedReplicas"] == 1)
            .then_some(())
            .ok_or_else(|| sts["status"].to_string())
    });
    eventually("the HTTP Services removed", || {
        let left = kube.kubectl(&["get", "service", "-n", OPERATOR_NS, "-o", "name"]);
        if left.contains("service/mcp-fetch\n") || left.contains("mcp-fetch-headless") { Err(left) } else { Ok(()) }
    });
    let mut attempt = 0;
    let over_stdio = eventually("the same tools over stdio", || {
        attempt += 1;
        let logs = run_pod(
            &kube,
            "my-app",
            &format!("test-stdio-{attempt}"),
            "curlimages/curl",
            // `; true`: while the proxy rolls, a refused connection is a retry, not a failure.
            &[
                "sh",
                "-c",
                &format!("curl -sS -X POST {FETCH_URL} -H 'Content-Type: application/json' -d '{LIST}'; true"),
            ],
        );
        if logs.lines().any(|l| l.starts_with('{') && l.contains("\"tools\"")) { Ok(logs) } else { Err(logs) }
    });
    assert_eq!(tool_names(&over_stdio), tools);
    let config = kube.kubectl_json(&["get", "configmap", "fetch-runconfig", "-n", OPERATOR_NS]);
    assert!(config["data"]["runconfig.json"].as_str().unwrap().contains("\"stdio\""), "{config}");

    // Deleting the MCPServer removes everything made for it, the runner's objects included.
    kube.kubectl(&["delete", "mcpserver", "fetch", "-n", "development", "--wait=true"]);
    eventually("every child of development/fetch gone", || {
        let left = kube.kubectl(&[
            "get",
            "deployment,statefulset,service,configmap,serviceaccount,role,rolebinding",
            "-n",
            "development",
            "-l",
            "app.kubernetes.io/instance=fetch",
            "-o",
            "name",
        ]);
        if left.trim().is_empty() { Ok(()) } else { Err(left) }
    });

    // Namespace scope: the operator then reconciles only the allowed namespace.
    kube.delete_namespaces(&["scope-in", "scope-out"]);
    kube.kubectl(&["create", "namespace", "scope-in"]);
    kube.kubectl(&["create", "namespace", "scope-out"]);
    kube.install_chart(&["operator.rbac.scope=namespace", "operator.rbac.allowedNamespaces={scope-in}"]);
    let server = |ns: &str| {
        format!(
            "apiVersion: toolhive.stacklok.dev/v1alpha1\nkind: MCPServer\nmetadata:\n  name: scoped\n  namespace: {ns}\nspec:\n  image: docker.io/mcp/fetch:latest\n  transport: stdio\n"
        )
    };
    kube.apply(&server("scope-in"));
    kube.apply(&server("scope-out"));
    eventually("the MCPServer in the watched namespace Running", || phase_and_url(&kube, "scope-in", "scoped"));
    let out = kube.kubectl_json(&["get", "mcpserver", "scoped", "-n", "scope-out"]);
    assert!(out.get("status").is_none_or(|s| s.get("phase").is_none()), "scope-out was reconciled: {out}");
    let children =
        kube.kubectl(&["get", "deployment,configmap", "-n", "scope-out", "-l", "toolhive=true", "-o", "name"]);
    assert!(children.trim().is_empty(), "the operator wrote into a namespace it does not watch: {children}");
}

/// Removes what the test made, also when it fails: an operator left installed would fight the
/// in-process controllers of the other cluster tests.
struct Cleanup<'a>(&'a Kube);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let kube = self.0;
        kube.delete_namespaces(&["scope-in", "scope-out"]);
        kube.delete_namespaces(SEED_NAMESPACES);
        let _ = kube.try_kubectl(&["delete", "mcpserver", "--all", "-n", OPERATOR_NS, "--wait=true", "--timeout=60s"]);
        let _ =
            kube.try_kubectl(&["delete", "networkpolicy", "allow-app-to-mcp", "-n", OPERATOR_NS, "--ignore-not-found"]);
        kube.uninstall_chart();
        let _ = kube.try_kubectl(&["delete", "pv", "apiary-e2e-data", "--ignore-not-found"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
