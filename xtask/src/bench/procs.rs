//! Starting and stopping the processes of one target: each started with its output in log
//! files, its URL learnt, checked ready with a `tools/list`, and stopped (SIGTERM to it and
//! every descendant, SIGKILL to what is left after a grace period) when the `Started` value is
//! dropped, so an error or a panic leaves no stray peer behind.

use super::matrix::{Spec, UrlFrom};
use super::probe;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a target may take to print its URL and answer a `tools/list` (Node and Python
/// peers start slowly on a loaded machine).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Bound on each request of the readiness check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// A running process of a target.
pub struct Started {
    child: Child,
    pub url: String,
    name: String,
}

impl Started {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        stop(&mut self.child, &self.name);
    }
}

/// A free loopback port for a peer that must be told one (free when asked; another process
/// could take it before the peer binds, which then fails readiness and says so).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts `spec` with stdout and stderr in `<dir>/<name>.out|.err`, waits for its URL and for
/// a `tools/list` naming `echo`. On failure the process is stopped and the error carries the
/// end of its logs.
pub fn start(spec: &Spec, dir: &Path, name: &str) -> Result<Started> {
    let out_path = dir.join(format!("{name}.out"));
    let err_path = dir.join(format!("{name}.err"));
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).with_context(|| format!("cannot create {}", out_path.display()))?)
        .stderr(File::create(&err_path).with_context(|| format!("cannot create {}", err_path.display()))?)
        .current_dir(dir);
    let what = run_cmd::describe(&cmd);
    let child = cmd.spawn().with_context(|| format!("cannot start `{what}`"))?;
    let mut started = Started { child, url: String::new(), name: name.to_owned() };
    match wait_ready(&mut started, &spec.url, &out_path) {
        Ok(url) => {
            started.url = url;
            Ok(started)
        }
        Err(err) => {
            drop(started);
            bail!("{err:#}\n  command: {what}\n  stdout: {}\n  stderr: {}", tail(&out_path), tail(&err_path))
        }
    }
}

fn wait_ready(started: &mut Started, url_from: &UrlFrom, out_path: &Path) -> Result<String> {
    let deadline = Instant::now() + READY_WITHIN;
    let mut last = String::from("no URL yet");
    loop {
        if let Some(status) = started.child.try_wait()? {
            bail!("exited before it was ready ({status}); last: {last}");
        }
        let url = match url_from {
            UrlFrom::Port(port) => Some(format!("http://127.0.0.1:{port}/mcp")),
            UrlFrom::Stdout => first_url(&fs::read_to_string(out_path).unwrap_or_default()),
        };
        if let Some(url) = url {
            match probe::tools_list(&url, PROBE_TIMEOUT) {
                Ok(names) if names.iter().any(|n| n == "echo") => return Ok(url),
                Ok(names) => last = format!("tools/list at {url} has no echo: {names:?}"),
                Err(err) => last = format!("tools/list at {url}: {err:#}"),
            }
        }
        if Instant::now() >= deadline {
            bail!("not ready within {}s; last: {last}", READY_WITHIN.as_secs());
        }
        thread::sleep(POLL);
    }
}

/// The first `http://…/mcp` in `text`.
pub fn first_url(text: &str) -> Option<String> {
    text.split_whitespace()
        .filter_map(|word| word.find("http://").map(|i| &word[i..]))
        .find(|url| url.ends_with("/mcp"))
        .map(str::to_owned)
}

/// SIGTERM to `child` and its descendants (listed before anything is signalled, so none is
/// re-parented out of sight), SIGKILL to those still there after the grace period.
fn stop(child: &mut Child, name: &str) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let mut pids = run_cmd::descendants(child.id());
    pids.push(child.id());
    signal("-TERM", &pids);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) && pids.iter().all(|&p| !alive(p)) {
            return;
        }
        thread::sleep(POLL);
    }
    let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    if !left.is_empty() {
        eprintln!("bench: {name}: {} process(es) ignored SIGTERM; killing", left.len());
        signal("-KILL", &left);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Running (a zombie waiting for its parent counts as gone).
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(8);
    let joined = lines[start..].join("\n    ");
    if joined.is_empty() { "(empty)".to_owned() } else { joined }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_the_first_mcp_url_printed() {
        assert_eq!(first_url("x\nhttp://127.0.0.1:41815/mcp\n").as_deref(), Some("http://127.0.0.1:41815/mcp"));
        assert_eq!(
            first_url("INFO metrics url=http://127.0.0.1:9464/metrics\nINFO proxy url=http://127.0.0.1:5/mcp")
                .as_deref(),
            Some("http://127.0.0.1:5/mcp")
        );
        assert_eq!(first_url("nothing here"), None);
    }

    #[test]
    fn a_process_that_exits_before_it_is_ready_is_reported_with_its_output() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-procs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // Prints no URL and exits: start() says so and shows what it printed.
        let spec = Spec {
            program: "sh".into(),
            args: vec!["-c".into(), "echo starting; exit 3".into()],
            env: Vec::new(),
            url: UrlFrom::Stdout,
        };
        let err = start(&spec, &dir, "t").err().unwrap().to_string();
        assert!(err.contains("exited before it was ready"), "{err}");
        assert!(err.contains("starting"), "stdout tail in the message: {err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropping_a_started_process_stops_it_and_its_descendants() {
        let mut child =
            Command::new("sh").args(["-c", "sleep 30 & sleep 30; wait"]).stdout(Stdio::null()).spawn().unwrap();
        thread::sleep(Duration::from_millis(200));
        let kids = run_cmd::descendants(child.id());
        assert_eq!(kids.len(), 2, "two sleeps");
        stop(&mut child, "t");
        let deadline = Instant::now() + Duration::from_secs(5);
        while kids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        assert!(kids.iter().all(|&p| !alive(p)), "children left: {kids:?}");
    }
}
