//! `apiary` end to end with the real proxy and the fixture MCP server: run prints a URL that
//! serves, stop/rm leave no process, crashes show up in status, export round-trips through
//! `run --from-config`, foreground runs and `apiary proxy` stop cleanly on a signal, and a proxy
//! killed outright leaves a stale record whose servers `apiary stop` still cleans up.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use apiary_runtime::pid::ProcRef;
use apiary_testkit::binaries::testkit_server;
use rustix::process::Signal;
use serde_json::Value;
use support::{Apiary, Spawned, finish};

fn server() -> String {
    testkit_server().to_string_lossy().into_owned()
}

fn assert_url(url: &str) -> u16 {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/mcp"))
        .unwrap_or_else(|| panic!("not a proxy URL: {url:?}"));
    rest.parse().unwrap()
}

fn status_json(apiary: &Apiary, name: &str) -> Value {
    serde_json::from_str(&apiary.run(&["status", name, "--format", "json"]).ok().stdout).unwrap()
}

/// The first stdout line of a running process, within the limit.
fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("a URL line within 60 s").trim().to_owned()
}

#[test]
fn run_prints_a_serving_url_and_stop_start_rm_leave_no_process() {
    let apiary = Apiary::new();
    let out = apiary.run(&["run", "--name", "t", "--", &server(), "--stdio"]);
    let url = out.ok().stdout.trim().to_owned();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let port = assert_url(&url);
    assert!(!apiary.processes().is_empty());

    // By name and by URL.
    let out = apiary.run(&["mcp", "list", "tools", "--server", "t"]);
    assert!(out.ok().stdout.contains("echo"), "{}", out.stdout);
    let out = apiary.run(&["mcp", "call", "pid", "--server", &url]);
    let child_pid: u32 = out.ok().stdout.trim().parse().unwrap();
    assert_ne!(child_pid, 0);

    let listed = apiary.run(&["ls"]);
    let row = listed.ok().stdout.lines().nth(1).unwrap().to_owned();
    assert!(row.starts_with("t ") && row.contains("running") && row.contains(&url), "{row}");
    let st = status_json(&apiary, "t");
    assert_eq!(st["state"], "running");
    assert_eq!(st["url"], url.as_str());
    let proxy_pid = st["proxy"]["pid"].as_u64().unwrap() as u32;
    assert!(apiary.processes().contains(&proxy_pid));

    apiary.run(&["stop", "t"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    assert_eq!(status_json(&apiary, "t")["state"], "stopped");
    assert_eq!(apiary.run(&["ls"]).ok().stdout, "No MCP servers found\n");

    // start keeps the port, so clients keep their URL.
    let again = apiary.run(&["start", "t"]);
    assert_eq!(again.ok().stdout.trim(), url);
    assert_eq!(assert_url(again.stdout.trim()), port);
    let out = apiary.run(&["mcp", "call", "echo", "--server", "t", "--args", r#"{"text":"hi"}"#]);
    assert_eq!(out.ok().stdout.trim(), "hi");
    // start on a running workload just prints its URL; restart gives a new proxy process.
    assert_eq!(apiary.run(&["start", "t"]).ok().stdout.trim(), url);
    let before = status_json(&apiary, "t")["proxy"]["pid"].clone();
    assert_eq!(apiary.run(&["restart", "t"]).ok().stdout.trim(), url);
    assert_ne!(status_json(&apiary, "t")["proxy"]["pid"], before);

    apiary.run(&["rm", "t"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    assert!(apiary.state().names().unwrap().is_empty());
    assert!(!apiary.state().proxy_log_path("t").unwrap().exists());
}

/// The host pids of every process descended from `root`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Field 4, after the parenthesised command name (which may hold spaces).
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILL of the detached proxy (no chance to clean up): its server goes with it, `list` and
/// `status` say what happened, and `restart` brings the workload back on its URL. Once with the
/// default sandbox and once with a plain child, whose death rides on the same parent-death signal.
#[test]
fn a_killed_proxy_leaves_no_orphan_and_restart_brings_it_back() {
    let apiary = Apiary::new();
    for (name, isolation) in [("k", "sandbox"), ("p", "none")] {
        let url = apiary
            .run(&["run", "--name", name, "--isolation", isolation, "--", &server(), "--stdio"])
            .ok()
            .stdout
            .trim()
            .to_owned();
        let proxy_pid = status_json(&apiary, name)["proxy"]["pid"].as_u64().unwrap().to_string();
        // Every process under the proxy (the sandbox helper, the server), by host pid.
        let tree = descendants(proxy_pid.parse().unwrap());
        assert!(!tree.is_empty(), "{isolation}: the proxy has no child");

        let killed = std::process::Command::new("kill").args(["-9", &proxy_pid]).status().unwrap();
        assert!(killed.success());
        // Nothing of this workload survives its proxy: no orphaned server, no sandbox helper.
        assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new(), "{isolation}: orphans after SIGKILL of the proxy");
        let deadline = Instant::now() + Duration::from_secs(15);
        let alive = || {
            tree.iter().copied().filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists()).collect::<Vec<_>>()
        };
        while !alive().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(alive(), Vec::<u32>::new(), "{isolation}: orphaned after SIGKILL of the proxy");

        let st = status_json(&apiary, name);
        assert_eq!(st["state"], "error", "{st}");
        let text = apiary.run(&["status", name]);
        assert!(text.ok().stdout.contains("gone without having stopped cleanly"), "{}", text.stdout);
        let row = apiary.run(&["ls", "--all"]).ok().stdout.clone();
        assert!(row.lines().any(|l| l.starts_with(&format!("{name} ")) && l.contains("error")), "{row}");

        assert_eq!(apiary.run(&["restart", name]).ok().stdout.trim(), url);
        assert_eq!(status_json(&apiary, name)["state"], "running");
        let out = apiary.run(&["mcp", "call", "echo", "--server", name, "--args", r#"{"text":"back"}"#]);
        assert_eq!(out.ok().stdout.trim(), "back");
        apiary.run(&["rm", name]).ok();
        assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    }
}

#[test]
fn a_crashed_server_shows_restarts_and_the_last_exit_reason() {
    let apiary = Apiary::new();
    apiary.run(&["run", "--name", "c", "--", &server(), "--stdio"]).ok();
    let out = apiary.run(&["mcp", "call", "crash", "--server", "c"]);
    out.failed();
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = status_json(&apiary, "c");
        if st["restarts"].as_u64().unwrap_or(0) >= 1 || Instant::now() >= deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(st["restarts"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["lastExit"].as_str().unwrap().contains("exited with status 3"), "{st}");
    let text = apiary.run(&["status", "c"]);
    assert!(text.ok().stdout.contains("Last exit:"), "{}", text.stdout);
    // The proxy itself serves on: once the restart is done, calls work again (during it, the
    // proxy answers 503 + Retry-After).
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_json(&apiary, "c")["state"] != "running" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status_json(&apiary, "c")["state"], "running");
    let out = apiary.run(&["mcp", "call", "echo", "--server", "c", "--args", r#"{"text":"still"}"#]);
    assert_eq!(out.ok().stdout.trim(), "still");
    apiary.run(&["rm", "c"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn export_and_run_from_config_reproduce_the_workload() {
    let apiary = Apiary::new();
    // A group other than `default` must exist before a workload joins it.
    apiary.run(&["group", "create", "team"]).ok();
    let url = apiary
        .run(&["run", "--name", "x", "--group", "team", "-e", "GREETING=hello", "--", &server(), "--stdio"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let file = apiary.scratch().join("x.json");
    apiary.run(&["export", "x", file.to_str().unwrap()]).ok();
    let exported = std::fs::read_to_string(&file).unwrap();
    apiary.run(&["rm", "x"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());

    let again = apiary.run(&["run", "--from-config", file.to_str().unwrap()]);
    assert_eq!(again.ok().stdout.trim(), url);
    assert_eq!(apiary.run(&["export", "x"]).ok().stdout, exported);
    let st = status_json(&apiary, "x");
    assert_eq!(st["group"], "team");
    let out = apiary.run(&["mcp", "call", "echo", "--server", "x", "--args", r#"{"text":"back"}"#]);
    assert_eq!(out.ok().stdout.trim(), "back");

    // The same name cannot run twice.
    let out = apiary.run(&["run", "--from-config", file.to_str().unwrap()]);
    assert!(out.failed().contains("already running"), "{}", out.stderr);
    apiary.run(&["rm", "x"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn a_missing_program_fails_the_run_with_the_reason_and_leaves_nothing() {
    let apiary = Apiary::new();
    let out = apiary.run(&["run", "--name", "m", "--", "/nonexistent/mcp-server"]);
    let err = out.failed();
    assert!(err.contains("cannot find `/nonexistent/mcp-server`: no such file"), "{err}");
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    assert_eq!(status_json(&apiary, "m")["state"], "stopped");
}

#[test]
fn foreground_run_serves_until_sigterm_and_cleans_up() {
    let apiary = Apiary::new();
    let mut child = apiary
        .command(&["run", "--foreground", "--name", "fg", "--", &server(), "--stdio"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = first_line(&mut child);
    assert_url(&url);
    let out = apiary.run(&["mcp", "call", "echo", "--server", "fg", "--args", r#"{"text":"fg"}"#]);
    assert_eq!(out.ok().stdout.trim(), "fg");
    assert_eq!(status_json(&apiary, "fg")["proxy"]["pid"], child.id());
    ProcRef::capture(child.id()).signal(Signal::TERM);
    let out = finish(child, Duration::from_secs(30), "apiary run --foreground");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("serving"), "{}", out.stderr);
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    assert_eq!(status_json(&apiary, "fg")["state"], "stopped");
}

#[test]
fn a_killed_proxy_leaves_a_stale_record_and_stop_still_stops_its_server() {
    let apiary = Apiary::new();
    // A local server that speaks Streamable HTTP on the port the proxy gives it (MCP_PORT), and
    // says something on stderr first.
    let script = format!("echo server-stderr-line >&2; exec {} --http 127.0.0.1:$MCP_PORT", server());
    let url = apiary
        // Unsandboxed: the script names a binary outside what the sandbox shares with `sh`.
        .run(&[
            "run",
            "--name",
            "h",
            "--isolation",
            "none",
            "--transport",
            "streamable-http",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_url(&url);
    let out = apiary.run(&["mcp", "list", "tools", "--server", "h"]);
    assert!(out.ok().stdout.contains("echo"), "{}", out.stdout);
    assert!(
        apiary.run(&["logs", "h"]).ok().stdout.contains("server-stderr-line"),
        "server stderr did not reach the log"
    );
    assert!(apiary.run(&["logs", "h", "--proxy"]).ok().stdout.contains("serving"), "proxy log lacks the serving line");

    let st = status_json(&apiary, "h");
    let proxy =
        ProcRef { pid: st["proxy"]["pid"].as_u64().unwrap() as u32, start_ticks: st["proxy"]["startTicks"].as_u64() };
    let servers: Vec<u32> = apiary.processes().into_iter().filter(|p| *p != proxy.pid).collect();
    assert!(!servers.is_empty(), "the HTTP server should be running");
    assert!(proxy.signal(Signal::KILL));
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.is_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its server lives on in its own process group; the record is stale.
    assert!(servers.iter().all(|p| ProcRef::capture(*p).is_alive()));
    assert_eq!(status_json(&apiary, "h")["state"], "error");
    assert_eq!(apiary.run(&["ls"]).ok().stdout, "No MCP servers found\n");

    apiary.run(&["stop", "h"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    assert_eq!(status_json(&apiary, "h")["state"], "stopped");
    apiary.run(&["rm", "h"]).ok();
}

#[test]
fn proxy_command_fronts_a_stdio_command_and_an_http_server_with_json_logs() {
    let apiary = Apiary::new();
    let mut child = apiary
        .command(&["proxy", "p", "--", &server(), "--stdio"])
        .env("UNSTRUCTURED_LOGS", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = first_line(&mut child);
    let out = apiary.run(&["mcp", "call", "echo", "--server", &url, "--args", r#"{"text":"p"}"#]);
    assert_eq!(out.ok().stdout.trim(), "p");
    ProcRef::capture(child.id()).signal(Signal::INT);
    let out = finish(child, Duration::from_secs(30), "apiary proxy");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let first_log = out.stderr.lines().next().unwrap_or_default();
    let v: Value = serde_json::from_str(first_log).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {first_log}"));
    assert!(v["level"].is_string(), "{v}");
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    // Nothing was saved: `apiary proxy` is not a workload.
    assert!(apiary.state().names().unwrap_or_default().is_empty());

    // In front of an HTTP server the test runs itself.
    let mut upstream = Spawned::group_leader_piped(&server(), &["--http", "127.0.0.1:0"]);
    let upstream_url = first_line(&mut upstream.child);
    let mut child = apiary
        .command(&["proxy", "q", "--target-uri", &upstream_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = first_line(&mut child);
    let out = apiary.run(&["mcp", "call", "echo", "--server", &url, "--args", r#"{"text":"q"}"#]);
    assert_eq!(out.ok().stdout.trim(), "q");
    ProcRef::capture(child.id()).signal(Signal::TERM);
    let out = finish(child, Duration::from_secs(30), "apiary proxy --target-uri");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// `apiary run` with real registry packages, resolved from the caches `cargo xtask test-env`
/// warmed (offline), with the tools bin first on PATH; `rm` must take npx's and uvx's whole
/// process trees with it.
#[test]
fn real_packages_run_through_npx_and_uvx_and_rm_leaves_no_process() {
    use apiary_testkit::env;
    let apiary = Apiary::new();
    let path = env::path_with_tools();

    let version = env::setting("NPM_SERVER_EVERYTHING_VERSION");
    let package = match &version {
        Some(v) => format!("npx://@modelcontextprotocol/server-everything@{v}"),
        None => "npx://@modelcontextprotocol/server-everything".to_owned(),
    };
    let mut cmd = apiary.command(&["run", &package, "--", "stdio"]);
    cmd.env("PATH", &path).env("npm_config_offline", "true");
    let out =
        finish(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), support::COMMAND_LIMIT, "run npx");
    let url = out.ok().stdout.trim().to_owned();
    assert_url(&url);
    let out = apiary.run(&["mcp", "call", "echo", "--server", "server-everything", "--args", r#"{"message":"npx"}"#]);
    assert_eq!(out.ok().stdout.trim(), "Echo: npx");

    // In the default sandbox. The harness's `uvx` wrapper would default uv's cache, tool
    // environments and interpreter to places under its own install prefix, which the sandbox
    // shares read-only; set here, Apiary sees them too and shares the cache and the tool
    // environments read-write and the pinned interpreter's installation read-only.
    let mut cmd = apiary.command(&["run", "uvx://mcp-server-time"]);
    cmd.env("PATH", &path)
        .env("UV_OFFLINE", "1")
        .env("UV_CACHE_DIR", env::required_setting("UV_CACHE_DIR"))
        .env("UV_PYTHON", env::required_setting("UV_PYTHON"))
        .env("UV_TOOL_DIR", apiary.scratch().join("uv-tools"));
    let out =
        finish(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), support::COMMAND_LIMIT, "run uvx");
    assert_url(out.ok().stdout.trim());
    let out = apiary.run(&[
        "mcp",
        "call",
        "get_current_time",
        "--server",
        "mcp-server-time",
        "--args",
        r#"{"timezone":"UTC"}"#,
        "--timeout",
        "60s",
    ]);
    assert!(out.ok().stdout.contains("UTC"), "{}", out.stdout);
    let status = apiary.run(&["status", "mcp-server-time"]);
    assert!(status.ok().stdout.contains("Isolation:   sandbox"), "{}", status.stdout);

    let listed = apiary.run(&["ls", "--format", "json"]);
    let v: Value = serde_json::from_str(&listed.ok().stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["mcp-server-time", "server-everything"]);

    apiary.run(&["rm", "--all"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn run_waits_for_a_local_http_server_and_ctrl_c_cancels_the_start() {
    let apiary = Apiary::new();
    // Never listens on MCP_PORT, so `run` keeps waiting for it.
    let child = apiary
        .command(&["run", "--name", "w", "--transport", "streamable-http", "--", "sleep", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the proxy and its server are up, then interrupt the waiting `run`.
    let deadline = Instant::now() + Duration::from_secs(30);
    while apiary.processes().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(apiary.processes().len() >= 3, "run, proxy and server should be up: {:?}", apiary.processes());
    ProcRef::capture(child.id()).signal(Signal::INT);
    let out = finish(child, Duration::from_secs(30), "apiary run (interrupted)");
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
    assert_eq!(status_json(&apiary, "w")["state"], "stopped");
}
