//! Use case 1 of seed 004 ("No auth") verbatim through `apiary gateway` on the REAL test cluster
//! (`cargo xtask cluster up`): the real kubernetes-mcp-server v0.0.67 (`cargo xtask test-env`)
//! runs on this host on port 9999 with the cluster's kubeconfig, as the seed's Step 2 runs it;
//! Gateway `mcp-gateway` in `gateway-system` exists as the chart would make it (one listener
//! whose hostname is not the seed's); then the seed's own shell blocks — `kubectl patch gateway`,
//! `kubectl create namespace mcp-test` and `kubectl apply -n mcp-test -f - <<EOF … EOF` — are
//! cut from the vendored seed text and run by bash with `EXTERNAL_HOSTNAME=localhost` (the
//! machine running the server, seen from the gateway on the same host). A fixture server is
//! registered beside it under another prefix through the chart's listener. Then the official
//! Python SDK client and the MCP Inspector CLI list tools through the gateway (`kube_` tools
//! beside `fixture_` ones) and `kube_namespaces_list` answers with the cluster's namespaces.
//! The seed's patch is what admits its route: the listener rules of `apiary gateway`.
//! Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`; then a missing tool fails it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use apiary_testkit::env;
use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};

/// Bound on each wait for the cluster, the server or the gateway to catch up.
const WAIT: Duration = Duration::from_secs(90);
/// Bound on one client run (an interpreter or Node starting, three requests).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// The seed runs kubernetes-mcp-server on this port and its Service points there.
const SEED_PORT: u16 = 9999;
/// `EXTERNAL_HOSTNAME`: the gateway runs on the host that runs the server.
const EXTERNAL_HOSTNAME: &str = "localhost";
/// The hostname of the chart's own listener (not the seed's, so only its patch admits its route).
const CHART_HOSTNAME: &str = "mcp.127-0-0-1.sslip.io";
/// Cluster-scoped, so created only when absent and removed only then.
const GATEWAY_CLASS: &str = "apiary";

fn kubectl_bin() -> PathBuf {
    let cache = PathBuf::from(env::required_setting("APIARY_CACHE"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.join("k8s"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("kubectl"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().expect("kubectl in $APIARY_CACHE/k8s: run `cargo xtask cluster build`")
}

fn kubeconfig() -> String {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG must name the test cluster's kubeconfig");
    assert!(std::path::Path::new(&path).is_file(), "KUBECONFIG {path} is not a file");
    path
}

/// Runs kubectl with `args`, `stdin` piped in; panics with its stderr when it fails.
fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", "150"])
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

fn apply(docs: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
}

/// The Gateway API and Istio CRDs (`cargo xtask crds`, cached) and the registration CRD.
fn install_crds() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
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
            "crd/mcpserverregistrations.mcp.kuadrant.io",
        ],
        None,
    );
}

/// The seed's use case 1 text (the vendored copy of seed 004, up to use case 2).
fn use_case_1() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/seeds/texts");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("004_"))
        .unwrap_or_else(|| panic!("no seed 004 in {}", dir.display()));
    let text = std::fs::read_to_string(file).unwrap();
    let start = text.find("Use case 1: No auth").expect("the seed's use case 1");
    let end = text.find("Use case 2:").expect("the seed's use case 2");
    text[start..end].to_owned()
}

/// The lines of `text` from the one starting with `first` through the next one equal to
/// `last` (or `first` alone when `last` is `None`), as written.
fn block(text: &str, first: &str, last: Option<&str>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.iter().position(|l| l.starts_with(first)).unwrap_or_else(|| panic!("no `{first}` in the seed"));
    let to = match last {
        None => from,
        Some(last) => {
            from + lines[from..].iter().position(|l| l.trim_end() == last).unwrap_or_else(|| panic!("no `{last}`"))
        }
    };
    lines[from..=to].join("\n") + "\n"
}

/// Runs one of the seed's shell blocks with bash, as a reader would paste it: the cluster's
/// kubectl first on PATH, `KUBECONFIG` and `EXTERNAL_HOSTNAME` exported.
fn run_seed_block(script: &str) {
    let kubectl_dir = kubectl_bin().parent().unwrap().to_owned();
    let out = Command::new("timeout")
        .args(["--kill-after=5", "150", "bash", "-euo", "pipefail", "-c", script])
        .env("PATH", env::prepend_path(&kubectl_dir, std::env::var_os("PATH").as_deref()))
        .env("KUBECONFIG", kubeconfig())
        .env("EXTERNAL_HOSTNAME", EXTERNAL_HOSTNAME)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the seed's block failed:\n{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `probe` every 300 ms until it gives `Some`, failing after [`WAIT`] with `what`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
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

/// Deletes what the test made in the cluster when it ends, passed or failed.
struct Cleanup {
    namespaces: Vec<&'static str>,
    gateway_class: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let delete = |args: &[&str]| {
            let _ = Command::new(kubectl_bin()).arg("--kubeconfig").arg(kubeconfig()).args(args).output();
        };
        for ns in &self.namespaces {
            delete(&["delete", "namespace", ns, "--wait=false", "--ignore-not-found"]);
        }
        if self.gateway_class {
            delete(&["delete", "gatewayclass", GATEWAY_CLASS, "--wait=false", "--ignore-not-found"]);
        }
    }
}

