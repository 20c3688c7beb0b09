//! Use case 2 of seed 004 ("OIDC auth") verbatim through `apiary gateway` on the REAL test
//! cluster, whose apiserver trusts the pinned Keycloak `https://127.0.0.1:8443/realms/mcp`
//! (docs/cluster-oidc.md). First use case 1's state as its test makes it (the Gateway, the
//! seed's listener patch, namespace `mcp-test`, Service / HTTPRoute / MCPServerRegistration, a
//! fixture server under `fixture_`), with the real kubernetes-mcp-server in passthrough mode
//! behind a recording TCP forwarder on the seed's port 9999. Then use case 2's own blocks, cut
//! from the vendored seed text and run by bash with only its placeholders replaced (the issuer's
//! origin, the gateway's URL, the `mcp-gateway` client's `Basic` credential): Step 1's
//! `kubectl create secret`, Step 2's AuthPolicy, Step 3's ClusterRoleBinding. `apiary gateway
//! --issuer-ca` trusts the cluster CA that signed Keycloak's certificate.
//!
//! Checked: user `mcp` gets a token; with it the Python SDK client and the MCP Inspector CLI
//! list exactly the `kube_` tools of its roles plus the fixture's; `kube_namespaces_list`
//! answers with the cluster's namespaces (the exchanged token reached the apiserver); a tool
//! outside the roles gets the seed's 403; no token and a garbage token get the seed's 401; the
//! forwarder saw only exchanged tokens (audience `mcp-test/kubernetes-mcp`), never the caller's;
//! the AuthPolicy is `Accepted` and `Enforced`.
//! Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`; then a missing part fails it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_testkit::env;
use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, PINNED_ISSUER, USER_CLIENT, decode_claims,
};
use apiary_testkit::kube_oidc::{ClusterOidc, WhoAmI};
use apiary_testkit::kubernetes_mcp::{KubernetesMcpServer, PassthroughOptions};
use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on each wait for the cluster, the server or the gateway to catch up.
const WAIT: Duration = Duration::from_secs(90);
/// Bound on one client run (an interpreter or Node starting, three requests).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// Bound on one kubectl or seed block.
const KUBECTL_LIMIT: &str = "150";
/// The seed's Service points at this port: the recording forwarder listens there.
const SEED_PORT: u16 = 9999;
/// `EXTERNAL_HOSTNAME`: the gateway runs on the host that runs the server.
const EXTERNAL_HOSTNAME: &str = "localhost";
/// The hostname of the chart's own listener (not the seed's).
const CHART_HOSTNAME: &str = "mcp.127-0-0-1.sslip.io";
/// Cluster-scoped, so created only when absent and removed only then.
const GATEWAY_CLASS: &str = "apiary";
/// The seed's placeholders.
const SEED_KEYCLOAK: &str = "https://keycloak.example.com";
const SEED_MCP: &str = "https://mcp.example.com";
const SEED_BASIC: &str = "<base64-encoded-client-id:client-secret>";
/// The binding the seed's Step 3 creates.
const BINDING: &str = "oidc-mcp-cluster-admin";
/// Most bytes the forwarder keeps of what the gateway sent the server.
const RECORD_LIMIT: usize = 32 << 20;

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
    assert!(Path::new(&path).is_file(), "KUBECONFIG {path} is not a file");
    path
}

/// Runs kubectl with `args`, `stdin` piped in; panics with its stderr when it fails.
fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", KUBECTL_LIMIT])
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

/// The Gateway API, Istio and Kuadrant CRDs (`cargo xtask crds`, cached) and the registration CRD.
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
            "crd/mcpserverregistrations.mcp.kuadrant.io",
            "crd/authpolicies.kuadrant.io",
        ],
        None,
    );
}

