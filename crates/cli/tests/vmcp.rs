//! `apiary vmcp` with the real binary in front of fixture MCP servers: the three conflict
//! strategies over two servers whose tool names all clash, calls routed to the owning
//! backend, `/status`, `validate` errors naming the field path, `serve --group` and `init`
//! over two running workloads (one reached over the 2024-11-05 SSE transport), and a
//! backend killed mid-session that fails fast and comes back by itself; Cedar given with the
//! proxy's own flag guards the aggregated names.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::process::Stdio;
use std::time::Duration;

use apiary_testkit::binaries::testkit_server;
use apiary_transport::client::{ClientError, ConnectOptions, McpClient};
use serde_json::{Value, json};
use support::{Apiary, Running, start_printing_url as start};

/// The fixture server over HTTP on `addr` (port 0 picks one).
async fn fixture(addr: &str) -> Running {
    let mut cmd = tokio::process::Command::new(testkit_server());
    cmd.args(["--http", addr]).stdin(Stdio::null());
    start(cmd).await
}

/// `apiary vmcp serve ARGS --port 0`.
async fn vmcp(apiary: &Apiary, args: &[&str]) -> Running {
    let mut all = vec!["vmcp", "serve", "--port", "0"];
    all.extend_from_slice(args);
    start(tokio::process::Command::from(apiary.command(&all))).await
}

async fn serve_config(apiary: &Apiary, name: &str, text: &str) -> Running {
    let path = apiary.scratch().join(name);
    std::fs::write(&path, text).unwrap();
    vmcp(apiary, &["--config", path.to_str().unwrap()]).await
}

async fn connect(url: &str) -> McpClient {
    let options = ConnectOptions { timeout: Duration::from_secs(30), ..ConnectOptions::default() };
    McpClient::connect(url, options).await.unwrap()
}

