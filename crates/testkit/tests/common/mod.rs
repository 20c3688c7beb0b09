//! Helpers shared by the integration tests: starting the `apiary-testkit-server` binary and
//! talking raw newline-delimited JSON-RPC to it over stdio, always under a timeout.
#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a different subset.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest wait for any single line from the server.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most lines skipped while looking for one response (notifications, server requests).
const MAX_SKIPPED_LINES: usize = 1000;

/// The fixture server binary built for this test run.
pub fn server_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apiary-testkit-server"));
    cmd.kill_on_drop(true);
    cmd
}

/// Bound on the HTTP server printing its URL.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawns `apiary-testkit-server --http 127.0.0.1:0` and returns it with the URL it printed.
pub async fn spawn_http() -> (Child, String) {
    let mut server = server_command()
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line())
        .await
        .expect("the server printed no URL in time")
        .unwrap()
        .expect("the server exited before printing its URL");
    (server, url)
}

/// A fixture server spoken to over stdio.
pub struct StdioServer {
    pub child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl StdioServer {
    /// Spawns `apiary-testkit-server --stdio` (its logs are discarded).
    pub fn spawn() -> Self {
        Self::spawn_with_stderr(Stdio::null())
    }

    /// Spawns `apiary-testkit-server --stdio` with its logs going to `stderr`; with
    /// `Stdio::piped()`, read them from `child.stderr`.
    pub fn spawn_with_stderr(stderr: Stdio) -> Self {
        let mut child = server_command()
            .arg("--stdio")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, stdin, lines }
    }

    /// Writes one message as one line.
    pub async fn send(&mut self, message: Value) {
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next line from the server, parsed; `None` at end of output.
    pub async fn next_message(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(LINE_TIMEOUT, self.lines.next_line())
            .await
            .expect("the server sent nothing within the line timeout")
            .unwrap()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
    }

    /// Sends request `id` and returns its response with the messages the server sent before it
    /// (notifications and server-to-client requests).
    pub async fn request_collecting(&mut self, id: u64, method: &str, params: Value) -> (Value, Vec<Value>) {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await;
        let mut before = Vec::new();
        for _ in 0..MAX_SKIPPED_LINES {
            let message = self.next_message().await.expect("the server closed stdout before answering");
            if message.get("method").is_some() {
                before.push(message);
                continue;
            }
            assert_eq!(message.get("id"), Some(&json!(id)), "unexpected response: {message}");
            return (message, before);
        }
        panic!("no response to request {id} within {MAX_SKIPPED_LINES} lines");
    }

    /// Reads until the response to request `id`, skipping notifications; a response to any other
    /// request fails the test (none should be outstanding).
    pub async fn response(&mut self, id: u64) -> Value {
        for _ in 0..MAX_SKIPPED_LINES {
            let message = self.next_message().await.expect("the server closed stdout before answering");
            if message.get("method").is_some() {
                continue; // a notification or a server-to-client request
            }
            assert_eq!(message.get("id"), Some(&json!(id)), "unexpected response: {message}");
            return message;
        }
        panic!("no response to request {id} within {MAX_SKIPPED_LINES} lines");
    }

    /// Sends request `id` and returns its response.
    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await;
        self.response(id).await
    }

    /// Runs the initialize handshake at protocol revision 2025-11-25; returns the result.
    pub async fn initialize(&mut self) -> Value {
        self.initialize_with(json!({})).await
    }

    /// Like [`StdioServer::initialize`], declaring the client `capabilities`.
    pub async fn initialize_with(&mut self, capabilities: Value) -> Value {
        let response = self
            .request(
                1,
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": capabilities,
                    "clientInfo": { "name": "apiary-testkit-tests", "version": "0" }
                }),
            )
            .await;
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
        response["result"].clone()
    }

    /// Closes stdin and waits (bounded) for the process to exit; returns its exit code.
    pub async fn close(mut self) -> Option<i32> {
        drop(self.stdin);
        let status = tokio::time::timeout(LINE_TIMEOUT, self.child.wait())
            .await
            .expect("the server did not exit after stdin closed")
            .unwrap();
        status.code()
    }
}
