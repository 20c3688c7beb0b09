//! Seed 004 (the MCP gateway) as the gateway tests run it on the REAL test cluster: the seed's
//! shell blocks cut from the vendored seed text and run by bash, kubernetes-mcp-server run as
//! the seed's Step 2 runs it, the chart's GatewayClass and Gateway (Step 1), and the official
//! clients (the Python SDK, the MCP Inspector CLI) run against an MCP URL.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use apiary_testkit::env;
use serde_json::Value;

use super::cluster::{Cleanup, apply, eventually, kubeconfig, kubectl, kubectl_bin};
use super::gateway::{GATEWAY_CLASS, Registration, gateway, gateway_class, gateway_class_absent};

/// Bound on one client run (an interpreter or Node starting, three requests).
pub const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// The seed runs kubernetes-mcp-server on this port and its Service points there.
pub const SEED_PORT: u16 = 9999;
/// `EXTERNAL_HOSTNAME`: the gateway runs on the host that runs the server.
pub const EXTERNAL_HOSTNAME: &str = "localhost";
/// The hostname of the chart's own listener (not the seed's, so only its patch admits its route).
pub const CHART_HOSTNAME: &str = "mcp.127-0-0-1.sslip.io";

/// The seed's text from the line holding `from` up to the one holding `to` (the vendored copy
/// of seed 004), e.g. `"Use case 1: No auth"` to `"Use case 2:"`.
pub fn seed_section(from: &str, to: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/seeds/texts");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("004_"))
        .unwrap_or_else(|| panic!("no seed 004 in {}", dir.display()));
    let text = std::fs::read_to_string(file).unwrap();
    let start = text.find(from).unwrap_or_else(|| panic!("no `{from}` in the seed"));
    let end = start + text[start..].find(to).unwrap_or_else(|| panic!("no `{to}` after `{from}` in the seed"));
    text[start..end].to_owned()
}

/// The lines of `text` from the one starting with `first` through the next one equal to
/// `last` (or `first` alone when `last` is `None`), as written.
pub fn block(text: &str, first: &str, last: Option<&str>) -> String {
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
pub fn run_seed_block(script: &str) {
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

/// Step 1 of the seed as the chart makes it, on the seed's fixed names: waits out a previous
/// run's `namespaces` (which must include `gateway-system`), creates `gateway-system`, the
/// GatewayClass when absent and Gateway `mcp-gateway` with one listener for [`CHART_HOSTNAME`].
/// The [`Cleanup`] removes the `namespaces`, and the class if this made it.
pub fn chart_gateway(namespaces: &[&str]) -> Cleanup {
    let waited: Vec<String> = namespaces.iter().map(|ns| format!("namespace/{ns}")).collect();
    let waited: Vec<&str> = waited.iter().map(String::as_str).collect();
    kubectl(&[&["wait", "--for=delete"][..], &waited, &["--timeout=120s"]].concat(), None);
    let mut cleanup = Cleanup::namespaces(namespaces);
    if gateway_class_absent() {
        cleanup.cluster_scoped.push(("gatewayclass", GATEWAY_CLASS.to_owned()));
    }
    kubectl(&["create", "namespace", "gateway-system"], None);
    apply(&[gateway_class(), gateway("gateway-system", "mcp-gateway", Some(CHART_HOSTNAME))]);
    cleanup
}

/// A child process stopped (and reaped) when the test ends.
pub struct Stopping(std::process::Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kubernetes-mcp-server as the seed's Step 2 runs it (`--port 9999`), bound to loopback, with
/// the test cluster's kubeconfig, read-only; ready once `/healthz` answers.
pub async fn start_kubernetes_mcp_server(log: &std::path::Path) -> Stopping {
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

/// Runs `cmd` to completion within [`CLIENT_LIMIT`] and parses the JSON its stdout holds.
pub async fn run_json(cmd: Command) -> Value {
    let described = describe(&cmd);
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

/// `cmd`'s program and arguments for a failure message; never its environment (which may hold
/// a bearer token), and an `Authorization:` header argument without its value.
fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        words.push(if arg.starts_with("Authorization:") { "Authorization: <hidden>".to_owned() } else { arg.into() });
    }
    format!("{words:?}")
}

/// The official Python SDK client (the proxy's test script), with `bearer` as its token when
/// given: initialize, tools/list, one call.
pub async fn python_sdk(url: &str, tool: &str, bearer: Option<&str>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/tests/sdk_clients/py_client.py");
    let mut cmd = env::command("python3");
    cmd.arg(script).arg(url).arg(tool).arg("{}");
    if let Some(token) = bearer {
        cmd.env("MCP_BEARER_TOKEN", token);
    }
    run_json(cmd).await
}

/// `tools/list` by the MCP Inspector CLI (`--cli URL --transport http --method tools/list`).
/// It is run from its own `build/` directory: 1.0.3 looks for `../package.json` relative to the
/// working directory but imports it relative to itself, and fails anywhere else. With
/// `bearer`, it sends `--header "Authorization: Bearer …"`.
pub async fn inspector_tools(url: &str, bearer: Option<&str>) -> BTreeSet<String> {
    let build = PathBuf::from(env::required_setting("APIARY_CACHE"))
        .join("npm")
        .join(format!("@modelcontextprotocol/inspector-cli@{}", env::required_setting("NPM_INSPECTOR_CLI_VERSION")))
        .join("node_modules/@modelcontextprotocol/inspector-cli/build");
    assert!(build.join("index.js").is_file(), "{} has no index.js; run `cargo xtask test-env`", build.display());
    let mut cmd = env::command("mcp-inspector-cli");
    cmd.args(["--cli", url, "--transport", "http", "--method", "tools/list"]).current_dir(build);
    if let Some(token) = bearer {
        cmd.arg("--header").arg(format!("Authorization: Bearer {token}"));
    }
    let listed = run_json(cmd).await;
    listed["tools"].as_array().unwrap_or_else(|| panic!("{listed}")).iter().map(tool_name).collect()
}

pub fn tool_name(t: &Value) -> String {
    t["name"].as_str().unwrap().to_owned()
}

/// The fixture server on `port`, registered in `mcp-test` under prefix `fixture_` through the
/// chart's listener (its route's hostname is that listener's), with no AuthPolicy.
pub fn fixture_registration(port: u16) -> Vec<Value> {
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
