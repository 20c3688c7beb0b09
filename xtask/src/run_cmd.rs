//! Runs child processes for xtask tasks with a time limit, and on timeout ends the whole
//! process tree the child started (cargo test spawns test binaries that spawn servers).

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often a waiting loop looks at the child again.
const POLL: Duration = Duration::from_millis(25);

/// Renders a command for messages: program and arguments, space-separated.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` with inherited stdio; fails if it does not exit successfully within `limit`.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Result<()> {
    let what = describe(cmd);
    let status = status_within(cmd, limit)?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` with inherited stdio and returns its exit status; fails on timeout.
pub fn status_within(cmd: &mut Command, limit: Duration) -> Result<ExitStatus> {
    let what = describe(cmd);
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{what}`"))?;
    match wait_within(&mut child, limit)? {
        Some(status) => Ok(status),
        None => bail!("`{what}` did not finish within {}s; stopped it", limit.as_secs()),
    }
}

/// What a captured run produced.
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with stdin closed and stdout/stderr captured; fails on timeout.
pub fn capture(cmd: &mut Command, limit: Duration) -> Result<Captured> {
    let what = describe(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{what}`"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_within(&mut child, limit)?;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Captured { status, stdout, stderr }),
        None => bail!("`{what}` did not finish within {}s; stopped it. Its stderr:\n{stderr}", limit.as_secs()),
    }
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on a full pipe.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Runs `cmd`, echoing its stdout line by line as it comes, and returns its status together
/// with the stdout lines `keep` selected. Stderr is inherited. `None` status means timeout.
pub fn stream_within(
    cmd: &mut Command,
    limit: Duration,
    keep: fn(&str) -> bool,
) -> Result<(Option<ExitStatus>, Vec<String>)> {
    let what = describe(cmd);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{what}`"))?;
    let stdout = child.stdout.take();
    let reader = thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(stdout) = stdout {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("{line}");
                if keep(&line) {
                    kept.push(line);
                }
            }
        }
        kept
    });
    let status = wait_within(&mut child, limit)?;
    let kept = reader.join().unwrap_or_default();
    Ok((status, kept))
}

/// Waits for `child` up to `limit`; on timeout kills it and everything below it and returns
/// `None`.
pub fn wait_within(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill_tree(child);
            return Ok(None);
        }
        thread::sleep(POLL);
    }
}

/// Kills `child` and all of its descendants (found through /proc), children first being
/// collected before anything is killed so that re-parenting cannot hide them.
pub fn kill_tree(child: &mut Child) {
    let root = child.id();
    let mut victims = descendants(root);
    victims.push(root);
    if victims.len() > 1 {
        let mut kill = Command::new("kill");
        kill.arg("-KILL").args(victims.iter().map(u32::to_string)).stderr(Stdio::null());
        let _ = kill.status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every process whose ancestry leads to `root`, read from /proc/<pid>/stat.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if let Some(kids) = children.get(&pid) {
            for &kid in kids {
                found.push(kid);
                queue.push(kid);
            }
        }
    }
    found
}

/// The parent pid from /proc/<pid>/stat; the command name may contain spaces and parens,
/// so fields are counted after the last ')'.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills_grandchildren() {
        // The shell starts a sleeping grandchild and prints its pid; after the timeout the
        // grandchild must be gone too.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]);
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let status = wait_within(&mut child, Duration::from_millis(200)).unwrap();
        assert!(status.is_none(), "sh should have been stopped");
        // A killed process may linger as a zombie until its new parent reaps it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
            match stat {
                Err(_) => return,
                Ok(s) if s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z') => return,
                Ok(_) => thread::sleep(POLL),
            }
        }
        panic!("grandchild {grandchild} still running");
    }

    #[test]
    fn capture_reports_output_and_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let got = capture(&mut cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(got.stdout, "out\n");
        assert_eq!(got.stderr, "err\n");
        assert_eq!(got.status.code(), Some(3));
    }
}