async fn tool_names(client: &McpClient) -> Vec<String> {
    client.list_tools().await.unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

/// The pid the fixture's `pid` tool (under `name`) reports.
async fn pid_via(client: &McpClient, name: &str) -> Result<u32, ClientError> {
    let result = client.call_tool(name, Value::Null).await?;
    Ok(result["content"][0]["text"].as_str().unwrap().trim().parse().unwrap())
}

fn backends_yaml(a: &Running, b: &Running) -> String {
    format!(
        "backends:\n  - {{name: alpha, url: '{}', transport: streamable-http}}\n  - {{name: beta, url: '{}', transport: streamable-http}}\n",
        a.url, b.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_priority_and_manual_settle_clashes_and_calls_reach_the_owner() {
    let apiary = Apiary::new();
    let a = fixture("127.0.0.1:0").await;
    let b = fixture("127.0.0.1:0").await;
    let (pid_a, pid_b) = (a.child.id().unwrap(), b.child.id().unwrap());
    let backends = backends_yaml(&a, &b);

    // prefix (the default): every tool under `{workload}_`.
    let v = serve_config(&apiary, "prefix.yaml", &format!("name: demo\n{backends}")).await;
    let client = connect(&v.url).await;
    let names = tool_names(&client).await;
    for n in ["alpha_pid", "beta_pid", "alpha_echo", "beta_echo"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert!(!names.iter().any(|x| x == "pid"), "{names:?}");
    assert_eq!(pid_via(&client, "alpha_pid").await.unwrap(), pid_a);
    assert_eq!(pid_via(&client, "beta_pid").await.unwrap(), pid_b);
    let echo = client.call_tool("beta_echo", json!({"text": "hi"})).await.unwrap();
    assert_eq!(echo["content"][0]["text"], "hi");
    let err = client.call_tool("pid", Value::Null).await.unwrap_err();
    assert_eq!(err.jsonrpc_code(), Some(-32602), "{err}");
    // Resources keep their URIs; a read reaches the backend that lists it.
    let read = client.read_resource("test://static-text").await.unwrap();
    assert!(read["contents"][0]["text"].is_string(), "{read}");
    // Prompts follow the tool strategy.
    let prompts: Vec<Value> = client.list_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p["name"] == "beta_test_simple_prompt"), "{prompts:?}");

    // /status names both backends.
    let base = v.url.trim_end_matches("/mcp");
    let status: Value = reqwest::get(format!("{base}/status")).await.unwrap().json().await.unwrap();
    let names: Vec<&str> = status["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"], "{status}");
    assert_eq!(status["status"], "healthy", "{status}");
    let health: Value = reqwest::get(format!("{base}/api/backends/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["backends"]["beta"]["status"], "healthy", "{health}");
    // A bare POST with no session (seed 000's `curl`) is served by the shared instance.
    let bare = reqwest::Client::new()
        .post(&v.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert!(bare.status().is_success(), "{}", bare.status());
    let body = bare.text().await.unwrap();
    assert!(body.contains(r#""alpha_pid""#) && body.contains(r#""beta_pid""#), "{body}");
    client.close().await.unwrap();
    drop(v);

    // priority: bare names, the first listed backend wins.
    let text = format!(
        "{backends}aggregation:\n  conflictResolution: priority\n  conflictResolutionConfig:\n    priorityOrder: [beta, alpha]\n"
    );
    let v = serve_config(&apiary, "priority.yaml", &text).await;
    let client = connect(&v.url).await;
    let names = tool_names(&client).await;
    assert!(names.iter().any(|x| x == "pid") && !names.iter().any(|x| x.ends_with("_pid")), "{names:?}");
    assert_eq!(names.iter().filter(|x| *x == "echo").count(), 1, "{names:?}");
    assert_eq!(pid_via(&client, "pid").await.unwrap(), pid_b);
    client.close().await.unwrap();
    drop(v);

    // manual: overrides rename; what still clashes is dropped.
    let text = format!(
        "{backends}aggregation:\n  conflictResolution: manual\n  tools:\n    - workload: alpha\n      overrides:\n        pid: {{name: pid_of_alpha}}\n    - workload: beta\n      filter: [pid, echo]\n      overrides:\n        pid: {{name: pid_of_beta, description: the second one}}\n"
    );
    let v = serve_config(&apiary, "manual.yaml", &text).await;
    let client = connect(&v.url).await;
    let tools = client.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"pid_of_alpha") && names.contains(&"pid_of_beta"), "{names:?}");
    assert!(!names.contains(&"echo"), "a clash left unresolved is dropped: {names:?}");
    assert!(names.contains(&"test_simple_text"), "alpha's unique tools stay (beta's are filtered): {names:?}");
    let renamed = tools.iter().find(|t| t["name"] == "pid_of_beta").unwrap();
    assert_eq!(renamed["description"], "the second one");
    assert_eq!(pid_via(&client, "pid_of_alpha").await.unwrap(), pid_a);
    assert_eq!(pid_via(&client, "pid_of_beta").await.unwrap(), pid_b);
    client.close().await.unwrap();
}

#[test]
fn validate_accepts_a_toolhive_file_and_names_the_field_path_of_errors() {
    let apiary = Apiary::new();
    let good = apiary.scratch().join("good.yaml");
    std::fs::write(
        &good,
        "name: x\ngroupRef: g\nbackends:\n  - {name: a, url: 'http://127.0.0.1:1/mcp', transport: streamable-http}\n\
         compositeTools:\n  - {name: c, steps: []}\n",
    )
    .unwrap();
    let out = apiary.run(&["vmcp", "validate", "--config", good.to_str().unwrap()]);
    out.ok();
    assert!(out.stderr.contains("compositeTools") && out.stderr.contains("not supported"), "{}", out.stderr);

    let bad = apiary.scratch().join("bad.yaml");
    std::fs::write(
        &bad,
        "backends:\n  - {name: a, url: 'ftp://x', transport: streamable-http}\naggregation:\n  conflictResolution: priority\n",
    )
    .unwrap();
    let out = apiary.run(&["vmcp", "validate", "--config", bad.to_str().unwrap()]);
    let err = out.failed();
    assert!(err.contains("backends[0].url"), "{err}");
    assert!(err.contains("aggregation.conflictResolutionConfig.priorityOrder"), "{err}");

    let help = apiary.run(&["vmcp", "serve", "--help"]).ok().stdout.clone();
    assert!(help.contains("--group") && help.contains("--config") && help.contains("4483"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_group_aggregates_two_running_workloads_and_init_writes_their_config() {
    let apiary = Apiary::new();
    let server = testkit_server().to_string_lossy().into_owned();
    apiary.run(&["group", "create", "team"]).ok();
    // `two` is proxied in SSE mode: the vMCP reaches it over the 2024-11-05 transport.
    for (name, mode) in [("one", "streamable-http"), ("two", "sse")] {
        let env = format!("WHO={name}");
        let args =
            ["run", "--group", "team", "--name", name, "--proxy-mode", mode, "-e", &env, "--", &server, "--stdio"];
        let url = apiary.run(&args).ok().stdout.clone();
        assert_eq!(url.trim().ends_with("/sse"), mode == "sse", "{url}");
    }
    let v = vmcp(&apiary, &["--group", "team"]).await;
    let client = connect(&v.url).await;
    let names = tool_names(&client).await;
    assert!(names.iter().any(|n| n == "one_pid") && names.iter().any(|n| n == "two_pid"), "{names:?}");
    // (Both servers are pid 2 in their sandboxes: the environment tells them apart.)
    for name in ["one", "two"] {
        let who = client.call_tool(&format!("{name}_env"), json!({"name": "WHO"})).await.unwrap();
        assert_eq!(who["content"][0]["text"], name, "{who}");
    }
    client.close().await.unwrap();
    drop(v);

    // Quick mode is loopback only.
    let out = apiary.run(&["vmcp", "serve", "--group", "team", "--host", "0.0.0.0", "--port", "0"]);
    assert!(out.failed().contains("loopback"), "{}", out.stderr);

    let file = apiary.scratch().join("team.yaml");
    apiary.run(&["vmcp", "init", "-g", "team", "-o", file.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("name: one") && text.contains("name: two") && text.contains("transport: sse"), "{text}");
    apiary.run(&["vmcp", "validate", "--config", file.to_str().unwrap()]).ok();
    apiary.run(&["stop", "--all"]).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_session_fails_fast_and_comes_back_by_itself() {
    let apiary = Apiary::new();
    let a = fixture("127.0.0.1:0").await;
    let mut b = fixture("127.0.0.1:0").await;
    let b_addr = b.url.trim_start_matches("http://").trim_end_matches("/mcp").to_owned();
    let text = format!(
        "{}operational:\n  timeouts: {{default: 10s}}\n  failureHandling:\n    healthCheckInterval: 1s\n    unhealthyThreshold: 1\n    circuitBreaker: {{enabled: true, failureThreshold: 1, timeout: 60s}}\n",
        backends_yaml(&a, &b)
    );
    let v = serve_config(&apiary, "health.yaml", &text).await;
    let client = connect(&v.url).await;
    assert_eq!(pid_via(&client, "beta_pid").await.unwrap(), b.child.id().unwrap());

    b.child.kill().await.unwrap();
    // Calls to it fail with an error that names the backend; the other keeps working. After
    // the first failure the circuit is open (it closes only on a success, or after 60 s):
    // calls then fail at once, saying so.
    let mut last = String::new();
    for _ in 0..3 {
        last = pid_via(&client, "beta_pid").await.unwrap_err().to_string();
        assert!(last.contains("\"beta\"") && (last.contains("unavailable") || last.contains("failed")), "{last}");
        assert_eq!(pid_via(&client, "alpha_pid").await.unwrap(), a.child.id().unwrap());
    }
    assert!(last.contains("circuit breaker is open"), "{last}");
    let base = v.url.trim_end_matches("/mcp");
    let health: Value = reqwest::get(format!("{base}/api/backends/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["backends"]["beta"]["status"], "unhealthy", "{health}");
    assert_eq!(health["backends"]["alpha"]["status"], "healthy", "{health}");

    // Restarted on the same port, it is used again without any action: the periodic check
    // (every second here) finds it answering and closes the circuit.
    let b2 = fixture(&b_addr).await;
    let mut back = None;
    for _ in 0..60 {
        if let Ok(pid) = pid_via(&client, "beta_pid").await {
            back = Some(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(back, Some(b2.child.id().unwrap()), "the restarted backend was not used again");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cedar_from_the_proxy_flags_guards_the_aggregated_names() {
    let apiary = Apiary::new();
    let a = fixture("127.0.0.1:0").await;
    let b = fixture("127.0.0.1:0").await;
    let config = apiary.scratch().join("vmcp.yaml");
    std::fs::write(&config, backends_yaml(&a, &b)).unwrap();
    let authz = apiary.scratch().join("authz.json");
    std::fs::write(
        &authz,
        r#"{"version":"1.0","type":"cedarv1","cedar":{"policies":["permit(principal, action == Action::\"call_tool\", resource == Tool::\"alpha_pid\");"]}}"#,
    )
    .unwrap();
    let v = vmcp(&apiary, &["--config", config.to_str().unwrap(), "--authz-config", authz.to_str().unwrap()]).await;
    let client = connect(&v.url).await;
    assert_eq!(tool_names(&client).await, ["alpha_pid"], "the list is filtered per caller");
    assert_eq!(pid_via(&client, "alpha_pid").await.unwrap(), a.child.id().unwrap());
    assert!(pid_via(&client, "beta_pid").await.is_err(), "a call Cedar does not permit is refused");
    client.close().await.unwrap();
}

async fn connect_with(url: &str, token: &str) -> Result<McpClient, ClientError> {
    let options = ConnectOptions {
        timeout: Duration::from_secs(30),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        ..ConnectOptions::default()
    };
    McpClient::connect(url, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_auth_and_cedar_from_the_config_file_are_enforced() {
    let apiary = Apiary::new();
    let issuer = apiary_testkit::issuer::TestIssuer::start().await;
    let a = fixture("127.0.0.1:0").await;
    let b = fixture("127.0.0.1:0").await;
    let incoming = format!(
        "incomingAuth:\n  type: oidc\n  oidc: {{issuer: '{}', audience: vmcp, insecureAllowHttp: true}}\n  authz:\n    type: cedar\n    policies:\n      - 'permit(principal, action == Action::\"call_tool\", resource == Tool::\"alpha_pid\");'\n",
        issuer.issuer()
    );
    let text = format!("{}{incoming}", backends_yaml(&a, &b));
    let config = apiary.scratch().join("auth.yaml");
    std::fs::write(&config, &text).unwrap();

    // Flags and the file both giving incoming auth: refused before anything serves.
    let out =
        apiary.run(&["vmcp", "serve", "--port", "0", "--config", config.to_str().unwrap(), "--auth-mode", "local"]);
    assert!(out.failed().contains("give them in one place"), "{}", out.stderr);

    let v = serve_config(&apiary, "auth.yaml", &text).await;
    // No token: 401 at the front.
    let Err(err) = McpClient::connect(&v.url, ConnectOptions::default()).await else {
        panic!("served without a token")
    };
    assert!(matches!(err, ClientError::HttpStatus { status: 401, .. }), "{err}");
    // A token for another audience: 401 too.
    let wrong = issuer.mint(&issuer.claims("alice", "someone-else"));
    let Err(err) = connect_with(&v.url, &wrong).await else { panic!("a token for another audience was accepted") };
    assert!(matches!(err, ClientError::HttpStatus { status: 401, .. }), "{err}");

    let token = issuer.mint(&issuer.claims("alice", "vmcp"));
    let client = connect_with(&v.url, &token).await.unwrap();
    assert_eq!(tool_names(&client).await, ["alpha_pid"], "the list is filtered by the file's Cedar policy");
    assert_eq!(pid_via(&client, "alpha_pid").await.unwrap(), a.child.id().unwrap());
    let err = pid_via(&client, "beta_pid").await.unwrap_err();
    assert!(matches!(err, ClientError::HttpStatus { status: 403, .. }), "{err}");
    client.close().await.unwrap();
}

#[test]
fn validate_refuses_a_bad_policy_or_an_unknown_incoming_auth_field() {
    let apiary = Apiary::new();
    let file = apiary.scratch().join("bad.yaml");
    let base = "backends:\n  - {name: a, url: 'http://127.0.0.1:1/mcp', transport: streamable-http}\n";
    std::fs::write(&file, format!("{base}incomingAuth:\n  type: anonymous\n  authz: {{type: cedar, policies: ['permit(principal, action == , resource);']}}\n")).unwrap();
    let out = apiary.run(&["vmcp", "validate", "--config", file.to_str().unwrap()]);
    assert!(out.failed().contains("incomingAuth.authz"), "{}", out.stderr);
    std::fs::write(
        &file,
        format!("{base}incomingAuth: {{type: oidc, oidc: {{issuer: 'https://i.example', audiences: [x]}}}}\n"),
    )
    .unwrap();
    let out = apiary.run(&["vmcp", "validate", "--config", file.to_str().unwrap()]);
    let err = out.failed();
    assert!(err.contains("incomingAuth.oidc") && err.contains("audiences"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_resolving_to_loopback_is_refused_at_connect_and_backend_headers_are_sent() {
    let apiary = Apiary::new();
    let a = fixture("127.0.0.1:0").await;
    let b = fixture("127.0.0.1:0").await;
    // The same kind of server as an entry named `localhost`: the name passes the file's
    // checks, its address (127.0.0.1 or ::1) is refused when the vMCP connects.
    let entry_url = b.url.replace("127.0.0.1", "localhost");
    let text = format!(
        "backends:\n  - name: alpha\n    url: '{}'\n    transport: streamable-http\n    headers: {{X-Plain: one}}\n    headersFromEnv: {{X-From-Env: APIARY_TEST_VMCP_HEADER}}\n  - {{name: ent, url: '{entry_url}', transport: streamable-http, type: entry, allowPrivateEndpoint: true}}\n",
        a.url
    );
    let config = apiary.scratch().join("entry.yaml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = apiary.command(&["vmcp", "serve", "--port", "0", "--config", config.to_str().unwrap()]);
    cmd.env("APIARY_TEST_VMCP_HEADER", "from-the-environment");
    let v = start(tokio::process::Command::from(cmd)).await;

    let client = connect(&v.url).await;
    let names = tool_names(&client).await;
    assert!(names.iter().any(|n| n == "alpha_pid"), "the member on loopback is served: {names:?}");
    assert!(!names.iter().any(|n| n.starts_with("ent_")), "the entry on loopback is not: {names:?}");
    assert_eq!(pid_via(&client, "alpha_pid").await.unwrap(), a.child.id().unwrap());
    for (header, want) in [("x-plain", "one"), ("x-from-env", "from-the-environment")] {
        let got = client.call_tool("alpha_request_header", json!({"name": header})).await.unwrap();
        assert_eq!(got["content"][0]["text"], want, "{header}: {got}");
    }
    client.close().await.unwrap();

    let base = v.url.trim_end_matches("/mcp");
    let status: Value = reqwest::get(format!("{base}/status")).await.unwrap().json().await.unwrap();
    let ent = status["backends"].as_array().unwrap().iter().find(|b| b["name"] == "ent").unwrap().clone();
    let why = ent["lastError"].as_str().unwrap_or_default();
    assert!(why.contains("refused to connect to localhost") && why.contains("loopback"), "{status}");
}

/// The names `tools/list` gives over a raw session.
async fn raw_tool_names(session: &apiary_transport::client::RawSession, id: u64) -> Vec<String> {
    let req = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}}).to_string();
    let answer: Value = serde_json::from_slice(&session.request(req.into()).await.unwrap()).unwrap();
    let mut names: Vec<String> =
        answer["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

/// Waits (bounded) for `notifications/tools/list_changed` on the session's stream.
async fn tools_changed<B: AsRef<[u8]>>(incoming: &mut tokio::sync::mpsc::Receiver<B>) {
    let wait = async {
        while let Some(m) = incoming.recv().await {
            let v: Value = serde_json::from_slice(m.as_ref()).unwrap();
            if v["method"] == "notifications/tools/list_changed" {
                return;
            }
        }
        panic!("the stream ended before list_changed");
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("no tools/list_changed within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_is_reloaded_live_and_clients_are_told() {
    use apiary_transport::client::{RawSession, SessionOptions};
    let apiary = Apiary::new();
    let a = fixture("127.0.0.1:0").await;
    let b = fixture("127.0.0.1:0").await;
    let path = apiary.scratch().join("live.yaml");
    // No backends yet (a group filling up): served, with an empty catalog.
    std::fs::write(&path, "name: live\n").unwrap();
    let v = vmcp(&apiary, &["--config", path.to_str().unwrap()]).await;
    let options = SessionOptions { timeout: Duration::from_secs(30), ..SessionOptions::default() };
    let (session, mut incoming) = RawSession::open(&v.url, options).await.unwrap();
    assert!(raw_tool_names(&session, 1).await.is_empty());

    // Two backends added: the client is told and sees their tools.
    std::fs::write(&path, backends_yaml(&a, &b)).unwrap();
    tools_changed(&mut incoming).await;
    let names = raw_tool_names(&session, 2).await;
    assert!(names.contains(&"alpha_pid".to_owned()) && names.contains(&"beta_pid".to_owned()), "{names:?}");
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"beta_pid","arguments":{}}});
    let answer: Value = serde_json::from_slice(&session.request(call.to_string().into()).await.unwrap()).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], b.child.id().unwrap().to_string(), "{answer}");

    // An invalid file, or one changing incomingAuth, is refused: the running config stays
    // (both would drop beta if they were taken).
    let only_a = format!("backends:\n  - {{name: alpha, url: '{}', transport: streamable-http}}\n", a.url);
    std::fs::write(&path, format!("{only_a}aggregation: {{conflictResolution: random}}\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::write(&path, format!("{only_a}incomingAuth: {{type: local}}\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(raw_tool_names(&session, 4).await, names, "a refused file changed the catalog");

    // One removed again: told, and its tools are gone; a call to one fails as unknown.
    std::fs::write(&path, only_a).unwrap();
    tools_changed(&mut incoming).await;
    let names = raw_tool_names(&session, 5).await;
    assert!(names.contains(&"alpha_pid".to_owned()) && !names.iter().any(|n| n.starts_with("beta_")), "{names:?}");
    let call = json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"beta_pid","arguments":{}}});
    let answer: Value = serde_json::from_slice(&session.request(call.to_string().into()).await.unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    // /status follows the file.
    let base = v.url.trim_end_matches("/mcp");
    let status: Value = reqwest::get(format!("{base}/status")).await.unwrap().json().await.unwrap();
    let listed: Vec<&str> =
        status["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["alpha"], "{status}");
    session.close().await.unwrap();
}
