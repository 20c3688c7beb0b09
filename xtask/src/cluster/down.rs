//! `cluster down`: stops everything `up` started and removes what it left outside the work
//! dir: processes, mounts, network namespaces (and with them every iptables chain), cgroups,
//! fixed-path state, changed sysctls. Safe to run any number of times, and on a half-started
//! or already expired cluster. `cluster clean` additionally deletes the work dir.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use super::cmd;
use super::layout::{CONTAINERD_ROOT, CONTAINERD_STATE, FOREIGN_STATE, KUBELET_LOGS, KUBELET_ROOT, Layout, NETNS_DIR};
use super::{host, netns, procs, up};

/// How long pods get to stop through the API before they are killed.
const POD_DELETE_TIMEOUT: &str = "60s";

/// `from_watchdog`: run by the watchdog itself, which must not stop its own process group.
pub fn run(layout: &Layout, from_watchdog: bool) -> Result<()> {
    host::require_root()?;
    let mut problems = Vec::new();
    let mut t = std::time::Instant::now();
    let mut phase = |what: &str| {
        eprintln!("cluster:   {what} ({:.1} s)", t.elapsed().as_secs_f64());
        t = std::time::Instant::now();
    };
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            eprintln!("cluster: down: {e:#}");
            problems.push(format!("{e:#}"));
        }
    };

    // 1. Let the kubelet stop the pods: it tears down sandboxes and CNI state properly.
    //    Controllers go first so nothing re-creates the pods meanwhile.
    note(procs::stop(layout, &["kube-controller-manager", "kube-scheduler"], Duration::from_secs(5)));
    if procs::running(layout, "kube-apiserver").is_some() && procs::running(layout, "kubelet").is_some() {
        let deleted = cmd::run(
            up::kubectl(layout).args([
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--wait",
                &format!("--timeout={POD_DELETE_TIMEOUT}"),
            ]),
            "delete every pod",
        );
        if let Err(e) = deleted {
            // Not fatal: the processes are killed below anyway.
            eprintln!("cluster: down: {e:#}");
        }
    }

    phase("pods stopped");

    // 2. The daemons, newest first.
    let mut names: Vec<&str> = up::DAEMONS.iter().rev().copied().collect();
    if from_watchdog {
        names.retain(|n| *n != "watchdog");
    }
    // etcd last, on its own: stopped together, the apiserver waits for its etcd requests
    // while etcd waits for the apiserver's streams to close, and both sit out the timeout.
    names.retain(|n| *n != "etcd");
    note(procs::stop(layout, &names, Duration::from_secs(10)));
    note(procs::stop(layout, &["etcd"], Duration::from_secs(10)));
    // Pid files of daemons that are no longer known (renamed between versions).
    for name in procs::recorded(layout) {
        if !(from_watchdog && name == "watchdog") && procs::running(layout, &name).is_none() {
            note(procs::forget(layout, &name));
        }
    }

    phase("daemons stopped");

    // 3. Stragglers: containerd shims (they outlive containerd) and container processes.
    let mut left = procs::in_node_netns();
    left.extend(procs::in_pod_cgroups());
    if !left.is_empty() {
        let survivors = procs::kill_all(&left);
        if !survivors.is_empty() {
            note(Err(anyhow::anyhow!("processes survived SIGKILL: {survivors:?}")));
        }
    }

    // 4. Mounts, deepest first; then the namespaces (which takes every iptables chain along).
    note(unmount_ours(layout));
    note(netns::delete());

    // 5. cgroups, fixed-path state, sysctls.
    note(procs::remove_pod_cgroups());
    for dir in [CONTAINERD_ROOT, CONTAINERD_STATE, KUBELET_ROOT, KUBELET_LOGS].iter().chain(FOREIGN_STATE) {
        note(cmd::remove(dir));
    }
    note(host::restore_sysctls(layout));

    phase("stragglers, mounts, namespaces, cgroups and state removed");
    problems.extend(leftovers(layout, from_watchdog));
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("`cluster down` could not undo everything:\n  {}", problems.join("\n  "))
    }
}

