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
use serde_json::Value;
use support::cluster::{Cleanup, apply, eventually, install_crds, kubeconfig, kubectl, kubectl_bin};
use support::gateway::{GATEWAY_CLASS, Gateway, Registration, gateway, gateway_class, gateway_class_absent, port_of};

/// Bound on one client run (an interpreter or Node starting, three requests).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// The seed runs kubernetes-mcp-server on this port and its Service points there.
const SEED_PORT: u16 = 9999;
/// `EXTERNAL_HOSTNAME`: the gateway runs on the host that runs the server.
const EXTERNAL_HOSTNAME: &str = "localhost";
/// The hostname of the chart's own listener (not the seed's, so only its patch admits its route).
const CHART_HOSTNAME: &str = "mcp.127-0-0-1.sslip.io";

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
    Registration {
        namespace: "mcp-test",
        name: "fixture",
        route: "fixture-mcp",
        port,
        gateway: ("gateway-system", "mcp-gateway"),
        section: Some("mcp"),
        hostname: CHART_HOSTNAME,
        prefix: ("prefix", "fixture_"),
    }
    .docs()
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
    let mut cleanup = Cleanup::namespaces(&["mcp-test", "gateway-system"]);
    if gateway_class_absent() {
        cleanup.cluster_scoped.push(("gatewayclass", GATEWAY_CLASS.to_owned()));
    }

    // Step 1, as the chart would: the class, the namespace and the Gateway with one listener.
    kubectl(&["create", "namespace", "gateway-system"], None);
    apply(&[gateway_class(), gateway("gateway-system", "mcp-gateway", Some(CHART_HOSTNAME))]);

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
    apply(&fixture_registration(port_of(&fixture.url)));

    let gw = Gateway::start("gateway-system/mcp-gateway").await;
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
    let status = gw.status().await.unwrap();
    let served: Vec<&str> =
        status["servers"].as_array().unwrap().iter().map(|s| s["registration"].as_str().unwrap()).collect();
    assert_eq!(served, ["mcp-test/fixture", "mcp-test/kubernetes-mcp-server"], "{status}");

    // It is the seed's listener that admits the seed's route: without it (the Gateway as the
    // chart made it) the kube_ tools go, and /status says which listener refused and why.
    let remove = r#"[{"op": "test", "path": "/spec/listeners/1/name", "value": "kubernetes-mcp"},
        {"op": "remove", "path": "/spec/listeners/1"}]"#;
    kubectl(&["patch", "gateway", "mcp-gateway", "-n", "gateway-system", "--type", "json", "-p", remove], None);
    let status = eventually("the seed's registration refused once its listener is gone", || async {
        let status = gw.status().await?;
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
