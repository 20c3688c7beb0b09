//! ProcessLauncher against real children: the environment servers read, piped stdio with the
//! fixture MCP server, exit reasons, and stopping whole process groups (SIGTERM, then SIGKILL).

use std::sync::Arc;
use std::time::Duration;

use apiary_config::{CommandLine, RunConfig, Source, Transport};
use apiary_runtime::log::LogFile;
use apiary_runtime::pid::{ProcRef, group_id_exists};
use apiary_runtime::process::{ProcessError, ProcessLauncher};
use apiary_transport::launch::{ChildHandle, Launch, LaunchError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn sh(script: &str) -> ProcessLauncher {
    ProcessLauncher::new(CommandLine { program: "sh".into(), args: vec!["-c".into(), script.into()] })
}

async fn read_all_stdout(child: &mut ChildHandle) -> String {
    let mut out = String::new();
    timeout(LIMIT, child.stdout.read_to_string(&mut out)).await.expect("stdout closes").expect("stdout reads");
    out
}

/// Waits (bounded) until no process of the group is left.
async fn group_gone(pgid: u32) -> bool {
    for _ in 0..400 {
        if !group_id_exists(pgid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn injects_the_transport_variables_and_lets_the_config_override_them() {
    let config = RunConfig::builder(
        "t",
        Source::command("sh", ["-c", "echo \"$MCP_TRANSPORT $MCP_PORT $FASTMCP_PORT $MCP_HOST $EXTRA\""]),
    )
    .transport(Transport::StreamableHttp)
    .target_port(18123)
    .env("EXTRA", "x")
    .build()
    .unwrap();
    let launcher = ProcessLauncher::for_run_config(&config).unwrap();
    let mut child = launcher.launch().await.unwrap();
    assert_eq!(read_all_stdout(&mut child).await, "streamable-http 18123 18123 127.0.0.1 x\n");

    let stdio = RunConfig::builder("t", Source::command("sh", ["-c", "echo \"$MCP_TRANSPORT:${MCP_PORT-unset}\""]))
        .build()
        .unwrap();
    let mut child = ProcessLauncher::for_run_config(&stdio).unwrap().launch().await.unwrap();
    assert_eq!(read_all_stdout(&mut child).await, "stdio:unset\n");

    let over = RunConfig::builder("t", Source::command("sh", ["-c", "echo $MCP_TRANSPORT"]))
        .env("MCP_TRANSPORT", "mine")
        .build()
        .unwrap();
    let mut child = ProcessLauncher::for_run_config(&over).unwrap().launch().await.unwrap();
    assert_eq!(read_all_stdout(&mut child).await, "mine\n");
}

#[test]
fn refuses_configs_it_cannot_run() {
    let remote = RunConfig::builder("t", Source::remote("https://example.com/mcp")).build().unwrap();
    assert!(matches!(ProcessLauncher::for_run_config(&remote), Err(ProcessError::NoCommand("remote"))));
    let unresolved = RunConfig::builder("t", Source::npx("pkg")).transport(Transport::Sse).build().unwrap();
    let err = ProcessLauncher::for_run_config(&unresolved).unwrap_err();
    assert!(matches!(err, ProcessError::UnresolvedPort(Transport::Sse)));
    assert!(err.to_string().contains("targetPort"));
}

#[tokio::test]
async fn package_sources_run_through_their_launcher() {
    let config = RunConfig::builder("t", Source::npx("@scope/pkg@1.0")).args(["--flag"]).build().unwrap();
    let launcher = ProcessLauncher::for_run_config(&config).unwrap();
    assert_eq!(launcher.describe(), "npx -y @scope/pkg@1.0 --flag");
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let launcher =
        ProcessLauncher::new(CommandLine { program: "/nonexistent/apiary-no-such-server".into(), args: vec![] });
    match launcher.launch().await {
        Err(LaunchError::Spawn { program, .. }) => {
            assert_eq!(program, "/nonexistent/apiary-no-such-server")
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[tokio::test]
async fn exit_reasons_carry_the_code_or_the_signal() {
    let child = sh("exit 3").launch().await.unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert_eq!(reason.code, Some(3));
    assert_eq!(reason.to_string(), "exited with status 3");

    let child = sh("kill -9 $$").launch().await.unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert_eq!(reason.signal, Some(9));
    assert_eq!(reason.code, None);
}

#[tokio::test]
async fn kill_stops_the_whole_group_with_sigterm() {
    // The shell leads the group; its two background sleeps are the "npx → node" grandchildren.
    let child = sh("sleep 300 & sleep 300 & echo ready; wait").launch().await.unwrap();
    let pgid = child.pid.unwrap();
    let mut lines = BufReader::new(child.stdout).lines();
    let first = timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(first.as_deref(), Some("ready"));
    assert!(group_id_exists(pgid));
    child.kill.send(()).unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert_eq!(reason.signal, Some(15), "{reason}");
    assert!(group_gone(pgid).await, "processes of group {pgid} remain");
}

#[tokio::test]
async fn dropping_the_kill_sender_stops_the_child() {
    let child = sh("echo ready; exec sleep 300").launch().await.unwrap();
    let pid = child.pid.unwrap();
    let proc_ref = ProcRef::capture(pid);
    let mut lines = BufReader::new(child.stdout).lines();
    timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    assert!(proc_ref.is_alive());
    drop(child.kill);
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert_eq!(reason.signal, Some(15));
    assert!(group_gone(pid).await);
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
    // An ignored signal stays ignored across exec, so both the shell and its sleep ignore TERM.
    let child = sh("trap '' TERM; sleep 300 & echo ready; wait")
        .grace_period(Duration::from_millis(300))
        .launch()
        .await
        .unwrap();
    let pgid = child.pid.unwrap();
    let mut lines = BufReader::new(child.stdout).lines();
    timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    child.kill.send(()).unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert_eq!(reason.signal, Some(9), "{reason}");
    assert!(group_gone(pgid).await);
}

#[tokio::test]
async fn processes_left_behind_by_an_exiting_child_are_stopped() {
    let child = sh("sleep 300 & exit 0").launch().await.unwrap();
    let pgid = child.pid.unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert_eq!(reason.code, Some(0));
    assert!(group_gone(pgid).await, "the background sleep survived");
}

#[tokio::test]
async fn stderr_goes_to_the_log_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(LogFile::open(dir.path().join("s.log"), 1 << 20).unwrap());
    let child = sh("echo to-stderr >&2; echo done").stderr_to(Arc::clone(&log)).launch().await.unwrap();
    assert!(child.stderr.is_none());
    timeout(LIMIT, child.exited).await.unwrap().unwrap();
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(log.path()).unwrap();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(text, "to-stderr\n");

    // Without a log, the caller gets stderr.
    let mut child = sh("echo mine >&2").launch().await.unwrap();
    let mut err = String::new();
    timeout(LIMIT, child.stderr.as_mut().unwrap().read_to_string(&mut err)).await.unwrap().unwrap();
    assert_eq!(err, "mine\n");
}

#[tokio::test]
async fn speaks_mcp_with_the_fixture_server_over_stdio() {
    let server = apiary_testkit::binaries::testkit_server();
    let launcher = ProcessLauncher::new(CommandLine {
        program: server.to_string_lossy().into_owned(),
        args: vec!["--stdio".into()],
    });
    let mut child = launcher.launch().await.unwrap();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    child.stdin.write_all(init.as_bytes()).await.unwrap();
    child.stdin.write_all(b"\n").await.unwrap();
    child.stdin.flush().await.unwrap();
    let mut lines = BufReader::new(child.stdout).lines();
    let line = timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], 1);
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18");
    let pid = child.pid.unwrap();
    drop(child.kill);
    timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert!(group_gone(pid).await);
}

#[test]
fn finds_programs_like_execvp() {
    use apiary_runtime::process::find_program;
    let path = std::ffi::OsString::from("/nonexistent-dir:/bin:/usr/bin");
    assert!(find_program("sh", Some(&path)).unwrap().ends_with("sh"));
    let err = find_program("apiary-no-such-program", Some(&path)).unwrap_err();
    assert_eq!(err.to_string(), "cannot find `apiary-no-such-program`: it is not on PATH");
    let err = find_program("/nonexistent/x", None).unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("data.txt");
    std::fs::write(&plain, "x").unwrap();
    let err = find_program(plain.to_str().unwrap(), None).unwrap_err();
    assert!(err.to_string().contains("not an executable"), "{err}");
    // A PATH set for the server is the one searched.
    let launcher = sh("true").env("PATH", "/nonexistent-dir");
    assert!(launcher.check_program().is_err());
    assert!(sh("true").check_program().is_ok());
}
