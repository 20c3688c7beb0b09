//! Foundation 2 under load: many sessions multiplexed onto stdio children of the real fixture
//! server. Proves that every answer reaches its own caller (none lost, none misrouted) over
//! ONE shared child while clients that declared sampling or elicitation, driven by the real
//! Python SDK, each get their own server→client requests at the same time; and that in
//! `shared` mode a server→client request with no certain owner is refused, never misdelivered.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apiary_config::StdioMode;
use apiary_proxy::{ProxyHandle, UpstreamStatus};
use apiary_testkit::env;
use apiary_transport::client::{ConnectOptions, McpClient};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Echo sessions that declare no client capabilities (all on the shared child).
const ECHO_SESSIONS: usize = 100;
/// `echo` calls per echo session.
const CALLS_PER_SESSION: usize = 100;
/// Python SDK sessions declaring sampling, and declaring elicitation.
const SAMPLING_SESSIONS: usize = 20;
const ELICITATION_SESSIONS: usize = 5;
/// Bounds one whole test; a stuck proxy fails the test instead of hanging it.
const TEST_LIMIT: Duration = Duration::from_secs(50);
/// Bounds one step (a client start, one line from the Python driver, a shutdown).
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// A running proxy that, should the test fail before [`Proxy::stop`], still stops and kills
/// every child it knows of.
struct Proxy {
    handle: Option<ProxyHandle>,
    status: watch::Receiver<UpstreamStatus>,
}

impl Proxy {
    async fn start(mode: StdioMode, name: &str) -> Proxy {
        let mut cfg = common::testkit_config(name);
        cfg.stdio.mode = mode;
        // Room for every capable session's own child (the default, stated here on purpose).
        cfg.stdio.max_session_children = 32;
        let handle =
            tokio::time::timeout(STEP_LIMIT, common::testkit_proxy(cfg)).await.expect("the proxy starts in time");
        let status = handle.status();
        Proxy { handle: Some(handle), status }
    }

    fn url(&self) -> String {
        self.handle.as_ref().unwrap().url()
    }

    fn pids(&self) -> Vec<u32> {
        self.status.borrow().child_pids.clone()
    }

    async fn stop(mut self) {
        let handle = self.handle.take().unwrap();
        let pids = self.pids();
        if tokio::time::timeout(STEP_LIMIT, handle.shutdown()).await.is_err() {
            kill(&pids);
            panic!("the proxy did not shut down within {STEP_LIMIT:?}");
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown_token().cancel();
            kill(&self.pids());
        }
    }
}

fn kill(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
    }
}

/// Every child pid the proxy reports while the watcher runs.
fn watch_pids(mut status: watch::Receiver<UpstreamStatus>) -> tokio::task::JoinHandle<HashSet<u32>> {
    tokio::spawn(async move {
        let mut seen: HashSet<u32> = status.borrow_and_update().child_pids.iter().copied().collect();
        while status.changed().await.is_ok() {
            seen.extend(status.borrow_and_update().child_pids.iter().copied());
        }
        seen
    })
}

/// The Python SDK driver, `py_mux.py ARGS…`, with its stdout read line by line.
struct Driver {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    fn spawn(args: &[&str]) -> Driver {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mux_clients/py_mux.py");
        let mut cmd = tokio::process::Command::from(env::command("python3"));
        cmd.arg(script)
            .args(args)
            .env("PATH", env::path_with_tools())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the Python driver starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Driver { child, lines }
    }

    /// The next line the driver prints, as JSON.
    async fn next_json(&mut self) -> Value {
        let line = tokio::time::timeout(STEP_LIMIT, self.lines.next_line())
            .await
            .expect("the Python driver answers in time")
            .expect("the Python driver's stdout is readable")
            .expect("the Python driver printed a line before exiting (its traceback is above)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the driver printed no JSON ({e}): {line}"))
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    async fn finish(mut self) {
        let status =
            tokio::time::timeout(STEP_LIMIT, self.child.wait()).await.expect("the driver exits in time").unwrap();
        assert!(status.success(), "the Python driver failed: {status}");
    }
}

fn text_of(result: &Value) -> Option<&str> {
    result["content"][0]["text"].as_str()
}

/// What one echo session saw.
#[derive(Default)]
struct EchoOutcome {
    /// The child that answered its `pid` call.
    pid: String,
    /// Payloads answered with exactly themselves.
    correct: usize,
    /// Calls that got no answer, or an error: (payload, why).
    lost: Vec<(String, String)>,
    /// Calls answered with something else: (payload sent, text received).
    misrouted: Vec<(String, String)>,
}

