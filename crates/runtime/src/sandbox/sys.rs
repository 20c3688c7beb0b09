//! The few system calls the sandbox needs that have no safe wrapper (fork, signal dispositions,
//! `mount_setattr`, the capability bounding set, `unshare`); every `unsafe` of the sandbox is here.
#![allow(unsafe_code)]

use std::io;
use std::path::Path;

use rustix::thread::UnshareFlags;

/// Which side of a fork this is.
pub enum Forked {
    /// The new process.
    Child,
    /// The old one, with the child's pid.
    Parent(i32),
}

/// `fork()`.
///
/// Only called by the sandbox helper, which is single-threaded (it runs before any async runtime
/// or thread is started), so the child may allocate and run ordinary code.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the hazard (locks held by other
    // threads) does not apply because the helper process has exactly one thread.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `unshare(flags)`.
pub fn unshare(flags: UnshareFlags) -> io::Result<()> {
    // SAFETY: the hazard rustix warns about is CLONE_FILES with other threads; the helper has one
    // thread and never passes CLONE_FILES.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Sets how `signals` are handled: ignored (`ignore`) or the default action.
pub fn set_signals(signals: &[i32], ignore: bool) {
    let handler = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    for &sig in signals {
        // SAFETY: SIG_IGN and SIG_DFL are not function pointers into our code; installing them
        // cannot run anything in signal context.
        unsafe { libc::signal(sig, handler) };
    }
}

/// `mount_setattr(path, AT_RECURSIVE?, {attr_set})`: e.g. read-only for a mount and everything
/// mounted below it, which the classic `MS_REMOUNT` cannot do in one step.
pub fn mount_setattr(path: &Path, recursive: bool, attr_set: u64) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let attr = libc::mount_attr { attr_set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated string and `attr` a valid mount_attr whose size is
    // passed alongside; both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Empties the capability bounding set and the ambient set, so the server gets no capability
/// from `execve`, not even as uid 0 inside its user namespace.
pub fn drop_all_capabilities() -> io::Result<()> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for cap in 0..=last {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        // EINVAL: a capability this kernel does not know.
        if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends this process at once with `code`, without running destructors or flushing buffers that a
/// forked child shares with its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Brings the loopback interface of the current network namespace up (a new namespace has `lo`
/// down): `SIOCGIFFLAGS` then `SIOCSIFFLAGS` with `IFF_UP` on a throwaway datagram socket.
pub fn loopback_up() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| {
        // Binding 127.0.0.1 needs lo up on some kernels; any AF_INET socket will do for ioctl.
        std::net::UdpSocket::bind("0.0.0.0:0")
    })?;
    // SAFETY: ifreq is plain data; all-zero is a valid value (empty name, zero flags).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq that outlives both calls; the fd is open for their duration.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