/// A child process stopped (and reaped) when the test ends.
struct Stopping(std::process::Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kubernetes-mcp-server as the seed's Step 2 runs it (`--port 9999`), bound to loopback, with
/// the test cluster's kubeconfig, read-only; ready once `/healthz` answers.
async fn start_kubernetes_mcp_server(log: &std::path::Path) -> Stopping {
    let binary = env::required_setting("KUBERNETES_MCP_SERVER");
    assert!(std::path::Path::new(&binary).is_file(), "{binary} is missing; run `cargo xtask test-env`");
    let child = Command::new(&binary)
        .args(["--port", &SEED_PORT.to_string(), "--bind-address", "127.0.0.1", "--read-only", "--kubeconfig"])
        .arg(kubeconfig())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let server = Stopping(child);
    let health = format!("http://127.0.0.1:{SEED_PORT}/healthz");
    eventually("kubernetes-mcp-server's /healthz (is port 9999 free?)", || async {
        reqwest::get(&health).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    server
}

/// The fixture server, registered in `mcp-test` under prefix `fixture_` through the chart's
/// listener (its route's hostname is that listener's).
fn fixture_registration(port: u16) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fixture-mcp-external", "namespace": "mcp-test"},
            "spec": {"type": "ExternalName", "externalName": EXTERNAL_HOSTNAME,
                "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP", "appProtocol": "http"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "fixture-mcp", "namespace": "mcp-test"},
            "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp-gateway",
                    "namespace": "gateway-system", "sectionName": "mcp"}],
                "hostnames": [CHART_HOSTNAME],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": "fixture-mcp-external", "port": port}]}]}}),
        json!({"apiVersion": "mcp.kuadrant.io/v1alpha1", "kind": "MCPServerRegistration",
            "metadata": {"name": "fixture", "namespace": "mcp-test"},
            "spec": {"prefix": "fixture_", "targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                "name": "fixture-mcp"}}}),
    ]
}

/// Runs `cmd` to completion within [`CLIENT_LIMIT`] and parses the JSON its stdout holds.
async fn run_json(cmd: Command) -> Value {
    let described = format!("{cmd:?}");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = tokio::time::timeout(CLIENT_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{described} did not finish within {CLIENT_LIMIT:?}"))
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{described} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{described} printed no JSON ({e}): {stdout}"))
}

/// The official Python SDK client (the proxy's test script): initialize, tools/list, one call.
async fn python_sdk(url: &str, tool: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/tests/sdk_clients/py_client.py");
    let mut cmd = env::command("python3");
    cmd.arg(script).arg(url).arg(tool).arg("{}");
    run_json(cmd).await
}

/// `tools/list` by the MCP Inspector CLI (`--cli URL --transport http --method tools/list`).
/// It is run from its own `build/` directory: 1.0.3 looks for `../package.json` relative to the
/// working directory but imports it relative to itself, and fails anywhere else.
async fn inspector_tools(url: &str) -> BTreeSet<String> {
    let build = PathBuf::from(env::required_setting("APIARY_CACHE"))
        .join("npm")
        .join(format!("@modelcontextprotocol/inspector-cli@{}", env::required_setting("NPM_INSPECTOR_CLI_VERSION")))
        .join("node_modules/@modelcontextprotocol/inspector-cli/build");
    assert!(build.join("index.js").is_file(), "{} has no index.js; run `cargo xtask test-env`", build.display());
    let mut cmd = env::command("mcp-inspector-cli");
    cmd.args(["--cli", url, "--transport", "http", "--method", "tools/list"]).current_dir(build);
    let listed = run_json(cmd).await;
    listed["tools"].as_array().unwrap_or_else(|| panic!("{listed}")).iter().map(tool_name).collect()
}

fn tool_name(t: &Value) -> String {
    t["name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_use_case_1_verbatim_through_the_gateway_with_real_clients() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    let seed = use_case_1();
    let patch = block(&seed, "kubectl patch gateway mcp-gateway -n gateway-system", Some("]\""));
    let create_ns = block(&seed, "kubectl create namespace mcp-test", None);
    let apply_seed = block(&seed, "kubectl apply -n mcp-test -f - <<EOF", Some("EOF"));
    assert!(apply_seed.contains("$EXTERNAL_HOSTNAME") && patch.contains("$EXTERNAL_HOSTNAME"), "{patch}{apply_seed}");

    install_crds();
    // The seed's namespaces are fixed names: wait out a previous run's, and refuse to run
    // over someone else's.
    kubectl(&["wait", "--for=delete", "namespace/mcp-test", "namespace/gateway-system", "--timeout=120s"], None);
    let class_existed = !kubectl(&["get", "gatewayclass", "--ignore-not-found", "-o", "name"], None)
        .lines()
        .any(|l| l == format!("gatewayclass.gateway.networking.k8s.io/{GATEWAY_CLASS}"));
    let _cleanup = Cleanup { namespaces: vec!["mcp-test", "gateway-system"], gateway_class: class_existed };

    // Step 1, as the chart would: the class, the namespace and the Gateway with one listener.
    kubectl(&["create", "namespace", "gateway-system"], None);
    apply(&[
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": "apiary.dev/gateway"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "mcp-gateway", "namespace": "gateway-system"},
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [{"name": "mcp", "hostname": CHART_HOSTNAME,
                "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
    ]);

    // Step 2: the server. Step 3: the seed's blocks as written.
    let scratch = tempfile::tempdir().unwrap();
    let _server = start_kubernetes_mcp_server(&scratch.path().join("kubernetes-mcp-server.log")).await;
    run_seed_block(&patch);
    run_seed_block(&create_ns);
    run_seed_block(&apply_seed);
    let listeners = kubectl(&["get", "gateway", "mcp-gateway", "-n", "gateway-system", "-o", "json"], None);
    let listeners: Value = serde_json::from_str(&listeners).unwrap();
    assert_eq!(listeners["spec"]["listeners"][1]["hostname"], EXTERNAL_HOSTNAME, "the seed's patch: {listeners}");

    let fixture = apiary_testkit::http_fixture::start(&[]).await;
    let fixture_port: u16 =
        fixture.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
    apply(&fixture_registration(fixture_port));

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_apiary"));
    cmd.args(["gateway", "--listen", "127.0.0.1:0", "--kubeconfig", &kubeconfig(), "--gateway"])
        .arg("gateway-system/mcp-gateway");
    let gw = support::start_printing_url(cmd).await;
    let url = gw.url.clone();

    // Step 4: once both servers are served, every client sees the same prefixed list.
    let client = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    let through: BTreeSet<String> = eventually("kube_ and fixture_ tools through the gateway", || async {
        let tools: BTreeSet<String> = client.list_tools().await.ok()?.iter().map(tool_name).collect();
        (tools.contains("kube_namespaces_list") && tools.contains("fixture_echo")).then_some(tools)
    })
    .await;
    client.close().await.unwrap();
    let direct = inspector_tools(&format!("http://127.0.0.1:{SEED_PORT}/mcp")).await;
    assert!(direct.contains("namespaces_list"), "{direct:?}");
    let kube: BTreeSet<String> = through.iter().filter_map(|t| t.strip_prefix("kube_")).map(str::to_owned).collect();
    assert_eq!(kube, direct, "every server tool, each once, behind kube_");
    assert!(through.iter().all(|t| t.starts_with("kube_") || t.starts_with("fixture_")), "{through:?}");

    // (b) The MCP Inspector CLI through the gateway lists the same.
    assert_eq!(inspector_tools(&url).await, through, "the Inspector CLI through the gateway");

    // (a) The Python SDK client lists them and calls kube_namespaces_list: the cluster's namespaces.
    let py = python_sdk(&url, "kube_namespaces_list").await;
    let py_tools: BTreeSet<String> =
        py["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(py_tools, through, "the Python SDK through the gateway: {py}");
    assert_ne!(py["result"]["isError"], true, "{py}");
    let text = py["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{py}"));
    for ns in ["kube-system", "default", "mcp-test", "gateway-system"] {
        assert!(text.contains(ns), "{ns} missing from kube_namespaces_list: {text}");
    }

    // /status: both served; the seed's registration through the route the seed applied.
    let status_url = url.trim_end_matches("/mcp").to_owned() + "/status";
    let status: Value = reqwest::get(&status_url).await.unwrap().json().await.unwrap();
    let served: Vec<&str> =
        status["servers"].as_array().unwrap().iter().map(|s| s["registration"].as_str().unwrap()).collect();
    assert_eq!(served, ["mcp-test/fixture", "mcp-test/kubernetes-mcp-server"], "{status}");

    // It is the seed's listener that admits the seed's route: without it (the Gateway as the
    // chart made it) the kube_ tools go, and /status says which listener refused and why.
    let remove = r#"[{"op": "test", "path": "/spec/listeners/1/name", "value": "kubernetes-mcp"},
        {"op": "remove", "path": "/spec/listeners/1"}]"#;
    kubectl(&["patch", "gateway", "mcp-gateway", "-n", "gateway-system", "--type", "json", "-p", remove], None);
    let status = eventually("the seed's registration refused once its listener is gone", || async {
        let status: Value = reqwest::get(&status_url).await.ok()?.json().await.ok()?;
        let refused =
            status["notServed"].as_array()?.iter().find(|s| s["registration"] == "mcp-test/kubernetes-mcp-server")?;
        Some(refused.clone())
    })
    .await;
    assert_eq!(status["reason"], "NoMatchingListenerHostname", "{status}");
    assert!(status["message"].as_str().unwrap().contains(CHART_HOSTNAME), "{status}");
    let client = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    let left: BTreeSet<String> = client.list_tools().await.unwrap().iter().map(tool_name).collect();
    assert!(left.contains("fixture_echo") && !left.iter().any(|t| t.starts_with("kube_")), "{left:?}");
    client.close().await.unwrap();
}
