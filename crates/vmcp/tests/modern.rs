//! A vMCP instance spoken to in 2026-07-28, as the proxy's front passes a modern client's
//! requests to a modern child: it answers `server/discover` itself (with the tasks
//! extension of its 2026-07-28 backend); a backend that speaks 2026-07-28 gets the request
//! as it came (so an `InputRequiredResult` comes back, and the retry reaches it), a legacy
//! one gets it as a 2025-11-25 request (its result gains `resultType`); a task is routed
//! by its id to the backend that created it; a listen is acknowledged and carries a
//! backend's tool-list change tagged with the listen's id.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use apiary_testkit::server::{HttpServer, ServerOptions, serve_http};
use apiary_transport::launch::{BoxRead, BoxWrite, Launch};
use apiary_vmcp::{InstanceLimits, VmcpConfig, VmcpLaunch};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const LIMIT: Duration = Duration::from_secs(30);
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

struct Peer {
    stdin: BoxWrite,
    lines: Lines<BufReader<BoxRead>>,
    _kill: tokio::sync::oneshot::Sender<()>,
}

impl Peer {
    async fn start(launch: &VmcpLaunch) -> Peer {
        let child = launch.launch().await.unwrap();
        Peer { stdin: child.stdin, lines: BufReader::new(child.stdout).lines(), _kill: child.kill }
    }

    async fn send(&mut self, v: Value) {
        self.stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// A 2026-07-28 request (its `_meta` declaring `caps`); its answer and what came before.
    async fn call(&mut self, id: u64, method: &str, mut params: Value, caps: Value) -> (Value, Vec<Value>) {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": caps,
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        });
        self.send(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})).await;
        let mut others = Vec::new();
        loop {
            let m = self.next().await;
            if m["id"] == json!(id) && m.get("method").is_none() {
                return (m, others);
            }
            others.push(m);
        }
    }
}

