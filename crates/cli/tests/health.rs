//! Health checks and restarts through the real binary: a server that stops answering `ping`
//! becomes `unhealthy` and `running` again when it answers; a server that exits is restarted
//! (in the sandbox too) and answers again; one that always crashes is restarted with a growing
//! backoff shown in `status`, then given up on as `unhealthy`. Short check intervals come from
//! the environment overrides; states are polled with a generous deadline, never timed.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use apiary_config::{Isolation, RestartPolicy, RunConfig, Source};
use apiary_runtime::pid::ProcRef;
use apiary_testkit::binaries::testkit_server;
use rustix::process::Signal;
use serde_json::Value;
use support::{Apiary, COMMAND_LIMIT, finish};

const DEADLINE: Duration = Duration::from_secs(60);

fn server() -> String {
    testkit_server().to_string_lossy().into_owned()
}

fn status_json(apiary: &Apiary, name: &str) -> Value {
    serde_json::from_str(&apiary.run(&["status", name, "--format", "json"]).ok().stdout).unwrap()
}

/// `apiary ARGS` with health checks every 200 ms, a 300 ms ping timeout and a threshold of 2.
fn run_checked(apiary: &Apiary, args: &[&str]) -> support::Out {
    let child = apiary
        .command(args)
        .env("APIARY_HEALTH_CHECK_INTERVAL", "200ms")
        .env("TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT", "300ms")
        .env("APIARY_HEALTH_CHECK_RETRY_DELAY", "100ms")
        .env("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, COMMAND_LIMIT, &format!("apiary {}", args.join(" ")))
}

/// Polls `status` until `want` holds (or the deadline passes) and returns the last status.
fn wait_status(apiary: &Apiary, name: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let st = status_json(apiary, name);
        if want(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{name}: never {what}; last status {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_that_stops_answering_ping_becomes_unhealthy_and_recovers() {
    let apiary = Apiary::new();
    run_checked(&apiary, &["run", "--name", "h", "--isolation", "none", "--", &server(), "--stdio"]).ok();
    let pid: u32 = apiary.run(&["mcp", "call", "pid", "--server", "h"]).ok().stdout.trim().parse().unwrap();
    wait_status(&apiary, "h", "running", |s| s["state"] == "running");

    // A stopped process keeps its pipes open and answers nothing: hung, not dead.
    let child = ProcRef::capture(pid);
    child.signal(Signal::STOP);
    let st = wait_status(&apiary, "h", "unhealthy", |s| s["state"] == "unhealthy");
    let error = st["error"].as_str().unwrap();
    assert!(error.contains("health check failed") && error.contains("ping"), "{st}");
    assert_eq!(st["restarts"], 0, "a hung server is reported, not restarted: {st}");
    let listed = apiary.run(&["list"]);
    assert!(listed.ok().stdout.lines().any(|l| l.starts_with("h ") && l.contains("unhealthy")), "{}", listed.stdout);

    child.signal(Signal::CONT);
    let st = wait_status(&apiary, "h", "running again", |s| s["state"] == "running");
    assert!(st.get("error").is_none(), "{st}");
    let out = apiary.run(&["mcp", "call", "echo", "--server", "h", "--args", r#"{"text":"back"}"#]);
    assert_eq!(out.ok().stdout.trim(), "back");
    // The same server, never restarted.
    assert_eq!(apiary.run(&["mcp", "call", "pid", "--server", "h"]).ok().stdout.trim(), pid.to_string());
    apiary.run(&["rm", "h"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn a_sandboxed_server_that_exits_is_restarted_and_answers_again() {
    let apiary = Apiary::new();
    run_checked(&apiary, &["run", "--name", "s", "--", &server(), "--stdio"]).ok();
    let before = apiary.run(&["mcp", "call", "echo", "--server", "s", "--args", r#"{"text":"one"}"#]);
    assert_eq!(before.ok().stdout.trim(), "one");
    apiary.run(&["mcp", "call", "crash", "--server", "s"]).failed();
    let st = wait_status(&apiary, "s", "restarted and running", |s| {
        s["restarts"].as_u64().unwrap_or(0) >= 1 && s["state"] == "running"
    });
    assert!(st["lastExit"].as_str().unwrap().contains("status 3"), "{st}");
    assert!(st.get("nextRestart").is_none(), "a done restart leaves no plan behind: {st}");
    let after = apiary.run(&["mcp", "call", "echo", "--server", "s", "--args", r#"{"text":"two"}"#]);
    assert_eq!(after.ok().stdout.trim(), "two");
    apiary.run(&["rm", "s"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn a_server_that_always_crashes_backs_off_growing_then_is_given_up() {
    let apiary = Apiary::new();
    let restart = RestartPolicy { max_restarts: 4, window_secs: 300, backoff_initial_ms: 100, backoff_max_ms: 400 };
    let config = RunConfig::builder("c", Source::command("sh", ["-c", "echo dying >&2; exit 7"]))
        .isolation(Isolation::None)
        .restart(restart)
        .build()
        .unwrap();
    apiary.state().save_config(&config).unwrap();
    run_checked(&apiary, &["start", "c"]).ok();

    // Every restart waits its backoff: each plan seen has the next attempt number and a delay
    // that doubles up to the cap; the restart count never runs ahead of the attempts.
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let last = loop {
        let st = status_json(&apiary, "c");
        if let Some(plan) = st.get("nextRestart") {
            let entry = (plan["attempt"].as_u64().unwrap(), plan["backoffMs"].as_u64().unwrap());
            assert!(plan["at"].as_str().unwrap().ends_with('Z'), "{st}");
            assert!(st["restarts"].as_u64().unwrap() <= entry.0, "restarts ran ahead of the backoff: {st}");
            if seen.last() != Some(&entry) {
                seen.push(entry);
            }
        }
        if st["state"] == "unhealthy" {
            break st;
        }
        assert!(Instant::now() < deadline, "never given up on; plans seen {seen:?}, last {st}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(seen.len() >= 3, "too few backoffs observed: {seen:?}");
    for pair in seen.windows(2) {
        let ((a0, d0), (a1, d1)) = (pair[0], pair[1]);
        assert!(a1 > a0, "attempts must grow: {seen:?}");
        assert!(d1 >= d0 && d1 <= 400, "backoff must grow up to the cap: {seen:?}");
    }
    assert!(seen.iter().all(|&(a, d)| d == (100 << (a - 1)).min(400)), "not doubling from 100 ms: {seen:?}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("failed 5 times"), "{last}");
    let text = apiary.run(&["status", "c"]);
    assert!(text.ok().stdout.contains("unhealthy"), "{}", text.stdout);
    apiary.run(&["rm", "c"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn status_shows_the_next_restart_while_backing_off() {
    let apiary = Apiary::new();
    // A long backoff, so that the plan is there to be seen in the text output.
    let restart =
        RestartPolicy { max_restarts: 3, window_secs: 300, backoff_initial_ms: 30_000, backoff_max_ms: 60_000 };
    let config = RunConfig::builder("b", Source::command("sh", ["-c", "exit 9"]))
        .isolation(Isolation::None)
        .restart(restart)
        .build()
        .unwrap();
    apiary.state().save_config(&config).unwrap();
    run_checked(&apiary, &["start", "b"]).ok();
    let st = wait_status(&apiary, "b", "restarting", |s| s["state"] == "restarting" && s.get("nextRestart").is_some());
    assert_eq!(st["nextRestart"]["attempt"], 1, "{st}");
    assert_eq!(st["nextRestart"]["backoffMs"], 30_000, "{st}");
    let text = apiary.run(&["status", "b"]);
    let line = text.ok().stdout.lines().find(|l| l.starts_with("Next restart:")).map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("no next restart line: {}", text.stdout));
    assert!(line.contains("attempt 1 at ") && line.contains("backoff 30000 ms"), "{line}");
    apiary.run(&["rm", "b"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}
