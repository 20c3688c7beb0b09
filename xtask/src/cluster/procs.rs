//! The cluster's daemons as processes: started detached under `timeout` (so none can outlive
//! its time budget) with a log file and a pid file, found again by pid + start time (so a
//! reused pid is never mistaken for ours), and stopped by process group. Also finds the
//! stragglers `down` must kill: anything in the node namespace or in the pod cgroups.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::cmd;
use super::layout::{Layout, NETNS, NETNS_DIR};

/// Extra minutes each daemon's `timeout` allows beyond the cluster TTL: the watchdog runs
/// `down` at the TTL, and the daemons' own timeouts are the backstop if that fails.
const BACKSTOP_MIN: u64 = 3;

/// Starts `program args…` detached, inside the node namespace if `in_ns`, with stdout and
/// stderr appended to `logs/<name>.log`. Returns the pid of the `timeout` wrapper, which
/// leads the process group the daemon runs in.
pub fn start(layout: &Layout, name: &str, in_ns: bool, program: impl AsRef<OsStr>, args: &[String]) -> Result<u32> {
    let log_path = layout.w(&format!("logs/{name}.log"));
    cmd::mkdir(layout.w("logs"))?;
    cmd::mkdir(layout.w("run"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let log2 = log.try_clone().with_context(|| format!("duplicate {}", log_path.display()))?;
    let mut c = Command::new("timeout");
    // timeout puts itself and the daemon in a new process group, so a terminal's Ctrl-C
    // does not reach them and `stop` can signal the whole group.
    c.arg("--kill-after=10s").arg(format!("{}m", layout.ttl_min + BACKSTOP_MIN));
    if in_ns {
        c.arg("nsenter").arg(format!("--net={}", Layout::netns_path().display())).arg("--");
    }
    c.arg(program).args(args).current_dir(&layout.work).stdin(Stdio::null()).stdout(log).stderr(log2);
    let child = c.spawn().with_context(|| format!("start {name}: `{}`", cmd::describe(&c)))?;
    let pid = child.id();
    // Dropping `child` does not kill or wait for it: it outlives this command on purpose.
    drop(child);
    let start =
        start_time(pid).with_context(|| format!("{name} (pid {pid}) exited at once; see {}", log_path.display()))?;
    cmd::write(&pid_file(layout, name), format!("{pid} {start}\n"))?;
    Ok(pid)
}

fn pid_file(layout: &Layout, name: &str) -> std::path::PathBuf {
    layout.w(&format!("run/{name}.pid"))
}

/// The pid of daemon `name` if it is still running (and is the process we started).
pub fn running(layout: &Layout, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file(layout, name)).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (start_time(pid) == Some(start)).then_some(pid)
}

/// Every daemon with a pid file, running or not.
pub fn recorded(layout: &Layout) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(layout.w("run")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".pid")).map(str::to_string))
        .collect()
}

pub fn forget(layout: &Layout, name: &str) -> Result<()> {
    cmd::remove(pid_file(layout, name))
}

/// Fields of /proc/<pid>/stat after the command name (which may hold spaces): state, ppid,
/// pgrp, …; None for a process that is gone or a zombie.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    (fields.first().map(String::as_str) != Some("Z")).then_some(fields)
}

/// The start time of a live process (clock ticks since boot): field 22 of /proc/<pid>/stat.
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some()
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Live processes in process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let g = pgid.to_string();
    all_pids().into_iter().filter(|p| stat_fields(*p).is_some_and(|f| f.get(2) == Some(&g))).collect()
}

fn signal(target: &str, sig: &str) {
    // Failure means the target is already gone, which is what we want.
    let _ = cmd::succeeds(Command::new("kill").arg(format!("-{sig}")).arg("--").arg(target));
}

/// Stops the named daemons: SIGTERM to each process group, then SIGKILL to whatever is left
/// after `grace`. Waits until every member is gone (bounded).
pub fn stop(layout: &Layout, names: &[&str], grace: Duration) -> Result<()> {
    let groups: Vec<(&str, u32)> = names.iter().filter_map(|n| running(layout, n).map(|p| (*n, p))).collect();
    for (_, pgid) in &groups {
        signal(&format!("-{pgid}"), "TERM");
    }
    let left = |gs: &[(&str, u32)]| -> Vec<String> {
        gs.iter().filter(|(_, g)| !group_members(*g).is_empty()).map(|(n, _)| n.to_string()).collect()
    };
    let slow = Duration::from_secs(2).min(grace);
    if !wait_until(slow, || left(&groups).is_empty()) {
        eprintln!("cluster: waiting for {} to exit", left(&groups).join(", "));
    }
    if !wait_until(grace - slow, || left(&groups).is_empty()) {
        eprintln!(
            "cluster: still running {} s after SIGTERM, sending SIGKILL: {}",
            grace.as_secs(),
            left(&groups).join(", ")
        );
        for (_, pgid) in &groups {
            for p in group_members(*pgid) {
                signal(&p.to_string(), "KILL");
            }
        }
        if !wait_until(Duration::from_secs(5), || left(&groups).is_empty()) {
            anyhow::bail!("these daemons survived SIGKILL: {}", left(&groups).join(", "));
        }
    }
    for n in names {
        forget(layout, n)?;
    }
    Ok(())
}

/// SIGKILLs `pids` and waits (bounded) until they are gone; returns those that survived.
pub fn kill_all(pids: &[u32]) -> Vec<u32> {
    for p in pids {
        signal(&p.to_string(), "KILL");
    }
    wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p)));
    pids.iter().copied().filter(|p| alive(*p)).collect()
}

/// Polls `done` every 100 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if done() {
            return true;
        }
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Live processes whose command line (arguments joined by spaces) matches `pred`.
pub fn with_cmdline(pred: impl Fn(&str) -> bool) -> Vec<(u32, String)> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|p| *p != me && alive(*p))
        .filter_map(|p| {
            let raw = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            let line = line.trim().to_string();
            pred(&line).then_some((p, line))
        })
        .collect()
}

/// Processes whose network namespace is the node's (containerd shims, daemons started
/// outside xtask). Empty if the namespace does not exist.
pub fn in_node_netns() -> Vec<u32> {
    let Ok(meta) = std::fs::metadata(Path::new(NETNS_DIR).join(NETNS)) else {
        return Vec::new();
    };
    let want = format!("net:[{}]", meta.ino());
    all_pids()
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|l| l.as_os_str() == want.as_str()))
        .filter(|p| alive(*p))
        .collect()
}

/// Top-level cgroup dirs the kubelet and containerd create, one per v1 controller.
pub fn pod_cgroup_roots() -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    for controller in dir.filter_map(|e| e.ok()) {
        for name in ["kubepods", "k8s.io"] {
            let p = controller.path().join(name);
            if p.is_dir() {
                roots.push(p);
            }
        }
    }
    roots
}

/// Processes in the pod cgroups (containers whose shim is gone).
pub fn in_pod_cgroups() -> Vec<u32> {
    let mut pids = Vec::new();
    for root in pod_cgroup_roots() {
        collect_cgroup_procs(&root, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|p| alive(*p));
    pids
}

fn collect_cgroup_procs(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_cgroup_procs(&e.path(), out);
            }
        }
    }
}

/// Removes the pod cgroup trees, deepest first (cgroupfs only lets empty dirs go).
pub fn remove_pod_cgroups() -> Result<()> {
    for root in pod_cgroup_roots() {
        remove_cgroup_tree(&root)?;
    }
    Ok(())
}

fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path())?;
            }
        }
    }
    std::fs::remove_dir(dir).with_context(|| format!("remove cgroup {}", dir.display()))
}
