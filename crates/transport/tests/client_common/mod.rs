//! Shared harness for the client tests: runs the reference
//! `mcp-server-everything` (from the test tools bin) on a free loopback port, killing it on drop.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for every wait in these tests; a slow CI machine still finishes far earlier.
pub const WAIT: Duration = Duration::from_secs(30);

/// A tool from the test tools bin (`apiary_testkit::env`); panics with the fix when missing.
pub fn tool(name: &str) -> std::path::PathBuf {
    apiary_testkit::env::tool(name)
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A running `mcp-server-everything`; killed (and reaped) on drop.
pub struct Everything {
    child: Child,
    pub port: u16,
}

impl Everything {
    /// `mode` is `streamableHttp` (serves `/mcp`) or `sse` (serves `/sse` + `/message`).
    pub fn start(mode: &str) -> Everything {
        let port = free_port();
        let child = apiary_testkit::env::command("mcp-server-everything")
            .arg(mode)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mcp-server-everything");
        let mut server = Everything { child, port };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mcp-server-everything exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "mcp-server-everything did not listen on port {} within {WAIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
