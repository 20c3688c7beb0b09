//! Runs `apiary-bench` for about a second against the real fixture server over Streamable HTTP
//! and checks that calls succeed and the JSON report holds every field (no timings asserted).

// Helpers outside #[test] functions panic on setup failures, as the tests do.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills and reaps the child when the test ends, passing or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_testkit() -> (Reaped, String) {
    let mut child = Command::new(apiary_testkit::binaries::testkit_server())
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Reaped(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("the testkit server printed no URL");
    (child, url.trim().to_owned())
}

fn wait_bounded(child: &mut Reaped, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "apiary-bench did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_sessions_echo_through_the_testkit_server_with_and_without_quick_ack() {
    let (server, url) = start_testkit();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let server_pid = server.0.id();
    let dir = tempfile::tempdir().unwrap();
    for quick_ack in [false, true] {
        let json_path = dir.path().join(format!("report-{quick_ack}.json"));
        let out_path = dir.path().join(format!("stdout-{quick_ack}.txt"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_apiary-bench"));
        command
            .args(["--url", &url, "--sessions", "2", "--warmup", "0", "--duration", "1"])
            .args(["--payload-bytes", "1024", "--request-timeout-ms", "5000", "--label", "testkit"])
            .args(["--pid", &server_pid.to_string(), "--json"])
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap());
        if quick_ack {
            command.arg("--quick-ack");
        }
        let mut bench = Reaped(command.spawn().unwrap());
        let status = wait_bounded(&mut bench, Duration::from_secs(60));
        assert!(status.success(), "apiary-bench failed: {status}");

        let row = std::fs::read_to_string(&out_path).unwrap();
        assert!(row.starts_with("| testkit | 2 | 1024 | "), "{row}");

        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
        assert!(report["calls"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(report["errors"], 0, "{report:#}");
        assert_eq!(report["quick_ack"], quick_ack);
        assert_eq!(report["protocol_version"], "2025-11-25");
        assert_eq!(report["sessions"], 2);
        assert_eq!(report["command_line"][1], "--url");
        for field in ["calls_per_s", "warmup_calls", "warmup_errors", "clock_ticks_per_s"] {
            assert!(report[field].is_number(), "{field} missing: {report:#}");
        }
        for field in ["min", "mean", "p50", "p99", "p99_9", "max"] {
            assert!(report["latency_us"][field].as_f64().unwrap() > 0.0, "latency {field}: {report:#}");
        }
        assert!(report["self_cpu"]["cpu_s"].is_number());
        let target = &report["target"];
        assert!(target["rss_kib"].as_u64().unwrap() > 0, "{target:#}");
        assert!(target["cpu"]["cpu_us_per_call"].is_number(), "{target:#}");
        assert_eq!(target["per_pid"][0]["pid"], server_pid);
        assert_eq!(target["per_pid"][0]["tree_pids"][0], server_pid);
    }
}

/// `--calls-per-session 1`: every session makes one call, is deleted, and a new one is opened;
/// the server sees all of them end (it keeps no more sessions than the bench holds open).
#[test]
fn sessions_churn_with_calls_per_session() {
    let (_server, url) = start_testkit();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let mut bench = Reaped(
        Command::new(env!("CARGO_BIN_EXE_apiary-bench"))
            .args(["--url", &url, "--sessions", "2", "--warmup", "0", "--duration", "1"])
            .args(["--calls-per-session", "1", "--json"])
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = wait_bounded(&mut bench, Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["errors"], 0, "{report:#}");
    let (calls, closed) = (report["calls"].as_u64().unwrap(), report["sessions_closed"].as_u64().unwrap());
    assert!(calls > 2, "{report:#}");
    // Every session is closed after its call, the last ones too (a call that ends after the
    // window is not counted, but its session is still closed).
    assert!(closed >= calls && closed <= calls + 2, "calls {calls}, sessions closed {closed}");
}

#[test]
fn a_dead_endpoint_is_counted_as_errors_not_a_crash() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let mut bench = Reaped(
        Command::new(env!("CARGO_BIN_EXE_apiary-bench"))
            .args(["--url", &format!("http://127.0.0.1:{port}/mcp"), "--sessions", "1"])
            .args(["--warmup", "0", "--duration", "1", "--json"])
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = wait_bounded(&mut bench, Duration::from_secs(60));
    assert!(status.success(), "{status}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["calls"], 0);
    assert!(report["errors_by_kind"]["connect"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["target"].is_null());
}

#[test]
fn hold_opens_idle_sessions_over_shared_connections_and_closes_them_all() {
    let (server, url) = start_testkit();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("hold.json");
    let out_path = dir.path().join("hold.txt");
    let mut bench = Reaped(
        Command::new(env!("CARGO_BIN_EXE_apiary-bench"))
            .args(["--url", &url, "--hold", "150", "--hold-secs", "0", "--label", "held"])
            .args(["--pid", &server.0.id().to_string(), "--json"])
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let status = wait_bounded(&mut bench, Duration::from_secs(120));
    assert!(status.success(), "apiary-bench failed: {status}");
    let row = std::fs::read_to_string(&out_path).unwrap();
    assert!(row.starts_with("| held | 150 of 150 | 0 | "), "{row}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["sessions_held"], 150);
    assert_eq!(report["sessions_closed"], 150);
    // 150 sessions, but never more than 64 connections.
    assert_eq!(report["connections"], 64);
    assert!(report["rss_held_kib"].as_u64().unwrap() > 0);
    assert!(report["kib_per_session"].is_f64());
}

/// Runs apiary-bench with `args` (60 s bound) and returns its JSON report.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let mut bench = Reaped(
        Command::new(env!("CARGO_BIN_EXE_apiary-bench"))
            .args(args)
            .arg("--json")
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = wait_bounded(&mut bench, Duration::from_secs(60));
    assert!(status.success(), "apiary-bench failed: {status}");
    serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap()
}

/// 600 sessions (above the 512 that make the tool raise its file limit), opened through the
/// bounded handshake ramp: all are open by the end (a loaded machine may still be opening some
/// when the window starts, so that count is only reported); `--tool` names
/// the tool called, and a tool the server lacks is counted as errors, not calls.
#[test]
fn six_hundred_sessions_open_through_the_ramp_and_the_tool_is_the_named_one() {
    let (_server, url) = start_testkit();
    let report =
        bench_json(&["--url", &url, "--sessions", "600", "--warmup", "10", "--duration", "2", "--tool", "echo"]);
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["tool"], "echo");
    let at_start = report["sessions_ready_at_start"].as_u64().unwrap();
    assert!(at_start > 0 && at_start <= 600, "{report:#}");
    assert_eq!(report["sessions_ready_at_end"], 600, "{report:#}");
    assert!(report["calls"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["nofile_limit"].as_u64().unwrap() >= 600, "{report:#}");

    let report =
        bench_json(&["--url", &url, "--sessions", "1", "--warmup", "0", "--duration", "1", "--tool", "no_such"]);
    assert_eq!(report["calls"], 0, "{report:#}");
    assert!(report["errors"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["sessions_ready_at_end"], 1, "a failed call keeps its session: {report:#}");
}

/// `--bearer-file`: every request carries `Authorization: Bearer <token>`; a 401 is counted as
/// an `http_status` error and the token is not in the report. The server is a bare listener that
/// records each request head and answers 401.
#[test]
fn the_bearer_file_goes_on_every_request_and_not_into_the_report() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (heads_tx, heads_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Ends when the test process does; each connection answers one request, then closes.
        for stream in listener.incoming().flatten().take(100) {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = heads_tx.send(String::from_utf8_lossy(&head).to_lowercase());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "tok-3f9a.b.c\n").unwrap();
    let report = bench_json(&[
        "--url",
        &url,
        "--sessions",
        "1",
        "--warmup",
        "0",
        "--duration",
        "1",
        "--bearer-file",
        token_path.to_str().unwrap(),
    ]);
    assert!(report["errors_by_kind"]["http_status"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["calls"], 0);
    assert!(!report.to_string().contains("tok-3f9a"), "the token is in the report: {report:#}");
    let heads: Vec<String> = heads_rx.try_iter().collect();
    assert!(!heads.is_empty());
    for head in &heads {
        assert!(head.contains("\r\nauthorization: bearer tok-3f9a.b.c\r\n"), "{head}");
    }
}