/// A vMCP over `legacy` (a legacy-only fixture) and `modern` (one that speaks 2026-07-28).
async fn two_backends() -> (HttpServer, HttpServer, VmcpLaunch) {
    let legacy = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions { legacy_only: true, ..Default::default() })
        .await
        .unwrap();
    let modern = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let config = VmcpConfig::parse(&format!(
        "backends:\n  - {{name: old, url: '{}', transport: streamable-http}}\n  - {{name: new, url: '{}', transport: streamable-http}}\n",
        legacy.url(),
        modern.url()
    ))
    .unwrap();
    (legacy, modern, VmcpLaunch::new(&config, InstanceLimits::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_is_answered_and_each_backend_is_spoken_to_in_its_era() {
    let (_legacy, _modern, launch) = two_backends().await;
    let mut peer = Peer::start(&launch).await;

    let (found, _) = peer.call(1, "server/discover", json!({}), json!({})).await;
    let result = &found["result"];
    assert!(result["supportedVersions"].as_array().unwrap().contains(&json!("2026-07-28")), "{found}");
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "apiary-vmcp");
    assert!(result["capabilities"]["extensions"].get("io.modelcontextprotocol/tasks").is_some(), "{found}");

    let (list, _) = peer.call(2, "tools/list", json!({}), json!({})).await;
    assert_eq!(list["result"]["resultType"], "complete", "{list}");
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"old_echo") && names.contains(&"new_test_input_required_result_elicitation"), "{names:?}");

    // The 2026-07-28 backend answers with an InputRequiredResult; the retry reaches it.
    let elicit = json!({"elicitation": {}});
    let tool = "new_test_input_required_result_elicitation";
    let (first, _) = peer.call(3, "tools/call", json!({"name": tool, "arguments": {}}), elicit.clone()).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    assert!(first["result"]["inputRequests"].get("user_name").is_some(), "{first}");
    let mut retry = json!({"name": tool, "arguments": {}, "inputResponses": {
        "user_name": {"action": "accept", "content": {"name": "Ada"}}}});
    if let Some(state) = first["result"].get("requestState") {
        retry["requestState"] = state.clone();
    }
    let (done, _) = peer.call(4, "tools/call", retry, elicit).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(done["result"]["content"].to_string().contains("Hello, Ada!"), "{done}");

    // The legacy backend gets a 2025-11-25 request; its result is made a 2026-07-28 one.
    let (echo, _) =
        peer.call(5, "tools/call", json!({"name": "old_echo", "arguments": {"message": "hi"}}), json!({})).await;
    assert_eq!(echo["result"]["resultType"], "complete", "{echo}");
    assert!(echo.get("error").is_none(), "{echo}");

    // Removed methods are unknown to a 2026-07-28 client.
    let (ping, _) = peer.call(6, "ping", json!({}), json!({})).await;
    assert_eq!(ping["error"]["code"], -32601, "{ping}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_routed_by_its_id_and_an_unknown_one_is_refused() {
    // Two 2026-07-28 backends with the tasks extension: a task id is routed only by the
    // table of the tasks the instance saw created.
    let a = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let b = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let config = VmcpConfig::parse(&format!(
        "backends:\n  - {{name: a, url: '{}', transport: streamable-http}}\n  - {{name: b, url: '{}', transport: streamable-http}}\n",
        a.url(),
        b.url()
    ))
    .unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    let mut peer = Peer::start(&launch).await;
    let tasks = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let _ = peer.call(1, "server/discover", json!({}), json!({})).await;

    let (unknown, _) = peer.call(2, "tasks/get", json!({"taskId": "never-made"}), tasks.clone()).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    let (created, _) =
        peer.call(3, "tools/call", json!({"name": "b_failing_job", "arguments": {}}), tasks.clone()).await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_owned();
    let (got, _) = peer.call(4, "tasks/get", json!({"taskId": task}), tasks).await;
    assert_eq!(got["result"]["taskId"], json!(task), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_is_acknowledged_and_carries_a_backend_tool_change() {
    let (_legacy, _modern, launch) = two_backends().await;
    let mut peer = Peer::start(&launch).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    peer.send(json!({"jsonrpc":"2.0","id":40,"method":"subscriptions/listen",
        "params":{"_meta": meta, "notifications": {"toolsListChanged": true}}}))
        .await;
    let ack = peer.next().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], 40, "{ack}");
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true, "{ack}");

    let (_, others) =
        peer.call(41, "tools/call", json!({"name": "new_test_trigger_tool_change", "arguments": {}}), json!({})).await;
    let mut seen = others;
    let change = loop {
        if let Some(c) = seen
            .iter()
            .find(|m| m["method"] == "notifications/tools/list_changed" && m["params"]["_meta"][SUBSCRIPTION_ID] == 40)
        {
            break c.clone();
        }
        seen.push(peer.next().await);
    };
    assert_eq!(change["params"]["_meta"][SUBSCRIPTION_ID], 40);

    // The client closes its stream: the front cancels the listen, which then ends.
    peer.send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":40}})).await;
    let end = loop {
        let m = peer.next().await;
        if m["id"] == 40 {
            break m;
        }
    };
    assert_eq!(end["result"]["resultType"], "complete", "{end}");
}