/// One echo session: connects (declaring no capabilities), asks its child's pid, reports
/// `started`, then makes its calls, `in_flight` at a time, each with a payload unique in the
/// test; it counts each answer in `answered`.
async fn echo_session(
    url: String,
    s: usize,
    started: mpsc::Sender<()>,
    in_flight: usize,
    answered: Arc<AtomicUsize>,
) -> Result<EchoOutcome, String> {
    let options = ConnectOptions { timeout: STEP_LIMIT, ..ConnectOptions::default() };
    let client = McpClient::connect(&url, options).await.map_err(|e| format!("s{s} connect: {e}"))?;
    let pid = client.call_tool("pid", Value::Null).await.map_err(|e| format!("s{s} pid: {e}"))?;
    let mut out = EchoOutcome { pid: text_of(&pid).unwrap_or_default().to_owned(), ..EchoOutcome::default() };
    let _ = started.send(()).await;
    let session = &client;
    let mut answers = futures::stream::iter(0..CALLS_PER_SESSION)
        .map(|c| async move {
            let payload = format!("s{s}-c{c}");
            let got = session.call_tool("echo", json!({ "text": payload })).await;
            (payload, got)
        })
        .buffer_unordered(in_flight);
    while let Some((payload, got)) = answers.next().await {
        answered.fetch_add(1, Ordering::Relaxed);
        match got {
            Ok(r) if r["isError"] == true => out.lost.push((payload, format!("tool error: {r}"))),
            Ok(r) => match text_of(&r) {
                Some(t) if t == payload => out.correct += 1,
                Some(t) => out.misrouted.push((payload, t.to_owned())),
                None => out.lost.push((payload, format!("no text: {r}"))),
            },
            Err(e) => out.lost.push((payload, e.to_string())),
        }
    }
    drop(answers);
    client.close().await.map_err(|e| format!("s{s} close: {e}"))?;
    Ok(out)
}

/// (1) + (2): 100 sessions × 100 echo calls on one shared child, while 20 sampling and 5
/// elicitation sessions of the Python SDK each get their own server→client request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_sessions_share_one_child_while_capable_sessions_get_their_own_requests() {
    echo_load_beside_capable_sessions(1).await;
}

/// The load of (1) with `in_flight` calls at a time in each echo session, beside (2).
/// Four calls in flight per session: 400 requests at once on the shared child, each
/// session far below its own queue bound, so none may be refused (bad-input.md row 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_calls_in_flight_per_session_are_never_refused() {
    echo_load_beside_capable_sessions(4).await;
}

async fn echo_load_beside_capable_sessions(in_flight: usize) {
    let proxy = Proxy::start(StdioMode::Auto, "mux-load").await;
    let url = proxy.url();
    let seen_pids = watch_pids(proxy.status.clone());

    let run = async {
        let mut driver =
            Driver::spawn(&["auto", &url, &SAMPLING_SESSIONS.to_string(), &ELICITATION_SESSIONS.to_string()]);
        assert_eq!(driver.next_json().await, json!({"ready": true}));

        // The echo load starts; once every echo session has a call answered, the capable
        // sessions make theirs, so the two run at the same time.
        let (started_tx, mut started_rx) = mpsc::channel(ECHO_SESSIONS);
        let answered = Arc::new(AtomicUsize::new(0));
        let mut echo = JoinSet::new();
        for s in 0..ECHO_SESSIONS {
            echo.spawn(echo_session(url.clone(), s, started_tx.clone(), in_flight, Arc::clone(&answered)));
        }
        drop(started_tx);
        let mut started = 0;
        while started < ECHO_SESSIONS && started_rx.recv().await.is_some() {
            started += 1;
        }
        driver.send("go").await;
        let at_go = answered.load(Ordering::Relaxed);
        let report = driver.next_json().await;
        let at_report = answered.load(Ordering::Relaxed);

        let mut outcomes = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = echo.join_next().await {
            match joined.unwrap() {
                Ok(o) => outcomes.push(o),
                Err(e) => failures.push(e),
            }
        }
        driver.finish().await;
        (outcomes, failures, report, at_go, at_report)
    };
    let (outcomes, failures, report, at_go, at_report) =
        tokio::time::timeout(TEST_LIMIT, run).await.expect("the load finishes in time");

    // (1) Every echo answer reached its own caller.
    assert!(failures.is_empty(), "echo sessions failed: {failures:?}");
    assert_eq!(outcomes.len(), ECHO_SESSIONS);
    let lost: Vec<_> = outcomes.iter().flat_map(|o| o.lost.iter()).collect();
    let misrouted: Vec<_> = outcomes.iter().flat_map(|o| o.misrouted.iter()).collect();
    let correct: usize = outcomes.iter().map(|o| o.correct).sum();
    let show = |v: &Vec<&(String, String)>| v.iter().take(10).map(|p| format!("{p:?}")).collect::<Vec<_>>().join("\n");
    assert!(
        lost.is_empty() && misrouted.is_empty(),
        "{} lost, {} misrouted, {correct} right of {}\nlost (first 10):\n{}\nmisrouted, (sent, got) (first 10):\n{}",
        lost.len(),
        misrouted.len(),
        ECHO_SESSIONS * CALLS_PER_SESSION,
        show(&lost),
        show(&misrouted)
    );
    assert_eq!(correct, ECHO_SESSIONS * CALLS_PER_SESSION);
    // The capable sessions' calls ran while the echo load did: echo answers kept arriving
    // between "go" and their report, and the load was not over when they reported.
    assert!(
        at_go < at_report && at_report < correct,
        "the capable sessions did not run during the echo load: {at_go} echo answers at go, {at_report} at their report"
    );

    // …over one shared child.
    let echo_pids: HashSet<&str> = outcomes.iter().map(|o| o.pid.as_str()).collect();
    assert_eq!(echo_pids.len(), 1, "the echo sessions were served by several children: {echo_pids:?}");
    let shared: u32 = echo_pids.iter().next().unwrap().parse().unwrap();

    // (2) Each capable session was asked its own question and got its own answer.
    let sessions = report["sessions"].as_array().unwrap();
    let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut capable_pids = HashSet::new();
    for s in sessions {
        let (kind, asked) = (s["kind"].as_str().unwrap(), s["asked"].as_str().unwrap());
        let answer = format!("answer-to:{asked}");
        let text = s["text"].as_str().unwrap_or_default();
        let good_text = match kind {
            "sampling" => text == format!("LLM response: {answer}"),
            _ => text.starts_with("User response: action=accept,") && text.contains(&format!("\"{answer}\"")),
        };
        if good_text && s["is_error"] == false && s["seen"] == json!([asked]) {
            *ok.entry(if kind == "sampling" { "sampling" } else { "elicitation" }).or_default() += 1;
        } else {
            problems.push(s.to_string());
        }
        capable_pids.insert(s["pid"].as_str().unwrap().parse::<u32>().unwrap());
    }
    assert!(problems.is_empty(), "capable sessions that did not get their own answer:\n{}", problems.join("\n"));
    assert_eq!(ok.get("sampling"), Some(&SAMPLING_SESSIONS), "{report}");
    assert_eq!(ok.get("elicitation"), Some(&ELICITATION_SESSIONS), "{report}");
    // Each declared capabilities, so each had a child of its own, not the shared one.
    assert_eq!(capable_pids.len(), SAMPLING_SESSIONS + ELICITATION_SESSIONS, "{report}");
    assert!(!capable_pids.contains(&shared), "a capable session was put on the shared child: {report}");

    // The capable sessions ended (the SDK deletes them), so their children stop: the
    // proxy is left with exactly the one shared child, never restarted.
    let mut status = proxy.status.clone();
    // (The `Ref` that `wait_for` returns holds the watch's read lock: drop it at once, or
    // the proxy could not publish its status again.)
    let settled = tokio::time::timeout(STEP_LIMIT, status.wait_for(|s| s.child_pids.len() == 1)).await.is_ok();
    let now = proxy.status.borrow().clone();
    assert!(settled, "the capable sessions' children did not stop: {now:?}");
    assert_eq!(now.child_pids, vec![shared], "{now:?}");
    assert_eq!(now.restarts, 0, "{now:?}");
    proxy.stop().await;
    let seen =
        tokio::time::timeout(STEP_LIMIT, seen_pids).await.expect("the status watch ends with the proxy").unwrap();
    let expected: HashSet<u32> = capable_pids.iter().copied().chain([shared]).collect();
    assert!(seen.is_subset(&expected), "children other than the shared one and the capable sessions' ran: {seen:?}");
}

