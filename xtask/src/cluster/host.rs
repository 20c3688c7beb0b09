//! The host side: Debian packages the node needs (installed with apt-get when missing), the
//! checks that we run as root, and the global sysctls the kubelet changes (saved by `up`,
//! restored by `down`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::cmd;
use super::layout::{GLOBAL_SYSCTLS, Layout};

/// (Debian package, a file it installs that we use).
const PACKAGES: &[(&str, &str)] = &[
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("conntrack", "/usr/sbin/conntrack"),
    ("iptables", "/usr/sbin/iptables"),
    ("socat", "/usr/bin/socat"),
    ("ebtables", "/usr/sbin/ebtables"),
    ("ethtool", "/usr/sbin/ethtool"),
    ("kmod", "/usr/bin/kmod"),
    ("busybox-static", "/bin/busybox"),
    ("docker-registry", "/usr/bin/docker-registry"),
    ("openssl", "/usr/bin/openssl"),
    // Copied into seed 000's curl image stand-in (`cargo xtask image`).
    ("curl", "/usr/bin/curl"),
    ("gcc", "/usr/bin/gcc"),
    ("libc6-dev", "/usr/lib/x86_64-linux-gnu/libc.a"),
];

const POLICY_RC: &str = "/usr/sbin/policy-rc.d";

pub fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let uid =
        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
    if uid != "0" {
        bail!("the test cluster needs root (network namespaces, mounts, cgroups); effective uid is {uid:?}");
    }
    Ok(())
}

/// Installs the Debian packages whose files are missing.
pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().filter(|(_, probe)| !Path::new(probe).exists()).map(|(p, _)| *p).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("cluster: installing Debian packages: {}", missing.join(" "));
    let lock = ["-o", "DPkg::Lock::Timeout=300"];
    cmd::run(Command::new("apt-get").args(lock).args(["-q", "update"]), "apt-get update")?;
    // No systemd here, but a package's maintainer script may still try to start its
    // daemon (containerd, docker-registry): a policy-rc.d that says "no" prevents that.
    let own_policy = !Path::new(POLICY_RC).exists();
    if own_policy {
        cmd::write(Path::new(POLICY_RC), "#!/bin/sh\nexit 101\n")?;
        cmd::run(Command::new("chmod").args(["+x", POLICY_RC]), "make policy-rc.d executable")?;
    }
    let result = cmd::run(
        Command::new("apt-get")
            .args(lock)
            .args(["-q", "-y", "--no-install-recommends", "install"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    );
    if own_policy {
        cmd::remove(POLICY_RC)?;
    }
    result?;
    if let Some((p, probe)) = PACKAGES.iter().find(|(_, probe)| !Path::new(probe).exists()) {
        bail!("package {p} is installed but {probe} is still missing");
    }
    Ok(())
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{key}")
}

/// Records the current values of the sysctls the kubelet changes, unless already recorded
/// (a second `up` must not record the kubelet's values as the originals).
pub fn save_sysctls(layout: &Layout) -> Result<()> {
    let file = layout.w("sysctl.saved");
    if file.exists() {
        return Ok(());
    }
    let mut out = String::new();
    for key in GLOBAL_SYSCTLS {
        let p = sysctl_path(key);
        let v = std::fs::read_to_string(&p).with_context(|| format!("read {p}"))?;
        out.push_str(&format!("{key} {}\n", v.trim()));
    }
    cmd::write(&file, out)
}

/// Puts the recorded sysctls back and forgets them.
pub fn restore_sysctls(layout: &Layout) -> Result<()> {
    let file = layout.w("sysctl.saved");
    let Ok(saved) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    for line in saved.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        if !GLOBAL_SYSCTLS.contains(&key) {
            continue;
        }
        let p = sysctl_path(key);
        std::fs::write(&p, value).with_context(|| format!("restore {p} to {value}"))?;
    }
    cmd::remove(&file)
}
