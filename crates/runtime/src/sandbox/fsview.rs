//! The sandbox's filesystem: a tmpfs root holding read-only binds of the system directories and
//! the server's files, the profile's read-write paths, a private `/tmp`, a minimal `/dev` and a
//! fresh `/proc`, then `pivot_root` into it so nothing else of the host is reachable.

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::sys;
use super::{Mount, SandboxSpec, TMPFS_BYTES};
use crate::sandbox::exec::SetupError;

/// Where the new root is assembled before `pivot_root`: the first of these that exists and holds
/// none of the paths to bind (they would be hidden under the tmpfs).
const STAGING_CANDIDATES: &[&str] = &["/mnt", "/media", "/srv", "/boot", "/home", "/var/tmp", "/tmp"];

/// Device nodes bound from the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError { step: what, source }
}

fn rustix_step(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> SetupError {
    let what = what.into();
    move |e| SetupError { step: what, source: e.into() }
}

/// Builds the view and enters it. Runs as pid 1 of the new pid namespace, inside the new user and
/// mount namespaces. Returns the steps that were skipped because the kernel refused them (only
/// when `spec.allow_degraded`).
pub fn enter(spec: &SandboxSpec) -> Result<Vec<String>, SetupError> {
    let mut degraded = Vec::new();
    // Nothing done below may propagate back to the host's mount namespace.
    rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .map_err(rustix_step("make mounts private"))?;
    let root = staging_dir(spec)?;
    mount_tmpfs(&root, "mode=0755,size=16m", MountFlags::NOSUID | MountFlags::NODEV)?;
    // The private /dev and /tmp first, so that profile paths below /tmp are bound on top of them.
    make_dev(&root)?;
    let tmp = root.join("tmp");
    fs::create_dir_all(&tmp).map_err(step("create /tmp"))?;
    mount_tmpfs(&tmp, &format!("mode=1777,size={TMPFS_BYTES}"), MountFlags::NOSUID | MountFlags::NODEV)?;
    for m in &spec.read_only {
        bind(&root, m, true)?;
    }
    for m in &spec.read_write {
        bind(&root, m, false)?;
    }
    if let Some(bridge) = &spec.egress {
        // Read-write: connecting to a Unix socket needs write access to it.
        let socket =
            Mount { host: bridge.socket.clone(), inside: super::bridge::SOCKET_INSIDE.into(), optional: false };
        bind(&root, &socket, false)?;
    }
    let proc = root.join("proc");
    fs::create_dir_all(&proc).map_err(step("create /proc"))?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if let Err(e) = rustix::mount::mount("proc", &proc, "proc", flags, None) {
        let err = SetupError { step: "mount a fresh /proc for the pid namespace".into(), source: e.into() };
        if !spec.allow_degraded {
            return Err(err);
        }
        degraded.push(format!("{err}: the server has no /proc"));
    }
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours.
    std::env::set_current_dir(&root).map_err(step("enter the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(rustix_step("pivot_root into the new root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(rustix_step("detach the host's root"))?;
    std::env::set_current_dir("/").map_err(step("enter /"))?;
    sys::mount_setattr(Path::new("/"), false, libc::MOUNT_ATTR_RDONLY).map_err(step("make / read-only"))?;
    let cwd = spec.cwd.as_deref().filter(|d| d.is_dir()).unwrap_or(Path::new("/"));
    std::env::set_current_dir(cwd).map_err(step(format!("enter {}", cwd.display())))?;
    Ok(degraded)
}

fn staging_dir(spec: &SandboxSpec) -> Result<PathBuf, SetupError> {
    let egress = spec.egress.iter().map(|b| b.socket.as_path());
    let used =
        spec.read_only.iter().chain(&spec.read_write).map(|m| m.host.as_path()).chain(egress).collect::<Vec<_>>();
    STAGING_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|c| c.is_dir() && !used.iter().any(|u| u.starts_with(c) || c.starts_with(u)))
        .map(Path::to_path_buf)
        .ok_or_else(|| SetupError {
            step: "find a directory to build the new root in".into(),
            source: std::io::Error::other(format!("every one of {STAGING_CANDIDATES:?} holds a path to share")),
        })
}

fn mount_tmpfs(at: &Path, options: &str, flags: MountFlags) -> Result<(), SetupError> {
    let data = std::ffi::CString::new(options)
        .map_err(|_| SetupError { step: "tmpfs options".into(), source: std::io::ErrorKind::InvalidInput.into() })?;
    rustix::mount::mount("tmpfs", at, "tmpfs", flags, Some(data.as_c_str()))
        .map_err(rustix_step(format!("mount a tmpfs at {}", at.display())))
}

/// Binds `m.host` at `m.inside` under `root`; a top-level symlink such as `/bin -> usr/bin` is
/// copied as a symlink instead.
fn bind(root: &Path, m: &Mount, read_only: bool) -> Result<(), SetupError> {
    let target = root.join(m.inside.strip_prefix("/").unwrap_or(&m.inside));
    let link = fs::symlink_metadata(&m.host);
    if link.as_ref().is_ok_and(|l| l.file_type().is_symlink())
        && m.host == m.inside
        && m.host.parent() == Some(Path::new("/"))
    {
        let dest = fs::read_link(&m.host).map_err(step(format!("read the link {}", m.host.display())))?;
        if fs::symlink_metadata(&target).is_err() {
            std::os::unix::fs::symlink(&dest, &target).map_err(step(format!("copy the link {}", m.host.display())))?;
        }
        return Ok(());
    }
    let meta = match fs::metadata(&m.host) {
        Ok(meta) => meta,
        Err(_) if m.optional => return Ok(()),
        Err(e) => return Err(step(format!("share {}", m.host.display()))(e)),
    };
    if meta.is_dir() {
        fs::create_dir_all(&target).map_err(step(format!("create {}", m.inside.display())))?;
    } else {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(step(format!("create {}", m.inside.display())))?;
        }
        if fs::symlink_metadata(&target).is_err() {
            fs::File::create(&target).map_err(step(format!("create {}", m.inside.display())))?;
        }
    }
    rustix::mount::mount_bind_recursive(&m.host, &target).map_err(rustix_step(format!(
        "bind {} at {}",
        m.host.display(),
        m.inside.display()
    )))?;
    let mut attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
    if read_only {
        attrs |= libc::MOUNT_ATTR_RDONLY;
    }
    sys::mount_setattr(&target, true, attrs).map_err(step(format!("restrict the mount at {}", m.inside.display())))
}

/// A tmpfs `/dev` with the harmless devices bound from the host, the usual links, and `/dev/shm`.
fn make_dev(root: &Path) -> Result<(), SetupError> {
    let dev = root.join("dev");
    fs::create_dir_all(&dev).map_err(step("create /dev"))?;
    mount_tmpfs(&dev, "mode=0755,size=64k", MountFlags::NOSUID)?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if fs::metadata(&host).is_err() {
            continue;
        }
        let inside = dev.join(name);
        fs::File::create(&inside).map_err(step(format!("create /dev/{name}")))?;
        rustix::mount::mount_bind_recursive(&host, &inside).map_err(rustix_step(format!("bind /dev/{name}")))?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name)).map_err(step(format!("link /dev/{name}")))?;
    }
    let shm = dev.join("shm");
    fs::create_dir_all(&shm).map_err(step("create /dev/shm"))?;
    mount_tmpfs(&shm, &format!("mode=1777,size={TMPFS_BYTES}"), MountFlags::NOSUID | MountFlags::NODEV)
}
