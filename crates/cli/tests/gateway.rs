//! `apiary gateway` against the REAL test cluster (`cargo xtask cluster up`): two fixture MCP
//! servers on this host, each behind an ExternalName Service (`localhost`, as seed 004 points at
//! kubernetes-mcp-server on the machine that runs it), an HTTPRoute attached to a test Gateway
//! and an MCPServerRegistration (prefix `kube_`, and toolPrefix `other_`). One `tools/list`
//! through the gateway shows both servers' tools, prefixed; a call reaches its owner with the
//! stripped name and the `x-mcp-*` headers (the fixture's `request_header` tool echoes them),
//! never an incoming `x-mcp-authorized`; a registration whose route attaches to another Gateway
//! is not served and `/status` says why; a registration deleted takes its tools out of the open
//! session's list without a restart. Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};

/// Bound on each wait for the cluster or the gateway to catch up.
const WAIT: Duration = Duration::from_secs(90);

fn kubectl_bin() -> PathBuf {
    let cache = match std::env::var_os("APIARY_CACHE") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/apiary"),
    };
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
        .args(["--kill-after=5", "120"])
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

/// Applies `docs` (JSON manifests) with kubectl.
fn apply(docs: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
}

/// The Gateway API CRDs (`cargo xtask crds`, cached) and the registration CRD, established.
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
            "crd/mcpserverregistrations.mcp.kuadrant.io",
        ],
        None,
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

/// Deletes the test's namespaces when the test ends, passed or failed.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new(kubectl_bin())
                .arg("--kubeconfig")
                .arg(kubeconfig())
                .args(["delete", "namespace", ns, "--wait=false", "--ignore-not-found"])
                .output();
        }
    }
}

fn port_of(url: &str) -> u16 {
    url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap()
}