/// `clean`: `down`, then the work dir.
pub fn clean(layout: &Layout) -> Result<()> {
    run(layout, false)?;
    cmd::remove(&layout.work)
}

/// Mount points this cluster made: under its state dirs, the work dir, and pod namespaces.
fn our_mounts(layout: &Layout) -> Vec<String> {
    let work = layout.work.display().to_string();
    let prefixes = [KUBELET_ROOT, CONTAINERD_ROOT, CONTAINERD_STATE, "/var/lib/kubelet", work.as_str()];
    let cni_ns = format!("{NETNS_DIR}/cni-");
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut mounts: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m.starts_with(&cni_ns) || prefixes.iter().any(|p| m == p || m.starts_with(&format!("{p}/"))))
        .collect();
    // Deepest first; the same path can be mounted several times (unmount once per entry).
    mounts.sort_by_key(|m| std::cmp::Reverse(m.matches('/').count()));
    mounts
}

fn unmount_ours(layout: &Layout) -> Result<()> {
    for m in our_mounts(layout) {
        if !cmd::succeeds(Command::new("umount").arg(&m)) {
            // Busy: detach it now; the kernel frees it when the last user goes.
            cmd::run(Command::new("umount").arg("-l").arg(&m), &format!("unmount {m}"))?;
        }
    }
    let left = our_mounts(layout);
    if !left.is_empty() {
        bail!("still mounted: {}", left.join(", "));
    }
    Ok(())
}

/// Whatever of the cluster still exists; empty after a complete `down`. `down` fails when
/// this is not empty, so a leak is an error, not a surprise in the next test run.
pub fn leftovers(layout: &Layout, from_watchdog: bool) -> Vec<String> {
    let mut found = Vec::new();
    if netns::exists() {
        found.push(format!("network namespace {}", Layout::netns_path().display()));
    }
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with("cni-") {
                found.push(format!("pod network namespace {}", e.path().display()));
            }
        }
    }
    for name in up::DAEMONS {
        if from_watchdog && *name == "watchdog" {
            continue;
        }
        if let Some(pid) = procs::running(layout, name) {
            found.push(format!("daemon {name} (pid {pid})"));
        }
    }
    // Ours: one of the programs `up` starts, with an argument in the work dir or the private
    // containerd state dir (others may run the cached binaries for their own purposes).
    let bin = layout.bin.display().to_string();
    let work = layout.work.display().to_string();
    let programs =
        ["timeout", "nsenter", "socat", "docker-registry", "containerd", "containerd-shim-runc-v2", "xtask-watchdog"];
    for (pid, cmdline) in procs::with_cmdline(|c| {
        let argv0 = c.split(' ').next().unwrap_or("");
        let name = argv0.rsplit('/').next().unwrap_or(argv0);
        (argv0.starts_with(&bin) || programs.contains(&name)) && (c.contains(&work) || c.contains(CONTAINERD_STATE))
    }) {
        found.push(format!("process {pid}: {cmdline}"));
    }
    for m in our_mounts(layout) {
        found.push(format!("mount {m}"));
    }
    for c in procs::pod_cgroup_roots() {
        found.push(format!("cgroup {}", c.display()));
    }
    for dir in [CONTAINERD_ROOT, CONTAINERD_STATE, KUBELET_ROOT, KUBELET_LOGS].iter().chain(FOREIGN_STATE) {
        if std::path::Path::new(dir).exists() {
            found.push(format!("directory {dir}"));
        }
    }
    // kube-proxy and the CNI only ever ran inside the node namespace; their chains must not
    // show up in the host's tables.
    for tool in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = Command::new(tool).output() {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().filter(|l| l.starts_with(':')) {
                let chain = line[1..].split_whitespace().next().unwrap_or("");
                if chain.starts_with("KUBE-") || chain.starts_with("CNI-") {
                    found.push(format!("host {tool} chain {chain}"));
                }
            }
        }
    }
    found
}
