//! Shared by the proxy's integration tests: a minimal launcher for a real child process and
//! a proxy in front of the fixture server over stdio.
#![allow(dead_code, clippy::unwrap_used)] // test code; each test binary uses a subset

pub mod legacy_session;
pub mod sdk;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use apiary_config::{CommandSource, RunConfig, Source};
use apiary_proxy::ProxyHandle;
use apiary_transport::launch::{ChildHandle, ExitReason, Launch, LaunchError, LaunchFuture};
use tokio::sync::oneshot;

/// Starts `program args…` with piped stdio; dropping the kill switch kills it.
pub struct CommandLauncher {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Launch for CommandLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move {
            let mut child = tokio::process::Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| LaunchError::Spawn { program: self.program.display().to_string(), source })?;
            let pid = child.id();
            let stdin = child.stdin.take().ok_or_else(|| LaunchError::Other("no stdin".into()))?;
            let stdout = child.stdout.take().ok_or_else(|| LaunchError::Other("no stdout".into()))?;
            let (exit_tx, exited) = oneshot::channel();
            let (kill, kill_rx) = oneshot::channel::<()>();
            tokio::spawn(async move {
                let status = tokio::select! {
                    s = child.wait() => s,
                    _ = kill_rx => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                use std::os::unix::process::ExitStatusExt;
                let reason = match status {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(c), _) => ExitReason::from_code(c),
                        (_, Some(sig)) => ExitReason::from_signal(sig),
                        _ => ExitReason::other("exited"),
                    },
                    Err(e) => ExitReason::other(e.to_string()),
                };
                let _ = exit_tx.send(reason);
            });
            Ok(ChildHandle { pid, stdin: Box::new(stdin), stdout: Box::new(stdout), stderr: None, exited, kill })
        })
    }

    fn describe(&self) -> String {
        self.program.display().to_string()
    }
}

/// A RunConfig for the fixture server over stdio on a free loopback port.
pub fn testkit_config(name: &str) -> RunConfig {
    let server = apiary_testkit::binaries::testkit_server();
    RunConfig::new(
        name,
        Source::Command(CommandSource { program: server.display().to_string(), args: vec!["--stdio".into()] }),
    )
}

/// A proxy in front of the fixture server over stdio.
pub async fn testkit_proxy(cfg: RunConfig) -> ProxyHandle {
    let launcher =
        CommandLauncher { program: apiary_testkit::binaries::testkit_server(), args: vec!["--stdio".into()] };
    apiary_proxy::start(cfg, Some(Arc::new(launcher))).await.expect("the proxy starts")
}

/// A proxy in front of `program args…` over stdio, named `name`, its RunConfig adjusted by
/// `adjust` before it starts (the launcher and the config's source name the same command).
pub async fn command_proxy(
    name: &str,
    program: PathBuf,
    args: &[&str],
    adjust: impl FnOnce(&mut RunConfig),
) -> ProxyHandle {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let mut cfg = testkit_config(name);
    cfg.source = Source::Command(CommandSource { program: program.display().to_string(), args: args.clone() });
    adjust(&mut cfg);
    apiary_proxy::start(cfg, Some(Arc::new(CommandLauncher { program, args }))).await.expect("the proxy starts")
}

/// [`command_proxy`] for the fixture server run with `args`.
pub async fn fixture_proxy(name: &str, args: &[&str]) -> ProxyHandle {
    command_proxy(name, apiary_testkit::binaries::testkit_server(), args, |_| {}).await
}

/// An HTTP upstream that records the `Authorization` header of each request it gets.
pub async fn recording_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let record = std::sync::Arc::clone(&record);
            async move {
                let req: serde_json::Value = serde_json::from_str(&body).unwrap();
                // The proxy's era probe (`server/discover`, sent with no caller's credentials):
                // answered as a legacy server answers it, and not recorded as a forwarded call.
                if req["method"] == "server/discover" {
                    let answer = serde_json::json!({"jsonrpc":"2.0","id":req["id"],
                        "error":{"code":-32601,"message":"Method not found"}});
                    return ([("content-type", "application/json"), ("mcp-session-id", "up-1")], answer.to_string());
                }
                record.lock().unwrap().push(headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()));
                let answer = serde_json::json!({"jsonrpc":"2.0","id":req["id"],"result":{"tools":[]}});
                ([("content-type", "application/json"), ("mcp-session-id", "up-1")], answer.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A POST of one JSON-RPC message to `url` as an MCP client sends it (JSON or SSE accepted),
/// with an optional bearer token, session and extra headers.
pub async fn post_mcp(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    extra: &[(&str, &str)],
    body: &serde_json::Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}