/// The vendored seed 004's text from the line `from` up to (not including) `to`.
fn seed_part(from: &str, to: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/seeds/texts");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("004_"))
        .unwrap_or_else(|| panic!("no seed 004 in {}", dir.display()));
    let text = std::fs::read_to_string(file).unwrap();
    let start = text.find(from).unwrap_or_else(|| panic!("no `{from}` in the seed"));
    let end = start + text[start..].find(to).unwrap_or_else(|| panic!("no `{to}` after `{from}`"));
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

/// `text` with `placeholder` replaced, which must be there.
fn put(text: &str, placeholder: &str, value: &str) -> String {
    assert!(text.contains(placeholder), "no {placeholder} in:\n{text}");
    text.replace(placeholder, value)
}

/// Runs one of the seed's shell blocks with bash, as a reader would paste it: the cluster's
/// kubectl first on PATH, `KUBECONFIG` and `EXTERNAL_HOSTNAME` exported.
fn run_seed_block(script: &str) {
    let kubectl_dir = kubectl_bin().parent().unwrap().to_owned();
    let out = Command::new("timeout")
        .args(["--kill-after=5", KUBECTL_LIMIT, "bash", "-euo", "pipefail", "-c", script])
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

/// Deletes what the test made in the cluster when it ends, passed or failed. Declared after the
/// Keycloak, so it is dropped (the seed's binding deleted) before the Keycloak lock is released:
/// the other holder of that binding name (k8s_oidc.rs) also holds the lock while it has it.
struct Cleanup {
    namespaces: Vec<&'static str>,
    gateway_class: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let delete = |args: &[&str]| {
            let _ = Command::new(kubectl_bin()).arg("--kubeconfig").arg(kubeconfig()).args(args).output();
        };
        delete(&["delete", "clusterrolebinding", BINDING, "--ignore-not-found"]);
        for ns in &self.namespaces {
            delete(&["delete", "namespace", ns, "--wait=false", "--ignore-not-found"]);
        }
        if self.gateway_class {
            delete(&["delete", "gatewayclass", GATEWAY_CLASS, "--wait=false", "--ignore-not-found"]);
        }
    }
}

/// A TCP forwarder on 127.0.0.1:[`SEED_PORT`] in front of kubernetes-mcp-server that keeps
/// (up to [`RECORD_LIMIT`]) every byte sent towards the server: proof of which `Authorization`
/// reached it. Stops with the test's runtime; the listener on drop.
struct Recorder {
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(upstream: u16) -> Recorder {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", SEED_PORT))
            .await
            .unwrap_or_else(|e| panic!("port {SEED_PORT} (the seed's) is taken: {e}"));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = in_read.read(&mut buf).await {
                        if n == 0 || out_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let mut kept = record.lock().unwrap();
                        let room = RECORD_LIMIT.saturating_sub(kept.len()).min(n);
                        kept.extend_from_slice(&buf[..room]);
                    }
                    let _ = out_write.shutdown().await;
                    let _ = back.await;
                });
            }
        });
        Recorder { sent, task }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    /// The `Authorization` header values of every request the server got.
    fn authorizations(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("authorization").then(|| value.trim().to_owned())
            })
            .collect()
    }
}

