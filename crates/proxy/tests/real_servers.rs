//! End to end: the proxy serving REAL MCP servers (npm `server-everything`, PyPI
//! `mcp-server-time`, the fixture server over HTTP) to REAL clients (the official Python and
//! TypeScript SDKs, and Apiary's own `McpClient`), with children started by the runtime's
//! `ProcessLauncher` exactly as `apiary run` starts them.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::sdk::{apiary_client, python_client, ts_client};

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use apiary_config::{RunConfig, Source, Transport};
use apiary_proxy::ProxyHandle;
use apiary_runtime::process::ProcessLauncher;
use apiary_testkit::conformance::{EXPECTED_2025_11_25, run_server_suite};
use apiary_testkit::env;
use serde_json::{Value, json};

/// Bounds starting a proxy and shutting it down.
const PROXY_LIMIT: Duration = Duration::from_secs(60);

/// A running proxy that, if the test panics before [`Running::stop`], still kills every
/// child process group it knows of (the launcher puts each child in a group of its own, so
/// npx's and uvx's grandchildren go too).
struct Running {
    proxy: Option<ProxyHandle>,
}

impl Running {
    fn url(&self) -> String {
        self.proxy.as_ref().unwrap().url()
    }

    /// Shuts the proxy down (which stops and waits for its children).
    async fn stop(mut self) {
        let proxy = self.proxy.take().unwrap();
        let pids = proxy.status().borrow().child_pids.clone();
        let stopped = tokio::time::timeout(PROXY_LIMIT, proxy.shutdown()).await;
        if stopped.is_err() {
            kill_groups(&pids);
            panic!("the proxy did not shut down within {PROXY_LIMIT:?}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            let pids = proxy.status().borrow().child_pids.clone();
            proxy.shutdown_token().cancel();
            kill_groups(&pids);
        }
    }
}

fn kill_groups(pids: &[u32]) {
    for pid in pids {
        let _ =
            std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
    }
}

/// A proxy over stdio in front of the local server `cfg` describes, launched the way the
/// runtime launches it, with the tools bin first on PATH (Node 22 for npx, the warmed uv).
async fn local_proxy(cfg: RunConfig, extra_env: &[(&str, &str)]) -> Running {
    let path = env::path_with_tools().into_string().unwrap();
    let mut launcher =
        ProcessLauncher::for_run_config(&cfg).unwrap().env("PATH", path).grace_period(Duration::from_secs(2));
    for (k, v) in extra_env {
        launcher = launcher.env(*k, *v);
    }
    let proxy = tokio::time::timeout(PROXY_LIMIT, apiary_proxy::start(cfg, Some(Arc::new(launcher))))
        .await
        .expect("the proxy starts in time")
        .expect("the proxy starts");
    Running { proxy: Some(proxy) }
}

/// What each client must have seen: the server's name, `tool` among the listed tools, and a
/// successful result whose first text content satisfies `text_ok`.
struct Expect<'a> {
    server: &'a str,
    tool: &'a str,
    args: Value,
    text_ok: Box<dyn Fn(&str) -> bool>,
}

fn check(client: &str, got: Result<Value, String>, want: &Expect<'_>) -> Result<(), String> {
    let got = got.map_err(|e| format!("{client}: {e}"))?;
    let fail = |why: &str| Err(format!("{client}: {why}: {got}"));
    if got["server"] != want.server {
        return fail("wrong server name");
    }
    let listed = got["tools"].as_array().cloned().unwrap_or_default();
    if !listed.iter().any(|t| t == want.tool) {
        return fail("the tool is not listed");
    }
    if got["result"]["isError"] == true {
        return fail("the call returned isError");
    }
    let text = got["result"]["content"][0]["text"].as_str().unwrap_or("");
    if !(want.text_ok)(text) {
        return fail("unexpected call result");
    }
    Ok(())
}

