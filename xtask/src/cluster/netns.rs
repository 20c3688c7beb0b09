//! The node's network namespace: the whole node lives in it, so no packet can leave the
//! machine, the host's iptables are never touched, and deleting it removes the bridge, the
//! veths and every chain kube-proxy made.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::cmd::{self, in_ns};
use super::layout::{Layout, NETNS, NETNS_DIR, NODE_IP};

pub fn exists() -> bool {
    Layout::netns_path().exists()
}

/// Creates the namespace with its loopback and a veth whose peer stays down: the node IP
/// lives on it and the default route points at it, so anything routed "out" is dropped
/// (this kernel has no `dummy` link type).
pub fn create() -> Result<()> {
    cmd::run(Command::new("ip").args(["netns", "add", NETNS]), "create the node network namespace")?;
    let steps: &[(&[&str], &str)] = &[
        (&["ip", "link", "set", "lo", "up"], "bring up loopback"),
        (&["ip", "link", "add", "k8s0", "type", "veth", "peer", "name", "k8s1"], "create the node's veth"),
        (&["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", "k8s0"], "assign the node IP"),
        (&["ip", "link", "set", "k8s0", "up"], "bring up k8s0"),
        (&["ip", "route", "add", "default", "dev", "k8s0"], "add the dead-end default route"),
        (
            &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"],
            "enable forwarding and bridge netfilter in the namespace",
        ),
    ];
    for (argv, what) in steps {
        cmd::run(in_ns(argv[0]).args(&argv[1..]), what)?;
    }
    Ok(())
}

/// Deletes the namespace (if present), then the pods' `cni-*` namespace files the CNI left,
/// and `/run/netns` itself when it is empty (other tools may share it: pitfall 16).
pub fn delete() -> Result<()> {
    if exists() {
        cmd::run(Command::new("ip").args(["netns", "del", NETNS]), "delete the node network namespace")?;
    }
    let dir = Path::new(NETNS_DIR);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            // containerd names pod namespaces cni-<uuid>; only this cluster's containerd runs here.
            if name.starts_with("cni-") {
                let p = e.path();
                let _ = cmd::succeeds(Command::new("umount").arg(&p));
                cmd::remove(&p)?;
            }
        }
    }
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if empty {
        // `ip netns add` may have bind-mounted it more than once; unmount every layer.
        for _ in 0..4 {
            if !is_mountpoint(dir) {
                break;
            }
            let _ = cmd::succeeds(Command::new("umount").arg(dir));
        }
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

fn is_mountpoint(dir: &Path) -> bool {
    let want = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}
