//! The fixture server listening on HTTP, for tests in any package: started on a free loopback
//! port, its URL read from the first stdout line (bounded), stdout drained after so the server
//! never blocks on a full pipe, and the process killed when the handle drops.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound on the server printing its URL.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// A running `apiary-testkit-server --http`; killed when dropped.
pub struct HttpFixture {
    /// The server process.
    pub child: tokio::process::Child,
    /// Its MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
}

/// Starts `apiary-testkit-server --http 127.0.0.1:0` with `extra` arguments.
///
/// # Panics
/// If the server cannot start or prints no URL within 30 s (a failed test).
pub async fn start(extra: &[&str]) -> HttpFixture {
    let mut child = tokio::process::Command::new(crate::binaries::testkit_server())
        .args(["--http", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start apiary-testkit-server: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout pipe"));
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(STARTUP_LIMIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the fixture printed no URL within {STARTUP_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("reading the fixture's stdout: {e}"))
        .unwrap_or_else(|| panic!("the fixture exited before printing its URL"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    HttpFixture { child, url }
}