/// Drives the server behind `url` with all three clients one after the other and fails with
/// every client's problem at once.
async fn all_clients_agree(url: &str, want: &Expect<'_>) {
    let mut problems = Vec::new();
    let py = python_client(url, want.tool, &want.args).await;
    problems.extend(check("python sdk", py, want).err());
    let ts = ts_client(url, want.tool, &want.args).await;
    problems.extend(check("typescript sdk", ts, want).err());
    let ours = apiary_client(url, want.tool, &want.args).await;
    problems.extend(check("apiary McpClient", ours, want).err());
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn everything_echo() -> Expect<'static> {
    Expect {
        server: "mcp-servers/everything",
        tool: "echo",
        args: json!({"message": "hello through apiary"}),
        text_ok: Box::new(|t| t == "Echo: hello through apiary"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_over_stdio_serves_the_python_ts_and_apiary_clients() {
    // The pre-installed package, run as a command source (no npm involved).
    let server = env::tool("mcp-server-everything").display().to_string();
    let cfg = RunConfig::new("everything", Source::command(server, ["stdio"]));
    let running = local_proxy(cfg, &[]).await;
    let url = running.url();
    all_clients_agree(&url, &everything_echo()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_through_npx_package_resolution_serves_all_clients() {
    // `npx://@modelcontextprotocol/server-everything` as `apiary run` resolves it (`npx -y
    // <name>`), pinned to the version the test environment installed and made to work from
    // the npm cache alone, so the test needs no registry.
    let version = env::setting("NPM_SERVER_EVERYTHING_VERSION");
    let name = match &version {
        Some(v) => format!("@modelcontextprotocol/server-everything@{v}"),
        None => "@modelcontextprotocol/server-everything".to_owned(),
    };
    let mut cfg = RunConfig::new("everything-npx", Source::npx(name));
    cfg.args = vec!["stdio".into()];
    let line = cfg.command_line().unwrap();
    assert_eq!((line.program.as_str(), line.args[0].as_str()), ("npx", "-y"));
    let running = local_proxy(cfg, &[("npm_config_offline", "true")]).await;
    let url = running.url();
    all_clients_agree(&url, &everything_echo()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_through_uvx_serves_the_python_ts_and_apiary_clients() {
    // `uvx://mcp-server-time`, resolved by uvx from the warmed uv cache (offline).
    let cfg = RunConfig::new("time", Source::uvx("mcp-server-time"));
    let running = local_proxy(cfg, &[("UV_OFFLINE", "1")]).await;
    let url = running.url();
    let want = Expect {
        server: "mcp-time",
        tool: "get_current_time",
        args: json!({"timezone": "UTC"}),
        text_ok: Box::new(|t| {
            serde_json::from_str::<Value>(t)
                .is_ok_and(|v| v["timezone"] == "UTC" && v["datetime"].as_str().is_some_and(|d| d.contains('T')))
        }),
    };
    all_clients_agree(&url, &want).await;
    running.stop().await;
}

async fn http_fixture() -> apiary_testkit::http_fixture::HttpFixture {
    apiary_testkit::http_fixture::start(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_through_the_proxy_to_an_http_upstream() {
    let mut upstream = http_fixture().await;
    let mut cfg = RunConfig::new("remote", Source::remote(upstream.url.clone()));
    cfg.transport = Some(Transport::StreamableHttp);
    let proxy = tokio::time::timeout(PROXY_LIMIT, apiary_proxy::start(cfg, None))
        .await
        .expect("the proxy starts in time")
        .expect("the proxy starts");
    let running = Running { proxy: Some(proxy) };
    let summary = run_server_suite(&running.url(), "2025-11-25").await;
    running.stop().await;
    let _ = upstream.child.kill().await;
    assert!(summary.failed.is_empty(), "failing scenarios: {:?}\n{}", summary.failed, summary.output);
    assert_eq!(summary.total_checks_failed, 0, "{}", summary.output);
    assert_eq!(summary.passed.len(), EXPECTED_2025_11_25, "passed: {:?}\n{}", summary.passed, summary.output);
    assert!(summary.success, "{}", summary.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_upstream_serves_the_python_ts_and_apiary_clients() {
    let mut upstream = http_fixture().await;
    let cfg = RunConfig::new("remote-clients", Source::remote(upstream.url.clone()));
    let proxy = tokio::time::timeout(PROXY_LIMIT, apiary_proxy::start(cfg, None))
        .await
        .expect("the proxy starts in time")
        .expect("the proxy starts");
    let running = Running { proxy: Some(proxy) };
    let url = running.url();
    assert_ne!(url, upstream.url, "clients must go through the proxy");
    let want = Expect {
        server: "apiary-testkit-server",
        tool: "echo",
        args: json!({"text": "over http"}),
        text_ok: Box::new(|t| t == "over http"),
    };
    all_clients_agree(&url, &want).await;
    running.stop().await;
    let _ = upstream.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_at_once_each_get_their_own_answer_from_everything() {
    let server = env::tool("mcp-server-everything").display().to_string();
    let cfg = RunConfig::new("everything-concurrent", Source::command(server, ["stdio"]));
    let running = local_proxy(cfg, &[]).await;
    let url = running.url();
    let echo = |who: &'static str| Expect {
        server: "mcp-servers/everything",
        tool: "echo",
        args: json!({"message": who}),
        text_ok: Box::new(move |t| t == format!("Echo: {who}")),
    };
    let (py_want, ts_want, rs_want) = (echo("py"), echo("ts"), echo("rs"));
    let (py, ts, rs) = tokio::join!(
        python_client(&url, "echo", &py_want.args),
        ts_client(&url, "echo", &ts_want.args),
        apiary_client(&url, "echo", &rs_want.args),
    );
    let problems: Vec<String> = [
        check("python sdk", py, &py_want),
        check("typescript sdk", ts, &ts_want),
        check("apiary McpClient", rs, &rs_want),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    running.stop().await;
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Seed 000's bare curl (names.md §5, row 12) against an HTTP server that requires a session:
/// the server itself refuses it, the proxy serves it over a session of its own and mints none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_sessionless_post_through_an_http_upstream_gets_the_tools() {
    let mut upstream = http_fixture().await;
    let cfg = RunConfig::new("bare-post", Source::remote(upstream.url.clone()));
    let proxy = tokio::time::timeout(PROXY_LIMIT, apiary_proxy::start(cfg, None))
        .await
        .expect("the proxy starts in time")
        .expect("the proxy starts");
    let running = Running { proxy: Some(proxy) };
    let http = reqwest::Client::new();
    let post = |url: String, body: &'static str| {
        http.post(url).header("Content-Type", "application/json").body(body).timeout(Duration::from_secs(30)).send()
    };
    let list = r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#;

    let direct = post(upstream.url.clone(), list).await.unwrap();
    assert!(direct.status().is_client_error(), "the fixture itself refuses a bare POST: {}", direct.status());

    let res = post(running.url(), list).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert!(res.headers().get("mcp-session-id").is_none(), "no session is minted for a bare POST");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], 1, "{body}");
    let tools = body["result"]["tools"].as_array().unwrap_or_else(|| panic!("no tools: {body}"));
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{body}");

    let call =
        r#"{"jsonrpc":"2.0","method":"tools/call","id":"c-7","params":{"name":"echo","arguments":{"text":"bare"}}}"#;
    let body: Value = post(running.url(), call).await.unwrap().json().await.unwrap();
    assert_eq!(body["id"], "c-7", "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "bare", "{body}");

    let unknown = r#"{"jsonrpc":"2.0","method":"tools/call","id":2,"params":{"name":"no-such-tool","arguments":{}}}"#;
    let body: Value = post(running.url(), unknown).await.unwrap().json().await.unwrap();
    assert_eq!(body["id"], 2, "{body}");
    assert!(body.get("error").is_some() || body["result"]["isError"] == true, "the server's refusal passes: {body}");

    running.stop().await;
    let _ = upstream.child.kill().await;
}