/// Runs `cmd` to completion within [`CLIENT_LIMIT`] and parses the JSON its stdout holds.
async fn run_json(cmd: Command) -> Value {
    let described = format!("{:?}", cmd.get_program());
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

/// The official Python SDK client (the proxy's test script) with `token` as its bearer:
/// initialize, tools/list, one call.
async fn python_sdk(url: &str, token: &str, tool: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/tests/sdk_clients/py_client.py");
    let mut cmd = env::command("python3");
    cmd.arg(script).arg(url).arg(tool).arg("{}").env("MCP_BEARER_TOKEN", token);
    run_json(cmd).await
}

/// `tools/list` by the MCP Inspector CLI with `--header "Authorization: Bearer …"`, run from
/// its own `build/` directory (see gateway_seed004.rs).
async fn inspector_tools(url: &str, token: &str) -> BTreeSet<String> {
    let build = PathBuf::from(env::required_setting("APIARY_CACHE"))
        .join("npm")
        .join(format!("@modelcontextprotocol/inspector-cli@{}", env::required_setting("NPM_INSPECTOR_CLI_VERSION")))
        .join("node_modules/@modelcontextprotocol/inspector-cli/build");
    assert!(build.join("index.js").is_file(), "{} has no index.js; run `cargo xtask test-env`", build.display());
    let mut cmd = env::command("mcp-inspector-cli");
    cmd.args(["--cli", url, "--transport", "http", "--method", "tools/list", "--header"])
        .arg(format!("Authorization: Bearer {token}"))
        .current_dir(build);
    let listed = run_json(cmd).await;
    listed["tools"].as_array().unwrap_or_else(|| panic!("{listed}")).iter().map(tool_name).collect()
}

fn tool_name(t: &Value) -> String {
    t["name"].as_str().unwrap().to_owned()
}

async fn list(url: &str, token: Option<&str>) -> BTreeSet<String> {
    let headers = token.map(|t| vec![("Authorization".to_owned(), format!("Bearer {t}"))]).unwrap_or_default();
    let client = McpClient::connect(url, ConnectOptions { headers, ..ConnectOptions::default() }).await.unwrap();
    let tools = client.list_tools().await.unwrap().iter().map(tool_name).collect();
    client.close().await.unwrap();
    tools
}

/// A plain HTTP `tools/call` POST, for the refusals' status, headers and bodies.
async fn raw_call(url: &str, token: Option<&str>, tool: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

/// The fixture server, registered in `mcp-test` under prefix `fixture_` through the chart's
/// listener, with no AuthPolicy.
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

/// `apiary gateway` with its log in `log`; the URL it prints. Killed on drop.
async fn start_gateway(ca: &Path, log: &Path) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_apiary"));
    cmd.args(["gateway", "--listen", "127.0.0.1:0", "--kubeconfig", &kubeconfig()])
        .args(["--gateway", "gateway-system/mcp-gateway", "--issuer-ca"])
        .arg(ca)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the gateway printed no URL; its log: {}", log.display()))
        .unwrap()
        .unwrap_or_else(|| panic!("the gateway exited: {}", std::fs::read_to_string(log).unwrap_or_default()));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

async fn own_token(keycloak: &Keycloak, user: &str) -> String {
    keycloak.password_token(USER_CLIENT, user, user, "openid").await.unwrap().access_token
}

/// The roles of `user` on the server, as an exchanged token (the one the gateway makes) says.
async fn exchanged_roles(keycloak: &Keycloak, own: &str) -> (String, BTreeSet<String>) {
    let scoped = keycloak
        .exchange(GATEWAY_CLIENT, GATEWAY_SECRET, own, BACKEND_AUDIENCE, "openid profile groups")
        .await
        .unwrap()
        .access_token;
    let claims = decode_claims(&scoped).unwrap();
    let roles = claims["resource_access"][BACKEND_AUDIENCE]["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles on {BACKEND_AUDIENCE}: {claims}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    (scoped, roles)
}

/// Standard base64 with padding (what `base64` the command prints), for the seed's
/// `<base64-encoded-client-id:client-secret>`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn condition<'a>(policy: &'a Value, kind: &str) -> &'a Value {
    policy["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition: {}", policy["status"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_use_case_2_verbatim_through_the_gateway_with_the_clusters_keycloak() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    // The seed's blocks. Use case 1's as its test cuts them.
    let uc1 = seed_part("Use case 1: No auth", "Use case 2:");
    let patch = block(&uc1, "kubectl patch gateway mcp-gateway -n gateway-system", Some("]\""));
    let create_ns = block(&uc1, "kubectl create namespace mcp-test", None);
    let apply_uc1 = block(&uc1, "kubectl apply -n mcp-test -f - <<EOF", Some("EOF"));
    let step1 = seed_part("Step 1: Enable auth for tool/list", "Step 2: Create an AuthPolicy");
    let secret = block(
        &step1,
        "kubectl create secret generic token-exchange -n mcp-test",
        Some("  --from-literal=oauth-client-basic-auth=\"Basic <base64-encoded-client-id:client-secret>\""),
    );
    let step2 = seed_part("Step 2: Create an AuthPolicy", "Step 3: Authorize the mcp Keycloak user");
    let policy = block(&step2, "kubectl apply -f -<<EOF", Some("EOF"));
    let step3 = seed_part("Step 3: Authorize the mcp Keycloak user", "Step 4: Try the MCP server");
    let binding = block(&step3, "kubectl apply -f -<<EOF", Some("EOF"));

    // The pinned Keycloak the apiserver trusts (one at a time on the machine).
    let cluster = ClusterOidc::from_env().unwrap();
    assert_eq!(cluster.issuer, PINNED_ISSUER);
    let keycloak = cluster.start_keycloak().await.unwrap();
    let issuer_origin = PINNED_ISSUER.trim_end_matches("/realms/mcp");

    install_crds();
    // Fixed names: wait out a previous run's namespaces, refuse to run over someone else's.
    kubectl(&["wait", "--for=delete", "namespace/mcp-test", "namespace/gateway-system", "--timeout=120s"], None);
    let class_existed = !kubectl(&["get", "gatewayclass", "--ignore-not-found", "-o", "name"], None)
        .lines()
        .any(|l| l == format!("gatewayclass.gateway.networking.k8s.io/{GATEWAY_CLASS}"));
    let _cleanup = Cleanup { namespaces: vec!["mcp-test", "gateway-system"], gateway_class: class_existed };

    // Use case 1's state: the Gateway as the chart makes it, the server, the seed's blocks.
    kubectl(&["create", "namespace", "gateway-system"], None);
    apply(&[
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": "apiary.dev/gateway"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "mcp-gateway", "namespace": "gateway-system"},
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [{"name": "mcp", "hostname": CHART_HOSTNAME,
                "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
    ]);
    let server = KubernetesMcpServer::start_passthrough(&cluster, &PassthroughOptions::default()).await.unwrap();
    let recorder = Recorder::start(server.port()).await;
    run_seed_block(&patch);
    run_seed_block(&create_ns);
    run_seed_block(&apply_uc1);
    let fixture = apiary_testkit::http_fixture::start(&[]).await;
    let fixture_port: u16 =
        fixture.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
    apply(&fixture_registration(fixture_port));

    let scratch = tempfile::tempdir().unwrap();
    let gateway_log = scratch.path().join("gateway.log");
    let (_gateway, url) = start_gateway(&cluster.keycloak_tls.ca, &gateway_log).await;
    let origin = url.trim_end_matches("/mcp").to_owned();
    let status_url = format!("{origin}/status");
    // Use case 1 works: both servers served without auth.
    eventually("kube_ and fixture_ tools through the gateway", || async {
        let tools = list(&url, None).await;
        (tools.contains("kube_namespaces_list") && tools.contains("fixture_echo")).then_some(())
    })
    .await;

    // Use case 2, Steps 1–3, as written but for the placeholders.
    let basic = base64(format!("{GATEWAY_CLIENT}:{GATEWAY_SECRET}").as_bytes());
    run_seed_block(&put(&secret, SEED_BASIC, &basic));
    let policy = put(&put(&policy, SEED_KEYCLOAK, issuer_origin), SEED_MCP, &origin);
    run_seed_block(&policy);
    run_seed_block(&put(&binding, SEED_KEYCLOAK, issuer_origin));

    // The route's policy is enforced, as /status and the policy's conditions say.
    eventually("the AuthPolicy enforced at /status", || async {
        let status: Value = reqwest::get(&status_url).await.ok()?.json().await.ok()?;
        let kube = status["servers"].as_array()?.iter().find(|s| s["route"] == "mcp-test/kubernetes-mcp")?.clone();
        (kube["authPolicy"]["state"] == "enforced").then_some(())
    })
    .await;
    let written = eventually("the AuthPolicy's Accepted and Enforced conditions", || async {
        let text = kubectl(&["get", "authpolicy", "kubernetes-mcp-auth-policy", "-n", "mcp-test", "-o", "json"], None);
        let p: Value = serde_json::from_str(&text).unwrap();
        let conditions = p["status"]["conditions"].as_array()?;
        conditions.iter().any(|c| c["type"] == "Enforced" && c["status"] == "True").then_some(p)
    })
    .await;
    for kind in ["Accepted", "Enforced"] {
        assert_eq!(condition(&written, kind)["status"], "True", "{kind}: {}", written["status"]);
    }

    // User mcp gets a token; its roles are those an exchanged token carries.
    let own = own_token(&keycloak, "mcp").await;
    assert_eq!(decode_claims(&own).unwrap()["preferred_username"], "mcp");
    let (scoped, roles) = exchanged_roles(&keycloak, &own).await;
    // The apiserver's authenticator may still be starting (it retries Keycloak every ~10 s).
    let who = eventually("the apiserver to accept an exchanged token", || async {
        match cluster.whoami(&scoped).await.unwrap() {
            WhoAmI::User { username, .. } => Some(username),
            WhoAmI::Unauthorized => None,
        }
    })
    .await;
    assert_eq!(who, cluster.user("mcp"), "the seed's Step 3 user");

    let direct = list(&server.url(), None).await;
    let fixture_tools: BTreeSet<String> =
        list(&fixture.url, None).await.iter().map(|t| format!("fixture_{t}")).collect();
    let expected: BTreeSet<String> =
        direct.intersection(&roles).map(|t| format!("kube_{t}")).chain(fixture_tools.iter().cloned()).collect();
    assert!(expected.contains("kube_namespaces_list") && expected.contains("fixture_echo"), "{expected:?}");

    // Without a token the route lists nothing: only the fixture's tools.
    assert_eq!(list(&url, None).await, fixture_tools, "tools/list without a token");

    // The Python SDK client: exactly the tools of mcp's roles, and kube_namespaces_list answers
    // with the cluster's namespaces (the exchanged token reached the apiserver).
    let py = python_sdk(&url, &own, "kube_namespaces_list").await;
    let py_tools: BTreeSet<String> =
        py["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(py_tools, expected, "the Python SDK through the gateway: {py}");
    assert_ne!(py["result"]["isError"], true, "{py}");
    let text = py["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{py}"));
    for ns in ["kube-system", "default", "mcp-test", "gateway-system"] {
        assert!(text.contains(ns), "{ns} missing from kube_namespaces_list: {text}");
    }

    // The Inspector CLI with the bearer header lists the same.
    assert_eq!(inspector_tools(&url, &own).await, expected, "the Inspector CLI through the gateway");

    // A served kube_ tool outside the roles: the seed's 403 body. For mcp (when the server has
    // one it lacks) and for mcp-limited (whose roles are namespaces_list and pods_list).
    let forbidden = json!({"error": "Forbidden",
        "message": "MCP Tool Access denied: Insufficient permissions for this tool."});
    let limited = own_token(&keycloak, "mcp-limited").await;
    let (_, limited_roles) = exchanged_roles(&keycloak, &limited).await;
    let mut refusals: Vec<(String, String)> = Vec::new();
    if let Some(outside) = direct.difference(&roles).next() {
        refusals.push((own.clone(), format!("kube_{outside}")));
    }
    let outside_limited = direct.difference(&limited_roles).find(|t| roles.contains(*t)).unwrap();
    refusals.push((limited.clone(), format!("kube_{outside_limited}")));
    eprintln!(
        "expected through the gateway for mcp: {expected:?}; refused: {:?}",
        refusals.iter().map(|r| &r.1).collect::<Vec<_>>()
    );
    for (token, tool) in &refusals {
        let answer = raw_call(&url, Some(token), tool).await;
        assert_eq!(answer.status(), 403, "{tool}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body, forbidden, "{tool}");
    }
    assert!(!list(&url, Some(&limited)).await.contains(&format!("kube_{outside_limited}")));

    // No token, a garbage token: the seed's 401, its WWW-Authenticate naming this gateway.
    let unauthenticated =
        json!({"error": "Unauthorized", "message": "MCP Tool Access denied: Authentication required."});
    let www = format!("Bearer resource_metadata={origin}/.well-known/oauth-protected-resource/mcp");
    for token in [None, Some("garbage.not-a.jwt")] {
        let answer = raw_call(&url, token, "kube_namespaces_list").await;
        assert_eq!(answer.status(), 401, "{token:?}");
        assert_eq!(answer.headers()["www-authenticate"], www.as_str(), "{token:?}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body, unauthenticated, "{token:?}");
    }

    // What reached kubernetes-mcp-server: never a caller's own token; the call carried an
    // exchanged one for the server's audience, of user mcp, made by mcp-gateway.
    let seen = recorder.text();
    assert!(seen.contains("namespaces_list"), "the forwarder saw the call");
    for caller in [&own, &limited] {
        assert!(!seen.contains(caller.as_str()), "a caller's own token reached kubernetes-mcp-server");
    }
    let bearers: Vec<String> = recorder
        .authorizations()
        .iter()
        .map(|v| v.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer: {v}")).to_owned())
        .collect();
    assert!(!bearers.is_empty(), "no Authorization reached the server");
    eprintln!("{} Authorization headers reached kubernetes-mcp-server, all exchanged", bearers.len());
    for bearer in &bearers {
        let claims = decode_claims(bearer).unwrap();
        assert_eq!(claims["aud"], BACKEND_AUDIENCE, "{claims}");
        assert_eq!(claims["azp"], GATEWAY_CLIENT, "{claims}");
        assert_eq!(claims["iss"], PINNED_ISSUER, "{claims}");
        // The very token the server passed on is the seed's user to the apiserver.
        match cluster.whoami(bearer).await.unwrap() {
            WhoAmI::User { username, .. } => assert_eq!(username, cluster.user("mcp")),
            WhoAmI::Unauthorized => panic!("the apiserver refused the token the gateway injected: {claims}"),
        }
    }
    drop(recorder);
    drop(server);
}

#[test]
fn base64_is_the_standard_padded_alphabet() {
    assert_eq!(base64(b"mcp-gateway:mcp-gateway-test-secret"), "bWNwLWdhdGV3YXk6bWNwLWdhdGV3YXktdGVzdC1zZWNyZXQ=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b""), "");
}
