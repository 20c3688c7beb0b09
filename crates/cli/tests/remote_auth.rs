//! `apiary run https://… --remote-auth-*` against a real Keycloak: the "remote" is an `apiary
//! proxy --oidc-issuer <keycloak>` in front of the fixture server, so it serves only callers with
//! a Keycloak token. The login's URL is read from `apiary run`'s stderr and Keycloak's form is
//! filled in as a browser would; then a client that sends its own (bogus) token lists and calls
//! tools through the workload, which only works if the remote got the login's tokens instead.
//! Stop and start resume the saved login (no second login); a dead session makes `apiary start`
//! log in again; `apiary rm` deletes the session.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use apiary_runtime::pid::ProcRef;
use apiary_testkit::binaries::testkit_server;
use apiary_testkit::keycloak::{Keycloak, USER_CLIENT, browser_login};
use rustix::process::Signal;
use serde_json::{Value, json};
use support::{Apiary, Spawned, finish};

/// Lines of a child's stream, as they come.
fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line of `rx` that `pick` accepts, within 90 s; panics with what came instead.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str, pick: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if pick(&line) => return line.trim().to_owned(),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no {what}; got:\n{}", seen.join("\n"));
}

/// Plays the user at the terminal: reads the authorization URL the command prints, logs in to
/// Keycloak as `mcp`, and delivers the callback. Returns the command's stderr lines so far.
async fn log_in(child: &mut Child) -> mpsc::Receiver<String> {
    let rx = lines(child.stderr.take().unwrap());
    let url = wait_for(&rx, "authorization URL on stderr", |l| l.trim_start().starts_with("http"));
    let callback = browser_login(&url, "mcp", "mcp").await.unwrap();
    assert!(callback.starts_with("http://127.0.0.1:") && callback.contains("code="), "{callback}");
    let answer = reqwest::get(&callback).await.unwrap();
    assert_eq!(answer.status(), 200);
    rx
}

/// POSTs one JSON-RPC request with the client's own bearer token; the JSON-RPC answer.
async fn call(url: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .header("authorization", "Bearer the-clients-own-token")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    // A JSON body, or SSE whose data line carries it.
    let json = text.lines().find_map(|l| l.strip_prefix("data:").map(str::trim)).unwrap_or(text.trim()).to_owned();
    (status, serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

async fn list_and_call(url: &str) {
    let (status, v) = call(url, json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{v}");
    let (status, v) = call(
        url,
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"via login"}}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "via login", "{v}");
}

/// `apiary ARGS` that logs in: drives the login, then waits for it to finish; its stdout.
async fn with_login(apiary: &Apiary, args: &[&str]) -> (String, Vec<String>) {
    let mut child = apiary.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let rx = log_in(&mut child).await;
    let out = tokio::task::block_in_place(|| finish(child, Duration::from_secs(90), &args.join(" ")));
    let stderr: Vec<String> = rx.try_iter().collect();
    assert_eq!(out.code, Some(0), "stdout: {}\nstderr: {}", out.stdout, stderr.join("\n"));
    (out.stdout.trim().to_owned(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_auth_workload_logs_in_once_resumes_after_restart_and_logs_in_again_when_expired() {
    let kc = Keycloak::shared().await;
    let apiary = Apiary::new();
    let server = testkit_server().to_string_lossy().into_owned();
    let mut upstream = Spawned::group_leader_piped(&server, &["--http", "127.0.0.1:0"]);
    let upstream_url = lines(upstream.child.stdout.take().unwrap()).recv_timeout(Duration::from_secs(60)).unwrap();

    // The remote: only Keycloak tokens get in; each request is audited (stdout) with its user.
    let issuer = kc.issuer();
    let mut remote = apiary
        .command(&[
            "proxy",
            "remote",
            "--target-uri",
            upstream_url.trim(),
            "--oidc-issuer",
            &issuer,
            "--oidc-insecure-allow-http",
            "--enable-audit",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let audit = lines(remote.stdout.take().unwrap());
    let remote_url = wait_for(&audit, "remote URL", |l| l.starts_with("http://"));
    // Without the login, the client's own token is refused there.
    let (status, _) = call(&remote_url, json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).await;
    assert_eq!(status, 401);

    let run = [
        "run",
        &remote_url,
        "--name",
        "ra",
        "--remote-auth-issuer",
        &issuer,
        "--remote-auth-client-id",
        USER_CLIENT,
        "--remote-auth-scopes",
        "openid",
        "--remote-auth-skip-browser",
        "--remote-auth-callback-port",
        "0",
        "--remote-auth-insecure-allow-http",
    ];
    let (url, stderr) = with_login(&apiary, &run).await;
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"), "{url} / {stderr:?}");
    list_and_call(&url).await;
    // The remote saw Keycloak's user `mcp`, not the client's token (which it would refuse).
    let event = wait_for(&audit, "an audit event with a user", |l| l.contains("\"user_id\""));
    let v: Value = serde_json::from_str(&event).unwrap();
    assert!(v["subjects"]["user"].as_str().unwrap().contains("mcp"), "{v}");

    // The session is private, and the RunConfig holds no token.
    let session = apiary.state_dir().join("remote-auth").join("ra.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&session).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&session).unwrap()).unwrap();
    let refresh = saved["refreshToken"].as_str().unwrap().to_owned();
    let runconfig = std::fs::read_to_string(apiary.state_dir().join("runconfigs").join("ra.json")).unwrap();
    assert!(runconfig.contains("remoteAuth") && !runconfig.contains(&refresh), "{runconfig}");
    assert!(!runconfig.contains(saved["accessToken"].as_str().unwrap()));

    // Stop and start: the saved login is resumed, nothing is printed to log in.
    apiary.run(&["stop", "ra"]).ok();
    let out = apiary.run(&["start", "ra"]);
    assert!(!out.ok().stderr.contains("http"), "a second login was asked for: {}", out.stderr);
    list_and_call(out.stdout.trim()).await;

    // A session the authorization server no longer honours: `apiary restart` logs in again.
    let mut dead = saved.clone();
    dead["refreshToken"] = json!("not-a-refresh-token");
    dead["expiresAtUnix"] = json!(0);
    std::fs::write(&session, dead.to_string()).unwrap();
    let (url, stderr) = with_login(&apiary, &["restart", "ra"]).await;
    list_and_call(&url).await;
    let _ = stderr;

    // `apiary rm` takes the session with it.
    apiary.run(&["rm", "ra"]).ok();
    assert!(!session.exists());
    ProcRef::capture(remote.id()).signal(Signal::TERM);
    let _ = tokio::task::block_in_place(|| finish(remote, Duration::from_secs(30), "remote proxy"));
}

#[test]
fn remote_auth_with_a_local_server_or_a_bearer_token_is_refused_before_anything_runs() {
    let apiary = Apiary::new();
    let out = apiary.run(&["run", "--name", "t", "--remote-auth", "--", "sh"]);
    assert!(out.failed().contains("--remote-auth logs in to a remote MCP server"), "{}", out.stderr);
    let out = apiary.run(&[
        "run",
        "https://remote.example/mcp",
        "--remote-auth-client-id",
        "c",
        "--remote-auth-bearer-token",
        "t",
    ]);
    assert!(out.failed().contains("--remote-auth-bearer-token"), "{}", out.stderr);
    let out = apiary.run(&["proxy", "p", "--remote-auth-skip-browser", "--", "sh"]);
    assert!(out.failed().contains("--target-uri"), "{}", out.stderr);
    assert!(apiary.state().names().unwrap_or_default().is_empty());
}