/// (3) `shared` mode: while two sampling sessions have calls in flight, the second one's
/// sampling request has no certain owner and is refused (the tool reports the refusal);
/// the one alone in flight gets its request; nobody sees another's prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_refuses_a_server_request_with_two_owners_in_flight() {
    let proxy = Proxy::start(StdioMode::Shared, "mux-shared").await;
    let url = proxy.url();
    let run = async {
        let mut driver = Driver::spawn(&["shared", &url]);
        let report = driver.next_json().await;
        driver.finish().await;
        report
    };
    let report = tokio::time::timeout(TEST_LIMIT, run).await.expect("the driver finishes in time");
    let pids = proxy.pids();
    proxy.stop().await;

    // One child serves both sessions.
    assert_eq!(report["pids"][0], report["pids"][1], "{report}");
    assert_eq!(pids.len(), 1, "shared mode runs one child: {pids:?}");

    // A was alone in flight when its request came: delivered, answered with its own answer.
    assert_eq!(report["a"]["text"], "LLM response: answer-to:prompt-of-a", "{report}");
    assert_eq!(report["seen_a"], json!(["prompt-of-a"]), "A saw only its own prompt: {report}");

    // B's request came while A's call was also in flight: refused, and the tool says so.
    let b = &report["b_while_a"];
    let refusal = b["error"]["message"].as_str().or_else(|| b["text"].as_str().filter(|_| b["is_error"] == true));
    let refusal = refusal.unwrap_or_else(|| panic!("B's call with two sessions in flight was not refused: {report}"));
    // The fixture wraps the client's error: "request to the client failed: Mcp error: -32601: …".
    assert!(
        refusal.contains("-32601") && refusal.contains("cannot be determined"),
        "the tool does not report the proxy's refusal: {report}"
    );
    assert!(!refusal.contains("answer-to:"), "{report}");

    // B alone in flight: delivered. B never saw its refused prompt nor A's.
    assert_eq!(report["b_alone"]["text"], "LLM response: answer-to:prompt-of-b-alone", "{report}");
    assert_eq!(report["seen_b"], json!(["prompt-of-b-alone"]), "{report}");
}