/// The retry of `first` (an `InputRequiredResult`) with `responses`.
fn retry_of(tool: &str, first: &Value, responses: Value) -> Value {
    json!({"name": tool, "arguments": {}, "inputResponses": responses,
        "requestState": first["result"]["requestState"].clone()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_backend_asks_a_modern_client_for_input_through_input_required_results() {
    let (_legacy, _modern, launch) = two_backends().await;
    let mut peer = Peer::start(&launch).await;

    // One round: the backend's elicitation becomes the client's InputRequiredResult, keyed
    // as the backend named it, without the backend's id; the retry's answer reaches it.
    let elicit = json!({"elicitation": {}});
    let tool = "old_test_input_required_result_elicitation";
    let (first, _) = peer.call(1, "tools/call", json!({"name": tool, "arguments": {}}), elicit.clone()).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let asked = &first["result"]["inputRequests"]["user_name"];
    assert_eq!(asked["method"], "elicitation/create", "{first}");
    assert!(asked.get("id").is_none(), "{first}");
    assert!(first["result"]["requestState"].is_string(), "{first}");
    let answer = json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
    let (done, _) = peer.call(2, "tools/call", retry_of(tool, &first, answer.clone()), elicit.clone()).await;
    assert_eq!(done["id"], 2, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(done["result"]["content"].to_string().contains("Hello, Ada!"), "{done}");

    // The same state again names nothing: refused.
    let (replayed, _) = peer.call(3, "tools/call", retry_of(tool, &first, answer), elicit.clone()).await;
    assert_eq!(replayed["error"]["code"], -32602, "{replayed}");

    // Two rounds: the second InputRequiredResult comes from the same parked call.
    let tool = "old_test_input_required_result_multi_round";
    let (one, _) = peer.call(4, "tools/call", json!({"name": tool, "arguments": {}}), elicit.clone()).await;
    assert!(one["result"]["inputRequests"].get("step1").is_some(), "{one}");
    let name = json!({"step1": {"action": "accept", "content": {"name": "Ada"}}});
    let (two, _) = peer.call(5, "tools/call", retry_of(tool, &one, name), elicit.clone()).await;
    assert!(two["result"]["inputRequests"].get("step2").is_some(), "{two}");
    assert_ne!(two["result"]["requestState"], one["result"]["requestState"], "{two}");
    let colour = json!({"step2": {"action": "accept", "content": {"color": "teal"}}});
    let (done, _) = peer.call(6, "tools/call", retry_of(tool, &two, colour), elicit.clone()).await;
    assert!(done["result"]["content"].to_string().contains("Ada likes teal"), "{done}");

    // A prompt asks the same way.
    let prompt = "old_test_input_required_result_prompt";
    let (asked, _) = peer.call(7, "prompts/get", json!({"name": prompt}), elicit.clone()).await;
    assert!(asked["result"]["inputRequests"].get("user_context").is_some(), "{asked}");
    let context = json!({"user_context": {"action": "accept", "content": {"context": "tea"}}});
    let retry = json!({"name": prompt, "inputResponses": context, "requestState": asked["result"]["requestState"]});
    let (done, _) = peer.call(8, "prompts/get", retry, elicit).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(done["result"]["messages"].to_string().contains("in mind: tea"), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_backend_asks_only_for_what_the_modern_request_declared_and_a_missing_answer_is_asked_again() {
    let (_legacy, _modern, launch) = two_backends().await;
    let mut peer = Peer::start(&launch).await;
    // Elicitation and sampling declared, roots not: the backend's session was initialized
    // with these two, so it asks for two inputs at once (gathered into one result).
    let caps = json!({"elicitation": {}, "sampling": {}});
    let tool = "old_test_input_required_result_multiple_inputs";
    let (first, _) = peer.call(1, "tools/call", json!({"name": tool, "arguments": {}}), caps.clone()).await;
    let requests = first["result"]["inputRequests"].as_object().unwrap();
    let mut keys: Vec<&str> = requests.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["greeting", "user_name"], "{first}");
    assert_eq!(requests["greeting"]["method"], "sampling/createMessage", "{first}");

    // Only one answer: the other is asked again, the call still parked.
    let name = json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
    let (again, _) = peer.call(2, "tools/call", retry_of(tool, &first, name), caps.clone()).await;
    let requests = again["result"]["inputRequests"].as_object().unwrap();
    assert_eq!(requests.keys().collect::<Vec<_>>(), ["greeting"], "{again}");
    let sample = json!({"greeting": {"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m"}});
    let (done, _) = peer.call(3, "tools/call", retry_of(tool, &again, sample), caps).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(done["result"]["content"].to_string().contains("Got all 2 inputs"), "{done}");
}