/// A registered server: an ExternalName Service to `localhost:port`, a route to it attached to
/// `gateway` (`ns/name`), and a registration with `prefix_field: prefix`.
fn server(ns: &str, route: &str, port: u16, gateway: (&str, &str), reg: &str, prefix: (&str, &str)) -> Vec<Value> {
    let svc = format!("{route}-external");
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
            "spec": {"type": "ExternalName", "externalName": "localhost",
                "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP", "appProtocol": "http"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": route, "namespace": ns},
            "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.1,
                    "namespace": gateway.0}],
                "hostnames": ["localhost"],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": svc, "port": port}]}]}}),
        json!({"apiVersion": "mcp.kuadrant.io/v1alpha1", "kind": "MCPServerRegistration",
            "metadata": {"name": reg, "namespace": ns},
            "spec": {prefix.0: prefix.1, "targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route}}}),
    ]
}

fn names(tools: &[Value]) -> Vec<String> {
    tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn header(client: &McpClient, tool: &str, name: &str) -> String {
    let result = client.call_tool(tool, json!({"name": name})).await.unwrap();
    result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{result}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_registered_servers_prefixed_routed_and_followed_live() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    install_crds();
    let pid = std::process::id();
    let (ns, gw_ns) = (format!("apiary-gw-{pid}"), format!("apiary-gwsys-{pid}"));
    let _cleanup = Cleanup(vec![ns.clone(), gw_ns.clone()]);
    kubectl(&["create", "namespace", &ns], None);
    kubectl(&["create", "namespace", &gw_ns], None);
    // The Gateway as the chart would make it, and another one.
    let gateway = |name: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": gw_ns},
            "spec": {"gatewayClassName": "apiary", "listeners": [{"name": "mcp", "port": 8080, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    };
    apply(&[gateway("mcp-gateway"), gateway("elsewhere")]);

    let kube = apiary_testkit::http_fixture::start(&[]).await;
    let other = apiary_testkit::http_fixture::start(&[]).await;
    let mut docs = server(
        &ns,
        "kubernetes-mcp",
        port_of(&kube.url),
        (&gw_ns, "mcp-gateway"),
        "kubernetes-mcp-server",
        ("prefix", "kube_"),
    );
    docs.extend(server(
        &ns,
        "other-mcp",
        port_of(&other.url),
        (&gw_ns, "mcp-gateway"),
        "other",
        ("toolPrefix", "other_"),
    ));
    docs.extend(server(&ns, "foreign", port_of(&other.url), (&gw_ns, "elsewhere"), "foreign", ("prefix", "foreign_")));
    apply(&docs);

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_apiary"));
    cmd.args(["gateway", "--listen", "127.0.0.1:0", "--kubeconfig", &kubeconfig(), "--gateway"])
        .arg(format!("{gw_ns}/mcp-gateway"));
    let gw = support::start_printing_url(cmd).await;
    let url = gw.url.clone();
    assert!(url.ends_with("/mcp"), "{url}");

    // One session, held open across the registration's removal. An incoming wristband header
    // rides along on every request to the gateway.
    let options =
        ConnectOptions { headers: vec![("x-mcp-authorized".into(), "true".into())], ..ConnectOptions::default() };
    let client = McpClient::connect(&url, options).await.unwrap();
    let listed = eventually("both servers' tools through the gateway", || async {
        let tools = names(&client.list_tools().await.ok()?);
        (tools.contains(&"kube_echo".to_owned()) && tools.contains(&"other_echo".to_owned())).then_some(tools)
    })
    .await;
    assert!(listed.iter().all(|n| n.starts_with("kube_") || n.starts_with("other_")), "{listed:?}");
    assert!(listed.contains(&"kube_request_header".to_owned()), "{listed:?}");

    let echoed = client.call_tool("kube_echo", json!({"text": "through the gateway"})).await.unwrap();
    assert_eq!(echoed["content"][0]["text"], "through the gateway", "{echoed}");
    assert_eq!(header(&client, "kube_request_header", "x-mcp-servername").await, format!("{ns}/kubernetes-mcp"));
    assert_eq!(header(&client, "kube_request_header", "x-mcp-toolname").await, "request_header");
    assert_eq!(header(&client, "kube_request_header", "x-mcp-method").await, "tools/call");
    assert_eq!(header(&client, "other_request_header", "x-mcp-servername").await, format!("{ns}/other-mcp"));
    assert_eq!(header(&client, "kube_request_header", "x-mcp-authorized").await, "no header x-mcp-authorized");

    // /status: two served, the foreign route's registration not, with why.
    let status_url = url.trim_end_matches("/mcp").to_owned() + "/status";
    let status: Value = reqwest::get(&status_url).await.unwrap().json().await.unwrap();
    let served: Vec<&str> =
        status["servers"].as_array().unwrap().iter().map(|s| s["registration"].as_str().unwrap()).collect();
    assert_eq!(served, [format!("{ns}/kubernetes-mcp-server"), format!("{ns}/other")], "{status}");
    let skipped = status["notServed"].as_array().unwrap();
    let foreign =
        skipped.iter().find(|s| s["registration"] == format!("{ns}/foreign")).unwrap_or_else(|| panic!("{status}"));
    assert_eq!(foreign["reason"], "NotAttached", "{status}");

    // The bare POST of names.md's `/mcp` row: JSON back, no session.
    let bare = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)
        .send()
        .await
        .unwrap();
    assert!(bare.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let bare: Value = bare.json().await.unwrap();
    assert!(names(bare["result"]["tools"].as_array().unwrap()).contains(&"other_echo".to_owned()), "{bare}");

    // The other registration goes: the open session's list follows, without a restart.
    kubectl(&["delete", "mcpserverregistrations.mcp.kuadrant.io", "other", "-n", &ns], None);
    eventually("other_ tools gone from the open session", || async {
        let tools = names(&client.list_tools().await.ok()?);
        (tools.contains(&"kube_echo".to_owned()) && !tools.iter().any(|n| n.starts_with("other_"))).then_some(())
    })
    .await;
    assert!(client.call_tool("other_echo", json!({"text": "x"})).await.is_err(), "a removed tool is not routed");
    // And it comes back when registered again.
    apply(&docs[5..6]);
    eventually("other_ tools back", || async {
        names(&client.list_tools().await.ok()?).contains(&"other_echo".to_owned()).then_some(())
    })
    .await;
    client.close().await.unwrap();
}
