//! Harness for tests of the real `apiary` binary: a private state directory per test, commands
//! with a time limit, and a marker in the environment of everything a test starts, so the test
//! can see every process it caused (proxies and servers inherit it) and none outlives it.
//! [`cluster`], [`gateway`] and [`seed004`] hold what the tests against the real cluster
//! share; [`exchange`] what the vMCP token-exchange tests share.

#![allow(dead_code)]

pub mod cluster;
pub mod exchange;
pub mod gateway;
pub mod seed004;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use apiary_runtime::pid::ProcRef;
use apiary_runtime::state::StateDir;
use rustix::process::Signal;

/// Bound on any single `apiary` command (a detached start waits up to 60 s itself).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(90);

const MARKER_VAR: &str = "APIARY_TEST_MARKER";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "command failed\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Asserts a non-zero exit and returns stderr.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "command should have failed\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        &self.stderr
    }
}

/// One test's private Apiary installation.
pub struct Apiary {
    dir: tempfile::TempDir,
    marker: String,
}

impl Apiary {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Apiary { dir: tempfile::tempdir().expect("temp dir"), marker: format!("{}-{n}-{nanos}", std::process::id()) }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn state(&self) -> StateDir {
        StateDir::at(self.state_dir())
    }

    /// A scratch directory for the test's own files.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// `apiary ARGS` with this installation's environment, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_apiary"));
        cmd.args(args)
            .env("APIARY_STATE_DIR", self.state_dir())
            .env(MARKER_VAR, &self.marker)
            .env_remove("RUST_LOG")
            .env_remove("UNSTRUCTURED_LOGS")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `apiary ARGS` to completion (bounded).
    pub fn run(&self, args: &[&str]) -> Out {
        let child = self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn apiary");
        finish(child, COMMAND_LIMIT, &format!("apiary {}", args.join(" ")))
    }

    /// Every live process started by this test's commands (proxies and servers).
    pub fn processes(&self) -> Vec<u32> {
        let needle = format!("{MARKER_VAR}={}", self.marker);
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return out;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) && ProcRef::capture(pid).is_alive() {
                out.push(pid);
            }
        }
        out
    }

    /// Waits (bounded) until none of this test's processes is left; returns the survivors.
    pub fn wait_no_processes(&self) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Apiary {
    fn drop(&mut self) {
        if self.processes().is_empty() {
            return;
        }
        let _ = self.run(&["stop", "--all", "--timeout", "5"]);
        for pid in self.processes() {
            ProcRef::capture(pid).signal(Signal::KILL);
        }
    }
}

/// Waits for `child` within `limit`, collecting its output; kills it and panics past the limit.
pub fn finish(mut child: Child, limit: Duration, what: &str) -> Out {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A process started by the test itself, killed (group and all) and reaped on drop.
pub struct Spawned {
    pub child: Child,
    pub proc_ref: ProcRef,
    reaped: bool,
}

impl Spawned {
    /// Starts `program args` as the leader of a new process group.
    pub fn group_leader(program: &str, args: &[&str]) -> Self {
        Self::spawn_group_leader(program, args, Stdio::null())
    }

    /// Like [`Spawned::group_leader`], with stdout piped for the test to read.
    pub fn group_leader_piped(program: &str, args: &[&str]) -> Self {
        Self::spawn_group_leader(program, args, Stdio::piped())
    }

    fn spawn_group_leader(program: &str, args: &[&str], stdout: Stdio) -> Self {
        use std::os::unix::process::CommandExt;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let proc_ref = ProcRef::capture(child.id());
        Spawned { child, proc_ref, reaped: false }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once it has exited (reaping it).
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                self.reaped = true;
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.proc_ref.signal_group(Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bound on a started process printing its URL.
const URL_LIMIT: Duration = Duration::from_secs(30);

/// A process a test started that printed its URL first (`apiary vmcp serve`, the fixture
/// over HTTP): killed when dropped.
pub struct Running {
    pub child: tokio::process::Child,
    pub url: String,
}

/// Starts `cmd` and reads the URL it prints first; its stdout is drained after.
pub async fn start_printing_url(cmd: tokio::process::Command) -> Running {
    start_printing_url_logging(cmd, Stdio::null()).await
}

/// [`start_printing_url`] with `cmd`'s stderr going to `stderr` (a log file a test keeps).
pub async fn start_printing_url_logging(mut cmd: tokio::process::Command, stderr: Stdio) -> Running {
    use tokio::io::{AsyncBufReadExt, BufReader};
    cmd.stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(URL_LIMIT, lines.next_line())
        .await
        .expect("no URL printed in time")
        .unwrap()
        .expect("exited before printing its URL");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running { child, url }
}
